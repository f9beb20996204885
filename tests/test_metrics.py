"""Accuracy and background removed."""
from __future__ import annotations

import math

import pytest
import torch

import retokviz as rv
from conftest import tiny_vit
from retokviz.measure.metrics import (BackgroundRemoved, accuracy, background_removed, background_removed_by_block, correct,
                              let_go_counts, traces)


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


def test_traces_runs_the_batches_in_order_and_gives_each_trace_on_the_cpu(clutter):
    images, _, _ = clutter
    model = rv.apply(clutter_vit(), rv.EViT(keep_rate=0.5, layers=(1,)))
    with rv.record(model) as whole, torch.no_grad():
        model(images)
    parts = list(traces(model, images, batch_size=5))
    assert [part for part, _ in parts] == [slice(0, 5), slice(5, 10), slice(10, 15)]
    for part, trace in parts:
        assert len(trace.layers) == 4 and all(layer.owner.device.type == "cpu" for layer in trace.layers)
        for layer, alone in zip(trace.layers, whole.layers):         # each batch's trace is that of its images
            assert torch.equal(layer.status, alone.status[part]) and torch.equal(layer.owner, alone.owner[part])
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        traces(model, images, batch_size=0)                          # refused at the call, before any pass
    with pytest.raises(ValueError, match=r"images must be a batch \[B, 3, H, W\], got shape \(3, 128, 128\)"):
        traces(model, images[0])
    assert not calls


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


def test_background_removed_by_block_counts_what_was_let_go_of_up_to_each_reduction_block(clutter):
    images, _, masks = clutter
    model = rv.apply(clutter_vit(), rv.EViT(keep_rate=0.5, layers=(1, 2)))
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    background = ~rv.data.patch_mask(masks).flatten(1)
    by_block = background_removed_by_block(model, images, masks, batch_size=5)
    assert list(by_block) == [1, 2]                                    # the reduction blocks only
    let_go = torch.zeros_like(background)
    for block in (1, 2):
        status = trace.layers[block].status
        let_go |= (status == rv.Status.FUSED) | (status == rv.Status.DROPPED)
        assert by_block[block].removed == pytest.approx(let_go.float().mean().item())
        assert by_block[block].background == pytest.approx((let_go & background).sum().item() / let_go.sum().item())
    assert by_block[1].removed < by_block[2].removed                   # each block lets more go
    assert by_block[2] == background_removed(model, images, masks)      # the last block's is the overall figure
    every = background_removed_by_block(model, images, masks, every_block=True)
    assert list(every) == [0, 1, 2, 3] and every[0].removed == 0 and every[3] == every[2]


@pytest.mark.parametrize("background, random, lift", [(0.9, 0.8, 0.5), (0.8, 0.8, 0.0), (1.0, 0.6, 1.0),
                                                      (0.4, 0.8, -2.0)])
def test_the_lift_is_zero_for_a_random_choice_and_one_for_background_only(background, random, lift):
    assert BackgroundRemoved(0.3, background, random).lift == pytest.approx(lift)
    assert BackgroundRemoved(0.3, 0.5, 1.0).lift != BackgroundRemoved(0.3, 0.5, 1.0).lift     # NaN: no object


def test_the_per_image_counts_pool_to_the_figures_and_give_the_lifts_interval(clutter):
    images, labels, masks = clutter
    model = rv.apply(clutter_vit(), rv.EViT(keep_rate=0.5, layers=(1, 2)))
    counts = let_go_counts(model, images, masks, batch_size=5)
    assert counts.removed.shape == counts.background.shape == (4, 12) and counts.patches == 64
    assert counts.by_block() == background_removed_by_block(model, images, masks)
    every = counts.by_block(every_block=True)
    assert list(every) == [0, 1, 2, 3] and every[0].removed == 0 and math.isnan(every[0].background)
    assert [every[block] for block in (1, 2, 3)] == [
        background_removed_by_block(model, images, masks, every_block=True)[block] for block in (1, 2, 3)]
    assert counts.reduced.tolist() == [False, True, True, False]

    # the interval against a plain loop over the same draws (the bootstrap's seed decides them)
    low, high = counts.lift_interval(resamples=200)
    draws = torch.randint(12, (200, 12), generator=torch.Generator().manual_seed(0))
    lifts = []
    for draw in draws:
        removed = int(counts.removed[-1][draw].sum())
        background = int(counts.background[-1][draw].sum())
        random = int(counts.background_patches[draw].sum()) / (64 * 12)
        lifts.append(BackgroundRemoved(removed / (64 * 12), background / removed, random).lift)
    expected = torch.quantile(torch.tensor(lifts, dtype=torch.float64), torch.tensor([0.025, 0.975],
                                                                                      dtype=torch.float64))
    assert (low, high) == pytest.approx(expected.tolist())
    assert low <= counts.at(3).lift <= high and low < high

    assert correct(model, images, labels, batch_size=5).float().mean().item() == accuracy(model, images, labels)
    nothing = let_go_counts(rv.apply(model, rv.EViT(keep_rate=1.0)), images, masks)
    assert all(math.isnan(value) for value in nothing.lift_interval())       # nothing let go of: no lift
