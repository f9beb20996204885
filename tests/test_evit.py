"""EViT as the paper specifies it (docs/methods.md): fields, token counts, and agreement with a plain reference implementation."""
from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest
import torch

import retokviz as rv
from retokviz.ops.class_attention import AttentionView
from conftest import check_trace, explicit_attention, images_for, tiny_vit


@pytest.mark.parametrize("keep_rate", [0, 0.0, -0.1, 1.0001, 1.5, float("nan"), float("inf")])
def test_keep_rate_outside_the_range_is_refused(keep_rate):
    with pytest.raises(ValueError, match=r"EViT.keep_rate must be in \(0, 1\], got " + re.escape(str(keep_rate))):
        rv.EViT(keep_rate=keep_rate)


@pytest.mark.parametrize("keep_rate", ["0.7", None, True, [0.7]])
def test_keep_rate_that_is_not_a_number_is_refused(keep_rate):
    with pytest.raises(TypeError, match=r"EViT.keep_rate must be a number in \(0, 1\], got " + re.escape(repr(keep_rate))):
        rv.EViT(keep_rate=keep_rate)


@pytest.mark.parametrize("layers, kind, message", [
    ((3, 3, 6), ValueError, r"EViT.layers must not repeat a block, got \[3\] more than once in \(3, 3, 6\)"),
    ((-1, 6), ValueError, r"EViT.layers must be block indices >= 0, got -1"),
    ((3.0, 6), TypeError, r"EViT.layers must hold block indices \(ints\), got 3.0"),
    ((True,), TypeError, r"EViT.layers must hold block indices \(ints\), got True"),
    ("369", TypeError, r"EViT.layers must be None or a sequence of block indices, got '369'"),
    (3, TypeError, r"EViT.layers must be None or a sequence of block indices, got 3$"),
])
def test_bad_layers_are_refused(layers, kind, message):
    with pytest.raises(kind, match=message):
        rv.EViT(layers=layers)


def test_fuse_must_be_a_bool():
    with pytest.raises(TypeError, match="EViT.fuse must be True or False, got 'no'"):
        rv.EViT(fuse="no")


def test_fields_are_normalised_and_frozen():
    method = rv.EViT(keep_rate=1, layers=[6, 3])
    assert method.keep_rate == 1.0 and method.layers == (6, 3)
    assert method.reduction_layers(12) == (3, 6)
    with pytest.raises(AttributeError):
        method.keep_rate = 0.5


@pytest.mark.parametrize("depth, expected", [(12, (3, 6, 9)), (24, (6, 12, 18)), (8, (2, 4, 6)), (2, (0, 1))])
def test_default_layers_are_the_quarters_of_the_depth(depth, expected):
    assert rv.EViT().reduction_layers(depth) == expected


@pytest.mark.parametrize("tenths", range(1, 11))
@pytest.mark.parametrize("num_tokens", [1, 7, 50, 99, 100, 138, 196, 1000])
def test_kept_count_is_the_exact_ceiling(tenths, num_tokens):
    """K = ceil(rho * P) in exact arithmetic, although 0.7 * 100 == 70.00000000000001 in floats."""
    method = rv.EViT(keep_rate=tenths / 10)
    assert method.num_kept(num_tokens) == math.ceil(Fraction(tenths, 10) * num_tokens)


# The EViT paper's schedule: non-prefix tokens leaving each block of DeiT-S at 224 px.
DEIT_S_TABLE = {
    (0.7, True): (196, 139, 99, 71),
    (0.7, False): (196, 138, 97, 68),
    (0.5, True): (196, 99, 51, 27),
    (0.5, False): (196, 98, 49, 25),
}


@pytest.mark.parametrize("keep_rate, fuse", sorted(DEIT_S_TABLE))
def test_deit_small_token_counts_match_the_table(deit_small, keep_rate, fuse):
    rv.apply(deit_small, rv.EViT(keep_rate=keep_rate, fuse=fuse))
    with rv.record(deit_small) as trace, torch.no_grad():
        deit_small(torch.randn(2, 3, 224, 224))
    rv.remove(deit_small)
    counts = [layer.num_tokens for layer in trace.layers]
    stages = DEIT_S_TABLE[(keep_rate, fuse)]
    assert counts == [stages[0]] * 3 + [stages[1]] * 3 + [stages[2]] * 3 + [stages[3]] * 3
    fused = (trace.layers[-1].status == rv.Status.FUSED).any(dim=1)
    assert bool(fused.all()) is fuse
    check_trace(trace, deit_small, batch=2)
    assert trace.grid_size == (14, 14)


