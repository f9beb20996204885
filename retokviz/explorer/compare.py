"""Methods side by side: two or three token reductions on one image at an equal token budget, one column each
(picture, legend, tokens per block, prediction), with one keep-rate slider and one block slider moving them all.

    cmp = rv.compare()                                  # offline: the bundled baseline on generated test images
    cmp = rv.compare(model, images, masks, methods=("evit", "tome"))
    cmp.set(keep_rate=0.5, block=3, view="pieces")      # checked, every argument before anything changes
    cmp.save_html("build/compare.html")                 # a standalone page with the same linked sliders
    cmp                                                 # as a cell's last line: the widget

Built from the explorer's parts: the Session's cached passes, raster.view_image for the pictures and the panels'
HTML. `Linked` and `Column` are the pieces the tutorial's lesson widgets (retokviz.tutorial.widgets) are made of
too. ipywidgets is imported when a widget is made, never by importing this module.
"""
from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retokviz._util.png import png_bytes
from retokviz.explorer import panels
from retokviz.explorer.controls import (DISPLAY, KEEP_RATES, SETTING, VIEW_TOOLTIPS, Redraws, check_int, check_keep_rate, choose,
                                        note_html)
from retokviz.explorer.inputs import DEFAULT_IMAGES, resolve_models
from retokviz.explorer.session import THREADS, Prediction, Run, Session
from retokviz.methods.budget import budget, model_shape
from retokviz.methods.registry import label as method_label
from retokviz.methods.registry import method_names
from retokviz.views.extract import TraceArrays, to_uint8
from retokviz.views.raster import VIEW_LABELS, VIEWS, legend_keys, view_image

COLUMN_PIXELS = 300               # a column's picture width in the widget
DEFAULT_METHODS = ("evit", "imagepiece", "tome")
# What each control does, in plain words (shown on hover).
TOOLTIPS = {
    "keep rate": "the share of patch tokens a reduction block keeps; every method is set to the token count EViT "
                 "ends with at this keep rate, so they compare at an equal budget",
    "block": "the transformer block whose output every picture shows (0 is the first)",
    "image": "which image every method is run on",
}


# --- checks, shared with the lesson widgets ----------------------------------------------------------------

def view_options(views: Sequence[str] = VIEWS) -> list[tuple[str, str]]:
    return [(VIEW_LABELS.get(view, view), view) for view in views]


# --- one column: a method's picture, legend, tokens and prediction -------------------------------------------

def frame(arrays: TraceArrays, view: str, block: int) -> tuple[np.ndarray, str]:
    """The picture of `view` leaving `block` ([H, W, 3] uint8, raster.view_image) and its legend (panels.legend_html,
    only what the picture holds). A view the arrays can't draw (attention for ToMe, "removed" without a mask) gives
    the plain picture and a line saying why, in the legend's place."""
    try:
        rgb = view_image(arrays, view, block)
    except ValueError as error:
        return to_uint8(arrays.picture), note_html(str(error), "#c92a2a")
    return rgb, panels.legend_html(view, legend_keys(arrays, view, block))


def tokens_html(arrays: TraceArrays, block: int, width: int = COLUMN_PIXELS) -> str:
    """The token count leaving `block` and the bar chart of every block's (panels.tokens_svg), `block` highlighted."""
    return (f'<div style="font-size:12px;line-height:1.4">after block {block}: <b>{arrays.num_tokens[block]}</b> '
            f'patch tokens of {arrays.num_patches}</div>'
            + panels.tokens_svg(arrays.num_tokens, arrays.num_patches, block, arrays.reduction_blocks, width=width))


_SHOWN = re.compile(r"after block (\d+): <b>(\d+)</b> patch tokens of (\d+)")


