"""python -m retokviz.sweep: the keep-rate trade-off sweep into a CSV table (see retokviz.sweep).

    python -m retokviz.sweep --checkpoint small-baseline --methods evit imagepiece tome \\
        --keep 1.0 0.7 0.5 --batch 16 --test-size 200 --quick --out sweep.csv
    python -m retokviz.sweep --model deit_small_patch16_224 --device cuda --dtype bf16 --batch 256 \\
        --out results/sweep-h100.csv --plot results/sweep-h100.png

Bad arguments are refused before anything is built or timed, with exit status 2 and a one-line reason.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from retokviz._util.files import figure_format, write_atomically
from retokviz.models.checkpoints import CheckpointError
from retokviz.patch import UnsupportedModelError
from retokviz.sweep.config import DEFAULTS, DTYPES, QUICK, SweepConfig, check_writable
from retokviz.sweep.noise import NoiseWarning
from retokviz.sweep.report import format_table
from retokviz.sweep.run import SweepResult, execute, prepare


EPILOG = """\
Each row is appended to --out as soon as its group (model, dtype, batch size) is measured; run the same command
again to continue an interrupted sweep (rows already there are skipped; a file of another sweep is refused).
Speed-ups are against the untouched model timed in the same rounds; "note" flags a speed-up above its MACs
ceiling (noise) or within the rounds' spread, and the caveats are printed at the end. peak_memory_mb is CUDA's
max allocated memory, empty on a CPU.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m retokviz.sweep", description=__doc__.split("\n\n")[0],
                                usage="%(prog)s (--model NAME ... | --checkpoint NAME ...) --out CSV [options]",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    models = p.add_argument_group("models (one or both)")
    models.add_argument("--model", dest="models", nargs="+", default=[], metavar="NAME",
                        help="timm ViT names (random weights unless --pretrained)")
    models.add_argument("--checkpoint", dest="checkpoints", nargs="+", default=[], metavar="NAME",
                        help="bundled checkpoint names or .safetensors paths (accuracy on generated clutter)")
    grid = p.add_argument_group("what is swept")
    grid.add_argument("--methods", nargs="+", default=["evit", "imagepiece", "tome"],
                      help="evit, imagepiece, tome, imagepiece+tome (the untouched model always runs)")
    grid.add_argument("--keep", dest="keep_rates", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7, 0.6, 0.5],
                      metavar="RATE", help="EViT keep rates in (0, 1]; ToMe gets EViT's token budget at each")
    grid.add_argument("--batch", dest="batch_sizes", type=int, nargs="+", default=[16], metavar="N",
                      help="batch sizes for throughput (batch-1 latency is measured too)")
    grid.add_argument("--dtype", dest="dtypes", nargs="+", default=["fp32"], metavar="DTYPE",
                      help=f"{', '.join(DTYPES)}: model and inputs cast to it")
    run = p.add_argument_group("conditions")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    run.add_argument("--img-size", type=int, help="image side for timm models (default: the model's own)")
    run.add_argument("--pretrained", action="store_true", help="timm's weights for --model (must be cached)")
    run.add_argument("--data", type=Path, metavar="FOLDER", help="image folder with val/, for the timm models' top-1")
    run.add_argument("--test-size", type=int, help=f"test images for top-1 (default {DEFAULTS['test_size']} clutter "
                                                    "images or the whole folder)")
    run.add_argument("--seed", type=int, default=0, help="the clutter test set's seed (and the folder subset's)")
    run.add_argument("--warmup", type=int, help=f"untimed passes per turn (default {DEFAULTS['warmup']})")
    run.add_argument("--iters", type=int, help=f"timed passes per turn (default {DEFAULTS['iters']})")
    run.add_argument("--rounds", type=int, help=f"interleaved rounds (default {DEFAULTS['rounds']})")
    run.add_argument("--compile", action="store_true",
                     help="time compiled models (rv.compile_for_inference: torch.compile, weights frozen, graph "
                          "driven from C++), the untouched one too")
    run.add_argument("--no-fused-attention", action="store_true",
                     help="timm's explicit softmax(q k^T) v instead of F.scaled_dot_product_attention")
    run.add_argument("--quick", action="store_true",
                     help=f"a smoke run of seconds: warm-up {QUICK['warmup']}, {QUICK['iters']} passes x "
                          f"{QUICK['rounds']} rounds, {QUICK['test_size']} clutter test images (unless given)")
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, required=True, metavar="CSV",
                     help="the table (appended to; re-run to continue it)")
    out.add_argument("--plot", type=Path, metavar="PNG", help="also draw the trade-off figure here (the first "
                     "model, its largest batch size and the first dtype; retokviz.views.tradeoff draws any)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from(args: argparse.Namespace) -> SweepConfig:
    return SweepConfig(
        out=args.out, models=tuple(args.models), checkpoints=tuple(args.checkpoints), methods=tuple(args.methods),
        keep_rates=tuple(args.keep_rates), batch_sizes=tuple(args.batch_sizes), dtypes=tuple(args.dtypes),
        device=args.device, img_size=args.img_size, pretrained=args.pretrained, data=args.data,
        test_size=args.test_size, seed=args.seed, warmup=args.warmup, iters=args.iters, rounds=args.rounds,
        compile=args.compile, fused_attention=not args.no_fused_attention, quick=args.quick)


def main(argv: list[str] | None = None) -> SweepResult:
    p = parser()
    args = p.parse_args(argv)
    try:
        config = config_from(args)
        if args.plot is not None:   # an image format matplotlib writes, in a folder that can be written
            plot_format = figure_format(args.plot, "--plot")
            check_writable(args.plot, "--plot")
        plan = prepare(config)
    except (ValueError, FileNotFoundError, CheckpointError, UnsupportedModelError) as error:
        p.error(str(error))     # exit status 2, nothing built or timed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoiseWarning)       # printed below, once, as caveats
        result = execute(plan, progress=not args.no_progress)
    print(format_table(result.rows))
    print(f"\n{len(result.measured)} row(s) measured, {result.skipped} already in {result.path}")
    if result.caveats:
        print("\nCAVEATS: these figures may be noise, not speed:", file=sys.stderr)
        for sentence in result.caveats:
            print(f"  - {sentence}", file=sys.stderr)
    if args.plot is not None:
        from retokviz.views.tradeoff import plot_tradeoff

        figure = plot_tradeoff(result.rows)
        write_atomically(args.plot, lambda file: figure.savefig(file, format=plot_format))   # whole, or not at all
        print(f"figure: {args.plot}")
    return result


if __name__ == "__main__":
    main()
