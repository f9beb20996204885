"""EViT: keep the tokens the class token attends to most, fuse the rest into one token.

Liang et al., "Not All Patches are What You Need: Expediting Vision Transformers via Token Reorganizations",
ICLR 2022 (arXiv 2202.07800). At each reduction block, over the P' patch tokens present:

1. K = ceil(keep_rate * P'); keep the K tokens with the largest class attention a_i.
2. Without fusion the other P' - K tokens are dropped.
3. With fusion they become one token, sum of a_i * x_i over the dropped i (raw scores, not renormalised),
   placed after the kept ones. At the next reduction block it is an ordinary token.

Choice left open by the paper: the kept tokens stay in their original spatial order (the reference code orders
them by score). Attention and the class-token head do not depend on the order, so the output is the same up to
float round-off, and spatial order keeps the token indices of a trace readable.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from retokviz.methods.base import (Method, Reduced, ceil_share, check_flag, check_layers, check_rate, keep_and_fuse,
                                   resolve_layers)
from retokviz.ops.class_attention import AttentionView


@dataclass(frozen=True)
class EViT(Method):
    """Token reorganization (EViT).

    Args:
        keep_rate: fraction of the patch tokens kept at each reduction block, 0 < keep_rate <= 1.
            1.0 reduces nothing (the model's output is unchanged).
        layers: the reduction blocks, 0-based. None means depth//4, depth//2, 3*depth//4 ((3, 6, 9) for 12 blocks).
        fuse: fuse the inattentive tokens into one extra token (True) or drop them (False).
    """

    keep_rate: float = 0.7
    layers: tuple[int, ...] | None = None
    fuse: bool = True

    has_keep_rate = True
    needs_class_token = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_rate", check_rate("EViT", "keep_rate", self.keep_rate))
        check_flag("EViT", "fuse", self.fuse)
        object.__setattr__(self, "layers", check_layers("EViT", self.layers))

    def reduction_layers(self, depth: int) -> tuple[int, ...]:
        return resolve_layers("EViT", self.layers, depth)

    def num_kept(self, num_tokens: int) -> int:
        """K = ceil(keep_rate * P'): how many of `num_tokens` patch tokens are kept as they are."""
        return ceil_share(self.keep_rate, num_tokens)

    def tokens_after(self, num_tokens: int, block: int) -> int:
        kept = self.num_kept(num_tokens)
        return kept + int(self.fuse and kept < num_tokens)

    def reduce(self, x: Tensor, view: AttentionView, block: int, track: bool) -> Reduced:
        prefix = view.num_prefix
        scores = view.class_scores()                                                    # [B, P]
        keep = scores.topk(self.num_kept(scores.shape[1]), dim=1, sorted=False).indices.sort(dim=1).values
        # sizes tracked by a merging method (in a composition) are carried along
        sizes = None if view.sizes is None else (view.sizes[:, :prefix], view.sizes[:, prefix:])
        return keep_and_fuse(x[:, :prefix], x[:, prefix:], scores, keep, self.fuse, sizes, track)
