"""Training a timm ViT with a reduction method: the DeiT recipe with EViT's keep-rate schedule.

    result = rv.train(model, train_set, test_set, rv.TrainConfig(epochs=30, out_dir="runs/evit"), rv.EViT(0.7))
    python -m retokviz.train --method evit --keep-rate 0.7 --out runs/evit              # the generated data
    python -m retokviz.train --data /data/imagenette --model deit_small_patch16_224 --img-size 224 ...
    torchrun --nproc_per_node 4 -m retokviz.train ...                                   # the same, on 4 GPUs

The recipe (methods.md): AdamW with lr 5e-4 x batch/512 and weight decay 0.05 (none on norms, biases, position
embedding and tokens: timm's optimizer factory), linear warm-up then a per-iteration cosine to `min_lr`, label
smoothing, optional mixup/cutmix (timm's `Mixup`). A method with a `keep_rate` (EViT, ImagePiece) trains at keep rate
1.0 for `keep_warmup_epochs`, then at a keep rate that falls along a per-iteration cosine to its own over
`keep_decay_epochs`, then at its own; it is re-applied at every iteration (cheap: nothing is rebuilt). Other
methods (ToMe) are applied as they are; in a composition (a list, as `rv.apply` takes) every keep rate follows
the schedule. Each epoch ends with an evaluation at the method's own keep rate.

At each epoch end rank 0 writes `out_dir/last.pt` atomically (model, optimizer, step, config, history, the RNG
states of every rank) and rewrites `out_dir/metrics.jsonl` (one JSON record per epoch). `resume=True` continues
from the last complete epoch: a killed run loses at most the epoch it was in, and on a CPU it ends with exactly the
weights of an uninterrupted run, since the shuffle of each epoch derives from (seed, epoch) and the RNG states
(torch, numpy, python, the data loader's generator) are restored.

Under `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK set) the model is wrapped in DistributedDataParallel (NCCL on GPUs,
gloo on CPUs), a DistributedSampler gives each rank its share, the global batch is split evenly across ranks, and
only rank 0 prints and writes files. Rank r takes samples r, r + W, r + 2W, ... of each epoch's permutation, so a
step sees the same global batch whatever the number of ranks.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
import os
import random
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from retokviz.checkpoints import DATA_DIR, MAX_BYTES, describe_method, export_checkpoint, write_atomically
from retokviz.methods.base import Method
from retokviz.patch import apply

Methods = Method | Sequence[Method]   # one method, or several composed as rv.apply takes them

# Fields that may change when a run is resumed: where and how fast it runs, not what it computes.
RUNTIME_FIELDS = frozenset({"device", "num_workers", "progress", "out_dir"})


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


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
        warmup_epochs: linear learning-rate warm-up, 0 <= warmup_epochs < epochs.
        keep_warmup_epochs: epochs at keep rate 1.0 before the keep rate decays (methods with a keep_rate).
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
            _require(_is_int(value) and value >= 1, name, value, "an int >= 1")
        for name in ("keep_warmup_epochs", "keep_decay_epochs", "num_workers"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 0, name, value, "an int >= 0")
        _require(_is_int(self.warmup_epochs) and 0 <= self.warmup_epochs < self.epochs, "warmup_epochs",
                 self.warmup_epochs, f"an int in [0, epochs={self.epochs})")
        _require(self.lr is None or (_is_real(self.lr) and self.lr > 0), "lr", self.lr, "None or a number > 0")
        _require(self.min_lr is None or (_is_real(self.min_lr) and 0 <= self.min_lr <= self.peak_lr), "min_lr",
                 self.min_lr, f"None or a number in [0, lr={self.peak_lr:g}]")
        for name in ("weight_decay", "mixup", "cutmix"):
            value = getattr(self, name)
            _require(_is_real(value) and value >= 0, name, value, "a number >= 0")
        _require(_is_real(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label_smoothing",
                 self.label_smoothing, "a number in [0, 1)")
        _require(_is_int(self.seed) and 0 <= self.seed < 2**31, "seed", self.seed, "an int in [0, 2**31)")
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


def keep_rate_at(step: int, steps_per_epoch: int, target: float, warmup_epochs: int, decay_epochs: int) -> float:
    """EViT's keep-rate schedule: 1.0 for `warmup_epochs`, a per-iteration cosine down to `target` over
    `decay_epochs`, then `target`. `step` counts iterations from 0."""
    warmup, decay = warmup_epochs * steps_per_epoch, decay_epochs * steps_per_epoch
    if step < warmup:
        return 1.0
    if step >= warmup + decay:
        return target
    progress = (step - warmup) / decay
    return min(1.0, target + (1.0 - target) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float, final_lr: float) -> float:
    """The learning rate of iteration `step` (from 0): linear warm-up to `peak_lr` over `warmup_steps`, reaching it
    at the last warm-up step, then a cosine from `peak_lr` towards `final_lr` at `total_steps`."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _members(method: Methods | None) -> tuple[Method, ...]:
    if method is None:
        return ()
    return (method,) if isinstance(method, Method) else tuple(method)


