"""benchmarks/learned_or_attention.py, DynamicViT against EViT at equal keep rate and training: on two small stand-in
checkpoints (the small set's EViT model and a DynamicViT one written here), a few images and one timing round.
Nothing asserts a timing figure, only that every figure is there and consistent with the others."""
from __future__ import annotations

import json

import pytest

import retokviz as rv
from conftest import load_script
from retokviz.models.checkpoints import export_checkpoint

RECIPE = {"command": "test", "seed": 0, "device": "cpu", "seconds": 0.0, "test_acc": 0.5}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    script = load_script("learned_or_attention")
    runs = tmp_path_factory.mktemp("runs")
    model = rv.load_checkpoint("small-baseline")
    rv.apply(model, rv.DynamicViT(keep_rate=0.7))
    export_checkpoint(model.eval(), runs / "dv-small.safetensors", recipe=RECIPE)
    models = {("fine-tuned", 0.7, "EViT"): "small-evit-0.7", ("fine-tuned", 0.7, "DynamicViT"): "dv-small",
              ("from scratch", 0.7, "DynamicViT"): "not-trained"}
    original = dict(script.MODELS)
    script.MODELS.clear()
    script.MODELS.update(models)
    try:
        out = runs / "result.json"
        found = script.main(["--runs", str(runs), "--test-size", "6", "--rounds", "1", "--json", str(out)])
    finally:
        script.MODELS.clear()
        script.MODELS.update(original)
    return script, found, json.loads(out.read_text())


def test_every_model_is_measured_at_its_own_keep_rate_and_a_missing_one_is_left_out(result):
    script, found, saved = result
    rows = {(row["training"], row["method"]): row for row in found["rows"]}
    assert set(rows) == {("fine-tuned", "EViT"), ("fine-tuned", "DynamicViT")}      # not-trained: left out
    assert saved["rows"] == json.loads(json.dumps(found["rows"]))                    # the file holds what it printed
    for (_, method), row in rows.items():
        low, high = row["accuracy_interval"]
        assert low <= row["accuracy"] <= high and 0 <= row["accuracy"] <= 1
        assert row["macs"] < row["untouched_macs"]
        assert row["speed"]["images_per_second_b64"] > 0 and row["speed"]["ms_b1"] > 0
    evit, dynamic = rows[("fine-tuned", "EViT")], rows[("fine-tuned", "DynamicViT")]
    assert dynamic["parameters"] > evit["parameters"]                                # its predictors
    assert dynamic["minus_evit"] == pytest.approx(dynamic["accuracy"] - evit["accuracy"])
    low, high = dynamic["minus_evit_interval"]
    assert low <= dynamic["minus_evit"] <= high
    assert "minus_evit" not in evit


def test_the_table_names_every_row_and_the_conditions(result):
    script, found, _ = result
    table = script.format_table(found)
    assert table.count("| fine-tuned | 0.7 |") == 2
    conditions = found["conditions"]
    assert f"{conditions['test_images']} test images of seed {conditions['data_seed']}" in table
    assert "interleaved rounds against the untouched model" in table
    assert conditions["untouched"]["128"]["speedup_b64"] == pytest.approx(1.0)



def test_keep_earlier_keeps_only_the_architectures_this_run_did_not_measure(result):
    script, found, _ = result
    earlier = {"conditions": {**found["conditions"], "untouched": {"192": {"ms_b1": 5.0}, "128": {"ms_b1": 1.0}},
                              "measured": {"192": "on 2026-12-01 10:00", "128": "on 2026-12-01 10:00"}},
               "rows": [{"image_size": 192, "method": "EViT"}, {"image_size": 128, "method": "stale"}]}
    merged = script.keep_earlier(found, earlier)
    assert [row for row in merged["rows"] if row["image_size"] == 192] == [{"image_size": 192, "method": "EViT"}]
    assert all(row.get("method") != "stale" for row in merged["rows"])        # this run measured 128 px itself
    assert merged["conditions"]["untouched"]["192"] == {"ms_b1": 5.0}
    assert merged["conditions"]["untouched"]["128"] == found["conditions"]["untouched"]["128"]
    assert merged["conditions"]["measured"]["192"] == "on 2026-12-01 10:00"
    other = {**earlier, "conditions": {**earlier["conditions"], "data_seed": 7}}
    with pytest.raises(ValueError, match="data_seed 7"):
        script.keep_earlier(found, other)


def test_training_picks_what_a_run_measures(tmp_path):
    script = load_script("learned_or_attention")
    runs = tmp_path / "runs"
    runs.mkdir()
    original = dict(script.MODELS)
    script.MODELS.clear()
    script.MODELS.update({("fine-tuned", 0.7, "EViT"): "small-evit-0.7", ("other", 0.7, "EViT"): "small-evit-0.7"})
    try:
        found = script.compare(runs, test_size=4, rounds=1, trainings=["other"])
    finally:
        script.MODELS.clear()
        script.MODELS.update(original)
    assert [row["training"] for row in found["rows"]] == ["other"]


def test_keep_earlier_refuses_other_test_images_before_any_work(tmp_path, capsys):
    script = load_script("learned_or_attention")
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"conditions": {"test_images": 1000, "data_seed": script.SEED}, "rows": []}))
    with pytest.raises(SystemExit) as stopped:
        script.main(["--test-size", "6", "--json", str(earlier), "--keep-earlier"])
    assert stopped.value.code == 2 and "--test-size 1000" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["--json", str(tmp_path / "none.json"), "--keep-earlier"])
    assert "there is none at" in capsys.readouterr().err
