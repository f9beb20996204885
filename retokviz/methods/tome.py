"""ToMe: merge the r most similar token pairs in every block (bipartite soft matching).

Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023 (arXiv 2210.09461), following the conventions of the
authors' code (facebookresearch/ToMe, `tome/merge.py` and `tome/patch/timm.py`) wherever they change the outputs.
In every block, between the attention residual and the MLP, over the T patch tokens present:

1. Metric: the block's attention keys averaged over heads, L2-normalised; similarity is their dot product (cosine).
2. Split: the whole sequence alternates into sets A and B, prefix tokens included and first: the token at position
   i is in A when i is even. With one class token (DeiT, ViT) the class token is the first A token, and among the
   patch tokens A is positions 1, 3, 5, ... and B positions 0, 2, 4, ... Prefix tokens (class token, registers)
   neither merge nor receive merges.
3. Matching: each A patch token finds its most similar B token; these edges are ranked by similarity, most
   similar first, and the first r are merged, A into B. Several A tokens may merge into one B token.
4. Merging: size-weighted means, sum(s_i x_i) / sum(s_i), and the sizes s add up. Sizes are float32 and travel with
   the forward pass.
5. Order: the tokens leave as [prefix tokens, the unmerged A tokens in their order, all the B tokens in their
   order]. This order decides the split, and so the pairing, of the next block. Without any prefix token (global
   average pooling, no class token) the unmerged A tokens leave most similar first (by their best similarity), as
   in the authors' code, which sorts them back into their order only when there is a class token to put first.
   The provenance trace follows every order: each step's `Regroup.dest` says which new token carries each old one.
6. Proportional attention: every later attention adds log(size) to the logits towards each key (the prefix tokens
   have size 1), passed to timm's attention as a float mask, so the fused kernel
   (PyTorch's scaled_dot_product_attention) stays in use.
7. r: one int for every block, or one per block. At most half the patch tokens can merge in one block: a block
   merges min(r, T // 2), as ToMe's min(r, (tokens - protected) // 2); a clipped r is said in a warning, once per
   ToMe setting (not under `torch.compile`, which can't trace a warning).

With these conventions `rv.ToMe(r)` gives the logits of the authors' code on the same timm DeiT to float round-off.
Where retokviz departs from that code:

- `order="spatial"` is an option of retokviz's own, not the paper's: the patch tokens alone alternate (A is
  patches 0, 2, 4, ..., the other way round from the default) and the tokens that stay keep their places (a merged
  A token goes into its B token's place), so the token order stays close to the spatial order block after block.
  It merges different pairs from the first block on, and so gives different outputs (on a random-weight DeiT-S,
  logits differ by about 0.1 at r=13).
- Every prefix token is protected: registers too (the authors' code protects the class token and the distillation
  token only).
- The keys are those attention used, after timm's q/k norm where a model has one; the authors' patch recomputes
  attention without q/k norm and without LayerScale. DeiT and ViT have neither, and agree.
- A per-block r needs exactly one value per block (the authors' code pads a short list with zeros and also takes an
  (r, inflection) schedule).

`protect` > 0 (a share of the patch tokens, needing a class token) is for composition with ImagePiece or EViT
(`retokviz.methods.compose`): the ceil(protect * T) tokens with the highest class attention take no part in the
matching. The others, the candidates, alternate in their current order as if they came straight after the prefix
tokens (candidate j is in A when prefix + j is even: protect=0 is plain ToMe), and at most half of them merge. The
protected tokens keep their places among the unmerged tokens, the way the class token does: they leave with the
unmerged A tokens, in their order, before the B tokens.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from retokviz.ops.merging import bipartite_matching, merge_tokens
from retokviz.methods.base import Method, Reduced, Regroup, ceil_share, check_rate
from retokviz.ops.class_attention import AttentionView
from retokviz.ops.tensors import as_float, ones

ORDERS = ("official", "spatial")


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
        order: "official" (default): the A/B split and token order of the authors' code (A after the class token,
            the unmerged A tokens then the B tokens). "spatial": the patch tokens alone alternate (A first) and the
            tokens that stay keep their places; a departure from the authors' code (see the module docstring).
        proportional: proportional attention (default, as the authors): every later attention adds log(size) to
            the logits towards a merged token, as if its patches were all there. False attends to it once, as to
            any other token (the authors' `prop_attn=False`).
    """

    r: int | tuple[int, ...] = 8
    protect: float = 0.0
    order: str = "official"
    proportional: bool = True

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
        if not isinstance(self.order, str) or self.order not in ORDERS:
            raise ValueError(f"ToMe.order must be one of {ORDERS}, got {self.order!r}")
        if not isinstance(self.proportional, bool):
            raise ValueError(f"ToMe.proportional must be True or False, got {self.proportional!r}")

    @property
    def needs_class_token(self) -> bool:  # type: ignore[override]
        return self.protect > 0

    def merges_at(self, block: int) -> int:
        """The r of `block` (before clipping)."""
        return self.r[block] if isinstance(self.r, tuple) else self.r

    def reduction_layers(self, depth: int) -> tuple[int, ...]:
        if isinstance(self.r, tuple) and len(self.r) != depth:
            raise ValueError(
                f"ToMe.r has {len(self.r)} values, one per block is needed: this model has {depth} blocks"
            )
        return tuple(block for block in range(depth) if self.merges_at(block) > 0)

    def num_candidates(self, num_tokens: int) -> int:
        """How many of `num_tokens` patch tokens take part in the matching (all, unless some are protected)."""
        return num_tokens - ceil_share(self.protect, num_tokens) if self.protect > 0 else num_tokens

    def merges(self, num_tokens: int, block: int) -> int:
        """How many tokens `block` merges away when it receives `num_tokens`: r, clipped to half."""
        return min(self.merges_at(block), self.num_candidates(num_tokens) // 2)

    def tokens_after(self, num_tokens: int, block: int) -> int:
        return num_tokens - self.merges(num_tokens, block)

    def _warn_clipped(self, block: int, num_in: int, r: int) -> None:
        """Say, once per ToMe setting, that `block` merges r tokens only, fewer than asked. Not while
        `torch.compile` traces the model: the compiler can't follow a warning (it would break the graph), so a
        compiled model clips without saying it, and the first pass run without the compiler says it."""
        if self in _CLIPPED or torch.compiler.is_compiling():
            return
        _CLIPPED.add(self)
        warnings.warn(
            f"ToMe(r={self.r}) asks block {block} to merge {self.merges_at(block)} tokens, but at most half of "
            f"its {self.num_candidates(num_in)} mergeable patch tokens can merge: merging {r} there "
            "(said once per ToMe setting)"
        )

    def reduce(self, x: Tensor, view: AttentionView, block: int, track: bool) -> Reduced:
        prefix = view.num_prefix
        patches = x[:, prefix:]                                                # [B, T, C]
        num_in = patches.shape[1]
        r = self.merges(num_in, block)
        if r < self.merges_at(block):
            self._warn_clipped(block, num_in, r)
        candidates = None
        if self.protect > 0:
            count = self.num_candidates(num_in)
            candidates = view.class_scores().topk(count, dim=1, largest=False).indices.sort(dim=1).values
        metric = view.mean_patch_keys()                                        # [B, T, d]
        if self.order == "official":  # ToMe's code sorts the unmerged A tokens back only with a class token
            order = "b_last" if prefix else "b_last_by_similarity"
            match = bipartite_matching(metric, r, candidates, offset=prefix, order=order)
        else:
            match = bipartite_matching(metric, r, candidates)
        # Until a block has merged, every token is one patch: no sizes to weigh by (view.sizes is None).
        merged, sizes = merge_tokens(patches, view.tracked_patch_sizes(), match.dest, match.num_out, discards=False)
        out = torch.cat([x[:, :prefix], merged], dim=1)
        prefix_sizes = view.sizes[:, :prefix] if view.sizes is not None else ones(sizes.shape[0], prefix, x.device)
        all_sizes = torch.cat([as_float(prefix_sizes), sizes], dim=1)
        step = Regroup(match.dest, match.num_out, similarity=match.similarity) if track else None
        return Reduced(out, all_sizes, step)


def _check_count(value: object, values: tuple | None) -> None:
    where = "" if values is None else f" in {values!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"ToMe.r must be an int >= 0 (or one per block), got {value!r}{where}")
    if value < 0:
        raise ValueError(f"ToMe.r must be >= 0 tokens per block, got {value}{where}")
