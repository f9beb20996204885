"""The sweep's table: a tidy CSV, one row per configuration, appended row by row and resumed from.

    rows = read_table("sweep.csv")          # [{"model": ..., "method": "evit", "keep_rate": 0.7, ...}, ...]

A row is written, flushed and synced to disk as soon as it is measured, so a sweep killed at any point keeps
every row it finished. A row's configuration key is (model, method, keep_rate, batch_size, dtype); a sweep run
again with the same settings skips the keys already in the file. Every row carries the sweep's id (a hash of its
settings and of the device, torch and timm): a file holding rows of another sweep is refused, never mixed into.
A last line cut off by a kill (no newline at its end, and not a whole row) is dropped when the sweep resumes, by
rewriting the file atomically; a whole last row that only lacks its newline is kept.

A table edited by hand or saved by a spreadsheet is read as such: "\r\n" line breaks (kept when rows are added),
a UTF-8 byte-order mark, the columns in another order (rows are added in the file's order), quoted cells, spaces
around cells, blank lines, TRUE/FALSE. Anything else is refused with a TableError naming the file and the line
(and, for a value that is not of its column's type, the column and the value).

One writer at a time: a sweep holds an exclusive lock (`flock` on TABLE.lock beside the table) from before it
reads the table to its end; a second sweep writing the same table is refused, naming the first one's process id.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from retokviz._util.files import write_atomically

try:
    import fcntl
except ImportError:         # Windows: msvcrt's byte lock, which also dies with its process
    import msvcrt

    fcntl = None

COLUMNS = (
    "model", "method", "keep_rate", "setting", "accuracy", "images_per_s", "speedup", "latency_ms", "first_pass_s",
    "peak_memory_mb", "macs", "macs_ceiling", "tokens", "spread", "note",
    "device", "dtype", "batch_size", "img_size", "attention", "compiled", "torch", "timm", "warmup", "runs",
    "rounds", "data", "sweep_id",
)
KEY = ("model", "method", "keep_rate", "batch_size", "dtype")
# The conditions one sweep shares in every row; a file that differs in one is named in the refusal.
CONDITIONS = ("device", "torch", "timm", "compiled", "warmup", "runs", "rounds")
FLOATS = ("keep_rate", "accuracy", "images_per_s", "speedup", "latency_ms", "first_pass_s", "peak_memory_mb",
          "macs_ceiling", "spread")
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


def parse_row(raw: Mapping[str, str], where: str | None = None) -> dict:
    """A CSV row with its values typed: floats, ints, bools, None for empty cells, text otherwise (each cell
    stripped of the spaces around it).

    Args:
        raw: column -> text; a column it lacks is None.
        where: "FILE, line N", named in an error.

    Raises:
        TableError: a cell that is not of its column's type, naming `where`, the column and the value.
    """
    row = {}
    for column in COLUMNS:
        value = raw.get(column)
        text = "" if value is None else str(value).strip()
        if text == "":
            row[column] = None
        elif column in FLOATS:
            try:
                row[column] = float(text)
            except ValueError:
                raise _bad(where, column, text, "a number") from None
        elif column in INTS:
            if _INT.fullmatch(text):
                row[column] = int(text)
            elif column == "img_size" and _SIZE.fullmatch(text):
                row[column] = text                                  # "224x160": a non-square size
            else:
                raise _bad(where, column, text, "a whole number" + (" or HxW" if column == "img_size" else ""))
        elif column in BOOLS:
            if text.lower() not in ("true", "false"):               # a spreadsheet writes TRUE / FALSE
                raise _bad(where, column, text, "true or false")
            row[column] = text.lower() == "true"
        else:
            row[column] = text
    return row


_INT = re.compile(r"[+-]?\d+")
_SIZE = re.compile(r"\d+x\d+")
SWEEP_ID = re.compile(r"[0-9a-f]{12}")          # as SweepConfig.sweep_id makes it
REQUIRED = (*KEY, "sweep_id")                   # the cells no row may leave empty


def _bad(where: str | None, column: str, text: str, kind: str) -> TableError:
    return TableError(f"{where + ': ' if where else ''}column {column} holds {text!r}, not {kind}; "
                      "correct or delete that row")


@dataclass
class _Contents:
    """A sweep CSV as read: its rows, and where its complete part ends (what follows: a line cut off by a kill)."""

    header: tuple[str, ...] | None      # the file's columns in its order; None: no header yet (a new table)
    raw: list[dict[str, str]] = field(default_factory=list)     # the rows as text, stripped
    rows: list[dict] = field(default_factory=list)              # the same, typed
    complete: int = 0                   # bytes up to the end of the last complete line
    terminated: bool = True             # the complete part ends with a line break (else a row lacks its last one)
    newline: str = "\n"                 # the file's line break: "\r\n" in a table saved by a spreadsheet


def _load(path: Path) -> _Contents:
    """Read a sweep CSV (see the module docstring): line breaks "\n" or "\r\n", a UTF-8 BOM, the columns in any
    order, quoted cells, spaces around cells and blank lines are all read; anything else is refused by line.

    Raises:
        TableError: not a sweep table, or a malformed row (naming the file, the line and, for a bad value, the
            column and the value).
    """
    data = path.read_bytes() if path.exists() else b""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0    # Excel's "CSV UTF-8"
    cut = max(data.rfind(b"\n") + 1, start)          # the end of the last line ending in a line break
    first_break = data.find(b"\n")
    newline = "\r\n" if first_break > 0 and data[first_break - 1:first_break] == b"\r" else "\n"
    try:
        text = data[start:cut].decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:start + error.start].count(b"\n") + 1
        raise TableError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[start + error.start]:02x}); "
                         "save the table as CSV UTF-8") from None
    contents = _Contents(None, newline=newline)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise TableError(f"{path}, line {line}: {error} (a quote left open or misplaced); repair or delete "
                             "that row") from None
        _take(path, line, cells, contents)
        line = reader.line_num + 1
    contents.complete = cut if contents.header is not None else 0
    tail = data[cut:]
    cells = _tail_cells(tail)
    if cells is not None:
        if contents.header is None:
            names = _names(cells)
            whole, found = ",".join(COLUMNS), ",".join(names)
            if names and found != whole and whole.startswith(found):
                return contents                       # the header itself, cut off by a kill: a new table
        elif not _is_whole_row(tail, cells, contents.header):
            return contents                           # a row cut off by a kill: dropped, and measured again
        _take(path, line, cells, contents)          # a whole header or row without its line break: kept
        contents.complete, contents.terminated = len(data), False
    return contents


def _names(cells: list[str]) -> list[str]:
    """A header's column names, stripped (a BOM left inside too), trailing empty ones left out."""
    names = [cell.strip().lstrip("\ufeff").strip() for cell in cells]
    while names and names[-1] == "":
        names.pop()
    return names


