"""Every file retokviz writes is written whole: a write that fails half-way (a full disk, a file-size limit) leaves
the old file as it was, no temporary beside it, and an error that names the file; an output that can't be written
is refused before any work."""
from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import load_script
from retokviz._util.files import figure_format, write_atomically

LIMITED = """\
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # past the limit, write() fails with EFBIG instead of a kill
"""


def run_limited(code: str, limit: int) -> str:
    """Run `code` in a Python whose files can't grow past `limit` bytes (set after `code`'s first line, its
    imports); returns what it printed."""
    setup, body = code.split("\n", 1)
    script = (LIMITED + setup + f"\nresource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n" + body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def files_in(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_training_state_over_the_file_size_limit_leaves_the_old_last_pt_and_names_it(tmp_path):
    """As the trainer writes last.pt at each epoch end (`_save_epoch`): torch.save into write_atomically. torch
    turns the OSError into a RuntimeError of its own; the error that comes out is the OSError, naming the file."""
    last = tmp_path / "last.pt"
    write_atomically(last, lambda file: torch.save({"epoch": 1, "weights": torch.arange(10.0)}, file))
    before = last.read_bytes()
    printed = run_limited(textwrap.dedent(f"""\
        import torch; from retokviz._util.files import write_atomically
        try:
            write_atomically({str(last)!r}, lambda file: torch.save({{"epoch": 2, "weights": torch.zeros(100_000)}},
                                                                    file))
        except OSError as error:
            print(type(error).__name__, error.errno, error.filename, str(error))
        """), limit=50_000)
    name, number, filename, message = printed.split(" ", 3)
    assert (name, int(number), filename) == ("OSError", errno.EFBIG, str(last))
    assert str(last) in message and "left as it was" in message
    assert last.read_bytes() == before and torch.load(last)["epoch"] == 1
    assert files_in(tmp_path) == ["last.pt"]          # the temporary is gone


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_page_that_fails_half_way_leaves_the_old_page(tmp_path):
    page = tmp_path / "explorer.html"
    page.write_text("<!doctype html><p>the old page</p>", encoding="utf-8")
    printed = run_limited(textwrap.dedent(f"""\
        from retokviz.views import html
        html.page = lambda settings, **kwargs: "<!doctype html>" + "x" * 400_000   # larger than the limit
        try:
            html.save_html({str(page)!r}, [])
        except OSError as error:
            print("refused:", error)
        """), limit=100_000)
    assert printed.startswith("refused: [Errno 27]") and str(page) in printed
    assert page.read_text(encoding="utf-8") == "<!doctype html><p>the old page</p>"
    assert files_in(tmp_path) == ["explorer.html"]


def test_a_page_is_written_whole_and_replaces_the_old_one(tmp_path, monkeypatch):
    from retokviz.views import html

    page = tmp_path / "deep" / "explorer.html"
    monkeypatch.setattr(html, "page", lambda settings, **kwargs: "<!doctype html>é")
    assert html.save_html(page, []) == page and page.read_text(encoding="utf-8") == "<!doctype html>é"
    assert files_in(page.parent) == ["explorer.html"]


@pytest.mark.parametrize("name, accepted", [("figure.png", "png"), ("figure.SVG", "svg"), ("figure.pdf", "pdf"),
                                            ("figure.xyz", None), ("figure", None)])
def test_figure_files_need_an_extension_matplotlib_writes(name, accepted):
    if accepted is not None:
        assert figure_format(name, "--plot") == accepted
    else:
        with pytest.raises(ValueError, match=rf"--plot {name}: .*give one of .*\.pdf, .*\.png, .*\.svg"):
            figure_format(name, "--plot")


def test_the_sweep_refuses_an_unknown_plot_extension_before_any_work(tmp_path, capsys, monkeypatch):
    import retokviz.sweep.__main__ as sweep

    monkeypatch.setattr(sweep, "prepare", lambda config: pytest.fail("the sweep was prepared"))
    with pytest.raises(SystemExit) as exit:
        sweep.main(["--checkpoint", "small-baseline", "--out", str(tmp_path / "s.csv"),
                    "--plot", str(tmp_path / "x.xyz")])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert "x.xyz: its extension .xyz is not an image format" in error and ".png" in error and ".svg" in error
    assert files_in(tmp_path) == []


def test_evaluate_refuses_an_unknown_plot_extension_before_any_work(tmp_path, capsys, monkeypatch):
    evaluate = load_script("evaluate")
    monkeypatch.setattr(evaluate, "evaluate", lambda *args, **kwargs: pytest.fail("the evaluation ran"))
    with pytest.raises(SystemExit) as exit:
        evaluate.main(["--plot", str(tmp_path / "x.xyz")])
    assert exit.value.code == 2
    assert "its extension .xyz is not an image format" in capsys.readouterr().err
