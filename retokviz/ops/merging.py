"""Bipartite soft matching and size-weighted merging: the primitives of ToMe, reused by ImagePiece.

Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023 (arXiv 2210.09461). Pure functions on tensors:

    match = bipartite_matching(metric, r)                              # which token goes where
    x, sizes = merge_tokens(x, sizes, match.dest, match.num_out)     # size-weighted means

A merge is described by `dest` [B, T]: for each token the index of the token that carries it afterwards (-1 for a
discarded one), the same description as a provenance step (`Regroup`). By default the tokens that stay keep their
order and a merged token takes the place of its destination; `bipartite_matching(..., order="b_last")` gives the
order of ToMe's own code instead (the B tokens after all the others).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from retokviz.ops.tensors import as_dtype, as_float, cached, ones, positions


def head_mean_keys(keys: Tensor, num_heads: int) -> Tensor:
    """[B, T, H * d] keys, heads side by side -> [B, T, d] the mean over heads (ToMe's similarity metric)."""
    batch, tokens, width = keys.shape
    return keys.reshape(batch, tokens, num_heads, width // num_heads).mean(dim=2)


@dataclass(frozen=True)
class Matching:
    """The outcome of one bipartite matching.

    Attributes:
        dest: [B, T] LongTensor, the index of the token that carries each token afterwards (0-based among the
            T - r tokens left, in the order `bipartite_matching` was asked for).
        num_out: T - r.
        similarity: [B, r] float32, the cosine similarity of each merged pair (the metric of the matching), the
            most similar first.
    """

    dest: Tensor
    num_out: int
    similarity: Tensor


ORDERS = ("kept", "b_last", "b_last_by_similarity")


def bipartite_matching(
    metric: Tensor, r: int, candidates: Tensor | None = None, *, offset: int = 0, order: str = "kept"
) -> Matching:
    """Merge the r most similar pairs of a bipartite split of the tokens.

    The tokens (or only the `candidates`, in the order given) alternate into sets A and B: candidate j is in A
    when offset + j is even, in B when it is odd. With offset 0 (the default) A is the candidates 0, 2, 4, ... and
    B the candidates 1, 3, 5, ...; an odd offset swaps the two. ToMe's code alternates over the whole sequence,
    the class token at position 0 of A: its split of the patch tokens is offset = the number of prefix tokens.
    Each A token finds its most cosine-similar B token; these edges are ranked by similarity, most similar first,
    and the first r are merged, A into B. Several A tokens may land in one B token. At most half the tokens (of
    the candidates) can merge: r is clipped to that.

    Args:
        metric: [B, T, c] one vector per token (ToMe: the keys averaged over heads).
        r: how many tokens to merge away, >= 0.
        candidates: [B, M] indices of the tokens allowed to merge, or None for all T. The others neither
            merge nor receive merges.
        offset: the sequence position of the first candidate; only its parity matters (see above).
        order: the order of the tokens left.
            "kept": every token that stays keeps its place (a merged A token goes into its B token's place).
            "b_last", the order of ToMe's code with a class token: first the tokens outside B (the
            non-candidates and the unmerged A tokens) in their order, then all the B tokens in their order.
            "b_last_by_similarity", the order of ToMe's code without a class token: the non-candidates in their
            order, then the unmerged A tokens by their best similarity (most similar first), then the B tokens.

    Returns:
        the Matching: where each token goes, and how similar the merged pairs were.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    batch, tokens, _ = metric.shape
    device = metric.device
    r = min(r, (tokens if candidates is None else candidates.shape[1]) // 2)
    if r <= 0:
        return Matching(positions(tokens, device).expand(batch, -1), tokens,
                        metric.new_zeros(batch, 0, dtype=torch.float32))
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    split = _Split(metric, candidates, offset % 2)
    similarity = split.vectors_a @ split.vectors_b.transpose(1, 2)                    # [B, |A|, |B|]
    best, partner = similarity.max(dim=-1)                                            # [B, |A|]
    ranking = None
    if order == "b_last_by_similarity":
        ranking = best.argsort(dim=-1, descending=True)                               # [B, |A|] every A edge
        chosen = ranking[:, :r]
        best_r = best.gather(1, chosen)
    else:
        best_r, chosen = best.topk(r, dim=-1)                                         # [B, r] positions in A
    if candidates is None and order != "kept":
        dest = _b_last_dest(split, chosen, partner, r, ranking)
    else:
        dest = _dest(split, chosen, partner, r, ranking, order)
    return Matching(dest, tokens - r, as_float(best_r))


class _Split:
    """The bipartite split of the tokens of `metric` [B, T, c] (all of them, or the `candidates` [B, M]) into sets
    A and B, A starting at candidate `first_a` (0 or 1): the vectors of each set, and the token index of each
    position in it.

    With every token a candidate, A and B are every other token: their vectors are strided copies, and their token
    indices arithmetic (A position j is token first_a + 2j, B position j token first_b + 2j), no index to gather by.
    """

    def __init__(self, metric: Tensor, candidates: Tensor | None, first_a: int) -> None:
        self.batch, self.tokens, channels = metric.shape
        self.device = metric.device
        self.first_a, self.first_b = first_a, 1 - first_a
        self.side_a = self.side_b = None            # [B, |A|], [B, |B|] token indices, where not every token is in
        if candidates is None:
            self.vectors_a = metric[:, first_a::2].contiguous()                      # [B, |A|, c]
            self.vectors_b = metric[:, self.first_b::2].contiguous()                 # [B, |B|, c]
        else:
            self.side_a, self.side_b = candidates[:, first_a::2], candidates[:, self.first_b::2]
            self.vectors_a = metric.gather(1, self.side_a.unsqueeze(-1).expand(-1, -1, channels))
            self.vectors_b = metric.gather(1, self.side_b.unsqueeze(-1).expand(-1, -1, channels))
        self.num_a, self.num_b = self.vectors_a.shape[1], self.vectors_b.shape[1]

    def token_a(self, index: Tensor) -> Tensor:
        """[B, k] positions in A -> their token indices."""
        if self.side_a is None:
            return index * 2 + self.first_a if self.first_a else index * 2
        return self.side_a.gather(1, index)

    def token_b(self, index: Tensor) -> Tensor:
        """[B, k] positions in B -> their token indices."""
        if self.side_b is None:
            return index * 2 + self.first_b if self.first_b else index * 2
        return self.side_b.gather(1, index)

    def interleave(self, values_a: Tensor, values_b: Tensor) -> Tensor:
        """[B, |A|] values of the A tokens and [B, |B|] of the B tokens -> [B, T] in token order (every token a
        candidate)."""
        tokens, first_a, num_a, device = self.tokens, self.first_a, self.num_a, self.device

        def order() -> Tensor:   # token t <- its place in [A tokens, B tokens]: A position t // 2, or B position
            index = positions(tokens, device)
            return torch.where(index % 2 == first_a, index // 2, num_a + index // 2)

        place = cached(("interleave", tokens, first_a, device), order)                 # [T]
        return torch.cat([values_a, values_b], dim=1).index_select(1, place)


def _b_last_dest(split: _Split, chosen: Tensor, partner: Tensor, r: int, ranking: Tensor | None) -> Tensor:
    """[B, T] where each token goes in ToMe's orders ("b_last", or "b_last_by_similarity" given the `ranking` [B,
    |A|] of the A tokens), every token a candidate: the unmerged A tokens first (by position, or by ranking), then
    the B tokens by position; a merged A token goes where its `partner` [B, |A|] (a position in B) goes. Worked out
    position by position in A and B, with no sort: `chosen` [B, r] are the A positions that merge."""
    batch, base = chosen.shape[0], split.num_a - r          # the B tokens come after the |A| - r unmerged A tokens
    if ranking is None:
        stays_a = torch.ones(batch, split.num_a, dtype=torch.bool, device=split.device).scatter(1, chosen, False)
        new_a = stays_a.cumsum(dim=1) - 1                                             # among the unmerged A tokens
    else:
        rank = torch.empty_like(ranking).scatter_(1, ranking, positions(split.num_a, split.device).expand(batch, -1))
        stays_a = rank >= r
        new_a = rank - r
    dest_a = torch.where(stays_a, new_a, partner + base)
    num_b, device = split.num_b, split.device
    dest_b = cached(("after", num_b, base, device), lambda: positions(num_b, device) + base).expand(batch, -1)
    return split.interleave(dest_a, dest_b)


def _dest(split: _Split, chosen: Tensor, partner: Tensor, r: int, ranking: Tensor | None, order: str) -> Tensor:
    """[B, T] where each token goes, in any order (see `bipartite_matching`), worked out on the whole sequence: for
    "kept" order always, for ToMe's orders where only some tokens are candidates (`split.side_a`, `side_b`)."""
    batch, tokens, device = split.batch, split.tokens, split.device
    merged = split.token_a(chosen)                                                    # [B, r] token indices
    into = split.token_b(partner.gather(1, chosen))                                   # [B, r] token indices
    stays = torch.ones(batch, tokens, dtype=torch.bool, device=device).scatter(1, merged, False)
    if order == "kept":
        new_index = stays.cumsum(dim=1) - 1                                           # [B, T]
    else:
        # Sort the tokens that stay by a key: the tokens outside B by position (or, by similarity: the
        # non-candidates by position, then the A tokens by rank), then the B tokens by position.
        keep_all = positions(tokens, device).expand(batch, -1)
        in_b = torch.zeros(batch, tokens, dtype=torch.bool, device=device).scatter(1, split.side_b, True)
        key = keep_all + 2 * tokens * in_b.long()
        if order == "b_last_by_similarity":
            rank = torch.empty_like(ranking).scatter_(1, ranking, positions(ranking.shape[1], device)
                                                      .expand(batch, -1))
            key = key.scatter(1, split.side_a, tokens + rank)
        key = key.masked_fill(~stays, 4 * tokens)                                     # the merged ones last
        new_index = torch.empty_like(key).scatter_(1, key.argsort(dim=1), keep_all)
    return new_index.scatter(1, merged, new_index.gather(1, into))


