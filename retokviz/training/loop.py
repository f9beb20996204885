"""Training a timm ViT with a reduction method: the DeiT recipe with EViT's keep-rate schedule.

    result = rv.train(model, train_set, test_set, rv.TrainConfig(epochs=30, out_dir="runs/evit"), rv.EViT(0.7))

The command line, `python -m retokviz.training` (retokviz/training/cli.py), builds the model and the data from its options
and calls `train`.

The recipe (DeiT's, which the EViT paper trains with): AdamW with lr 5e-4 x batch/512 and weight decay 0.05 (none on
norms, biases, position embedding and tokens: timm's optimizer factory), linear warm-up then a per-iteration cosine
to `min_lr`, label smoothing, optional mixup/cutmix (timm's `Mixup`). A method with a keep rate
(`method.has_keep_rate`: EViT, ImagePiece) trains at keep rate 1.0 for `keep_warmup_epochs`, then at a keep rate
that falls along a per-iteration cosine to its own over `keep_decay_epochs`, then at its own; it is re-applied at
every iteration (cheap: nothing is rebuilt). Other methods (ToMe) are applied as they are; in a composition (a list,
as `rv.apply` takes) every keep rate follows the schedule. Each epoch ends with an evaluation at the method's own
keep rate.

At each epoch end rank 0 writes `out_dir/last.pt` atomically (model, optimizer, step, config, method, the caller's
`settings`, history, the RNG states of every rank) and rewrites `out_dir/metrics.jsonl` (one JSON record per epoch).
`resume=True` continues from the last complete epoch: a killed run loses at most the epoch it was in, and on a CPU
it ends with exactly the weights of an uninterrupted run, since the shuffle of each epoch derives from (seed, epoch)
and the RNG states (torch, numpy, python, the data loader's generator) are restored. A resume that would change
anything the run computes (any TrainConfig field but the runtime ones, the method, the settings) is refused, naming
every field that differs.

Under `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK set) the model is wrapped in DistributedDataParallel (NCCL on GPUs,
gloo on CPUs), a DistributedSampler gives each rank its share, the global batch is split evenly across ranks, and
only rank 0 prints and writes files. Rank r takes samples r, r + W, r + 2W, ... of each epoch's permutation, so a
step sees the same global batch whatever the number of ranks.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from retokviz._util.device import resolve_device
from retokviz._util.files import write_atomically
from retokviz.methods.registry import method_spec
from retokviz.methods.base import Methods
from retokviz.patch import MODULES, apply
from retokviz.training.config import TrainConfig, TrainResult
from retokviz.training.distributed import Ranks, sum_across_ranks
from retokviz.training.losses import PruningObjective, make_teacher, uses_teacher
from retokviz.training.resume import (checkpoint_path, load_training_state, rng_state,
                                      seed_everything, set_rng_state)
from retokviz.training.schedule import at_keep_rates, check_schedule, keep_rate_at, keep_rate_targets, lr_at


# --------------------------------------------------------------------------------------------- evaluation

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
    loss, correct, count = sum_across_ranks(totals, ranks).tolist()
    return loss / count, correct / count


# ----------------------------------------------------------------------------------------------- training

def train(model: nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig | None = None,
          method: Methods | None = None, *, resume: bool = False,
          settings: dict[str, Any] | None = None) -> TrainResult:
    """Train `model` in place with `method` (None: the model as it is), evaluating it at each epoch end.

    Args:
        model: a timm ViT; its weights are overwritten from the checkpoint when resuming.
        train_set: yields (image [3, H, W] float, label int).
        test_set: the same, for the evaluation at each epoch end (at the method's own keep rate).
        config: the recipe; None means TrainConfig().
        method: a reduction method (EViT, ImagePiece: scheduled keep rate; ToMe: applied as is), a list of them
            (composed as by rv.apply, each keep rate scheduled), or None.
        resume: continue from config.out_dir/last.pt, which must exist.
        settings: what else defines the run, as plain data (the command line passes its model and data options):
            recorded in last.pt, and a resume that would change any of it is refused.

    Returns:
        the metrics, history and checkpoint path. The model is left in eval mode with `method` applied.

    Raises:
        ValueError: settings that don't fit (batch vs ranks or data, the keep-rate schedule, a device this machine
            lacks, a resume that would change the run, a corrupt last.pt).
        FileExistsError: out_dir holds a run and resume is False.
        FileNotFoundError: resume is True and out_dir holds no last.pt.
        NotADirectoryError, PermissionError: out_dir can't be written.
    """
    config = config or TrainConfig()
    check_schedule(config, method)
    ranks = Ranks.from_env()
    _check_batch(config, ranks)
    device = resolve_device(config.device, ranks.local_rank)
    last = checkpoint_path(config, resume)
    if config.deterministic:  # cuBLAS reads this when CUDA starts; without it some matmuls are non-deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns_group = ranks.world_size > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    try:
        return _fit(model, train_set, test_set, config, method, resume, settings, last, ranks, device)
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
        if owns_group:
            dist.destroy_process_group()


def _check_batch(config: TrainConfig, ranks: Ranks) -> None:
    """Raise ValueError if the global batch doesn't split evenly across ranks, or can't pair up for mixup."""
    if config.batch_size % ranks.world_size:
        raise ValueError(f"TrainConfig.batch_size={config.batch_size} (global) must split evenly across "
                         f"{ranks.world_size} ranks")
    if (config.mixup or config.cutmix) and config.batch_size // ranks.world_size % 2:
        raise ValueError(f"mixup/cutmix pair up the images of a batch: the batch per rank, "
                         f"{config.batch_size // ranks.world_size}, must be even")


@dataclass
class _Loaders:
    """This rank's data: the shuffled training batches and its share of the test set."""

    train: DataLoader
    test: DataLoader
    sampler: DistributedSampler       # set_epoch(epoch) reshuffles the training set
    generator: torch.Generator        # the training loader's RNG, saved and restored with the others

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train)


