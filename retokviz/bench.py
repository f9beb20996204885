"""Throughput of a timm ViT with EViT, ImagePiece and ToMe, against the untouched model in the same run.

    python -m retokviz.bench                                   # DeiT-S, CPU, batch 16, fp32, all three methods
    python -m retokviz.bench --device cuda --batch 256 --dtype bf16 --json results/gpu.json
    python -m retokviz.bench --methods evit --keep 1.0 0.9 0.7 0.5

At each keep rate the methods get the same final token budget (`rv.method_at`): ImagePiece has EViT's token count
at every block (its fused token too), and ToMe gets a per-block r that ends with EViT's final count (it merges a
little in every block, so it carries more tokens early on and costs more MACs).

How the timing is kept honest: the model alone is timed, on tensors already on the device, with synchronisation
before every clock read; every configuration is warmed up before it is timed; the configurations take turns over
several rounds and each keeps its median round, so drift in the machine's speed hits all of them alike; speed-ups
are ratios to the untouched model timed in the same rounds, printed beside the ceiling that the ratio of MACs sets.
The conditions are printed with the figures, and so are caveats where the run was too short to mean much: too few
rounds or passes, no warm-up, a speed-up above its MACs ceiling (removing tokens can't beat the arithmetic it
saves: that is noise), or a difference from the untouched model smaller than the rounds' own spread.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
from torch import nn
from tqdm.auto import tqdm

import retokviz as rv
from retokviz.macs import count_macs
from retokviz.methods.budget import Methods, method_at
from retokviz.methods.compose import as_tuple
from retokviz.methods.registry import label, members, method_class, method_names
from retokviz.patch import check_model
from retokviz.paths import check_output_files
from retokviz.render import plot_benchmark

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Below these a measurement carries a caveat: a median and a spread need several rounds, one slow pass should not
# decide a round, and the first pass of a configuration pays for memory allocation and kernel selection.
MIN_ROUNDS, MIN_ITERS, MIN_WARMUP = 3, 5, 1


@dataclass
class Row:
    """One configuration's measurement."""

    label: str
    method: str                # "untouched", or the method's name as people write it ("EViT", "ImagePiece + ToMe")
    keep_rate: float | None    # the method's keep rate; without one of its own (ToMe), EViT's whose budget it gets
    tokens: list[int]          # patch tokens leaving each block
    gmacs: float               # per image
    images_per_second: float
    speedup: float             # throughput / untouched throughput, same run
    ceiling: float             # untouched MACs / these MACs
    of_ceiling: float          # speedup / ceiling
    spread: float              # (slowest - fastest round) / median round: the run's own noise
    round_seconds: list[float]  # seconds per forward pass, each round
    vs_evit: float | None = None  # throughput / EViT's at the same keep rate, same run
    note: str = ""             # "noise: above ceiling" or "within spread" where the figure can't be trusted


@dataclass(frozen=True)
class Config:
    """One configuration to time: the untouched model (method None), or a method at an EViT keep rate's budget."""

    label: str
    method_label: str
    keep_rate: float | None
    method: Methods | None