def reference_evit(model, images, keep_rate, layers, fuse):
    """EViT written out plainly from the paper, independent of retokviz's patching.

    Attention is computed explicitly (softmax(q k^T / sqrt(d))), the class attention is read off its CLS row,
    kept tokens are ordered by score as in the paper's code. Returns the logits and, per reduction block, the
    set of kept original patch positions of image 0 (meaningful for the first reduction block).
    """
    prefix = model.num_prefix_tokens
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    kept_sets = {}
    for index, block in enumerate(model.blocks):
        out, weights, _ = explicit_attention(block, x)                              # weights: [B, H, N, N]
        B, N, C = x.shape
        x = x + block.ls1(out)
        if index in layers:
            a = weights[:, :, 0, prefix:].mean(dim=1)                               # [B, P]
            P = N - prefix
            K = math.ceil(Fraction(str(keep_rate)) * P)
            if K < P:
                order = a.argsort(dim=1, descending=True)
                top, rest = order[:, :K], order[:, K:]
                patches = x[:, prefix:]
                take = lambda idx: patches.gather(1, idx.unsqueeze(-1).expand(-1, -1, C))
                parts = [x[:, :prefix], take(top)]
                if fuse:
                    parts.append((a.gather(1, rest).unsqueeze(-1) * take(rest)).sum(dim=1, keepdim=True))
                x = torch.cat(parts, dim=1)
                kept_sets[index] = set(top[0].tolist())
        x = x + block.ls2(block.mlp(block.norm2(x)))
    return model.forward_head(model.norm(x)), kept_sets


@pytest.mark.parametrize("family", ["deit", "dinov2_registers", "qk_norm"])
@pytest.mark.parametrize("keep_rate, fuse", [(0.7, True), (0.5, False), (0.3, True)])
def test_agrees_with_the_reference_implementation(family, keep_rate, fuse):
    model = tiny_vit(family, depth=6, grid=6)
    images = images_for(model, batch=3)
    layers = (1, 3, 4)
    with torch.no_grad():
        expected, kept_sets = reference_evit(model, images, keep_rate, layers, fuse)
        rv.apply(model, rv.EViT(keep_rate=keep_rate, layers=layers, fuse=fuse))
        with rv.record(model) as trace:
            logits = model(images)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    first = trace.layers[1]
    assert set(torch.nonzero(first.status[0] == rv.Status.KEPT).flatten().tolist()) == kept_sets[1]


def test_deit_small_agrees_with_the_reference(deit_small):
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    for keep_rate, fuse in [(0.7, True), (0.5, False)]:
        with torch.no_grad():
            expected, _ = reference_evit(deit_small, images, keep_rate, (3, 6, 9), fuse)
            rv.apply(deit_small, rv.EViT(keep_rate=keep_rate, fuse=fuse))
            logits = deit_small(images)
            rv.remove(deit_small)
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def _view(batch=2, heads=3, tokens=9, dim=4, prefix=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, dim, generator=generator, requires_grad=True)
    k = torch.randn(batch, heads, tokens, dim, generator=generator, requires_grad=True)
    return AttentionView(q, k, dim ** -0.5, prefix)


def test_the_fused_token_is_the_score_weighted_sum_of_the_inattentive_tokens():
    view = _view()
    x = torch.randn(2, 9, 5, requires_grad=True)
    reduced = rv.EViT(keep_rate=0.5).reduce(x, view, 0, track=True)
    out, step = reduced.x, reduced.step
    scores = view.class_scores()
    assert out.shape == (2, 1 + 4 + 1, 5)
    assert torch.equal(out[:, 0], x[:, 0])
    for b in range(2):
        top = set(scores[b].topk(4).indices.tolist())
        kept = sorted(top)
        torch.testing.assert_close(out[b, 1:5], x[b, 1:][kept])                   # kept, in spatial order
        rest = sorted(set(range(8)) - top)
        torch.testing.assert_close(out[b, 5], (scores[b, rest, None] * x[b, 1:][rest]).sum(0))
        assert step.dest[b].tolist() == [kept.index(i) if i in top else 4 for i in range(8)]
    assert step.num_out == 5 and step.fused_slot == 4


def test_gradients_reach_kept_and_fused_tokens_and_the_scores():
    view = _view()
    x = torch.randn(2, 9, 5, requires_grad=True)
    reduced = rv.EViT(keep_rate=0.5).reduce(x, view, 0, track=False)
    out, step = reduced.x, reduced.step
    assert step is None
    out.sum().backward()
    patch_grad = x.grad[:, 1:].abs().sum(dim=-1)                                # [B, P]
    assert bool((patch_grad > 0).all()), "every patch reaches the output, kept or fused"
    assert view.q_cls.grad.abs().sum() > 0 and view.k.grad.abs().sum() > 0    # through the fusion weights


def test_without_fusion_the_inattentive_tokens_are_dropped():
    view = _view()
    x = torch.randn(2, 9, 5)
    reduced = rv.EViT(keep_rate=0.5, fuse=False).reduce(x, view, 0, track=True)
    out, step = reduced.x, reduced.step
    assert out.shape == (2, 5, 5) and step.fused_slot is None and step.num_out == 4
    assert ((step.dest == -1).sum(dim=1) == 4).all()
