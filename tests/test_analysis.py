"""The ImagePiece paper's analyses as numbers per block: attentiveness recovery, merge similarity, dilution."""
from __future__ import annotations

import warnings

import pytest
import torch

import retokviz as rv
from conftest import images_for, tiny_vit


@pytest.fixture
def images():
    return images_for(tiny_vit(grid=8), batch=6)


def test_evit_without_fusion_recovers_nothing_and_merges_nothing(images):
    model = rv.apply(tiny_vit(depth=6, grid=8), rv.EViT(keep_rate=0.5, layers=(1, 3), fuse=False))
    # the bottom tokens are dropped, so none can be in the next top set
    assert rv.analysis.attentiveness_recovery(model, images) == {1: 0.0}
    assert rv.analysis.merge_similarity(model, images) == {}
    assert rv.analysis.semantic_dilution(model, images) == {}


def test_evit_with_fusion_recovers_exactly_when_the_fused_token_is_attended(images):
    model = rv.apply(tiny_vit(depth=6, grid=8), rv.EViT(keep_rate=0.5, layers=(1, 3)))
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    scores = trace.layers[3].token_scores                      # 32 kept + the fused token, last
    fused_on_top = (scores.topk(17, dim=1).indices == 32).any(1).float().mean().item()
    assert rv.analysis.attentiveness_recovery(model, images, batch_size=4) == {1: pytest.approx(fused_on_top)}


def test_imagepiece_never_dilutes_a_semantic_token_and_tome_does(images):
    model = rv.apply(tiny_vit(depth=6, grid=8), rv.ImagePiece(keep_rate=0.7, layers=(1, 3)))
    dilution = rv.analysis.semantic_dilution(model, images)
    assert dilution == {1: 0.0, 3: 0.0}
    recovery = rv.analysis.attentiveness_recovery(model, images)
    assert set(recovery) == {1} and 0.0 <= recovery[1] <= 1.0
    similarity = rv.analysis.merge_similarity(model, images)
    assert set(similarity) == {1, 3} and all(-1.0 <= value <= 1.0 for value in similarity.values())

    rv.apply(model, rv.ToMe(r=12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tome = rv.analysis.semantic_dilution(model, images, top_rate=0.7)
    assert set(tome) == set(range(6)) and max(tome.values()) > 0.0


def test_merge_similarity_is_the_mean_over_the_pairs_merged(images):
    model = rv.apply(tiny_vit(depth=3, grid=8), rv.ToMe(r=5))
    with rv.record(model) as trace, torch.no_grad():
        model(images)
    expected = {i: layer.step.similarity.double().mean().item() for i, layer in enumerate(trace.layers)}
    assert rv.analysis.merge_similarity(model, images) == pytest.approx(expected)
    # pooled over batches: the same numbers when the images go through two at a time
    assert rv.analysis.merge_similarity(model, images, batch_size=2) == pytest.approx(expected)


def test_bad_input_is_refused(images):
    model = rv.apply(tiny_vit(), rv.ToMe(r=2))
    with pytest.raises(ValueError, match="no EViT or ImagePiece applied, so no keep rate defines the top set"):
        rv.analysis.semantic_dilution(model, images)
    with pytest.raises(ValueError, match=r"top_rate must be in \(0, 1\], got 0"):
        rv.analysis.attentiveness_recovery(model, images, top_rate=0)
    with pytest.raises(ValueError, match=r"\[B, 3, .*\], got .*\(3, 128, 128\)"):
        rv.analysis.merge_similarity(model, images[0])
    with pytest.raises(RuntimeError, match="has no retokviz method applied"):
        rv.analysis.merge_similarity(tiny_vit(), images)


@pytest.fixture(scope="module")
def clutter():
    return rv.data.make_clutter(12, 3, split="test")                          # 128 px: an 8 x 8 grid, with masks


def test_let_go_by_reason_splits_what_the_metric_counts_once_per_patch(clutter):
    images, _, masks = clutter
    model = rv.apply(tiny_vit(depth=4, grid=8, seed=1), rv.ImagePiece(keep_rate=0.5, layers=(1, 2)))
    reasons = rv.analysis.let_go_by_reason(model, images, masks, batch_size=5)       # three batches, pooled
    assert set(reasons) == {1, 2} and all(set(parts) == {"bottom", "displaced"} for parts in reasons.values())
    # the two reasons together are what rv.metrics counts as let go of by then, and its background share
    cumulative = rv.metrics.background_removed_by_block(model, images, masks, every_block=True)
    removed = plain = 0.0
    for block in (1, 2):
        removed += sum(part.removed for part in reasons[block].values())
        plain += sum(part.removed * part.background for part in reasons[block].values() if part.removed)
        assert removed == pytest.approx(cumulative[block].removed)
        assert plain / removed == pytest.approx(cumulative[block].background)
    # ImagePiece's pieces displace top tokens: both reasons occur
    assert all(part.removed > 0 for parts in reasons.values() for part in parts.values())
    assert all(part.random == cumulative[1].random for parts in reasons.values() for part in parts.values())


def test_evit_lets_go_of_its_bottom_set_only(clutter):
    images, _, masks = clutter
    model = rv.apply(tiny_vit(depth=4, grid=8, seed=1), rv.EViT(keep_rate=0.5, layers=(1, 2)))
    reasons = rv.analysis.let_go_by_reason(model, images, masks)
    assert set(reasons) == {1, 2}
    assert all(parts["displaced"].removed == 0 and parts["bottom"].removed > 0 for parts in reasons.values())
    assert reasons[1]["bottom"].removed == pytest.approx(0.5)                  # 32 of 64 fused at block 1
    # the tokens EViT fuses are its lowest, so they are "bottom" under any top rate up to its keep rate
    narrow = rv.analysis.let_go_by_reason(model, images, masks, top_rate=0.25)
    assert all(parts["displaced"].removed == 0 for parts in narrow.values())
    wide = rv.analysis.let_go_by_reason(model, images, masks, top_rate=1.0)    # everything is "top": all displaced
    assert all(parts["bottom"].removed == 0 and parts["displaced"].removed > 0 for parts in wide.values())


def test_let_go_by_reason_refuses_bad_input(clutter):
    images, _, masks = clutter
    model = rv.apply(tiny_vit(depth=4, grid=8), rv.ImagePiece(keep_rate=0.5))
    with pytest.raises(ValueError, match=r"masks must be \[B, H, W\] = \(12, 128, 128\), got \(11, 128, 128\)"):
        rv.analysis.let_go_by_reason(model, images, masks[:11])
    with pytest.raises(ValueError, match="no EViT or ImagePiece applied"):
        rv.analysis.let_go_by_reason(rv.apply(tiny_vit(depth=4, grid=8), rv.ToMe(r=2)), images, masks)
