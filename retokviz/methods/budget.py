"""A method at a keep rate or a token budget: the one function behind every keep-rate axis in retokviz (the
benchmark, the evaluation, training's schedule, the sweep and the explorer's slider).

    rv.method_at("evit", model, keep_rate=0.5)                # EViT(keep_rate=0.5)
    rv.method_at("tome", model, keep_rate=0.5)                # ToMe with the per-block r that ends with
                                                              #   EViT(0.5)'s final token count: an equal budget
    rv.method_at("imagepiece+tome", model, keep_rate=0.7)     # ImagePiece(0.7) with a light ToMe (see below)
    rv.method_at(rv.EViT(0.7, fuse=False), model, tokens=20)  # a template: its other fields are kept

The budget of a keep rate k is EViT(keep_rate=k)'s (with its fused token, default blocks) count of patch tokens
leaving the last block. A method with a keep rate gets k itself (or, for a token budget, the largest keep rate
whose final count is within the budget); ToMe gets the per-block r that ends with that budget
(`compose.tome_for_budget`). In a composition every member with a keep rate gets k, and a ToMe member keeps its r;
a composition named by string gets ToMe r = max(1, round(0.04 * P)) per block (8 for DeiT-S's 196 patches, the
ImagePiece paper's composed setting).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import nn

from retokviz.methods.base import Method, Methods, check_rate
from retokviz.methods.compose import as_tuple, compose, token_counts, tome_for_budget
from retokviz.methods.evit import EViT
from retokviz.methods.registry import members, method_class
from retokviz.methods.tome import ToMe


# A composition made from names merges this share of the patches per block with ToMe.
COMPOSED_TOME_SHARE = 0.04


def model_shape(model: nn.Module, image_size: int | tuple[int, int] | None = None) -> tuple[int, int]:
    """(depth, P): a timm ViT's blocks and its patch tokens at `image_size` (default: the size it was made for)."""
    depth = len(model.blocks)
    if image_size is None:
        return depth, int(model.patch_embed.num_patches)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    rows, cols = model.patch_embed.dynamic_feat_size(size)
    return depth, int(rows * cols)


def budget(keep_rate: float, depth: int, num_patches: int) -> int:
    """The patch tokens EViT(keep_rate) leaves after the last block of a `depth`-block model with `num_patches`."""
    return token_counts(EViT(keep_rate=keep_rate), depth, num_patches)[-1]


def _template(method: str | Method | Sequence[Method], num_patches: int) -> tuple[Method, ...]:
    if isinstance(method, str):
        names = members(method)
        r = max(1, round(COMPOSED_TOME_SHARE * num_patches)) if len(names) > 1 else None
        return tuple(ToMe(r=r) if name == "tome" and r else method_class(name)() for name in names)
    return as_tuple(compose(method))


def _at_rate(template: Method, keep_rate: float) -> Method:
    return dataclasses.replace(template, keep_rate=keep_rate)


def method_at(
    method: str | Method | Sequence[Method],
    model: nn.Module | None = None,
    *,
    keep_rate: float | None = None,
    tokens: int | None = None,
    depth: int | None = None,
    num_patches: int | None = None,
) -> Methods:
    """`method` set to reach a keep rate, or a final token budget.

    Args:
        method: a registered name ("evit", "imagepiece", "tome", "imagepiece+tome"), or a method or list of
            methods used as a template (fields other than the keep rate / r are kept).
        model: the timm ViT it is for (gives depth and P); or give `depth` and `num_patches`.
        keep_rate: in (0, 1]; exactly one of keep_rate and tokens.
        tokens: the patch tokens that should leave the last block, in 1..P.

    Returns:
        a method, or a tuple of methods for a composition (as `rv.apply` takes it).

    Raises:
        ValueError: both or neither of keep_rate and tokens, a value out of range, or an unknown name.
    """
    if model is not None:
        depth, num_patches = model_shape(model)
    if depth is None or num_patches is None:
        raise ValueError("method_at needs a model, or depth= and num_patches=")
    if (keep_rate is None) == (tokens is None):
        raise ValueError(f"give exactly one of keep_rate and tokens, got keep_rate={keep_rate!r}, tokens={tokens!r}")
    if keep_rate is not None:
        keep_rate = check_rate("method_at", "keep_rate", keep_rate)
    elif isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= num_patches:
        raise ValueError(f"method_at: tokens must be an int in 1..{num_patches} (this model's patches), got {tokens!r}")
    template = _template(method, num_patches)
    if keep_rate is None:
        keep_rate = _rate_for_tokens(tokens, depth, num_patches)
    final = budget(keep_rate, depth, num_patches) if tokens is None else tokens
    out = []
    for member in template:
        if member.has_keep_rate:
            out.append(_at_rate(member, keep_rate))
        elif isinstance(member, ToMe) and len(template) == 1:
            out.append(dataclasses.replace(member, r=tome_for_budget(depth, num_patches, final).r))   # order kept
        else:
            out.append(member)
    return out[0] if len(out) == 1 else compose(out)


def _rate_for_tokens(tokens: int, depth: int, num_patches: int) -> float:
    """The largest keep rate (to 1e-4) whose EViT budget is at most `tokens` (the smallest one if none is)."""
    low, high = 1e-4, 1.0
    if budget(high, depth, num_patches) <= tokens:
        return 1.0
    for _ in range(40):
        middle = (low + high) / 2
        if budget(middle, depth, num_patches) <= tokens:
            low = middle
        else:
            high = middle
    return round(low, 6) if budget(round(low, 6), depth, num_patches) <= tokens else low
