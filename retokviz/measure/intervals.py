"""How sure a figure measured on N images is: percentile bootstrap intervals that resample the images.

    low, high = rv.intervals.bootstrap(rv.intervals.share, correct)     # top-1 of correct [B] bool, 95 % interval

A figure measured on 1000 test images is one draw: another 1000 images of the same generator would give another
figure. The bootstrap estimates how far apart such draws fall by drawing B images with replacement from the B at
hand, `resamples` times, and computing the figure on each draw; the interval holds the middle `level` of them.
Several per-image tensors passed together are resampled with the same images (paired), so the difference of two
models on the same images has the interval of a paired comparison, narrower than two separate intervals suggest.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

RESAMPLES = 2000
LEVEL = 0.95


def bootstrap(statistic: Callable[..., Tensor], *per_image: Tensor, resamples: int = RESAMPLES,
              level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of `statistic` over the images.

    Args:
        statistic: takes the resampled tensors, each [R, B, ...] (R draws of B images), and returns [R]: the
            figure on each draw. It must compute along dim 1 and beyond, never across the draws.
        per_image: one or more tensors [B, ...] whose first dimension is the image, all with the same B >= 1;
            they are resampled together.
        resamples: how many draws R, >= 100.
        level: the share of the draws the interval holds, in (0, 1).
        seed: the draws' seed (the same seed, the same interval).

    Returns:
        (low, high), the level/2 and 1 - level/2 quantiles of the figure over the draws (NaN draws, such as a
        share of nothing, are left out; (nan, nan) when every draw is NaN).

    Raises:
        ValueError: no tensor, tensors of different B or with no image, resamples < 100, level outside (0, 1),
            or a statistic that does not return one value per draw.
    """
    if not per_image:
        raise ValueError("bootstrap needs at least one per-image tensor [B, ...]")
    count = per_image[0].shape[0] if per_image[0].dim() else 0
    if count < 1 or any(t.dim() == 0 or t.shape[0] != count for t in per_image):
        raise ValueError(f"per-image tensors must share a first dimension B >= 1, got shapes "
                         f"{[tuple(t.shape) for t in per_image]}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples must be an int >= 100 (fewer draws make a noisy interval), got {resamples!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level!r}")
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(count, (resamples, count), generator=generator)                # [R, B]
    values = statistic(*(t.cpu()[draws] for t in per_image))
    if values.shape != (resamples,):
        raise ValueError(f"the statistic must return one value per draw, shape ({resamples},), got "
                         f"{tuple(values.shape)}")
    values = values.double()
    values = values[~values.isnan()]
    if not values.numel():
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1.0 - tail], dtype=torch.float64))
    return float(low), float(high)


def share(correct: Tensor) -> Tensor:
    """The share of True per draw: correct [R, B] bool -> [R] (top-1 accuracy of resampled images)."""
    return correct.double().mean(-1)


def paired_difference(first: Tensor, second: Tensor) -> Tensor:
    """The share of True in `first` minus that in `second`, per draw, on the same images: [R, B] x 2 -> [R]."""
    return share(first) - share(second)
