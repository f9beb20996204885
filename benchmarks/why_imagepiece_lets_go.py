"""What ImagePiece lets go of at each reduction block, split by why: tokens that entered the block among the top K
by class attention (the "semantic" ones) and were displaced by pieces that gained meaning, against the bottom-set
candidates that stayed non-semantic. For each, the share of all patches and how much of it is background.

    python benchmarks/why_imagepiece_lets_go.py [--checkpoint showcase-imagepiece-0.7-stem] [--images 1000] [--seed 500]

The default seed, 500, is the validation seed of the showcase set (never used for training or for the targets).
A patch counts as background when it touches no digit pixel (as in `rv.metrics`); "random" is the share of
background among all patches, and lift = (share - random) / (1 - random).
"""
from __future__ import annotations

import argparse
import math

import torch
from tqdm.auto import tqdm

import retokviz as rv
from retokviz.data import patch_mask
from retokviz.provenance import Status

LET_GO = torch.tensor([int(Status.DROPPED), int(Status.FUSED)])


def split_by_rank(trace: rv.Trace, keep_rate: float, background: torch.Tensor) -> dict[tuple[int, str], list[int]]:
    """{(block, "displaced" | "candidate"): [patches let go of there, of which background]} for one batch.

    Args:
        trace: the recorded pass of a batch of B images.
        keep_rate: the method's keep rate (K = ceil(keep_rate * T) of the T tokens a block receives).
        background: [B, P] bool, the patches touching no object pixel.
    """
    counts: dict[tuple[int, str], list[int]] = {}
    for block in range(1, len(trace.layers)):
        before, after = trace.layers[block - 1], trace.layers[block]
        new = torch.isin(after.status, LET_GO) & ~torch.isin(before.status, LET_GO)       # [B, P]
        if after.token_scores is None or not new.any():
            continue
        scores = after.token_scores                                                        # [B, T]
        top = math.ceil(keep_rate * scores.shape[1])
        rank = scores.argsort(1, descending=True).argsort(1).gather(1, before.owner.clamp(min=0))   # [B, P]
        for reason, chosen in (("displaced", new & (rank < top)), ("candidate", new & (rank >= top))):
            count = counts.setdefault((block, reason), [0, 0])
            count[0] += int(chosen.sum())
            count[1] += int((chosen & background).sum())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="showcase-imagepiece-0.7-stem")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=250)
    args = parser.parse_args()
    model = rv.load_checkpoint(args.checkpoint)
    method = rv.method_of(model)
    if not isinstance(method, rv.ImagePiece):
        parser.error(f"--checkpoint {args.checkpoint} runs {method!r}, not ImagePiece")
    size, patch = model.patch_embed.img_size[0], model.patch_embed.patch_size[0]
    images, _, masks = rv.data.make_clutter(args.images, seed=args.seed, split="test", image_size=size)
    background = ~patch_mask(masks, patch).flatten(1)                                      # [N, P]
    random = background.float().mean().item()
    counts: dict[tuple[int, str], list[int]] = {}
    for start in tqdm(range(0, args.images, args.batch_size), desc="batches"):
        part = slice(start, start + args.batch_size)
        with rv.record(model) as trace, torch.no_grad():
            model(images[part])
        for key, (count, plain) in split_by_rank(trace, method.keep_rate, background[part]).items():
            total = counts.setdefault(key, [0, 0])
            total[0] += count
            total[1] += plain
    print(f"conditions: {args.checkpoint} ({method!r}), {args.images} generated test images of seed {args.seed} "
          f"({size} px), torch {torch.__version__}; random background {random:.1%}")
    print("block  let go of, because            share of patches  background  lift")
    for (block, reason), (count, plain) in sorted(counts.items()):
        share = plain / count if count else float("nan")
        why = "displaced from the top K" if reason == "displaced" else "stayed in the bottom set"
        print(f"{block:5d}  {why:30s} {count / background.numel():16.1%}  {share:10.1%}  "
              f"{(share - random) / (1 - random):+.2f}")


if __name__ == "__main__":
    main()
