"""The benchmark script runs end to end and reports its conditions (a functional test: nothing is timed here)."""
from __future__ import annotations

import json

import pytest
import timm

import retokviz as rv
from retokviz import bench
from test_render import plotting_state_kept

TINY = ["--model", "deit_tiny_patch16_224", "--img-size", "64", "--batch", "1"]   # 16 patches


def test_bench_reports_conditions_ratios_and_ceilings(tmp_path, capsys, monkeypatch):
    with plotting_state_kept(monkeypatch):                  # --plot chooses no backend, sets no rcParams
            result = bench.main(["--model", "deit_tiny_patch16_224", "--img-size", "64", "--batch", "2", "--keep", "1.0",
                             "0.5", "--warmup", "0", "--iters", "1", "--rounds", "2",
                             "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")])
    printed = capsys.readouterr().out
    for key in ("device", "dtype", "batch", "image_size", "attention_kernel", "warmup", "timing"):
        assert f"{key}:" in printed
    assert "cpu:" in printed and "fp32" in printed and "scaled_dot_product_attention" in printed
    untouched, keep_one, evit, imagepiece, tome = result["rows"]
    assert [row["method"] for row in result["rows"]] == ["untouched", "EViT", "EViT", "ImagePiece", "ToMe"]
    assert untouched["label"] == "untouched" and untouched["speedup"] == 1.0 and untouched["ceiling"] == 1.0
    assert keep_one["tokens"] == [16] * 12 and keep_one["ceiling"] == 1.0
    assert evit["tokens"] == [16, 16, 16, 9, 9, 9, 6, 6, 6, 4, 4, 4]
    # equal final token budget: ImagePiece has EViT's count at every block, ToMe ends with EViT's final count
    assert imagepiece["tokens"] == evit["tokens"] and tome["tokens"][-1] == evit["tokens"][-1]
    assert tome["tokens"][0] < 16
    for row in (evit, imagepiece, tome):
        assert row["gmacs"] < untouched["gmacs"]
        assert row["ceiling"] == pytest.approx(untouched["gmacs"] / row["gmacs"])
        assert row["of_ceiling"] == pytest.approx(row["speedup"] / row["ceiling"])
    assert evit["vs_evit"] == 1.0 and untouched["vs_evit"] is None
    assert imagepiece["vs_evit"] == pytest.approx(imagepiece["images_per_second"] / evit["images_per_second"])
    assert "EViT 0.5" in printed and "ImagePiece 0.5" in printed and "ToMe ~EViT 0.5" in printed
    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert result["rounds_done"] == 2
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_an_interrupted_bench_keeps_its_completed_rounds(tmp_path, monkeypatch):
    """The JSON is rewritten after every round, so a run killed in round 2 leaves round 1's figures."""
    path = tmp_path / "partial.json"
    real = bench.time_configurations

    def interrupted(model, images, methods, warmup, iters, rounds, after_round):
        def stop_after_first(per_round):
            after_round(per_round)
            raise KeyboardInterrupt

        return real(model, images, methods, warmup, iters, rounds, stop_after_first)

    monkeypatch.setattr(bench, "time_configurations", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--model", "deit_tiny_patch16_224", "--img-size", "32", "--batch", "1", "--keep", "0.5",
                    "--methods", "evit", "--warmup", "0", "--iters", "1", "--rounds", "3", "--json", str(path)])
    saved = json.loads(path.read_text())
    assert saved["rounds_done"] == 1
    assert [row["label"] for row in saved["rows"]] == ["untouched", "EViT 0.5"]
    assert all(len(row["round_seconds"]) == 1 for row in saved["rows"])


@pytest.mark.parametrize("argv, message", [
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["--dtype", "fp8"], "invalid choice: 'fp8'"),
    (["--keep", "1.5"], "--keep rates must be in (0, 1], got 1.5"),
    (["--methods", "dynamicvit"], "invalid choice: 'dynamicvit'"),
    (["--keep", "0.5", "0.7", "0.5"], "--keep got 0.5 more than once; give each once"),
    (["--methods", "evit", "EViT"], "--methods got evit more than once; give each once"),
    (["--model", "no_such_model"], "--model: timm has no model 'no_such_model'"),
])
def test_bench_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        bench.main([*TINY, "--warmup", "0", "--iters", "1", "--rounds", "1", *argv])   # quick, if not refused
    assert exited.value.code == 2 and message in capsys.readouterr().err


