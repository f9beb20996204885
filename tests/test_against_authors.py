"""benchmarks/against_authors.py on tiny settings: its loading of the authors' code (errors, shims, a clean process
afterwards), its agreement check (a pair that differs is not timed), its timing rows and report, and, where the
authors' code is at hand, one tiny run against it.

The authors' code is never in this repository. It is cloned into a temporary folder from the checkouts that
RETOKVIZ_EVIT_CODE and RETOKVIZ_TOME_CODE name, or else from the bare mirrors under /work/.mirror where they exist;
without either, only that test is skipped (the rest runs everywhere, on stand-in modules written here).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import timm
import torch

import retokviz as rv
from conftest import load_script

MIRRORS = Path("/work/.mirror")
SOURCES = {"evit": ("RETOKVIZ_EVIT_CODE", MIRRORS / "youweiliang+evit" / "repo"),
           "ToMe": ("RETOKVIZ_TOME_CODE", MIRRORS / "facebookresearch+ToMe" / "repo")}
TINY = ["--models", "tiny", "--batches", "1", "2", "--rounds", "1", "--warmup", "0", "--iters", "1"]


@pytest.fixture(scope="module")
def script():
    return load_script("against_authors")


@pytest.fixture(scope="module")
def tiny(script):
    model, _ = script.build_model("tiny")
    return model


def _clone(name: str, into: Path) -> Path:
    variable, mirror = SOURCES[name]
    source = os.environ.get(variable) or (str(mirror) if mirror.exists() else None)
    if source is None:
        pytest.skip(f"the authors' {name} code is not at hand here: set {variable} to a checkout of it (or have the "
                    f"mirror {mirror}); the script's own logic is tested without it")
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the authors' code can't be cloned")
    subprocess.run(["git", "clone", "--quiet", source, str(into / name)], check=True)
    return into / name


@pytest.fixture(scope="module")
def authors_code(tmp_path_factory):
    folder = tmp_path_factory.mktemp("authors")
    return _clone("evit", folder), _clone("ToMe", folder)


def _leftovers() -> list[str]:
    """Modules of the authors' (or of the shims) still in sys.modules: there should be none."""
    left = [name for name in sys.modules if name.split(".")[0] in ("evit", "helpers", "tome", "torchprofile")]
    for name in ("timm.models.registry", "timm.models.helpers"):
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) is None:
            left.append(name + " (the shim)")
    return left


def _timm_deit_is_timms() -> bool:
    return timm.models.model_entrypoint("deit_small_patch16_224").__module__ == "timm.models.deit"


# ------------------------------------------------------------------------------------ finding the authors' code

