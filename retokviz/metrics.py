"""Accuracy and "background removed": what a reduction method costs and what it throws away.

    rv.metrics.accuracy(model, images, labels)                      # top-1, as a fraction
    rv.metrics.background_removed(model, images, masks)             # which patches the method let go of

`background_removed` reads the trace: the patches a method let go of are the ones that were, at some block, no
longer carried by a token of their own (EViT and ImagePiece: dropped or fused; ToMe, which discards nothing:
merged). "At some block", because an EViT fused token that a later block keeps is an ordinary token from then on
(its patches become MERGED), yet its patches were let go of where they were fused.
Against the ground-truth masks of `rv.data.make_clutter`, it gives the share of those patches that are background,
next to the share a random choice of as many patches would give (the background share of all patches).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from retokviz.data import patch_mask
from retokviz.methods.compose import as_tuple
from retokviz.patch import state_of
from retokviz.provenance import Status, Trace, record


def batches(images: Tensor, batch_size: int, progress: bool, desc: str) -> Iterator[slice]:
    """Slices of `images` [B, 3, H, W], `batch_size` at a time, with an optional progress bar.

    Raises (at the call, before any slice):
        ValueError: images not [B, 3, H, W], no image at all (nothing to average over), or batch_size < 1.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be a batch [B, 3, H, W], got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"images holds no image (shape {tuple(images.shape)}); a metric needs at least one")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return _slices(images.shape[0], batch_size, progress, desc)


def _slices(total: int, batch_size: int, progress: bool, desc: str) -> Iterator[slice]:
    # disable=None: a bar in notebooks and terminals, nothing in logs (as the trainer does)
    for start in tqdm(range(0, total, batch_size), desc=desc, disable=None if progress else True, leave=False):
        yield slice(start, start + batch_size)


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256, progress: bool = False) -> float:
    """Top-1 accuracy of `model` (as it runs now, method included) on images [B, 3, H, W] with labels [B].

    Raises:
        ValueError: no images, images not [B, 3, H, W], labels not [B], or batch_size < 1.
    """
    parts = batches(images, batch_size, progress, "accuracy")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be [{images.shape[0]}], one per image, got shape {tuple(labels.shape)}")
    device = next(model.parameters()).device
    correct = 0
    for part in parts:
        correct += int((model(images[part].to(device)).argmax(-1).cpu() == labels[part]).sum())
    return correct / images.shape[0]


@dataclass(frozen=True)
class BackgroundRemoved:
    """What a method let go of, against the object masks.

    Attributes:
        removed: the share of all patches let go of (dropped or fused; for ToMe, merged).
        background: of those, the share that is background (touches no object pixel); NaN where none was.
        random: the share of background among all patches: what a random choice would give.
    """

    removed: float
    background: float
    random: float

    @property
    def lift(self) -> float:
        """(background - random) / (1 - random): 0 for a random choice, 1 when only background was let go of,
        negative when the object went first; NaN where nothing was let go of or there is no object."""
        if self.random >= 1.0:
            return float("nan")
        return (self.background - self.random) / (1.0 - self.random)


def check_masks(images: Tensor, masks: Tensor) -> None:
    """Raise ValueError unless masks is [B, H, W] for images [B, 3, H, W]."""
    if masks.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"masks must be [B, H, W] = {(images.shape[0], *images.shape[-2:])}, got {tuple(masks.shape)}")


def let_go_statuses(model: nn.Module) -> Tensor:
    """The rv.Status values that mean "let go of" under the method applied to `model`: dropped or fused where a
    method has a keep rate (EViT, ImagePiece, alone or composed), merged where the methods only merge (ToMe)."""
    merging_only = not any(method.has_keep_rate for method in as_tuple(state_of(model).method))
    return torch.tensor([int(status) for status in ((Status.MERGED,) if merging_only else
                                                    (Status.DROPPED, Status.FUSED))])


def gone_by_block(trace: Trace, statuses: Tensor) -> Tensor:
    """[L, B, P] bool: whether each patch was let go of (had one of `statuses`) at or before each block."""
    return torch.isin(torch.stack([layer.status.cpu() for layer in trace.layers]), statuses).cummax(dim=0).values


@torch.no_grad()
def background_removed(
    model: nn.Module, images: Tensor, masks: Tensor, batch_size: int = 256, progress: bool = False
) -> BackgroundRemoved:
    """The share of the patches a method let go of (at any block) that are background.

    Args:
        model: a timm ViT with a method applied.
        images: [B, 3, H, W] normalised images.
        masks: [B, H, W] bool, the object's pixels.

    Raises:
        ValueError: no images, images not [B, 3, H, W], masks not [B, H, W], or batch_size < 1.
    """
    per_block = background_removed_by_block(model, images, masks, batch_size, progress, every_block=True)
    return per_block[max(per_block)]


@torch.no_grad()
def background_removed_by_block(
    model: nn.Module, images: Tensor, masks: Tensor, batch_size: int = 256, progress: bool = False,
    every_block: bool = False,
) -> dict[int, BackgroundRemoved]:
    """`background_removed` as it stands after each reduction block: the patches let go of up to that block.

    Args:
        model, images, masks: as for `background_removed`.
        every_block: one entry per block, not only per block that reduced.

    Returns:
        {0-based block: BackgroundRemoved}, in block order: the blocks where some image was reduced (empty where
        none was), or every block with every_block=True.

    Raises:
        ValueError: no images, images not [B, 3, H, W], masks not [B, H, W], or batch_size < 1.
    """
    parts = batches(images, batch_size, progress, "background removed")
    check_masks(images, masks)
    statuses = let_go_statuses(model)
    device = next(model.parameters()).device
    patch_size = model.patch_embed.patch_size[0]
    removed = background = reduced = None                # [L] counts, [L] bool, summed over the batches
    patches = background_patches = 0
    for part in parts:
        with record(model) as trace:
            model(images[part].to(device))
        gone = gone_by_block(trace, statuses)                                             # [L, b, P]
        is_background = ~patch_mask(masks[part].cpu(), patch_size).flatten(1)                 # [b, P]
        counts = gone.flatten(1).sum(1), (gone & is_background).flatten(1).sum(1)
        steps = torch.tensor([layer.step is not None for layer in trace.layers])
        removed = counts[0] if removed is None else removed + counts[0]
        background = counts[1] if background is None else background + counts[1]
        reduced = steps if reduced is None else reduced | steps
        patches += gone[0].numel()
        background_patches += int(is_background.sum())
    blocks = range(len(removed)) if every_block else reduced.nonzero().flatten().tolist()
    return {block: BackgroundRemoved(int(removed[block]) / patches,
                                     int(background[block]) / int(removed[block]) if removed[block] else float("nan"),
                                     background_patches / patches)
            for block in blocks}
