"""Images in and out of a model: reading image files, the preprocessing a timm model expects, a picture to draw on."""
from __future__ import annotations

import numbers
import os
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor, nn


def load_image(path: str | os.PathLike | BinaryIO, name: str | None = None) -> Image.Image:
    """An image file, decoded as the 8-bit RGB PIL image a person sees, with errors that name it.

    The one reader for image files: the image is turned upright by its EXIF orientation (ImageOps.exif_transpose)
    and every PIL mode is converted to 8-bit RGB (see `to_rgb` for the rules: transparency composited on white,
    16-bit greyscale divided by 257, float greyscale in 0..1 or 0..255). An 8-bit RGB file comes out as
    `Image.open(path).convert("RGB")` does, pixel for pixel.

    Args:
        path: a path, or an open binary file (e.g. io.BytesIO of an upload's bytes).
        name: what errors call the file; by default the path (or the file object's name).

    Raises:
        OSError: the file is missing, unreadable, truncated, corrupt, not an image, of a mode that can't be shown,
            or larger than Image.MAX_IMAGE_PIXELS (a decompression-bomb guard: refused before decoding, the message
            gives its pixel count and the limit); the message names it.
    """
    if name is None:
        name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(getattr(path, "name", "<image data>"))
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as file:                     # a missing or unreadable file: open's error names it
            return _read(file, name)
    return _read(path, name)


