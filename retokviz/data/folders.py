"""Image folders in ImageNet layout (root/<split>/<class>/<image>), read with timm's transforms."""
from __future__ import annotations

import os
from pathlib import Path

from timm.data import create_transform
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from retokviz._util.checks import check_flag, int_at_least
from retokviz.images import load_image


def image_folder(root: str | os.PathLike, split: str = "train", image_size: int = 224, training: bool | None = None,
                 auto_augment: str | None = None) -> ImageFolder:
    """A folder of images in ImageNet layout (root/<split>/<class>/<image>, e.g. Imagenette) with timm's transforms.

    Args:
        root: the folder that holds the split folders.
        split: the split folder's name, e.g. "train" or "val".
        image_size: the square side the transform crops to, an int >= 1.
        training: timm's training transform (random resized crop, flip, colour jitter) or its evaluation one
            (resize and centre crop); None means training for split "train".
        auto_augment: timm's augmentation policy for training, e.g. "rand-m9-mstd0.5-inc1" for RandAugment.

    Returns:
        A torchvision ImageFolder of (image [3, image_size, image_size] normalised, class index); `.classes` names them.
        Reading an image that is corrupt or truncated raises OSError naming its file (see images.load_image).

    Raises:
        ValueError: an argument of the wrong type or out of its range.
        FileNotFoundError: the folder doesn't have the layout above.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be a path (str or os.PathLike), got {root!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be the name of a folder in root, e.g. 'train' or 'val', got {split!r}")
    image_size = int_at_least("image_size", image_size, 1)
    if training is not None:
        check_flag("training", training)
    if auto_augment is not None and not isinstance(auto_augment, str):
        raise ValueError(f"auto_augment must be None or a timm policy such as 'rand-m9-mstd0.5-inc1', "
                         f"got {auto_augment!r}")
    root = Path(root)
    layout = f"expected {root}/{split}/<class>/<image> with one of {', '.join(IMG_EXTENSIONS)}"
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}; {layout}")
    folder = root / split
    if not folder.is_dir():
        found = sorted(path.name for path in root.iterdir() if path.is_dir())
        raise FileNotFoundError(f"no split folder {folder} (found {found or 'none'}); {layout}")
    if not any(path.is_dir() for path in folder.iterdir()):
        raise FileNotFoundError(f"no class folders in {folder}; {layout}")
    if training is None:
        training = split == "train"
    if auto_augment is not None and not training:
        raise ValueError(f"auto_augment={auto_augment!r} applies to the training transform, not to split "
                         f"{split!r} with training=False")
    try:
        transform = create_transform(input_size=image_size, is_training=training, auto_augment=auto_augment)
    except AssertionError as error:   # timm asserts on a policy it doesn't know
        raise ValueError(f"auto_augment={auto_augment!r} is not a timm policy ({error}); e.g. "
                         "'rand-m9-mstd0.5-inc1' (RandAugment), 'augmix-m5-w4-d2' or 'v0'") from error
    try:
        return ImageFolder(folder, transform=transform, loader=load_image)
    except FileNotFoundError as error:   # a class folder without images
        raise FileNotFoundError(f"{error} in {folder}; {layout}") from error
