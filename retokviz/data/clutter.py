"""The project's data, all of it offline: digits in clutter with true masks, sample photographs, image folders.

Clutter is the data set the bundled models are trained on and the one that turns "the method dropped the
background" into a number. Each image is a handwritten digit from scikit-learn's bundled set (1797 images of
8 x 8 pixels, 10 classes), upscaled smoothly, tilted a little and drawn in one flat colour at a random place and
size, over a random crop of one of scikit-image's bundled textures (brick, grass, gravel, tinted) or photographs
(astronaut, chelsea, coffee, rocket), among a few strokes, rings and squares of similar colours that are not digits.
The mask is exactly the pixels the digit colours. At the default 128 x 128 (an 8 x 8 grid of 16-pixel patches) the
digit's frame spans 40-56 % of the side and the digit touches about a fifth of the patches, so most tokens are
background that a good reduction method may drop. Train and test draw their digits from disjoint parts of the 1797
(70 % and 30 %), and the split also changes every other random choice. Everything is decided by (seed, split, image
index), so a larger n extends a smaller one and the same arguments give the same tensors, bit for bit. Images come
normalised with ImageNet's mean and std, as timm models expect; `denormalize` undoes it for display.

    images, labels, masks = rv.data.make_clutter(2000, seed=0, split="train")   # [n, 3, 128, 128], [n], [n, 128, 128]
    foreground = rv.data.patch_mask(masks)                                    # [n, 8, 8]
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from retokviz._util.checks import check_flag, int_at_least
from retokviz.data.photos import PHOTOS, bundled_picture
from retokviz.images import imagenet_mean_std
from retokviz.trace.read import PATCH_SIZE

CLASSES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
SPLITS = ("train", "test")

BACKGROUNDS = ("brick", "grass", "gravel", "astronaut", "chelsea", "coffee", "rocket")

# The look of a clutter image. Lengths are fractions of the image side, so every image_size looks alike.
_TEST_FRACTION = 0.3
_DIGIT_SIDE = (0.4, 0.56)         # the digit's 8 x 8 frame; smaller digits get hard to read at 128 pixels
_DIGIT_TILT = math.radians(15)
_THRESHOLD = 0.45                 # upscaled ink (0..1) above which a pixel is the digit's
_CROP_ZOOM = (1.0, 2.0)           # background crop side / image side (capped by the picture's size)
_CONTRAST = (0.45, 0.85)          # backgrounds are flattened towards their mean so the digit stays readable
_DISTRACTORS = (2, 4)             # how many shapes, at most _DISTRACTORS[1]
_SHAPE_SIZE = (0.07, 0.14)        # arm length of a stroke, radius of a ring or of a square's corners
_SHAPE_WIDTH = (0.04, 0.07)       # line width, about a digit's stroke
_STROKE, _RING, _SQUARE = 0, 1, 2
_LUMA = torch.tensor([0.299, 0.587, 0.114])
_CHUNK = 64                       # images drawn at once: bounds the temporaries; the result does not depend on it


def _check_image_size(image_size: object) -> int:
    """A clutter image side: an int, a multiple of PATCH_SIZE and >= 64."""
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 64 \
            or image_size % PATCH_SIZE:
        raise ValueError(f"image_size must be an int, a multiple of {PATCH_SIZE} and >= 64, got {image_size!r}")
    return int(image_size)


@functools.cache
def _digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's digits: ([1797, 1, 8, 8] ink in 0..1, [1797] long labels)."""
    from sklearn.datasets import load_digits   # scikit-learn loads when the first clutter image is drawn

    digits = load_digits()
    ink = torch.from_numpy(digits.images / 16.0).float().unsqueeze(1)
    return ink, torch.from_numpy(digits.target).long()


@functools.cache
def _backgrounds() -> tuple[Tensor, ...]:
    """The background pictures, in BACKGROUNDS order, each [3, H, W] float in 0..1."""
    pictures = []
    for name in BACKGROUNDS:
        array = torch.from_numpy(bundled_picture(name)).float() / 255.0
        pictures.append(array.repeat(3, 1, 1) if array.ndim == 2 else array.permute(2, 0, 1).contiguous())
    return tuple(pictures)


