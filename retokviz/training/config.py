"""What a training run is asked to do (TrainConfig, every field checked) and what it returns (TrainResult)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from retokviz._util.checks import is_int, is_real


# Fields that may change when a run is resumed: where and how fast it runs, not what it computes.
RUNTIME_FIELDS = frozenset({"device", "num_workers", "progress", "out_dir"})


def _require(valid: bool, name: str, value: object, allowed: str) -> None:
    if not valid:
        raise ValueError(f"TrainConfig.{name} must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the DeiT recipe, scaled down by default for the generated data).

    Args:
        epochs: passes over the training set, >= 1.
        batch_size: the global batch, split evenly across ranks under torchrun.
        lr: AdamW's peak learning rate; None means DeiT's 5e-4 x batch_size / 512.
        min_lr: where the cosine ends; None means lr / 50 (DeiT's 1e-5 for 5e-4).
        weight_decay: AdamW's, not applied to norms, biases, position embedding and tokens.
        backbone_lr_scale: the model's own parameters learn at this fraction of the learning rate, the modules a
            method adds (DynamicViT's predictors) at the full rate; 0 < backbone_lr_scale <= 1 (DynamicViT's
            authors fine-tune with 0.01; 1, the default, treats every parameter alike).
        distill_weight: DynamicViT only: the weight of its distillation from the model as training starts (0.5,
            the authors'); 0 trains without a teacher, as a run from scratch must (its starting model knows nothing).
        warmup_epochs: linear learning-rate warm-up, 0 <= warmup_epochs < epochs.
        keep_warmup_epochs: epochs at keep rate 1.0 before the keep rate decays (methods with a keep rate).
        keep_decay_epochs: epochs of per-iteration cosine decay from 1.0 to the method's keep rate.
        label_smoothing: in [0, 1).
        mixup: mixup's Beta alpha, 0 for none (timm's Mixup; the loss becomes soft-target cross-entropy).
        cutmix: cutmix's Beta alpha, 0 for none.
        seed: seeds torch, numpy, python and the data loader (rank r uses seed + r), 0 <= seed < 2**31.
        device: "auto" (cuda if available, else cpu), "cpu", "cuda" or "cuda:N"; under torchrun cuda means
            cuda:LOCAL_RANK.
        amp: bf16 autocast on CUDA (ignored on CPU).
        deterministic: torch.use_deterministic_algorithms (warn-only) while training; a resumed run then
            reproduces an uninterrupted one on a CPU.
        num_workers: data loader worker processes per rank.
        out_dir: where last.pt and metrics.jsonl go; None writes nothing (and can't resume).
        progress: a progress bar (in notebooks and terminals) and one line per epoch; False prints nothing.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float | None = None
    min_lr: float | None = None
    weight_decay: float = 0.05
    backbone_lr_scale: float = 1.0
    distill_weight: float = 0.5
    warmup_epochs: int = 2
    keep_warmup_epochs: int = 1
    keep_decay_epochs: int = 10
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    deterministic: bool = True
    num_workers: int = 0
    out_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            _require(is_int(value) and value >= 1, name, value, "an int >= 1")
        for name in ("keep_warmup_epochs", "keep_decay_epochs", "num_workers"):
            value = getattr(self, name)
            _require(is_int(value) and value >= 0, name, value, "an int >= 0")
        _require(is_int(self.warmup_epochs) and 0 <= self.warmup_epochs < self.epochs, "warmup_epochs",
                 self.warmup_epochs, f"an int in [0, epochs={self.epochs})")
        _require(self.lr is None or (is_real(self.lr) and self.lr > 0), "lr", self.lr, "None or a number > 0")
        _require(self.min_lr is None or (is_real(self.min_lr) and 0 <= self.min_lr <= self.peak_lr), "min_lr",
                 self.min_lr, f"None or a number in [0, lr={self.peak_lr:g}]")
        for name in ("weight_decay", "distill_weight", "mixup", "cutmix"):
            value = getattr(self, name)
            _require(is_real(value) and value >= 0, name, value, "a number >= 0")
        _require(is_real(self.backbone_lr_scale) and 0 < self.backbone_lr_scale <= 1, "backbone_lr_scale",
                 self.backbone_lr_scale, "a number in (0, 1]")
        _require(is_real(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label_smoothing",
                 self.label_smoothing, "a number in [0, 1)")
        _require(is_int(self.seed) and 0 <= self.seed < 2**31, "seed", self.seed, "an int in [0, 2**31)")
        for name in ("amp", "deterministic", "progress"):
            _require(isinstance(getattr(self, name), bool), name, getattr(self, name), "True or False")
        try:
            valid_device = self.device == "auto" or torch.device(self.device).type in ("cpu", "cuda")
        except (RuntimeError, TypeError):
            valid_device = False
        _require(valid_device, "device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.out_dir is not None:  # a str, so that the config stored in last.pt is plain data
            object.__setattr__(self, "out_dir", os.fspath(self.out_dir))

    @property
    def peak_lr(self) -> float:
        """The learning rate after warm-up: `lr`, or DeiT's 5e-4 x batch_size / 512."""
        return self.lr if self.lr is not None else 5e-4 * self.batch_size / 512

    @property
    def final_lr(self) -> float:
        """The learning rate the cosine ends at: `min_lr`, or lr / 50."""
        return self.min_lr if self.min_lr is not None else self.peak_lr / 50


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        metrics: the last epoch's record (as in metrics.jsonl).
        history: one record per epoch: epoch, train_loss, train_acc, test_loss, test_acc, keep_rate (at the
            epoch's last step, of the first method with one in a composition; None without a keep-rate method),
            lr (at the epoch's last step), images_per_second (training), seconds (the whole epoch, evaluation
            included). Accuracies are fractions.
        checkpoint: out_dir/last.pt, or None when nothing was written.
    """

    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    checkpoint: Path | None
