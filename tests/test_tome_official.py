"""rv.ToMe follows the conventions of the authors' code: checked against a plain reference forward written here.

The reference is written from the paper (Bolya et al., ICLR 2023) and a reading of the authors' code
(facebookresearch/ToMe, tome/merge.py and tome/patch/timm.py), none of it copied: explicit attention with the
log-size bias of proportional attention, and for each image Python lists that

- alternate the whole sequence into A (even positions) and B (odd positions), the class token at position 0 of A,
  so that among the patch tokens A is 1, 3, 5, ... and B is 0, 2, 4, ...; prefix tokens never merge;
- give each A patch token its most cosine-similar B patch token (keys averaged over heads), rank these edges by
  similarity and merge the first min(r, patches // 2), A into B, by size-weighted means;
- leave the tokens as [prefix tokens, the unmerged A tokens, all the B tokens], the unmerged A tokens in their
  order, or, with no prefix token at all, most similar first.

It also tracks which original patches each token carries, to check rv.record's trace token by token.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

import retokviz as rv
from conftest import check_trace, explicit_attention, images_for, tiny_vit


def reference_tome_official(model, images, r):
    """The logits of ToMe with the official conventions, and for each block the owner [B, P] of every patch (the
    index, among the patch tokens leaving the block, of the token that carries it)."""
    prefix = model.num_prefix_tokens
    depth = len(model.blocks)
    per_block = list(r) if isinstance(r, tuple) else [r] * depth
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    batch, num_tokens, _ = x.shape
    num_patches = num_tokens - prefix
    sizes = torch.ones(batch, num_tokens)
    carried = [[[p] for p in range(num_patches)] for _ in range(batch)]   # per image, per patch token: its patches
    owners = []
    for block, merges in zip(model.blocks, per_block):
        out, _, k = explicit_attention(block, x, sizes.log()[:, None, None, :])
        x = x + block.ls1(out)
        tokens = x.shape[1]
        new_x, new_sizes, new_carried = [], [], []
        for b in range(batch):
            metric = k[b].mean(0)
            metric = metric / metric.norm(dim=-1, keepdim=True)
            side_a = [t for t in range(prefix, tokens) if t % 2 == 0]      # positions in the whole sequence
            side_b = [t for t in range(prefix, tokens) if t % 2 == 1]
            similarity = (metric[side_a] @ metric[side_b].T).tolist()
            edges = []
            for a, row in zip(side_a, similarity):
                best = max(range(len(side_b)), key=row.__getitem__)
                edges.append((row[best], a, side_b[best]))
            edges.sort(key=lambda edge: -edge[0])
            count = min(merges, (tokens - prefix) // 2)
            into = {a: b_ for _, a, b_ in edges[:count]}
            if not count:                     # nothing to merge: nothing moves either
                order = list(range(tokens))
            elif prefix:
                order = list(range(prefix)) + [a for a in side_a if a not in into] + side_b
            else:
                order = [a for _, a, _ in edges[count:]] + side_b
            total = {t: x[b, t] * sizes[b, t] for t in order}
            weight = {t: sizes[b, t].clone() for t in order}
            patches = {t: list(carried[b][t - prefix]) if t >= prefix else [] for t in order}
            for a, b_ in into.items():
                total[b_] = total[b_] + x[b, a] * sizes[b, a]
                weight[b_] = weight[b_] + sizes[b, a]
                patches[b_] += carried[b][a - prefix]
            new_x.append(torch.stack([total[t] / weight[t] for t in order]))
            new_sizes.append(torch.stack([weight[t] for t in order]))
            new_carried.append([patches[t] for t in order[prefix:]])
        x, sizes, carried = torch.stack(new_x), torch.stack(new_sizes), new_carried
        x = x + block.ls2(block.mlp(block.norm2(x)))
        owner = torch.empty(batch, num_patches, dtype=torch.long)
        for b in range(batch):
            for token, patches in enumerate(carried[b]):
                owner[b, patches] = token
        owners.append(owner)
    return model.forward_head(model.norm(x)), owners


def run_recorded(model, method, images):
    with torch.no_grad(), warnings.catch_warnings(), rv.applied(model, method), rv.record(model) as trace:
        warnings.simplefilter("ignore")      # a large r is clipped, with a warning
        logits = model(images)
    return logits, trace


def check_against_reference(model, images, r, atol=1e-4):
    """rv.ToMe(r) against the reference: logits, and the trace's owner and statuses at every block."""
    with torch.no_grad():
        expected, owners = reference_tome_official(model, images, r)
    logits, trace = run_recorded(model, rv.ToMe(r=r), images)
    difference = float((logits - expected).abs().max())
    assert difference < atol, difference
    check_trace(trace, model, batch=images.shape[0])
    for index, (layer, owner) in enumerate(zip(trace.layers, owners)):
        assert torch.equal(layer.owner, owner), index
        merged = layer.sizes.gather(1, owner) > 1
        assert torch.equal(layer.status == rv.Status.MERGED, merged), index
    return difference


