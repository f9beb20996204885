"""Argument checks shared by the whole package: each raises with the bad value and the accepted range, naming the
argument as the caller writes it ("EViT.keep_rate", "batch size", "TrainConfig.epochs")."""
from __future__ import annotations

import math
import numbers


def is_int(value: object) -> bool:
    """An integer that is not a bool (True is an int to Python, never a count to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A finite real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def int_at_least(name: str, value: object, low: int) -> int:
    """`value` as an int if it is an int (a bool is not) >= low; else ValueError naming it and the valid range."""
    if not is_int(value) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def check_flag(name: str, value: object, error: type[Exception] = ValueError) -> bool:
    """`value` if it is True or False; else `error` naming it."""
    if not isinstance(value, bool):
        raise error(f"{name} must be True or False, got {value!r}")
    return value


def fraction(name: str, value: object, *, allow_zero: bool = False, allow_one: bool = True) -> float:
    """`value` as a float in (0, 1] (or [0, 1], (0, 1) as asked): TypeError for a non-number (or a bool), ValueError
    outside the range (NaN included)."""
    low = "[0" if allow_zero else "(0"
    high = "1]" if allow_one else "1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in {low}, {high}, got {value!r}")
    rate = float(value)
    inside = (0.0 <= rate if allow_zero else 0.0 < rate) and (rate <= 1.0 if allow_one else rate < 1.0)
    if not inside:
        raise ValueError(f"{name} must be in {low}, {high}, got {value!r}")
    return rate
