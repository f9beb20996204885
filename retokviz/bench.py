"""Throughput of a timm ViT with EViT, ImagePiece and ToMe, against the untouched model in the same run.

    python -m retokviz.bench                                   # DeiT-S, CPU, batch 16, fp32, all three methods
    python -m retokviz.bench --device cuda --batch 256 --dtype bf16 --json results/gpu.json
    python -m retokviz.bench --methods evit --keep 1.0 0.9 0.7 0.5

At each keep rate the three methods get the same final token budget: ImagePiece has EViT's token count at every
block (its fused token too), and ToMe gets a per-block r that ends with EViT's final count (it merges a little in
every block, so it carries more tokens early on and costs more MACs).

Honest by construction (methods.md, "Measuring speed honestly"): the model alone is timed, on tensors already on
the device, with synchronisation before every clock read; every configuration is warmed up before it is timed;
the configurations take turns over several rounds and each keeps its median round, so drift in the machine's
speed hits all of them alike; speed-ups are ratios to the untouched model timed in the same rounds, printed
beside the ceiling that the ratio of MACs sets. The conditions are printed with the figures.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
from torch import nn
from tqdm.auto import tqdm

import retokviz as rv
from retokviz.macs import count_macs
from retokviz.methods.base import Method
from retokviz.methods.compose import token_counts, tome_for_budget

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Row:
    """One configuration's measurement."""

    label: str
    method: str                # "untouched", "EViT", "ImagePiece" or "ToMe"
    keep_rate: float | None    # the EViT keep rate whose final token budget this configuration has
    tokens: list[int]          # patch tokens leaving each block
    gmacs: float               # per image
    images_per_second: float
    speedup: float             # throughput / untouched throughput, same run
    ceiling: float             # untouched MACs / these MACs
    of_ceiling: float          # speedup / ceiling
    spread: float              # (slowest - fastest round) / median round: the run's own noise
    round_seconds: list[float]  # seconds per forward pass, each round
    vs_evit: float | None = None  # throughput / EViT's at the same keep rate, same run


def describe_device(device: torch.device) -> str:
    """The device in words: GPU name, or CPU model and thread count."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"cpu: {name}, {threads} thread{'s' if threads != 1 else ''}"


def describe_attention(model: nn.Module, device: torch.device) -> str:
    """Which attention kernel the model's blocks use."""
    if not all(block.attn.fused_attn for block in model.blocks):
        return "explicit softmax(q k^T) v (timm fused_attn=False)"
    kernel = "F.scaled_dot_product_attention (timm fused_attn=True)"
    if device.type == "cuda":
        backends = [name for name, on in [("flash", torch.backends.cuda.flash_sdp_enabled()),
                                          ("mem-efficient", torch.backends.cuda.mem_efficient_sdp_enabled()),
                                          ("math", torch.backends.cuda.math_sdp_enabled())] if on]
        kernel += f", backends enabled: {', '.join(backends)}"
    return kernel


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_configurations(model: nn.Module, images: torch.Tensor, methods: list[Method | None], warmup: int,
                        iters: int, rounds: int, after_round=None) -> list[list[float]]:
    """Seconds per forward pass of each configuration (None = the untouched model), one list of rounds each.

    The configurations take turns within each round, in reverse order every other round so that none always
    follows the same neighbour; each is warmed up for `warmup` passes before its `iters` timed passes.
    `after_round(per_round)` is called after every round (to save partial results).
    """
    device = images.device
    per_round: list[list[float]] = [[] for _ in methods]
    progress = tqdm(total=rounds * len(methods), desc="benchmark", unit="config", file=sys.stderr, leave=False)
    with torch.inference_mode():
        for round_index in range(rounds):
            order = list(enumerate(methods))
            for slot, method in order if round_index % 2 == 0 else order[::-1]:
                rv.remove(model) if method is None else rv.apply(model, method)
                for _ in range(warmup):
                    model(images)
                _synchronize(device)
                start = time.perf_counter()
                for _ in range(iters):
                    model(images)
                _synchronize(device)
                per_round[slot].append((time.perf_counter() - start) / iters)
                progress.update()
            if after_round is not None:
                after_round(per_round)
    progress.close()
    rv.remove(model)
    return per_round


