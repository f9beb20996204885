"""Accuracy against keep rate, and background removed, for the bundled checkpoints on the generated test set.

    python -m retokviz.evaluate --json results/clutter-accuracy.json      # prints the README's tables
    python -m retokviz.evaluate --plot results/clutter-accuracy.png       # and draws them

Off the shelf: EViT, ImagePiece and ToMe applied to the baseline checkpoint, untrained for it. Trained: each
method's own checkpoint (trained at keep rate 0.7), evaluated at every keep rate. ToMe has no keep rate: at keep
rate k it gets a per-block r that ends with EViT's final token count at k (the same budget the benchmark uses).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

import retokviz as rv
from retokviz.methods.base import Method
from retokviz.methods.compose import token_counts, tome_for_budget
from retokviz.metrics import accuracy, background_removed

RATES = (1.0, 0.9, 0.7, 0.5, 0.3)
CHECKPOINTS = {  # method -> the bundled checkpoint trained with it
    "none": "clutter-vit-baseline",
    "EViT": "clutter-vit-evit-0.7",
    "ImagePiece": "clutter-vit-imagepiece-0.7-stem",
    "ToMe": "clutter-vit-tome",
}


def method_at(name: str, rate: float, model: nn.Module, trained: Method | None = None) -> Method:
    """`name`'s method at keep rate `rate` for `model` (its trained settings kept, where it has them)."""
    depth, patches = len(model.blocks), model.patch_embed.num_patches
    if name == "ToMe":
        evit = rv.EViT(keep_rate=rate)
        return tome_for_budget(depth, patches, token_counts(evit, depth, patches)[-1])
    if isinstance(trained, (rv.EViT, rv.ImagePiece)):
        return dataclasses.replace(trained, keep_rate=rate)
    return {"EViT": rv.EViT, "ImagePiece": rv.ImagePiece}[name](keep_rate=rate)


def evaluate(test_size: int = 1000, seed: int = 0, rates: tuple[float, ...] = RATES, directory: str | None = None,
             progress: bool = False) -> dict:
    """Accuracy and background removed per method, keep rate, off the shelf and trained."""
    images, labels, masks = rv.data.make_clutter(test_size, seed, split="test")
    baseline = rv.load_checkpoint(CHECKPOINTS["none"], directory=directory)
    rows = [{"method": "none", "setting": "baseline", "keep_rate": 1.0,
             "accuracy": accuracy(baseline, images, labels, progress=progress)}]
    for name in ("EViT", "ImagePiece", "ToMe"):
        trained = rv.load_checkpoint(CHECKPOINTS[name], directory=directory)
        trained_method = rv.method_of(trained)
        for setting, model in (("off the shelf", baseline), ("trained", trained)):
            for rate in rates:
                rv.apply(model, method_at(name, rate, model, trained_method if setting == "trained" else None))
                removed = background_removed(model, images, masks, progress=progress)
                rows.append({"method": name, "setting": setting, "keep_rate": rate,
                             "accuracy": accuracy(model, images, labels, progress=progress),
                             "tokens": token_counts(rv.method_of(model), len(model.blocks),
                                                    model.patch_embed.num_patches)[-1],
                             **dataclasses.asdict(removed)})
        rv.remove(baseline)
    used = set(CHECKPOINTS.values())
    conditions = {"test_images": test_size, "data_seed": seed, "split": "test", "torch": torch.__version__,
                  "checkpoints": {info.name: info.recipe for info in rv.checkpoints(directory) if info.name in used}}
    return {"conditions": conditions, "rows": rows}


