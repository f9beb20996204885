"""The sweep's table as people and programs really leave it: saved by a spreadsheet (CRLF, a BOM, TRUE/FALSE,
columns reordered), edited by hand (blank lines, spaces, quotes), cut by a kill, missing its last newline,
holding a bad value, written by two sweeps at once, or measured in a single round.

Most tests write the CSV by hand and use `Table` / `read_table` directly (no model); the few sweeps are quick ones
on the bundled checkpoint, 3 configurations each.
"""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from retokviz.sweep import COLUMNS, NoiseWarning, TableError, read_table, sweep
from retokviz.sweep import table as table_module
from retokviz.sweep.__main__ import main
from retokviz.sweep.report import format_markdown
from retokviz.sweep.table import Table, format_value, lock_path
from retokviz.sweep.timing import Timing
from retokviz.views.tradeoff import load_rows

SWEEP_ID = "0123456789ab"
SETTINGS = dict(checkpoints=["small-baseline"], methods=["evit"], keep_rates=[1.0, 0.5], batch_sizes=[2],
                test_size=8, quick=True, progress=False)
ROWS = 3                    # the untouched model, EViT at 1.0 and at 0.5
REPOSITORY = Path(__file__).parents[1]
# A quick sweep's figures are noise by design; the one warning tested is caught by pytest.warns.
pytestmark = pytest.mark.filterwarnings("ignore::retokviz.sweep.noise.NoiseWarning")


def row(index: int, **changes) -> dict:
    """A typed row of a made-up sweep (the `index`-th keep rate), as `read_table` gives it."""
    values = dict(
        model="small-baseline", method="evit", keep_rate=round(1.0 - index / 10, 6), setting=f"keep_rate={index}",
        accuracy=0.5, images_per_s=100.0 + index, speedup=1.25, latency_ms=3.5, first_pass_s=0.25, peak_memory_mb=None,
        macs=1000 - index, macs_ceiling=1.5, tokens="64 46 34", spread=0.02, note="within spread",
        device="cpu: AMD EPYC, 2 threads", dtype="fp32", batch_size=4, img_size=128, attention="sdpa:math",
        compiled=False, torch="2.0", timm="1.0", warmup=1, runs=2, rounds=2, data="clutter test, 16 images, seed 0",
        sweep_id=SWEEP_ID)
    return {**values, **changes}


def line(values: dict, columns=COLUMNS) -> str:
    """One CSV line (without its break) as a spreadsheet writes it: cells with a comma quoted."""
    cells = [format_value(column, values[column]) for column in columns]
    return ",".join(f'"{cell}"' if "," in cell else cell for cell in cells)


def write(path: Path, lines: list[str], newline: str = "\n", end: str | None = None, bom: bool = False) -> Path:
    """The lines joined by `newline`, ended by `end` (default: `newline`), optionally after a UTF-8 BOM."""
    text = newline.join(lines) + (newline if end is None else end)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def open_table(path: Path) -> Table:
    return Table(path, SWEEP_ID, {})


HEADER = ",".join(COLUMNS)


# --- line breaks and the last line -------------------------------------------------------------------------------

def test_a_crlf_table_is_resumed_without_gluing_rows(tmp_path):
    path = write(tmp_path / "sweep.csv", [HEADER, line(row(1)), line(row(2)), line(row(3))[:40]], "\r\n", end="")
    with open_table(path) as table:
        assert len(table.done) == 2
        table.append(row(3))
        table.append(row(4))
    assert read_table(path) == [row(1), row(2), row(3), row(4)]
    data = path.read_bytes()
    assert data.count(b"\r\n") == 5 and data.count(b"\n") == 5          # still CRLF, the cut line gone


def test_a_whole_last_row_without_its_newline_is_kept(tmp_path):
    for newline in ("\n", "\r\n"):
        path = write(tmp_path / "sweep.csv", [HEADER, line(row(1)), line(row(2))], newline, end="")
        assert read_table(path) == [row(1), row(2)]
        assert load_rows(path) == [row(1), row(2)]                       # the explorer's and the plots' reader
        assert format_markdown(read_table(path)).count("| EViT ") == 2  # the report
        with open_table(path) as table:
            assert len(table.done) == 2
            table.append(row(3))
        assert read_table(path) == [row(1), row(2), row(3)]
        assert path.read_bytes().count(newline.encode()) == 4


