"""Robustness measurements on images with object masks (rv.data.make_clutter): what a reduction method lets go
of across keep rates, and what masking patches on the object or on the background does to the prediction.

    import retokviz as rv
    from retokviz.measure.robustness import background_by_keep_rate, mask_patches, masked_accuracy, masking_effect

    model = rv.load_checkpoint("small-evit-0.7")
    images, labels, masks = rv.data.make_clutter(500, seed=0)
    background_by_keep_rate(model, images, masks, keep_rates=(0.5, 0.7, 0.9))   # [RemovedAtRate, ...]
    masked = mask_patches(images, masks, where="object", count=4, seed=0)      # [B, 3, H, W]
    masking_effect(model, images, labels, masks, counts=(1, 2, 4))             # accuracy, object vs background
    masked_accuracy(model, {"EViT": rv.EViT(0.7), "ToMe": rv.ToMe(r=10)}, images, labels, counts=(0, 8, 16))

Everything is seeded and deterministic: the patches masked for a seed do not depend on the batch size, and the
patches masked at a count are among those masked at any larger count (the same random order, cut shorter).
The figures of these numbers are in retokviz.views.static (plot_background_removed, plot_masking_effect,
plot_masked_accuracy).
"""
from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from retokviz.trace.read import patch_mask
from retokviz.methods.base import Method
from retokviz.methods.budget import method_at
from retokviz.measure.metrics import accuracy, background_removed
from retokviz.patch import applied, apply, method_of, remove
from retokviz.methods.registry import describe as describe_method

WHERE = ("object", "background", "any")
FILLS = ("mean", "zero")


@dataclass(frozen=True)
class RemovedAtRate:
    """What a method let go of at one keep rate (see rv.metrics.background_removed).

    Attributes:
        keep_rate: the keep rate.
        method: how the method at that rate reads, e.g. "EViT(keep_rate=0.5)".
        removed: the share of all patches let go of.
        background: of those, the share that is background.
        random: the background share of all patches: what a random choice would give.
    """

    keep_rate: float
    method: str
    removed: float
    background: float
    random: float


def background_by_keep_rate(model: nn.Module, images: Tensor, masks: Tensor,
                            keep_rates: Sequence[float] = (0.3, 0.5, 0.7, 0.9), method: str | Method = "evit",
                            batch_size: int = 256, progress: bool = True) -> list[RemovedAtRate]:
    """The background share of the patches `method` lets go of, at each keep rate (rv.method_at).

    Args:
        model: a timm ViT; its own method is back in place afterwards.
        images: [B, 3, H, W] normalised; masks: [B, H, W] bool, the object's pixels.
        keep_rates: each in (0, 1].
        method: a registered name ("evit", "imagepiece", ...) or a method used as a template.
        progress: a progress bar over the keep rates (tqdm; hidden where output is not a terminal or notebook).
    """
    if not keep_rates:
        raise ValueError("keep_rates is empty; give at least one keep rate in (0, 1]")
    results = []
    for keep_rate in tqdm(list(keep_rates), desc="keep rates", disable=None if progress else True, leave=False):
        at_rate = method_at(method, model, keep_rate=keep_rate)
        with applied(model, at_rate):
            share = background_removed(model, images, masks, batch_size=batch_size)
        results.append(RemovedAtRate(float(keep_rate), describe_method(at_rate), share.removed, share.background,
                                     share.random))
    return results


def _check_images(images: Tensor, masks: Tensor | None, patch_size: int) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a batch [B, 3, H, W], got shape {tuple(getattr(images, 'shape', ()))}")
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(f"images of {height} x {width} do not split into {patch_size}-pixel patches")
    if masks is not None and tuple(masks.shape) != (images.shape[0], height, width):
        raise ValueError(f"masks must be [B, H, W] = {[images.shape[0], height, width]}, got {list(masks.shape)}")