def _has_keep_rate_field(method: Method) -> bool:
    return any(field.name == "keep_rate" for field in dataclasses.fields(method))


def keep_rate_targets(method: Methods | None) -> list[float]:
    """The keep rates the schedule leads to: of `method` or of each method of a composition that has a
    `keep_rate` (EViT, ImagePiece); empty when the schedule doesn't apply (None, ToMe)."""
    return [member.keep_rate for member in _members(method) if _has_keep_rate_field(member)]


def at_keep_rates(method: Methods, keep_for: Callable[[float], float]) -> Methods:
    """`method` with each keep rate k replaced by keep_for(k) (in each method of a composition, given as a list)."""
    members = [dataclasses.replace(member, keep_rate=keep_for(member.keep_rate))
               if _has_keep_rate_field(member) else member for member in _members(method)]
    return members[0] if isinstance(method, Method) else members


def check_schedule(config: TrainConfig, method: Methods | None) -> None:
    """Raise ValueError if a keep-rate method would not reach its own keep rate by the end of training."""
    schedule = config.keep_warmup_epochs + config.keep_decay_epochs
    targets = keep_rate_targets(method)
    if targets and schedule > config.epochs:
        raise ValueError(
            f"the keep-rate schedule, keep_warmup_epochs={config.keep_warmup_epochs} + keep_decay_epochs="
            f"{config.keep_decay_epochs} = {schedule}, must fit in epochs={config.epochs} so that training ends "
            f"at the method's own keep rate {targets[0]}"
        )


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        return cls(*(int(os.environ.get(name, default)) for name, default in
                     (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0))))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(request: str, local_rank: int = 0) -> torch.device:
    """"auto" -> cuda if available else cpu; a bare "cuda" -> cuda:local_rank."""
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(request)
    return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device


