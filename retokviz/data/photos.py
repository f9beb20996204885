"""scikit-image's bundled photographs and textures: read offline, never downloaded."""
from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from retokviz._util.checks import int_at_least
from retokviz.images import normalize

# scikit-image's bundled pictures, by name (a function of skimage.data, or one of its pictures); scikit-image
# 0.26's wheel holds them all, so none is downloaded. scikit-image loads on the first picture asked for.
_PICTURES = {
    "astronaut": "astronaut",
    "brick": "brick",
    "chelsea": "chelsea",
    "coffee": "coffee",
    "grass": "grass",
    "gravel": "gravel",
    "motorcycle": "stereo_motorcycle",
    "rocket": "rocket",
}
PHOTOS = ("astronaut", "chelsea", "coffee", "motorcycle", "rocket")


@functools.cache
def bundled_picture(name: str) -> np.ndarray:
    """A bundled picture, [H, W] or [H, W, 3] uint8; a clear error where this scikit-image would download it."""
    import skimage
    import skimage.data

    try:
        picture = getattr(skimage.data, _PICTURES[name])()
        return picture[0] if name == "motorcycle" else picture   # the stereo pair's left image
    except (ModuleNotFoundError, OSError) as error:   # no pooch, or no network: it is not in this wheel
        raise RuntimeError(f"scikit-image {skimage.__version__} does not bundle {name!r} and would download it; "
                           "retokviz never downloads (scikit-image 0.26 bundles all of them)") from error


def sample_photo(name: str, size: int = 224) -> tuple[Tensor, np.ndarray]:
    """One of scikit-image's bundled photographs (PHOTOS), centre-cropped to a square and resized.

    Args:
        name: one of PHOTOS.
        size: the square side in pixels, an int >= 1.

    Returns:
        ([3, size, size] float32 normalised with ImageNet's mean and std, [size, size, 3] uint8 picture).
    """
    if not isinstance(name, str) or name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; the bundled ones are {', '.join(PHOTOS)}")
    size = int_at_least("size", size, 1)
    array = bundled_picture(name)
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(array[top:top + side, left:left + side]).resize((size, size), Image.Resampling.BICUBIC)
    picture = np.array(square)
    return normalize(torch.from_numpy(picture).permute(2, 0, 1).float() / 255.0), picture


def sample_photos(size: int = 224) -> dict[str, Tensor]:
    """Every bundled photograph by name, each [3, size, size] normalised (see sample_photo)."""
    return {name: sample_photo(name, size)[0] for name in PHOTOS}