class Column:
    """One method's part of a board: a title, the picture (a fixed size), its legend under it, the tokens per
    block and the prediction, each an ipywidget; `show` draws them from a Run.

    Attributes:
        title, picture, legend, note, tokens, prediction: the widgets, top to bottom (`parts`).
        run: the Run shown (None before the first drawing).
    """

    def __init__(self, title: str, width: int = COLUMN_PIXELS, picture_size: tuple[int, int] | None = None,
                 tooltip: str = "") -> None:
        import ipywidgets as w

        height, across = picture_size or (1, 1)
        box = w.Layout(width=f"{width}px")
        self.width = width
        self.title = w.HTML(f'<div style="font-size:15px;font-weight:bold;border-bottom:2px solid #d6336c">'
                            f'{html.escape(title)}</div>', layout=box, tooltip=tooltip or None)
        # No tooltip on the picture: ipywidgets' Image view reads the `description` an Image lacks to place one, and
        # fails to draw at all (in the browser, "Click to show javascript error"); the title above it says it.
        self.picture = w.Image(format="png", layout=w.Layout(width=f"{width}px",
                                                             height=f"{round(width * height / across)}px"))
        self.legend = w.HTML(layout=w.Layout(width=f"{width}px"))
        self.note = w.HTML(layout=w.Layout(width=f"{width}px"))
        self.tokens = w.HTML(layout=w.Layout(width=f"{width}px"))
        self.prediction = w.HTML(layout=w.Layout(width=f"{width}px"))
        self.parts = [self.title, self.picture, self.legend, self.note, self.tokens, self.prediction]
        self.run: Run | None = None

    def show(self, run: Run, view: str, block: int, untouched: tuple[Prediction, int] | None = None,
             truth: str | None = None, prediction: bool = True) -> None:
        """Draw `run` at `view` and `block`; with `untouched` ((prediction, MACs) of the model without reduction),
        the prediction beside the untouched model's (panels.prediction_html)."""
        self.run = run
        rgb, legend = frame(run.arrays, view, block)
        self.picture.value = png_bytes(rgb, panels.display_scale(*rgb.shape[:2]), compress_level=1)
        self.legend.value = legend
        self.note.value = note_html("; ".join(run.notes))
        self.tokens.value = tokens_html(run.arrays, block, self.width)
        if prediction and untouched is not None:
            self.prediction.value = panels.prediction_html(run, untouched[0], untouched[1], truth, run.arrays.method)

    def shown(self) -> dict[str, int]:
        """What the column shows now, read back from its HTML: {"block", "tokens", "patches"}."""
        found = _SHOWN.search(self.tokens.value)
        if found is None:
            raise ValueError("the column shows nothing yet")
        return dict(zip(("block", "tokens", "patches"), map(int, found.groups())))