def macs_and_tokens(model: nn.Module, method: Method | None) -> tuple[int, list[int]]:
    """MACs per image and the patch tokens leaving each block, under `method` (None = untouched)."""
    if method is None:
        return count_macs(model), [model.patch_embed.num_patches] * len(model.blocks)
    rv.apply(model, method)
    with rv.record(model) as trace:
        macs = count_macs(model)
    rv.remove(model)
    return macs, [layer.num_tokens for layer in trace.layers]


METHODS = ("evit", "imagepiece", "tome")


def configurations(model: nn.Module, keep_rates: tuple[float, ...], fuse: bool,
                   kinds: tuple[str, ...] = METHODS) -> list[tuple[str, float | None, Method | None]]:
    """(method name, keep rate, method) of every configuration, the untouched model first.

    At keep rate 1.0 only EViT runs (it measures the cost of the patch itself); the others get EViT's budget.
    """
    depth, patches = len(model.blocks), model.patch_embed.num_patches
    configs: list[tuple[str, float | None, Method | None]] = [("untouched", None, None)]
    for rate in keep_rates:
        evit = rv.EViT(keep_rate=rate, fuse=fuse)
        if "evit" in kinds or rate == 1.0:
            configs.append(("EViT", rate, evit))
        if rate == 1.0:
            continue
        if "imagepiece" in kinds:
            configs.append(("ImagePiece", rate, rv.ImagePiece(keep_rate=rate, fuse=fuse)))
        if "tome" in kinds:
            final = token_counts(evit, depth, patches)[-1]
            configs.append(("ToMe", rate, tome_for_budget(depth, patches, final)))
    return configs


def label(name: str, rate: float | None, method: Method | None, fuse: bool) -> str:
    if method is None:
        return "untouched"
    if isinstance(method, rv.ToMe):
        return f"ToMe ~EViT {rate}"
    return f"{name} {rate}" + ("" if fuse else " no fuse")


def run(model_name: str = "deit_small_patch16_224", device: str = "auto", dtype: str = "fp32", batch: int = 16,
        img_size: int = 224, keep_rates: tuple[float, ...] = (1.0, 0.7, 0.5), fuse: bool = True,
        warmup: int = 3, iters: int = 10, rounds: int = 3, pretrained: bool = False,
        kinds: tuple[str, ...] = METHODS, partial: Path | None = None) -> dict:
    """Measure and return the conditions and one Row per configuration (the untouched model first).

    With `partial`, the results so far are written there (JSON) after every round, so an interrupted run keeps
    its completed rounds.
    """
    resolved = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                            "cpu" if device == "auto" else device)
    model = timm.create_model(model_name, pretrained=pretrained, img_size=img_size).eval()
    configs = configurations(model, keep_rates, fuse, kinds)
    methods = [method for _, _, method in configs]
    counted = [macs_and_tokens(model, method) for method in methods]
    model = model.to(resolved, DTYPES[dtype])
    images = torch.randn(batch, 3, img_size, img_size, device=resolved, dtype=DTYPES[dtype])
    conditions = {
        "model": model_name, "weights": "pretrained" if pretrained else "random (speed does not depend on them)",
        "device": describe_device(resolved), "dtype": dtype, "batch": batch, "image_size": img_size,
        "attention_kernel": describe_attention(model, resolved),
        "warmup": f"{warmup} passes per configuration per round",
        "timing": f"{iters} timed passes x {rounds} rounds, configurations interleaved, median round",
        "torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
    }

    def result(rounds_seconds: list[list[float]]) -> dict:
        rows = _rows(configs, counted, rounds_seconds, batch, fuse)
        done = min(len(times) for times in rounds_seconds)
        return {"conditions": conditions, "rounds_done": done, "rows": [asdict(row) for row in rows]}

    def save(rounds_seconds: list[list[float]]) -> None:
        if partial is not None:
            _write_json(partial, result(rounds_seconds))

    return result(time_configurations(model, images, methods, warmup, iters, rounds, save))