@pytest.mark.parametrize("r", [8, 13, 16])
def test_deit_small_agrees_with_the_official_conventions(deit_small, r):
    images = images_for(deit_small, batch=2)
    difference = check_against_reference(deit_small, images, r)
    print(f"DeiT-S, r={r}: max |logits - reference| = {difference:.2e}")


@pytest.mark.parametrize("family, kwargs", [
    ("deit", {}),
    ("dinov2_registers", {}),              # five prefix tokens: the patch tokens start in B
    ("qk_norm", {}),
    ("deit3_layerscale", {}),
    ("deit", {"class_token": False, "global_pool": "avg"}),   # no prefix token: unmerged A most similar first
], ids=["deit", "registers", "qk_norm", "layerscale", "no_class_token"])
@pytest.mark.parametrize("r", [1, 3, 50, (0, 4, 0, 2)], ids=str)
def test_tiny_models_agree_with_the_official_conventions(family, kwargs, r):
    model = tiny_vit(family, depth=4, grid=6, **kwargs)
    check_against_reference(model, images_for(model, batch=3), r)


def test_the_official_order_differs_from_the_spatial_one_and_both_trace():
    model = tiny_vit(depth=3, grid=6)
    images = images_for(model, batch=2)
    official, official_trace = run_recorded(model, rv.ToMe(r=5), images)
    spatial, spatial_trace = run_recorded(model, rv.ToMe(r=5, order="spatial"), images)
    assert not torch.allclose(official, spatial, atol=1e-3)
    for trace in (official_trace, spatial_trace):
        check_trace(trace, model, batch=2)
        assert [layer.num_tokens for layer in trace.layers] == [31, 26, 21]
    # the first block: official A is the odd patches, spatial A the even ones; A tokens are the ones merged away
    first = official_trace.layers[0].step
    receivers = torch.stack([torch.bincount(d, minlength=first.num_out) for d in first.dest])
    merged_away = (receivers.gather(1, first.dest) > 1) & (torch.arange(36) % 2 == 1)
    assert bool((merged_away.sum(1) == 5).all())
    # ... and the B tokens (even patches) leave last, in their order
    assert torch.equal(first.dest[:, 0::2], torch.arange(13, 31).expand(2, -1))


def test_protected_tokens_keep_their_place_among_the_unmerged_tokens():
    model = tiny_vit(depth=3, grid=6)
    method = rv.ToMe(r=4, protect=0.5)
    _, trace = run_recorded(model, method, images_for(model, batch=3))
    check_trace(trace, model, batch=3)
    for layer in trace.layers:
        tokens = layer.token_scores.shape[1]
        dest = layer.step.dest
        protected = layer.token_scores.topk(math.ceil(tokens / 2), dim=1).indices.sort(dim=1).values
        candidates = layer.token_scores.topk(tokens - protected.shape[1], dim=1, largest=False).indices
        candidates = candidates.sort(dim=1).values
        side_b = candidates[:, 0::2]          # candidate j is in B when 1 + j is odd: the class token comes first
        receivers = torch.stack([torch.bincount(d, minlength=layer.step.num_out) for d in dest])
        assert bool((receivers.gather(1, dest.gather(1, protected)) == 1).all()), "protected: never merged"
        # the B tokens leave last, in their order; the protected ones before them, in their order
        assert torch.equal(dest.gather(1, side_b),
                           torch.arange(layer.step.num_out - side_b.shape[1], layer.step.num_out).expand(3, -1))
        assert bool((dest.gather(1, protected).diff(dim=1) > 0).all())


def test_order_is_checked():
    assert rv.ToMe(r=2).order == "official"
    with pytest.raises(ValueError, match=r"ToMe.order must be one of \('official', 'spatial'\), got 'Spatial'"):
        rv.ToMe(r=2, order="Spatial")


def test_a_per_block_r_is_clipped_alike_in_both_orders():
    model = tiny_vit(depth=4, grid=6)
    for order in ("official", "spatial"):
        _, trace = run_recorded(model, rv.ToMe(r=(0, 4, 0, 20), order=order), images_for(model))
        assert [layer.num_tokens for layer in trace.layers] == [36, 32, 32, 16], order
