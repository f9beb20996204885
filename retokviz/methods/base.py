"""What every reduction method provides, and the record of one reduction step."""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from retokviz.scoring import AttentionView


@dataclass(frozen=True)
class Regroup:
    """How one reduction step maps the patch tokens it received onto the patch tokens it leaves.

    Prefix tokens are never part of a regroup: they pass through unchanged.

    Attributes:
        dest: [B, T_in] LongTensor, for each incoming patch token the index (0-based among the outgoing
            patch tokens) of the token that now carries it, or -1 if it was discarded.
        num_out: T_out, the number of outgoing patch tokens.
        fused_slot: the index of the outgoing EViT fused token, or None if the step made none.
    """

    dest: Tensor
    num_out: int
    fused_slot: int | None = None


def check_layers(owner: str, layers: object) -> tuple[int, ...] | None:
    """Validate a `layers` field: None, or distinct non-negative ints. Returns it as a tuple."""
    if layers is None:
        return None
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"{owner}.layers must be None or a sequence of block indices, got {layers!r}")
    values = tuple(layers)
    for layer in values:
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
            raise TypeError(f"{owner}.layers must hold block indices (ints), got {layer!r} in {values!r}")
        if layer < 0:
            raise ValueError(f"{owner}.layers must be block indices >= 0, got {layer} in {values!r}")
    duplicates = sorted({layer for layer in values if values.count(layer) > 1})
    if duplicates:
        raise ValueError(f"{owner}.layers must not repeat a block, got {duplicates} more than once in {values!r}")
    return tuple(int(layer) for layer in values)


def resolve_layers(owner: str, layers: tuple[int, ...] | None, depth: int) -> tuple[int, ...]:
    """`layers` checked against a model of `depth` blocks; None means depth//4, depth//2, 3*depth//4."""
    if layers is None:
        return tuple(sorted({depth // 4, depth // 2, 3 * depth // 4}))
    outside = [layer for layer in layers if layer >= depth]
    if outside:
        raise ValueError(
            f"{owner}.layers={layers} has block {outside[0]}, outside this model's blocks 0..{depth - 1} "
            f"(depth {depth})"
        )
    return tuple(sorted(layers))


class Method:
    """Base of the reduction methods. Subclasses are small frozen dataclasses with validated fields.

    A method is applied with `retokviz.apply(model, method)`. It names the blocks where it reduces
    (`reduction_layers`) and does the reduction there (`reduce`), between the attention residual and the MLP.
    """

    needs_class_token: ClassVar[bool] = False

    def reduction_layers(self, depth: int) -> tuple[int, ...]:
        """The block indices (0-based, sorted) where this method reduces, in a model of `depth` blocks.

        Raises:
            ValueError: a configured layer lies outside 0..depth-1.
        """
        raise NotImplementedError

    def tokens_after(self, num_tokens: int) -> int:
        """How many patch tokens leave a reduction block that receives `num_tokens` patch tokens."""
        raise NotImplementedError

    def reduces(self, num_tokens: int) -> bool:
        """Whether a reduction block that receives `num_tokens` patch tokens changes anything."""
        return self.tokens_after(num_tokens) != num_tokens

    def reduce(self, x: Tensor, view: AttentionView, track: bool) -> tuple[Tensor, Regroup | None]:
        """Reduce the token set.

        Args:
            x: [B, N, C] all tokens after the attention residual, prefix tokens first.
            view: the block's attention (class scores, keys), computed on demand.
            track: whether to describe the step as a Regroup (only when someone records provenance).

        Returns:
            [B, N', C] the new tokens (prefix tokens first and unchanged), and the Regroup if `track`, else None.
        """
        raise NotImplementedError
