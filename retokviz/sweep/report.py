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
        if row["compiled"] and row["first_pass_s"] is not None:
            tail += f"; first pass (compiling) {row['first_pass_s']:.1f} s"
        lines.append(f"{row['model'][:23]:<24}{name[:17]:<18}{row['keep_rate']:>5g}{row['batch_size']:>6}"
                     f"{row['dtype']:>6}{accuracy:>7}{_cell(row['images_per_s'], '.1f'):>10}"
                     f"{_cell(row['speedup'], '.2f'):>8}x{_cell(row['macs_ceiling'], '.2f'):>7}x"
                     f"{_cell(row['latency_ms'], '.2f'):>8}{row['macs'] / 1e9:>8.3f}"
                     f"{str(row['tokens']).split()[-1]:>6}{_cell(row['spread'], '.1%'):>7}  {tail}")
    return "\n".join(lines)


def _tokens(value: object) -> str:
    """'196 196 139 ...' -> '196/139/99/71': the counts leaving the blocks, each change once."""
    counts = [int(count) for count in str(value).split()]
    changes = [count for index, count in enumerate(counts) if index == 0 or count != counts[index - 1]]
    return "/".join(map(str, changes))


def format_markdown(rows: Sequence[dict]) -> str:
    """The rows as a Markdown table, one line per configuration (as the README quotes them), under one line of the
    conditions they share; rows of several models, batch sizes or dtypes say which in their first cell.

    Args:
        rows: typed rows, as `read_table` gives them.
    """
    if not rows:
        return "(no rows)"
    varying = [column for column in ("model", "batch_size", "dtype")
               if len({row[column] for row in rows}) > 1]
    first = rows[0]
    conditions = (f"{first['device']}, torch {first['torch']}, timm {first['timm']}, {first['attention']}, "
                  f"{first['warmup']} warm-up + {first['runs']} timed passes x {first['rounds']} rounds, "
                  f"median round" + ("" if varying else f", batch {first['batch_size']}, {first['dtype']}")
                  + (", spread not measured (it takes 2 rounds or more)"
                     if isinstance(first["rounds"], int) and first["rounds"] < 2 else ""))
    compiled = any(row["compiled"] for row in rows)     # then the compile time, beside the steady state
    lines = [f"Conditions: {conditions}.", "",
             "| configuration | tokens leaving the blocks | top-1 | GMACs | img/s | speed-up | MACs ceiling "
             "| of ceiling | batch-1 latency | spread |" + (" first pass (compiling) |" if compiled else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if compiled else "")]
    for row in rows:
        name = "untouched" if row["method"] == UNTOUCHED else f"{label(row['method'])} {row['keep_rate']:g}"
        if varying:
            name = ", ".join(str(row[column]) for column in varying) + f": {name}"
        accuracy = "" if row["accuracy"] is None else f"{row['accuracy']:.1%}"
        share = ("" if row["speedup"] is None or not row["macs_ceiling"] else
                 f"{row['speedup'] / row['macs_ceiling']:.0%}")
        latency = "" if row["latency_ms"] is None else f"{row['latency_ms']:.1f} ms"
        lines.append(f"| {name} | {_tokens(row['tokens'])} | {accuracy} | {row['macs'] / 1e9:.3f} | "
                     f"{_cell(row['images_per_s'], '.1f')} | {_cell(row['speedup'], '.2f')}x | "
                     f"{_cell(row['macs_ceiling'], '.2f')}x | {share} | {latency} | {_cell(row['spread'], '.1%')} |"
                     + (f" {_cell(row['first_pass_s'], '.1f')} s |" if compiled else ""))
    return "\n".join(lines)


if __name__ == "__main__":          # python -m retokviz.sweep.report TABLE.csv: the table in Markdown
    import sys

    from retokviz.sweep.table import TableError, read_table

    if len(sys.argv) != 2:
        sys.exit("usage: python -m retokviz.sweep.report TABLE.csv")
    try:
        table = read_table(sys.argv[1])
    except (FileNotFoundError, TableError) as error:
        sys.exit(f"error: {error}")
    print(format_markdown(table))
