"""rv.ToMe: parity, the spatial-order variant against a plain reference, proportional attention through the fused
kernel, refusals. The default (official) conventions are checked against their own reference in test_tome_official.py.
"""
from __future__ import annotations

import math
import warnings
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

import retokviz as rv
from conftest import check_trace, explicit_attention, images_for, run, tiny_vit


def test_r_zero_gives_the_untouched_output_for_every_family(family):
    model = tiny_vit(family)
    images = images_for(model)
    expected = run(model, images)
    rv.apply(model, rv.ToMe(r=0))
    assert torch.equal(run(model, images), expected)
    rv.apply(model, rv.ToMe(r=2))
    assert not torch.allclose(run(model, images), expected, atol=1e-3)


def reference_tome_spatial(model, images, r):
    """ToMe(order="spatial") written out plainly: explicit attention with log-size bias, and for each image a
    Python loop that pairs A (even) with B (odd) patch tokens, takes the r most similar edges, merges by size, and
    leaves the tokens that stay in their order."""
    prefix = model.num_prefix_tokens
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    sizes = torch.ones(x.shape[:2])
    for block in model.blocks:
        out, _, k = explicit_attention(block, x, sizes.log()[:, None, None, :])
        B, N, C = x.shape
        x = x + block.ls1(out)
        new_x, new_sizes = [], []
        for b in range(B):
            metric = k[b].mean(0)[prefix:]
            metric = metric / metric.norm(dim=-1, keepdim=True)
            tokens = list(range(N - prefix))
            side_a, side_b = tokens[0::2], tokens[1::2]
            edges = []
            for a in side_a:
                similarity = [float(metric[a] @ metric[b_]) for b_ in side_b]
                best = max(range(len(side_b)), key=similarity.__getitem__)
                edges.append((similarity[best], a, side_b[best]))
            chosen = sorted(edges, reverse=True)[:min(r, len(tokens) // 2)]
            into = {a: b_ for _, a, b_ in chosen}
            patches, patch_sizes = x[b, prefix:], sizes[b, prefix:]
            total = {t: patches[t] * patch_sizes[t] for t in tokens if t not in into}
            weight = {t: patch_sizes[t].clone() for t in tokens if t not in into}
            for a, b_ in into.items():
                total[b_] = total[b_] + patches[a] * patch_sizes[a]
                weight[b_] = weight[b_] + patch_sizes[a]
            kept = sorted(total)
            new_x.append(torch.cat([x[b, :prefix], torch.stack([total[t] / weight[t] for t in kept])]))
            new_sizes.append(torch.cat([sizes[b, :prefix], torch.stack([weight[t] for t in kept])]))
        x, sizes = torch.stack(new_x), torch.stack(new_sizes)
        x = x + block.ls2(block.mlp(block.norm2(x)))
    return model.forward_head(model.norm(x)), sizes


@pytest.mark.parametrize("family", ["deit", "dinov2_registers", "qk_norm", "deit3_layerscale"])
@pytest.mark.parametrize("r", [1, 3, 50])
def test_the_spatial_order_agrees_with_its_reference(family, r):
    model = tiny_vit(family, depth=4, grid=6)
    images = images_for(model, batch=2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, sizes = reference_tome_spatial(model, images, r)
        rv.apply(model, rv.ToMe(r=r, order="spatial"))
        with rv.record(model) as trace:
            logits = model(images)
    assert torch.allclose(logits, expected, atol=1e-4), (logits - expected).abs().max()
    check_trace(trace, model, batch=2)
    last = trace.layers[-1]
    assert torch.equal(last.sizes.float(), sizes[:, model.num_prefix_tokens:])


def test_a_per_block_r_and_the_token_counts():
    model = rv.apply(tiny_vit(depth=4, grid=6), rv.ToMe(r=(0, 4, 0, 2)))
    with rv.record(model) as trace:
        run(model, images_for(model))
    assert [layer.num_tokens for layer in trace.layers] == [36, 32, 32, 30]
    assert trace.layers[0].step is None and trace.layers[1].step.similarity.shape == (2, 4)
    statuses = trace.layers[-1].status
    assert set(statuses.unique().tolist()) == {rv.Status.KEPT, rv.Status.MERGED}
    assert int((statuses == rv.Status.MERGED).sum(1)[0]) >= 6      # 6 merges touch at least 6 + 1 patches


def test_proportional_attention_goes_through_the_fused_kernel_as_a_float_mask():
    model = rv.apply(tiny_vit(depth=3, grid=4), rv.ToMe(r=3))
    images = images_for(model)
    with mock.patch.object(F, "scaled_dot_product_attention", wraps=F.scaled_dot_product_attention) as sdpa:
        run(model, images)
    masks = [call.kwargs.get("attn_mask") for call in sdpa.call_args_list]
    assert len(masks) == 3 and masks[0] is None
    for mask, tokens in zip(masks[1:], (1 + 13, 1 + 10)):
        assert mask.dtype == torch.float32 and mask.shape == (2, 1, 1, tokens)
        # exp(log size) gives back the sizes: they add up to the 16 patches plus the class token
        assert torch.allclose(mask.exp().sum(-1), torch.full((2, 1, 1), 17.0))


def test_a_large_r_is_clipped_with_one_warning():
    method = rv.ToMe(r=10, protect=0.0625)   # a setting of its own, so no other test has been warned about it
    model = rv.apply(tiny_vit(depth=3, grid=4), method)
    with pytest.warns(UserWarning, match=r"ToMe\(r=10\) asks block 0 to merge 10 tokens, but at most half of its 15"):
        with rv.record(model) as trace:
            run(model, images_for(model))
    assert [layer.num_tokens for layer in trace.layers] == [9, 5, 3]     # 1 protected, half of the rest merge
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # said once: a second pass, even with a new equal object, is silent
        run(model, images_for(model))
        run(rv.apply(model, rv.ToMe(r=10, protect=0.0625)), images_for(model))


@pytest.mark.parametrize("r, kind, message", [
    (-1, ValueError, r"ToMe.r must be >= 0 tokens per block, got -1"),
    (2.5, TypeError, r"ToMe.r must be an int >= 0 \(or one per block\), got 2.5"),
    (True, TypeError, r"got True"),
    ((1, -2), ValueError, r"got -2 in \(1, -2\)"),
    ((), ValueError, r"empty sequence"),
])
def test_bad_r_is_refused(r, kind, message):
    with pytest.raises(kind, match=message):
        rv.ToMe(r=r)


def test_a_per_block_r_must_match_the_depth():
    model = tiny_vit(depth=4)
    with pytest.raises(ValueError, match="ToMe.r has 3 values, one per block is needed: this model has 4 blocks"):
        rv.apply(model, rv.ToMe(r=(1, 2, 3)))
    assert rv.method_of(model) is None


def test_protect_needs_a_class_token_and_keeps_the_top_tokens_out_of_the_matching():
    with pytest.raises(ValueError, match=r"ToMe.protect must be in \[0, 1\], got 1.5"):
        rv.ToMe(r=2, protect=1.5)
    with pytest.raises(rv.UnsupportedModelError, match="ToMe ranks patches by the class token's attention"):
        rv.apply(tiny_vit(class_token=False, global_pool="avg"), rv.ToMe(r=2, protect=0.5))
    rv.apply(tiny_vit(class_token=False, global_pool="avg"), rv.ToMe(r=2))   # plain ToMe needs none
    model = rv.apply(tiny_vit(depth=3, grid=6), rv.ToMe(r=4, protect=0.5))
    with rv.record(model) as trace:
        run(model, images_for(model, batch=3))
    check_trace(trace, model, batch=3)
    for layer in trace.layers:
        tokens = layer.token_scores.shape[1]
        protected = layer.token_scores.topk(math.ceil(tokens / 2), dim=1).indices       # the top half
        receivers = torch.stack([torch.bincount(d, minlength=layer.step.num_out) for d in layer.step.dest])
        assert bool((receivers.gather(1, layer.step.dest.gather(1, protected)) == 1).all())


def test_too_few_patches_is_a_clear_error():
    model = rv.apply(tiny_vit(grid=4, dynamic_img_size=True), rv.ToMe(r=1))
    with pytest.raises(ValueError, match=r"the image gives 1 patch token\(s\); reducing needs at least 2"):
        run(model, torch.randn(1, 3, 16, 16))


def test_trains_and_runs_in_bfloat16():
    model = rv.apply(tiny_vit(depth=3).train(), rv.ToMe(r=3))
    model(images_for(model)).sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    model = rv.apply(tiny_vit(depth=3).to(torch.bfloat16), rv.ToMe(r=3))
    logits = run(model, images_for(model).to(torch.bfloat16))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_without_proportional_attention_later_blocks_attend_a_merged_token_once():
    model = tiny_vit(depth=4, grid=4)
    images = images_for(model, batch=2)
    masks = []
    for block in model.blocks:
        block.attn.register_forward_hook(lambda module, args, kwargs, out: masks.append(kwargs.get("attn_mask")),
                                         with_kwargs=True)
    with rv.applied(model, rv.ToMe(r=2)), torch.no_grad():
        proportional = model(images)
    with_bias, masks[:] = list(masks), []
    with rv.applied(model, rv.ToMe(r=2, proportional=False)), torch.no_grad():
        plain = model(images)
    assert with_bias[0] is None and all(mask is not None for mask in with_bias[1:])   # log(size) after a merge
    assert all(mask is None for mask in masks)                                         # none without it
    assert not torch.allclose(plain, proportional)
    with pytest.raises(ValueError, match="ToMe.proportional must be True or False, got 1"):
        rv.ToMe(r=2, proportional=1)