def source_indices(split: str) -> np.ndarray:
    """The indices into sklearn.datasets.load_digits() that a split draws its digits from, sorted.

    A fixed permutation puts 30 % of the 1797 digits in "test" and the rest in "train"; the two never share one.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    order = np.random.default_rng(0).permutation(len(_digits()[1]))
    test = round(_TEST_FRACTION * len(order))
    return np.sort(order[:test] if split == "test" else order[test:])


@dataclass
class Clutter:
    """Clutter images in layers, before normalisation; `pictures()` puts them together.

    Attributes:
        backdrop: [n, 3, H, W] in 0..1, the background with its distractors, without the digit.
        colours: [n, 3] in 0..1, the colour of each digit.
        masks: [n, H, W] bool, the pixels of each digit.
        labels: [n] long, each digit's class.
        sources: [n] long, each digit's index in sklearn.datasets.load_digits().
    """

    backdrop: Tensor
    colours: Tensor
    masks: Tensor
    labels: Tensor
    sources: Tensor

    def pictures(self) -> Tensor:
        """[n, 3, H, W] in 0..1: the digit's colour on its mask, the backdrop elsewhere."""
        return torch.where(self.masks[:, None], self.colours[:, :, None, None], self.backdrop)


def render_clutter(n: int, seed: int, split: str = "test", image_size: int = 128, progress: bool = False) -> Clutter:
    """Generate n clutter images in layers (see the module docstring); make_clutter normalises them.

    Args:
        n: how many images, an int >= 1.
        seed: an int >= 0; image i depends only on (seed, split, i, image_size).
        split: "train" or "test"; they use disjoint digits (see source_indices).
        image_size: the square side in pixels, an int, a multiple of 16 and >= 64.
        progress: show a progress bar (about 1.5 ms an image at 128 pixels on one CPU core).

    Raises:
        ValueError: an argument out of its range (a bool is not an int); the message names it and the range.
    """
    n, seed = int_at_least("n", n, 1), int_at_least("seed", seed, 0)
    image_size = _check_image_size(image_size)
    check_flag("progress", progress)
    sources = source_indices(split)
    scenes = [_sample_scene(np.random.default_rng([seed, SPLITS.index(split), index]), sources, image_size)
              for index in range(n)]
    clutter = Clutter(torch.empty(n, 3, image_size, image_size), torch.empty(n, 3),
                      torch.empty(n, image_size, image_size, dtype=torch.bool), torch.empty(n, dtype=torch.long),
                      torch.empty(n, dtype=torch.long))
    for start in tqdm(range(0, n, _CHUNK), desc="generating", disable=not progress, leave=False):
        chunk = scenes[start:start + _CHUNK]
        drawn = _render({key: torch.tensor(np.array([scene[key] for scene in chunk])) for key in chunk[0]}, image_size)
        for whole, part in zip(vars(clutter).values(), drawn):
            whole[start:start + len(chunk)] = part
    return clutter


def make_clutter(n: int, seed: int, split: str = "test", image_size: int = 128,
                 progress: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """n clutter images ready for a model (see render_clutter for the arguments and the errors).

    Returns:
        (images [n, 3, H, W] float32 normalised with ImageNet's mean and std, labels [n] long, masks [n, H, W] bool).
    """
    clutter = render_clutter(n, seed, split, image_size, progress)
    # clutter.pictures() normalised, but drawn and normalised in place: at thousands of images a copy is gigabytes.
    images = torch.where(clutter.masks[:, None], clutter.colours[:, :, None, None], clutter.backdrop,
                         out=clutter.backdrop)
    mean, std = imagenet_mean_std(images.dtype)
    return images.sub_(mean).div_(std), clutter.labels, clutter.masks


class ClutterDataset(Dataset):
    """make_clutter generated once into memory, as a Dataset of (image [3, H, W], label) pairs (see render_clutter
    for the arguments and the errors).

    Attributes:
        images: [n, 3, H, W] normalised; labels: [n] long; masks: [n, H, W] bool.
        classes: the class names, label i is classes[i] (as in torchvision's ImageFolder); known without an instance.
    """

    classes = list(CLASSES)

    def __init__(self, n: int, seed: int, split: str = "train", image_size: int = 128, progress: bool = False):
        self.images, self.labels, self.masks = make_clutter(n, seed, split, image_size, progress)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]


