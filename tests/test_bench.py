"""The benchmark script runs end to end and reports its conditions (a functional test: nothing is timed here)."""
from __future__ import annotations

import json

import pytest

from retokviz import bench


def test_bench_reports_conditions_ratios_and_ceilings(tmp_path, capsys):
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
])
def test_bench_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err