def candidates(images: Tensor, masks: Tensor | None, where: str, patch_size: int = 16) -> Tensor:
    """[B, P] bool: the patches that may be masked, row by row. "object": touching an object pixel;
    "background": touching none; "any": all of them (masks may be None)."""
    if where not in WHERE:
        raise ValueError(f"where must be one of {', '.join(WHERE)}, got {where!r}")
    _check_images(images, masks, patch_size)
    rows, cols = images.shape[-2] // patch_size, images.shape[-1] // patch_size
    if where == "any":
        return torch.ones(images.shape[0], rows * cols, dtype=torch.bool)
    if masks is None:
        raise ValueError(f"where={where!r} needs the object masks [B, H, W]; only where='any' works without them")
    on_object = patch_mask(masks.cpu().bool(), patch_size).flatten(1)
    return on_object if where == "object" else ~on_object


def check_counts(counts: Sequence[int] | int, available: Tensor, where: str) -> list[int]:
    """Counts as a list of ints in 0..(the fewest candidate patches of any image), or a ValueError naming the
    image with the fewest and the valid range."""
    values = [counts] if isinstance(counts, numbers.Integral) else list(counts)
    if not values:
        raise ValueError("counts is empty; give at least one number of patches to mask")
    per_image = available.sum(dim=1)
    fewest, image = int(per_image.min()), int(per_image.argmin())
    for count in values:
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 0 <= count <= fewest:
            raise ValueError(f"each count must be an int in 0..{fewest} (image {image} has {fewest} {where} "
                             f"patches, the fewest of the batch), got {count!r} in {values}")
    return [int(count) for count in values]


def _order(available: Tensor, seed: int) -> Tensor:
    """[B, P] the candidate patches of each image in a seeded random order, the others last."""
    generator = torch.Generator().manual_seed(seed)
    keys = torch.rand(available.shape, generator=generator)
    return keys.masked_fill(~available, 2.0).argsort(dim=1)