def describe_device(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU's model and the threads torch uses."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return device.type
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


def _running(model: nn.Module, method: Methods | None) -> AbstractContextManager:
    """A `with` block in which `model` runs `method`, or runs untouched (None); the model is as before after it."""
    return nullcontext(model) if method is None else rv.applied(model, method)


def time_configurations(model: nn.Module, images: torch.Tensor, methods: list[Methods | None], warmup: int,
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
                with _running(model, method):
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
    return per_round


def macs_and_tokens(model: nn.Module, method: Methods | None) -> tuple[int, list[int]]:
    """MACs per image and the patch tokens leaving each block, under `method` (None = untouched)."""
    if method is None:
        return count_macs(model), [model.patch_embed.num_patches] * len(model.blocks)
    with rv.applied(model, method), rv.record(model) as trace:
        macs = count_macs(model)
    return macs, [layer.num_tokens for layer in trace.layers]


def create_model(name: str, img_size: int, pretrained: bool) -> nn.Module:
    """The timm model `name` for `img_size`-pixel images, in eval mode. A model that takes no image size (a CNN)
    is made at its own, so that `check_supported` can say why retokviz can't patch it."""
    try:
        return timm.create_model(name, pretrained=pretrained, img_size=img_size).eval()
    except TypeError as error:
        if "img_size" not in str(error):
            raise
        return timm.create_model(name, pretrained=pretrained).eval()


def names_at(rate: float, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The methods (registry names) timed at keep rate `rate`: at 1.0 only EViT, the cost of the patch itself."""
    return ("evit",) if rate == 1.0 else kinds


def check_supported(model: nn.Module, names: tuple[str, ...]) -> None:
    """Refuse, as `rv.apply` would, a model that can't run one of `names` (registry names), before any budget is
    worked out or anything is timed.

    Raises:
        UnsupportedModelError: not a supported timm ViT, or it lacks what a method needs (e.g. a class token).
    """
    for name in names:
        for member in members(name):
            check_model(model, method_class(member)())


def _with_fuse(method: Methods, fuse: bool) -> Methods:
    """`method` (each member of a composition) with fuse=`fuse` where it has that setting."""
    changed = tuple(dataclasses.replace(member, fuse=fuse)
                    if any(field.name == "fuse" for field in dataclasses.fields(member)) else member
                    for member in as_tuple(method))
    return changed if isinstance(method, tuple) else changed[0]


def config_label(name: str, rate: float, method: Methods, fuse: bool) -> str:
    """"EViT 0.5", "EViT 0.5 no fuse", or, for a method without a keep rate of its own, "ToMe ~EViT 0.5"."""
    if not any(member.has_keep_rate for member in as_tuple(method)):
        return f"{label(name)} ~EViT {rate}"
    return f"{label(name)} {rate}" + ("" if fuse else " no fuse")


def configurations(model: nn.Module, keep_rates: tuple[float, ...], fuse: bool,
                   kinds: tuple[str, ...] = method_names()) -> list[Config]:
    """Every configuration to time, the untouched model first; `kinds` are registry names ("evit", "tome", ...).

    At keep rate 1.0 only EViT runs (see `names_at`); at the other rates each method gets EViT's final token budget
    (`rv.method_at`).
    """
    configs = [Config("untouched", "untouched", None, None)]
    for rate in keep_rates:
        for name in names_at(rate, kinds):
            method = _with_fuse(method_at(name, model, keep_rate=rate), fuse)
            configs.append(Config(config_label(name, rate, method, fuse), label(name), rate, method))
    return configs


def run(model_name: str = "deit_small_patch16_224", device: str = "auto", dtype: str = "fp32", batch: int = 16,
        img_size: int = 224, keep_rates: tuple[float, ...] = (1.0, 0.7, 0.5), fuse: bool = True,
        warmup: int = 3, iters: int = 10, rounds: int = 3, pretrained: bool = False,
        kinds: tuple[str, ...] = method_names(), partial: Path | None = None) -> dict:
    """Measure and return the conditions, one Row per configuration (the untouched model first) and the caveats.

    With `partial`, the results so far are written there (JSON) after every round, so an interrupted run keeps
    its completed rounds.

    Raises:
        UnsupportedModelError: the model can't run the methods (before anything is timed).
    """
    resolved = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                            "cpu" if device == "auto" else device)
    model = create_model(model_name, img_size, pretrained)
    check_supported(model, tuple(dict.fromkeys(name for rate in keep_rates for name in names_at(rate, kinds))))
    configs = configurations(model, keep_rates, fuse, kinds)
    methods = [config.method for config in configs]
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
        rows = _rows(configs, counted, rounds_seconds, batch)
        done = min(len(times) for times in rounds_seconds)
        return {"conditions": conditions, "rounds_done": done, "rows": [asdict(row) for row in rows],
                "caveats": caveats(rows, warmup, iters, done)}

    def save(rounds_seconds: list[list[float]]) -> None:
        if partial is not None:
            _write_json(partial, result(rounds_seconds))

    return result(time_configurations(model, images, methods, warmup, iters, rounds, save))


def _note(speedup: float, ceiling: float, spread: float) -> str:
    """What is wrong with one configuration's speed-up, in two words, or ""."""
    if speedup > ceiling:
        return "noise: above ceiling"
    if abs(speedup - 1.0) < spread:
        return "within spread"
    return ""


def _rows(configs: list[Config], counted: list[tuple[int, list[int]]], rounds_seconds: list[list[float]],
          batch: int) -> list[Row]:
    done = min(len(times) for times in rounds_seconds)
    rounds_seconds = [times[:done] for times in rounds_seconds]
    seconds = [statistics.median(times) for times in rounds_seconds]
    spreads = [(max(times) - min(times)) / secs for times, secs in zip(rounds_seconds, seconds)]
    macs_untouched = counted[0][0]
    evit_seconds = {config.keep_rate: secs for config, secs in zip(configs, seconds)
                    if config.method_label == label("evit")}
    rows = []
    for config, (count, tokens), secs, spread, times in zip(configs, counted, seconds, spreads, rounds_seconds):
        speedup, ceiling = seconds[0] / secs, macs_untouched / count
        reduced = config.method is not None
        rows.append(Row(
            label=config.label, method=config.method_label, keep_rate=config.keep_rate, tokens=tokens,
            gmacs=count / 1e9, images_per_second=batch / secs, speedup=speedup, ceiling=ceiling,
            of_ceiling=speedup / ceiling, spread=spread, round_seconds=times,
            vs_evit=evit_seconds[config.keep_rate] / secs if reduced and config.keep_rate in evit_seconds else None,
            note=_note(speedup, ceiling, max(spread, spreads[0])) if reduced else "",
        ))
    return rows


def caveats(rows: list[Row], warmup: int, iters: int, rounds: int) -> list[str]:
    """Why the figures of a run may not mean much, one sentence each; empty for a sound run."""
    found = []
    if rounds < MIN_ROUNDS:
        found.append(f"only {rounds} round{'s' if rounds != 1 else ''}: too few for a median and a spread to mean "
                     f"anything (use --rounds {MIN_ROUNDS} or more)")
    if iters < MIN_ITERS:
        found.append(f"only {iters} timed pass{'es' if iters != 1 else ''} per round: one slow pass decides a round "
                     f"(use --iters {MIN_ITERS} or more)")
    if warmup < MIN_WARMUP:
        found.append("no warm-up: each configuration's first pass pays for memory allocation and kernel selection "
                     f"(use --warmup {MIN_WARMUP} or more)")
    for row in rows:
        if row.note.startswith("noise"):
            found.append(f"{row.label}: {row.speedup:.2f}x is above its MACs ceiling of {row.ceiling:.2f}x, which "
                         "removing tokens can't do; the difference is noise")
        elif row.note:
            found.append(f"{row.label}: its {abs(row.speedup - 1):.1%} difference from the untouched model is within "
                         f"the rounds' spread ({row.spread:.1%}, untouched {rows[0].spread:.1%}); not resolved")
    return found


def _write_json(path: Path, result: dict) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(path)


def format_report(result: dict) -> str:
    """The conditions, the table and the caveats, as printed."""
    lines = [f"{key:>17}: {value}" for key, value in result["conditions"].items()]
    lines.append("")
    header = f"{'configuration':<24}{'final tokens':>13}{'GMACs':>7}{'img/s':>10}{'speed-up':>10}" \
             f"{'MACs ceiling':>14}{'of ceiling':>12}{'vs EViT':>9}{'spread':>9}  note"
    lines += [header, "-" * len(header)]
    for row in result["rows"]:
        vs_evit = "" if row["vs_evit"] is None else f"{row['vs_evit']:.0%}"
        lines.append(f"{row['label']:<24}{row['tokens'][-1]:>13}{row['gmacs']:>7.2f}{row['images_per_second']:>10.1f}"
                     f"{row['speedup']:>9.2f}x{row['ceiling']:>13.2f}x{row['of_ceiling']:>11.0%}{vs_evit:>9}"
                     f"{row['spread']:>9.1%}  {row.get('note', '')}".rstrip())
    if result.get("caveats"):
        lines += ["", "CAVEATS: these figures may be noise, not speed:"]
        lines += [f"  - {caveat}" for caveat in result["caveats"]]
    return "\n".join(lines)


def _repeated(values: list) -> list:
    """The values that occur more than once, in order."""
    return [value for index, value in enumerate(values) if value in values[:index]]


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line, checked: every refusal exits with status 2 and names the bad value."""
    parser = argparse.ArgumentParser(prog="python -m retokviz.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="deit_small_patch16_224", help="a timm ViT name")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.7, 0.5], help="keep rates")
    parser.add_argument("--methods", nargs="+", type=str.lower, choices=method_names(compositions=True),
                        default=list(method_names()), help="methods to compare (EViT always runs at keep rate 1.0)")
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
    for option in ("keep", "methods"):
        repeated = _repeated(getattr(args, option))
        if repeated:
            parser.error(f"--{option} got {repeated[0]} more than once; give each once")
    if not timm.is_model(args.model):
        parser.error(f"--model: timm has no model {args.model!r} (see timm.list_models())")
    return parser, args


def main(argv: list[str] | None = None) -> dict:
    parser, args = parse_args(argv)
    check_output_files(parser, json=args.json, plot=args.plot)     # before anything is timed
    try:
        result = run(args.model, args.device, args.dtype, args.batch, args.img_size, tuple(args.keep),
                     not args.no_fuse, args.warmup, args.iters, args.rounds, args.pretrained, tuple(args.methods),
                     partial=args.json)
    except rv.UnsupportedModelError as error:       # raised before anything is timed
        parser.error(str(error))
    print(format_report(result))
    if args.json:
        _write_json(args.json, result)
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_benchmark(result).savefig(args.plot)
    return result


if __name__ == "__main__":
    main()