class Linked(Redraws):
    """The base of rv.compare and the lesson widgets: controls observed, passes run through one Session (cached),
    columns drawn once per change (several controls set in one `set` draw once). A subclass makes its controls
    and columns, lists them with `_watch`, and says which passes its columns show (`_passes`)."""

    def __init__(self, session: Session, model: str) -> None:
        self.session = session
        self.model_name = model
        self.columns: list[Column] = []
        self.runs: list[Run] = []
        self._holding = 1              # nothing is drawn until the subclass calls _start
        self._pending = 0

    # --- what a subclass gives ---

    def _passes(self) -> list[Run]:
        raise NotImplementedError

    def _view(self) -> str:
        return self.view.value

    def _image(self) -> int:
        return self.image.value

    def _make_board_controls(self, keep_rate: float, block: int, depth: int, view: str, image: int,
                             tooltips: dict[str, str]) -> None:
        """The keep-rate, block, view and image controls a board shares among its columns (rv.compare, the
        tutorial's side-by-side board), at checked values; `tooltips` holds "keep rate", "block" and "image"."""
        import ipywidgets as w

        style = {"description_width": "70px"}
        low, high, step = KEEP_RATES
        self.keep_rate = w.FloatSlider(value=keep_rate, min=low, max=high, step=step, description="keep rate",
                                       readout_format=".2f", style=style, layout=w.Layout(width="420px"),
                                       tooltip=tooltips["keep rate"])
        self.block = w.IntSlider(value=block, min=0, max=depth - 1, description="block", style=style,
                                 layout=w.Layout(width="420px"), tooltip=tooltips["block"])
        self.view = w.ToggleButtons(options=view_options(), value=view, description="view",
                                    tooltips=[VIEW_TOOLTIPS[v] for v in VIEWS],
                                    style={**style, "button_width": "auto"})
        self.image = w.Dropdown(options=self._image_options(), value=image, description="image", style=style,
                                layout=w.Layout(width="300px"), tooltip=tooltips["image"])

    def _set_board(self, keep_rate: float | None, block: int | None, view: str | None, image: int | None):
        """`set` of a board with one keep-rate, block, view and image control for all its columns (rv.compare,
        the tutorial's side-by-side board): every argument checked before any control changes, one redraw."""
        if keep_rate is not None:
            keep_rate = check_keep_rate(keep_rate)
        if block is not None:
            block = check_int("block", block, 0, self.block.max)
        if view is not None:
            view = choose("view", view, list(self.view.options))
        if image is not None:
            image = check_int("image", image, 0, len(self.session.gallery) - 1)
        with self._hold():
            for control, value in ((self.keep_rate, keep_rate), (self.block, block), (self.view, view),
                                   (self.image, image)):
                if value is not None:
                    control.value = value
        return self

    # --- drawing ---

    @property
    def model(self):
        """The nn.Module shown."""
        return self.session.models[self.model_name]

    @property
    def depth(self) -> int:
        return len(self.model.blocks)

    def _watch(self, control, level: int) -> None:
        control.observe(lambda change: self._changed(level), names="value")

    def _start(self) -> None:
        self._holding, self._pending = 0, 0
        self._refresh(SETTING)

    def _refresh(self, level: int) -> None:
        if level >= SETTING or not self.runs:
            self.runs = self._passes()
        image = self._image()
        untouched = self.session.untouched(self.model_name, image)
        entry = self.session.gallery.entries[image]
        truth = None if entry.label is None else self.session.label(self.model_name, entry.label)
        for column, run in zip(self.columns, self.runs):
            column.show(run, self._view(), self.block.value, untouched, truth, prediction=level >= SETTING)
        self._drawn(level)

    def _drawn(self, level: int) -> None:
        """After the columns are drawn (a subclass's headline)."""

    def _image_options(self) -> list[tuple[str, int]]:
        return [(f"{index}: {entry.name}", index) for index, entry in enumerate(self.session.gallery.entries)]

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.root._repr_mimebundle_(**kwargs)


# --- rv.compare ----------------------------------------------------------------------------------------------

