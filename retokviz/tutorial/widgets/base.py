"""What every lesson widget shares: the Session they draw from (`MethodSession`, whose passes may be asked for with
a method object), `_session` (one model and its images, as `rv.explore` takes them), and `Lesson`, one method's
column on one image with a lesson's controls above it, the base of the EViT and ToMe lessons (notebooks 02, 04).
"""
from __future__ import annotations

import html
from typing import Any

from retokviz.explorer.compare import Column, Linked
from retokviz.explorer.controls import check_int
from retokviz.explorer.inputs import resolve_models
from retokviz.explorer.session import Run, Session
from retokviz.methods.base import Method


PIXELS = 384              # the lesson's picture width
LESSON_IMAGES = 8         # generated test images when none are given


class MethodSession(Session):
    """A Session whose passes may also be asked for with a method object (e.g. rv.ToMe(r=10)), not only a name
    and a keep rate: `run(model, image, rv.ToMe(r=10), 1.0)`, cached by the method (methods are frozen)."""

    def method_for(self, model: str, method: Any, keep_rate: float) -> object:
        if isinstance(method, (Method, tuple)):
            return method
        return super().method_for(model, method, keep_rate)


def _session(model: Any, default: str, images: Any, masks: Any, labels: Any, class_names: list[str] | None,
             num_images: int, threads: int | None) -> tuple[MethodSession, str]:
    """One model (None: the bundled checkpoint `default`) and its images, as `rv.explore` takes them."""
    from retokviz.explorer import session_for

    models, _ = resolve_models(default if model is None else model)
    if len(models) != 1:
        raise ValueError(f"a lesson shows one model; got {len(models)}: {', '.join(models)}")
    made = session_for(models, images, masks, labels=labels, class_names=class_names, num_images=num_images,
                       threads=threads)
    session = MethodSession(made.models, made.gallery, made.class_names, threads=made.threads)
    return session, next(iter(models))


class Lesson(Linked):
    """One method's column on one image, with a lesson's controls above it (see `evit_lesson`, `tome_lesson`).

    Attributes:
        column: the Column (picture, legend, note, tokens per block, prediction).
        image_index: the image shown.
        root: the widget shown.
    """

    def __init__(self, session: Session, model: str, image: int, title: str) -> None:
        super().__init__(session, model)
        self.image_index = check_int("image", image, 0, len(session.gallery) - 1)
        size = session.gallery.input_for(self.image_index, self.model)[1].shape[:2]
        self.column = Column(title, PIXELS, size, tooltip="the image, as the sliders above leave it")
        self.columns = [self.column]

    def _image(self) -> int:
        return self.image_index

    def _layout(self, controls: list) -> None:
        import ipywidgets as w

        entry = self.session.gallery.entries[self.image_index]
        self.headline = w.HTML(f'<div style="font-size:15px"><b>{html.escape(self.model_name)}</b> · '
                               f'{html.escape(entry.name)}</div>')
        column = self.column
        self.root = w.VBox([
            self.headline, *controls,
            w.HBox([w.VBox([column.picture, column.legend, column.note],
                           layout=w.Layout(width=f"{PIXELS}px", margin="0 18px 0 0")),
                    w.VBox([column.tokens, column.prediction])]),
        ])

    @property
    def run(self) -> Run:
        """The recorded pass shown (trace, arrays, prediction, MACs)."""
        return self.runs[0]

    @property
    def trace(self):
        """The rv.Trace shown."""
        return self.runs[0].trace

    def shown(self) -> dict[str, int]:
        """What the lesson shows now, read back from its HTML: {"block", "tokens", "patches"}."""
        return self.column.shown()
