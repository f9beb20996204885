"""When a sweep's figures are noise rather than speed: flagged in each row's `note` column and warned about.

- "noise: above MACs ceiling": a speed-up larger than the untouched MACs / the configuration's MACs. Removing
  tokens saves at most the arithmetic it removes, so the excess is the machine's noise.
- "within spread": the speed-up differs from 1 by less than the spread of the rounds (this configuration's or the
  untouched model's, the larger): the run did not resolve the difference.
- Between methods at the same keep rate (same model, batch and dtype), a throughput difference smaller than their
  spreads gets a warning (no note: it concerns two rows).
- With fewer than 2 rounds the spread is not measured: it is left empty (None), no figure is checked against it,
  and the sweep says so once (`rounds_caveat`).
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence

from retokviz.methods.registry import label
from retokviz.sweep.config import UNTOUCHED

ABOVE_CEILING = "noise: above MACs ceiling"
WITHIN_SPREAD = "within spread"


class NoiseWarning(UserWarning):
    """A sweep figure that the run's own noise can explain."""


def larger(*spreads: float | None) -> float | None:
    """The largest of some spreads; None if one of them was not measured."""
    return None if any(spread is None for spread in spreads) else max(spreads)


def rounds_caveat(rounds: int) -> list[str]:
    """The caveat of a sweep of fewer than 2 rounds (none for 2 or more)."""
    if rounds >= 2:
        return []
    return [f"{rounds} round: the spread of the rounds is not measured (it takes 2 rounds or more), so the spread "
            "column is empty and no speed-up was checked against the run's noise; run 2 rounds or more (--rounds) "
            "to measure it"]


def note(speedup: float, ceiling: float, spread: float | None) -> str:
    """The note of a row whose speed-up is `speedup`, MACs ceiling `ceiling`, and rounds' spread `spread` (the
    larger of its own and the untouched model's; None: not measured); "" for a figure the run resolved."""
    if speedup > ceiling:
        return ABOVE_CEILING
    if spread is not None and abs(speedup - 1.0) < spread:
        return WITHIN_SPREAD
    return ""


def _name(row: Mapping) -> str:
    return "untouched" if row["method"] == UNTOUCHED else label(row["method"])


def _where(row: Mapping) -> str:
    return f"{row['model']}, batch {row['batch_size']}, {row['dtype']}"


def caveats(rows: Sequence[Mapping], reference_spread: float | None = 0.0) -> list[str]:
    """The sentences warning about `rows` (one group: same model, batch and dtype): their notes, and methods at
    the same keep rate whose difference in throughput is within their spreads. `reference_spread` is the spread
    of the untouched model's rounds, which the notes took into account."""
    found = []
    for row in rows:
        if row["note"] == ABOVE_CEILING:
            found.append(f"{_where(row)}: {_name(row)} at keep {row['keep_rate']:g} runs {row['speedup']:.2f}x, above "
                         f"its MACs ceiling of {row['macs_ceiling']:.2f}x, which removing tokens can't do: noise")
        elif row["note"] == WITHIN_SPREAD:
            found.append(f"{_where(row)}: {_name(row)} at keep {row['keep_rate']:g} differs from the untouched model "
                         f"by {abs(row['speedup'] - 1):.1%}, within the rounds' spread "
                         f"({larger(row['spread'], reference_spread) or 0:.1%}): not resolved")
    reduced = [row for row in rows if row["method"] != UNTOUCHED]
    for first, second in itertools.combinations(reduced, 2):
        if first["keep_rate"] != second["keep_rate"]:
            continue
        speeds = (first["images_per_s"], second["images_per_s"])
        difference = max(speeds) / min(speeds) - 1
        spread = larger(first["spread"], second["spread"])
        if spread is not None and difference < spread:
            found.append(f"{_where(first)}: at keep {first['keep_rate']:g}, {_name(first)} and {_name(second)} differ "
                         f"by {difference:.1%} in throughput, within their rounds' spread ({spread:.1%}): not resolved")
    return found


def warn(sentences: Sequence[str]) -> None:
    """Each sentence as a NoiseWarning."""
    for sentence in sentences:
        warnings.warn(sentence, NoiseWarning, stacklevel=3)