def _rows(configs, counted, rounds_seconds, batch: int, fuse: bool) -> list[Row]:
    done = min(len(times) for times in rounds_seconds)
    seconds = [statistics.median(times[:done]) for times in rounds_seconds]
    macs_untouched = counted[0][0]
    evit_seconds = {rate: secs for (name, rate, _), secs in zip(configs, seconds) if name == "EViT"}
    rows = []
    for (name, rate, method), (count, tokens), secs, times in zip(configs, counted, seconds, rounds_seconds):
        speedup, ceiling = seconds[0] / secs, macs_untouched / count
        times = times[:done]
        rows.append(Row(
            label=label(name, rate, method, fuse), method=name, keep_rate=rate, tokens=tokens, gmacs=count / 1e9,
            images_per_second=batch / secs, speedup=speedup, ceiling=ceiling, of_ceiling=speedup / ceiling,
            spread=(max(times) - min(times)) / secs, round_seconds=times,
            vs_evit=evit_seconds[rate] / secs if rate in evit_seconds and name != "untouched" else None,
        ))
    return rows


def _write_json(path: Path, result: dict) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(path)


def format_report(result: dict) -> str:
    """The conditions and the table, as printed."""
    lines = [f"{key:>17}: {value}" for key, value in result["conditions"].items()]
    lines.append("")
    header = f"{'configuration':<24}{'final tokens':>13}{'GMACs':>7}{'img/s':>10}{'speed-up':>10}" \
             f"{'MACs ceiling':>14}{'of ceiling':>12}{'vs EViT':>9}{'spread':>9}"
    lines += [header, "-" * len(header)]
    for row in result["rows"]:
        vs_evit = "" if row["vs_evit"] is None else f"{row['vs_evit']:.0%}"
        lines.append(f"{row['label']:<24}{row['tokens'][-1]:>13}{row['gmacs']:>7.2f}{row['images_per_second']:>10.1f}"
                     f"{row['speedup']:>9.2f}x{row['ceiling']:>13.2f}x{row['of_ceiling']:>11.0%}{vs_evit:>9}"
                     f"{row['spread']:>9.1%}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Speed-up against keep rate, beside the MACs ceiling, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for colour, name in enumerate(["EViT", "ImagePiece", "ToMe"]):
        rows = [row for row in result["rows"] if row["method"] == name]
        if not rows:
            continue
        rates = [row["keep_rate"] for row in rows]
        axes.plot(rates, [row["ceiling"] for row in rows], "--", color=f"C{colour}", alpha=0.6)
        axes.plot(rates, [row["speedup"] for row in rows], "o-", color=f"C{colour}", label=f"{name} measured")
    axes.plot([], [], "--", color="gray", label="MACs ceiling (dashed)")
    axes.axhline(1.0, color="black", linewidth=0.6)
    axes.invert_xaxis()
    axes.set_xlabel("keep rate (ToMe: EViT's final token budget)")
    axes.set_ylabel("throughput / untouched model")
    c = result["conditions"]
    axes.set_title(f"{c['model']}, {c['device'].split(',')[0]}\n{c['dtype']}, batch {c['batch']}, "
                   f"{c['image_size']} px", fontsize=8)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m retokviz.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="deit_small_patch16_224", help="a timm ViT name")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.7, 0.5], help="keep rates")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="methods to compare (EViT always runs at keep rate 1.0)")
    parser.add_argument("--no-fuse", action="store_true", help="drop the inattentive tokens instead of fusing")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes before each timed run")
    parser.add_argument("--iters", type=int, default=10, help="timed passes per configuration per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pretrained", action="store_true", help="load timm's weights (needs them cached)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="also draw speed-up against keep rate here (PNG)")
    args = parser.parse_args(argv)
    for name in ("batch", "img_size", "iters", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    bad = [rate for rate in args.keep if not 0.0 < rate <= 1.0]
    if bad:
        parser.error(f"--keep rates must be in (0, 1], got {bad[0]}")
    result = run(args.model, args.device, args.dtype, args.batch, args.img_size, tuple(args.keep),
                 not args.no_fuse, args.warmup, args.iters, args.rounds, args.pretrained, tuple(args.methods),
                 partial=args.json)
    print(format_report(result))
    if args.json:
        _write_json(args.json, result)
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(result, args.plot)
    return result


if __name__ == "__main__":
    main()
