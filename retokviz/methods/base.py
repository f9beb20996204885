"""What every reduction method provides, and the record of one reduction step."""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from retokviz._util.checks import check_flag as flag
from retokviz._util.checks import fraction
from retokviz.ops.class_attention import AttentionView
from retokviz.ops.regroup import Regroup
from retokviz.ops.tensors import as_dtype, as_float, ones, positions


@dataclass(frozen=True)
class Reduced:
    """What one reduction step leaves.

    Attributes:
        x: [B, N', C] the new tokens, prefix tokens first and unchanged.
        sizes: [B, N'] float32, how many original patches each token stands for (1 for prefix tokens, and for an
            EViT fused token), or None where every token is still size 1 (then attention needs no size bias).
        step: the Regroup of the patch tokens if it was asked for (`track`), else None.
        scores: [B, T] the score the method ranked the T patch tokens it received by, where it is not the class
            attention (DynamicViT's predicted keep probability): the trace's score at this block. None otherwise.
        policy: [B, N] float, 1 for a token kept and 0 for one dropped (prefix tokens 1), where a learned method
            trains without dropping anything: `x` is then unchanged, and the attention of this block and of every
            later one lets no token attend to a dropped one but itself. None otherwise.
    """

    x: Tensor
    sizes: Tensor | None
    step: Regroup | None
    scores: Tensor | None = None
    policy: Tensor | None = None


@dataclass
class InputView:
    """What a reducing block shows a method that owns modules (`Method.owns_modules`), which reduces at the block's
    input, before its attention: there is no attention to show yet, but the method's modules and the pass.

    Attributes:
        num_prefix: how many leading tokens are prefix tokens (class token, registers), never reduced.
        modules: the method's modules on the model (made by `make_modules`, registered by `rv.apply`).
        start: the patch tokens the forward pass started with.
        depth: the model's number of blocks.
        policy: [B, N] the keep policy of the tokens (training only; 1 kept, 0 dropped, prefix included), or None
            before the first decision of the pass.
        training: whether the model is in training mode (decide softly, drop nothing) or not (drop).
    """

    num_prefix: int
    modules: nn.Module
    start: int
    depth: int
    policy: Tensor | None
    training: bool


# rate * P is a float product: 0.7 * 100 == 70.00000000000001, whose ceil would be 71, not the intended 70.
_ROUND_OFF = 1e-9


def ceil_share(rate: float, num_tokens: int) -> int:
    """ceil(rate * num_tokens), robust to float round-off, at most num_tokens and at least 1 (a positive rate of
    any tokens always keeps one: EViT(keep_rate=1e-12) keeps one token, not none)."""
    return min(num_tokens, max(1, math.ceil(rate * num_tokens - _ROUND_OFF)))


def check_rate(owner: str, name: str, value: object, *, allow_zero: bool = False, allow_one: bool = True) -> float:
    """Validate a fraction field (a keep rate, a share of tokens); returns it as a float."""
    return fraction(f"{owner}.{name}", value, allow_zero=allow_zero, allow_one=allow_one)


def check_flag(owner: str, name: str, value: object) -> bool:
    """Validate a boolean field."""
    return flag(f"{owner}.{name}", value, TypeError)


def keep_and_fuse(
    prefix: Tensor,
    tokens: Tensor,
    scores: Tensor,
    keep: Tensor,
    fuse: bool,
    sizes: tuple[Tensor, Tensor] | None,
    track: bool,
) -> Reduced:
    """The last step of EViT and ImagePiece: keep the tokens at `keep`, drop the others or fuse them into one.

    Args:
        prefix: [B, p, C] the prefix tokens, passed through.
        tokens: [B, T, C] the patch tokens to choose from.
        scores: [B, T] their class attention; the fused token is sum of a_j * x_j over the others (raw a_j).
        keep: [B, K] indices into T, in the order the kept tokens go out.
        fuse: fuse the others (if there are any) into one token after the kept ones.
        sizes: ([B, p], [B, T]) the sizes of the prefix tokens and of `tokens`, or None where none are tracked.
            A fused token has size 1.
        track: describe the step as a Regroup of the T tokens.
    """
    batch, num_tokens, channels = tokens.shape
    num_keep = keep.shape[1]
    parts = [prefix, tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, channels))]
    fused = fuse and num_keep < num_tokens
    if fused:
        weights = as_dtype(scores.scatter(1, keep, 0.0), tokens.dtype)                # a_j of the others
        parts.append(torch.bmm(weights.unsqueeze(1), tokens))                          # [B, 1, C]
    out_sizes = None
    if sizes is not None:
        prefix_sizes, token_sizes = sizes
        out_sizes = [as_float(prefix_sizes), as_float(token_sizes).gather(1, keep)]
        out_sizes = torch.cat(out_sizes + [ones(batch, 1, tokens.device)] * fused, dim=1)
    step = None
    if track:
        dest = torch.full((batch, num_tokens), num_keep if fused else -1, dtype=torch.long, device=tokens.device)
        dest.scatter_(1, keep, positions(num_keep, tokens.device).expand(batch, -1))
        step = Regroup(dest, num_keep + int(fused), num_keep if fused else None)
    return Reduced(torch.cat(parts, dim=1), out_sizes, step)


