"""What ImagePiece lets go of at each reduction block, split by why (`rv.analysis.let_go_by_reason`): tokens that
entered the block in the top set by class attention and were displaced by pieces that gained meaning, against the
bottom-set candidates that never climbed out. For each, the share of all patches and how much of it is background.

    python benchmarks/why_imagepiece_lets_go.py [--checkpoint showcase-imagepiece-0.7-stem] [--images 1000] [--seed 500]
        [--plot results/figure-let-go-by-reason.png]

The default seed, 500, is the validation seed of the showcase set (never used for training or for the targets).
A patch counts as background when it touches no digit pixel (as in `rv.metrics`); "random" is the share of
background among all patches, and lift = (share - random) / (1 - random).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import retokviz as rv
from retokviz.views import static


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="showcase-imagepiece-0.7-stem")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=500)
    parser.add_argument("--plot", type=Path, help="also draw the figure (static.plot_let_go_by_reason) to this file")
    args = parser.parse_args()
    model = rv.load_checkpoint(args.checkpoint)
    size = model.patch_embed.img_size[0]
    images, _, masks = rv.data.make_clutter(args.images, seed=args.seed, split="test", image_size=size)
    reasons = rv.analysis.let_go_by_reason(model, images, masks, progress=True)
    random = next(iter(reasons.values()))["bottom"].random
    print(f"conditions: {args.checkpoint} ({rv.method_of(model)!r}), {args.images} generated test images of seed "
          f"{args.seed} ({size} px), torch {torch.__version__}; random background {random:.1%}")
    print("block  let go of, because            share of patches  background  lift")
    for block, parts in reasons.items():
        for reason, part in parts.items():
            why = "displaced from the top set" if reason == "displaced" else "stayed in the bottom set"
            print(f"{block:5d}  {why:30s} {part.removed:16.1%}  {part.background:10.1%}  {part.lift:+.2f}")
    if args.plot:
        title = (f"{args.checkpoint}: let go of at each reduction block, by reason\n"
                 f"({args.images} test images of seed {args.seed}; lift: background over a random choice)")
        static.plot_let_go_by_reason(reasons, title=title).savefig(args.plot, dpi=110)
        print(f"figure: {args.plot}")


if __name__ == "__main__":
    main()