def fake_timing(seconds):
    """A stand-in for `time_configurations` that reports `seconds[i]` per pass for configuration i, every round."""
    def timed(model, images, methods, warmup, iters, rounds, after_round):
        assert len(methods) == len(seconds)
        return [[value] * rounds for value in seconds]

    return timed


def test_a_too_short_run_says_so_and_calls_a_speed_up_above_the_macs_ceiling_noise(monkeypatch, capsys):
    """`--rounds 1 --warmup 0` printed "41.8x, 2698 % of ceiling" with no caveat."""
    monkeypatch.setattr(bench, "time_configurations", fake_timing([1.0, 1.0, 1 / 41.8]))   # untouched, EViT 1.0, 0.5
    result = bench.main([*TINY, "--keep", "1.0", "0.5", "--methods", "evit", "--rounds", "1", "--warmup", "0",
                         "--iters", "1"])
    printed = capsys.readouterr().out
    evit = result["rows"][2]
    assert evit["speedup"] == pytest.approx(41.8) and evit["note"] == "noise: above ceiling"
    assert [line for line in printed.splitlines() if line.startswith("EViT 0.5")][0].endswith("noise: above ceiling")
    assert "CAVEATS: these figures may be noise" in printed
    for caveat in ("only 1 round: too few", "only 1 timed pass per round", "no warm-up",
                   "EViT 0.5: 41.80x is above its MACs ceiling"):
        assert sum(caveat in line for line in result["caveats"]) == 1, caveat
        assert caveat in printed


def test_a_sound_run_has_no_caveat_and_a_difference_within_the_spread_is_flagged(monkeypatch, capsys):
    monkeypatch.setattr(bench, "time_configurations", fake_timing([1.0, 1.0, 0.7]))
    result = bench.main([*TINY, "--keep", "1.0", "0.5", "--methods", "evit", "--iters", "5"])
    assert result["caveats"] == [] and "CAVEATS" not in capsys.readouterr().out
    assert [row["note"] for row in result["rows"]] == ["", "", ""]

    def noisy(model, images, methods, warmup, iters, rounds, after_round):
        return [[1.0, 1.3, 0.9], [1.0, 1.1, 0.95], [0.7, 0.7, 0.7]]    # untouched spread 40 %

    monkeypatch.setattr(bench, "time_configurations", noisy)
    result = bench.main([*TINY, "--keep", "1.0", "0.5", "--methods", "evit"])
    assert [row["note"] for row in result["rows"]] == ["", "within spread", ""]
    assert result["caveats"] == ["EViT 1.0: its 0.0% difference from the untouched model is within the rounds' "
                                 "spread (15.0%, untouched 40.0%); not resolved"]


def test_a_model_retokviz_cant_patch_is_refused_like_rv_apply_before_any_timing(monkeypatch, capsys):
    def never(*args):
        raise AssertionError("timed a model that can't be patched")

    monkeypatch.setattr(bench, "time_configurations", never)
    with pytest.raises(rv.UnsupportedModelError) as refused:
        rv.apply(timm.create_model("resnet18"), rv.EViT())
    with pytest.raises(SystemExit) as exited:
        bench.main(["--model", "resnet18", "--img-size", "32"])
    error = capsys.readouterr().err
    assert exited.value.code == 2 and str(refused.value) in error and "Traceback" not in error


def test_configurations_take_registry_names_and_give_each_the_budget_of_evit(deit_small):
    configs = bench.configurations(deit_small, (1.0, 0.5), fuse=True, kinds=("tome", "imagepiece+tome"))
    assert [config.label for config in configs] == ["untouched", "EViT 1.0", "ToMe ~EViT 0.5", "ImagePiece + ToMe 0.5"]
    assert [config.method_label for config in configs] == ["untouched", "EViT", "ToMe", "ImagePiece + ToMe"]
    assert configs[2].method == rv.method_at("tome", deit_small, keep_rate=0.5)
    imagepiece, tome = configs[3].method
    assert imagepiece.keep_rate == 0.5 and imagepiece.fuse and tome.r == 8       # fused, as EViT's budget counts
    no_fuse = bench.configurations(deit_small, (0.5,), fuse=False, kinds=("evit",))[1]
    assert no_fuse.label == "EViT 0.5 no fuse" and no_fuse.method == rv.EViT(keep_rate=0.5, fuse=False)