def check_layers(owner: str, layers: object) -> tuple[int, ...] | None:
    """Validate a `layers` field: None, or distinct non-negative ints. Returns it as a tuple."""
    if layers is None:
        return None
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"{owner}.layers must be None or a sequence of block indices, got {layers!r}")
    values = tuple(layers)
    if not values:
        raise ValueError(f"{owner}.layers is empty, so nothing would reduce; give block indices, e.g. (3, 6, 9), "
                         "or None for the default blocks (a quarter, half and three quarters of the depth)")
    for block in values:
        if isinstance(block, bool) or not isinstance(block, numbers.Integral):
            raise TypeError(f"{owner}.layers must hold block indices (ints), got {block!r} in {values!r}")
        if block < 0:
            raise ValueError(f"{owner}.layers must be block indices >= 0, got {block} in {values!r}")
    duplicates = sorted({block for block in values if values.count(block) > 1})
    if duplicates:
        raise ValueError(f"{owner}.layers must not repeat a block, got {duplicates} more than once in {values!r}")
    return tuple(int(block) for block in values)


def resolve_layers(owner: str, layers: tuple[int, ...] | None, depth: int) -> tuple[int, ...]:
    """`layers` checked against a model of `depth` blocks; None means depth//4, depth//2, 3*depth//4."""
    if layers is None:
        return tuple(sorted({depth // 4, depth // 2, 3 * depth // 4}))
    outside = [block for block in layers if block >= depth]
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

    # Capabilities, declared once per method (callers ask these, never isinstance or hasattr):
    # `has_keep_rate`: the method has a `keep_rate` field (the share of patch tokens a reduction block leaves),
    #   which the keep-rate function, the training schedule and the sliders set.
    # `needs_class_token`: the method ranks tokens by the class token's attention (a model without one can't run it).
    # `owns_modules`: the method has learned modules of its own (DynamicViT's predictors), made by
    #   `make_modules(model)`; `rv.apply` registers them on the model (`model.retokviz_modules`: in its parameters,
    #   state_dict and checkpoints, trained with it) and `rv.remove` takes them out. Such a method reduces at the
    #   block's input, before attention, and is handed an `InputView` instead of an `AttentionView`; it is applied
    #   alone (not composed).
    # `counts_from_start`: the tokens a reduction block leaves depend on the patch tokens the pass started with
    #   (DynamicViT keeps keep_rate ** (i + 1) of them at its i-th block); its `tokens_after` takes `start=` and
    #   `depth=` (ask `count_after`, which passes them where needed).
    has_keep_rate: ClassVar[bool] = False
    needs_class_token: ClassVar[bool] = False
    owns_modules: ClassVar[bool] = False
    counts_from_start: ClassVar[bool] = False

    def make_modules(self, model: nn.Module) -> nn.Module:
        """The learned modules of a method that owns some, fresh, for `model` (on its device, in its dtype)."""
        raise NotImplementedError

    def fits_modules(self, modules: nn.Module, model: nn.Module) -> bool:
        """Whether `modules` (made before, maybe trained) serve this method on `model`, so that applying it again
        (another keep rate, say) keeps them."""
        raise NotImplementedError

    def reduction_layers(self, depth: int) -> tuple[int, ...]:
        """The block indices (0-based, sorted) where this method reduces, in a model of `depth` blocks.

        Raises:
            ValueError: a configured block lies outside 0..depth-1.
        """
        raise NotImplementedError

    def tokens_after(self, num_tokens: int, block: int) -> int:
        """How many patch tokens leave reduction `block` when it receives `num_tokens` patch tokens."""
        raise NotImplementedError

    def reduces(self, num_tokens: int, block: int) -> bool:
        """Whether reduction `block` changes anything when it receives `num_tokens` patch tokens."""
        return self.tokens_after(num_tokens, block) != num_tokens

    def reduce(self, x: Tensor, view: AttentionView, block: int, track: bool) -> Reduced:
        """Reduce the token set at `block`.

        Args:
            x: [B, N, C] all tokens after the attention residual, prefix tokens first.
            view: the block's attention (class scores, keys, token sizes), computed on demand.
            block: the block's index (0-based, as in `model.blocks`).
            track: whether to describe the step as a Regroup (only when someone records provenance).

        Returns:
            the new tokens, their sizes, and the Regroup if `track`.
        """
        raise NotImplementedError


def count_after(method: Method, num_tokens: int, block: int, start: int, depth: int) -> int:
    """The patch tokens leaving reduction `block` of a `depth`-block model that receives `num_tokens`, in a
    pass that started with `start` patch tokens: `method.tokens_after`, given what a `counts_from_start` method
    needs."""
    if method.counts_from_start:
        return method.tokens_after(num_tokens, block, start=start, depth=depth)
    return method.tokens_after(num_tokens, block)


# One method, or several composed in order (a tuple, or any sequence as rv.apply takes them).
Methods = Method | Sequence[Method]
