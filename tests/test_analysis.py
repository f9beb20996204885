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
