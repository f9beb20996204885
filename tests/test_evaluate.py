"""The evaluation sweep that makes the README's tables: every method, off the shelf and trained, at each keep rate."""
from __future__ import annotations

import json

import pytest

import retokviz as rv
from conftest import load_script, tiny_vit
from retokviz.models.checkpoints import export_checkpoint
from test_render import plotting_state_kept

evaluate = load_script("evaluate")

RECIPE = {"command": "test", "seed": 0, "device": "cpu", "seconds": 0.0, "test_acc": 0.5}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A directory with a tiny stand-in for each checkpoint the evaluation loads (ImagePiece's trained fused)."""
    directory = tmp_path_factory.mktemp("checkpoints")
    for method, name in [(None, "none"), (rv.EViT(keep_rate=0.7), "EViT"),
                         (rv.ImagePiece(keep_rate=0.7, fuse=True), "ImagePiece"), (rv.ToMe(r=4), "ToMe"),
                         (rv.DynamicViT(keep_rate=0.7), "DynamicViT")]:
        model = tiny_vit(depth=4, grid=8, seed=len(name))     # 128 px, the generated data's size
        if name == "ImagePiece":
            rv.use_coherence_stem(model)
        if method is not None:
            rv.apply(model, method)
        export_checkpoint(model.eval(), directory / f"{evaluate.CHECKPOINTS[name]}.safetensors", recipe=RECIPE)
    return directory


def test_the_evaluation_sweep_covers_every_method_setting_and_rate(checkpoints):
    result = evaluate.evaluate(test_size=6, rates=(1.0, 0.5), directory=checkpoints)
    rows = result["rows"]
    assert len(rows) == 1 + 3 * 2 * 2 + 2                # DynamicViT: trained only (its predictors are learned)
    assert {(r["method"], r["setting"], r["keep_rate"]) for r in rows[1:]} == {
        (m, s, k) for m in ("EViT", "ImagePiece", "ToMe") for s in ("off the shelf", "trained") for k in (1.0, 0.5)
    } | {("DynamicViT", "trained", k) for k in (1.0, 0.5)}
    for row in rows[1:]:
        assert 0.0 <= row["accuracy"] <= 1.0
        fused = row["method"] == "ImagePiece" and row["setting"] == "trained"    # its checkpoint's own setting
        assert row["tokens"] == (64 if row["keep_rate"] == 1.0 else
                                 {"EViT": 10, "ImagePiece": 10 if fused else 8, "ToMe": 10,
                                  "DynamicViT": 8}[row["method"]]), row
        if row["removed"] > 0:
            assert row["lift"] == pytest.approx((row["background"] - row["random"]) / (1 - row["random"]))
            last = max(row["by_block"], key=int)       # the lift after the last reduction block is the overall one
            assert row["by_block"][last]["lift"] == pytest.approx(row["lift"])
            layers = rv.method_at(row["method"].lower(), rv.load_checkpoint(evaluate.CHECKPOINTS["none"],
                                                                          directory=checkpoints), keep_rate=0.5)
            if row["method"] not in ("ToMe", "DynamicViT"):   # ToMe merges in every block; DynamicViT prunes
                                                               # at its blocks' inputs (the block before lets go)
                assert sorted(map(int, row["by_block"])) == list(layers.reduction_layers(4)), row["by_block"]
    for row in rows:                                   # each figure inside its interval over the images
        low, high = row["accuracy_interval"]
        assert low <= row["accuracy"] <= high
        if row["method"] != "none":
            change_low, change_high = row["change_interval"]
            assert change_low <= row["accuracy"] - rows[0]["accuracy"] <= change_high
            if row["removed"] > 0:
                assert row["lift_interval"][0] <= row["lift"] <= row["lift_interval"][1]
    table = evaluate.format_tables(result, block_rate=0.5)
    assert "| keep 0.5, 95 % intervals over the images | top-1 |" in table
    assert table.count("| EViT, trained |") == 5       # accuracy, let go of, lift, after each block, intervals
    older = {"rows": [{key: value for key, value in row.items() if not key.endswith("_interval")} for row in rows]}
    assert "95 % intervals" not in evaluate.format_tables(older, block_rate=0.5)    # a table from before them
    assert "| EViT, trained |" in table and "| ToMe, off the shelf |" in table and "keep 0.5" in table
    assert "| DynamicViT, trained |" in table and "DynamicViT, off the shelf" not in table
    assert "| method (background lift) |" in table and "| lift after block, keep 0.5 | block 0 |" in table
    assert result["conditions"]["data_seed"] == evaluate.SEED and result["conditions"]["image_size"] == 128
    assert set(result["conditions"]["checkpoints"]) == set(evaluate.CHECKPOINTS.values())


def test_the_sweep_leaves_each_model_with_the_method_it_had(checkpoints, monkeypatch):
    loaded = {}
    load = rv.load_checkpoint

    def keep(name, directory=None):
        loaded[name] = load(name, directory=directory)
        return loaded[name]

    monkeypatch.setattr(rv, "load_checkpoint", keep)
    evaluate.evaluate(test_size=2, rates=(0.5,), directory=checkpoints)
    assert rv.method_of(loaded[evaluate.CHECKPOINTS["none"]]) is None
    assert rv.method_of(loaded[evaluate.CHECKPOINTS["EViT"]]) == rv.EViT(keep_rate=0.7)


@pytest.mark.parametrize("rates, message", [
    ((1.0, 1.0), r"keep rate 1.0 is given more than once in \[1.0, 1.0\]"),
    ((0.5, 0.0), r"keep rates must be in \(0, 1\], got 0.0"),
    ((1.5,), r"keep rates must be in \(0, 1\], got 1.5"),
    ((), r"rates is empty"),
])
def test_the_sweep_refuses_a_rate_out_of_range_or_given_twice(rates, message):
    """`--rates 1.0 1.0` made two table columns of one rate."""
    with pytest.raises(ValueError, match=message):
        evaluate.evaluate(test_size=1, rates=rates, directory="/nonexistent")


@pytest.mark.parametrize("argv, message", [
    (["--rates", "1.0", "0.5", "1.0"], "--rates: keep rate 1.0 is given more than once"),
    (["--rates", "-0.1"], "--rates: keep rates must be in (0, 1], got -0.1"),
    (["--test-size", "0"], "--test-size must be >= 1, got 0"),
    (["--set", "huge"], "--set: invalid choice: 'huge'"),
])
def test_the_command_line_refuses_bad_rates(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        evaluate.main(["--test-size", "1", "--checkpoints", "/nonexistent", *argv])   # refused before loading
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_the_command_line_prints_the_tables_and_writes_json_and_plot(checkpoints, tmp_path, capsys, monkeypatch):
    with plotting_state_kept(monkeypatch):
        result = evaluate.main(["--test-size", "4", "--rates", "1.0", "0.5", "--checkpoints", str(checkpoints),
                                "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")])
    assert "Baseline (no reduction):" in capsys.readouterr().out
    written, expected = json.loads((tmp_path / "r.json").read_text())["rows"][-1], dict(result["rows"][-1])
    assert written.pop("by_block").keys() == expected.pop("by_block").keys()
    for key in ("accuracy_interval", "change_interval", "lift_interval"):
        assert written.pop(key) == pytest.approx(expected.pop(key))
    assert written == pytest.approx(expected, nan_ok=True)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_set_is_refused_by_the_function_too():
    with pytest.raises(ValueError, match=r"unknown checkpoint set 'huge'; valid: showcase, small"):
        evaluate.evaluate(test_size=1, checkpoint_set="huge", directory="/nonexistent")
