"""rv.ImagePiece and its composition with ToMe: parity, budget, semantic tokens never merged, traces, refusals."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import retokviz as rv
from retokviz.ops.class_attention import AttentionView
from conftest import check_trace, images_for, run, tiny_vit


def test_keep_rate_one_gives_the_untouched_output_for_every_family(family):
    model = tiny_vit(family)
    if model.cls_token is None:
        pytest.skip("ImagePiece ranks by the class token (refusal tested below)")
    images = images_for(model)
    expected = run(model, images)
    rv.apply(model, rv.ImagePiece(keep_rate=1.0, layers=(0, 1, 2, 3)))
    assert torch.equal(run(model, images), expected)
    with rv.record(model) as trace:
        assert torch.equal(run(model, images), expected)
    assert [layer.num_tokens for layer in trace.layers] == [model.patch_embed.num_patches] * 4


def test_a_model_without_class_token_is_refused():
    with pytest.raises(rv.UnsupportedModelError, match="ImagePiece ranks patches by the class token's attention"):
        rv.apply(tiny_vit(class_token=False, global_pool="avg"), rv.ImagePiece())


def test_without_merge_rounds_it_is_evit_without_fusion():
    model = tiny_vit(depth=6, grid=6)
    images = images_for(model, batch=3)
    rv.apply(model, rv.EViT(keep_rate=0.6, layers=(1, 3), fuse=False))
    expected = run(model, images)
    rv.apply(model, rv.ImagePiece(keep_rate=0.6, layers=(1, 3), merge_rounds=0))
    assert torch.equal(run(model, images), expected)


@pytest.mark.parametrize("family", ["deit", "vit_augreg", "deit3_layerscale", "dinov2_registers", "clip_prenorm",
                                    "qk_norm"])
@pytest.mark.parametrize("fuse", [False, True])
def test_the_budget_is_evits_and_the_trace_holds(family, fuse):
    model = tiny_vit(family, depth=6, grid=6)
    images = images_for(model, batch=3)
    method = rv.ImagePiece(keep_rate=0.5, layers=(0, 2, 4), fuse=fuse)
    rv.apply(model, method)
    with rv.record(model) as trace:
        run(model, images)
    check_trace(trace, model, batch=3)
    evit = rv.EViT(keep_rate=0.5, layers=(0, 2, 4), fuse=fuse)
    tokens, expected = 36, []
    for index in range(6):
        tokens = evit.tokens_after(tokens, index) if index in (0, 2, 4) else tokens
        expected.append(tokens)
    assert [layer.num_tokens for layer in trace.layers] == expected
    assert trace.layers[0].step.similarity.shape == (3, 9 + 4)    # round 1 merges 9 of 18 candidates, round 2 4 of 9
    statuses = set(trace.layers[-1].status.unique().tolist())
    assert (rv.Status.FUSED in statuses) is fuse and (rv.Status.DROPPED in statuses) is not fuse


def test_semantic_tokens_are_never_merged_and_pieces_get_ids():
    model = rv.apply(tiny_vit(depth=4, grid=8), rv.ImagePiece(keep_rate=0.6, layers=(0, 2)))
    with rv.record(model) as trace:
        run(model, images_for(model, batch=4))
    for index in (0, 2):
        layer = trace.layers[index]
        scores, dest = layer.token_scores, layer.step.dest
        semantic = scores.topk(math.ceil(0.6 * scores.shape[1]), dim=1).indices
        receivers = torch.stack([torch.bincount(d[d >= 0], minlength=layer.step.num_out) for d in dest])
        target = dest.gather(1, semantic)
        # a semantic token is either discarded (displaced by a piece) or still a token of its own
        alone = (target == -1) | (receivers.gather(1, target.clamp(min=0)) == 1)
        assert bool(alone.all())
        assert layer.step.similarity.shape[1] > 0
    last = trace.layers[-1]
    merged = last.status == rv.Status.MERGED
    assert bool(merged.any())
    assert torch.equal(last.pieces >= 0, merged) and torch.equal(last.pieces[merged], last.owner[merged])


def test_pieces_carry_the_size_weighted_mean_and_later_blocks_attend_proportionally():
    """After an ImagePiece block, tokens stand for several patches: the next attention gets the log-size mask."""
    from unittest import mock

    import torch.nn.functional as F

    model = rv.apply(tiny_vit(depth=3, grid=6), rv.ImagePiece(keep_rate=0.5, layers=(0,)))
    with mock.patch.object(F, "scaled_dot_product_attention", wraps=F.scaled_dot_product_attention) as sdpa:
        with rv.record(model) as trace:
            run(model, images_for(model))
    masks = [call.kwargs.get("attn_mask") for call in sdpa.call_args_list]
    assert masks[0] is None
    sizes = trace.layers[0].sizes.float()
    for mask in masks[1:]:
        assert torch.allclose(mask[:, 0, 0, 1:].exp(), sizes)          # the prefix token has size 1, log 0


@settings(max_examples=40, deadline=None)
@given(tokens=st.integers(2, 60), keep=st.integers(1, 10), rounds=st.integers(0, 3),
       candidates=st.one_of(st.none(), st.integers(1, 9)), fuse=st.booleans(), seed=st.integers(0, 1000))
def test_one_reduction_leaves_the_promised_count(tokens, keep, rounds, candidates, fuse, seed):
    method = rv.ImagePiece(keep_rate=keep / 10, merge_rounds=rounds, fuse=fuse,
                           candidates=None if candidates is None else candidates / 10)
    generator = torch.Generator().manual_seed(seed)
    batch, heads, dim, prefix = 2, 2, 4, 1
    k = torch.randn(batch, heads, prefix + tokens, dim, generator=generator)
    view = AttentionView(torch.randn(batch, heads, dim, generator=generator), k, 0.5, prefix)
    x = torch.randn(batch, prefix + tokens, 6, generator=generator)
    reduced = method.reduce(x, view, 0, track=True)
    after = method.tokens_after(tokens, 0)
    assert reduced.x.shape == (batch, prefix + after, 6) and reduced.step.num_out == after
    assert after >= math.ceil(keep / 10 * tokens - 1e-9)
    assert torch.equal(reduced.x[:, :prefix], x[:, :prefix])
    if reduced.sizes is not None:  # sizes of the kept tokens count the input tokens they carry; a fused token is 1
        kept = method.num_kept(tokens)
        dest = reduced.step.dest
        carried = ((dest >= 0) & (dest < kept)).sum(1).float()
        assert reduced.sizes.shape == (batch, prefix + after)
        assert torch.equal(reduced.sizes[:, prefix:prefix + kept].sum(1), carried)
        assert bool((reduced.sizes[:, prefix + kept:] == 1).all())


@pytest.mark.parametrize("kwargs, kind, message", [
    (dict(keep_rate=0.0), ValueError, r"ImagePiece.keep_rate must be in \(0, 1\], got 0.0"),
    (dict(keep_rate=1.2), ValueError, r"got 1.2"),
    (dict(keep_rate="0.7"), TypeError, r"must be a number"),
    (dict(candidates=1.0), ValueError, r"ImagePiece.candidates must be in \(0, 1\), got 1.0"),
    (dict(merge_rounds=-1), ValueError, r"ImagePiece.merge_rounds must be an int >= 0, got -1"),
    (dict(fuse=1), TypeError, r"ImagePiece.fuse must be True or False"),
    (dict(layers=(1, 1)), ValueError, r"must not repeat a block"),
])
def test_bad_fields_are_refused(kwargs, kind, message):
    with pytest.raises(kind, match=message):
        rv.ImagePiece(**kwargs)


def test_too_few_patches_is_a_clear_error():
    model = rv.apply(tiny_vit(grid=4, dynamic_img_size=True), rv.ImagePiece(keep_rate=0.5))
    with pytest.raises(ValueError, match=r"the image gives 1 patch token\(s\); reducing needs at least 2"):
        run(model, torch.randn(1, 3, 16, 16))


def test_all_three_methods_and_the_composition_run_on_deit_small(deit_small):
    """DeiT-S at 224 px: EViT's token counts for ImagePiece, r per block for ToMe, and a valid trace for each."""
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    expected = {
        rv.ImagePiece(keep_rate=0.7): [196] * 3 + [138] * 3 + [97] * 3 + [68] * 3,
        rv.ImagePiece(keep_rate=0.5, fuse=True): [196] * 3 + [99] * 3 + [51] * 3 + [27] * 3,
        rv.ToMe(r=13): [196 - 13 * (i + 1) for i in range(12)],
    }
    try:
        for method, counts in expected.items():
            rv.apply(deit_small, method)
            with rv.record(deit_small) as trace, torch.no_grad():
                deit_small(images)
            check_trace(trace, deit_small, batch=2)
            assert [layer.num_tokens for layer in trace.layers] == counts, method
        rv.apply(deit_small, [rv.ImagePiece(keep_rate=0.7), rv.ToMe(r=8)])
        with warnings.catch_warnings(), rv.record(deit_small) as trace, torch.no_grad():
            warnings.simplefilter("ignore")
            deit_small(images)
        check_trace(trace, deit_small, batch=2)
        assert trace.layers[-1].num_tokens < 68
    finally:
        rv.remove(deit_small)


