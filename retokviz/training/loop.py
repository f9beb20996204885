"""Training a timm ViT with a reduction method: the DeiT recipe with EViT's keep-rate schedule.

    result = rv.train(model, train_set, test_set, rv.TrainConfig(epochs=30, out_dir="runs/evit"), rv.EViT(0.7))

The command line, `python -m retokviz.training` (retokviz/train/cli.py), builds the model and the data from its options
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

import dataclasses
import json
import math
import os
import pickle
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from retokviz._util.checks import is_int, is_real
from retokviz._util.device import resolve_device
from retokviz._util.files import write_atomically
from retokviz.methods.registry import method_spec
from retokviz.methods.base import Method, Methods
from retokviz.patch import apply
from retokviz._util.files import check_writable_folder


# Fields that may change when a run is resumed: where and how fast it runs, not what it computes.
RUNTIME_FIELDS = frozenset({"device", "num_workers", "progress", "out_dir"})
# What last.pt holds; a file without these is not a training state.
STATE_KEYS = frozenset({"epoch", "step", "model", "optimizer", "config", "method", "history", "rng"})


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
        for name in ("weight_decay", "mixup", "cutmix"):
            value = getattr(self, name)
            _require(is_real(value) and value >= 0, name, value, "a number >= 0")
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


# ------------------------------------------------------------------------------------------------- schedules

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


def keep_rate_targets(method: Methods | None) -> list[float]:
    """The keep rates the schedule leads to: of `method` or of each method of a composition that has a keep rate
    (`has_keep_rate`: EViT, ImagePiece); empty when the schedule doesn't apply (None, ToMe)."""
    return [member.keep_rate for member in _members(method) if member.has_keep_rate]


def at_keep_rates(method: Methods, keep_for: Callable[[float], float]) -> Methods:
    """`method` with each keep rate k replaced by keep_for(k) (in each method of a composition, given as a list)."""
    members = [dataclasses.replace(member, keep_rate=keep_for(member.keep_rate)) if member.has_keep_rate else member
               for member in _members(method)]
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


# ------------------------------------------------------------------------------------------- ranks, devices

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


def _sum_across_ranks(values: Tensor, ranks: Ranks) -> Tensor:
    if ranks.world_size > 1:
        dist.all_reduce(values)
    return values


# ----------------------------------------------------------------------------------------------- RNG states

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


# ------------------------------------------------------------------------------------ the run folder, resume

class _NotRecorded:
    """Stands for a field that one of two compared records lacks."""

    def __repr__(self) -> str:
        return "<not recorded>"


_NOT_RECORDED = _NotRecorded()


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """"name: saved -> current" for every key whose value differs between two records (or that one lacks)."""
    keys = dict.fromkeys([*current, *saved])
    return [f"{key}: {saved.get(key, _NOT_RECORDED)!r} -> {current.get(key, _NOT_RECORDED)!r}"
            for key in keys if saved.get(key, _NOT_RECORDED) != current.get(key, _NOT_RECORDED)]