@dataclass
class _Run:
    """What the steps of one training run share: fixed once training starts."""

    model: nn.Module
    network: nn.Module                # the model, or the model wrapped in DistributedDataParallel
    method: Methods | None
    keep_targets: list[float]         # the keep rates the schedule leads to (empty: no schedule)
    config: TrainConfig
    loaders: _Loaders
    optimizer: torch.optim.Optimizer
    mixup: Mixup | None
    criterion: nn.Module
    ranks: Ranks
    device: torch.device
    amp: bool                         # bf16 autocast (on CUDA only)
    last: Path | None                 # where each epoch's state goes (None: nowhere)
    objective: PruningObjective | None = None   # the loss when it is not the criterion's alone (DynamicViT)


@dataclass
class _Progress:
    """Where a run stands: the epochs done, the iterations done, and one record per epoch done."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _fit(model: nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig, method: Methods | None,
         resume: bool, settings: dict[str, Any] | None, last: Path | None, ranks: Ranks,
         device: torch.device) -> TrainResult:
    """`train` once the process is set up: load or seed, then train, evaluate and save epoch by epoch."""
    loaders = _make_loaders(train_set, test_set, config, ranks, device)
    model.to(device)
    # DynamicViT distils from the model as given (before any resume loads weights into it), and its predictors
    # exist (the method applied) before the optimizer is made and a resume loads them
    teacher = make_teacher(model) if uses_teacher(method) and config.distill_weight > 0 else None
    if uses_teacher(method):
        apply(model, method)
    optimizer = _make_optimizer(model, config)
    if resume:
        progress = _restore(last, model, optimizer, loaders.generator, config, method, settings, ranks)
    else:
        seed_everything(config.seed + ranks.rank, loaders.generator)
        progress = _Progress()
    run = _start_run(model, method, config, loaders, optimizer, ranks, device, last, teacher)
    for epoch in range(progress.epoch, config.epochs):
        _run_epoch(run, progress, epoch, settings)
    if method is not None:
        apply(model, method)
    model.eval()                                            # also when a finished run is resumed
    return TrainResult(metrics=progress.history[-1], history=progress.history, checkpoint=last)


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over `model` (no weight decay on norms, biases, embeddings and tokens); with a backbone_lr_scale below
    1 the model's own parameters get that `lr_scale` and the method's modules (`model.retokviz_modules`) none."""
    if config.backbone_lr_scale == 1:
        return create_optimizer_v2(model, "adamw", lr=config.peak_lr, weight_decay=config.weight_decay)
    groups, names = [], {id(p): n for n, p in model.named_parameters()}
    for group in param_groups_weight_decay(model, config.weight_decay):
        added = [p for p in group["params"] if names[id(p)].startswith(MODULES + ".")]
        own = [p for p in group["params"] if not names[id(p)].startswith(MODULES + ".")]
        groups += [{**group, "params": added, "lr_scale": 1.0},
                   {**group, "params": own, "lr_scale": config.backbone_lr_scale}]
    return create_optimizer_v2([g for g in groups if g["params"]], "adamw", lr=config.peak_lr,
                               weight_decay=config.weight_decay)


