"""Accuracy and "background removed": what a reduction method costs and what it throws away.

    rv.metrics.accuracy(model, images, labels)                      # top-1, as a fraction
    rv.metrics.background_removed(model, images, masks)             # which patches the method let go of
    rv.metrics.let_go_counts(model, images, masks).lift_interval()  # how sure that is, over the images
    for part, trace in rv.metrics.traces(model, images): ...        # the traces they read, batch by batch

`background_removed` reads the trace: the patches a method let go of are the ones that were, at some block, no
longer carried by a token of their own (EViT and ImagePiece: dropped or fused; ToMe, which discards nothing:
merged). "At some block", because an EViT fused token that a later block keeps is an ordinary token from then on
(its patches become MERGED), yet its patches were let go of where they were fused.
Against the ground-truth masks of `rv.data.make_clutter`, it gives the share of those patches that are background,
next to the share a random choice of as many patches would give (the background share of all patches).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from retokviz.trace.read import check_masks, gone_by_block, patch_mask
from retokviz.measure.intervals import bootstrap
from retokviz.trace.record import Trace, record


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


def traces(model: nn.Module, images: Tensor, batch_size: int = 64, progress: bool = False,
           desc: str = "tracing") -> Iterator[tuple[slice, Trace]]:
    """Run `model` (as it runs now, method included) over `images` [B, 3, H, W] in batches under `rv.record`:
    yields each batch's slice of `images` and its trace, on the CPU.

    Raises (at the call, before any forward pass):
        ValueError: images not [B, 3, H, W], no image at all, or batch_size < 1.
    """
    return _traced(model, images, batches(images, batch_size, progress, desc))


def _traced(model: nn.Module, images: Tensor, parts: Iterator[slice]) -> Iterator[tuple[slice, Trace]]:
    device = next(model.parameters()).device
    for part in parts:
        with record(model) as trace, torch.no_grad():
            model(images[part].to(device))
        yield part, trace.to("cpu")


def correct_in(forward: Callable[[Tensor], Tensor], batches: Iterable[tuple[Tensor, Tensor]], device: torch.device,
               dtype: torch.dtype | None = None) -> Tensor:
    """The one top-1 loop: [N] bool over every (images [b, 3, H, W], labels [b]) batch, whether `forward`'s
    highest-scoring class is the label; images are moved to `device` (and cast to `dtype`) first."""
    hits = [forward(images.to(device, dtype, non_blocking=True)).argmax(-1).cpu() == labels
            for images, labels in batches]
    return torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool)


@torch.no_grad()
def correct(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256, progress: bool = False) -> Tensor:
    """[B] bool: whether `model` (as it runs now, method included) puts each image [B, 3, H, W] in its label [B].

    Raises:
        ValueError: no images, images not [B, 3, H, W], labels not [B], or batch_size < 1.
    """
    parts = batches(images, batch_size, progress, "accuracy")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be [{images.shape[0]}], one per image, got shape {tuple(labels.shape)}")
    device = next(model.parameters()).device
    return correct_in(model, ((images[part], labels[part]) for part in parts), device)


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256, progress: bool = False) -> float:
    """Top-1 accuracy of `model` (as it runs now, method included) on images [B, 3, H, W] with labels [B].

    Raises:
        ValueError: no images, images not [B, 3, H, W], labels not [B], or batch_size < 1.
    """
    return int(correct(model, images, labels, batch_size, progress).sum()) / images.shape[0]


def lift(background: Tensor, random: Tensor) -> Tensor:
    """(background - random) / (1 - random), elementwise: NaN where random >= 1 (no object to spare)."""
    return torch.where(random >= 1.0, torch.nan, (background - random) / (1.0 - random).clamp(min=1e-12))


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
        return float(lift(torch.tensor(self.background, dtype=torch.float64),
                          torch.tensor(self.random, dtype=torch.float64)))


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
    return let_go_counts(model, images, masks, batch_size, progress).by_block(every_block)


@dataclass(frozen=True)
class LetGoCounts:
    """What a method let go of, image by image: the counts that `BackgroundRemoved` pools.

    Attributes:
        removed: [L, B] int, the patches of each image let go of at or before each block.
        background: [L, B] int, of those, the background ones (touching no object pixel).
        background_patches: [B] int, the background patches of each image.
        patches: the patches of one image, P.
        reduced: [L] bool, whether the method reduced anything at each block (in any image).
    """

    removed: Tensor
    background: Tensor
    background_patches: Tensor
    patches: int
    reduced: Tensor

    def at(self, block: int) -> BackgroundRemoved:
        """The counts at `block` pooled over the images."""
        shares = self._pooled(self.removed[block], self.background[block], self.background_patches)
        return BackgroundRemoved(*(float(value) for value in shares))

    def _pooled(self, removed: Tensor, background: Tensor, background_patches: Tensor) -> tuple[Tensor, ...]:
        """The BackgroundRemoved shares (removed, background, random) of per-image counts [..., B], pooled over
        the last dimension (the images): float64 tensors [...], background NaN where nothing was let go of."""
        total, patches = removed.sum(-1).double(), self.patches * removed.shape[-1]
        background_share = torch.where(total > 0, background.sum(-1).double() / total.clamp(min=1), torch.nan)
        return total / patches, background_share, background_patches.sum(-1).double() / patches

    def by_block(self, every_block: bool = False) -> dict[int, BackgroundRemoved]:
        """{block: pooled counts} for the blocks that reduced, or every block with every_block=True."""
        blocks = range(self.removed.shape[0]) if every_block else self.reduced.nonzero().flatten().tolist()
        return {block: self.at(block) for block in blocks}

    def lift_interval(self, block: int | None = None, **options) -> tuple[float, float]:
        """The bootstrap interval (`rv.intervals.bootstrap`, its `options`) of the lift at `block` (default: the
        last, all that was let go of), resampling the images; (nan, nan) where nothing was let go of."""
        block = self.removed.shape[0] - 1 if block is None else block

        def pooled_lift(removed: Tensor, background: Tensor, background_patches: Tensor) -> Tensor:  # [R, B] each
            _, background_share, random = self._pooled(removed, background, background_patches)
            return lift(background_share, random)

        return bootstrap(pooled_lift, self.removed[block], self.background[block], self.background_patches,
                         **options)


@torch.no_grad()
def let_go_counts(model: nn.Module, images: Tensor, masks: Tensor, batch_size: int = 256,
                  progress: bool = False) -> LetGoCounts:
    """Per image and block, the patches `model` (with a method applied) let go of and how many are background.

    Args:
        model, images, masks: as for `background_removed`.

    Raises:
        ValueError: no images, images not [B, 3, H, W], masks not [B, H, W], or batch_size < 1.
    """
    traced = traces(model, images, batch_size, progress, "background removed")
    check_masks(images, masks)
    patch_size = model.patch_embed.patch_size[0]
    removed, background, background_patches, reduced = [], [], [], None
    for part, trace in traced:
        gone = gone_by_block(trace)                                             # [L, b, P]
        is_background = ~patch_mask(masks[part].cpu(), patch_size).flatten(1)             # [b, P]
        removed.append(gone.sum(-1))
        background.append((gone & is_background).sum(-1))
        background_patches.append(is_background.sum(-1))
        steps = torch.tensor([layer.step is not None for layer in trace.layers])
        reduced = steps if reduced is None else reduced | steps
    return LetGoCounts(torch.cat(removed, 1), torch.cat(background, 1), torch.cat(background_patches),
                       is_background.shape[-1], reduced)