def _tail_cells(tail: bytes) -> list[str] | None:
    """The cells of a last line without a line break; None where there are none or it can't be a whole line."""
    try:
        records = list(csv.reader(io.StringIO(tail.decode("utf-8"), newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error):          # cut inside a character or a quoted cell
        return None
    if len(records) != 1 or not any(cell.strip() for cell in records[0]):
        return None
    return records[0]


def _is_whole_row(tail: bytes, cells: list[str], header: tuple[str, ...]) -> bool:
    """Whether a last line without a line break is a whole row (kept) rather than one cut off by a kill (dropped):
    all its cells, and its last one whole (a line break's "\r", or the sweep id as long as a sweep makes it)."""
    if len(cells) < len(header):
        return False
    if len(cells) > len(header) or tail.endswith(b"\r"):
        return True
    last = cells[-1].strip()
    return header[-1] != "sweep_id" or SWEEP_ID.fullmatch(last) is not None


def _take(path: Path, line: int, cells: list[str], contents: _Contents) -> None:
    """One CSV record: the header, a blank line (skipped), or a row (checked and typed)."""
    if contents.header is None:
        names = _names(cells)
        if not names:
            return
        if sorted(names) != sorted(COLUMNS):
            missing = [column for column in COLUMNS if column not in names]
            unknown = sorted({name for name in names if name not in COLUMNS or names.count(name) > 1})
            raise TableError(f"{path}, line {line}: not a sweep table of this retokviz: its columns are {names}, a "
                             f"sweep writes {list(COLUMNS)} (missing {missing}, unknown or repeated {unknown}); "
                             "give another file (--out) or move this one away")
        contents.header = tuple(names)
        return
    values = [cell.strip() for cell in cells]
    if not any(values):
        return
    width = len(contents.header)
    if len(values) > width and not any(values[width:]):
        values = values[:width]                        # empty cells a spreadsheet added at the end
    if len(values) != width:
        raise TableError(f"{path}, line {line}: malformed row ({len(values)} cells, the header has {width}); "
                         "repair or delete it")
    raw = dict(zip(contents.header, values))
    for column in REQUIRED:
        if not raw[column]:
            raise TableError(f"{path}, line {line}: column {column} is empty; every row needs its "
                             f"{', '.join(REQUIRED)}; correct or delete that row")
    contents.rows.append(parse_row(raw, f"{path}, line {line}"))
    contents.raw.append(raw)


def read_table(path: str | os.PathLike) -> list[dict]:
    """The rows of a sweep CSV, typed (see `parse_row`), in file order. A last line cut off by a kill is left out;
    a whole last row without its line break is read.

    Raises:
        FileNotFoundError: no such file.
        TableError: not a sweep table (other columns) or a malformed row, naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep table at {path} (python -m retokviz.sweep ... --out TABLE.csv writes one)")
    return _load(path).rows


def lock_path(table: str | os.PathLike) -> Path:
    """The lock file a sweep writing `table` holds, beside it: TABLE.lock (removed when the sweep ends)."""
    table = Path(table)
    return table.with_name(table.name + ".lock")


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock of an open lock file; False where another process holds it. The lock dies with
    its process (a kill, a crash), so a stale lock never blocks."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    try:                                                            # Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _same_file(path: Path, fd: int) -> bool:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def _lock(table: Path) -> int:
    """Lock `table` for this process (see `Table`): the open lock file, its id written in it.

    Raises:
        TableError: another sweep is writing the table, or its folder can't hold a lock.
    """
    path = lock_path(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            taken = _try_lock(fd)
        except OSError as error:                              # a file system without locks
            os.close(fd)
            raise TableError(f"can't lock {table} against a second sweep ({error}); write it to a local folder "
                             "(--out)") from None
        if not taken:
            holder = "unknown"
            with contextlib.suppress(OSError):
                os.lseek(fd, 0, os.SEEK_SET)
                text = os.read(fd, 32).decode("ascii", "replace").strip()
                holder = text if text.isdigit() else holder
            os.close(fd)
            raise TableError(f"another sweep is writing {table} (pid {holder}): wait for it to end, or give "
                             "another file (--out)")
        if _same_file(path, fd):
            break
        os.close(fd)                    # the lock file was removed by a sweep ending meanwhile: lock the new one
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _unlock(table: Path, fd: int) -> None:
    """Remove the lock file (while still holding it) and release the lock."""
    try:
        if _same_file(lock_path(table), fd):
            with contextlib.suppress(OSError):
                os.unlink(lock_path(table))
    finally:
        os.close(fd)


class Table:
    """An open sweep CSV, locked for this writer: the keys already measured, and `append` for new rows.

    A second writer of the same table (another sweep, process or `Table`) is refused while this one is open: the
    lock is an exclusive `flock` on TABLE.lock beside the table, taken before the table is read and held until
    `close` (a sweep's `execute` closes it at its end, also on an error or Ctrl-C; a killed process's lock dies
    with it).

    Args:
        path: the CSV file (made, with its header, at the first row).
        sweep_id: this sweep's id; rows with another are refused.
        conditions: this sweep's value of each CONDITIONS column, to say how another sweep's rows differ.
        axes: this sweep's models, methods, keep rates, batch sizes and dtypes by KEY column, for the same.

    Raises:
        TableError: another sweep is writing the file, or it holds something else (see `read_table`) or rows of
            another sweep.
    """

    def __init__(self, path: Path, sweep_id: str, conditions: Mapping[str, str],
                 axes: Mapping[str, Iterable] | None = None) -> None:
        self.path = Path(path)
        self.sweep_id = sweep_id
        self._conditions, self._axes = conditions, axes or {}
        self._lock: int | None = None
        self.done: set[Key] = set()
        self.open()

    @property
    def is_open(self) -> bool:
        return self._lock is not None

    def open(self) -> None:
        """Lock the table (if this object does not hold it already) and read what it holds."""
        if self._lock is not None:
            return
        self._lock = _lock(self.path)
        try:
            contents = _load(self.path)
            other = [row for row in contents.raw if row["sweep_id"] != self.sweep_id]
            if other:
                raise TableError(
                    f"{self.path} holds rows of another sweep (sweep id {other[0]['sweep_id']}, this sweep's is "
                    f"{self.sweep_id}): {_difference(other, self._conditions, self._axes)}. Rows of two sweeps are "
                    "never mixed: give another file (--out), or delete this one to start over")
        except BaseException:
            self.close()
            raise
        self.done = {row_key(row) for row in contents.rows}
        self._contents = contents

    def close(self) -> None:
        """Release the lock (again: nothing)."""
        fd, self._lock = self._lock, None
        if fd is not None:
            _unlock(self.path, fd)

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def append(self, row: Mapping) -> None:
        """Write one row (all COLUMNS, in the file's order), flushed and synced, so that a kill right after keeps
        it. A last line cut off by a kill is dropped first, by rewriting the file atomically."""
        if self._lock is None:
            raise TableError(f"{self.path} is not locked for writing: open() the table first")
        contents = self._contents
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = self.path.stat().st_size if self.path.exists() else 0
        if size != contents.complete:
            with open(self.path, "rb") as file:
                kept = file.read(contents.complete)
            write_atomically(self.path, lambda file: file.write(kept))
        header = contents.header or COLUMNS
        with open(self.path, "a", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, lineterminator=contents.newline)
            if not contents.terminated:
                file.write(contents.newline)                # a whole last row that lacked its line break
            if contents.header is None:
                writer.writerow(header)
            writer.writerow([format_value(column, row.get(column)) for column in header])
            file.flush()
            os.fsync(file.fileno())
            contents.complete = os.fstat(file.fileno()).st_size
        contents.header, contents.terminated = header, True
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
