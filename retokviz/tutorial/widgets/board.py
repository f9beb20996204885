"""Two or three models side by side on one image, each with the method it was trained with, under one keep-rate
slider (`side_by_side`): notebook 06 puts the model trained in the notebook beside a bundled one with it (the
training lesson shows one whenever its run pauses or finishes).
"""
from __future__ import annotations

import html
from typing import Any

from retokviz.explorer.compare import Column, Linked, view_options
from retokviz.explorer.controls import DISPLAY, SETTING, check_int, check_keep_rate, choose
from retokviz.explorer.inputs import resolve_models
from retokviz.explorer.session import THREADS, Run, Session
from retokviz.patch import method_of
from retokviz.tutorial.widgets.base import LESSON_IMAGES


SIDE_TOOLTIPS = {
    "keep rate": "the share of patch tokens each reduction block keeps, the same for both models (each runs the "
                 "method it was trained with)",
    "block": "the transformer block whose output is shown (0 is the first); a model with fewer blocks shows its "
             "last",
    "image": "which image both models read (each gets it at its own size)",
}


class SideBySide(Linked):
    """Two (or three) models on one image, one column each, every model with the method it was trained with, at one
    keep rate: one keep-rate slider, block slider, view and image for all (notebook 06: the model trained in the
    notebook beside the bundled one).

    Controls: `keep_rate`, `block`, `view`, `image` (ipywidgets; `set` them in code).

    Attributes:
        names: the models shown, in column order (names in `session.models`).
        methods: the registry name of each one's method.
        columns, runs: one Column and one Run per model.
    """

    def __init__(self, session: Session, names: list[str], *, keep_rate: float | None = None, view: str = "status",
                 block: int | None = None, image: int = 0, title: str = "side by side") -> None:
        super().__init__(session, names[0])
        import ipywidgets as w

        from retokviz.explorer.compare import COLUMN_PIXELS

        if not 2 <= len(names) <= 3:
            raise ValueError(f"side by side shows two or three models, got {len(names)}")
        self.names = list(names)
        self.methods = [session.own_method(name) or "evit" for name in self.names]
        own = method_of(session.models[self.names[0]])
        first = own[0] if isinstance(own, tuple) else own
        keep_rate = check_keep_rate(getattr(first, "keep_rate", 0.7) if keep_rate is None else keep_rate)
        depth = max(len(session.models[name].blocks) for name in self.names)
        block = depth - 1 if block is None else check_int("block", block, 0, depth - 1)
        view = choose("view", view, view_options())
        image = check_int("image", image, 0, len(session.gallery) - 1)
        self._title = title
        self._make_board_controls(keep_rate, block, depth, view, image, SIDE_TOOLTIPS)
        self.headline = w.HTML()
        self.columns = []
        for name in self.names:
            size = session.gallery.input_for(image, session.models[name])[1].shape[:2]
            self.columns.append(Column(name, COLUMN_PIXELS, size, tooltip=f"{name}, at the keep rate above"))
        parts = [part for row in zip(*(column.parts for column in self.columns)) for part in row]
        grid = w.GridBox(parts, layout=w.Layout(
            grid_template_columns=f"repeat({len(self.columns)}, {COLUMN_PIXELS}px)", grid_gap="4px 22px",
            align_items="flex-start"))
        self.root = w.VBox([self.headline, self.keep_rate, self.block, self.view, self.image, grid])
        for control, level in ((self.keep_rate, SETTING), (self.image, SETTING), (self.block, DISPLAY),
                               (self.view, DISPLAY)):
            self._watch(control, level)
        self._start()

    def _passes(self) -> list[Run]:
        return [self.session.run(name, self.image.value, method, self.keep_rate.value)
                for name, method in zip(self.names, self.methods)]

    def _refresh(self, level: int) -> None:
        if level >= SETTING or not self.runs:
            self.runs = self._passes()
        image = self.image.value
        entry = self.session.gallery.entries[image]
        for column, name, run in zip(self.columns, self.names, self.runs):
            truth = None if entry.label is None else self.session.label(name, entry.label)
            block = min(self.block.value, len(self.session.models[name].blocks) - 1)
            column.show(run, self.view.value, block, self.session.untouched(name, image), truth,
                        prediction=level >= SETTING)
        self.headline.value = (
            f'<div style="font-size:15px"><b>{html.escape(self._title)}</b> · {html.escape(entry.name)}</div>'
            f'<div style="font-size:12px;color:#555">each model with the method it was trained with, at keep rate '
            f'{self.keep_rate.value:.2f}</div>')

    def shown(self) -> list[dict[str, int]]:
        """What each column shows now: [{"block", "tokens", "patches"}] in column order."""
        return [column.shown() for column in self.columns]

    def set(self, *, keep_rate: float | None = None, block: int | None = None, view: str | None = None,
            image: int | None = None) -> "SideBySide":
        """Set several controls at once (one redraw), every argument checked before any changes.

        Raises:
            ValueError: a keep rate, block or image out of range, an unknown view.
        """
        return self._set_board(keep_rate, block, view, image)


def side_by_side(models: Any, images: Any = None, masks: Any = None, *, labels: Any = None,
                 class_names: list[str] | None = None, keep_rate: float | None = None, view: str = "status",
                 block: int | None = None, image: int = 0, num_images: int = LESSON_IMAGES,
                 threads: int | None = THREADS, title: str = "side by side") -> SideBySide:
    """Two or three models on one image, each with the method it was trained with, at one keep rate.

    Args:
        models: {name: model}, models as `rv.explore` takes them (nn.Module or a bundled checkpoint name).
        images, masks, labels, class_names, num_images, threads: as `rv.explore` takes them (without images:
            generated clutter test images at the largest model's size, with their masks and digit labels).
        keep_rate, view, block, image: the first setting (keep rate: the first model's own; block: the last).
    """
    from retokviz.explorer import session_for
    from retokviz.explorer.inputs import Gallery, model_size

    resolved, _ = resolve_models(models)
    if images is None:          # generated test images, at the largest model's size: each gets them at its own
        from retokviz import data

        largest = max(model_size(network)[0] for network in resolved.values())
        images, labels, masks = data.make_clutter(num_images, seed=0, split="test",
                                                  image_size=max(64, -(-largest // 16) * 16))
        gallery = Gallery.from_images(images, masks, next(iter(resolved.values())), labels=labels,
                                      names=[f"digit {int(label)}" for label in labels])
        session = Session(resolved, gallery, {name: class_names or list(data.CLASSES) for name in resolved},
                          threads=threads)
    else:
        session = session_for(resolved, images, masks, labels=labels, class_names=class_names,
                              num_images=num_images, threads=threads)
    return SideBySide(session, list(resolved), keep_rate=keep_rate, view=view, block=block, image=image,
                      title=title)
