"""What the explorer is given, checked and put in one form: the models by name, and a gallery of images.

    models, note = resolve_models(None)                     # the bundled checkpoints, by name
    gallery = Gallery.from_images(images, masks, model)      # images [N, 3, H, W] normalised, masks [N, H, W]
    tensor, picture, mask = gallery.input_for(0, model)      # [1, 3, S, S], [S, S, 3], [S, S] or None

Every model is checked (`rv.UnsupportedModelError`) and every image batch refused unless [N, 3, H, W] before
anything is drawn; an image of another size than a model's is resized and centre-cropped (`rv.images.prepare`).
"""
from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from retokviz.models.checkpoints import checkpoints, load_checkpoint
from retokviz.images import prepare
from retokviz.methods.tome import ToMe
from retokviz.patch import check_model, model_name

# How many generated test images the offline explorer shows.
DEFAULT_IMAGES = 8


def check_supported(model: nn.Module) -> nn.Module:
    """`model` if retokviz can patch it (a timm VisionTransformer of standard blocks), else
    rv.UnsupportedModelError, the same as rv.apply raises."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"the explorer takes a timm ViT (an nn.Module), a timm model name or a bundled checkpoint "
                        f"name, got {type(model).__name__}")
    check_model(model, ToMe(r=0))   # the architecture only: ToMe needs no class token, r=0 reduces nothing
    return model


def load_bundled(name: str) -> nn.Module:
    """A bundled checkpoint (rv.load_checkpoint: eval mode, its method applied, its config naming the ImageNet
    normalisation it was trained with, so that pictures of your own are prepared as the training images were)."""
    return load_checkpoint(name)


def bundled_models() -> dict[str, nn.Module]:
    """The bundled showcase set (rv.bundled), by name, in eval mode with its methods applied (see load_bundled)."""
    from retokviz.models.bundled import DEFAULT_SET, SETS

    return {name: load_bundled(name) for name in SETS[DEFAULT_SET].values()}


def _from_name(name: str, weights: str | None) -> tuple[dict[str, nn.Module], str | None]:
    """A bundled checkpoint's name or file, or a timm model name (with pretrained weights where they can be had,
    else the bundled models and a one-line note saying so)."""
    import timm

    bundled = {info.name for info in checkpoints()}
    if name in bundled or name.endswith(".safetensors"):
        return {Path(name).name.removesuffix(".safetensors"): load_bundled(name)}, None
    if not timm.is_model(name.split(".")[0]):
        raise ValueError(f"{name!r} is neither a bundled checkpoint ({', '.join(sorted(bundled))}) nor a timm model "
                         "name (e.g. 'deit_small_patch16_224')")
    with torch.device("meta"):   # the architecture only: refuse a resnet before any weights are looked for
        check_supported(timm.create_model(name, pretrained=False))
    from retokviz.models.weights import WeightsUnavailable, load_pretrained

    try:
        model, _ = load_pretrained(name, weights)
    except WeightsUnavailable as error:
        note = f"{error}; showing the bundled clutter models instead"
        print(note, file=sys.stderr)
        return bundled_models(), note
    return {name: check_supported(model)}, None


def resolve_models(model: Any = None, weights: str | None = None) -> tuple[dict[str, nn.Module], str | None]:
    """The models to explore, by name, and a note to show (e.g. that pretrained weights could not be had).

    Args:
        model: None (every bundled checkpoint), an nn.Module, a name (a bundled checkpoint, a .safetensors file
            or a timm model name), or a mapping name -> either / a sequence of either.
        weights: a weights file for a timm model name.

    Raises:
        UnsupportedModelError: a model that is not a supported timm ViT.
        ValueError: a name that is neither a checkpoint nor a timm model; an empty collection.
    """
    if model is None:
        return bundled_models(), None
    if isinstance(model, nn.Module):
        return {model_name(model).split(" (")[0]: check_supported(model)}, None
    if isinstance(model, (str, Path)):
        return _from_name(str(model), weights)
    items = list(model.items()) if isinstance(model, Mapping) else [(None, m) for m in model]
    if not items:
        raise ValueError("no models given; pass a model, a name, or None for the bundled checkpoints")
    models: dict[str, nn.Module] = {}
    notes = []
    for key, item in items:
        found, note = resolve_models(item, weights)
        notes += [note] if note else []
        if key is not None and len(found) == 1:
            found = {str(key): next(iter(found.values()))}
        models.update(found)
    return models, "; ".join(notes) or None


def model_size(model: nn.Module) -> tuple[int, int]:
    """(height, width) of the images `model` was made for."""
    size = model.patch_embed.img_size
    return (size, size) if isinstance(size, int) else tuple(size)


def normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the model's inputs are normalised with (ImageNet's where its config says nothing)."""
    config = getattr(model, "pretrained_cfg", None) or {}
    return tuple(config.get("mean", (0.485, 0.456, 0.406))), tuple(config.get("std", (0.229, 0.224, 0.225)))


def denormalise(images: Tensor, model: nn.Module) -> np.ndarray:
    """[N, 3, H, W] normalised for `model` -> [N, H, W, 3] float32 pictures in 0..1."""
    mean, std = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1) for v in normalisation(model))
    return (images.float() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float32)