def _read_state(path: Path) -> dict[str, Any]:
    """last.pt's content, with errors that name the file and say what to do."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError, ValueError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"{path} is corrupt or truncated ({type(error).__name__}: {reason}), so the run can't be "
                         f"resumed from it; delete it and {path.parent / 'metrics.jsonl'} to train the run from the "
                         "start, or train into another out_dir (--out)") from error
    if not (isinstance(state, dict) and STATE_KEYS <= state.keys()):
        raise ValueError(f"{path} is not a training state written by rv.train (it lacks "
                         f"{sorted(STATE_KEYS - set(state) if isinstance(state, dict) else STATE_KEYS)}); "
                         "train into another out_dir (--out)")
    return state


def load_training_state(path: str | os.PathLike, config: TrainConfig, method: Methods | None,
                        settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's last.pt, checked to continue the same run: the same TrainConfig (but RUNTIME_FIELDS), method and
    settings.

    Raises:
        FileNotFoundError: there is no `path`.
        ValueError: `path` is corrupt, or not a training state, or resuming would change the run (the message names
            every field that differs, as "name: recorded -> asked for").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"there is no {path} to resume from; start the run without resume=True (--resume)")
    state = _read_state(path)
    saved = {key: value for key, value in state["config"].items() if key not in RUNTIME_FIELDS}
    current = {key: value for key, value in asdict(config).items() if key not in RUNTIME_FIELDS}
    changed = _differences(saved, current)
    changed += _differences({"method": state["method"]}, {"method": method_spec(method)})
    changed += _differences(state.get("settings") or {}, settings or {})
    if changed:
        raise ValueError(f"{path} is from a different run; resuming would change {'; '.join(changed)}. Resume with "
                         "the same settings, or train into a new out_dir")
    return state


def check_run_folder(config: TrainConfig, method: Methods | None = None, *, resume: bool = False,
                     settings: dict[str, Any] | None = None) -> int:
    """Raise now what `train` would raise about config.out_dir, so that a caller can fail before building data.

    Returns:
        the epochs the run has done: 0 for a new run, those recorded in last.pt when resuming.

    Raises:
        ValueError: resume without out_dir; a last.pt that is corrupt or from a different run.
        FileExistsError: out_dir holds a run and resume is False.
        FileNotFoundError: resume is True and out_dir holds no last.pt.
        NotADirectoryError, PermissionError: out_dir can't be written.
    """
    last = _checkpoint_path(config, resume)
    return load_training_state(last, config, method, settings)["epoch"] if resume else 0


def _checkpoint_path(config: TrainConfig, resume: bool) -> Path | None:
    """config.out_dir/last.pt (None without out_dir), checked to be writable and to agree with `resume`."""
    if config.out_dir is None:
        if resume:
            raise ValueError("resume=True needs TrainConfig.out_dir, the folder of the run to continue")
        return None
    check_writable_folder(config.out_dir, "TrainConfig.out_dir")
    last = Path(config.out_dir) / "last.pt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"there is no {last} to resume from; start the run without resume=True (--resume)")
    if not resume and last.exists():
        raise FileExistsError(f"{last} holds an earlier run; pass resume=True (--resume) to continue it, or train "
                              "into another out_dir")
    return last


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
    loss, correct, count = _sum_across_ranks(totals, ranks).tolist()
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
    last = _checkpoint_path(config, resume)
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
    optimizer = create_optimizer_v2(model, "adamw", lr=config.peak_lr, weight_decay=config.weight_decay)
    if resume:
        progress = _restore(last, model, optimizer, loaders.generator, config, method, settings, ranks)
    else:
        _seed(config.seed + ranks.rank, loaders.generator)
        progress = _Progress()
    run = _start_run(model, method, config, loaders, optimizer, ranks, device, last)
    for epoch in range(progress.epoch, config.epochs):
        _run_epoch(run, progress, epoch, settings)
    if method is not None:
        apply(model, method)
    model.eval()                                            # also when a finished run is resumed
    return TrainResult(metrics=progress.history[-1], history=progress.history, checkpoint=last)


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
        _set_rng_state(rng[ranks.rank], loader_generator)
    else:  # resumed on another number of ranks: the data order is the same, augmentation draws differ
        _seed(config.seed + ranks.rank + state["epoch"], loader_generator)
    return _Progress(state["epoch"], state["step"], state["history"])


def _start_run(model: nn.Module, method: Methods | None, config: TrainConfig, loaders: _Loaders,
               optimizer: torch.optim.Optimizer, ranks: Ranks, device: torch.device, last: Path | None) -> _Run:
    """Apply the method, wrap the model for DDP and pick the loss: what every epoch then uses."""
    if method is not None:
        apply(model, method)
    network = model if ranks.world_size == 1 else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                  num_classes=model.num_classes) if config.mixup or config.cutmix else None
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return _Run(model, network, method, keep_rate_targets(method), config, loaders, optimizer, mixup, criterion,
                ranks, device, config.amp and device.type == "cuda", last)


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
    loss_sum, correct, count = _sum_across_ranks(totals, run.ranks).tolist()   # waits for the GPU's queue
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
        group["lr"] = lr
    return lr


def _train_step(run: _Run, images: Tensor, labels: Tensor) -> Tensor:
    """One optimizer step on a batch (images [b, 3, H, W], labels [b]); returns [3]: loss sum, correct, count."""
    images, labels = images.to(run.device, non_blocking=True), labels.to(run.device, non_blocking=True)
    inputs, targets = run.mixup(images, labels) if run.mixup else (images, labels)
    with torch.autocast(run.device.type, torch.bfloat16, enabled=run.amp):
        logits = run.network(inputs).float()
    loss = run.criterion(logits, targets)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return torch.stack([loss.detach() * len(labels), (logits.argmax(-1) == labels).sum(),
                        torch.tensor(len(labels), device=run.device)])


def _save_epoch(run: _Run, progress: _Progress, settings: dict[str, Any] | None) -> None:
    """Rank 0 writes last.pt (atomically) and then metrics.jsonl; every rank contributes its RNG state."""
    rng = [_rng_state(run.loaders.generator)]
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
