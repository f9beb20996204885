"""The papers' figures on the project's own data and bundled models, for docs/results.md (results/figure-*.png):

1. the patches EViT and ImagePiece let go of are background, across keep rates (against a random choice);
2. ImagePiece's pieces forming, block by block, on one test image;
3. masking patches on the object against on the background, and what it does to the prediction;
4. accuracy against the number of randomly masked patches, per method (ImagePiece's robustness test).

    python benchmarks/seed_figures.py [--images 500] [--set showcase] [--out results]

Prints every number it draws, with the conditions. Everything is computed by retokviz.measure.robustness and drawn by
retokviz.views.static; this script only chooses the models, images and file names.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import retokviz as rv
from retokviz.models.bundled import SETS
from retokviz.models.bundled import TEST_SEED as SEED
from retokviz.views import extract, static

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help=f"generated test images (seed {SEED})")
    parser.add_argument("--set", default="showcase", choices=list(SETS), help="the bundled set (rv.bundled)")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoints = SETS[args.set]
    baseline = rv.load_checkpoint(checkpoints["none"])
    size, patches = baseline.patch_embed.img_size[0], baseline.patch_embed.num_patches
    images, labels, masks = rv.data.make_clutter(args.images, seed=SEED, split="test", image_size=size)
    print(f"conditions: {args.images} generated test images (seed {SEED}, {size} px), the bundled {args.set} set, "
          f"torch {torch.__version__}")

    removed = []
    for method in ("EViT", "ImagePiece"):
        model = rv.load_checkpoint(checkpoints[method])
        removed += rv.robustness.background_by_keep_rate(model, images, masks, (0.9, 0.7, 0.5, 0.3),
                                                         method=rv.method_of(model))
    for row in removed:
        print(f"background removed: {row.method:34s} {row.background:.1%} of {row.removed:.1%} (random {row.random:.1%})")
    static.plot_background_removed(removed).savefig(args.out / "figure-background-removed.png", dpi=110)

    imagepiece = rv.load_checkpoint(checkpoints["ImagePiece"])
    with rv.record(imagepiece) as trace, torch.no_grad():
        imagepiece(images[:8])
    static.plot_pieces(extract(trace, images[3], masks[3], image=3)).savefig(args.out / "figure-pieces.png", dpi=110)

    effect = rv.robustness.masking_effect(baseline, images, labels, masks, counts=(0, 1, 2, 4, 6, 8))
    print(f"masking ({effect.method}): counts {effect.counts}, on the object {effect.object}, "
          f"on the background {effect.background}")
    static.plot_masking_effect(effect).savefig(args.out / "figure-masking.png", dpi=110)

    methods = {"untouched": None, "EViT 0.7": rv.EViT(0.7), "ImagePiece 0.7": rv.ImagePiece(0.7),
               "ToMe (EViT 0.7's budget)": rv.method_at("tome", baseline, keep_rate=0.7)}
    result = rv.robustness.masked_accuracy(baseline, methods, images, labels, counts=tuple(patches * share // 8 for share in range(5)))
    for label, values in result.accuracy.items():
        print(f"randomly masked patches {result.counts}: {label:26s} {[round(v, 3) for v in values]}")
    static.plot_masked_accuracy(result).savefig(args.out / "figure-masked-accuracy.png", dpi=110)


if __name__ == "__main__":
    main()
