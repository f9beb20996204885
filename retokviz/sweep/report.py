"""A sweep table as printed: its conditions once, then one line per row."""
from __future__ import annotations

from collections.abc import Sequence

from retokviz.methods.registry import label
from retokviz.sweep.config import UNTOUCHED

SHARED = ("device", "torch", "timm", "compiled", "warmup", "runs", "rounds")


def _cell(value: object, form: str) -> str:
    return "" if value is None else format(value, form)


def format_table(rows: Sequence[dict]) -> str:
    """The conditions the rows share, then model, method, keep rate, batch, dtype and the figures per row."""
    if not rows:
        return "(no rows)"
    lines = [f"{column:>9}: {rows[0][column]}" for column in SHARED]
    header = (f"{'model':<24}{'method':<18}{'keep':>5}{'batch':>6}{'dtype':>6}{'top-1':>7}{'img/s':>10}"
              f"{'speed-up':>9}{'ceiling':>8}{'lat ms':>8}{'GMACs':>8}{'final':>6}{'spread':>7}  attention / note")
    lines += ["", header, "-" * len(header)]
    for row in rows:
        name = "untouched" if row["method"] == UNTOUCHED else label(row["method"])
        accuracy = "" if row["accuracy"] is None else f"{row['accuracy']:.1%}"
        tail = row["attention"] + (f"; {row['note']}" if row["note"] else "")
        lines.append(f"{row['model'][:23]:<24}{name[:17]:<18}{row['keep_rate']:>5g}{row['batch_size']:>6}"
                     f"{row['dtype']:>6}{accuracy:>7}{_cell(row['images_per_s'], '.1f'):>10}"
                     f"{_cell(row['speedup'], '.2f'):>8}x{_cell(row['macs_ceiling'], '.2f'):>7}x"
                     f"{_cell(row['latency_ms'], '.2f'):>8}{row['macs'] / 1e9:>8.3f}"
                     f"{str(row['tokens']).split()[-1]:>6}{_cell(row['spread'], '.1%'):>7}  {tail}")
    return "\n".join(lines)
