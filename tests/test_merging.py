"""Bipartite soft matching and size-weighted merging, checked against examples worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from retokviz.ops.merging import bipartite_matching, compose_dest, merge_tokens

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


# ToMe's own split and order. Unit vectors at these angles (degrees): t0 0, t1 100, t2 200, t3 170, t4 90, t5 20.
# With offset 1 (a class token before them) A = {t1, t3, t5} and B = {t0, t2, t4}; each A token's best B token:
# t1 -> t4 (cos 10 = .985), t5 -> t0 (cos 20 = .940), t3 -> t2 (cos 30 = .866).
ANGLES = torch.tensor([0.0, 100.0, 200.0, 170.0, 90.0, 20.0]) * math.pi / 180
ROUND = torch.stack([ANGLES.cos(), ANGLES.sin()], dim=-1).unsqueeze(0)


def test_an_odd_offset_swaps_the_sets_and_b_last_moves_the_b_tokens_after_the_others():
    match = bipartite_matching(ROUND, 2, offset=1, order="b_last")
    # t1 -> t4, t5 -> t0; then unmerged A (t3) first, B (t0, t2, t4) after it, in their order
    assert match.dest.tolist() == [[1, 3, 2, 0, 3, 1]] and match.num_out == 4
    assert match.similarity[0].tolist() == pytest.approx([math.cos(math.pi / 18), math.cos(math.pi / 9)])
    assert bipartite_matching(ROUND, 2, offset=1).dest.tolist() == [[0, 3, 1, 2, 3, 0]]     # "kept": in place
    assert bipartite_matching(ROUND, 2, offset=3).dest.tolist() == [[0, 3, 1, 2, 3, 0]]     # only the parity counts
    merged, sizes = merge_tokens(FEATURES, torch.ones(1, 6), match.dest, match.num_out)
    assert merged[0, :, 0].tolist() == [3.0, 2.5, 2.0, 2.5] and sizes[0].tolist() == [1, 2, 1, 2]


def test_b_last_by_similarity_puts_the_unmerged_a_tokens_most_similar_first():
    # r = 1 merges t1 -> t4; unmerged A: t5 (.940) before t3 (.866), then B t0, t2, t4
    assert bipartite_matching(ROUND, 1, offset=1, order="b_last_by_similarity").dest.tolist() == [[2, 4, 3, 1, 4, 0]]
    assert bipartite_matching(ROUND, 1, offset=1, order="b_last").dest.tolist() == [[2, 4, 3, 0, 4, 1]]


def test_b_last_with_candidates_keeps_the_others_with_the_unmerged_a_tokens():
    # candidates t1..t5 after one prefix token: A = {t2, t4}, B = {t1, t3, t5}; t4 -> t1 (.985) beats t2 -> t3 (.866)
    match = bipartite_matching(ROUND, 1, torch.tensor([[1, 2, 3, 4, 5]]), offset=1, order="b_last")
    assert match.dest.tolist() == [[0, 2, 1, 3, 2, 4]]       # t0 (not a candidate) and t2 first, then t1, t3, t5


def test_an_unknown_order_is_refused():
    with pytest.raises(ValueError, match="order must be one of"):
        bipartite_matching(METRIC, 1, order="spatial")


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(2, 30), r=st.integers(0, 40), batch=st.integers(1, 3), seed=st.integers(0, 10_000),
       candidate_share=st.floats(0.0, 1.0), offset=st.integers(0, 5),
       order=st.sampled_from(["kept", "b_last", "b_last_by_similarity"]))
def test_matching_is_always_a_valid_merge(tokens, r, batch, seed, candidate_share, offset, order):
    generator = torch.Generator().manual_seed(seed)
    metric = torch.randn(batch, tokens, 4, generator=generator)
    count = round(candidate_share * tokens)
    candidates = torch.rand(batch, tokens, generator=generator).argsort(1)[:, :count].sort(1).values
    match = bipartite_matching(metric, r, candidates, offset=offset, order=order)
    assert match.num_out == tokens - min(r, count // 2)
    assert match.similarity.shape == (batch, tokens - match.num_out)
    assert bool((match.similarity.diff(dim=1) <= 0).all()), "the most similar pair first"
    first_b = 1 - offset % 2
    for b in range(batch):
        dest = match.dest[b]
        assert sorted(set(dest.tolist())) == list(range(match.num_out))     # every outgoing token is used
        outside = torch.ones(tokens, dtype=torch.bool)
        outside[candidates[b]] = False
        counts = torch.bincount(dest, minlength=match.num_out)
        assert bool((counts[dest[outside]] == 1).all()), "a token outside the candidates neither merges nor receives"
        in_b = torch.zeros(tokens, dtype=torch.bool)
        in_b[candidates[b, first_b::2]] = True
        merged_away = ~outside & ~in_b & (counts[dest] > 1)                 # A tokens that merged into a B token
        assert int(merged_away.sum()) == tokens - match.num_out
        if match.num_out == tokens:
            assert dest.tolist() == list(range(tokens))                     # nothing merged, nothing moves
        elif order == "kept":
            stays = outside | in_b                                         # B tokens and non-candidates stay
            assert bool((dest[stays].diff() > 0).all()), "the tokens that stay keep their order"
        else:
            receiving, others = dest[in_b], dest[outside | (~in_b & ~merged_away)]
            assert bool((receiving.diff() > 0).all()), "the B tokens keep their order"
            assert receiving.tolist() == list(range(match.num_out - len(receiving), match.num_out)), "B last"
            if order == "b_last":
                assert bool((others.diff() > 0).all()), "the others keep their order"
