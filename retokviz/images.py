"""Images in and out of a model: reading image files, the preprocessing a timm model expects, a picture to draw on."""
from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor, nn


def load_image(path: str | os.PathLike) -> Image.Image:
    """An image file, decoded as an RGB PIL image (what torchvision's ImageFolder loads), with errors that name it.

    Raises:
        OSError: the file is missing, unreadable, truncated, corrupt, or not an image; the message names it.
    """
    with open(path, "rb") as file:                         # a missing or unreadable file: open's error names it
        try:
            return Image.open(file).convert("RGB")
        except (OSError, SyntaxError, ValueError) as error:  # PIL's decoders raise all three on bad data
            raise OSError(f"can't read the image {os.fspath(path)}: {error}. The file is corrupt, truncated or not "
                          "an image: replace or remove it") from error


def prepare(image: Image.Image | np.ndarray | str | Path, model: nn.Module,
            size: int | None = None) -> tuple[Tensor, np.ndarray]:
    """Resize (shorter side), centre-crop and normalise an image for `model`.

    Args:
        image: a PIL image, an array [H, W, 3] (uint8, or float in 0..1), or a path to an image file.
        model: the timm model; its pretrained_cfg gives the normalisation (ImageNet's if absent).
        size: the square side to crop to; None means the model's input size.

    Returns:
        ([1, 3, size, size] float tensor for the model, [size, size, 3] float array in 0..1 to draw on).
    """
    if size is not None and (not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1):
        raise ValueError(f"size must be None or an int >= 1, got {size!r}")
    if isinstance(image, (str, Path)):
        image = load_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"an image array must be [H, W, 3] (or RGBA), got shape {image.shape}")
        array = image[..., :3]
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        image = Image.fromarray(array)
    if size is None:
        size = model.patch_embed.img_size[0]
    image = image.convert("RGB")
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    picture = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    config = getattr(model, "pretrained_cfg", None) or {}
    mean = torch.tensor(config.get("mean", (0.485, 0.456, 0.406))).view(3, 1, 1)
    std = torch.tensor(config.get("std", (0.229, 0.224, 0.225))).view(3, 1, 1)
    tensor = (torch.from_numpy(picture).permute(2, 0, 1) - mean) / std
    return tensor.unsqueeze(0), picture


def normalize(pictures: Tensor) -> Tensor:
    """[..., 3, H, W] in 0..1 -> the same normalised with ImageNet's mean and std, as timm models expect."""
    mean, std = imagenet_mean_std(pictures.dtype)
    return (pictures - mean).div_(std)


def denormalize(images: Tensor) -> Tensor:
    """[..., 3, H, W] normalised with ImageNet's mean and std -> the pictures in 0..1, for display."""
    mean, std = imagenet_mean_std(images.dtype)
    return (images * std).add_(mean).clamp_(0.0, 1.0)


def imagenet_mean_std(dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """timm's IMAGENET_DEFAULT_MEAN and _STD as [3, 1, 1] tensors."""
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, dtype=dtype).view(3, 1, 1)
    return mean, torch.tensor(IMAGENET_DEFAULT_STD, dtype=dtype).view(3, 1, 1)


