"""What every interactive board of retokviz shares (the explorer, rv.compare, the lesson widgets): the checks of a
`set(...)` call, run before any control changes, and the batching of redraws, so that several controls set at
once draw once."""
from __future__ import annotations

import html
import numbers
from contextlib import contextmanager
from typing import Any, Sequence

import numpy as np

KEEP_RATES = (0.1, 1.0, 0.05)                    # the keep-rate sliders' min, max, step
# What a change needs redrawn: the pictures and panels only, or (cached) passes first.
DISPLAY, SETTING = 1, 2
# What each view shows, in plain words (the view buttons' tooltips).
VIEW_TOOLTIPS = {
    "status": "each patch by what happened to it: kept, merged into a piece, fused, dropped",
    "pieces": "the merged pieces, one colour each",
    "attention": "how much the class token attends to each patch, where a reduction ranked them",
    "removed": "the patches let go of so far, split into background and object where the object is known",
}
# The attention view's tooltip where the scores are learned (DynamicViT).
LEARNED_SCORES_TOOLTIP = ("the keep score DynamicViT's small learned modules gave each patch's token, where a "
                          "reduction ranked them: the lowest are dropped")


def choose(kind: str, value: Any, options: Sequence[tuple[str, Any]]) -> Any:
    """The option `value` names (its value or its label, any case), or a ValueError listing the valid ones."""
    for text, option in options:
        if value == option or (isinstance(value, str) and value.lower() in (str(option).lower(), text.lower())):
            return option
    valid = ", ".join(f"{option!r}" + (f" ({text})" if text != str(option) else "") for text, option in options)
    raise ValueError(f"unknown {kind} {value!r}; the valid ones are {valid}")


def check_int(kind: str, value: Any, low: int, high: int) -> int:
    """`value` if an int (not a bool) in low..high, else a ValueError naming it and the range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{kind} must be an int in {low}..{high}, got {value!r}")
    return int(value)


def check_keep_rate(value: Any, limits: tuple[float, float, float] = KEEP_RATES) -> float:
    """`value` as a float if a number (not a bool) in the slider's range, else a ValueError naming it."""
    low, high, _ = limits
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not low <= float(value) <= high:
        raise ValueError(f"keep_rate must be a number in {low}..{high}, got {value!r}")
    return float(value)


def note_html(note: str | None, colour: str = "#a61e4d") -> str:
    """A short note in words (what was done to a picture, why a view can't be drawn), or "" for none."""
    return "" if not note else (f'<div style="color:{colour};font-size:12px;line-height:1.4">'
                                f'{html.escape(note)}</div>')


class Redraws:
    """Redraw batching: a control's change calls `_changed(level)`; inside `with self._hold():` changes only
    accumulate, and the outermost hold draws once with the highest level asked (`_refresh(level)`)."""

    _holding = 0
    _pending = 0

    def _refresh(self, level: int) -> None:
        raise NotImplementedError

    @contextmanager
    def _hold(self):
        """Changes inside are drawn once, at the end of the outermost hold."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._pending:
                level, self._pending = self._pending, 0
                self._refresh(level)

    def _changed(self, level: int) -> None:
        self._pending = max(self._pending, level)
        if not self._holding:
            level, self._pending = self._pending, 0
            self._refresh(level)
