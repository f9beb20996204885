"""Accuracy against keep rate, and background removed, for the bundled checkpoints on the generated test set.

    python -m retokviz.evaluate --json results/clutter-accuracy.json      # prints the README's tables
    python -m retokviz.evaluate --plot results/clutter-accuracy.png       # and draws them

Off the shelf: EViT, ImagePiece and ToMe applied to the baseline checkpoint, untrained for it. Trained: each
method's own checkpoint (trained at keep rate 0.7), evaluated at every keep rate. ToMe has no keep rate: at keep
rate k it gets a per-block r that ends with EViT's final token count at k (`rv.method_at`, the same budget the
benchmark uses).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

import retokviz as rv
from retokviz.methods.budget import Methods, method_at
from retokviz.methods.compose import token_counts
from retokviz.metrics import accuracy, background_removed
from retokviz.paths import check_output_files
from retokviz.render import plot_evaluation

RATES = (1.0, 0.9, 0.7, 0.5, 0.3)
CHECKPOINTS = {  # method (as people write it) -> the bundled checkpoint trained with it
    "none": "clutter-vit-baseline",
    "EViT": "clutter-vit-evit-0.7",
    "ImagePiece": "clutter-vit-imagepiece-0.7-stem",
    "ToMe": "clutter-vit-tome",
}


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
            progress: bool) -> dict:
    """Accuracy, final tokens and background removed of `model` running `method` (the model is as before after).

    Args:
        images: [B, 3, H, W]; labels: [B]; masks: [B, H, W] bool, the object's pixels.
    """
    with rv.applied(model, method):
        removed = background_removed(model, images, masks, progress=progress)
        return {"accuracy": accuracy(model, images, labels, progress=progress), "tokens": final_tokens(model),
                **dataclasses.asdict(removed)}


def evaluate(test_size: int = 1000, seed: int = 0, rates: tuple[float, ...] = RATES, directory: str | None = None,
             progress: bool = False) -> dict:
    """Accuracy and background removed per method, keep rate, off the shelf and trained.

    Raises:
        ValueError: a keep rate outside (0, 1] or given twice.
    """
    rates = check_rates(rates)
    images, labels, masks = rv.data.make_clutter(test_size, seed, split="test")
    baseline = rv.load_checkpoint(CHECKPOINTS["none"], directory=directory)
    rows = [{"method": "none", "setting": "baseline", "keep_rate": 1.0,
             "accuracy": accuracy(baseline, images, labels, progress=progress)}]
    for name, checkpoint in CHECKPOINTS.items():
        if name == "none":
            continue
        trained = rv.load_checkpoint(checkpoint, directory=directory)
        # off the shelf: the method's defaults; trained: the checkpoint's own settings, at each keep rate
        for setting, model, template in (("off the shelf", baseline, None),
                                         ("trained", trained, rv.method_of(trained))):
            for rate in rates:
                method = method_at(name if template is None else template, model, keep_rate=rate)
                rows.append({"method": name, "setting": setting, "keep_rate": rate,
                             **measure(model, method, images, labels, masks, progress)})
    used = set(CHECKPOINTS.values())
    conditions = {"test_images": test_size, "data_seed": seed, "split": "test", "torch": torch.__version__,
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
            cells = [cell(_row(rows, name, setting, rate)) for rate in rates]
            lines.append(f"| {name}, {setting} | " + " | ".join(cells) + " |")
    return lines


def _removed_cell(row: dict) -> str:
    """"80% of 30% (random 75%)": background among the patches let go of, or "-" where none was."""
    if row["removed"] == 0:
        return "-"
    return f"{row['background']:.0%} of {row['removed']:.0%} (random {row['random']:.0%})"


def format_tables(result: dict) -> str:
    """Markdown: accuracy by keep rate, then background removed by keep rate."""
    rows = result["rows"]
    rates = sorted({row["keep_rate"] for row in rows if row["method"] != "none"}, reverse=True)
    baseline = next(row for row in rows if row["method"] == "none")["accuracy"]
    return "\n".join([f"Baseline (no reduction): {baseline:.1%}", "",
                      *_table(rows, rates, "method", lambda row: f"{row['accuracy']:.1%}"), "",
                      *_table(rows, rates, "method (patches let go of)", _removed_cell)])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m retokviz.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
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
    check_output_files(parser, json=args.json, plot=args.plot)     # before any model runs
    result = evaluate(args.test_size, args.seed, rates, args.checkpoints, progress=True)
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
