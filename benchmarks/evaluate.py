"""Accuracy against keep rate, and what each method lets go of, for a bundled set of checkpoints on generated test
images of a seed no training run used.

    python benchmarks/evaluate.py --json results/clutter-accuracy.json    # prints docs/results.md's tables
    python benchmarks/evaluate.py --plot results/clutter-accuracy.png     # and draws them
    python benchmarks/evaluate.py --set small                             # the small set instead of the showcase

Off the shelf: EViT, ImagePiece and ToMe applied to the baseline checkpoint, untrained for it. Trained: each
method's own checkpoint (trained at keep rate 0.7), evaluated at every keep rate. ToMe has no keep rate: at keep
rate k it gets a per-block r that ends with EViT's final token count at k (`rv.method_at`, the same budget the
benchmark uses). For each, the patches let go of are compared with the digit masks: the share that is background,
the share a random choice would give, and the lift (share - random) / (1 - random), overall and after each block
that let something go. At the keep rate of the per-block table (0.7), a last table gives the accuracy, the change
from the baseline and the lift with their 95 % bootstrap intervals over the test images (`rv.intervals`): how far
another draw of as many images could move them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch
from torch import nn

import retokviz as rv
from retokviz.models import bundled
from retokviz.models.bundled import DEFAULT_SET, SETS
from retokviz.methods.base import Methods
from retokviz.methods.budget import method_at
from retokviz.methods.compose import token_counts
from retokviz.measure.intervals import bootstrap, paired_difference, share
from retokviz.measure.metrics import correct, let_go_counts
from retokviz._util.files import check_output_files, figure_format, write_atomically
from retokviz.views.figure import Figure
from retokviz.views.palette import method_colour

RATES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
SEED = bundled.TEST_SEED      # the test images' seed, which no training run and no design choice used
CHECKPOINTS = bundled.checkpoints()    # method (as people write it) -> the bundled checkpoint trained with it


def check_rates(rates: tuple[float, ...]) -> tuple[float, ...]:
    """`rates` as floats, each in (0, 1] and given once (one table column each).

    Raises:
        ValueError: no rates, a rate outside (0, 1], or one given twice; the message names it.
    """
    rates = tuple(float(rate) for rate in rates)
    if not rates:
        raise ValueError("rates is empty; give at least one keep rate in (0, 1]")
    for index, rate in enumerate(rates):
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"keep rates must be in (0, 1], got {rate}")
        if rate in rates[:index]:
            raise ValueError(f"keep rate {rate} is given more than once in {list(rates)}; give each rate once")
    return rates


def final_tokens(model: nn.Module) -> int:
    """The patch tokens leaving the last block of `model` under the method applied to it."""
    return token_counts(rv.method_of(model), len(model.blocks), model.patch_embed.num_patches)[-1]


def measure(model: nn.Module, method: Methods, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
            progress: bool, baseline_correct: torch.Tensor | None = None) -> dict:
    """Accuracy, final tokens and background removed (overall and after each reduction block) of `model` running
    `method` (the model is as before after), with 95 % bootstrap intervals over the images for the accuracy, the
    change from the baseline (paired: the same images) and the overall lift.

    Args:
        images: [B, 3, H, W]; labels: [B]; masks: [B, H, W] bool, the object's pixels.
        baseline_correct: [B] bool, whether the baseline classified each image right; None: no change interval.
    """
    with rv.applied(model, method):
        counts = let_go_counts(model, images, masks, progress=progress)
        every = counts.by_block(every_block=True)
        removed = every[max(every)]                      # all that was let go of, by the last block
        # the blocks that let something go (the reduction blocks that did anything)
        by_block = {block: value for block, value in every.items()
                    if value.removed > (every[block - 1].removed if block else 0.0)}
        right = correct(model, images, labels, progress=progress)
        tokens = final_tokens(model)
    intervals = {"accuracy_interval": list(bootstrap(share, right)), "lift_interval": list(counts.lift_interval())}
    if baseline_correct is not None:
        intervals["change_interval"] = list(bootstrap(paired_difference, right, baseline_correct))
    return {"accuracy": float(share(right)), "tokens": tokens,
            **dataclasses.asdict(removed), "lift": removed.lift, **intervals,
            "by_block": {str(block): {**dataclasses.asdict(value), "lift": value.lift}
                         for block, value in by_block.items()}}


def evaluate(test_size: int = 1000, seed: int = SEED, rates: tuple[float, ...] = RATES,
             directory: str | None = None, progress: bool = False, checkpoint_set: str = DEFAULT_SET) -> dict:
    """Accuracy and background removed per method, keep rate, off the shelf and trained, on `test_size` generated
    test images of `seed`, at the models' image size.

    Raises:
        ValueError: a keep rate outside (0, 1] or given twice, or an unknown checkpoint set.
    """
    rates = check_rates(rates)
    checkpoints = bundled.checkpoints(checkpoint_set)
    baseline = rv.load_checkpoint(checkpoints["none"], directory=directory)
    image_size = baseline.patch_embed.img_size[0]
    images, labels, masks = rv.data.make_clutter(test_size, seed, split="test", image_size=image_size)
    baseline_correct = correct(baseline, images, labels, progress=progress)
    rows = [{"method": "none", "setting": "baseline", "keep_rate": 1.0,
             "accuracy": float(share(baseline_correct)),
             "accuracy_interval": list(bootstrap(share, baseline_correct))}]
    for name, checkpoint in checkpoints.items():
        if name == "none":
            continue
        trained = rv.load_checkpoint(checkpoint, directory=directory)
        # off the shelf: the method's defaults; trained: the checkpoint's own settings, at each keep rate. A learned
        # method (DynamicViT) has no off-the-shelf setting: its predictors are trained with the model.
        settings = (("off the shelf", baseline, None), ("trained", trained, rv.method_of(trained)))
        for setting, model, template in settings[1:] if rv.method_of(trained).owns_modules else settings:
            for rate in rates:
                method = method_at(name if template is None else template, model, keep_rate=rate)
                rows.append({"method": name, "setting": setting, "keep_rate": rate,
                             **measure(model, method, images, labels, masks, progress, baseline_correct)})
    used = set(checkpoints.values())
    conditions = {"checkpoint_set": checkpoint_set, "test_images": test_size, "data_seed": seed, "split": "test",
                  "image_size": image_size, "torch": torch.__version__,
                  "checkpoints": {info.name: info.recipe for info in rv.checkpoints(directory) if info.name in used}}
    return {"conditions": conditions, "rows": rows}


def _methods(rows: list[dict]) -> list[str]:
    """The methods of the rows, in order, without the baseline."""
    return list(dict.fromkeys(row["method"] for row in rows if row["method"] != "none"))


def _row(rows: list[dict], name: str, setting: str, rate: float) -> dict:
    """The row of one method, setting and keep rate."""
    return next(row for row in rows if row["method"] == name and row["setting"] == setting and row["keep_rate"] == rate)


def _table(rows: list[dict], rates: list[float], title: str, cell) -> list[str]:
    """One Markdown table: a line per method and setting, a column per keep rate, `cell(row)` in each."""
    lines = [f"| {title} | " + " | ".join(f"keep {rate}" for rate in rates) + " |", "|---|" + "---|" * len(rates)]
    for name in _methods(rows):
        for setting in ("off the shelf", "trained"):
            if not any(row["method"] == name and row["setting"] == setting for row in rows):
                continue                     # a learned method has no off-the-shelf rows
            cells = [cell(_row(rows, name, setting, rate)) for rate in rates]
            lines.append(f"| {name}, {setting} | " + " | ".join(cells) + " |")
    return lines


def _removed_cell(row: dict) -> str:
    """"80% of 30% (random 75%)": background among the patches let go of, or "-" where none was."""
    if row["removed"] == 0:
        return "-"
    return f"{row['background']:.0%} of {row['removed']:.0%} (random {row['random']:.0%})"


def _lift_cell(row: dict) -> str:
    """The background lift of what was let go of, or "-" where nothing was."""
    return "-" if row["removed"] == 0 else f"{row['lift']:.2f}"


def _by_block_table(rows: list[dict], rate: float) -> list[str]:
    """Markdown: the lift of the patches let go of up to each reduction block, at keep rate `rate`."""
    chosen = [row for row in rows if row["method"] != "none" and row["keep_rate"] == rate]
    if not chosen:
        return []
    blocks = sorted({int(block) for row in chosen for block in row["by_block"]})
    lines = [f"| lift after block, keep {rate} | " + " | ".join(f"block {block}" for block in blocks) + " |",
             "|---|" + "---|" * len(blocks)]
    for row in chosen:
        cells = []
        for block in blocks:
            value = row["by_block"].get(str(block))
            cells.append("-" if value is None or value["removed"] == 0 else
                         f"{value['lift']:.2f} ({value['removed']:.0%})")
        lines.append(f"| {row['method']}, {row['setting']} | " + " | ".join(cells) + " |")
    return lines


def _interval_table(rows: list[dict], rate: float) -> list[str]:
    """Markdown: at keep rate `rate`, each model's top-1, its change from the baseline and its lift, each with its
    95 % bootstrap interval over the test images (rows measured before the intervals were recorded are left out)."""
    chosen = [row for row in rows if row["method"] != "none" and row["keep_rate"] == rate and "lift_interval" in row]
    if not chosen:
        return []
    baseline = next(row for row in rows if row["method"] == "none")["accuracy"]

    def points(value: float) -> str:
        return f"{100 * value:+.1f}"

    lines = [f"| keep {rate}, 95 % intervals over the images | top-1 | change from the baseline (points) | "
             "background lift |", "|---|---|---|---|"]
    for row in chosen:
        (low, high), (lift_low, lift_high) = row["accuracy_interval"], row["lift_interval"]
        change = row.get("change_interval")
        lines.append(f"| {row['method']}, {row['setting']} | {row['accuracy']:.1%} [{low:.1%}, {high:.1%}] | "
                     + (f"{points(row['accuracy'] - baseline)} [{points(change[0])}, {points(change[1])}]"
                        if change else "-")
                     + " | " + ("-" if row["removed"] == 0 else
                                f"{row['lift']:.3f} [{lift_low:.3f}, {lift_high:.3f}]") + " |")
    return lines


def format_tables(result: dict, block_rate: float = 0.7) -> str:
    """Markdown: accuracy by keep rate, background removed and its lift by keep rate, the lift after each
    reduction block at `block_rate` (where it was measured), and at `block_rate` the figures with their
    intervals."""
    rows = result["rows"]
    rates = sorted({row["keep_rate"] for row in rows if row["method"] != "none"}, reverse=True)
    first = next(row for row in rows if row["method"] == "none")
    interval = (f" [{first['accuracy_interval'][0]:.1%}, {first['accuracy_interval'][1]:.1%}]"
                if "accuracy_interval" in first else "")
    return "\n".join([f"Baseline (no reduction): {first['accuracy']:.1%}{interval}", "",
                      *_table(rows, rates, "method", lambda row: f"{row['accuracy']:.1%}"), "",
                      *_table(rows, rates, "method (patches let go of)", _removed_cell), "",
                      *_table(rows, rates, "method (background lift)", _lift_cell), "",
                      *_by_block_table(rows, block_rate),
                      *(["", *intervals] if (intervals := _interval_table(rows, block_rate)) else [])])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python benchmarks/evaluate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=SEED, help=f"the test images' seed (default {SEED}, which no "
                                                                "training run used)")
    parser.add_argument("--set", default=DEFAULT_SET, choices=list(SETS), help="which bundled set to evaluate")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES), help="keep rates in (0, 1], once each")
    parser.add_argument("--checkpoints", help="the directory of the checkpoints (default: data/)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="also draw them into this image (png, svg, pdf)")
    args = parser.parse_args(argv)
    if args.test_size < 1:
        parser.error(f"--test-size must be >= 1, got {args.test_size}")
    try:
        rates = check_rates(args.rates)
    except ValueError as error:
        parser.error(f"--rates: {error}")
    if args.plot is not None:
        try:
            figure_format(args.plot, "--plot")
        except ValueError as error:
            parser.error(str(error))
    check_output_files(parser, json=args.json, plot=args.plot)     # before any model runs
    result = evaluate(args.test_size, args.seed, rates, args.checkpoints, progress=True, checkpoint_set=args.set)
    print(format_tables(result))
    if args.json:   # every file written whole, or not at all
        text = (json.dumps(result, indent=2) + "\n").encode()
        write_atomically(args.json, lambda file: file.write(text))
    if args.plot:
        figure = plot_evaluation(result)
        write_atomically(args.plot, lambda file: figure.savefig(file, format=figure_format(args.plot, "--plot"), dpi=110))
    return result


if __name__ == "__main__":
    main()


def _methods_in(rows: list[dict]) -> list[str]:
    """The method labels of result rows, in order of first appearance, without the untouched model or baseline."""
    return list(dict.fromkeys(row["method"] for row in rows if row["method"] not in ("untouched", "none")))


def _series(rows: list[dict], name: str, setting: str, key: str) -> tuple[list[float], list[float]]:
    """(keep rates, values of `key`) of one method and setting, by keep rate."""
    picked = sorted((row["keep_rate"], row[key]) for row in rows if row["method"] == name and row["setting"] == setting)
    return [rate for rate, _ in picked], [value for _, value in picked]


def plot_evaluation(result: dict) -> Figure:
    """Two panels: accuracy against keep rate, and the background lift of the patches let go of,
    (share of background - random share) / (1 - random share), per method; solid lines trained, dashed off the
    shelf. A lift of 0 is what a random choice gives, 1 means only background was let go of.

    Args:
        result: what `evaluate` returns (or its JSON): "conditions" with "test_images", and
            "rows", the baseline's (method "none") and one per method, setting and keep rate.
    """
    rows = result["rows"]
    baseline = next(row for row in rows if row["method"] == "none")["accuracy"]
    figure = Figure(figsize=(9.0, 3.4))
    left, right = figure.subplots(1, 2)
    left.axhline(100 * baseline, color="gray", linewidth=1, label=f"baseline ({baseline:.1%})")
    for order, name in enumerate(_methods_in(rows)):
        colour = method_colour(name, order)
        for setting, style in (("trained", "-"), ("off the shelf", "--")):
            rates, accuracies = _series(rows, name, setting, "accuracy")
            if not rates:                    # a learned method has no off-the-shelf rows: no empty legend entry
                continue
            left.plot(rates, [100 * value for value in accuracies], style, marker="o", markersize=3, color=colour,
                      label=f"{name}, {setting}")
            rates, lifts = _series(rows, name, setting, "lift")
            points = [(rate, lift) for rate, lift in zip(rates, lifts) if not math.isnan(lift)]  # NaN: none let go
            right.plot([rate for rate, _ in points], [lift for _, lift in points], style, marker="o",
                       markersize=3, color=colour)
    right.axhline(0.0, color="gray", linewidth=1, label="a random choice")
    left.set(xlabel="keep rate", ylabel="test accuracy (%)", title="accuracy")
    right.set(xlabel="keep rate", ylabel="background lift", title="background lift of the patches let go of")
    for ax in (left, right):
        ax.invert_xaxis()                                   # less kept to the right
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
    left.legend(fontsize=6, ncol=2)
    right.legend(fontsize=6)
    conditions = result["conditions"]
    seed = f", seed {conditions['data_seed']}" if "data_seed" in conditions else ""
    figure.suptitle(f"bundled checkpoints on {conditions['test_images']} generated test images{seed}", fontsize=9)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.84, bottom=0.15, wspace=0.25)
    return figure