def _sum_across_ranks(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    if ranks.world_size > 1:
        dist.all_reduce(values)
    return values


def _rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    """This process's random states, as plain data that torch.load(weights_only=True) reads back."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,   # this rank's device
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
        "loader": loader_generator.get_state(),
    }


def _set_rng_state(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])
    loader_generator.set_state(state["loader"])


def _seed(seed: int, loader_generator: torch.Generator) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    loader_generator.manual_seed(seed)


def _load_training_state(path: Path, config: TrainConfig, method: Methods | None) -> dict[str, Any]:
    """last.pt, checked to belong to the same run (same settings, same method)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved, current = state["config"], asdict(config)
    changed = [f"{key}: {saved.get(key)!r} -> {value!r}" for key, value in current.items()
               if key not in RUNTIME_FIELDS and saved.get(key) != value]
    if state["method"] != describe_method(method):
        changed.append(f"method: {state['method']} -> {describe_method(method)}")
    if changed:
        raise ValueError(f"{path} is from a different run; resuming would change {'; '.join(changed)}. Resume with "
                         "the same settings, or train into a new out_dir")
    return state


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool,
             ranks: Ranks = Ranks()) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` over `loader` (summed over all ranks)."""
    model.eval()
    totals = torch.zeros(3, device=device)                 # loss sum, correct, count
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                logits = model(images).float()
            totals += torch.stack([F.cross_entropy(logits, labels, reduction="sum"),
                                   (logits.argmax(-1) == labels).sum(), torch.tensor(len(labels), device=device)])
    loss, correct, count = _sum_across_ranks(totals, ranks).tolist()
    return loss / count, correct / count


def train(model: nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig | None = None,
          method: Methods | None = None, *, resume: bool = False) -> TrainResult:
    """Train `model` in place with `method` (None: the model as it is), evaluating it at each epoch end.

    Args:
        model: a timm ViT; its weights are overwritten from the checkpoint when resuming.
        train_set: yields (image [3, H, W] float, label int).
        test_set: the same, for the evaluation at each epoch end (at the method's own keep rate).
        config: the recipe; None means TrainConfig().
        method: a reduction method (EViT, ImagePiece: scheduled keep rate; ToMe: applied as is), a list of them
            (composed as by rv.apply, each keep rate scheduled), or None.
        resume: continue from config.out_dir/last.pt if it exists (a fresh start if it doesn't).

    Returns:
        the metrics, history and checkpoint path. The model is left in eval mode with `method` applied.

    Raises:
        ValueError: settings that don't fit (batch vs ranks or data, the keep-rate schedule, a resume that would
            change the run's settings).
        FileExistsError: out_dir holds a run and resume is False.
    """
    config = config or TrainConfig()
    check_schedule(config, method)
    ranks = Ranks.from_env()
    if config.batch_size % ranks.world_size:
        raise ValueError(f"TrainConfig.batch_size={config.batch_size} (global) must split evenly across "
                         f"{ranks.world_size} ranks")
    if (config.mixup or config.cutmix) and config.batch_size // ranks.world_size % 2:
        raise ValueError(f"mixup/cutmix pair up the images of a batch: the batch per rank, "
                         f"{config.batch_size // ranks.world_size}, must be even")
    if config.deterministic:  # cuBLAS reads this when CUDA starts; without it some matmuls are non-deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = resolve_device(config.device, ranks.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns_group = ranks.world_size > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    try:
        return _fit(model, train_set, test_set, config, method, resume, ranks, device)
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
        if owns_group:
            dist.destroy_process_group()


def _fit(model: nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig, method: Methods | None,
         resume: bool, ranks: Ranks, device: torch.device) -> TrainResult:
    out = Path(config.out_dir) if config.out_dir is not None else None
    last = out / "last.pt" if out is not None else None
    if resume and last is None:
        raise ValueError("resume=True needs TrainConfig.out_dir, the folder of the run to continue")
    if not resume and last is not None and last.exists():
        raise FileExistsError(f"{last} holds an earlier run; pass resume=True (--resume) to continue it, or train "
                              "into another out_dir")
    per_rank = config.batch_size // ranks.world_size
    sampler = DistributedSampler(train_set, num_replicas=ranks.world_size, rank=ranks.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    loader_generator = torch.Generator()
    train_loader = DataLoader(train_set, per_rank, sampler=sampler, num_workers=config.num_workers,
                              pin_memory=device.type == "cuda", drop_last=True, generator=loader_generator)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({len(train_set)} images) is smaller than one batch "
                         f"({config.batch_size}); lower TrainConfig.batch_size")
    if len(test_set) == 0:
        raise ValueError("the test set is empty: each epoch ends with an evaluation on it")
    # Rank r evaluates test images r, r + W, ...; the sums over ranks count every image once.
    test_loader = DataLoader(Subset(test_set, range(ranks.rank, len(test_set), ranks.world_size)), per_rank,
                             num_workers=config.num_workers, pin_memory=device.type == "cuda")

    model.to(device)
    optimizer = create_optimizer_v2(model, "adamw", lr=config.peak_lr, weight_decay=config.weight_decay)
    history: list[dict[str, Any]] = []
    start_epoch = step = 0
    state = _load_training_state(last, config, method) if resume and last.exists() else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        rng = state["rng"]
        if len(rng) == ranks.world_size:
            _set_rng_state(rng[ranks.rank], loader_generator)
        else:  # resumed on another number of ranks: the data order is the same, augmentation draws differ
            _seed(config.seed + ranks.rank + start_epoch, loader_generator)
    else:
        _seed(config.seed + ranks.rank, loader_generator)

    keep_targets = keep_rate_targets(method)
    if method is not None:
        apply(model, method)
    network = model if ranks.world_size == 1 else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = config.amp and device.type == "cuda"
    mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                  num_classes=model.num_classes) if config.mixup or config.cutmix else None
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    total_steps, warmup_steps = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch
    show = config.progress and ranks.is_main

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        network.train()
        totals = torch.zeros(3, device=device)             # loss sum, correct, count
        keep = None
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
                   disable=None if show else True)         # None: a bar in notebooks and terminals, not in logs
        for images, labels in bar:
            if keep_targets:
                def keep_for(target: float) -> float:
                    return keep_rate_at(step, steps_per_epoch, target, config.keep_warmup_epochs,
                                        config.keep_decay_epochs)

                apply(model, at_keep_rates(method, keep_for))
                keep = keep_for(keep_targets[0])
            lr = lr_at(step, total_steps, warmup_steps, config.peak_lr, config.final_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            inputs, targets = mixup(images, labels) if mixup else (images, labels)
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                logits = network(inputs).float()
            loss = criterion(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            totals += torch.stack([loss.detach() * len(labels), (logits.argmax(-1) == labels).sum(),
                                   torch.tensor(len(labels), device=device)])
        loss_sum, correct, count = _sum_across_ranks(totals, ranks).tolist()   # waits for the GPU's queue
        train_seconds = time.perf_counter() - started
        if method is not None:
            apply(model, method)
        test_loss, test_acc = evaluate(model, test_loader, device, amp, ranks)
        history.append({
            "epoch": epoch + 1, "train_loss": loss_sum / count, "train_acc": correct / count,
            "test_loss": test_loss, "test_acc": test_acc, "keep_rate": keep, "lr": lr,
            "images_per_second": count / train_seconds, "seconds": time.perf_counter() - started,
        })
        if out is not None:
            _save_epoch(out, model, optimizer, config, method, epoch + 1, step, history, loader_generator, ranks)
        if show:
            print(format_record(history[-1], config.epochs), flush=True)

    if method is not None:
        apply(model, method)
    return TrainResult(metrics=history[-1], history=history, checkpoint=last)


def _save_epoch(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
                method: Methods | None, epoch: int, step: int, history: list[dict[str, Any]],
                loader_generator: torch.Generator, ranks: Ranks) -> None:
    """Rank 0 writes last.pt (atomically) and then metrics.jsonl; every rank contributes its RNG state."""
    rng = [_rng_state(loader_generator)]
    if ranks.world_size > 1:
        gathered: list[Any] = [None] * ranks.world_size
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
    if not ranks.is_main:
        return
    state = {"epoch": epoch, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "config": asdict(config), "method": describe_method(method), "history": history, "rng": rng}
    write_atomically(out / "last.pt", lambda file: torch.save(state, file))
    # Written after last.pt: a kill in between leaves metrics.jsonl one epoch behind, never ahead of, last.pt.
    lines = "".join(json.dumps(record) + "\n" for record in history)
    write_atomically(out / "metrics.jsonl", lambda file: file.write(lines.encode()))


def format_record(record: dict[str, Any], epochs: int) -> str:
    """One epoch's record as a log line."""
    keep = "" if record["keep_rate"] is None else f"  keep {record['keep_rate']:.3f}"
    return (f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_acc']:.1%}"
            f"  test loss {record['test_loss']:.4f} acc {record['test_acc']:.1%}{keep}  lr {record['lr']:.2e}"
            f"  {record['images_per_second']:.0f} img/s  {record['seconds']:.1f} s")


# ---------------------------------------------------------------------------------------------------- the CLI

METHODS = {"none": None, "evit": "EViT", "imagepiece": "ImagePiece", "tome": "ToMe"}
METHOD_OPTIONS = (("--keep-rate", "keep_rate"), ("--r", "r"), ("--layers", "layers"))


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m retokviz.train", description=__doc__.split("\n\n")[0])
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="vit_tiny_patch16_224", help="a timm ViT name (never downloaded)")
    model.add_argument("--img-size", type=int, default=128)
    model.add_argument("--embed-dim", type=int, default=192)
    model.add_argument("--depth", type=int, default=6, help="6 keeps the default model under 12 MB")
    model.add_argument("--num-heads", type=int, default=3)
    model.add_argument("--num-classes", type=int, help="default: the data set's number of classes")
    model.add_argument("--coherence-stem", action="store_true", help="ImagePiece's local-coherence conv stem")
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="clutter", help="'clutter' (generated) or a folder with train/ and val/")
    data.add_argument("--train-size", type=int, default=5000, help="clutter: training images")
    data.add_argument("--test-size", type=int, default=1000, help="clutter: test images")
    data.add_argument("--data-seed", type=int, default=0, help="clutter: the seed of the generated images")
    data.add_argument("--auto-augment", help="folder: timm's auto_augment, e.g. rand-m9-mstd0.5-inc1 (RandAugment)")
    method = parser.add_argument_group("method")
    method.add_argument("--method", choices=sorted(METHODS), default="none")
    method.add_argument("--keep-rate", type=float, help="evit, imagepiece: the keep rate, in (0, 1]")
    method.add_argument("--r", type=int, help="tome: tokens merged per block")
    method.add_argument("--layers", type=int, nargs="+", help="the reduction blocks, 0-based")
    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--epochs", type=int, default=defaults.epochs)
    recipe.add_argument("--batch-size", type=int, default=defaults.batch_size, help="global, over all ranks")
    recipe.add_argument("--lr", type=float, help="default: 5e-4 x batch-size / 512")
    recipe.add_argument("--min-lr", type=float, help="default: lr / 50")
    recipe.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    recipe.add_argument("--warmup-epochs", type=int, default=defaults.warmup_epochs)
    recipe.add_argument("--keep-warmup-epochs", type=int, default=defaults.keep_warmup_epochs)
    recipe.add_argument("--keep-decay-epochs", type=int, default=defaults.keep_decay_epochs)
    recipe.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    recipe.add_argument("--mixup", type=float, default=defaults.mixup, help="alpha, e.g. 0.8 (DeiT)")
    recipe.add_argument("--cutmix", type=float, default=defaults.cutmix, help="alpha, e.g. 1.0 (DeiT)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    run.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    run.add_argument("--num-workers", type=int, default=defaults.num_workers)
    run.add_argument("--out", default="runs/train", help="where last.pt and metrics.jsonl go")
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--no-progress", action="store_true", help="no progress bar, no line per epoch")
    run.add_argument("--export", metavar="NAME", help="then write NAME.safetensors for rv.load_checkpoint")
    run.add_argument("--export-dir", default=str(DATA_DIR), help="where --export writes (default: data/)")
    return parser


def _method_from_args(args: argparse.Namespace) -> Method | None:
    """The method the options ask for; ValueError or TypeError on options that don't apply or bad values."""
    import retokviz

    name = METHODS[args.method]
    cls = None if name is None else getattr(retokviz, name, None)
    if name is not None and cls is None:
        raise ValueError(f"--method {args.method}: this retokviz has no {name}")
    fields = {field.name for field in dataclasses.fields(cls)} if cls else set()
    kwargs = {}
    for option, field in METHOD_OPTIONS:
        value = getattr(args, field)
        if value is None:
            continue
        if field not in fields:
            raise ValueError(f"{option} does not apply to --method {args.method}")
        kwargs[field] = tuple(value) if field == "layers" else value
    return None if cls is None else cls(**kwargs)


def _load_data(args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    """The training and test sets the options name (retokviz.data is imported only here)."""
    from retokviz import data

    if args.data == "clutter":
        return (data.ClutterDataset(args.train_size, args.data_seed, "train", args.img_size),
                data.ClutterDataset(args.test_size, args.data_seed, "test", args.img_size))
    return (data.image_folder(args.data, "train", args.img_size, True, auto_augment=args.auto_augment),
            data.image_folder(args.data, "val", args.img_size, False))


def _num_classes(train_set: Dataset, test_set: Dataset) -> int | None:
    """The number of classes: `len(classes)` (ImageFolder), else 1 + the largest label an in-memory `labels`
    tensor holds (ClutterDataset), else None."""
    classes = getattr(train_set, "classes", None)
    if classes is not None:
        return len(classes)
    if all(isinstance(getattr(data, "labels", None), torch.Tensor) for data in (train_set, test_set)):
        return 1 + max(int(data.labels.max()) for data in (train_set, test_set))
    return None


def describe_conditions(args: argparse.Namespace, config: TrainConfig, method: Methods | None,
                        model_kwargs: dict[str, Any], train_set: Dataset, test_set: Dataset) -> str:
    """The conditions of a run, printed before it starts."""
    from retokviz.bench import describe_device

    ranks = Ranks.from_env()
    device = resolve_device(config.device, ranks.local_rank)
    data = (f"clutter, data seed {args.data_seed}" if args.data == "clutter" else
            f"folder {args.data}, auto_augment {args.auto_augment}")
    conditions = {
        "model": f"{args.model} {model_kwargs}" + (" + coherence stem" if args.coherence_stem else ""),
        "data": f"{data}: {len(train_set)} train / {len(test_set)} test images",
        "method": describe_method(method) or "none",
        "epochs": config.epochs,
        "batch": f"{config.batch_size} global = {config.batch_size // ranks.world_size} x {ranks.world_size} ranks",
        "lr": f"AdamW {config.peak_lr:.3g} -> {config.final_lr:.3g} (cosine), warm-up {config.warmup_epochs} "
              f"epochs, weight decay {config.weight_decay}",
        "keep schedule": (f"1.0 for {config.keep_warmup_epochs} epochs, cosine to {method.keep_rate} over "
                          f"{config.keep_decay_epochs}" if keep_rate_targets(method) else "none"),
        "regularisation": f"label smoothing {config.label_smoothing}, mixup {config.mixup}, cutmix {config.cutmix}",
        "device": f"{describe_device(device)}, {'bf16 autocast' if config.amp and device.type == 'cuda' else 'fp32'}",
        "seed": f"{config.seed}, deterministic algorithms: {config.deterministic}",
        "out": f"{config.out_dir}" + (" (resuming)" if args.resume else ""),
        "versions": f"torch {torch.__version__}, timm {timm.__version__}",
    }
    return "\n".join(f"{key:>15}: {value}" for key, value in conditions.items())


def main(argv: list[str] | None = None) -> TrainResult:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in ("img_size", "embed_dim", "depth", "num_heads", "num_classes", "train_size", "test_size"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.export is not None and (not args.export or Path(args.export).name != args.export
                                    or args.export.endswith(".safetensors")):
        parser.error(f"--export takes a file name without folder or suffix, got {args.export!r}")
    if args.auto_augment is not None and args.data == "clutter":
        parser.error("--auto-augment applies to image folders (--data PATH), not to the generated clutter data")
    try:
        method = _method_from_args(args)
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
            weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
            keep_warmup_epochs=args.keep_warmup_epochs, keep_decay_epochs=args.keep_decay_epochs,
            label_smoothing=args.label_smoothing, mixup=args.mixup, cutmix=args.cutmix, seed=args.seed,
            device=args.device, amp=not args.no_amp, num_workers=args.num_workers, out_dir=args.out,
            progress=not args.no_progress,
        )
        check_schedule(config, method)
    except (ValueError, TypeError) as error:
        parser.error(str(error))

    train_set, test_set = _load_data(args)
    num_classes = args.num_classes or _num_classes(train_set, test_set)
    if not num_classes:
        parser.error(f"the training set ({type(train_set).__name__}) lists no classes; pass --num-classes")
    model_kwargs = {"num_classes": num_classes, "img_size": args.img_size, "embed_dim": args.embed_dim,
                    "depth": args.depth, "num_heads": args.num_heads}
    if Ranks.from_env().is_main:
        print(describe_conditions(args, config, method, model_kwargs, train_set, test_set), flush=True)
    torch.manual_seed(args.seed)                            # the model's initial weights
    model = timm.create_model(args.model, pretrained=False, **model_kwargs)
    if args.coherence_stem:
        from retokviz.stem import use_coherence_stem

        use_coherence_stem(model)
    weight_bytes = sum(4 * value.numel() for value in model.state_dict().values())
    if args.export is not None and weight_bytes > MAX_BYTES:  # say so now, not after training
        parser.error(f"--export: this model's float32 weights take {weight_bytes:,} bytes, over the "
                     f"{MAX_BYTES:,} bytes a bundled checkpoint may have; lower --depth or --embed-dim")
    result = train(model, train_set, test_set, config, method, resume=args.resume)

    if args.export is not None and Ranks.from_env().is_main:
        from retokviz.bench import describe_device

        recipe = {
            "command": shlex.join(["python", "-m", "retokviz.train", *argv]),
            "seed": args.seed, "world_size": Ranks.from_env().world_size,
            "device": describe_device(resolve_device(config.device)),
            "seconds": sum(record["seconds"] for record in result.history),
            "epochs": config.epochs, "test_acc": result.metrics["test_acc"], "test_loss": result.metrics["test_loss"],
            "torch": torch.__version__, "timm": timm.__version__,
        }
        info = export_checkpoint(model, Path(args.export_dir) / f"{args.export}.safetensors", recipe=recipe,
                                 model_name=args.model, model_kwargs=model_kwargs)
        print(f"exported {info.path} ({info.size_bytes / 1e6:.1f} MB, test accuracy {info.accuracy:.1%})")
    return result


if __name__ == "__main__":
    main()
