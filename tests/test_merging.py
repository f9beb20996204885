"""Bipartite soft matching and size-weighted merging, checked against examples worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from retokviz.merging import bipartite_matching, compose_dest, merge_tokens

# Six tokens, A = {0, 2, 4} and B = {1, 3, 5}. Cosine similarities of each A token to each B token:
#        t1=(1,0)  t3=(1,1)  t5=(0,-1)
# t0=(1,0)   1       .707      0        best: t1, 1.0
# t2=(0,1)   0       .707     -1        best: t3, .707
# t4=(-1,0) -1      -.707      0        best: t5, 0.0
METRIC = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]])
FEATURES = torch.arange(6.0).reshape(1, 6, 1)        # token i carries the value i


def test_the_r_best_edges_merge_a_into_b_and_the_rest_keep_their_order():
    match = bipartite_matching(METRIC, r=2)
    # t0 -> t1 (1.0) and t2 -> t3 (.707) are the two best edges; survivors t1, t3, t4, t5 become 0, 1, 2, 3
    assert match.dest.tolist() == [[0, 0, 1, 1, 2, 3]] and match.num_out == 4
    assert match.similarity[0].tolist() == pytest.approx([1.0, 1 / math.sqrt(2)])
    merged, sizes = merge_tokens(FEATURES, torch.ones(1, 6), match.dest, match.num_out)
    assert merged[0, :, 0].tolist() == [0.5, 2.5, 4.0, 5.0] and sizes[0].tolist() == [2, 2, 1, 1]


def test_merging_is_weighted_by_size():
    match = bipartite_matching(METRIC, r=1)                      # only t0 -> t1
    assert match.dest.tolist() == [[0, 0, 1, 2, 3, 4]]
    sizes = torch.tensor([[3.0, 1.0, 1.0, 2.0, 1.0, 1.0]])
    merged, out_sizes = merge_tokens(FEATURES, sizes, match.dest, match.num_out)
    assert merged[0, 0, 0].item() == pytest.approx((3 * 0 + 1 * 1) / 4)   # (3 x t0 + 1 x t1) / 4
    assert out_sizes[0].tolist() == [4, 1, 2, 1, 1]


def test_r_is_clipped_to_half_the_tokens():
    for r in (3, 5, 100):
        match = bipartite_matching(METRIC, r=r)
        assert match.num_out == 3 and match.dest.tolist() == [[0, 0, 1, 1, 2, 2]]


def test_only_the_candidates_merge():
    # candidates t1, t2, t3, t4: A = {t1, t3}, B = {t2, t4}; t1 -> t2 (0.0), t3 -> t2 (.707)
    candidates = torch.tensor([[1, 2, 3, 4]])
    assert bipartite_matching(METRIC, 1, candidates).dest.tolist() == [[0, 1, 2, 2, 3, 4]]
    assert bipartite_matching(METRIC, 2, candidates).dest.tolist() == [[0, 1, 1, 1, 2, 3]]


def test_discarded_tokens_and_chained_merges():
    dest = torch.tensor([[0, -1, 1, 0]])
    merged, sizes = merge_tokens(torch.tensor([[[2.0], [9.0], [5.0], [4.0]]]), torch.ones(1, 4), dest, 2)
    assert merged[0, :, 0].tolist() == [3.0, 5.0] and sizes[0].tolist() == [2, 1]
    assert compose_dest(dest, torch.tensor([[0, 0]])).tolist() == [[0, -1, 0, 0]]


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(2, 30), r=st.integers(0, 40), batch=st.integers(1, 3), seed=st.integers(0, 10_000),
       candidate_share=st.floats(0.0, 1.0))
def test_matching_is_always_a_valid_merge(tokens, r, batch, seed, candidate_share):
    generator = torch.Generator().manual_seed(seed)
    metric = torch.randn(batch, tokens, 4, generator=generator)
    count = round(candidate_share * tokens)
    candidates = torch.rand(batch, tokens, generator=generator).argsort(1)[:, :count].sort(1).values
    match = bipartite_matching(metric, r, candidates)
    assert match.num_out == tokens - min(r, count // 2)
    assert match.similarity.shape == (batch, tokens - match.num_out)
    for b in range(batch):
        dest = match.dest[b]
        assert sorted(set(dest.tolist())) == list(range(match.num_out))     # every outgoing token is used
        outside = torch.ones(tokens, dtype=torch.bool)
        outside[candidates[b]] = False
        counts = torch.bincount(dest, minlength=match.num_out)
        assert bool((counts[dest[outside]] == 1).all()), "a token outside the candidates neither merges nor receives"
        stays = outside.clone()
        stays[candidates[b, 1::2]] = True                                  # B tokens and non-candidates stay
        assert bool((dest[stays].diff() > 0).all()), "the tokens that stay keep their order"
    x = torch.randn(batch, tokens, 3, generator=generator)
    sizes = torch.rand(batch, tokens, generator=generator) + 0.5
    merged, out_sizes = merge_tokens(x, sizes, match.dest, match.num_out)
    # merging conserves the total size and the size-weighted sum of the features
    assert torch.allclose(out_sizes.sum(1), sizes.sum(1))
    assert torch.allclose((merged * out_sizes.unsqueeze(-1)).sum(1), (x * sizes.unsqueeze(-1)).sum(1), atol=1e-4)
