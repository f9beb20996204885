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
    if candidates is None:
        candidates = torch.arange(tokens, device=device).expand(batch, -1)
    r = min(r, candidates.shape[1] // 2)
    keep_all = torch.arange(tokens, device=device).expand(batch, -1)
    if r <= 0:
        return Matching(keep_all, tokens, metric.new_zeros(batch, 0, dtype=torch.float32))
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    first_a = offset % 2                                                              # the first A candidate
    side_a, side_b = candidates[:, first_a::2], candidates[:, 1 - first_a::2]         # [B, |A|], [B, |B|]
    channels = metric.shape[-1]
    vectors_a = metric.gather(1, side_a.unsqueeze(-1).expand(-1, -1, channels))
    vectors_b = metric.gather(1, side_b.unsqueeze(-1).expand(-1, -1, channels))
    similarity = vectors_a @ vectors_b.transpose(1, 2)                                # [B, |A|, |B|]
    best, partner = similarity.max(dim=-1)                                            # [B, |A|]
    if order == "b_last_by_similarity":
        ranking = best.argsort(dim=-1, descending=True)                               # [B, |A|] every A edge
        chosen = ranking[:, :r]
        best_r = best.gather(1, chosen)
    else:
        best_r, chosen = best.topk(r, dim=-1)                                         # [B, r] positions in A
    merged = side_a.gather(1, chosen)                                                 # [B, r] token indices
    into = side_b.gather(1, partner.gather(1, chosen))                                # [B, r] token indices
    stays = torch.ones(batch, tokens, dtype=torch.bool, device=device).scatter(1, merged, False)
    if order == "kept":
        new_index = stays.long().cumsum(dim=1) - 1                                    # [B, T]
    else:
        # Sort the tokens that stay by a key: the tokens outside B by position (or, by similarity: the
        # non-candidates by position, then the A tokens by rank), then the B tokens by position.
        key = keep_all + 2 * tokens * torch.zeros_like(stays).scatter(1, side_b, True).long()
        if order == "b_last_by_similarity":
            rank = torch.empty_like(ranking).scatter_(1, ranking, torch.arange(ranking.shape[1], device=device)
                                                      .expand(batch, -1))
            key = key.scatter(1, side_a, tokens + rank)
        key = key.masked_fill(~stays, 4 * tokens)                                     # the merged ones last
        new_index = torch.empty_like(key).scatter_(1, key.argsort(dim=1), keep_all)
    dest = new_index.scatter(1, merged, new_index.gather(1, into))
    return Matching(dest, tokens - r, best_r.float())


def merge_tokens(x: Tensor, sizes: Tensor, dest: Tensor, num_out: int) -> tuple[Tensor, Tensor]:
    """Size-weighted merge: each outgoing token is sum(s * x) / sum(s) over the tokens sent to it.

    Args:
        x: [B, T, C] tokens.
        sizes: [B, T] how many patches each token stands for.
        dest: [B, T] the outgoing token of each token (0..num_out-1), -1 for tokens discarded.
        num_out: T', the number of outgoing tokens; each must receive at least one token.

    Returns:
        [B, T', C] merged tokens (dtype of x) and [B, T'] their sizes (float32, sums of the incoming sizes).
    """
    batch, _, channels = x.shape
    slots = dest + 1                                                  # slot 0 collects the discarded tokens
    weights = sizes.float()
    total = torch.zeros(batch, num_out + 1, device=x.device).scatter_add_(1, slots, weights)
    summed = torch.zeros(batch, num_out + 1, channels, device=x.device, dtype=x.dtype)
    summed.scatter_add_(1, slots.unsqueeze(-1).expand(-1, -1, channels), x * weights.to(x.dtype).unsqueeze(-1))
    out_sizes = total[:, 1:]
    return summed[:, 1:] / out_sizes.to(x.dtype).unsqueeze(-1), out_sizes


def compose_dest(first: Tensor, second: Tensor) -> Tensor:
    """Two merges one after the other as one: first [B, T] -> T', second [B, T'] -> T''; returns [B, T]."""
    return second.gather(1, first.clamp(min=0)).masked_fill(first < 0, -1)
