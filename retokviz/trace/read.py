"""Questions asked of a recorded trace, answered in one place for every metric, figure, explorer panel and lesson.

    statuses = let_go_statuses(trace.method)     # what "let go of" means under this method (from its data)
    gone = gone_by_block(trace)                  # [L, B, P] bool, let go of at or before each block
    on_object = patch_mask(masks)                # [B, rows, cols] bool, the patches with an object pixel
    rescoring(trace)                             # per reduction block: semantic tokens displaced, pieces kept

The method travels as data (the Method objects in `trace.method`), never parsed back from its description.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from retokviz._util.checks import int_at_least
from retokviz.methods.base import Method
from retokviz.methods.compose import as_tuple
from retokviz.trace.record import Status, Trace

PATCH_SIZE = 16   # the generated data's patch side; a model's own comes from model.patch_embed.patch_size


def let_go_statuses(method: Method | Sequence[Method] | None) -> tuple[Status, ...]:
    """The statuses that mean "let go of" under `method`: dropped or fused where any member has a keep rate
    (EViT, ImagePiece, alone or composed), merged where every member only merges (ToMe). None: nothing is."""
    members = as_tuple(method) if method is not None else ()
    if not members:
        return ()
    if not any(member.has_keep_rate for member in members):
        return (Status.MERGED,)
    return (Status.DROPPED, Status.FUSED)


def is_let_go(status: Tensor | np.ndarray, statuses: Sequence[Status]) -> Tensor | np.ndarray:
    """Elementwise: whether each status value (tensor or array of rv.Status values) is one of `statuses`."""
    values = [int(value) for value in statuses]
    if isinstance(status, Tensor):
        return torch.isin(status, torch.tensor(values, dtype=status.dtype, device=status.device))
    return np.isin(status, values)


def gone_by_block(trace: Trace) -> Tensor:
    """[L, B, P] bool on the CPU: whether each patch was let go of (see let_go_statuses) at or before each block."""
    status = torch.stack([layer.status.cpu() for layer in trace.layers])
    return is_let_go(status, let_go_statuses(trace.method)).cummax(dim=0).values


def top_set(scores: Tensor, count: int) -> Tensor:
    """[B, T] scores -> [B, T] bool: the `count` highest of each row (the semantic tokens of a reduction)."""
    top = scores.topk(count, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter(1, top, True)


def rescoring(trace: Trace) -> dict[int, dict[str, int]]:
    """What re-scoring did at each reduction block, summed over the images of `trace`.

    The semantic tokens are the K highest by the class attention the block received (K = the tokens it keeps,
    without a fused token); a semantic token is displaced when it leaves the block dropped or fused, and a piece
    kept is a kept token that took in two or more of the tokens the block received.

    Returns:
        {block: {"images", "received" (tokens in), "semantic" (K), "displaced", "pieces kept"}}, counts summed
        over the images.
    """
    counts = {}
    for block, layer in enumerate(trace.layers):   # the state leaving each block, and the step that made it
        step = layer.step
        if step is None or layer.token_scores is None:
            continue
        dest = step.dest.cpu()                                                            # [B, T_in]
        fused = step.fused_index().cpu()                                                  # [B]
        kept = step.num_out - int((fused >= 0).any())
        semantic = top_set(layer.token_scores.cpu(), kept)                             # [B, T_in]
        landed = dest.masked_fill(~semantic, -2)
        displaced = semantic & ((landed == -1) | (landed == fused[:, None]))
        members = torch.zeros(dest.shape[0], step.num_out + 1, dtype=torch.long)
        members.scatter_add_(1, dest + 1, torch.ones_like(dest))
        members = members[:, 1:]
        is_fused = torch.zeros_like(members, dtype=torch.bool).scatter_(1, fused.clamp(min=0)[:, None], True)
        is_fused &= (fused >= 0)[:, None]
        counts[block] = {"images": dest.shape[0], "received": dest.shape[1] * dest.shape[0],
                         "semantic": kept * dest.shape[0], "displaced": int(displaced.sum()),
                         "pieces kept": int(((members > 1) & ~is_fused).sum())}
    return counts


def check_masks(images: Tensor, masks: Tensor) -> None:
    """Raise ValueError unless masks is [B, H, W] for images [B, 3, H, W]."""
    if masks.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"masks must be [B, H, W] = {(images.shape[0], *images.shape[-2:])}, got {tuple(masks.shape)}")


def patch_mask(masks: Tensor, patch_size: int = PATCH_SIZE) -> Tensor:
    """[n, H, W] bool pixel masks -> [n, H / patch_size, W / patch_size] bool: the patches with any object pixel.

    Raises:
        ValueError: masks is not a 3-dimensional tensor, patch_size not an int >= 1, or H or W not a multiple of it.
    """
    if not isinstance(masks, Tensor) or masks.dim() != 3:
        got = f"shape {tuple(masks.shape)}" if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a tensor [n, H, W], got {got}")
    patch_size = int_at_least("patch_size", patch_size, 1)
    n, height, width = masks.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"masks of {height} x {width} do not split into {patch_size}-pixel patches")
    grid = masks.reshape(n, height // patch_size, patch_size, width // patch_size, patch_size)
    return grid.any(dim=4).any(dim=2)
