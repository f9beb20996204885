"""The ImagePiece paper's analyses, as numbers per block: what merging does to meaning.

    rv.analysis.attentiveness_recovery(model, images)    # {block: share of bottom tokens that reach the top next}
    rv.analysis.merge_similarity(model, images)          # {block: mean cosine similarity of the pairs merged}
    rv.analysis.semantic_dilution(model, images, 0.7)    # {block: share of merged tokens holding a top token}
    rv.analysis.let_go_by_reason(model, images, masks)   # {block: {why: what was let go of, how much background}}

Each runs the model (with its method applied) under `rv.record` and reads the trace. The "top set" of a block is
the ceil(top_rate * T) tokens with the highest class attention among the T tokens it receives; `top_rate` defaults
to the keep rate of the applied EViT or ImagePiece. Counts are pooled over all images before dividing.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from retokviz.ops.merging import compose_dest
from retokviz.methods.base import ceil_share
from retokviz.methods.compose import as_tuple
from retokviz.measure.metrics import BackgroundRemoved, traces
from retokviz.trace.read import check_masks, gone_by_block, patch_mask, top_set
from retokviz.patch import state_of
from retokviz.trace.record import Trace


def attentiveness_recovery(
    model: nn.Module, images: Tensor, top_rate: float | None = None, batch_size: int = 64, progress: bool = False
) -> dict[int, float]:
    """Of the tokens in the bottom set at one reduction block, the share whose token is in the top set at the next.

    ImagePiece's claim: tokens judged inattentive at one block often become attentive at the next once merged
    into a piece. The bottom set is everything outside the top set. Blocks are the reduction blocks of the applied
    EViT or ImagePiece (every merging block for ToMe alone).

    Args:
        model: a timm ViT with a method applied.
        images: [B, 3, H, W] normalised images.
        top_rate: share of the tokens in a block's top set, in (0, 1]; None: the method's keep rate.
        batch_size: images per forward pass.
        progress: show a progress bar over the batches.

    Returns:
        {block i: share} for each reduction block i that has a later one.
    """
    rate = _top_rate(model, top_rate)
    found, total = {}, {}
    for _, trace in traces(model, images, batch_size, progress, "analysing"):
        blocks = _reduction_blocks(model, trace)
        for here, there in zip(blocks, blocks[1:]):
            scores = trace.layers[here].token_scores                                 # [B, T_i]
            bottom = ~_top_set(scores, rate)
            dest = trace.layers[here].step.dest
            for layer in trace.layers[here + 1:there]:
                if layer.step is not None:
                    dest = compose_dest(dest, layer.step.dest)
            top_there = _top_set(trace.layers[there].token_scores, rate)             # [B, T_j]
            reached = top_there.gather(1, dest.clamp(min=0)) & (dest >= 0)
            found[here] = found.get(here, 0) + int((reached & bottom).sum())
            total[here] = total.get(here, 0) + int(bottom.sum())
    return {block: found[block] / total[block] for block in sorted(total) if total[block]}


def merge_similarity(
    model: nn.Module, images: Tensor, batch_size: int = 64, progress: bool = False
) -> dict[int, float]:
    """The mean cosine similarity of the token pairs merged at each block (in the matching's metric, the keys
    averaged over heads). ImagePiece's claim: its merged pairs stay similar in deep blocks, ToMe's do not.

    Returns:
        {block: mean similarity} for each block that merged something (ToMe, ImagePiece, or both composed).
    """
    sums, counts = {}, {}
    for _, trace in traces(model, images, batch_size, progress, "analysing"):
        for block, layer in enumerate(trace.layers):
            if layer.step is not None and layer.step.similarity is not None and layer.step.similarity.numel():
                sums[block] = sums.get(block, 0.0) + float(layer.step.similarity.double().sum())
                counts[block] = counts.get(block, 0) + layer.step.similarity.numel()
    return {block: sums[block] / counts[block] for block in sorted(counts)}


def semantic_dilution(
    model: nn.Module, images: Tensor, top_rate: float | None = None, batch_size: int = 64, progress: bool = False
) -> dict[int, float]:
    """The share of the merged tokens leaving each block that absorbed an important token.

    A merged token is one that took in two or more of the tokens the block received (an EViT fused token is not
    counted); an important token is one in the block's top set. ImagePiece's claim: few of its merges dilute a
    semantic token, unlike ToMe's.

    Args:
        top_rate: share of the tokens in a block's top set, in (0, 1]; None: the method's keep rate (give it
            for ToMe alone, e.g. 0.7 to compare with ImagePiece at keep rate 0.7).

    Returns:
        {block: share} for each block that merged something.
    """
    rate = _top_rate(model, top_rate)
    diluted, merged = {}, {}
    for _, trace in traces(model, images, batch_size, progress, "analysing"):
        for block, layer in enumerate(trace.layers):
            step = layer.step
            if step is None or layer.token_scores is None:
                continue
            important = _top_set(layer.token_scores, rate).long()                    # [B, T_in]
            slots = step.dest + 1                                                    # slot 0: discarded
            width = step.num_out + 1
            members = torch.zeros(slots.shape[0], width, dtype=torch.long).scatter_add_(1, slots, torch.ones_like(slots))
            holds = torch.zeros_like(members).scatter_add_(1, slots, important)
            fused = torch.zeros_like(members, dtype=torch.bool).scatter_(1, step.fused_index()[:, None].cpu() + 1, True)
            group = (members > 1) & ~fused                                           # the fused token is no piece
            group = group[:, 1:]
            diluted[block] = diluted.get(block, 0) + int((group & (holds[:, 1:] > 0)).sum())
            merged[block] = merged.get(block, 0) + int(group.sum())
    return {block: diluted[block] / merged[block] for block in sorted(merged) if merged[block]}


REASONS = ("bottom", "displaced")


def let_go_by_reason(
    model: nn.Module, images: Tensor, masks: Tensor, top_rate: float | None = None, batch_size: int = 64,
    progress: bool = False,
) -> dict[int, dict[str, BackgroundRemoved]]:
    """Why each reduction block let go of the patches it did, and how much of each kind is background.

    A patch let go of (dropped, or fused by EViT) at a reduction block went for one of two reasons: its token
    entered the block in the bottom set and never climbed out ("bottom"), or it entered in the top set and was
    pushed out ("displaced"): by ImagePiece's pieces, which compete with the top tokens for the places once they
    are scored again. EViT keeps its top set whole, so everything it lets go of is "bottom". Each patch is counted
    once, at the block that first let it go.

    Args:
        model: a timm ViT with EViT or ImagePiece applied (alone or composed).
        images: [B, 3, H, W] normalised images; masks: [B, H, W] bool, the object's pixels.
        top_rate: share of the tokens in a block's top set, in (0, 1]; None: the method's keep rate.

    Returns:
        {block: {"bottom": BackgroundRemoved, "displaced": BackgroundRemoved}} for the reduction blocks, where
        `removed` is the share of all patches let go of at that block for that reason and `background` the share
        of those that touch no object pixel (NaN where there were none).

    Raises:
        ValueError: no EViT or ImagePiece applied (and no top_rate), masks not [B, H, W], or bad images.
    """
    rate = _top_rate(model, top_rate)
    check_masks(images, masks)
    patch_size = model.patch_embed.patch_size[0]
    background = ~patch_mask(masks.cpu(), patch_size).flatten(1)             # [B, P], on the CPU as the traces are
    counts: dict[tuple[int, str], list[int]] = {}                                        # [let go, background]
    for part, trace in traces(model, images, batch_size, progress, "analysing"):
        plain = background[part]
        gone = gone_by_block(trace)                                            # [L, b, P]
        for block in _reduction_blocks(model, trace):
            new = gone[block] & ~gone[block - 1] if block else gone[block]
            owner = trace.layers[block - 1].owner if block else torch.arange(new.shape[1]).expand_as(new)
            top = _top_set(trace.layers[block].token_scores, rate).gather(1, owner.clamp(min=0))   # [b, P]
            for reason, chosen in zip(REASONS, (new & ~top, new & top)):
                count = counts.setdefault((block, reason), [0, 0])
                count[0] += int(chosen.sum())
                count[1] += int((chosen & plain).sum())
    patches = background.numel()
    random = int(background.sum()) / patches
    return {block: {reason: BackgroundRemoved(counts[block, reason][0] / patches,
                                              counts[block, reason][1] / counts[block, reason][0]
                                              if counts[block, reason][0] else float("nan"), random)
                    for reason in REASONS}
            for block in sorted({block for block, _ in counts})}


def _top_rate(model: nn.Module, top_rate: float | None) -> float:
    if top_rate is not None:
        if not 0.0 < float(top_rate) <= 1.0:
            raise ValueError(f"top_rate must be in (0, 1], got {top_rate!r}")
        return float(top_rate)
    rates = [m.keep_rate for m in as_tuple(state_of(model).method) if m.has_keep_rate]
    if not rates:
        raise ValueError(
            f"{state_of(model).model_name}: no EViT or ImagePiece applied, so no keep rate defines the top set; "
            "pass top_rate (e.g. 0.7)"
        )
    return min(rates)


def _reduction_blocks(model: nn.Module, trace: Trace) -> list[int]:
    """The blocks of the applied EViT/ImagePiece, else every block that reduced (ToMe)."""
    depth = len(trace.layers)
    ranked = [m for m in as_tuple(state_of(model).method) if m.has_keep_rate]
    blocks = sorted({b for m in ranked for b in m.reduction_layers(depth)}) if ranked else range(depth)
    return [b for b in blocks if trace.layers[b].step is not None and trace.layers[b].token_scores is not None]


def _top_set(scores: Tensor, rate: float) -> Tensor:
    """[B, T] scores -> [B, T] bool, the ceil(rate * T) highest of each row."""
    return top_set(scores, ceil_share(rate, scores.shape[1]))