def format_tables(result: dict) -> str:
    """Markdown: accuracy by keep rate, then background removed by keep rate."""
    rows = result["rows"]
    rates = sorted({row["keep_rate"] for row in rows if row["method"] != "none"}, reverse=True)
    baseline = next(row for row in rows if row["method"] == "none")["accuracy"]
    lines = [f"Baseline (no reduction): {baseline:.1%}", "",
             "| method | " + " | ".join(f"keep {rate}" for rate in rates) + " |",
             "|---|" + "---|" * len(rates)]
    for name in ("EViT", "ImagePiece", "ToMe"):
        for setting in ("off the shelf", "trained"):
            cells = [f"{row['accuracy']:.1%}" for rate in rates for row in rows
                     if row["method"] == name and row["setting"] == setting and row["keep_rate"] == rate]
            lines.append(f"| {name}, {setting} | " + " | ".join(cells) + " |")
    lines += ["", "| method (patches let go of) | " + " | ".join(f"keep {rate}" for rate in rates) + " |",
              "|---|" + "---|" * len(rates)]
    for name in ("EViT", "ImagePiece", "ToMe"):
        for setting in ("off the shelf", "trained"):
            cells = []
            for rate in rates:
                row = next(r for r in rows if r["method"] == name and r["setting"] == setting and r["keep_rate"] == rate)
                cells.append("-" if row["removed"] == 0 else
                             f"{row['background']:.0%} of {row['removed']:.0%} (random {row['random']:.0%})")
            lines.append(f"| {name}, {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


METHOD_COLOURS = {"EViT": "tab:blue", "ImagePiece": "tab:orange", "ToMe": "tab:green"}


def _series(rows: list[dict], name: str, setting: str, key: str) -> tuple[list[float], list[float]]:
    """(keep rates, values of `key`) of one method and setting, by keep rate."""
    picked = sorted((row["keep_rate"], row[key]) for row in rows if row["method"] == name and row["setting"] == setting)
    return [rate for rate, _ in picked], [value for _, value in picked]


def plot_evaluation(result: dict) -> Figure:
    """Two panels from `evaluate`'s result: accuracy against keep rate, and the share of background among the
    patches let go of (with the random share), per method; solid lines trained, dashed off the shelf."""
    rows = result["rows"]
    baseline = next(row for row in rows if row["method"] == "none")["accuracy"]
    figure = Figure(figsize=(9.0, 3.4))
    left, right = figure.subplots(1, 2)
    left.axhline(100 * baseline, color="gray", linewidth=1, label=f"baseline ({baseline:.1%})")
    for name, colour in METHOD_COLOURS.items():
        for setting, style in (("trained", "-"), ("off the shelf", "--")):
            rates, accuracies = _series(rows, name, setting, "accuracy")
            left.plot(rates, [100 * value for value in accuracies], style, marker="o", markersize=3, color=colour,
                      label=f"{name}, {setting}")
            rates, shares = _series(rows, name, setting, "background")
            points = [(rate, share) for rate, share in zip(rates, shares) if not math.isnan(share)]  # NaN: none let go
            right.plot([rate for rate, _ in points], [100 * share for _, share in points], style, marker="o",
                       markersize=3, color=colour)
    random = [row["random"] for row in rows if "random" in row]
    right.axhline(100 * sum(random) / len(random), color="gray", linewidth=1, label="a random choice")
    left.set(xlabel="keep rate", ylabel="test accuracy (%)", title="accuracy")
    right.set(xlabel="keep rate", ylabel="background (%)", title="background among the patches let go of")
    for ax in (left, right):
        ax.invert_xaxis()                                   # less kept to the right
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
    left.legend(fontsize=6, ncol=2)
    right.legend(fontsize=6)
    images = result["conditions"]["test_images"]
    figure.suptitle(f"bundled checkpoints on {images} generated test images", fontsize=9)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.84, bottom=0.15, wspace=0.25)
    return figure


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m retokviz.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--checkpoints", help="the directory of the checkpoints (default: data/)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--plot", type=Path, help="also draw them into this image (png, svg, pdf)")
    args = parser.parse_args(argv)
    if args.test_size < 1:
        parser.error(f"--test-size must be >= 1, got {args.test_size}")
    bad = [rate for rate in args.rates if not 0.0 < rate <= 1.0]
    if bad:
        parser.error(f"--rates must be in (0, 1], got {bad[0]}")
    result = evaluate(args.test_size, args.seed, tuple(args.rates), args.checkpoints, progress=True)
    print(format_tables(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_evaluation(result).savefig(args.plot, dpi=110)
    return result


if __name__ == "__main__":
    main()
