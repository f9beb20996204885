"""The sweep's table: a tidy CSV, one row per configuration, appended row by row and resumed from.

    rows = read_table("sweep.csv")          # [{"model": ..., "method": "evit", "keep_rate": 0.7, ...}, ...]

A row is written, flushed and synced to disk as soon as it is measured, so a sweep killed at any point keeps
every row it finished. A row's configuration key is (model, method, keep_rate, batch_size, dtype); a sweep run
again with the same settings skips the keys already in the file. Every row carries the sweep's id (a hash of its
settings and of the device, torch and timm): a file holding rows of another sweep is refused, never mixed into.
A last line cut off by a kill (no newline at its end) is dropped when the sweep resumes.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

COLUMNS = (
    "model", "method", "keep_rate", "setting", "accuracy", "images_per_s", "speedup", "latency_ms",
    "peak_memory_mb", "macs", "macs_ceiling", "tokens", "spread", "note",
    "device", "dtype", "batch_size", "img_size", "attention", "compiled", "torch", "timm", "warmup", "runs",
    "rounds", "data", "sweep_id",
)
KEY = ("model", "method", "keep_rate", "batch_size", "dtype")
# The conditions one sweep shares in every row; a file that differs in one is named in the refusal.
CONDITIONS = ("device", "torch", "timm", "compiled", "warmup", "runs", "rounds")
FLOATS = ("keep_rate", "accuracy", "images_per_s", "speedup", "latency_ms", "peak_memory_mb", "macs_ceiling", "spread")
INTS = ("macs", "batch_size", "img_size", "warmup", "runs", "rounds")
BOOLS = ("compiled",)


class TableError(ValueError):
    """A CSV file that this sweep can't continue: other columns, another sweep's rows, or a malformed row."""


Key = tuple[str, str, float, int, str]


def row_key(row: Mapping) -> Key:
    """A row's configuration key (typed or as read from the CSV)."""
    return (str(row["model"]), str(row["method"]), round(float(row["keep_rate"]), 6), int(row["batch_size"]),
            str(row["dtype"]))


def format_value(column: str, value: object) -> str:
    """A value as written in the CSV: "" for None, lists space-separated, floats to 6 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    if isinstance(value, float):
        return repr(value) if column == "keep_rate" else f"{value:.6g}"
    return str(value)


def parse_row(raw: Mapping[str, str]) -> dict:
    """A CSV row with its values typed: floats, ints, bools, None for empty cells, text otherwise."""
    row = {}
    for column in COLUMNS:
        text = raw.get(column)
        if text is None or text == "":
            row[column] = None
        elif column in FLOATS:
            row[column] = float(text)
        elif column in INTS:
            row[column] = int(text) if text.lstrip("-").isdigit() else text     # "224x160": a non-square size
        elif column in BOOLS:
            row[column] = text == "true"
        else:
            row[column] = text
    return row


def _complete_text(path: Path) -> str:
    """The file's text up to its last newline: a last line a kill cut off is left out."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return text[:text.rfind("\n") + 1]


def _read_raw(path: Path) -> list[dict[str, str]]:
    text = _complete_text(path)
    if not text.strip():
        return []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise TableError(f"{path} is not a sweep table of this retokviz: its columns are {reader.fieldnames}, "
                         f"a sweep writes {list(COLUMNS)}; give another file (--out) or move this one away")
    rows = []
    for number, raw in enumerate(reader, start=2):
        if None in raw or any(raw[column] is None for column in COLUMNS):
            raise TableError(f"{path}, line {number}: malformed row (not {len(COLUMNS)} cells); repair or delete it")
        rows.append(raw)
    return rows


def read_table(path: str | os.PathLike) -> list[dict]:
    """The rows of a sweep CSV, typed (see `parse_row`), in file order.

    Raises:
        FileNotFoundError: no such file.
        TableError: not a sweep table (other columns) or a malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep table at {path} (python -m retokviz.sweep ... --out TABLE.csv writes one)")
    return [parse_row(raw) for raw in _read_raw(path)]


class Table:
    """An open sweep CSV: the keys already measured, and `append` for new rows.

    Args:
        path: the CSV file (made, with its header, at the first row).
        sweep_id: this sweep's id; rows with another are refused.
        conditions: this sweep's value of each CONDITIONS column, to say how another sweep's rows differ.
        axes: this sweep's models, methods, keep rates, batch sizes and dtypes by KEY column, for the same.

    Raises:
        TableError: the file holds something else (see `read_table`) or rows of another sweep.
    """

    def __init__(self, path: Path, sweep_id: str, conditions: Mapping[str, str],
                 axes: Mapping[str, Iterable] | None = None) -> None:
        self.path = path
        self.sweep_id = sweep_id
        raw = _read_raw(path)
        other = [row for row in raw if row["sweep_id"] != sweep_id]
        if other:
            raise TableError(f"{path} holds rows of another sweep (sweep id {other[0]['sweep_id']}, this sweep's is "
                             f"{sweep_id}): {_difference(other, conditions, axes or {})}. Rows of two sweeps are "
                             "never mixed: give another file (--out), or delete this one to start over")
        self.done: set[Key] = {row_key(row) for row in raw}
        complete = _complete_text(path)
        self._complete_bytes = len(complete.encode("utf-8")) if complete.strip() else 0     # blank: a new table

    def append(self, row: Mapping) -> None:
        """Write one row (all COLUMNS), flushed and synced, so that a kill right after keeps it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size != self._complete_bytes:
            os.truncate(self.path, self._complete_bytes)      # a last line cut off by a kill
        with open(self.path, "a", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, lineterminator="\n")
            if self._complete_bytes == 0:
                writer.writerow(COLUMNS)
            writer.writerow([format_value(column, row.get(column)) for column in COLUMNS])
            file.flush()
            os.fsync(file.fileno())
            self._complete_bytes = os.fstat(file.fileno()).st_size
        self.done.add(row_key(row))


def _difference(rows: list[dict[str, str]], conditions: Mapping[str, str], axes: Mapping[str, Iterable]) -> str:
    """How another sweep's rows differ from this sweep, in words."""
    found = []
    for column in CONDITIONS:
        theirs = sorted({row[column] for row in rows} - {format_value(column, conditions.get(column))})
        if column in conditions and theirs:
            found.append(f"{column} {' / '.join(theirs)} there, {format_value(column, conditions[column])} here")
    for column, values in axes.items():
        ours = {format_value(column, value) for value in values}
        theirs = sorted({row[column] for row in rows} - ours)
        if theirs:
            found.append(f"{column} {', '.join(theirs)} there, not in this sweep")
    return "; ".join(found) or ("measured with other settings (models, methods, keep rates, batch sizes, dtypes, "
                                "image size, test data, attention or compile)")
