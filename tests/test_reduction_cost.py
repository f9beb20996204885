"""The reduction step does no work it doesn't need, and its shortcuts change no bit.

- A block with nothing to reduce runs timm's operators and nothing else (no hook, no side computation).
- A forward pass never reads a tensor back to the host (no `.item()`, `bool(tensor)`, `nonzero`) and rebuilds no
  index range (the ranges are cached per length and device).
- The shortcuts are exact: skipping the weighting where every token stands for one patch, the bookkeeping of
  discarded tokens where none is, and the sort where ToMe's order is index arithmetic, give the very same numbers
  as the plain formulation (written out here as the reference).
"""
from __future__ import annotations

import collections
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.profiler import ProfilerActivity, profile

import retokviz as rv
from conftest import images_for, run, tiny_vit
from retokviz.ops.merging import bipartite_matching, compose_dest, merge_tokens
from retokviz.ops.tensors import ones, positions

METHODS = {
    "evit": lambda: rv.EViT(keep_rate=0.5, layers=(1, 2)),
    "imagepiece": lambda: rv.ImagePiece(keep_rate=0.7, layers=(1, 2)),
    "imagepiece-candidates": lambda: rv.ImagePiece(keep_rate=0.6, layers=(1, 2), candidates=0.5, fuse=True),
    "tome": lambda: rv.ToMe(r=2),
    "tome-spatial": lambda: rv.ToMe(r=2, order="spatial"),
    "imagepiece+tome": lambda: [rv.ImagePiece(keep_rate=0.7, layers=(1, 2)), rv.ToMe(r=1)],
    "evit+tome": lambda: [rv.EViT(keep_rate=0.7, layers=(1, 2)), rv.ToMe(r=1)],
}


def operators(model: torch.nn.Module, images: torch.Tensor) -> collections.Counter:
    """{operator: calls} of one forward pass (the top-level aten operators, those Python dispatches)."""
    with torch.no_grad():
        model(images)                                      # a first pass fills the caches
        with profile(activities=[ProfilerActivity.CPU]) as trace:
            model(images)
    return collections.Counter(event.name for event in trace.events()
                               if event.cpu_parent is None and event.name.startswith("aten::"))


def test_blocks_with_nothing_to_reduce_run_timms_operators_only():
    model = tiny_vit("dinov2_registers", depth=4)
    images = images_for(model)
    untouched = operators(model, images)
    rv.apply(model, rv.EViT(keep_rate=1.0))
    assert operators(model, images) == untouched


def test_q_and_k_are_hooked_only_where_a_method_may_reduce():
    model = tiny_vit("deit", depth=4)

    def hooked():
        return [len(b.attn.q_norm._forward_hooks) + len(b.attn.k_norm._forward_hooks) for b in model.blocks]

    rv.apply(model, rv.EViT(keep_rate=0.5, layers=(1,)))
    assert hooked() == [0, 2, 0, 0]
    rv.apply(model, rv.ToMe(r=(0, 2, 2, 0)))
    assert hooked() == [0, 2, 2, 0]
    rv.apply(model, [rv.EViT(keep_rate=0.5, layers=(0,)), rv.ToMe(r=(0, 0, 0, 1))])
    assert hooked() == [2, 0, 0, 2]
    rv.apply(model, rv.DynamicViT(keep_rate=0.5))          # it reduces before attention: no hook needed
    assert hooked() == [0, 0, 0, 0]
    rv.apply(model, rv.ImagePiece(keep_rate=0.5, layers=(2,)))
    with rv.record(model) as trace:
        run(model, images_for(model))
    assert hooked() == [0, 0, 2, 0] and trace.layers[2].scores is not None
    rv.remove(model)
    assert hooked() == [0, 0, 0, 0]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_forward_pass_rebuilds_no_index_range_and_reads_nothing_back(name):
    model = rv.apply(tiny_vit("dinov2_registers", depth=4), METHODS[name]())
    images = images_for(model)
    counts = operators(model, images)
    assert counts["aten::arange"] == 0, "index ranges are cached"
    assert counts["aten::_local_scalar_dense"] == counts["aten::nonzero"] == 0, "no value read back"
    with mock.patch.object(torch.Tensor, "__bool__", side_effect=AssertionError("bool(tensor) waits for the device")), \
            mock.patch.object(torch.Tensor, "item", side_effect=AssertionError(".item() waits for the device")):
        run(model, images)
        with rv.record(model):                             # recording included
            run(model, images)


