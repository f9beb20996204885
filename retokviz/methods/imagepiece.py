"""ImagePiece: merge the least meaningful tokens into pieces, keep the pieces that gain meaning, drop the rest.

Yoon et al., "ImagePiece: Content-aware Re-tokenization for Efficient Image Recognition" (arXiv 2412.16491). Like
WordPiece grouping characters into meaningful units, at each reduction block over the T patch tokens present:

1. Importance: the class attention a_i. The K = ceil(keep_rate * T) highest are semantic; the others are the
   non-semantic candidates (the bottom set).
2. Re-tokenization: bipartite soft matching (ToMe's steps, `retokviz.ops.merging`) among the candidates only, A/B
   alternating in their current order (the spatial order, unless a ToMe in the same model reordered the
   tokens before); semantic tokens are never merged. Merging is size-weighted.
3. Re-evaluation: the tokens are scored again against the class query, a piece's key being the size-weighted mean
   of its members' keys plus the log-size bias of proportional attention. Steps 1-2 repeat on the pieces
   (`merge_rounds` times: the paper describes merging and re-scoring as repeated), then the K highest-scoring tokens are kept and the ones that stay
   non-semantic are discarded (or, with `fuse=True`, fused EViT-style into one token).

What the sources leave open, and what is chosen here:

- Budget. A reduction block always leaves K = ceil(keep_rate * T) patch tokens (plus one fused token with
  `fuse=True` when anything is discarded), exactly EViT's count at the same keep rate. So batches stay rectangular,
  the MACs match EViT's, and at equal keep rate the two compare at an equal token budget. Pieces compete with the
  semantic tokens for the K places: a piece that gained meaning displaces the weakest semantic token.
- Placement. The default blocks are EViT's (depth//4, depth//2, 3*depth//4; (3, 6, 9) for 12 blocks), again for
  the equal-budget comparison. The paper has ImagePiece re-tokenize early, so that the count falls from the first
  layers: pass e.g. `layers=(1, 3, 6, 9)` for that.
- Semantic tokens are never merged, in any round: "semantic" is the top K at the block's input. Later rounds
  merge among the pieces only, so a piece can't absorb a semantic token (no semantic dilution by construction).
- Candidate set. `candidates=None` makes the bottom set all the non-semantic tokens (the "bottom-k", T - K at
  first). A share `candidates` in (0, 1) makes it the lowest-scoring ceil(candidates * T) of them instead
  (re-scored before each round), so the pieces that gained meaning stop merging.
- Merge rounds. Each round merges half of the candidates (the most one bipartite matching can). Two rounds by
  default: pieces of two to four patches typically form before the final discard (more where several tokens match
  one partner: matching is many-to-one). At DeiT-S's first reduction with
  keep rate 0.7: 196 tokens, K = 138, round 1 merges 29 of the 58 candidates, round 2 merges 14 of the 29
  pieces, and the 15 lowest of the remaining 153 tokens are discarded.
- Later blocks attend proportionally (log-size bias, as ToMe), since tokens now stand for several patches.
- With `fuse=True` the fused token is sum of a_j * x_j over the discarded pieces j (their re-evaluated scores,
  not renormalised), and counts as one token (size 1) in later blocks.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from retokviz.ops.merging import bipartite_matching, compose_dest, head_mean_keys, merge_tokens
from retokviz.methods.base import (Method, Reduced, ceil_share, check_flag, check_layers, check_rate, keep_and_fuse,
                                   resolve_layers)
from retokviz.ops.class_attention import AttentionView
from retokviz.ops.tensors import ones, positions


@dataclass(frozen=True)
class ImagePiece(Method):
    """Content-aware re-tokenization (ImagePiece).

    Args:
        keep_rate: share of the patch tokens left by each reduction block, 0 < keep_rate <= 1 (EViT's count).
            1.0 reduces nothing.
        layers: the reduction blocks, 0-based. None means depth//4, depth//2, 3*depth//4.
        candidates: share of the tokens in the bottom set that may merge, in (0, 1), at most the non-semantic
            ones; None means all the non-semantic tokens.
        merge_rounds: how many times the bottom set is merged and re-scored before the final discard, >= 0
            (0 is EViT without fusion).
        fuse: fuse the discarded pieces into one token (True) or drop them (False).
    """

    keep_rate: float = 0.7
    layers: tuple[int, ...] | None = None
    candidates: float | None = None
    merge_rounds: int = 2
    fuse: bool = False

    has_keep_rate = True
    needs_class_token = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_rate", check_rate("ImagePiece", "keep_rate", self.keep_rate))
        object.__setattr__(self, "layers", check_layers("ImagePiece", self.layers))
        if self.candidates is not None:
            share = check_rate("ImagePiece", "candidates", self.candidates, allow_one=False)
            object.__setattr__(self, "candidates", share)
        rounds = self.merge_rounds
        if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 0:
            raise ValueError(f"ImagePiece.merge_rounds must be an int >= 0, got {rounds!r}")
        object.__setattr__(self, "merge_rounds", int(rounds))
        check_flag("ImagePiece", "fuse", self.fuse)

    def reduction_layers(self, depth: int) -> tuple[int, ...]:
        return resolve_layers("ImagePiece", self.layers, depth)

    def num_kept(self, num_tokens: int) -> int:
        """K = ceil(keep_rate * T): the patch tokens (semantic tokens and pieces) a reduction block keeps."""
        return ceil_share(self.keep_rate, num_tokens)

    def bottom_size(self, num_tokens: int, num_kept: int) -> int:
        """How many of `num_tokens` tokens form the bottom set of a merge round (the K semantic ones never do)."""
        if self.candidates is None:
            return num_tokens - num_kept
        return min(ceil_share(self.candidates, num_tokens), num_tokens - num_kept)

    def merge_plan(self, num_tokens: int) -> list[tuple[int, int]]:
        """(bottom-set size, merges) of each merge round at a block receiving `num_tokens` tokens."""
        kept, tokens, plan = self.num_kept(num_tokens), num_tokens, []
        for _ in range(self.merge_rounds):
            bottom = self.bottom_size(tokens, kept)
            merges = bottom // 2
            if merges <= 0:
                break
            plan.append((bottom, merges))
            tokens -= merges
        return plan

    def tokens_after(self, num_tokens: int, block: int) -> int:
        kept = self.num_kept(num_tokens)
        pieces = num_tokens - sum(merges for _, merges in self.merge_plan(num_tokens))
        return kept + int(self.fuse and pieces > kept)

    def reduce(self, x: Tensor, view: AttentionView, block: int, track: bool) -> Reduced:
        prefix = view.num_prefix
        patches = x[:, prefix:]                                             # [B, T, C]
        num_in = patches.shape[1]
        num_keep = self.num_kept(num_in)
        scores = view.class_scores()                                        # [B, T]
        # Step 1: the K semantic tokens stay as they are; only the bottom set (current order) is worked on.
        ranked = scores.argsort(dim=1, descending=True)
        semantic, bottom = ranked[:, :num_keep].sort(dim=1).values, ranked[:, num_keep:].sort(dim=1).values
        pieces = _Pieces(view, semantic, bottom)
        # Steps 2-3, `merge_rounds` times: merge the bottom set into pieces, score everything again.
        all_scores = None
        for candidates, merges in self.merge_plan(num_in):
            all_scores = pieces.merge_round(candidates, merges, all_scores)
        if all_scores is None:                                              # no round: the scores as they came
            all_scores = torch.cat([scores.gather(1, semantic), scores.gather(1, bottom)], dim=1)
        bottom_x = _take(patches, bottom)
        if pieces.piece_of is not None:
            bottom_x = merge_tokens(bottom_x, pieces.bottom_sizes, pieces.piece_of, pieces.count, discards=False,
                                    out_sizes=pieces.piece_sizes)[0]
        candidates_x = torch.cat([_take(patches, semantic), bottom_x], dim=1)       # [B, K + pieces, C]

        # The final discard: the K best of the semantic tokens and pieces stay, in the current order (a piece sits
        # where its first patch is).
        position = torch.cat([semantic, pieces.first_positions(num_in)], dim=1)     # [B, K + pieces]
        keep = all_scores.topk(num_keep, dim=1).indices
        keep = keep.gather(1, position.gather(1, keep).argsort(dim=1))                  # [B, K]
        sizes = None
        if view.sizes is not None or pieces.piece_of is not None:          # some token stands for several patches
            prefix_sizes = view.sizes[:, :prefix] if view.sizes is not None else ones(x.shape[0], prefix, x.device)
            sizes = (prefix_sizes, torch.cat([pieces.semantic_sizes(), pieces.sizes()], dim=1))
        reduced = keep_and_fuse(x[:, :prefix], candidates_x, all_scores, keep, self.fuse, sizes, track)
        if not track:
            return reduced
        step = replace(reduced.step, dest=compose_dest(pieces.slots(num_in), reduced.step.dest),
                       similarity=pieces.similarity())
        return replace(reduced, step=step)


class _Pieces:
    """The bottom set of one ImagePiece block and the pieces merged from it, round by round.

    Attributes:
        semantic, bottom: [B, K], [B, M] the input positions of the semantic and the bottom tokens, ascending.
        bottom_keys: [B, M, H * d] the bottom tokens' keys (heads side by side), in their order.
        bottom_sizes: [B, M] their sizes, or None where every token stands for one patch (no sizes tracked yet).
        piece_of: [B, M] the piece of each bottom token (0..count-1), or None before the first round.
        keys: [B, count, H * d] the pieces' keys (size-weighted means of their members' keys; the bottom tokens'
            own before the first round).
        piece_sizes: [B, count] the pieces' sizes (bottom_sizes before the first round).
    """

    def __init__(self, view: AttentionView, semantic: Tensor, bottom: Tensor) -> None:
        self.view, self.semantic, self.bottom = view, semantic, bottom
        self.num_keep = semantic.shape[1]
        keys, sizes = view.patch_keys(), view.tracked_patch_sizes()                   # [B, T, H * d], [B, T]
        self.semantic_keys = _take(keys, semantic)
        self.bottom_keys = self.keys = _take(keys, bottom)
        self.tracked_semantic_sizes = None if sizes is None else sizes.gather(1, semantic)
        self.bottom_sizes = self.piece_sizes = None if sizes is None else sizes.gather(1, bottom)
        self.piece_of: Tensor | None = None
        self.fixed_logits: Tensor | None = None   # the class query's logits to the prefix and semantic tokens
        self.similarities: list[Tensor] = []

    @property
    def count(self) -> int:
        """The number of pieces (bottom tokens before the first round)."""
        return self.keys.shape[1]

    def merge_round(self, candidates: int, merges: int, all_scores: Tensor | None) -> Tensor:
        """One round. Step 2: bipartite merging among the `candidates` lowest-scoring pieces (by `all_scores` [B,
        K + count], the last round's scores, None before the first round; all the pieces where `candidates` is
        all of them). Step 3: every token scored again. Returns the new scores [B, K + count']."""
        view = self.view
        chosen = None
        if candidates < self.count:
            if all_scores is None:                                  # the first round: the class attention
                piece_scores = view.class_scores().gather(1, self.bottom)
            else:
                piece_scores = all_scores[:, self.num_keep:]
            chosen = piece_scores.topk(candidates, dim=1, largest=False).indices.sort(dim=1).values
        match = bipartite_matching(head_mean_keys(self.keys, view.k.shape[1]), merges, chosen)
        # A round merges pieces, never discards one: the composition needs no masking.
        self.piece_of = match.dest if self.piece_of is None else compose_dest(self.piece_of, match.dest,
                                                                              discards=False)
        self.similarities.append(match.similarity)
        # Step 3: a piece is the size-weighted mean of its bottom tokens; score everything again.
        self.keys, self.piece_sizes = merge_tokens(self.bottom_keys, self.bottom_sizes, self.piece_of,
                                                   match.num_out, discards=False)
        if self.fixed_logits is None:
            semantic_logits = view.logits(self.semantic_keys, self.tracked_semantic_sizes)
            self.fixed_logits = torch.cat([view.prefix_logits(), semantic_logits], dim=2)
        logits = torch.cat([self.fixed_logits, view.logits(self.keys, self.piece_sizes)], dim=2)   # [B, H, N']
        return logits.softmax(dim=-1).mean(dim=1)[:, view.num_prefix:]                       # [B, K + count]

    def semantic_sizes(self) -> Tensor:
        """[B, K] the semantic tokens' sizes (float32)."""
        if self.tracked_semantic_sizes is None:
            return ones(*self.semantic.shape, self.semantic.device)
        return self.tracked_semantic_sizes

    def sizes(self) -> Tensor:
        """[B, count] the pieces' sizes (float32)."""
        if self.piece_sizes is None:
            return ones(*self.bottom.shape, self.bottom.device)
        return self.piece_sizes

    def first_positions(self, num_in: int) -> Tensor:
        """[B, count] where each piece sits: the input position of its first bottom token."""
        if self.piece_of is None:
            return self.bottom
        first = torch.full((self.bottom.shape[0], self.count), num_in, device=self.bottom.device)
        return first.scatter_reduce(1, self.piece_of, self.bottom, reduce="amin")

    def slots(self, num_in: int) -> Tensor:
        """[B, T] the candidate (0..K-1 the semantic tokens, then the pieces) that carries each input token."""
        batch, device = self.bottom.shape[0], self.bottom.device
        slot = torch.empty(batch, num_in, dtype=torch.long, device=device)
        slot.scatter_(1, self.semantic, positions(self.num_keep, device).expand(batch, -1))
        piece_of = self.piece_of if self.piece_of is not None else positions(self.count, device).expand(batch, -1)
        return slot.scatter_(1, self.bottom, piece_of + self.num_keep)

    def similarity(self) -> Tensor | None:
        """[B, R] the similarity of every pair merged, round after round, or None without a round."""
        return torch.cat(self.similarities, dim=1) if self.similarities else None


def _take(tokens: Tensor, index: Tensor) -> Tensor:
    """tokens [B, T, C], index [B, K] -> [B, K, C]."""
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