def test_a_line_cut_by_a_kill_is_dropped_by_an_atomic_rewrite(tmp_path, monkeypatch):
    rewrites = []
    real = table_module.write_atomically

    def spy(path, write_):
        rewrites.append(Path(path))
        real(path, write_)

    monkeypatch.setattr(table_module, "write_atomically", spy)
    whole = line(row(2))
    for cut in (whole[:30], whole[:-5]):           # cut in the middle, and in the sweep id (all cells there)
        path = write(tmp_path / "sweep.csv", [HEADER, line(row(1)), cut], end="")
        assert read_table(path) == [row(1)]
        with open_table(path) as table:
            assert len(table.done) == 1
            table.append(row(2))
        assert read_table(path) == [row(1), row(2)]
    assert rewrites == [tmp_path / "sweep.csv"] * 2
    cut_header = write(tmp_path / "new.csv", [HEADER[:20]], end="")     # killed while writing the header
    assert read_table(cut_header) == []
    with open_table(cut_header) as table:
        table.append(row(1))
    assert read_table(cut_header) == [row(1)]


# --- bad values and malformed lines ------------------------------------------------------------------------------

@pytest.mark.parametrize("column, value", [
    ("keep_rate", "abc"), ("speedup", "1,5"), ("batch_size", "four"), ("macs", "1.2E+09"), ("img_size", "big"),
    ("compiled", "maybe"), ("spread", "2%"), ("warmup", "1.5"),
])
def test_a_bad_value_is_named_with_its_file_line_and_column(tmp_path, column, value):
    bad = row(2, **{column: value})
    path = write(tmp_path / "sweep.csv", [HEADER, line(row(1)), "", line(bad), line(row(3))])
    with pytest.raises(TableError, match=re.escape(f"{path}, line 4: column {column} holds '{value}', not ")):
        read_table(path)
    with pytest.raises(TableError, match=f"line 4: column {column}"):
        open_table(path)
    with pytest.raises(TableError, match=f"line 4: column {column}"):
        load_rows(path)


@pytest.mark.parametrize("lines, message", [
    ([HEADER, line(row(1)) + ",extra"], r"line 2: malformed row \(29 cells, the header has 28\)"),
    ([HEADER, line(row(1)).split(",", 3)[3]], r"line 2: malformed row \(25 cells"),
    ([HEADER, line(row(1, keep_rate=None))], "line 2: column keep_rate is empty"),
    ([HEADER, line(row(1)), 'a,"open quote', line(row(2))], r"line 3: .*quote"),
    ([HEADER.replace("spread", "jitter")], r"line 1: not a sweep table.*missing \['spread'\]"),
    (["", HEADER + ",model", line(row(1))], r"line 2: not a sweep table.*repeated \['model'\]"),
])
def test_a_malformed_table_is_refused_by_line(tmp_path, lines, message):
    path = write(tmp_path / "sweep.csv", lines)
    with pytest.raises(TableError, match=f"{re.escape(str(path))}, {message}"):
        read_table(path)


