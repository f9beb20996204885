"""The project's data, all of it offline: digits in clutter with true masks (`clutter`), scikit-image's bundled
photographs (`photos`), and image folders in ImageNet layout (`folders`).

    images, labels, masks = rv.data.make_clutter(2000, seed=0, split="train")   # [n, 3, 128, 128], [n], [n, 128, 128]
    foreground = rv.data.patch_mask(masks)                                    # [n, 8, 8]

The modules load scikit-learn, scikit-image and torchvision's folders when a name from them is first used, so
`import retokviz` stays light.
"""
from __future__ import annotations

import importlib

from retokviz.images import denormalize, normalize
from retokviz.trace.read import PATCH_SIZE, patch_mask

_WHERE = {
    "clutter": ("CLASSES", "SPLITS", "BACKGROUNDS", "Clutter", "ClutterDataset", "make_clutter", "render_clutter",
                "source_indices"),
    "photos": ("PHOTOS", "sample_photo", "sample_photos", "bundled_picture"),
    "folders": ("image_folder",),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str):
    if name in _WHERE:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF, *_WHERE])


__all__ = ["PATCH_SIZE", "denormalize", "normalize", "patch_mask", *_MODULE_OF]