def _sample_scene(rng: np.random.Generator, sources: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Every random choice for one clutter image, as arrays that stack into a batch for _render."""
    # The digit: its 8 x 8 frame is `side` pixels wide, tilted by `tilt`, and fits in the image.
    side = rng.uniform(*_DIGIT_SIDE) * size
    tilt = rng.uniform(-_DIGIT_TILT, _DIGIT_TILT)
    reach = side / 2 * (abs(math.cos(tilt)) + abs(math.sin(tilt)))
    centre = rng.uniform(reach, size - reach, 2)
    cos, sin = math.cos(tilt), math.sin(tilt)
    rotation_t = np.array([[cos, sin], [-sin, cos]])            # output pixels -> the digit's frame
    digit_theta = np.concatenate([rotation_t * size / side, (rotation_t @ (size / 2 - centre) * 2 / side)[:, None]], 1)

    # The background: a square crop, flipped or not, of one picture, tinted (textures strongly) and flattened.
    background = rng.integers(len(BACKGROUNDS))
    _, height, width = _backgrounds()[background].shape
    crop = min(height, width, size * rng.uniform(*_CROP_ZOOM))
    left, top = rng.uniform(0, width - crop), rng.uniform(0, height - crop)
    flip_x, flip_y = rng.choice([-1.0, 1.0], 2)
    crop_theta = np.array([[flip_x * crop / width, 0, (2 * left + crop) / width - 1],
                           [0, flip_y * crop / height, (2 * top + crop) / height - 1]])
    is_photo = BACKGROUNDS[background] in PHOTOS
    tint = rng.uniform(0.8, 1.2, 3) if is_photo else rng.uniform(0.3, 1.0, 3)

    # The distractors, each placed clear of the digit's frame (dropped if 20 tries find no room).
    count = rng.integers(_DISTRACTORS[0], _DISTRACTORS[1] + 1)
    shapes = np.zeros((_DISTRACTORS[1], 8))                      # present, kind, x, y, size, angle, bend, width
    for slot in range(count):
        radius, line = rng.uniform(*_SHAPE_SIZE) * size, rng.uniform(*_SHAPE_WIDTH) * size
        for _ in range(20):
            place = rng.uniform(0, size, 2)
            if np.abs(place - centre).max() > reach + radius + line:
                kind = rng.choice([_STROKE, _STROKE, _RING, _SQUARE])
                shapes[slot] = (1, kind, *place, radius, rng.uniform(0, 2 * np.pi), rng.uniform(0.35, 1) * np.pi, line)
                break
    return {
        "source": rng.choice(sources),
        "digit_theta": digit_theta,
        "background": background,
        "crop_theta": crop_theta,
        "tint": tint,
        "contrast": rng.uniform(*_CONTRAST),
        "hue": rng.random(3),                                    # the digit's colour before its lightness is set
        "shade": rng.random(),                                   # where in the light or dark band its lightness falls
        "shapes": shapes,
        "jitter": rng.normal(0, 0.12, (_DISTRACTORS[1], 3)),     # each distractor's colour minus the digit's
    }


def _render(scene: dict[str, Tensor], size: int) -> tuple[Tensor, ...]:
    """Draw k scenes of _sample_scene, stacked.

    Returns:
        The fields of Clutter: backdrop [k, 3, S, S], colours [k, 3], masks [k, S, S], labels [k], sources [k].
    """
    k = len(scene["source"])
    backdrop = torch.empty(k, 3, size, size)
    grid = F.affine_grid(scene["crop_theta"].float(), [k, 1, size, size], align_corners=False)   # [k, S, S, 2]
    for index, picture in enumerate(_backgrounds()):
        chosen = (scene["background"] == index).nonzero().flatten()
        if len(chosen):   # one grid_sample for all crops of this picture: their grids stacked along the height
            crops = F.grid_sample(picture[None], grid[chosen].reshape(1, -1, size, 2), align_corners=False,
                                  padding_mode="border")                              # [1, 3, m * S, S]
            backdrop[chosen] = crops.reshape(3, len(chosen), size, size).transpose(0, 1)
    backdrop *= scene["tint"].float()[:, :, None, None]                                # in place: memory is the cost
    mean = backdrop.mean(dim=(2, 3), keepdim=True)
    backdrop.sub_(mean).mul_(scene["contrast"].float()[:, None, None, None]).add_(mean).clamp_(0, 1)

    ink, labels = _digits()
    grid = F.affine_grid(scene["digit_theta"].float(), [k, 1, size, size], align_corners=False)
    masks = F.grid_sample(ink[scene["source"]], grid, mode="bicubic", align_corners=False)[:, 0] > _THRESHOLD

    # Light digits on dark surroundings and dark ones on light: lightness in 0.72..0.95 or 0.05..0.28.
    lightness = torch.einsum("kchw,c->khw", backdrop, _LUMA)
    under = (lightness * masks).sum(dim=(1, 2)) / masks.sum(dim=(1, 2)).clamp(min=1)
    target = torch.where(under < 0.5, 0.72, 0.05) + 0.23 * scene["shade"].float()
    hue = scene["hue"].float()
    colours = (hue - (hue @ _LUMA)[:, None] + target[:, None]).clamp(0, 1)

    for slot in range(scene["shapes"].shape[1]):
        colour = (colours + scene["jitter"][:, slot].float()).clamp(0, 1)
        _draw_shape(backdrop, scene["shapes"][:, slot].float(), colour)
    return backdrop, colours, masks, labels[scene["source"]], scene["source"].long()


def _draw_shape(backdrop: Tensor, shape: Tensor, colour: Tensor) -> None:
    """Paint one distractor per image into backdrop [k, 3, S, S], in place.

    Args:
        shape: [k, 8] present, kind, x, y, size, angle, bend, width (see _sample_scene).
        colour: [k, 3] in 0..1.
    """
    k, _, size, _ = backdrop.shape
    present, kind, x, y, radius, angle, bend, width = (v[:, None, None] for v in shape.unbind(1))
    # Only a square window around each shape can change, one that lies inside the image: L x L, not S x S, pixels.
    side = min(size, math.ceil((2 * _SHAPE_SIZE[1] + _SHAPE_WIDTH[1]) * size) + 2)
    offsets = torch.arange(side)
    left, top = ((v.flatten().floor().long() - side // 2).clamp(0, size - side) for v in (x, y))
    rows, cols = (top[:, None] + offsets)[:, :, None], (left[:, None] + offsets)[:, None, :]   # [k, L, 1], [k, 1, L]
    distance = _shape_distance(kind, cols + 0.5 - x, rows + 0.5 - y, radius, angle, bend)      # [k, L, L]
    alpha = torch.where(present > 0, (width / 2 + 0.5 - distance).clamp(0, 1), 0.0)[..., None]  # [k, L, L, 1]
    images = torch.arange(k)[:, None, None]
    window = backdrop[images, :, rows, cols]                                                   # [k, L, L, 3]
    backdrop[images, :, rows, cols] = window * (1 - alpha) + colour[:, None, None, :] * alpha


def _shape_distance(kind: Tensor, dx: Tensor, dy: Tensor, radius: Tensor, angle: Tensor, bend: Tensor) -> Tensor:
    """[k, L, L] distance from each pixel to a shape's centre line: a bent stroke, a ring or a square outline.

    A stroke has two arms of length `radius` from its centre, `bend` radians apart (pi: a straight bar).
    """
    u = dx * torch.cos(angle) + dy * torch.sin(angle)
    v = -dx * torch.sin(angle) + dy * torch.cos(angle)
    ring = ((u**2 + v**2).sqrt() - radius).abs()
    square = (torch.maximum(u.abs(), v.abs()) - radius / math.sqrt(2)).abs()   # corners on the ring
    along = (u / radius).clamp(0, 1)
    first = ((u - along * radius) ** 2 + v**2).sqrt()
    cos, sin = torch.cos(bend), torch.sin(bend)
    along = ((u * cos + v * sin) / radius).clamp(0, 1)
    second = ((u - along * radius * cos) ** 2 + (v - along * radius * sin) ** 2).sqrt()
    stroke = torch.minimum(first, second)
    return torch.where(kind == _STROKE, stroke, torch.where(kind == _RING, ring, square))


