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
    untouched, keep_one, half = result["rows"]
    assert untouched["label"] == "untouched" and untouched["speedup"] == 1.0 and untouched["ceiling"] == 1.0
    assert keep_one["tokens"] == [16] * 12 and keep_one["ceiling"] == 1.0
    assert half["tokens"] == [16, 16, 16, 9, 9, 9, 6, 6, 6, 4, 4, 4]
    assert half["gmacs"] < untouched["gmacs"] and half["ceiling"] == pytest.approx(untouched["gmacs"] / half["gmacs"])
    assert half["of_ceiling"] == pytest.approx(half["speedup"] / half["ceiling"])
    assert "EViT keep 0.5" in printed and "of ceiling" in printed
    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv, message", [
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
    (["--dtype", "fp8"], "invalid choice: 'fp8'"),
])
def test_bench_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err