def test_a_missing_folder_or_file_is_named_with_what_was_expected(script, tmp_path):
    absent = tmp_path / "absent"
    with pytest.raises(script.AuthorsCodeError, match="no such folder") as error:
        script.load_evit(absent)
    assert str(absent) in str(error.value) and "evit.py" in str(error.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(script.AuthorsCodeError) as error:
        script.load_evit(empty)
    assert str(empty / "evit.py") in str(error.value) and str(empty / "helpers.py") in str(error.value)
    with pytest.raises(script.AuthorsCodeError) as error:
        script.load_tome(empty)
    assert str(empty / "tome" / "patch" / "timm.py") in str(error.value)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(script.AuthorsCodeError, match="is a file"):
        script.load_tome(a_file)


def test_the_command_refuses_a_wrong_path_before_any_work(script, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        script.main(["--evit-code", str(tmp_path / "nowhere"), *TINY])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "evit.py" in err


def _stand_in_evit(folder: Path, body: str = "") -> Path:
    """A stand-in for the authors' EViT checkout, importing what theirs imports the way theirs does."""
    folder.mkdir()
    (folder / "helpers.py").write_text(
        "from torchprofile import profile_macs\n"
        "def complement_idx(idx, dim):\n    return idx\n")
    (folder / "evit.py").write_text(
        "from timm.models.helpers import build_model_with_cfg, named_apply, adapt_input_conv\n"
        "from timm.models.layers import trunc_normal_, lecun_normal_, to_2tuple\n"
        "from timm.models.registry import register_model\n"
        "from helpers import complement_idx\n"
        "class EViT:\n    pass\n"
        "@register_model\n"
        "def deit_small_patch16_224(pretrained=False, **kwargs):\n    return EViT()\n" + body)
    return folder


def test_the_shims_let_old_timm_imports_work_and_leave_the_process_as_it_was(script, tmp_path):
    sys.modules["helpers"] = marker = type(sys)("helpers")     # someone else's module of the same name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)      # no deprecated timm path is really imported
            module = script.load_evit(_stand_in_evit(tmp_path / "evit"))
        assert module.complement_idx("kept", 3) == "kept"
        assert sys.modules["helpers"] is marker
    finally:
        del sys.modules["helpers"]
    assert _leftovers() == []
    assert _timm_deit_is_timms(), "their register_model replaced timm's DeiT in timm's registry"
    assert str(tmp_path / "evit") not in sys.path


def test_an_import_that_fails_names_the_file(script, tmp_path):
    folder = _stand_in_evit(tmp_path / "evit", body="import a_module_nobody_has\n")
    with pytest.raises(script.AuthorsCodeError, match="a_module_nobody_has") as error:
        script.load_evit(folder)
    assert str(folder / "evit.py") in str(error.value)
    assert _leftovers() == []


# ------------------------------------------------------------------------------------------ checks and timing

def test_a_pair_that_disagrees_is_not_timed_and_one_that_agrees_is(script, tiny):
    evit_pair, tome_pair = script.make_pairs(tiny, None, None)
    assert evit_pair.theirs is None and "no --evit-code" in evit_pair.skipped
    evit_pair.theirs = script.ours(tiny, rv.EViT(keep_rate=0.5))          # a different computation
    tome_pair.theirs = copy.deepcopy(tome_pair.ours)                       # the same one
    evit_pair.skipped = tome_pair.skipped = None
    images = script.random_images(2, script.image_size(tiny))
    script.check_agreement(evit_pair, images)
    script.check_agreement(tome_pair, images)
    assert evit_pair.agree is False and evit_pair.relative > script.TOLERANCE and "not timed" in evit_pair.skipped
    assert tome_pair.agree is True and tome_pair.max_abs == 0.0
    rows = script.time_batch("tiny", tiny, [evit_pair, tome_pair], 2, torch.device("cpu"), warmup=0, iters=1,
                             rounds=2)
    assert [(row["method"], row["code"]) for row in rows] == [("untouched", "untouched"), ("ToMe", "ours"),
                                                              ("ToMe", "authors'")]
    untouched, mine, theirs = rows
    assert untouched["speedup"] == 1.0 and len(mine["seconds"]) == 2 and mine["spread"] is not None
    assert mine["ours_over_authors"] == pytest.approx(theirs["ms_per_batch"] / mine["ms_per_batch"])
    assert mine["images_per_s"] == pytest.approx(2000 / mine["ms_per_batch"])
    assert mine["macs_ceiling"] > 1


def test_without_the_authors_code_our_rows_are_timed_and_theirs_skipped(script, tmp_path, capsys):
    out = tmp_path / "against.json"
    script.main([*TINY, "--json", str(out)])
    printed = capsys.readouterr()
    assert "the authors' EViT rows are skipped: no --evit-code given" in printed.err
    assert "the authors' ToMe rows are skipped: no --tome-code given" in printed.err
    assert "| tiny | 2 | EViT | ours |" in printed.out and "| authors' |" not in printed.out
    result = json.loads(out.read_text())
    assert {(row["batch"], row["code"]) for row in result["rows"]} == {(1, "untouched"), (1, "ours"),
                                                                       (2, "untouched"), (2, "ours")}
    assert all(check["agree"] is None for check in result["checks"])
    assert "not given" in result["conditions"]["evit_code"]


def test_the_showcase_model_is_the_checkpoint_without_its_stem(script):
    model, words = script.build_model("showcase")
    trained = rv.load_checkpoint("showcase-baseline")
    assert isinstance(model.patch_embed, timm.layers.PatchEmbed) and "without the stem" in words
    theirs = trained.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("patch_embed."):
            assert torch.equal(value, theirs[key]), key


# ------------------------------------------------------------------------------------------ the authors' code

def test_against_the_authors_code_on_a_tiny_model(script, authors_code, tmp_path, capsys):
    evit_code, tome_code = authors_code
    out = tmp_path / "against.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        script.main(["--evit-code", str(evit_code), "--tome-code", str(tome_code / "tome"), *TINY,
                     "--json", str(out)])
    printed = capsys.readouterr()
    result = json.loads(out.read_text())
    for check in result["checks"]:
        assert check["agree"] is True and check["relative"] < script.TOLERANCE, check
    codes = {(row["method"], row["code"]) for row in result["rows"]}
    assert {("EViT", "authors'"), ("ToMe", "authors'"), ("EViT", "ours"), ("ToMe", "ours")} <= codes
    assert all(row["ours_over_authors"] > 0 for row in result["rows"] if row["code"] != "untouched")
    assert "git commit" in result["conditions"]["evit_code"] and "git commit" in result["conditions"]["tome_code"]
    assert "| tiny | 1 | ToMe | authors' |" in printed.out
    assert _leftovers() == [] and _timm_deit_is_timms()
