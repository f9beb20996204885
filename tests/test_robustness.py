"""Robustness measurements: masking patches on the object or the background, accuracy under masking per method,
and the background share of what EViT lets go of across keep rates, on the bundled checkpoints."""
from __future__ import annotations

import pytest
import torch

import retokviz as rv
from retokviz.measure import robustness

PATCH = 16


@pytest.fixture(scope="module")
def clutter():
    """200 test images of the bundled data set: (images, labels, masks)."""
    return rv.data.make_clutter(200, seed=0, split="test")


def changed_patches(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """[B, P] bool: the patches whose pixels differ."""
    batch, _, height, width = before.shape
    differ = (before != after).any(dim=1).reshape(batch, height // PATCH, PATCH, width // PATCH, PATCH)
    return differ.any(dim=4).any(dim=2).flatten(1)


def test_mask_patches_masks_count_patches_where_asked(clutter):
    images, masks = clutter[0][:20], clutter[2][:20]
    on_object = rv.data.patch_mask(masks).flatten(1)
    for where, allowed in (("object", on_object), ("background", ~on_object), ("any", torch.ones_like(on_object))):
        masked = robustness.mask_patches(images, masks, where=where, count=3, seed=1)
        changed = changed_patches(images, masked)
        assert (changed.sum(dim=1) <= 3).all() and (changed.sum(dim=1) >= 2).all()   # a patch may equal its fill
        assert not (changed & ~allowed).any(), where
    assert torch.equal(images, clutter[0][:20])                                      # the input is left alone


def test_mask_patches_is_seeded_nested_and_independent_of_the_batch(clutter):
    images, masks = clutter[0][:20], clutter[2][:20]
    first = robustness.mask_patches(images, masks, "object", 2, seed=3)
    assert torch.equal(first, robustness.mask_patches(images, masks, "object", 2, seed=3))
    assert not torch.equal(first, robustness.mask_patches(images, masks, "object", 2, seed=4))
    assert torch.equal(first[:5], robustness.mask_patches(images[:5], masks[:5], "object", 2, seed=3))
    more = robustness.mask_patches(images, masks, "object", 4, seed=3)
    assert not (changed_patches(images, first) & ~changed_patches(images, more)).any()
    zero = robustness.mask_patches(images, masks, "any", 5, seed=0, fill="zero")
    assert (zero == 0).any() and torch.equal(robustness.mask_patches(images, masks, "any", 0), images)


def test_mask_patches_errors_name_the_valid_values(clutter):
    images, masks = clutter[0][:20], clutter[2][:20]
    fewest = int(rv.data.patch_mask(masks).flatten(1).sum(1).min())
    with pytest.raises(ValueError, match=rf"count must be an int in 0\.\.{fewest} .*object patches.*got {fewest + 1}"):
        robustness.mask_patches(images, masks, "object", fewest + 1)
    with pytest.raises(ValueError, match=r"in 0\.\.\d+ .*got -1"):
        robustness.mask_patches(images, masks, "background", -1)
    with pytest.raises(ValueError, match="got 1.5"):
        robustness.mask_patches(images, masks, "any", 1.5)
    with pytest.raises(ValueError, match="where must be one of object, background, any, got 'edge'"):
        robustness.mask_patches(images, masks, "edge", 1)
    with pytest.raises(ValueError, match="fill must be one of mean, zero"):
        robustness.mask_patches(images, masks, "any", 1, fill="noise")
    with pytest.raises(ValueError, match="needs the object masks"):
        robustness.mask_patches(images, None, "object", 1)
    with pytest.raises(ValueError, match=r"masks must be \[B, H, W\]"):
        robustness.mask_patches(images, masks[:3], "object", 1)
    with pytest.raises(ValueError, match="counts is empty"):
        robustness.check_counts([], torch.ones(2, 4, dtype=torch.bool), "any")


def test_masking_the_object_hurts_more_than_masking_the_background(clutter):
    images, labels, masks = clutter
    model = rv.load_checkpoint("small-baseline")
    effect = robustness.masking_effect(model, images, labels, masks, counts=(2, 4), seed=0, progress=False)
    print(effect)        # measured (200 images): object 0.745, 0.485; background 0.975, 0.975; baseline 0.975
    assert effect.counts == (2, 4) and effect.images == 200 and effect.method == "untouched"
    assert effect.baseline > 0.9
    for on_object, background in zip(effect.object, effect.background):
        assert background - on_object > 0.15, effect
    assert effect.object[1] < effect.object[0]               # more masked, worse
    assert min(effect.background) > effect.baseline - 0.05   # masking the background barely matters


def test_masked_accuracy_per_method_restores_the_model(clutter):
    images, labels, _ = (part[:64] for part in clutter)
    model = rv.load_checkpoint("small-evit-0.7")
    methods = {"untouched": None, "EViT(keep_rate=0.5)": rv.EViT(keep_rate=0.5)}
    result = robustness.masked_accuracy(model, methods, images, labels, counts=(0, 16), seed=0, progress=False)
    assert result.counts == (0, 16) and result.where == "any" and result.images == 64
    assert set(result.accuracy) == set(methods)
    assert rv.method_of(model) == rv.EViT(keep_rate=0.7)
    with rv.applied(model, rv.EViT(keep_rate=0.5)):
        assert result.accuracy["EViT(keep_rate=0.5)"][0] == rv.metrics.accuracy(model, images, labels)
    assert all(0 <= value <= 1 for values in result.accuracy.values() for value in values)
    with pytest.raises(ValueError, match="methods is empty"):
        robustness.masked_accuracy(model, {}, images, labels)
    with pytest.raises(ValueError, match=r"count must be an int in 0\.\.64"):
        robustness.masked_accuracy(model, methods, images, labels, counts=(65,))


def test_evit_lets_go_of_background_across_keep_rates(clutter):
    images, _, masks = (part[:100] for part in clutter)
    model = rv.load_checkpoint("small-evit-0.7")
    results = robustness.background_by_keep_rate(model, images, masks, keep_rates=(0.5, 0.9), progress=False)
    print(results)
    assert [r.keep_rate for r in results] == [0.5, 0.9]
    assert results[0].method == "EViT(keep_rate=0.5)"
    assert results[0].removed > results[1].removed > 0
    assert results[0].background > results[0].random
    assert rv.method_of(model) == rv.EViT(keep_rate=0.7)