class Compare(Linked):
    """Two or three methods side by side on one model and image, at an equal token budget (rv.method_at: every
    method at the final token count EViT reaches at the keep rate), one column each.

    Controls (ipywidgets; set their `.value` in code or drag them): `keep_rate` and `block` (one each, linked to
    every column), `view`, `image`.

    Attributes:
        methods: the methods shown, registry names, in column order.
        columns: one Column per method (picture, legend, tokens per block, prediction).
        runs: the Run each column shows (trace, arrays, prediction, MACs).
        headline: the HTML widget above the columns (model, image, the shared budget).
        session: the model, the images and the cache of recorded passes.
        root: the widget shown.
    """

    def __init__(self, session: Session, model: str, methods: Sequence[str] = DEFAULT_METHODS, *,
                 keep_rate: float = 0.7, view: str = "status", block: int | None = None, image: int = 0,
                 note: str | None = None) -> None:
        super().__init__(session, model)
        self._note = note
        self.methods = check_methods(methods, session.methods_for(model))
        # every argument checked before any widget is made
        keep_rate = check_keep_rate(keep_rate)
        view = choose("view", view, view_options())
        block = self.depth - 1 if block is None else check_int("block", block, 0, self.depth - 1)
        image = check_int("image", image, 0, len(session.gallery) - 1)
        import ipywidgets as w

        self._make_board_controls(keep_rate, block, self.depth, view, image, TOOLTIPS)
        self.headline = w.HTML()
        size = session.gallery.input_for(image, self.model)[1].shape[:2]
        self.columns = [Column(method_label(method), COLUMN_PIXELS, size,
                               tooltip=f"{method_label(method)} at the budget of the keep rate above")
                        for method in self.methods]
        parts = [part for row in zip(*(column.parts for column in self.columns)) for part in row]
        self.grid = w.GridBox(parts, layout=w.Layout(
            grid_template_columns=f"repeat({len(self.columns)}, {COLUMN_PIXELS}px)", grid_gap="4px 22px",
            align_items="flex-start"))
        self.root = w.VBox([self.headline, self.keep_rate, self.block, self.view, self.image, self.grid])
        for control, level in ((self.keep_rate, SETTING), (self.image, SETTING), (self.block, DISPLAY),
                               (self.view, DISPLAY)):
            self._watch(control, level)
        self._start()

    def _passes(self) -> list[Run]:
        return [self.session.run(self.model_name, self._image(), method, self.keep_rate.value)
                for method in self.methods]

    def _drawn(self, level: int) -> None:
        entry = self.session.gallery.entries[self.image.value]
        depth, patches = model_shape(self.model)
        share = budget(self.keep_rate.value, depth, patches)
        self.headline.value = (
            f'<div style="font-size:15px"><b>methods side by side</b> &nbsp;{html.escape(self.model_name)} · '
            f'{html.escape(entry.name)}</div><div style="font-size:12px;color:#555">keep rate '
            f'{self.keep_rate.value:.2f}: every method at EViT\'s budget, {share} of {patches} patch tokens leaving '
            f'the last block</div>' + note_html(self._note))

    @property
    def budget(self) -> int:
        """The final token budget every column is set to: EViT's count leaving the last block at the keep rate."""
        depth, patches = model_shape(self.model)
        return budget(self.keep_rate.value, depth, patches)

    def set(self, *, keep_rate: float | None = None, block: int | None = None, view: str | None = None,
            image: int | None = None) -> "Compare":
        """Set several controls at once (one redraw). Every argument is checked before any control changes: a
        refused call leaves everything as it was.

        Raises:
            ValueError: a keep rate that is not a number in 0.1..1.0 (a bool is not one), a block or image that is
                not an int in range, an unknown view (the message names the bad value and the valid ones).
        """
        return self._set_board(keep_rate, block, view, image)

    def save_html(self, path: str | os.PathLike, keep_rates: Sequence[float] | None = None) -> Path:
        """Write a standalone page of the model and image shown: every method side by side at every keep rate of
        `keep_rates` (default 0.3 to 1.0 by 0.1) and every block, with one keep-rate slider, one block slider and a
        view toggle moving every column, working offline without a kernel. Returns the page's path.

        Raises:
            ValueError: a keep rate out of the slider's range (before anything is written).
        """
        from retokviz.views import html

        rates = html.KEEP_RATES if keep_rates is None else tuple(check_keep_rate(rate) for rate in keep_rates)
        if not rates:
            raise ValueError("keep_rates: a page needs at least one keep rate")
        model, image = self.model_name, self.image.value
        runs = {method: [self.session.run(model, image, method, rate) for rate in rates] for method in self.methods}
        untouched = self.session.untouched(model, image)
        entry = self.session.gallery.entries[image]
        truth = None if entry.label is None else self.session.label(model, entry.label)
        first = runs[self.methods[0]][0].arrays
        views = [view for view in VIEWS if any(_drawable(run.arrays, view) for column in runs.values()
                                                for run in column)]
        store = html.Store()
        columns = []
        for method in self.methods:
            settings = []
            for run in runs[method]:
                arrays = run.arrays
                frames, legends = {}, {}
                for view in views:
                    drawn = [frame(arrays, view, block) for block in range(arrays.num_blocks)]
                    frames[view] = [store.picture(rgb) for rgb, _ in drawn]
                    legends[view] = [store.snippet(legend) for _, legend in drawn]
                charts = [store.snippet(panels.tokens_svg(arrays.num_tokens, arrays.num_patches, block,
                                                          arrays.reduction_blocks, width=html.COMPARE_PIXELS))
                          for block in range(arrays.num_blocks)]
                prediction = (panels.prediction_html(run, untouched[0], untouched[1], truth, arrays.method)
                              + note_html("; ".join(run.notes)))
                settings.append({"method": arrays.method, "num_tokens": arrays.num_tokens.tolist(),
                                 "frames": frames, "legends": legends, "charts": charts,
                                 "prediction": store.snippet(prediction)})
            columns.append({"label": method_label(method), "settings": settings})
        depth, patches = model_shape(self.model)
        start = {"view": self.view.value, "block": self.block.value, "keep_rate": self.keep_rate.value}
        return html.save_compare_html(
            path, columns, store, title=f"{model} · {entry.name} · methods side by side", keep_rates=rates,
            views=views, num_blocks=first.num_blocks, num_patches=first.num_patches, size=first.picture.shape[:2],
            budgets=[budget(rate, depth, patches) for rate in rates], start=start)