def mask_patches(images: Tensor, masks: Tensor | None, where: str = "object", count: int = 1, seed: int = 0,
                 patch_size: int = 16, fill: str = "mean") -> Tensor:
    """A copy of `images` with `count` randomly chosen patches per image replaced.

    Args:
        images: [B, 3, H, W] normalised.
        masks: [B, H, W] bool, the object's pixels (None only for where="any").
        where: "object" (patches touching the object), "background" (touching none) or "any".
        count: patches masked per image, 0..the fewest candidates of any image.
        seed: the random choice; the same seed masks the same patches of image i however many images follow.
        fill: "mean": each image's mean colour; "zero": zeros in normalised space (the data set's mean colour).

    Returns:
        [B, 3, H, W], the masked images.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    available = candidates(images, masks, where, patch_size)
    (count,) = check_counts([count], available, where)
    return _masked(images, _order(available, seed)[:, :count], patch_size, fill)


def hide_patches(images: Tensor, chosen: Tensor, patch_size: int = 16, fill: str = "mean") -> Tensor:
    """A copy of `images` [B, 3, H, W] (normalised) with the patches `chosen` ([B, k] flat indices, row * cols + col)
    replaced by the fill ("mean": each image's mean colour; "zero": zeros in normalised space)."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    return _masked(images, chosen, patch_size, fill)


def _masked(images: Tensor, chosen: Tensor, patch_size: int, fill: str) -> Tensor:
    """images [B, 3, H, W] with the patches `chosen` ([B, k] flat indices) replaced by the fill."""
    batch, channels, height, width = images.shape
    rows, cols = height // patch_size, width // patch_size
    hit = torch.zeros(batch, rows * cols, dtype=torch.bool).scatter_(1, chosen, True)
    pixels = hit.view(batch, rows, 1, cols, 1).expand(batch, rows, patch_size, cols, patch_size)
    pixels = pixels.reshape(batch, 1, height, width).to(images.device)
    value = images.mean(dim=(2, 3), keepdim=True) if fill == "mean" else torch.zeros_like(images[:, :, :1, :1])
    return torch.where(pixels, value, images)


@contextmanager
def _using(model: nn.Module, method: Method | Sequence[Method] | None) -> Iterator[nn.Module]:
    """`model` with `method` applied (None: no method at all) inside the block; its own method back after."""
    if method is not None:
        with applied(model, method):
            yield model
        return
    previous = method_of(model)
    remove(model)
    try:
        yield model
    finally:
        if previous is not None:
            apply(model, previous)


def _accuracies(model: nn.Module, images: Tensor, labels: Tensor, order: Tensor, counts: list[int],
                batch_size: int, fill: str, patch_size: int, progress: bool, desc: str) -> list[float]:
    """Accuracy with the first `count` patches of `order` masked, per count."""
    return [accuracy(model, _masked(images, order[:, :count], patch_size, fill), labels, batch_size)
            for count in tqdm(counts, desc=desc, disable=None if progress else True, leave=False)]


@dataclass(frozen=True)
class MaskingEffect:
    """Accuracy with patches masked on the object and on the background.

    Attributes:
        counts: patches masked per image.
        object: accuracy (0..1) per count, masking patches that touch the object.
        background: accuracy per count, masking patches that touch none.
        baseline: accuracy with nothing masked.
        method: how the model's method reads ("untouched" for none).
        images: how many images.
    """

    counts: tuple[int, ...]
    object: tuple[float, ...]
    background: tuple[float, ...]
    baseline: float
    method: str
    images: int


@torch.no_grad()
def masking_effect(model: nn.Module, images: Tensor, labels: Tensor, masks: Tensor,
                   counts: Sequence[int] = (1, 2, 4), seed: int = 0, batch_size: int = 256, fill: str = "mean",
                   progress: bool = True) -> MaskingEffect:
    """What masking random patches on the object, against on the background, does to the accuracy of `model`
    (as it runs now, its method included).

    Args:
        images: [B, 3, H, W] normalised; labels: [B]; masks: [B, H, W] bool.
        counts: patches masked per image, each in 0..the fewest object (and background) patches of any image.
        seed, fill: as in mask_patches.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    patch_size = model.patch_embed.patch_size[0]
    on_object = candidates(images, masks, "object", patch_size)
    counts = check_counts(counts, on_object, "object")
    check_counts(counts, ~on_object, "background")
    common = dict(batch_size=batch_size, fill=fill, patch_size=patch_size, progress=progress)
    object_accuracy = _accuracies(model, images, labels, _order(on_object, seed), counts, desc="on the object",
                                  **common)
    background_accuracy = _accuracies(model, images, labels, _order(~on_object, seed), counts,
                                      desc="on the background", **common)
    return MaskingEffect(tuple(counts), tuple(object_accuracy), tuple(background_accuracy),
                         accuracy(model, images, labels, batch_size), describe_method(method_of(model)),
                         images.shape[0])


@dataclass(frozen=True)
class MaskedAccuracy:
    """Accuracy against the number of randomly masked patches, per method.

    Attributes:
        counts: patches masked per image.
        accuracy: {label: accuracy (0..1) per count}.
        where: where the patches were chosen ("any", "object" or "background").
        images: how many images.
    """

    counts: tuple[int, ...]
    accuracy: dict[str, tuple[float, ...]]
    where: str
    images: int


@torch.no_grad()
def masked_accuracy(model: nn.Module, methods: Mapping[str, Method | Sequence[Method] | None], images: Tensor,
                    labels: Tensor, counts: Sequence[int] = (0, 4, 8, 16), seed: int = 0, masks: Tensor | None = None,
                    where: str = "any", batch_size: int = 256, fill: str = "mean",
                    progress: bool = True) -> MaskedAccuracy:
    """Accuracy of `model` under each method against the number of randomly masked patches (the same patches
    for every method).

    Args:
        methods: {label: method}, e.g. {"EViT": rv.EViT(0.7), "untouched": None}; None runs the model with no
            method. The model's own method is back in place afterwards.
        images: [B, 3, H, W] normalised; labels: [B].
        counts: patches masked per image.
        masks, where: where="any" (default) masks any patches; "object" or "background" need masks.
        seed, fill: as in mask_patches.
    """
    if not methods:
        raise ValueError("methods is empty; give {label: method}, e.g. {'EViT': rv.EViT(0.7)}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be [{images.shape[0]}], one per image, got shape {tuple(labels.shape)}")
    patch_size = model.patch_embed.patch_size[0]
    available = candidates(images, masks, where, patch_size)
    counts = check_counts(counts, available, where)
    order = _order(available, seed)
    results = {}
    for label, method in tqdm(list(methods.items()), desc="methods", disable=None if progress else True,
                              leave=False):
        with _using(model, method):
            results[str(label)] = tuple(_accuracies(model, images, labels, order, counts, batch_size, fill,
                                                    patch_size, progress, desc=str(label)))
    return MaskedAccuracy(tuple(counts), results, where, images.shape[0])
