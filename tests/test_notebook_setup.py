"""The tutorial's first cell: quick mode from the environment, the device, one line each."""
from __future__ import annotations

import pytest

import retokviz as rv


@pytest.mark.parametrize("env, quick", [({}, False), ({"CI": "true"}, True), ({"RETOKVIZ_QUICK": "1"}, True),
                                        ({"RETOKVIZ_QUICK": "0"}, False), ({"CI": "false"}, False)])
def test_quick_mode_follows_the_environment(monkeypatch, env, quick):
    for name in rv.notebook.QUICK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = rv.notebook.setup(verbose=False)
    assert settings.quick is quick and settings.pick(quick="small", full="large") == ("small" if quick else "large")


def test_setup_prints_device_versions_and_mode(capsys, monkeypatch):
    monkeypatch.setenv("RETOKVIZ_QUICK", "1")
    settings = rv.notebook.setup()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["device", "versions", "mode"]
    assert settings.device in ("cpu", "cuda") and "quick" in lines[2] and "torch" in lines[1]


@pytest.mark.parametrize("word, quick", [("off", False), ("no", False), ("False", False), (" 0 ", False),
                                         ("on", True), ("YES", True), ("true", True)])
def test_a_users_words_for_yes_and_no_mean_what_they_say(monkeypatch, word, quick):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("RETOKVIZ_QUICK", word)
    assert rv.notebook.quick_mode() is quick


def test_a_word_that_is_neither_yes_nor_no_is_refused_naming_the_accepted_ones(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("RETOKVIZ_QUICK", "maybe")
    with pytest.raises(ValueError, match=r"RETOKVIZ_QUICK='maybe' is neither yes nor no; use one of 1, true, yes"):
        rv.notebook.quick_mode()
