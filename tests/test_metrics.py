"""Accuracy and background removed."""
from __future__ import annotations

import pytest
import torch

import retokviz as rv
from conftest import tiny_vit
from retokviz.metrics import accuracy, background_removed

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


def test_the_metrics_refuse_an_empty_batch_instead_of_dividing_by_zero(clutter):
    images, labels, masks = clutter
    model = rv.apply(clutter_vit(), rv.EViT(keep_rate=0.5))
    with pytest.raises(ValueError, match=r"images holds no image \(shape \(0, 3, 128, 128\)\)"):
        accuracy(model, images[:0], labels[:0])
    with pytest.raises(ValueError, match=r"images holds no image"):
        background_removed(model, images[:0], masks[:0])
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        accuracy(model, images, labels, batch_size=0)
