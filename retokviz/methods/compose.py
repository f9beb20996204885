"""Several methods in one model: `rv.apply(model, [rv.ImagePiece(keep_rate=0.7), rv.ToMe(r=8)])`.

Each method reduces at its own blocks. Where several reduce at one block they run in the list's order, each on the
tokens the previous one left: merged tokens are scored again (a merged token's key is the size-weighted mean of its
members' keys, with the log-size bias), so the second method sees the same kind of attention the first one did.

ImagePiece's importance protects the semantic tokens from ToMe: in a list with ImagePiece (or EViT), a ToMe without
its own `protect` share gets the importance method's keep rate as its `protect`, so in every block the tokens with
the highest class attention, that share of them, take no part in ToMe's matching. `rv.method_of(model)` shows the
methods as applied, protect filled in.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from retokviz.methods.base import Method, count_after
from retokviz.methods.tome import ToMe


def compose(methods: Method | Sequence[Method]) -> Method | tuple[Method, ...]:
    """Check a method or a list of methods; a list becomes a tuple, ToMe protecting the semantic tokens.

    Raises:
        TypeError: something in it is not a method.
        ValueError: an empty list.
    """
    if isinstance(methods, Method):
        return methods
    if isinstance(methods, (str, bytes)) or not isinstance(methods, Sequence):
        raise TypeError(
            f"rv.apply needs a method such as rv.EViT(keep_rate=0.7), or a list of methods, got {methods!r}"
        )
    if not methods:
        raise ValueError("rv.apply got an empty list of methods; give at least one, e.g. [rv.ImagePiece()]")
    for method in methods:
        if not isinstance(method, Method):
            raise TypeError(f"rv.apply: every entry of the list must be a method such as rv.ToMe(r=8), got {method!r}")
    if len(methods) == 1:
        return methods[0]
    importance = [m.keep_rate for m in methods if m.has_keep_rate]
    if importance:
        methods = [
            dataclasses.replace(m, protect=min(importance)) if isinstance(m, ToMe) and m.protect == 0 else m
            for m in methods
        ]
    return tuple(methods)


def as_tuple(methods: Method | tuple[Method, ...]) -> tuple[Method, ...]:
    """A method or a composed tuple, as a tuple."""
    return methods if isinstance(methods, tuple) else (methods,)


def schedule(methods: Method | tuple[Method, ...], depth: int) -> dict[int, tuple[Method, ...]]:
    """For each block of a `depth`-block model where something reduces, the methods that reduce there, in order.

    Raises:
        ValueError: a method's layers lie outside the model's blocks.
    """
    plan: dict[int, list[Method]] = {}
    for method in as_tuple(methods):
        for block in method.reduction_layers(depth):
            plan.setdefault(block, []).append(method)
    return {block: tuple(plan[block]) for block in sorted(plan)}


def token_counts(methods: Method | tuple[Method, ...], depth: int, num_patches: int) -> list[int]:
    """The patch tokens leaving each block of a `depth`-block model that starts with `num_patches`, by arithmetic."""
    plan, tokens, counts = schedule(methods, depth), num_patches, []
    for block in range(depth):
        for method in plan.get(block, ()):
            tokens = count_after(method, tokens, block, num_patches, depth)
        counts.append(tokens)
    return counts


def tome_for_budget(depth: int, num_patches: int, final_tokens: int) -> ToMe:
    """The ToMe whose per-block r ends with `final_tokens` tokens: as even as possible (larger first), or, where
    that would ask a block to merge more than half its tokens, as early as possible; as close as the depth allows."""
    merges = num_patches - final_tokens
    if merges < 0 or final_tokens < 1:
        raise ValueError(f"final_tokens must be in 1..{num_patches}, got {final_tokens}")
    base, extra = divmod(merges, depth)
    even = ToMe(r=tuple([base + 1] * extra + [base] * (depth - extra)))
    if token_counts(even, depth, num_patches)[-1] == final_tokens:
        return even
    early, tokens = [], num_patches
    for _ in range(depth):
        early.append(min(tokens // 2, merges - sum(early)))
        tokens -= early[-1]
    return ToMe(r=tuple(early))
