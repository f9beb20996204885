"""Output paths are checked before any work: a command whose result can't be saved fails at the start."""
from __future__ import annotations

import pytest

from conftest import load_script

evaluate = load_script("evaluate")


@pytest.mark.parametrize("option", ["--json", "--plot"])
@pytest.mark.parametrize("module, work", [(evaluate, "evaluate")], ids=["evaluate"])
def test_a_command_line_checks_its_output_paths_before_any_work(module, work, option, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(module, work, lambda *a, **k: pytest.fail(f"{work} ran before the paths were checked"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        module.main([option, str(blocker / ("out.json" if option == "--json" else "out.png"))])
    assert exit_info.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err


def test_a_folder_given_as_an_output_file_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--json", str(tmp_path)])
    assert exit_info.value.code == 2 and "is a folder; give a file name" in capsys.readouterr().err
