"""Notebook 06's widget: `rv.train` in a background thread behind train / pause buttons, with a progress bar and the
live plot of its metrics, and the model trained so far beside a bundled one whenever it pauses or finishes
(`training_lesson`). The plot and the run's records come from retokviz.tutorial.training.
"""
from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from retokviz.methods.base import Method
from retokviz.training.config import TrainConfig
from retokviz.training.loop import train
from retokviz.tutorial.training import TrainingStopped, plot_history, read_history
from retokviz.tutorial.widgets.board import side_by_side


LESSON_TOOLTIPS = {
    "train": "train in the background (the notebook stays usable); after a pause, go on from the last epoch saved",
    "pause": "stop when the epoch under way ends: it is saved (last.pt), and train goes on from there",
}


class TrainingLesson:
    """Notebook 06: `rv.train` in a background thread with a train / pause button pair, a progress bar and the live
    plot of its metrics; when it pauses or finishes, the model trained so far beside a bundled one (a SideBySide
    board from retokviz.tutorial.widgets.board, each model with its method).

    A pause stops the run at the end of the epoch under way, after that epoch is saved to out_dir/last.pt; train
    goes on with `rv.train(..., resume=True)`, which on a CPU computes exactly what an uninterrupted run would.

        lesson = training_lesson(model, train_set, test_set, rv.TrainConfig(epochs=4, out_dir="build/run"),
                                 rv.ImagePiece(keep_rate=0.7))
        lesson                        # the widget: press train, pause, train again
        lesson.run(until=1)           # the same from code: train until epoch 1 is saved, then pause (blocks)
        lesson.run()                  # go on to the last epoch (blocks)
        lesson.board                  # the trained model beside the bundled one (None before the first pause)

    Attributes:
        state: "ready", "training", "pausing", "paused", "done" or "failed".
        history: the epoch records saved so far (metrics.jsonl).
        steps: the training steps done so far (epochs saved times steps per epoch, plus the epoch under way's).
        result: rv.train's TrainResult once the run is done, else None.
        error: what the training thread raised, or None.
        board: the SideBySide board of the model as last paused or finished, or None.
        train_button, pause_button, progress, readout, figure, root: the widgets.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig,
                 method: Method | list[Method] | None = None, *, settings: dict[str, Any] | None = None,
                 compare_with: Any = "auto", num_images: int = 4, chance: float | None = None,
                 title: str | None = None) -> None:
        import dataclasses

        import ipywidgets as w

        if config.out_dir is None:
            raise ValueError("a training lesson saves every epoch to out_dir/last.pt to pause and resume: give "
                             "TrainConfig(out_dir=...)")
        if (Path(config.out_dir) / "last.pt").exists():
            raise FileExistsError(f"{Path(config.out_dir) / 'last.pt'} holds an earlier run; train into an empty "
                                  "out_dir (a lesson starts its run from the first epoch)")
        self.model, self.train_set, self.test_set, self.method = model, train_set, test_set, method
        self.config = dataclasses.replace(config, progress=False)     # the widget shows the progress
        self.settings, self.chance, self.title = settings, chance, title
        self.steps_per_epoch = len(train_set) // config.batch_size
        self.total_steps = self.steps_per_epoch * config.epochs
        self.compare_with, self.num_images = self._bundled(compare_with, method), num_images
        self.state, self.result, self.error, self.board = "ready", None, None, None
        self.history: list[dict[str, Any]] = []
        self.steps = 0
        self._stop, self._finished = threading.Event(), threading.Event()
        self._finished.set()
        self._until: int | None = None
        self._thread: threading.Thread | None = None
        self._shown_epochs, self._last_update = -1, 0.0
        self.train_button = w.Button(description="train", icon="play", button_style="success",
                                     tooltip=LESSON_TOOLTIPS["train"], layout=w.Layout(width="110px"))
        self.pause_button = w.Button(description="pause", icon="pause", tooltip=LESSON_TOOLTIPS["pause"],
                                     disabled=True, layout=w.Layout(width="110px"))
        self.train_button.on_click(lambda _: self.start())
        self.pause_button.on_click(lambda _: self.pause())
        self.progress = w.IntProgress(value=0, min=0, max=self.total_steps, layout=w.Layout(width="300px"),
                                      tooltip="training steps done, of the whole run")
        self.readout = w.HTML()
        self.figure = w.Image(format="png", layout=w.Layout(max_width="900px"))
        self.compared = w.VBox()
        self.headline = w.HTML(
            f'<div style="font-size:15px"><b>{html.escape(title or "training")}</b> · '
            f'{html.escape(str(method) if method is not None else "no reduction")}</div>'
            f'<div style="font-size:12px;color:#555">{config.epochs} epochs of {self.steps_per_epoch} steps '
            f'({config.batch_size} images each), every epoch saved to {html.escape(str(config.out_dir))}; '
            f'pause and train again to go on from there. The model is shown beside '
            f'{html.escape(self.compare_with or "no other")} whenever it pauses or finishes.</div>')
        self.root = w.VBox([self.headline, w.HBox([self.train_button, self.pause_button, self.progress]),
                            self.readout, self.figure, self.compared])
        self._update(force=True)

    # --- the run ---

    def start(self, until: int | None = None) -> "TrainingLesson":
        """Train in a background thread from where the run stands (the first epoch, or the last one saved), and
        return at once. With `until`, pause when that many epochs are saved.

        Raises:
            RuntimeError: the run is under way already, or done.
            ValueError: `until` is not an epoch count beyond the ones saved.
        """
        if not self._finished.is_set():
            raise RuntimeError("the run is under way; pause it first")
        if self.state == "done":
            raise RuntimeError("the run is done: all its epochs are trained")
        done = len(self.history)
        if until is not None and (isinstance(until, bool) or not isinstance(until, int)
                                  or not done < until <= self.config.epochs):
            raise ValueError(f"until must be an epoch count in {done + 1}..{self.config.epochs}, got {until!r}")
        resume = (Path(self.config.out_dir) / "last.pt").is_file()
        self._until = until
        self._stop.clear()
        self._finished.clear()
        self.error = None
        self.steps = done * self.steps_per_epoch
        self._set_state("training")
        hook = self.model.register_forward_pre_hook(self._step)
        self._thread = threading.Thread(target=self._work, args=(resume, hook), name="retokviz-lesson-train",
                                        daemon=True)
        self._thread.start()
        return self

    def pause(self) -> "TrainingLesson":
        """Pause when the epoch under way ends (it is saved first); `start` goes on from there. Nothing happens when
        the run is not under way."""
        if self.state == "training":
            self._stop.set()
            self._set_state("pausing")
        return self

    def wait(self, timeout: float | None = None) -> "TrainingLesson":
        """Block until the run pauses, finishes or fails (the kernel's interrupt button pauses it); re-raise what
        the training thread raised.

        Raises:
            TimeoutError: `timeout` seconds passed first.
        """
        try:
            if not self._finished.wait(timeout):
                raise TimeoutError(f"the run is still under way after {timeout} s")
        except KeyboardInterrupt:
            self.pause()
            self._finished.wait()
        if self.error is not None:
            raise self.error
        return self

    def run(self, until: int | None = None) -> "TrainingLesson":
        """Train until `until` epochs are saved (None: to the end), then pause; block until then."""
        return self.start(until).wait()

    def _step(self, module: nn.Module, args: tuple) -> None:
        """Before every forward pass of the model while the run is under way: count training steps, pause at an
        epoch's end when asked, keep the readout current."""
        if not module.training:                           # an evaluation at an epoch's end
            return
        saved = len(read_history(self.config.out_dir)) if self.steps % max(1, self.steps_per_epoch) == 0 else None
        if saved is not None and saved > len(self.history):
            self.history = read_history(self.config.out_dir)
        if saved is not None and saved and (self._stop.is_set() or saved == self._until):
            raise TrainingStopped                         # the epoch just ended is saved: stop before the next
        self.steps += 1
        self._update()

    def _work(self, resume: bool, hook) -> None:
        try:
            self.result = train(self.model, self.train_set, self.test_set, self.config, self.method, resume=resume,
                                settings=self.settings)
            state = "done"
        except TrainingStopped:
            state = "paused"
        except BaseException as error:  # noqa: BLE001 - shown in the widget and re-raised by wait()
            self.error, state = error, "failed"
        finally:
            hook.remove()
        self.history = read_history(self.config.out_dir)
        self.steps = len(self.history) * self.steps_per_epoch
        if state in ("paused", "done"):
            self._settle()
            try:
                self.board = self._compare()
            except Exception as error:  # noqa: BLE001 - the run stands; say why there is no board
                self.error, state = error, "failed"
        self._set_state(state)
        self._update(force=True)
        self._finished.set()

    def _settle(self) -> None:
        """After a pause: the model as the saved epoch left it, in eval mode with its method at its own keep rate
        (a pause stops before the next epoch's first step: the weights are last.pt's)."""
        from retokviz.patch import apply

        if self.method is not None:
            apply(self.model, self.method)
        self.model.eval()

    # --- the comparison ---

    @staticmethod
    def _bundled(compare_with: Any, method: Method | list[Method] | None) -> str | None:
        """The bundled checkpoint's name to compare with (see `training_lesson`), checked."""
        from retokviz.methods.registry import method_name
        from retokviz.models.bundled import checkpoints
        from retokviz.models.bundled import name as bundled_name

        if compare_with is None:
            return None
        if isinstance(compare_with, str) and compare_with == "auto":
            try:
                return bundled_name("none" if method is None else method_name(method))
            except ValueError:                            # no bundled model trained with it: the baseline
                return bundled_name("none")
        names = checkpoints().values()
        if compare_with not in names:
            raise ValueError(f"compare_with must be 'auto', None or a bundled checkpoint ({', '.join(names)}), "
                             f"got {compare_with!r}")
        return compare_with

    def _compare(self):
        """The SideBySide board of a copy of the model as it is now and the bundled model, or None."""
        import copy

        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        if self.compare_with is None:
            return None
        trained = copy.deepcopy(self.model).cpu().eval()
        # rv.data's images are normalised with ImageNet's mean and std, whatever the timm configuration the model
        # was built from says (as rv.load_checkpoint records it): the board prepares its pictures accordingly
        trained.pretrained_cfg = {**(getattr(trained, "pretrained_cfg", None) or {}),
                                  "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}
        epochs = len(self.history)
        board = side_by_side({f"trained here, {epochs} epoch{'s' * (epochs != 1)}": trained,
                              self.compare_with: self.compare_with}, num_images=self.num_images,
                             title=f"{self.title or 'the model trained here'} beside {self.compare_with}")
        self.compared.children = [board.root]
        return board

    # --- the widget ---

    def _set_state(self, state: str) -> None:
        self.state = state
        under_way = state in ("training", "pausing")
        self.train_button.disabled = under_way or state == "done"
        self.train_button.description = "done" if state == "done" else "train" if not self.history else "go on"
        self.pause_button.disabled = state != "training"

    def _update(self, force: bool = False) -> None:
        """The progress bar, the readout and (when an epoch was added) the plot; at most every 0.3 s."""
        now = time.monotonic()
        if not force and now - self._last_update < 0.3:
            return
        self._last_update = now
        self.progress.value = min(self.steps, self.total_steps)
        epochs, done = self.config.epochs, len(self.history)
        words = {"ready": "ready: press train",
                 "training": f"training epoch {min(done + 1, epochs)} of {epochs}",
                 "pausing": f"pausing when epoch {min(done + 1, epochs)} ends",
                 "paused": f"paused after epoch {done} of {epochs}: press go on to continue",
                 "done": f"done: {epochs} epochs",
                 "failed": f"stopped by an error: {type(self.error).__name__}: {self.error}"}[self.state]
        last = self.history[-1] if self.history else None
        record = "" if last is None else (
            f"<br>after epoch {last['epoch']}: training loss {last['train_loss']:.3f}, test accuracy "
            f"{last['test_acc']:.1%}" + ("" if last.get("keep_rate") is None else
                                          f", keep rate {last['keep_rate']:.2f}"))
        colour = "#c92a2a" if self.state == "failed" else "#222"
        self.readout.value = (f'<div style="font-size:13px;line-height:1.5;color:{colour}">{html.escape(words)} · '
                              f'step {min(self.steps, self.total_steps)} of {self.total_steps}{record}</div>')
        if force or done != self._shown_epochs:
            self._shown_epochs = done
            self.figure.value = plot_history(self.history, epochs, self.chance, self.title)._repr_png_()

    def shown(self) -> dict[str, Any]:
        """What the widget shows now: {"state", "epochs" (saved), "steps", "total steps", "board" (each column's
        {"block", "tokens", "patches"}, or None)}."""
        return {"state": self.state, "epochs": len(self.history), "steps": self.progress.value,
                "total steps": self.progress.max,
                "board": None if self.board is None else self.board.shown()}

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.root._repr_mimebundle_(**kwargs)


def training_lesson(model: nn.Module, train_set: Dataset, test_set: Dataset, config: TrainConfig,
                    method: Method | list[Method] | None = None, *, settings: dict[str, Any] | None = None,
                    compare_with: Any = "auto", num_images: int = 4, chance: float | None = None,
                    title: str | None = None) -> TrainingLesson:
    """Training that pauses and resumes from the notebook, with a progress bar and a live plot; the model trained
    so far beside a bundled one whenever it pauses or finishes (notebook 06).

    Args:
        model, train_set, test_set, config, method, settings: as `rv.train` takes them; config.out_dir is needed
            (every epoch is saved there, and a pause resumes from it) and must hold no run yet.
        compare_with: the bundled checkpoint to put beside the trained model: "auto" (the one trained with the same
            method, the baseline for none), a checkpoint name, or None (no board).
        num_images: generated test images on the board.
        chance, title: for the plot (`plot_history`).

    Raises:
        ValueError: no out_dir, or an unknown checkpoint name.
        FileExistsError: out_dir holds a run already.
    """
    return TrainingLesson(model, train_set, test_set, config, method, settings=settings, compare_with=compare_with,
                          num_images=num_images, chance=chance, title=title)
