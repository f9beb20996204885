"""Where a reduction's time goes, by operator: each method's forward profiled (torch.profiler) against the untouched
model's on the same input, and the difference per operator, the cost the reduction step adds.

    OMP_NUM_THREADS=2 python benchmarks/profile_reduction.py --out docs/speed-profile.md

Models and batches: the bundled showcase baseline at batch 1 and 64, and DeiT-S (random weights: speed does not
depend on them) at batch 1 and 16; every method at keep rate 0.7's token budget (rv.method_at). Each configuration
runs `--warmup` untimed passes, then `--iters` profiled ones; times are CPU self times per forward pass.
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import timm
import torch
from torch.profiler import ProfilerActivity, profile

import retokviz as rv
from retokviz._util.device import describe_device
from retokviz._util.files import write_atomically

CASES = (("showcase-baseline", 1), ("showcase-baseline", 64), ("deit_small_patch16_224", 1),
         ("deit_small_patch16_224", 16))
METHODS = ("evit", "imagepiece", "tome")
KEEP_RATE = 0.7
TOP = 8


def build(name: str) -> torch.nn.Module:
    if name.startswith("showcase"):
        return rv.load_checkpoint(name)
    return timm.create_model(name, pretrained=False).eval()


def op_times(model: torch.nn.Module, images: torch.Tensor, warmup: int, iters: int) -> tuple[dict, float]:
    """{operator: (calls, self CPU microseconds)} per forward pass, and the total per pass in ms."""
    with torch.inference_mode():
        for _ in range(warmup):
            model(images)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(iters):
                model(images)
    table = {event.key: (event.count / iters, event.self_cpu_time_total / iters) for event in prof.key_averages()}
    total = sum(us for _, us in table.values()) / 1000
    return table, total


def profile_case(name: str, batch: int, warmup: int, iters: int) -> list[str]:
    model = build(name)
    rv.remove(model)
    size = model.patch_embed.img_size
    images = torch.randn(batch, 3, *size)
    base, base_total = op_times(model, images, warmup, iters)
    lines = [f"### {name}, batch {batch}", "",
             f"untouched: {base_total:.2f} ms of operator self time per pass", "",
             "| method | ms per pass | vs untouched | operators the reduction adds (calls per pass, extra ms) |",
             "|---|---|---|---|"]
    for method_name in METHODS:
        method = rv.method_at(method_name, model, keep_rate=KEEP_RATE)
        with rv.applied(model, method):
            table, total = op_times(model, images, warmup, iters)
        extra = []
        for key, (calls, us) in table.items():
            base_calls, base_us = base.get(key, (0.0, 0.0))
            if calls > base_calls or key not in base:
                extra.append((us - base_us if key in base else us, key, calls - base_calls))
        extra.sort(reverse=True)
        added = ", ".join(f"{key} ({calls:.0f}, {us / 1000:+.2f})" for us, key, calls in extra[:TOP])
        lines.append(f"| {rv.methods.registry.label(method_name)} | {total:.2f} | {total / base_total:.2f}x | {added} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python benchmarks/profile_reduction.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="a Markdown file for the tables")
    args = parser.parse_args(argv)
    head = ["# Where a reduction's time goes", "",
            f"`python benchmarks/profile_reduction.py` on {describe_device(torch.device('cpu'))}, torch "
            f"{torch.__version__}, timm {timm.__version__}, {platform.python_version()}; {args.warmup} warm-up and "
            f"{args.iters} profiled passes per configuration, inference mode, fp32. Each method at keep rate "
            f"{KEEP_RATE}'s token budget; times are operator self times (the profiler's own overhead included, so "
            "compare rows, not against the sweep's wall-clock figures).", ""]
    body = []
    for name, batch in CASES:
        body += profile_case(name, batch, args.warmup, args.iters)
        print("\n".join(body[-8:]))
    text = "\n".join(head + body)
    if args.out:
        data = text.encode()
        write_atomically(args.out, lambda file: file.write(data))
    return text


if __name__ == "__main__":
    main()