def test_text_that_is_not_utf8_is_refused_by_line(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_bytes(f"{HEADER}\n{line(row(1))}\n".encode() + line(row(2)).encode().replace(b"fp32", b"fp\xe932")
                     + b"\n")
    with pytest.raises(TableError, match=f"{re.escape(str(path))}, line 3: not UTF-8"):
        read_table(path)


# --- a table edited by hand or saved by a spreadsheet ------------------------------------------------------------

def test_a_spreadsheets_table_is_read_as_written(tmp_path):
    """Excel's "CSV UTF-8": a BOM, CRLF, every cell quoted, TRUE/FALSE; and by hand: blank lines, spaces."""
    quoted = lambda values: ",".join(f'"{format_value(c, values[c])}"' for c in COLUMNS)    # noqa: E731
    spaced = ",".join(f" {format_value(c, row(2)[c])} " if "," not in format_value(c, row(2)[c])
                      else f'"{format_value(c, row(2)[c])}"' for c in COLUMNS)
    lines = [quoted(dict(zip(COLUMNS, COLUMNS))), quoted(row(1)).replace('"false"', '"FALSE"'), "", spaced + "   ",
             ",,,,", line(row(3)), "", ""]
    path = write(tmp_path / "sweep.csv", lines, "\r\n", bom=True)
    assert read_table(path) == [row(1), row(2), row(3)]
    with open_table(path) as table:
        table.append(row(4))
    assert read_table(path) == [row(1), row(2), row(3), row(4)]
    assert path.read_bytes().startswith(b"\xef\xbb\xbf") and path.read_bytes().endswith(b"\r\n")


def test_columns_in_another_order_are_read_and_appended_in_that_order(tmp_path):
    columns = tuple(reversed(COLUMNS))
    path = write(tmp_path / "sweep.csv", [",".join(columns), line(row(1), columns)])
    assert read_table(path) == [row(1)]
    with open_table(path) as table:
        table.append(row(2))
    assert read_table(path) == [row(1), row(2)]
    assert path.read_text().splitlines()[2] == line(row(2), columns)


# --- two writers -------------------------------------------------------------------------------------------------

def test_a_second_writer_is_refused_while_the_first_holds_the_table(tmp_path):
    path = write(tmp_path / "sweep.csv", [HEADER, line(row(1))])
    first = open_table(path)
    assert lock_path(path).read_text().strip() == str(os.getpid())
    with pytest.raises(TableError, match=re.escape(f"another sweep is writing {path} (pid {os.getpid()})")):
        open_table(path)
    first.append(row(2))
    first.close()
    assert not lock_path(path).exists()
    with open_table(path) as second:                     # released: the next writer sees the first one's rows
        assert len(second.done) == 2
    with pytest.raises(TableError, match="not locked"):
        second.append(row(3))


HOLDER = textwrap.dedent("""
    import sys
    from retokviz.sweep.table import Table
    table = Table(__import__("pathlib").Path(sys.argv[1]), sys.argv[2], {})
    print("locked", flush=True)
    sys.stdin.read()
""")


def test_a_sweep_is_refused_while_another_process_writes_its_table_and_a_killed_ones_lock_dies(tmp_path, capsys):
    path = tmp_path / "sweep.csv"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), SWEEP_ID], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=REPOSITORY)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TableError, match=re.escape(f"another sweep is writing {path} (pid {holder.pid})")):
            sweep(out=path, **SETTINGS)
        with pytest.raises(SystemExit) as exit_:             # the command line: exit 2 with the message
            main(["--checkpoint", "small-baseline", "--methods", "evit", "--quick", "--out", str(path)])
        assert exit_.value.code == 2
        assert f"another sweep is writing {path} (pid {holder.pid})" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)                    # killed: no clean-up ran, the lock file stays
        holder.wait(timeout=60)
    assert lock_path(path).exists()
    with open_table(path) as table:                           # but its lock died with it
        assert table.done == set()
    assert not path.exists() or read_table(path) == []


class Stop(Exception):
    pass


def test_a_sweep_holds_the_lock_to_its_end_and_releases_it_on_an_error(tmp_path):
    path = tmp_path / "sweep.csv"
    refused = []

    def second_writer(row_):
        with pytest.raises(TableError, match="another sweep is writing"):
            open_table(path)
        refused.append(row_)
        if len(refused) == 2:
            raise Stop

    with pytest.raises(Stop):
        sweep(out=path, on_row=second_writer, **SETTINGS)
    assert len(refused) == 2 and len(read_table(path)) == 2 and not lock_path(path).exists()
    done = sweep(out=path, **SETTINGS)                        # released: the same sweep continues
    assert done.skipped == 2 and len(done.measured) == ROWS - 2 and len(read_table(path)) == ROWS


# --- one round -----------------------------------------------------------------------------------------------------

def test_one_round_leaves_the_spread_empty_with_a_caveat(tmp_path, capsys):
    assert Timing((0.01,)).spread is None and Timing((0.01, 0.012)).spread == pytest.approx(0.2 / 1.1, rel=1e-6)
    path = tmp_path / "sweep.csv"
    with pytest.warns(NoiseWarning, match="spread of the rounds is not measured"):
        result = sweep(out=path, rounds=1, **SETTINGS)
    assert len(result.rows) == ROWS and all(row["spread"] is None for row in result.rows)
    assert all(row["note"] in (None, "noise: above MACs ceiling") for row in result.rows)  # never "within spread"
    header, *lines = path.read_text().splitlines()
    spread = header.split(",").index("spread")
    assert all(cells[spread] == "" for cells in csv.reader(lines))
    assert any("not measured" in sentence for sentence in result.caveats)
    assert "spread not measured" in format_markdown(result.rows).splitlines()[0]
    main(["--checkpoint", "small-baseline", "--methods", "evit", "--keep", "1.0", "0.5", "--batch", "2",
          "--test-size", "8", "--quick", "--rounds", "1", "--no-progress", "--out", str(tmp_path / "cli.csv")])
    printed = capsys.readouterr()
    assert "CAVEATS" in printed.err and "spread of the rounds is not measured" in printed.err