def test_the_cached_ranges_serve_inference_mode_and_training_alike():
    with torch.inference_mode():
        made_in_inference = positions(7, torch.device("cpu"))
    assert not made_in_inference.is_inference() and positions(7, torch.device("cpu")) is made_in_inference
    source = torch.randn(2, 7, requires_grad=True)
    source.gather(1, made_in_inference.expand(2, -1)).sum().backward()      # a gather saves its index: allowed
    assert torch.equal(source.grad, torch.ones(2, 7))
    assert torch.equal(ones(3, 4, torch.device("cpu")), torch.ones(3, 4))


def reference_matching(metric, r, candidates, offset, order):
    """bipartite_matching's `dest` as first written: the tokens that stay sorted by a key."""
    batch, tokens, _ = metric.shape
    if candidates is None:
        candidates = torch.arange(tokens).expand(batch, -1)
    r = min(r, candidates.shape[1] // 2)
    keep_all = torch.arange(tokens).expand(batch, -1)
    if r <= 0:
        return keep_all
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    first_a = offset % 2
    side_a, side_b = candidates[:, first_a::2], candidates[:, 1 - first_a::2]
    vectors_a = metric.gather(1, side_a.unsqueeze(-1).expand(-1, -1, metric.shape[-1]))
    vectors_b = metric.gather(1, side_b.unsqueeze(-1).expand(-1, -1, metric.shape[-1]))
    best, partner = (vectors_a @ vectors_b.transpose(1, 2)).max(dim=-1)
    if order == "b_last_by_similarity":
        ranking = best.argsort(dim=-1, descending=True)
        chosen = ranking[:, :r]
    else:
        chosen = best.topk(r, dim=-1).indices
    merged, into = side_a.gather(1, chosen), side_b.gather(1, partner.gather(1, chosen))
    stays = torch.ones(batch, tokens, dtype=torch.bool).scatter(1, merged, False)
    if order == "kept":
        new_index = stays.long().cumsum(dim=1) - 1
    else:
        key = keep_all + 2 * tokens * torch.zeros_like(stays).scatter(1, side_b, True).long()
        if order == "b_last_by_similarity":
            rank = torch.empty_like(ranking).scatter_(1, ranking, torch.arange(ranking.shape[1]).expand(batch, -1))
            key = key.scatter(1, side_a, tokens + rank)
        key = key.masked_fill(~stays, 4 * tokens)
        new_index = torch.empty_like(key).scatter_(1, key.argsort(dim=1), keep_all)
    return new_index.scatter(1, merged, new_index.gather(1, into))


@settings(max_examples=150, deadline=None)
@given(tokens=st.integers(1, 40), r=st.integers(0, 25), batch=st.integers(1, 3), seed=st.integers(0, 10_000),
       share=st.sampled_from([None, 0.0, 0.3, 0.7, 1.0]), offset=st.integers(0, 3), ties=st.booleans(),
       order=st.sampled_from(["kept", "b_last", "b_last_by_similarity"]))
def test_matching_sends_every_token_where_the_sorted_formulation_does(tokens, r, batch, seed, share, offset, ties,
                                                                      order):
    generator = torch.Generator().manual_seed(seed)
    metric = torch.randn(batch, tokens, 4, generator=generator)
    if ties:
        metric = metric.round()                              # many equal similarities
    candidates = None
    if share is not None:
        count = round(share * tokens)
        candidates = torch.rand(batch, tokens, generator=generator).argsort(1)[:, :count].sort(1).values
    match = bipartite_matching(metric, r, candidates, offset=offset, order=order)
    assert torch.equal(match.dest, reference_matching(metric, r, candidates, offset, order))


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(2, 30), batch=st.integers(1, 3), seed=st.integers(0, 10_000), r=st.integers(1, 15))
def test_the_merge_shortcuts_are_exact(tokens, batch, seed, r):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, tokens, 5, generator=generator)
    dest = bipartite_matching(torch.randn(batch, tokens, 4, generator=generator), r).dest
    num_out = int(dest.max()) + 1
    plain, plain_sizes = merge_tokens(x, torch.ones(batch, tokens), dest, num_out)
    for sizes in (None, torch.ones(batch, tokens)):
        merged, out_sizes = merge_tokens(x, sizes, dest, num_out, discards=False)
        assert torch.equal(merged, plain) and torch.equal(out_sizes, plain_sizes)
    weighted = torch.randint(1, 5, (batch, tokens), generator=generator).float()
    merged, out_sizes = merge_tokens(x, weighted, dest, num_out)
    again, _ = merge_tokens(x, weighted, dest, num_out, discards=False, out_sizes=out_sizes)
    assert torch.equal(again, merged)
    second = torch.randint(0, 3, (batch, num_out), generator=generator)
    assert torch.equal(compose_dest(dest, second, discards=False), compose_dest(dest, second))
