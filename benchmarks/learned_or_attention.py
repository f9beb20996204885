"""Learned or attention scores? DynamicViT against EViT at equal keep rate and equal training, on generated test
images of a seed no training run used: the question both source papers ask of DynamicViT.

    python benchmarks/learned_or_attention.py --runs runs/compare --json results/learned-or-attention.json

Each pair was trained the same way, each method with its authors' recipe (docs/results.md has the commands):
- fine-tuned: from the showcase baseline, 4 epochs on 12000 images (EViT: the keep rate falls from 1.0 over the
  first two epochs; DynamicViT: its predictors at the learning rate, the backbone at 1/100 of it, distilled from
  the baseline, as its authors fine-tune);
- from scratch: the small model (4 blocks, 128 px), 8 epochs on 20000 images, lr 1e-3, no teacher, both methods
  with one keep-rate schedule (EViT's): keep rate 1.0 for the first epoch (or two), then down to their own over
  three (DynamicViT at its keep rate from the first step, as its authors fine-tune, stayed at chance: its untrained
  predictors drop tokens at random; data/README.md says what was tried).
EViT 0.7 fine-tuned is the bundled `showcase-evit-0.7`; the other nine come from `--runs`. With `--keep-earlier`,
the rows of an architecture (image size) this run measures nothing of are kept from the `--json` file's earlier run,
with that run's untouched figures and date, so that a comparison added later does not need the first one's
checkpoints again (`--training` picks what this run measures); speed ratios still compare only rows of one run:

    python benchmarks/learned_or_attention.py --runs runs/compare --json results/learned-or-attention.json \
        --keep-earlier --training "from scratch, keep 1.0 for 1 epoch" --training "from scratch, keep 1.0 for 2 epochs"

For every model, at its own keep rate: top-1 with its 95 % bootstrap interval over the images, DynamicViT's top-1
minus EViT's on the same images (paired interval), the background lift of the patches let go of (with interval),
parameters, MACs per image, and speed against the untouched model of the same architecture measured in the same
run (interleaved rounds, median): batch 64 throughput and batch 1 latency. Speed figures compare rows of one run
only; the conditions are printed and stored with them.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import retokviz as rv
from retokviz._util.device import describe_device
from retokviz._util.files import check_output_files, write_atomically
from retokviz.measure.intervals import bootstrap, paired_difference
from retokviz.measure.metrics import correct
from retokviz.models import bundled

sys.path.insert(0, str(Path(__file__).parent))
from evaluate import measure  # noqa: E402  (the same per-model measurement as docs/results.md's tables)

SEED = bundled.TEST_SEED
SCRATCH_1 = "from scratch, keep 1.0 for 1 epoch"
SCRATCH_2 = "from scratch, keep 1.0 for 2 epochs"
# (training, keep rate, method) -> checkpoint: a name of data/ or a file name in --runs
MODELS = {
    ("fine-tuned", 0.7, "EViT"): "showcase-evit-0.7",
    ("fine-tuned", 0.7, "DynamicViT"): "showcase-dynamicvit-0.7",
    ("fine-tuned", 0.5, "EViT"): "showcase-evit-0.5",
    ("fine-tuned", 0.5, "DynamicViT"): "showcase-dynamicvit-0.5",
    (SCRATCH_1, 0.7, "EViT"): "scratch-evit-0.7",
    (SCRATCH_1, 0.7, "DynamicViT"): "scratch-dynamicvit-0.7",
    (SCRATCH_1, 0.5, "EViT"): "scratch-evit-0.5",
    (SCRATCH_1, 0.5, "DynamicViT"): "scratch-dynamicvit-0.5",
    (SCRATCH_2, 0.7, "EViT"): "scratch2-evit-0.7",
    (SCRATCH_2, 0.7, "DynamicViT"): "scratch2-dynamicvit-0.7",
}


def find(name: str, runs: Path | None) -> Path | str | None:
    """A checkpoint's file in --runs if it is there, else its bundled name if data/ has it, else None."""
    path = None if runs is None else runs / f"{name}.safetensors"
    if path is not None and path.is_file():
        return path
    return name if name in {info.name for info in rv.checkpoints()} else None


