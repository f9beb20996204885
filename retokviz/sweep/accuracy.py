"""Top-1 accuracy for the sweep's rows: a checkpoint on the generated clutter test set, a timm model on an image
folder's val/ split (a fixed random subset of `test_size` images, or all of them), or none (no data).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from retokviz.data.clutter import make_clutter
from retokviz.measure.metrics import correct_in
from retokviz.data.folders import image_folder
from retokviz.sweep.config import SweepConfig
from retokviz.sweep.models import CHECKPOINT, Source

EVAL_BATCH = 256


@dataclass
class TestSet:
    """Labelled images for accuracy, read batch by batch.

    Attributes:
        description: what the table's `data` column says, e.g. "clutter test, 64 images, seed 0".
        images, labels: the whole set in memory (clutter), or None.
        loader: batches from an image folder, or None.
    """

    description: str
    images: Tensor | None = None
    labels: Tensor | None = None
    loader: DataLoader | None = None

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.loader is not None:
            yield from self.loader
            return
        for start in range(0, len(self.labels), EVAL_BATCH):
            yield self.images[start:start + EVAL_BATCH], self.labels[start:start + EVAL_BATCH]


def test_set(source: Source, config: SweepConfig, img_size: int) -> TestSet | None:
    """The test set for `source`'s accuracy at `img_size`, or None where there is none (a timm model, no data)."""
    if source.kind == CHECKPOINT:
        count = config.test_size_for(CHECKPOINT)
        images, labels, _ = make_clutter(count, config.seed, split="test", image_size=img_size)
        return TestSet(f"clutter test, {count} images, seed {config.seed}", images, labels)
    if config.data is None:
        return None
    folder = image_folder(config.data, split="val", image_size=img_size, training=False)
    count = config.test_size_for("timm")
    subset = count is not None and count < len(folder)
    if subset:
        order = torch.randperm(len(folder), generator=torch.Generator().manual_seed(config.seed))
        folder = Subset(folder, sorted(order[:count].tolist()))
    workers = min(8, os.cpu_count() or 1)
    loader = DataLoader(folder, batch_size=EVAL_BATCH, num_workers=workers, pin_memory=torch.cuda.is_available())
    return TestSet(f"{config.data}/val, {len(folder)} images" + (f", seed {config.seed}" if subset else ""),
                   loader=loader)


def top1(forward: Callable[[Tensor], Tensor], data: TestSet, device: torch.device, dtype: torch.dtype) -> float:
    """The share of `data` whose top-scoring class is its label, the images cast to `device` and `dtype`."""
    with torch.inference_mode():
        hits = correct_in(forward, data.batches(), device, dtype)
    return int(hits.sum()) / len(hits)
