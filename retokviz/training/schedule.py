"""The schedules of a run: EViT's keep rate falling along a cosine after a warm-up, and the learning rate's linear
warm-up then cosine, both per iteration."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable


from retokviz.methods.base import Method, Methods
from retokviz.training.config import TrainConfig


# ------------------------------------------------------------------------------------------------- schedules

def keep_rate_at(step: int, steps_per_epoch: int, target: float, warmup_epochs: int, decay_epochs: int) -> float:
    """EViT's keep-rate schedule: 1.0 for `warmup_epochs`, a per-iteration cosine down to `target` over
    `decay_epochs`, then `target`. `step` counts iterations from 0."""
    warmup, decay = warmup_epochs * steps_per_epoch, decay_epochs * steps_per_epoch
    if step < warmup:
        return 1.0
    if step >= warmup + decay:
        return target
    progress = (step - warmup) / decay
    return min(1.0, target + (1.0 - target) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float, final_lr: float) -> float:
    """The learning rate of iteration `step` (from 0): linear warm-up to `peak_lr` over `warmup_steps`, reaching it
    at the last warm-up step, then a cosine from `peak_lr` towards `final_lr` at `total_steps`."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _members(method: Methods | None) -> tuple[Method, ...]:
    if method is None:
        return ()
    return (method,) if isinstance(method, Method) else tuple(method)


def keep_rate_targets(method: Methods | None) -> list[float]:
    """The keep rates the schedule leads to: of `method` or of each method of a composition that has a keep rate
    (`has_keep_rate`: EViT, ImagePiece); empty when the schedule doesn't apply (None, ToMe)."""
    return [member.keep_rate for member in _members(method) if member.has_keep_rate]


def at_keep_rates(method: Methods, keep_for: Callable[[float], float]) -> Methods:
    """`method` with each keep rate k replaced by keep_for(k) (in each method of a composition, given as a list)."""
    members = [dataclasses.replace(member, keep_rate=keep_for(member.keep_rate)) if member.has_keep_rate else member
               for member in _members(method)]
    return members[0] if isinstance(method, Method) else members


def check_schedule(config: TrainConfig, method: Methods | None) -> None:
    """Raise ValueError if a keep-rate method would not reach its own keep rate by the end of training."""
    schedule = config.keep_warmup_epochs + config.keep_decay_epochs
    targets = keep_rate_targets(method)
    if targets and schedule > config.epochs:
        raise ValueError(
            f"the keep-rate schedule, keep_warmup_epochs={config.keep_warmup_epochs} + keep_decay_epochs="
            f"{config.keep_decay_epochs} = {schedule}, must fit in epochs={config.epochs} so that training ends "
            f"at the method's own keep rate {targets[0]}"
        )
