"""Helpers for the training lesson (notebooks/06_training.ipynb): a live plot of the metrics while `rv.train` runs,
a run stopped on request the way an interrupted one stops, the keep-rate schedule drawn, and a small image folder.

    from retokviz.tutorial.training import plot_schedule, train_live, write_image_folder
    plot_schedule(rv.TrainConfig(epochs=6), steps_per_epoch=50, keep_rate=0.7)
    result = train_live(model, train_set, test_set, rv.TrainConfig(epochs=6, out_dir="build/run"), rv.EViT(0.7))
    root = write_image_folder("build/my-images", per_class=4)      # root/train/<class>/*.png, root/val/...

`rv.train` takes no per-epoch callback; it rewrites `out_dir/metrics.jsonl` at every epoch end. `train_live` runs
it in a background thread and redraws one figure whenever that file grows, so the plot is live and the trainer is
unchanged. Stopping (the kernel's interrupt button, or `stop_after=` epochs) makes the model's next training
forward pass raise inside that thread: the run ends as an interrupted one does, `out_dir/last.pt` holding the
last complete epoch, and `train_live(..., resume=True)` (or `rv.train(..., resume=True)`) continues from it.

The notebook's widget that trains, pauses and goes on behind buttons is `retokviz.tutorial.widgets.training_lesson`,
built on `read_history` and `plot_history` here.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from retokviz._util.files import write_atomically
from retokviz.data.clutter import CLASSES, make_clutter
from retokviz.images import denormalize
from retokviz.methods.base import Method
from retokviz.views.figure import Figure
from retokviz.training.config import TrainConfig, TrainResult
from retokviz.training.loop import train
from retokviz.training.schedule import keep_rate_at, lr_at

TRAIN_COLOUR, TEST_COLOUR, KEEP_COLOUR = "#0072B2", "#D55E00", "#009E73"


class TrainingStopped(Exception):
    """Raised in the training thread by the first training forward pass after a stop request."""


def read_history(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The epoch records a run has written to out_dir/metrics.jsonl so far (empty before its first epoch ends)."""
    path = Path(out_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_history(history: list[dict[str, Any]], epochs: int | None = None, chance: float | None = None,
                 title: str | None = None) -> Figure:
    """Loss and accuracy per epoch (training and test), and the keep rate where the method has one.

    Args:
        history: `TrainResult.history` or `read_history(out_dir)`: one record per epoch.
        epochs: the x axis runs to this epoch (the run's total), so a live plot does not rescale; None: the last
            epoch recorded.
        chance: the accuracy of guessing (e.g. 0.1 for 10 classes), drawn dashed.
    """
    keep = [record.get("keep_rate") for record in history]
    with_keep = any(value is not None for value in keep)
    figure = Figure(figsize=(10.5 if with_keep else 7.5, 2.9))
    axes = figure.subplots(1, 3 if with_keep else 2)
    done = [record["epoch"] for record in history]
    last = max(epochs or 0, done[-1] if done else 1)
    for ax, (key, name) in zip(axes, (("loss", "loss"), ("acc", "accuracy (%)"))):
        scale = 100 if key == "acc" else 1
        for split, colour in (("train", TRAIN_COLOUR), ("test", TEST_COLOUR)):
            values = [scale * record[f"{split}_{key}"] for record in history]
            ax.plot(done, values, "o-", color=colour, markersize=4, label=split)
        ax.set_ylabel(name, fontsize=8)
    if chance is not None:
        axes[1].axhline(100 * chance, color="0.4", linestyle="--", linewidth=1, label="chance")
    axes[1].set_ylim(0, 100)
    if with_keep:
        axes[2].plot(done, keep, "o-", color=KEEP_COLOUR, markersize=4, label="at the epoch's end")
        axes[2].set_ylim(0, 1.05)
        axes[2].set_ylabel("keep rate", fontsize=8)
    for ax in axes:
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if history:
            ax.legend(fontsize=7, frameon=False)
    if not history:
        axes[0].text(0.5, 0.5, "waiting for the first epoch", transform=axes[0].transAxes, ha="center",
                     va="center", fontsize=8, color="0.4")
    status = f"{len(history)} of {epochs} epochs" if epochs else f"{len(history)} epochs"
    figure.suptitle(f"{title + ': ' if title else ''}{status}", fontsize=9)
    figure.tight_layout()
    return figure


class _LiveFigure:
    """One figure in the notebook's output, replaced in place (nothing shown outside IPython)."""

    def __init__(self) -> None:
        self.handle = None
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover - IPython comes with the notebooks extra
            return
        if get_ipython() is not None:
            self._display = display

    def show(self, figure: Figure) -> None:
        if not hasattr(self, "_display"):
            return
        if self.handle is None:
            self.handle = self._display(figure, display_id=True)
        else:
            self.handle.update(figure)


def train_live(model: nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig,
               method: Method | list[Method] | None = None, *, resume: bool = False,
               settings: dict[str, Any] | None = None, stop_after: int | None = None, chance: float | None = None,
               title: str | None = None, poll: float = 0.5) -> TrainResult:
    """`rv.train(model, train_set, test_set, config, method, resume=..., settings=...)` with a live plot of its
    metrics (`plot_history`), redrawn as each epoch ends.

    Args:
        config: needs `out_dir`: the plot reads out_dir/metrics.jsonl, and a stopped run continues from last.pt.
        stop_after: stop the run at the first training step after out_dir holds this many epochs, as the
            interrupt button stops it at any time.
        chance, title: passed to `plot_history`.
        poll: seconds between looks at metrics.jsonl.

    Returns:
        `rv.train`'s TrainResult; for a stopped run, one built from the epochs saved (its checkpoint is last.pt,
        or None before the first epoch ended). The model is left as `rv.train` leaves it only for a finished run:
        after a stop it holds part of the next epoch's updates; resume to continue.

    Raises:
        ValueError: no out_dir, or a bad stop_after; and whatever `rv.train` raises, from the training thread.
    """
    if config.out_dir is None:
        raise ValueError("train_live reads out_dir/metrics.jsonl as epochs end: give TrainConfig(out_dir=...)")
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int)
                                   or not 1 <= stop_after <= config.epochs):
        raise ValueError(f"stop_after must be an int in 1..epochs={config.epochs}, got {stop_after!r}")
    stop, outcome = threading.Event(), {}

    def refuse_when_stopped(module: nn.Module, args: tuple) -> None:
        if not module.training:                        # evaluation passes (eval mode) finish their epoch
            return
        if stop_after is not None and len(read_history(config.out_dir)) >= stop_after:
            stop.set()                                 # checked here, at every step, so the stop is exact
        if stop.is_set():
            raise TrainingStopped

    def work() -> None:
        try:
            outcome["result"] = train(model, train_set, test_set, config, method, resume=resume, settings=settings)
        except TrainingStopped:
            outcome["stopped"] = True
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = error
        finally:
            finished.set()

    finished = threading.Event()      # waited on instead of Thread.join, which an interrupt can leave unsure
    hook = model.register_forward_pre_hook(refuse_when_stopped)
    view, shown = _LiveFigure(), None
    thread = threading.Thread(target=work, name="retokviz-train-live", daemon=True)
    thread.start()
    try:
        while not finished.wait(poll):
            history = read_history(config.out_dir)
            if len(history) != shown:
                shown = len(history)
                view.show(plot_history(history, config.epochs, chance, title))
    except KeyboardInterrupt:                           # the kernel's interrupt: stop at the next training batch
        stop.set()
        finished.wait()
    finally:
        hook.remove()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    history = outcome["result"].history if "result" in outcome else read_history(config.out_dir)
    view.show(plot_history(history, config.epochs, chance, title))
    if "result" in outcome:
        return outcome["result"]
    last = Path(config.out_dir) / "last.pt"
    print(f"stopped during epoch {len(history) + 1}: {last} holds epoch {len(history)}; "
          "run it again with resume=True to continue")
    return TrainResult(metrics=history[-1] if history else {}, history=history,
                       checkpoint=last if last.is_file() else None)