def merge_tokens(
    x: Tensor, sizes: Tensor | None, dest: Tensor, num_out: int, *, discards: bool = True,
    out_sizes: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Size-weighted merge: each outgoing token is sum(s * x) / sum(s) over the tokens sent to it.

    Args:
        x: [B, T, C] tokens.
        sizes: [B, T] how many patches each token stands for, or None where every token stands for one (then the
            weighting is skipped: multiplying by 1 changes no bit).
        dest: [B, T] the outgoing token of each token (0..num_out-1), -1 for tokens discarded.
        num_out: T', the number of outgoing tokens; each must receive at least one token.
        discards: whether `dest` may hold -1; False (no token discarded, as in a matching) saves the bookkeeping
            of the discarded ones.
        out_sizes: [B, T'] float32, the outgoing sizes where the caller has them already (the same merge of other
            tokens: keys, then the tokens themselves), which saves adding them up again; else None.

    Returns:
        [B, T', C] merged tokens (dtype of x) and [B, T'] their sizes (float32, sums of the incoming sizes).
    """
    batch, tokens, channels = x.shape
    slots = dest + 1 if discards else dest                            # with discards, slot 0 collects them
    num_slots = num_out + int(discards)
    if out_sizes is None:
        weights = ones(batch, tokens, x.device) if sizes is None else as_float(sizes)
        out_sizes = torch.zeros(batch, num_slots, device=x.device).scatter_add_(1, slots, weights)
        out_sizes = out_sizes[:, 1:] if discards else out_sizes
    weighted = x if sizes is None else x * as_dtype(as_float(sizes), x.dtype).unsqueeze(-1)
    summed = torch.zeros(batch, num_slots, channels, device=x.device, dtype=x.dtype)
    summed.scatter_add_(1, slots.unsqueeze(-1).expand(-1, -1, channels), weighted)
    summed = summed[:, 1:] if discards else summed
    return summed / as_dtype(out_sizes, x.dtype).unsqueeze(-1), out_sizes


def compose_dest(first: Tensor, second: Tensor, *, discards: bool = True) -> Tensor:
    """Two merges one after the other as one: first [B, T] -> T', second [B, T'] -> T''; returns [B, T].

    `discards=False` says that `first` holds no -1 (no token discarded), which saves masking them."""
    if not discards:
        return second.gather(1, first)
    return second.gather(1, first.clamp(min=0)).masked_fill(first < 0, -1)

