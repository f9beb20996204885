"""Eager or compiled: each method run eagerly and through `rv.compile_for_inference`, against the *eager* untouched
model, all timed in the same interleaved rounds (the sweep compares compiled rows with the compiled untouched model
only, since a sweep is either compiled or not).

    OMP_NUM_THREADS=2 python benchmarks/compiled_or_eager.py
    OMP_NUM_THREADS=2 python benchmarks/compiled_or_eager.py --model deit_small_patch16_224 --iters 10 --rounds 5

Model: a bundled checkpoint (default the showcase baseline) or a timm model, at one batch size (default 1); every
method at keep rate 0.7's token budget (rv.method_at). Timing: `retokviz.sweep.timing.time_interleaved` (each
configuration's first pass, which compiles, kept out of the rounds; the configurations take turns in every round;
the median round).
"""
from __future__ import annotations

import argparse
import platform
from contextlib import nullcontext
from pathlib import Path

import timm
import torch

import retokviz as rv
from retokviz._util.device import describe_device
from retokviz._util.files import write_atomically
from retokviz.sweep.timing import time_interleaved

METHODS = ("evit", "imagepiece", "tome")


def runner(forward):
    """A sweep runner for a fixed forward function (a model, eager or compiled)."""
    return lambda: nullcontext(forward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="showcase-baseline", help="a bundled checkpoint")
    parser.add_argument("--model", help="a timm model instead, with random weights (speed does not depend on them)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--keep", type=float, default=0.7)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write the table here as markdown (else print it)")
    args = parser.parse_args()

    def build() -> torch.nn.Module:
        if args.model:
            return timm.create_model(args.model, pretrained=False).eval()
        return rv.load_checkpoint(args.checkpoint)

    untouched = build()
    configurations = {"untouched": untouched}
    for name in METHODS:
        configurations[name] = rv.apply(build(), rv.method_at(name, untouched, keep_rate=args.keep))
    labels, runners = [], []
    for name, model in configurations.items():
        labels += [(name, "eager"), (name, "compiled")]
        runners += [runner(model), runner(rv.compile_for_inference(model))]
    height, width = untouched.patch_embed.img_size
    images = torch.randn(args.batch, 3, height, width)
    timings = time_interleaved(runners, images, warmup=args.warmup, iters=args.iters, rounds=args.rounds)
    by_label = dict(zip(labels, timings))
    eager_base, compiled_base = by_label["untouched", "eager"].median, by_label["untouched", "compiled"].median

    device = describe_device(torch.device("cpu"))
    lines = [f"### {args.model or args.checkpoint}, batch {args.batch}", "",
             f"`python benchmarks/compiled_or_eager.py` on {device}, torch "
             f"{torch.__version__}, timm {timm.__version__}, Python {platform.python_version()}; fp32, inference "
             f"mode, {args.warmup} warm-up + {args.iters} timed passes x {args.rounds} interleaved rounds, median "
             f"round. Each method at keep rate {args.keep}'s token budget; compiled = `rv.compile_for_inference` "
             "(its first pass, the compilation, timed apart).", "",
             "| configuration | ms per pass | vs eager untouched | vs compiled untouched | spread | first pass |",
             "|---|---|---|---|---|---|"]
    for (name, mode), timing in by_label.items():
        method = rv.method_of(configurations[name])
        label = "untouched" if method is None else type(method).__name__
        lines.append(f"| {label}, {mode} | {timing.median * 1e3:.2f} | {eager_base / timing.median:.2f}x | "
                     f"{compiled_base / timing.median:.2f}x | {timing.spread:.1%} | {timing.first_seconds:.1f} s |")
    text = "\n".join(lines) + "\n"
    if args.out is None:
        print(text)
    else:
        write_atomically(args.out, lambda file: file.write(text.encode()))
        print(text + f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