def plot_schedule(config: TrainConfig, steps_per_epoch: int, keep_rate: float) -> Figure:
    """The keep rate and the learning rate of every iteration of a run (`retokviz.training.schedule.keep_rate_at` and
    `lr_at`): keep rate 1.0 for config.keep_warmup_epochs, a cosine down to `keep_rate` over
    config.keep_decay_epochs, then `keep_rate`; the learning rate's linear warm-up and cosine beside it."""
    total = config.epochs * steps_per_epoch
    steps = range(total)
    keep = [keep_rate_at(step, steps_per_epoch, keep_rate, config.keep_warmup_epochs, config.keep_decay_epochs)
            for step in steps]
    lr = [lr_at(step, total, config.warmup_epochs * steps_per_epoch, config.peak_lr, config.final_lr)
          for step in steps]
    figure = Figure(figsize=(7.0, 2.9))
    ax = figure.subplots()
    for epoch in range(1, config.epochs):
        ax.axvline(epoch * steps_per_epoch, color="0.85", linewidth=0.8)
    ax.plot(steps, keep, color=KEEP_COLOUR, label="keep rate")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(f"iteration ({steps_per_epoch} per epoch, epochs marked)", fontsize=8)
    ax.set_ylabel("keep rate", fontsize=8, color=KEEP_COLOUR)
    twin = ax.twinx()
    twin.plot(steps, lr, color="0.3", linestyle="--", linewidth=1, label="learning rate")
    twin.set_ylabel("learning rate", fontsize=8)
    twin.set_ylim(0, 1.05 * config.peak_lr)
    for axis in (ax, twin):
        axis.tick_params(labelsize=7)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="lower left", frameon=False)
    ax.set_title(f"keep rate 1.0 for {config.keep_warmup_epochs} epoch(s), a cosine to {keep_rate} over "
                 f"{config.keep_decay_epochs}, then {keep_rate}", fontsize=9)
    figure.tight_layout()
    return figure


def write_image_folder(root: str | os.PathLike, per_class: int = 3, val_per_class: int = 1, image_size: int = 128,
                       seed: int = 0) -> Path:
    """A small image folder in ImageNet layout, root/train/<class>/<n>.png and root/val/<class>/<n>.png, of
    generated clutter pictures (digits 0-9), as a stand-in for a folder of the reader's own images.

    Args:
        per_class, val_per_class: images of each class in train/ and in val/ (every class appears in both, so
            the two splits number their classes alike).
        image_size: the pictures' side in pixels (a multiple of 16, >= 64).
        seed: the clutter seed (train/ and val/ use the train and test splits' digits).

    Returns:
        root, as a Path.
    """
    root = Path(root)
    for split, count, source in (("train", per_class, "train"), ("val", val_per_class, "test")):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{split} images per class must be an int >= 1, got {count!r}")
        n = 20 * count
        while True:                              # enough images for `count` of every class (about n / 10 each)
            images, labels, _ = make_clutter(n, seed, source, image_size)
            if min(int((labels == label).sum()) for label in range(len(CLASSES))) >= count:
                break
            n *= 2
        pictures = (denormalize(images).permute(0, 2, 3, 1) * 255).round().byte().numpy()
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for number, index in enumerate((labels == label).nonzero().flatten()[:count].tolist()):
                picture = Image.fromarray(pictures[index])
                write_atomically(folder / f"{number}.png", lambda file: picture.save(file, format="PNG"))
    return root