# Composition: ImagePiece and ToMe in one model.

def test_a_list_composes_and_tome_protects_imagepieces_semantic_share():
    model = tiny_vit(depth=6, grid=8)
    rv.apply(model, [rv.ImagePiece(keep_rate=0.7, layers=(1, 3)), rv.ToMe(r=3)])
    applied = rv.method_of(model)
    assert applied == (rv.ImagePiece(keep_rate=0.7, layers=(1, 3)), rv.ToMe(r=3, protect=0.7))
    images = images_for(model, batch=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rv.record(model) as trace:
            run(model, images)
    check_trace(trace, model, batch=3)
    assert trace.method == applied
    counts = [layer.num_tokens for layer in trace.layers]
    assert counts[0] == 64 - 3 and all(a > b for a, b in zip(counts, counts[1:]))
    # where ToMe works alone, no protected (top 70 %) token is merged: no semantic dilution at all
    dilution = rv.analysis.semantic_dilution(model, images, top_rate=0.7)
    assert all(dilution[block] == 0.0 for block in (0, 2, 4, 5) if block in dilution)
    assert set(dilution) >= {0, 2}


def test_composition_with_nothing_to_do_is_the_untouched_model():
    model = tiny_vit(depth=4)
    images = images_for(model)
    expected = run(model, images)
    rv.apply(model, [rv.ImagePiece(keep_rate=1.0), rv.ToMe(r=0)])
    assert torch.equal(run(model, images), expected)
    rv.remove(model)
    assert torch.equal(run(model, images), expected)


@pytest.mark.parametrize("methods, kind, message", [
    ([], ValueError, "empty list of methods"),
    ([rv.ToMe(r=1), "ImagePiece"], TypeError, "every entry of the list must be a method"),
    ("ToMe", TypeError, "needs a method such as rv.EViT"),
])
def test_bad_compositions_are_refused(methods, kind, message):
    model = tiny_vit()
    with pytest.raises(kind, match=message):
        rv.apply(model, methods)
    assert rv.method_of(model) is None