def timed(model: nn.Module, images: torch.Tensor, repeats: int) -> float:
    """The median seconds of one forward pass of `images` over `repeats` passes."""
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            model(images)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def speeds(models: dict[str, nn.Module], image_size: int, rounds: int) -> dict[str, dict[str, float]]:
    """Batch 64 images/s and batch 1 ms of each model, interleaved over `rounds` rounds (median of the rounds'
    medians), after a warm-up; models[`"untouched"`] is the reference the ratios are taken against."""
    big, one = torch.randn(64, 3, image_size, image_size), torch.randn(1, 3, image_size, image_size)
    for model in models.values():
        timed(model, big, 2), timed(model, one, 5)
    seen: dict[str, dict[str, list[float]]] = {name: {"b64": [], "b1": []} for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            seen[name]["b64"].append(timed(model, big, 3))
            seen[name]["b1"].append(timed(model, one, 20))
    out = {}
    for name, times in seen.items():
        b64, b1 = statistics.median(times["b64"]), statistics.median(times["b1"])
        out[name] = {"images_per_second_b64": 64 / b64, "ms_b1": 1000 * b1}
    reference = out["untouched"]
    for figures in out.values():
        figures["speedup_b64"] = figures["images_per_second_b64"] / reference["images_per_second_b64"]
        figures["speedup_b1"] = reference["ms_b1"] / figures["ms_b1"]
    return out


def compare(runs: Path | None, test_size: int, rounds: int, trainings: list[str] | None = None) -> dict:
    """Every model of MODELS measured (of `trainings` only, where given); see the module."""
    rows, by_arch = [], {}
    for (training, rate, method), name in MODELS.items():
        if trainings is not None and training not in trainings:
            continue
        where = find(name, runs)
        if where is None:
            print(f"{training:>12} {method:>10} keep {rate}: no checkpoint {name} (not trained): left out", flush=True)
            continue
        model = rv.load_checkpoint(where)
        size = model.patch_embed.img_size[0]
        if size not in by_arch:
            images, labels, masks = rv.data.make_clutter(test_size, SEED, split="test", image_size=size)
            by_arch[size] = {"data": (images, labels, masks), "models": {}}
        images, labels, masks = by_arch[size]["data"]
        row = measure(model, rv.method_of(model), images, labels, masks, progress=False)
        with rv.applied(model, rv.method_of(model)):
            macs = rv.count_macs(model)
        with rv.applied(model, None):
            untouched_macs = rv.count_macs(model)
        with rv.applied(model, rv.method_of(model)):
            right = correct(model, images, labels)
        row.update(training=training, keep_rate=rate, method=method, checkpoint=name, image_size=size,
                   parameters=sum(p.numel() for p in model.parameters()), macs=macs, untouched_macs=untouched_macs,
                   correct=right.tolist())
        del row["by_block"]
        rows.append(row)
        by_arch[size]["models"][f"{training} {method} {rate}"] = model
        by_arch[size]["untouched"] = model
        print(f"{training:>12} {method:>10} keep {rate}: top-1 {row['accuracy']:.1%}, lift {row['lift']:.3f}",
              flush=True)
    for first in rows:      # DynamicViT minus EViT on the same images, at the same keep rate and training
        if first["method"] != "DynamicViT":
            continue
        other = next((r for r in rows if r["method"] == "EViT" and r["training"] == first["training"]
                      and r["keep_rate"] == first["keep_rate"]), None)
        if other is None:
            continue
        ours, theirs = torch.tensor(first["correct"]), torch.tensor(other["correct"])
        first["minus_evit"] = float(ours.double().mean() - theirs.double().mean())
        first["minus_evit_interval"] = list(bootstrap(paired_difference, ours, theirs))
    timing = {}
    for size, arch in by_arch.items():
        untouched = rv.remove(copy.deepcopy(arch["untouched"]))
        models = {"untouched": untouched, **arch["models"]}
        timing[str(size)] = speeds(models, size, rounds)
        print(f"timed the {size} px models", flush=True)
    for row in rows:
        row["speed"] = timing[str(row["image_size"])][f"{row['training']} {row['method']} {row['keep_rate']}"]
        del row["correct"]
    today = "on " + datetime.datetime.now().isoformat(sep=" ", timespec="minutes")
    conditions = {"test_images": test_size, "data_seed": SEED, "device": describe_device(torch.device("cpu")),
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": rounds,
                  "untouched": {size: timing[size]["untouched"] for size in timing},
                  "measured": {size: today for size in timing}}
    return {"conditions": conditions, "rows": rows}


def keep_earlier(result: dict, earlier: dict) -> dict:
    """`result` with the rows of `earlier` whose image size `result` has no row of, and their sizes' untouched
    figures and dates; the earlier run must share the test images (their number and seed)."""
    now, before = result["conditions"], earlier["conditions"]
    for key in ("test_images", "data_seed"):
        if now[key] != before[key]:
            raise ValueError(f"--keep-earlier: the earlier run measured {key} {before[key]}, this one {now[key]}; "
                             f"rows on different test images don't share a table")
    sizes = {row["image_size"] for row in result["rows"]}
    kept = [row for row in earlier["rows"] if row["image_size"] not in sizes]
    kept_sizes = {str(row["image_size"]) for row in kept}
    dates = before.get("measured", {})
    conditions = {**now, "untouched": {**{s: before["untouched"][s] for s in kept_sizes}, **now["untouched"]},
                  "measured": {**{s: dates.get(s, "in an earlier run") for s in kept_sizes}, **now["measured"]}}
    return {"conditions": conditions, "rows": kept + result["rows"]}


def format_table(result: dict) -> str:
    """Markdown: one line per model."""
    lines = ["| training | keep | method | top-1 [95 %] | DynamicViT - EViT, points [95 %] | background lift [95 %] | "
             "parameters | MACs | speed-up b64 | speed-up b1 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        low, high = row["accuracy_interval"]
        lift_low, lift_high = row["lift_interval"]
        if "minus_evit" in row:
            a, b = row["minus_evit_interval"]
            minus = f"{100 * row['minus_evit']:+.1f} [{100 * a:+.1f}, {100 * b:+.1f}]"
        else:
            minus = ""
        speed = row["speed"]
        lines.append(f"| {row['training']} | {row['keep_rate']} | {row['method']} | {row['accuracy']:.1%} "
                     f"[{low:.1%}, {high:.1%}] | {minus} | {row['lift']:.3f} [{lift_low:.3f}, {lift_high:.3f}] | "
                     f"{row['parameters'] / 1e6:.3f} M | {row['macs'] / 1e6:.0f} M of {row['untouched_macs'] / 1e6:.0f} M"
                     f" | {speed['speedup_b64']:.2f}x | {speed['speedup_b1']:.2f}x |")
    conditions = result["conditions"]
    measured = conditions.get("measured", {})
    untouched = ", ".join(f"{size} px: {figures['images_per_second_b64']:.0f} images/s at batch 64, "
                          f"{figures['ms_b1']:.2f} ms at batch 1"
                          + (f", measured {measured[size]}" if size in measured and len(set(measured.values())) > 1
                             else "")
                          for size, figures in conditions["untouched"].items())
    lines += ["", f"{conditions['test_images']} test images of seed {conditions['data_seed']}; speed on "
                  f"{conditions['device']}, torch {conditions['torch']}, fp32, "
                  f"median of {conditions['rounds']} interleaved rounds against the untouched model of the same "
                  f"architecture ({untouched})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python benchmarks/learned_or_attention.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, help="the folder the comparison's checkpoints were exported to")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--training", action="append", choices=sorted({key[0] for key in MODELS}),
                        help="measure only the models trained this way (repeat for several; default: all)")
    parser.add_argument("--keep-earlier", action="store_true",
                        help="keep the --json file's rows of the architectures this run measures nothing of")
    args = parser.parse_args(argv)
    if args.test_size < 1 or args.rounds < 1:
        parser.error(f"--test-size and --rounds must be >= 1, got {args.test_size} and {args.rounds}")
    if args.runs is not None and not args.runs.is_dir():
        parser.error(f"--runs {args.runs} is not a folder")
    earlier = None
    if args.keep_earlier:
        if args.json is None or not args.json.is_file():
            parser.error(f"--keep-earlier keeps rows of the --json file's earlier run; there is none at {args.json}")
        earlier = json.loads(args.json.read_text())
        before = earlier["conditions"]
        if (before["test_images"], before["data_seed"]) != (args.test_size, SEED):
            parser.error(f"--keep-earlier: {args.json} was measured on {before['test_images']} test images of seed "
                         f"{before['data_seed']}, this run would use {args.test_size} of seed {SEED}: give "
                         f"--test-size {before['test_images']} or another --json")
    else:
        check_output_files(parser, json=args.json)
    result = compare(args.runs, args.test_size, args.rounds, args.training)
    if earlier is not None:
        result = keep_earlier(result, earlier)
    print(format_table(result))
    if args.json:
        text = (json.dumps(result, indent=2) + "\n").encode()
        write_atomically(args.json, lambda file: file.write(text))
    return result


if __name__ == "__main__":
    main()
