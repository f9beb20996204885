"""Notebook 02's widget: EViT on one image, its keep rate and block on sliders, the status view (`evit_lesson`)."""
from __future__ import annotations

from typing import Any

from retokviz.explorer.controls import DISPLAY, SETTING, check_int, check_keep_rate
from retokviz.explorer.session import THREADS, Run, Session
from retokviz.models.bundled import name as bundled_name
from retokviz.tutorial.widgets.base import LESSON_IMAGES, Lesson, _session


class EViTLesson(Lesson):
    """EViT on one image: drag the keep rate and the block, see which patches are kept and which are fused
    (the status view), the tokens leaving every block and the prediction.

    Controls: `keep_rate`, `block` (ipywidgets; `set` them in code).
    """

    def __init__(self, session: Session, model: str, *, keep_rate: float = 0.7, block: int | None = None,
                 image: int = 0) -> None:
        super().__init__(session, model, image, "EViT")
        keep_rate = check_keep_rate(keep_rate)
        block = self.depth - 1 if block is None else check_int("block", block, 0, self.depth - 1)
        import ipywidgets as w

        style = {"description_width": "70px"}
        self.keep_rate = w.FloatSlider(
            value=keep_rate, min=0.1, max=1.0, step=0.05, description="keep rate", readout_format=".2f",
            style=style, layout=w.Layout(width="420px"),
            tooltip="the share of patch tokens each reduction block keeps; the others are fused into one token")
        self.block = w.IntSlider(value=block, min=0, max=self.depth - 1, description="block", style=style,
                                 layout=w.Layout(width="420px"),
                                 tooltip="the transformer block whose output is shown (0 is the first)")
        self._layout([self.keep_rate, self.block])
        self._watch(self.keep_rate, SETTING)
        self._watch(self.block, DISPLAY)
        self._start()

    def _view(self) -> str:
        return "status"

    def _passes(self) -> list[Run]:
        return [self.session.run(self.model_name, self.image_index, "evit", self.keep_rate.value)]

    def set(self, *, keep_rate: float | None = None, block: int | None = None) -> "EViTLesson":
        """Set the keep rate and the block (one redraw), both checked before either changes.

        Raises:
            ValueError: a keep rate that is not a number in 0.1..1.0, a block that is not an int in range.
        """
        if keep_rate is not None:
            keep_rate = check_keep_rate(keep_rate)
        if block is not None:
            block = check_int("block", block, 0, self.depth - 1)
        with self._hold():
            if keep_rate is not None:
                self.keep_rate.value = keep_rate
            if block is not None:
                self.block.value = block
        return self


def evit_lesson(model: Any = None, images: Any = None, masks: Any = None, *, keep_rate: float = 0.7,
                block: int | None = None, image: int = 0, labels: Any = None, class_names: list[str] | None = None,
                num_images: int = LESSON_IMAGES, threads: int | None = THREADS) -> EViTLesson:
    """EViT's keep rate and block on one image (notebook 02).

    Args:
        model: None (the bundled checkpoint trained with EViT, on generated test images with their masks), or what
            `rv.explore` takes (one model).
        images, masks, labels, class_names, num_images, threads: as `rv.explore` takes them.
        keep_rate, block, image: the first setting (block: default the last).

    Raises:
        ValueError: a keep rate, block or image out of range (before anything is drawn).
    """
    session, name = _session(model, bundled_name("EViT"), images, masks, labels, class_names, num_images, threads)
    return EViTLesson(session, name, keep_rate=keep_rate, block=block, image=image)
