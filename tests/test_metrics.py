"""Accuracy, background removed, and the evaluation sweep that makes the README's tables."""
from __future__ import annotations

import pytest
import torch

import retokviz as rv
from conftest import tiny_vit
from retokviz import evaluate
from retokviz.checkpoints import export_checkpoint
from retokviz.metrics import accuracy, background_removed

RECIPE = {"command": "test", "seed": 0, "device": "cpu", "seconds": 0.0, "test_acc": 0.5}


@pytest.fixture(scope="module")
def clutter():
    return rv.data.make_clutter(12, 3, split="test")


def clutter_vit(seed=0):
    return tiny_vit(depth=4, grid=8, seed=seed)             # 128 px, the generated data's size


def test_accuracy_counts_the_right_answers(clutter):
    images, labels, _ = clutter
    model = clutter_vit()
    with torch.no_grad():
        predicted = model(images).argmax(-1)
    assert accuracy(model, images, labels, batch_size=5) == pytest.approx((predicted == labels).float().mean().item())
    assert accuracy(model, images, predicted) == 1.0
    with pytest.raises(ValueError, match=r"labels must be \[12\], one per image, got shape \(11,\)"):
        accuracy(model, images, labels[:11])


def test_background_removed_reads_the_last_layer_against_the_masks(clutter):
    images, _, masks = clutter
    model = rv.apply(clutter_vit(), rv.EViT(keep_rate=0.5, layers=(1,), fuse=False))
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    gone = trace.layers[-1].status == rv.Status.DROPPED                          # [12, 64]
    background = ~rv.data.patch_mask(masks).flatten(1)
    result = background_removed(model, images, masks, batch_size=5)
    assert result.removed == pytest.approx(gone.float().mean().item()) and result.removed == 0.5
    assert result.background == pytest.approx((gone & background).sum().item() / gone.sum().item())
    assert result.random == pytest.approx(background.float().mean().item())

    # a fused token kept by a later block is an ordinary token from then on, but its patches were let go of
    rv.apply(model, rv.EViT(keep_rate=0.5, layers=(1, 2)))
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    fused_first = trace.layers[1].status == rv.Status.FUSED
    later = trace.layers[-1].status
    assert bool((later[fused_first] == rv.Status.MERGED).any()), "some first fused token was kept at block 2"
    gone = fused_first | (later == rv.Status.FUSED)
    assert background_removed(model, images, masks).removed == pytest.approx(gone.float().mean().item())

    rv.apply(model, rv.ToMe(r=4))                            # ToMe discards nothing: its merged patches count
    merged = background_removed(model, images, masks)
    assert 0 < merged.removed < 1 and 0 <= merged.background <= 1
    with pytest.raises(ValueError, match=r"masks must be \[B, H, W\]"):
        background_removed(model, images, masks[:, :64])


def test_the_evaluation_sweep_covers_every_method_setting_and_rate(tmp_path, clutter):
    for method, name in [(None, "none"), (rv.EViT(keep_rate=0.7), "EViT"),
                         (rv.ImagePiece(keep_rate=0.7), "ImagePiece"), (rv.ToMe(r=4), "ToMe")]:
        model = clutter_vit(seed=len(name))
        if name == "ImagePiece":
            rv.use_coherence_stem(model)
        if method is not None:
            rv.apply(model, method)
        export_checkpoint(model.eval(), tmp_path / f"{evaluate.CHECKPOINTS[name]}.safetensors", recipe=RECIPE)
    result = evaluate.evaluate(test_size=6, rates=(1.0, 0.5), directory=tmp_path)
    rows = result["rows"]
    assert len(rows) == 1 + 3 * 2 * 2
    assert {(r["method"], r["setting"], r["keep_rate"]) for r in rows[1:]} == {
        (m, s, k) for m in ("EViT", "ImagePiece", "ToMe") for s in ("off the shelf", "trained") for k in (1.0, 0.5)}
    for row in rows[1:]:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["tokens"] == (64 if row["keep_rate"] == 1.0 else
                                 {"EViT": 10, "ImagePiece": 8, "ToMe": 10}[row["method"]]), row
    table = evaluate.format_tables(result)
    assert "| EViT, trained |" in table and "| ToMe, off the shelf |" in table and "keep 0.5" in table
    assert set(result["conditions"]["checkpoints"]) == set(evaluate.CHECKPOINTS.values())


def test_the_evaluation_plot_draws_each_method_and_setting_from_the_rows():
    rows = [{"method": "none", "setting": "baseline", "keep_rate": 1.0, "accuracy": 0.9}]
    for index, (name, setting, rate) in enumerate((m, s, k) for m in ("EViT", "ImagePiece", "ToMe")
                                                  for s in ("off the shelf", "trained") for k in (1.0, 0.5)):
        rows.append({"method": name, "setting": setting, "keep_rate": rate, "accuracy": 0.5 + index / 100,
                     "removed": 0.0 if rate == 1.0 else 0.5, "background": float("nan") if rate == 1.0 else 0.8,
                     "random": 0.75})
    figure = evaluate.plot_evaluation({"conditions": {"test_images": 6}, "rows": rows})
    accuracy_ax, background_ax = figure.axes
    lines = {line.get_label(): line for line in accuracy_ax.get_lines()}
    assert set(lines) == {"baseline (90.0%)"} | {f"{m}, {s}" for m in ("EViT", "ImagePiece", "ToMe")
                                                  for s in ("off the shelf", "trained")}
    trained_tome = lines["ToMe, trained"]
    assert list(trained_tome.get_xdata()) == [0.5, 1.0] and list(trained_tome.get_ydata()) == pytest.approx([61, 60])
    plotted = [line for line in background_ax.get_lines() if not line.get_label().startswith("a random")]
    assert all(list(line.get_xdata()) == [0.5] for line in plotted)       # keep 1.0 let nothing go: no point
    assert [line.get_ydata()[0] for line in background_ax.get_lines() if line.get_label() == "a random choice"] \
        == pytest.approx([75])
