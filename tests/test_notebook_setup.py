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
