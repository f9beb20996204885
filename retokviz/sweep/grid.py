"""The configurations a sweep measures on one model: the untouched model, and each method at each keep rate with
EViT's token budget (`rv.method_at`), with what they cost in MACs and tokens, counted on a real forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from retokviz.measure.macs import count_macs
from retokviz.methods.base import Methods
from retokviz.methods.budget import method_at
from retokviz.methods.compose import as_tuple
from retokviz.methods.tome import ToMe
from retokviz.patch import applied
from retokviz.trace.record import record
from retokviz.sweep.config import UNTOUCHED


@dataclass(frozen=True)
class Configuration:
    """One row's method.

    Attributes:
        method: the registry name ("evit", "tome", "imagepiece+tome"), or "none" for the untouched model.
        keep_rate: the EViT keep rate whose token budget the method gets (1.0 for the untouched model).
        reduction: what `rv.apply` takes, or None for the untouched model.
    """

    method: str
    keep_rate: float
    reduction: Methods | None = None

    @property
    def setting(self) -> str:
        """The method's setting as text: "keep_rate=0.7", "r=10 10 10 9", "keep_rate=0.7 + r=3 protect=0.7"."""
        return "" if self.reduction is None else " + ".join(_member_setting(m) for m in as_tuple(self.reduction))


def _member_setting(member) -> str:
    parts = []
    if member.has_keep_rate:
        parts.append(f"keep_rate={member.keep_rate:g}")
    if isinstance(member, ToMe):
        r = member.r if isinstance(member.r, int) else " ".join(str(value) for value in member.r)
        parts.append(f"r={r}")
        if member.protect:
            parts.append(f"protect={member.protect:g}")
    return " ".join(parts)


def configurations(model: nn.Module, methods: tuple[str, ...], keep_rates: tuple[float, ...]) -> list[Configuration]:
    """The untouched model first, then every method at every keep rate (`rv.method_at`, EViT's budget)."""
    configs = [Configuration(UNTOUCHED, 1.0)]
    for rate in keep_rates:
        for name in methods:
            configs.append(Configuration(name, rate, method_at(name, model, keep_rate=rate)))
    return configs


def macs_and_tokens(model: nn.Module, reduction: Methods | None) -> tuple[int, list[int]]:
    """MACs per image (`rv.count_macs`) and the patch tokens leaving each block, from one real forward pass of
    `model` running `reduction` (None: untouched); the model is as before after it."""
    if reduction is None:
        with applied(model, None):          # a learned method's checkpoint keeps its method on (sweep.models)
            return count_macs(model), [int(model.patch_embed.num_patches)] * len(model.blocks)
    with applied(model, reduction), record(model) as trace:
        macs = count_macs(model)
    return macs, [int(layer.num_tokens) for layer in trace.layers]