def _make_loaders(train_set: Dataset, test_set: Dataset, config: TrainConfig, ranks: Ranks,
                  device: torch.device) -> _Loaders:
    """The data loaders of this rank; ValueError if the training set is smaller than a batch or the test set empty."""
    per_rank = config.batch_size // ranks.world_size
    sampler = DistributedSampler(train_set, num_replicas=ranks.world_size, rank=ranks.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    generator = torch.Generator()
    train_loader = DataLoader(train_set, per_rank, sampler=sampler, num_workers=config.num_workers,
                              pin_memory=device.type == "cuda", drop_last=True, generator=generator)
    if len(train_loader) == 0:
        raise ValueError(f"the training set ({len(train_set)} images) is smaller than one batch "
                         f"({config.batch_size}); lower TrainConfig.batch_size")
    if len(test_set) == 0:
        raise ValueError("the test set is empty: each epoch ends with an evaluation on it")
    # Rank r evaluates test images r, r + W, ...; the sums over ranks count every image once.
    test_loader = DataLoader(Subset(test_set, range(ranks.rank, len(test_set), ranks.world_size)), per_rank,
                             num_workers=config.num_workers, pin_memory=device.type == "cuda")
    return _Loaders(train_loader, test_loader, sampler, generator)


def _restore(last: Path, model: nn.Module, optimizer: torch.optim.Optimizer, loader_generator: torch.Generator,
             config: TrainConfig, method: Methods | None, settings: dict[str, Any] | None,
             ranks: Ranks) -> _Progress:
    """Load the weights, optimizer state and RNG states of `last` (checked to be the same run); where it stands."""
    state = load_training_state(last, config, method, settings)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).splitlines()[:3]
        raise ValueError(f"{last} holds the weights of another architecture than this model "
                         f"({' '.join(line.strip() for line in first)}); resume with the model it was trained "
                         "with") from error
    optimizer.load_state_dict(state["optimizer"])
    rng = state["rng"]
    if len(rng) == ranks.world_size:
        set_rng_state(rng[ranks.rank], loader_generator)
    else:  # resumed on another number of ranks: the data order is the same, augmentation draws differ
        seed_everything(config.seed + ranks.rank + state["epoch"], loader_generator)
    return _Progress(state["epoch"], state["step"], state["history"])


def _start_run(model: nn.Module, method: Methods | None, config: TrainConfig, loaders: _Loaders,
               optimizer: torch.optim.Optimizer, ranks: Ranks, device: torch.device, last: Path | None,
               teacher: nn.Module | None = None) -> _Run:
    """Apply the method, wrap the model for DDP and pick the loss: what every epoch then uses (with a `teacher`,
    DynamicViT's objective, `retokviz.training.losses`)."""
    if method is not None:
        apply(model, method)
    network = model if ranks.world_size == 1 else DistributedDataParallel(   # predictors idle at keep rate 1.0
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=uses_teacher(method))
    mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                  num_classes=model.num_classes) if config.mixup or config.cutmix else None
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    objective = (PruningObjective(model, teacher, criterion, distill_weight=config.distill_weight)
                 if uses_teacher(method) else None)
    return _Run(model, network, method, keep_rate_targets(method), config, loaders, optimizer, mixup, criterion,
                ranks, device, config.amp and device.type == "cuda", last, objective)


def _run_epoch(run: _Run, progress: _Progress, epoch: int, settings: dict[str, Any] | None) -> None:
    """Train one epoch, evaluate, record it in progress.history, save the state and print the epoch's line."""
    started = time.perf_counter()
    trained = _train_epoch(run, progress, epoch)
    if run.method is not None:
        apply(run.model, run.method)                        # evaluated at the method's own keep rate
    test_loss, test_acc = evaluate(run.model, run.loaders.test, run.device, run.amp, run.ranks)
    progress.history.append({
        "epoch": epoch + 1, "train_loss": trained["loss"], "train_acc": trained["acc"],
        "test_loss": test_loss, "test_acc": test_acc, "keep_rate": trained["keep_rate"], "lr": trained["lr"],
        "images_per_second": trained["images_per_second"], "seconds": time.perf_counter() - started,
    })
    progress.epoch = epoch + 1
    if run.last is not None:
        _save_epoch(run, progress, settings)
    if run.config.progress and run.ranks.is_main:
        print(format_record(progress.history[-1], run.config.epochs), flush=True)


