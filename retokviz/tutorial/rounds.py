"""ImagePiece's merge rounds one at a time, read from the method itself (notebook 03's lesson widget).

A recorded trace holds what a reduction block did as a whole (`LayerRecord.step`: where each token it received
went); ImagePiece's rounds in between (the pieces after round 1, what re-scoring would keep then) are not kept.
`merge_rounds` gets them from ImagePiece's own code, not a copy of it:

- the block's input (its tokens and attention, an AttentionView) is captured by running the model once with a
  subclass of the method that notes what its `reduce` is handed;
- `reduce` is then called on that input with `merge_rounds` = 0, 1, ..., R: the tokens each call keeps are the K
  best after that many rounds of merging and re-scoring (0 rounds: the K semantic tokens, the class attention's
  top K), since a run of r rounds is the first r rounds of a longer one;
- the pieces after each round are the bipartite matchings `reduce` makes (`ops.merging.bipartite_matching`, noted as
  it returns them), composed with `compose_dest` as `reduce` composes them.

Every answer is checked against the method's own result: the R-round call keeps exactly what the model's recorded
pass kept, and the pieces it keeps are the matchings' pieces. A change to ImagePiece that breaks this reading raises
instead of showing something else.

    steps = merge_rounds(model, tensor, method)      # {block: BlockRounds} at every reduction block of one image
    steps[1].semantic, steps[1].after[0].group       # [T] the semantic tokens, the token each is in after round 1
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from retokviz.methods.imagepiece import ImagePiece
from retokviz.ops.merging import compose_dest
from retokviz.patch import applied

_WATCHING = threading.Lock()      # one reading at a time: the matchings are noted module-wide while it runs


@dataclass(frozen=True)
class AfterRound:
    """The tokens of one reduction block after a merge round and its re-scoring (one image).

    Attributes:
        round: 1, 2, ... (the round just done).
        candidates: the tokens that could merge in this round (ImagePiece's bottom set; all the non-semantic ones
            by default).
        merged: how many of them merged into another (the round's r).
        group: [T] for each token the block received, the token it is in now (semantic tokens: a token of their
            own; candidates: their piece, shared by the tokens merged together).
        kept: [T] bool, the tokens in one of the K best after this round's re-scoring: what the discard would keep
            if it came now.
        similarity: [merged] the cosine similarity of each pair merged (the matching's metric), most alike first.
    """

    round: int
    candidates: int
    merged: int
    group: np.ndarray
    kept: np.ndarray
    similarity: np.ndarray

    @property
    def pieces(self) -> np.ndarray:
        """[T] bool: the tokens in a piece, a group of two or more of the tokens the block received."""
        return _shared(self.group)

    @property
    def num_pieces(self) -> int:
        """How many pieces (groups of two or more received tokens) there are after this round."""
        pieces = self.group[self.pieces]
        return int(len(np.unique(pieces)))


@dataclass(frozen=True)
class BlockRounds:
    """ImagePiece at one reduction block of one image, round by round.

    Attributes:
        block: the block.
        received: T, the patch tokens the block received.
        kept: K = ceil(keep_rate * T), the tokens it keeps.
        semantic: [T] bool, the K tokens with the highest class attention: they never merge.
        scores: [T] the class attention that ranked them.
        after: one AfterRound per merge round (none where the bottom set is too small to merge).
        dest: [T] where each token went, as the model's recorded pass has it (-1: let go of).
        fused: the index of the fused token among the tokens leaving the block, or -1 (ImagePiece(fuse=True)).
    """

    block: int
    received: int
    kept: int
    semantic: np.ndarray
    scores: np.ndarray
    after: tuple[AfterRound, ...]
    dest: np.ndarray
    fused: int

    @property
    def final_kept(self) -> np.ndarray:
        """[T] bool: the tokens in one of the K tokens the block keeps (not let go of, not fused)."""
        return (self.dest >= 0) & (self.dest != self.fused)

    @property
    def displaced(self) -> np.ndarray:
        """[T] bool: the semantic tokens the block let go of (pieces took their places)."""
        return self.semantic & ~self.final_kept


def _shared(group: np.ndarray) -> np.ndarray:
    """[T] bool: the entries whose value occurs more than once (-1 excluded)."""
    values, counts = np.unique(group[group >= 0], return_counts=True)
    return np.isin(group, values[counts > 1])


def _kept_tokens(dest: Tensor, fused: Tensor) -> np.ndarray:
    """[T] bool from one image's Regroup dest [1, T] and fused index [1]: the tokens in a kept token."""
    dest, fused = dest[0].cpu(), int(fused[0])
    return ((dest >= 0) & (dest != fused)).numpy()


def _same_grouping(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two labellings of the same items group them alike (equal labels in one iff equal in the other)."""
    return bool((np.equal.outer(first, first) == np.equal.outer(second, second)).all())


@contextmanager
def _matchings() -> Iterator[list]:
    """The bipartite matchings ImagePiece.reduce makes inside, in order (this thread's only)."""
    from retokviz.methods import imagepiece as module

    original = getattr(module, "bipartite_matching", None)
    if original is None:
        raise RuntimeError("retokviz.methods.imagepiece no longer calls bipartite_matching, so its merge rounds "
                           "can't be read one by one; the lesson needs updating")
    seen: list = []
    reader = threading.get_ident()

    def noted(*args, **kwargs):
        match = original(*args, **kwargs)
        if threading.get_ident() == reader:
            seen.append(match)
        return match

    with _WATCHING:
        module.bipartite_matching = noted
        try:
            yield seen
        finally:
            module.bipartite_matching = original


def _inputs(model: nn.Module, tensor: Tensor, method: ImagePiece) -> tuple[dict[int, tuple], Tensor]:
    """What `method.reduce` is handed at each reduction block of one pass of `tensor` ([1, 3, H, W]): {block: (x,
    view)}; and the pass's logits."""
    handed: dict[int, tuple] = {}

    class Noting(type(method)):           # the method as it is, noting its input: same fields, same reduce
        def reduce(self, x, view, block, track):
            handed[block] = (x, view)
            return super().reduce(x, view, block, track)

    noting = Noting(**{field.name: getattr(method, field.name) for field in fields(method)})
    device = next(model.parameters()).device
    with torch.no_grad(), applied(model, noting):
        logits = model(tensor.to(device))
    return handed, logits


@torch.no_grad()
def merge_rounds(model: nn.Module, tensor: Tensor, method: ImagePiece,
                 dests: dict[int, Tensor] | None = None) -> dict[int, BlockRounds]:
    """ImagePiece's rounds at every block where it reduces, for one image.

    Args:
        model: a supported timm ViT with a class token (its own method is back in place afterwards).
        tensor: [1, 3, H, W] the image, normalised as the model takes it.
        method: the ImagePiece run (alone, not composed).
        dests: {block: [T] or [1, T] dest} of a recorded pass of the same image and method (`trace.layers[b].step
            .dest`), checked against: the method's own calls here must reproduce it.

    Returns:
        {block: BlockRounds}.

    Raises:
        TypeError: `method` is not an ImagePiece.
        ValueError: more than one image.
        RuntimeError: what is read here disagrees with the method's own result (it changed under the lesson).
    """
    if not isinstance(method, ImagePiece):
        raise TypeError(f"merge_rounds follows ImagePiece's rounds; got {type(method).__name__}")
    if tensor.dim() != 4 or tensor.shape[0] != 1:
        raise ValueError(f"merge_rounds reads one image at a time: [1, 3, H, W], got {list(tensor.shape)}")
    handed, _ = _inputs(model, tensor, method)
    plain = ImagePiece(**{field.name: getattr(method, field.name) for field in fields(ImagePiece)})
    found = {}
    for block, (x, view) in sorted(handed.items()):
        received = x.shape[1] - view.num_prefix
        plan = plain.merge_plan(received)
        kept_after = []
        for rounds in range(len(plan) + 1):       # 0 rounds: the semantic tokens; then after each round
            step = replace(plain, merge_rounds=rounds).reduce(x, view, block, track=True).step
            kept_after.append(_kept_tokens(step.dest, step.fused_index()))
        with _matchings() as seen:
            step = plain.reduce(x, view, block, track=True).step
        if len(seen) != len(plan):
            raise RuntimeError(f"ImagePiece made {len(seen)} matchings at block {block}, where its merge plan "
                               f"has {len(plan)} rounds; the lesson can't follow its rounds")
        dest = step.dest[0].cpu()
        fused = int(step.fused_index()[0])
        if dests is not None and block in dests:
            recorded = torch.as_tensor(dests[block]).reshape(-1).cpu()
            if not torch.equal(recorded, dest):
                raise RuntimeError(f"block {block}: ImagePiece's reduce called here keeps other tokens than the "
                                   "recorded pass did; the lesson can't follow its rounds")
        semantic = kept_after[0]
        bottom = np.flatnonzero(~semantic)        # the candidates in their order, as reduce takes them
        piece_of = torch.arange(len(bottom))[None]
        after = []
        for number, ((candidates, merges), match) in enumerate(zip(plan, seen), start=1):
            piece_of = compose_dest(piece_of, match.dest.cpu())
            group = np.arange(received)
            group[bottom] = received + piece_of[0].numpy()
            after.append(AfterRound(number, candidates, merges, group, kept_after[number],
                                    match.similarity[0].float().cpu().numpy()))
        final = after[-1] if after else None
        if final is not None:                     # the pieces kept are the matchings' pieces, token for token
            kept = (dest >= 0).numpy() & (dest.numpy() != fused)
            if not _same_grouping(final.group[kept], dest.numpy()[kept]):
                raise RuntimeError(f"block {block}: the pieces ImagePiece kept are not the ones its matchings "
                                   "made; the lesson can't follow its rounds")
        if not np.array_equal(kept_after[-1], _kept_tokens(step.dest, step.fused_index())):
            raise RuntimeError(f"block {block}: ImagePiece keeps other tokens when called twice")
        found[block] = BlockRounds(block, received, plain.num_kept(received), semantic,
                                   view.class_scores()[0].float().cpu().numpy(), tuple(after), dest.numpy(), fused)
    return found