def _drawable(arrays: TraceArrays, view: str) -> bool:
    try:
        view_image(arrays, view, arrays.num_blocks - 1)
    except ValueError:
        return False
    return True


def check_methods(methods: Any, usable: Sequence[str]) -> tuple[str, ...]:
    """`methods` as registry names, checked: two or three different ones, each usable on the model (`usable`:
    Session.methods_for). Names or labels ("ToMe") are taken, any case.

    Raises:
        ValueError: not a sequence of two or three names, a repeated one, or a name that is not a method or that
            this model can't run (the message names it and lists the valid ones).
    """
    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise ValueError(f"methods must be a sequence of two or three method names (e.g. {DEFAULT_METHODS!r}), "
                         f"got {methods!r}")
    if not 2 <= len(methods) <= 3:
        raise ValueError(f"methods must name two or three methods to put side by side, got {len(methods)}: "
                         f"{tuple(methods)!r}")
    options = [(method_label(name), name) for name in method_names(compositions=True)]
    chosen = tuple(choose("method", method, options) for method in methods)
    for method in chosen:
        if method not in usable:
            raise ValueError(f"method {method!r} can't run on this model (one that ranks by class attention needs "
                             f"a class token, a learned one the model trained with it); the valid ones are "
                             f"{', '.join(map(repr, usable))}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"methods must be different from each other, got {tuple(methods)!r}")
    return chosen


def compare(model: Any = None, images: Any = None, masks: Any = None, *, methods: Sequence[str] = DEFAULT_METHODS,
            keep_rate: float = 0.7, view: str = "status", image: int = 0, block: int | None = None,
            labels: Any = None, class_names: list[str] | None = None, weights: str | None = None,
            num_images: int = DEFAULT_IMAGES, threads: int | None = THREADS) -> Compare:
    """Two or three methods side by side on one image at an equal token budget.

    Args:
        model: None (the bundled showcase baseline, trained without any reduction, on generated clutter test
            images with their digit masks), a timm ViT, a bundled checkpoint name or a timm model name (as
            `rv.explore` takes them; one model).
        images, masks, labels, class_names, weights, num_images, threads: as `rv.explore` takes them.
        methods: two or three of "evit", "imagepiece", "tome", "imagepiece+tome", one column each.
        keep_rate: in 0.1..1.0; every method gets EViT's final token count at it (rv.method_at).
        view: "status", "pieces", "attention" or "removed".
        image: which image of the gallery.
        block: the block shown (default: the last).

    Returns:
        a Compare (ipywidgets); show it as a cell's last line.

    Raises:
        rv.UnsupportedModelError: a model that is not a supported timm ViT.
        ValueError: bad methods (not two or three different ones, unknown, or not for this model), a bad keep rate,
            view, block or image, or images not [N, 3, H, W]; all before anything is drawn.
    """
    from retokviz.explorer import session_for
    from retokviz.models.bundled import name as bundled_name

    options = [(method_label(name), name) for name in method_names(compositions=True)]
    if not isinstance(methods, str) and isinstance(methods, Sequence):   # names checked before any model loads
        for method in methods:
            choose("method", method, options)
    check_keep_rate(keep_rate)
    choose("view", view, view_options())
    models, note = resolve_models(bundled_name("none") if model is None else model, weights)
    if len(models) != 1:
        raise ValueError(f"compare shows one model; got {len(models)}: {', '.join(models)}")
    session = session_for(models, images, masks, labels=labels, class_names=class_names, num_images=num_images,
                          threads=threads)
    return Compare(session, next(iter(models)), methods, keep_rate=keep_rate, view=view, block=block, image=image,
                   note=note)