def _train_epoch(run: _Run, progress: _Progress, epoch: int) -> dict[str, Any]:
    """One pass over the training set, advancing progress.step.

    Returns:
        the epoch's mean training loss and accuracy (over all ranks), the keep rate and learning rate of its last
        iteration, and its training speed in images per second.
    """
    started = time.perf_counter()
    run.loaders.sampler.set_epoch(epoch)
    run.network.train()
    totals = torch.zeros(3, device=run.device)              # loss sum, correct, count
    keep = lr = None
    show = run.config.progress and run.ranks.is_main
    batches = tqdm(run.loaders.train, desc=f"epoch {epoch + 1}/{run.config.epochs}", unit="batch", leave=False,
                   disable=None if show else True)          # None: a bar in notebooks and terminals, not in logs
    for images, labels in batches:
        keep = _schedule_keep_rate(run, progress.step)
        lr = _schedule_lr(run, progress.step)
        totals += _train_step(run, images, labels)
        progress.step += 1
    loss_sum, correct, count = sum_across_ranks(totals, run.ranks).tolist()   # waits for the GPU's queue
    return {"loss": loss_sum / count, "acc": correct / count, "keep_rate": keep, "lr": lr,
            "images_per_second": count / (time.perf_counter() - started)}


def _schedule_keep_rate(run: _Run, step: int) -> float | None:
    """Apply the method at iteration `step`'s keep rates; the first of them (None without a keep-rate method)."""
    if not run.keep_targets:
        return None
    config = run.config

    def keep_for(target: float) -> float:
        return keep_rate_at(step, run.loaders.steps_per_epoch, target, config.keep_warmup_epochs,
                            config.keep_decay_epochs)

    apply(run.model, at_keep_rates(run.method, keep_for))
    return keep_for(run.keep_targets[0])


def _schedule_lr(run: _Run, step: int) -> float:
    """Set iteration `step`'s learning rate in every parameter group; returns it."""
    steps = run.loaders.steps_per_epoch
    lr = lr_at(step, run.config.epochs * steps, run.config.warmup_epochs * steps, run.config.peak_lr,
               run.config.final_lr)
    for group in run.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr


def _train_step(run: _Run, images: Tensor, labels: Tensor) -> Tensor:
    """One optimizer step on a batch (images [b, 3, H, W], labels [b]); returns [3]: loss sum, correct, count."""
    images, labels = images.to(run.device, non_blocking=True), labels.to(run.device, non_blocking=True)
    inputs, targets = run.mixup(images, labels) if run.mixup else (images, labels)
    with torch.autocast(run.device.type, torch.bfloat16, enabled=run.amp):
        if run.objective is None:
            logits = run.network(inputs).float()
        else:
            logits, loss = run.objective(run.network, inputs, targets)
    if run.objective is None:
        loss = run.criterion(logits, targets)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return torch.stack([loss.detach() * len(labels), (logits.argmax(-1) == labels).sum(),
                        torch.tensor(len(labels), device=run.device)])


def _save_epoch(run: _Run, progress: _Progress, settings: dict[str, Any] | None) -> None:
    """Rank 0 writes last.pt (atomically) and then metrics.jsonl; every rank contributes its RNG state."""
    rng = [rng_state(run.loaders.generator)]
    if run.ranks.world_size > 1:
        gathered: list[Any] = [None] * run.ranks.world_size
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
    if not run.ranks.is_main:
        return
    state = {"epoch": progress.epoch, "step": progress.step, "model": run.model.state_dict(),
             "optimizer": run.optimizer.state_dict(), "config": asdict(run.config),
             "method": method_spec(run.method), "settings": settings or {}, "history": progress.history,
             "rng": rng}
    write_atomically(run.last, lambda file: torch.save(state, file))
    # Written after last.pt: a kill in between leaves metrics.jsonl one epoch behind, never ahead of, last.pt.
    lines = "".join(json.dumps(record) + "\n" for record in progress.history)
    write_atomically(run.last.parent / "metrics.jsonl", lambda file: file.write(lines.encode()))


def format_record(record: dict[str, Any], epochs: int) -> str:
    """One epoch's record as a log line."""
    keep = "" if record["keep_rate"] is None else f"  keep {record['keep_rate']:.3f}"
    return (f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_acc']:.1%}"
            f"  test loss {record['test_loss']:.4f} acc {record['test_acc']:.1%}{keep}  lr {record['lr']:.2e}"
            f"  {record['images_per_second']:.0f} img/s  {record['seconds']:.1f} s")