def check_images(images: Any) -> Tensor:
    """`images` as a float tensor [N, 3, H, W], or a ValueError naming the expected shape."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a tensor [N, 3, H, W] (normalised as the model expects), got "
                        f"{type(images).__name__}; for a picture file use rv.images.prepare")
    if images.dim() == 3 and images.shape[0] == 3:
        raise ValueError(f"images must be a batch [N, 3, H, W], got one image of shape {list(images.shape)}; "
                         "add a batch dimension (images[None])")
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images must be [N, 3, H, W] (N >= 1, 3 colour channels, normalised), got shape "
                         f"{list(images.shape)}")
    return images.detach().float().cpu()


@dataclass
class Entry:
    """One image of the gallery.

    Attributes:
        picture: [H, W, 3] float32 in 0..1, as given (before any resizing).
        tensor: [3, H, W] the normalised tensor as given, or None (an uploaded picture).
        norm: the (mean, std) `tensor` is normalised with.
        mask: [H, W] bool, the object's pixels, or None.
        label: the true class index, or None.
        name: how the image is listed.
        note: how the picture was made to fit the model (a picture of your own), said beside it; "" if nothing.
    """

    picture: np.ndarray
    tensor: Tensor | None
    norm: tuple | None
    mask: np.ndarray | None
    label: int | None
    name: str
    note: str = ""


@dataclass
class Gallery:
    """The explorer's images, and each one as a given model takes it (resized where its size differs)."""

    entries: list[Entry]
    _inputs: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def from_images(cls, images: Any, masks: Any, model: nn.Module, labels: Any = None,
                    names: Sequence[str] | None = None) -> "Gallery":
        """A gallery of images [N, 3, H, W] normalised for `model`, with masks [N, H, W] and labels [N] if known.

        Raises:
            ValueError: images not [N, 3, H, W]; masks or labels that don't match them.
        """
        images = check_images(images)
        count, _, height, width = images.shape
        if masks is not None:
            masks = torch.as_tensor(np.asarray(masks) if not isinstance(masks, Tensor) else masks).bool().cpu()
            if tuple(masks.shape) != (count, height, width):
                raise ValueError(f"masks must be [N, H, W] = {[count, height, width]}, matching the images, got "
                                 f"shape {list(masks.shape)}")
        if labels is not None:
            labels = [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
            if len(labels) != count:
                raise ValueError(f"labels must be [N] = [{count}], one per image, got {len(labels)}")
        pictures = denormalise(images, model)
        norm = normalisation(model)
        entries = [
            Entry(pictures[i], images[i], norm, None if masks is None else masks[i].numpy(),
                  None if labels is None else labels[i], names[i] if names else f"image {i}")
            for i in range(count)
        ]
        return cls(entries)

    @classmethod
    def from_pictures(cls, pictures: Sequence[np.ndarray], names: Sequence[str]) -> "Gallery":
        """A gallery of pictures ([H, W, 3], uint8 or float in 0..1), prepared for each model as it needs."""
        entries = [Entry(np.asarray(p, dtype=np.float32) / (255.0 if np.asarray(p).dtype == np.uint8 else 1.0),
                         None, None, None, None, name) for p, name in zip(pictures, names)]
        return cls(entries)

    def add_picture(self, picture: np.ndarray, name: str, note: str = "") -> int:
        """Add a picture ([H, W, 3] float in 0..1, e.g. from rv.images.prepare); returns its index."""
        self.entries.append(Entry(np.asarray(picture, dtype=np.float32), None, None, None, None, name, note))
        return len(self.entries) - 1

    def input_for(self, index: int, model: nn.Module) -> tuple[Tensor, np.ndarray, np.ndarray | None]:
        """Image `index` as `model` takes it: ([1, 3, S, S] normalised, [S, S, 3] picture in 0..1, [S, S] mask
        or None). The given tensor itself where size and normalisation match, else resized by rv.images.prepare
        (the mask resized and cropped alike)."""
        size, norm = model_size(model), normalisation(model)
        key = (index, size, norm)
        if key not in self._inputs:
            entry = self.entries[index]
            if entry.tensor is not None and tuple(entry.tensor.shape[-2:]) == size and entry.norm == norm:
                self._inputs[key] = (entry.tensor[None], entry.picture, entry.mask)
            else:
                self._inputs[key] = _resized(entry, model, size)
        return self._inputs[key]


def _resized(entry: Entry, model: nn.Module, size: tuple[int, int]) -> tuple[Tensor, np.ndarray, np.ndarray | None]:
    if size[0] != size[1]:
        raise ValueError(f"{model_name(model)} takes {size[0]} x {size[1]} images; the explorer resizes to square "
                         "models only: pass images of exactly that size")
    tensor, picture = prepare(entry.picture, model)
    mask = None
    if entry.mask is not None:   # the same resize and centre crop, on the mask drawn as a grey picture
        _, drawn = prepare(np.repeat(entry.mask[..., None].astype(np.float32), 3, axis=2), model)
        mask = drawn[..., 0] > 0.5
    return tensor, picture, mask
