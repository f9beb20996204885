"""ToMe: merge the r most similar token pairs in every block (bipartite soft matching).

Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023 (arXiv 2210.09461). In every block, between the
attention residual and the MLP:

1. Similarity: cosine similarity of the block's keys, averaged over heads.
2. The patch tokens alternate, in their current order, into sets A (even positions) and B (odd positions).
3. Each A token finds its most similar B token; the r best edges are merged, A into B (retokviz.merging).
4. Merging is a size-weighted mean, and sizes add up; they travel with the forward pass.
5. Proportional attention: every later attention adds log(size) to the logits towards each key, passed to timm's
   attention as a float mask, so the fused kernel (PyTorch's scaled_dot_product_attention) stays in use.

At most half the patch tokens can merge in one block: a larger r is clipped, with one warning per ToMe setting.
Prefix tokens (class token, registers) never merge.

Choices where the paper leaves room: the tokens that stay keep their order (ToMe's code moves the unmerged A tokens
before the B tokens), so "alternating in the current order" stays close to spatial order block after block.
With `protect` > 0 the tokens with the highest class attention take no part in the matching: this is how
ImagePiece's importance protects the semantic tokens when the two are composed (`retokviz.methods.compose`).
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from retokviz.merging import bipartite_matching, head_mean_keys, merge_tokens
from retokviz.methods.base import Method, Reduced, Regroup, ceil_share, check_rate
from retokviz.scoring import AttentionView


# The ToMe settings whose r was clipped already (warned once each, however often they are re-applied).
_CLIPPED: set["ToMe"] = set()


@dataclass(frozen=True)
class ToMe(Method):
    """Token merging (ToMe) in every block.

    Args:
        r: tokens merged away per block: an int for every block, or a sequence with one int per block
            (its length must equal the model's depth). Clipped to half the patch tokens a block receives.
        protect: share of the patch tokens with the highest class attention that never merge, in [0, 1].
            0 is plain ToMe; > 0 needs a class token (ImagePiece's importance, see `compose`).
    """

    r: int | tuple[int, ...] = 8
    protect: float = 0.0

    def __post_init__(self) -> None:
        r = self.r
        if isinstance(r, Sequence) and not isinstance(r, (str, bytes)):
            values = tuple(r)
            if not values:
                raise ValueError("ToMe.r must be an int or one int per block, got an empty sequence")
            for value in values:
                _check_count(value, values)
            object.__setattr__(self, "r", tuple(int(value) for value in values))
        else:
            _check_count(r, None)
            object.__setattr__(self, "r", int(r))
        object.__setattr__(self, "protect", check_rate("ToMe", "protect", self.protect, allow_zero=True))

    @property
    def needs_class_token(self) -> bool:  # type: ignore[override]
        return self.protect > 0

    def merges_at(self, layer: int) -> int:
        """The r of block `layer` (before clipping)."""
        return self.r[layer] if isinstance(self.r, tuple) else self.r

    def reduction_layers(self, depth: int) -> tuple[int, ...]:
        if isinstance(self.r, tuple) and len(self.r) != depth:
            raise ValueError(
                f"ToMe.r has {len(self.r)} values, one per block is needed: this model has {depth} blocks"
            )
        return tuple(layer for layer in range(depth) if self.merges_at(layer) > 0)

    def num_candidates(self, num_tokens: int) -> int:
        """How many of `num_tokens` patch tokens take part in the matching (all, unless some are protected)."""
        return num_tokens - ceil_share(self.protect, num_tokens) if self.protect > 0 else num_tokens

    def merges(self, num_tokens: int, layer: int) -> int:
        """How many tokens block `layer` merges away when it receives `num_tokens`: r, clipped to half."""
        return min(self.merges_at(layer), self.num_candidates(num_tokens) // 2)

    def tokens_after(self, num_tokens: int, layer: int) -> int:
        return num_tokens - self.merges(num_tokens, layer)

    def reduce(self, x: Tensor, view: AttentionView, layer: int, track: bool) -> Reduced:
        prefix = view.num_prefix
        patches = x[:, prefix:]                                                # [B, T, C]
        num_in = patches.shape[1]
        r = self.merges(num_in, layer)
        if r < self.merges_at(layer) and self not in _CLIPPED:
            _CLIPPED.add(self)
            warnings.warn(
                f"ToMe(r={self.r}) asks block {layer} to merge {self.merges_at(layer)} tokens, but at most half of "
                f"its {self.num_candidates(num_in)} mergeable patch tokens can merge: merging {r} there "
                "(said once per ToMe setting)"
            )
        candidates = None
        if self.protect > 0:
            count = self.num_candidates(num_in)
            candidates = view.class_scores().topk(count, dim=1, largest=False).indices.sort(dim=1).values
        metric = head_mean_keys(view.patch_keys(), view.k.shape[1])            # [B, T, d]
        match = bipartite_matching(metric, r, candidates)
        merged, sizes = merge_tokens(patches, view.patch_sizes(), match.dest, match.num_out)
        out = torch.cat([x[:, :prefix], merged], dim=1)
        prefix_sizes = view.sizes[:, :prefix] if view.sizes is not None else sizes.new_ones(sizes.shape[0], prefix)
        all_sizes = torch.cat([prefix_sizes.float(), sizes], dim=1)
        step = Regroup(match.dest, match.num_out, similarity=match.similarity) if track else None
        return Reduced(out, all_sizes, step)


def _check_count(value: object, values: tuple | None) -> None:
    where = "" if values is None else f" in {values!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"ToMe.r must be an int >= 0 (or one per block), got {value!r}{where}")
    if value < 0:
        raise ValueError(f"ToMe.r must be >= 0 tokens per block, got {value}{where}")