def _read(file: BinaryIO, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            image = Image.open(file)
            _refuse_bomb(caught, image.size, name)             # before a single pixel is decoded
            image.load()
            _refuse_bomb(caught, image.size, name)
        for warning in caught:                                 # the others, passed on
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return to_rgb(ImageOps.exif_transpose(image), name)
    except Image.DecompressionBombError as error:             # over twice the limit: PIL refuses in Image.open
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise OSError(_bomb_message(name, int(found.group(1)) if found else None)) from error
    except _Refused:
        raise
    except (OSError, SyntaxError, ValueError) as error:      # PIL's decoders raise all three on bad data
        raise OSError(f"can't read the image {name}: {error}. The file is corrupt, truncated or not "
                      "an image: replace or remove it") from error


class _Refused(OSError, ValueError):
    """An image refused on purpose (too large, or a mode or values it can't show); its message is complete."""


def _refuse_bomb(caught: list, size: tuple[int, int], name: str) -> None:
    if any(issubclass(warning.category, Image.DecompressionBombWarning) for warning in caught):
        raise _Refused(_bomb_message(name, size[0] * size[1], size))


def _bomb_message(name: str, pixels: int | None, size: tuple[int, int] | None = None) -> str:
    found = "" if pixels is None else f"{pixels} pixels" + (f" ({size[0]} x {size[1]})" if size else "") + ", "
    return (f"refused to read the image {name}: {found}over the limit of {Image.MAX_IMAGE_PIXELS} pixels "
            "(PIL's Image.MAX_IMAGE_PIXELS, a guard against decompression bombs). If you trust the file, raise "
            "PIL.Image.MAX_IMAGE_PIXELS, or shrink the image first")


def to_rgb(image: Image.Image, name: str = "the image") -> Image.Image:
    """`image` (any PIL mode) as the 8-bit RGB image a person sees. No EXIF rotation here: load_image does that.

    Rules:
        - RGB as it is; "1", "L", "P" (opaque), "CMYK", "YCbCr", "HSV": PIL's conversion to RGB.
        - Transparency ("RGBA", "RGBa", "LA", "La", "PA", "P" or "L"/"RGB" with a transparency entry) is
          composited on white, as a viewer shows it on a white page; the alpha channel is never simply dropped.
        - 16-bit greyscale ("I;16", "I;16B", ...): divided by 257 (65535 -> 255) and rounded.
        - 32-bit integer greyscale ("I"): scaled by its bit depth, 2**bits - 1 -> 255 (2**31 - 1 for 32 bits, the
          largest value of PIL's signed "I"), where bits is the file's (TIFF BitsPerSample; a PNG's is 16), else
          the smallest of 8, 16, 32 bits that holds its maximum. Negative values are refused.
        - float greyscale ("F"): values in 0..1 are taken as 0..1, otherwise values in 0..255 as 0..255; NaN,
          infinity, negative values or values above 255 are refused.

    Raises:
        OSError (also a ValueError): a mode that can't be converted, or values outside the ranges above; the
            message names `name`.
    """
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in ("1", "L", "P", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")                          # PIL turns the transparent entry into alpha
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return _on_white(image.convert("RGBA"))
    if image.mode.startswith("I") or image.mode.startswith("F"):
        return Image.fromarray(_grey_uint8(image, name), "L").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise _Refused(f"can't show the image {name}: its mode {image.mode!r} has no conversion to RGB ({error}); "
                       "save it as 8-bit RGB, greyscale or RGBA") from error


def _on_white(rgba: Image.Image) -> Image.Image:
    """An RGBA image composited on opaque white, as RGB (fully opaque pixels unchanged)."""
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def _grey_uint8(image: Image.Image, name: str) -> np.ndarray:
    """An "I;16*", "I" or "F" image's pixels as uint8, by the rules of to_rgb."""
    values = np.asarray(image)
    if image.mode.startswith("F"):
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            raise _Refused(f"can't show the image {name}: its float pixels hold NaN or infinity; accepted are "
                           "finite values in 0..1 or 0..255")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < 0 or high > 255:
            raise _Refused(f"can't show the image {name}: its float pixels are in {low:g}..{high:g}; accepted are "
                           "0..1 or 0..255")
        scale = 255.0 if high <= 1 else 1.0
        return (values * scale).round().astype(np.uint8)
    values = values.astype(np.int64)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0:
        raise _Refused(f"can't show the image {name}: its {image.mode!r} pixels are in {low}..{high}; accepted are "
                       "values >= 0 (scaled by their bit depth)")
    if image.mode.startswith("I;16"):
        bits = 16
    else:
        depth = image.tag_v2.get(258) if hasattr(image, "tag_v2") else None     # a TIFF's BitsPerSample
        depth = depth[0] if isinstance(depth, tuple) and depth else depth
        if isinstance(depth, int) and depth in (8, 16, 32):
            bits = depth
        elif image.format == "PNG":
            bits = 16
        else:
            bits = next(bits for bits in (8, 16, 32) if high <= 2 ** bits - 1)
    top = 2 ** 31 - 1 if bits == 32 else 2 ** bits - 1              # PIL's "I" is signed: 32 bits end at 2**31 - 1
    return (values * (255.0 / top)).round().clip(0, 255).astype(np.uint8)


def prepare(image: Image.Image | np.ndarray | str | Path, model: nn.Module,
            size: int | None = None) -> tuple[Tensor, np.ndarray]:
    """Resize (shorter side), centre-crop and normalise an image for `model`.

    Args:
        image: a path to an image file (read by load_image: EXIF rotation, every mode to RGB), a PIL image (any
            mode, converted by to_rgb, taken upright as given), or an array [H, W, 3], [H, W, 4] (alpha composited
            on white, as RGBA files are), [H, W] or [H, W, 1] (greyscale). Array values: uint8 as they are; uint16
            divided by 257; other integers must be in 0..255; floats (and bools) must be in 0..1. A float array
            with values above 1 (e.g. 0..255) is refused, not guessed at: divide it by 255. NaN is refused.
        model: the timm model; its pretrained_cfg gives the normalisation (ImageNet's if absent).
        size: the square side to crop to; None means the model's input size.

    Returns:
        ([1, 3, size, size] float tensor for the model, [size, size, 3] float array in 0..1 to draw on).

    Raises:
        ValueError: a bad size, or an array of another shape, dtype or range; the message gives what was found
            and what is accepted.
    """
    if size is not None and (not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1):
        raise ValueError(f"size must be None or an int >= 1, got {size!r}")
    if isinstance(image, (str, Path)):
        image = load_image(image)
    if isinstance(image, np.ndarray):
        image = _array_image(image)
    if size is None:
        size = model.patch_embed.img_size[0]
    image = to_rgb(image)
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


# A float array may overshoot 0..1 by less than half an 8-bit step (float rounding): it quantises the same.
_FLOAT_SLACK = 0.5 / 255


def _array_image(image: np.ndarray) -> Image.Image:
    """An image array as an 8-bit RGB PIL image, by the rules of prepare."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"an image array must be [H, W, 3], [H, W, 4] (RGBA) or [H, W] (greyscale), got shape "
                         f"{image.shape}")
    if image.size == 0:
        raise ValueError(f"an image array must hold pixels, got shape {image.shape}")
    kind = image.dtype.kind
    if kind == "b":
        image, kind = image.astype(np.float32), "f"
    if kind == "f":
        if np.isnan(image).any():
            raise ValueError("an image array holds NaN; accepted are floats in 0..1")
        low, high = float(image.min()), float(image.max())
        if not (low >= -_FLOAT_SLACK and high < 1 + _FLOAT_SLACK):
            hint = "; divide it by 255 (an 8-bit picture is uint8 in 0..255, or float in 0..1)" if high > 1 else ""
            raise ValueError(f"an image array of floats must be in 0..1, found values in {low:g}..{high:g}{hint}")
        if image.ndim == 3 and image.shape[2] == 4:              # composite on white in float, as RGBA files are
            alpha = np.clip(image[..., 3:], 0.0, 1.0)
            image = np.clip(image[..., :3], 0.0, 1.0) * alpha + (1.0 - alpha)
        array = image[..., :3] if image.ndim == 3 else image
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    elif image.dtype == np.uint8:
        array = image
    elif image.dtype == np.uint16:
        array = (image / 257.0).round().astype(np.uint8)
    elif kind in "iu":
        low, high = int(image.min()), int(image.max())
        if low < 0 or high > 255:
            raise ValueError(f"an image array of {image.dtype} must be in 0..255, found values in {low}..{high}; "
                             "a 16-bit picture is uint16 in 0..65535, a float one in 0..1")
        array = image.astype(np.uint8)
    else:
        raise ValueError(f"an image array must be uint8, uint16, other integers in 0..255 or floats in 0..1, got "
                         f"dtype {image.dtype}")
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.shape[2] == 4:
        return _on_white(Image.fromarray(np.ascontiguousarray(array), "RGBA"))
    return Image.fromarray(array)


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


