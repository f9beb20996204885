"""The tutorial's lesson widgets: one method on one image with the few sliders a notebook's lesson is about, built
from the explorer's parts (the Session's cached passes, raster.view_image, the panels' HTML) as `rv.compare` is.

    from retokviz.tutorial import widgets
    lesson = widgets.evit_lesson(image=3)          # notebook 02: EViT's keep rate and block, the status view
    lesson.set(keep_rate=0.5, block=5)             # checked; as if the sliders were dragged
    lesson.shown()                                 # {"block": 5, "tokens": 20, "patches": 144}: what it shows
    lesson = widgets.tome_lesson(image=3)          # notebook 04: ToMe's r per block and its token order
    lesson = widgets.hiding_lesson(image=3)        # notebook 01: click patches to hide them, watch the answer
    lesson                                         # as a cell's last line: the widget

ipywidgets is imported when a lesson is made.
"""
from __future__ import annotations

import html
from typing import Any

from retokviz.explorer.compare import Column, Linked, view_options
from retokviz.explorer.controls import DISPLAY, SETTING, Redraws, check_int, check_keep_rate, choose
from retokviz.measure.robustness import hide_patches
from retokviz.trace.read import patch_mask
from retokviz.explorer.inputs import resolve_models
from retokviz.explorer.session import THREADS, Run, Session, threads
from retokviz.methods.base import Method
from retokviz.methods.tome import ToMe
from retokviz.models.bundled import name as bundled_name
from retokviz.patch import applied, method_of

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


ORDER_LABELS = [("authors' order", "official"), ("spatial order", "spatial")]


class ToMeLesson(Lesson):
    """ToMe on one image: drag r (tokens merged away in every block) and the block, switch the token order, and
    see the pieces ToMe forms (or every patch's status), the tokens leaving every block and the prediction.

    Proportional attention (log(size) added to every later attention) has no switch in retokviz: rv.ToMe always
    applies it. The toggle is rv.ToMe's `order`: the authors' A/B split and order, or retokviz's spatial variant.

    Controls: `r`, `order`, `block`, `view` (ipywidgets; `set` them in code).
    """

    def __init__(self, session: Session, model: str, *, r: int | None = None, order: str = "official",
                 block: int | None = None, view: str = "pieces", image: int = 0) -> None:
        super().__init__(session, model, image, "ToMe")
        patches = int(self.model.patch_embed.num_patches)
        self.max_r = max(1, patches // self.depth)
        if r is None:
            own = method_of(self.model)
            r = own.r if isinstance(own, ToMe) and isinstance(own.r, int) and own.r <= self.max_r else 8
        r = check_int("r", r, 0, self.max_r)
        order = choose("order", order, ORDER_LABELS)
        block = self.depth - 1 if block is None else check_int("block", block, 0, self.depth - 1)
        views = view_options(("pieces", "status"))
        view = choose("view", view, views)
        import ipywidgets as w

        style = {"description_width": "70px"}
        self.r = w.IntSlider(value=r, min=0, max=self.max_r, description="r", style=style,
                             layout=w.Layout(width="420px"),
                             tooltip="how many tokens every block merges away (its r most similar pairs)")
        self.order = w.ToggleButtons(
            options=ORDER_LABELS, value=order, description="order", style={**style, "button_width": "auto"},
            tooltips=["the authors' split (A: patches 1, 3, 5, ...) and order (unmerged A tokens, then B)",
                      "retokviz's variant: patches 0, 2, 4, ... are A, and tokens keep their spatial order"])
        self.block = w.IntSlider(value=block, min=0, max=self.depth - 1, description="block", style=style,
                                 layout=w.Layout(width="420px"),
                                 tooltip="the transformer block whose output is shown (0 is the first)")
        self.view = w.ToggleButtons(options=views, value=view, description="view",
                                    style={**style, "button_width": "auto"},
                                    tooltips=["each piece of merged patches in its own colour",
                                              "each patch by what happened to it: kept alone or merged"])
        self.attention = w.HTML('<div style="font-size:12px;color:#555;margin-left:74px">proportional attention: '
                                'always on (log(size) is added to every later attention)</div>')
        self._layout([self.r, self.order, self.attention, self.block, self.view])
        for control, level in ((self.r, SETTING), (self.order, SETTING), (self.block, DISPLAY),
                               (self.view, DISPLAY)):
            self._watch(control, level)
        self._start()

    @property
    def method(self) -> ToMe:
        """The ToMe shown."""
        return ToMe(r=self.r.value, order=self.order.value)

    def _passes(self) -> list[Run]:
        return [self.session.run(self.model_name, self.image_index, self.method, 1.0)]

    def set(self, *, r: int | None = None, order: str | None = None, block: int | None = None,
            view: str | None = None) -> "ToMeLesson":
        """Set r, the order, the block and the view (one redraw), all checked before any changes.

        Raises:
            ValueError: an r or block that is not an int in range, an unknown order or view (the message names
                the bad value and the valid ones).
        """
        if r is not None:
            r = check_int("r", r, 0, self.max_r)
        if order is not None:
            order = choose("order", order, ORDER_LABELS)
        if block is not None:
            block = check_int("block", block, 0, self.depth - 1)
        if view is not None:
            view = choose("view", view, list(self.view.options))
        with self._hold():
            for control, value in ((self.r, r), (self.order, order), (self.block, block), (self.view, view)):
                if value is not None:
                    control.value = value
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


def tome_lesson(model: Any = None, images: Any = None, masks: Any = None, *, r: int | None = None,
                order: str = "official", block: int | None = None, view: str = "pieces", image: int = 0,
                labels: Any = None, class_names: list[str] | None = None, num_images: int = LESSON_IMAGES,
                threads: int | None = THREADS) -> ToMeLesson:
    """ToMe's r per block, its token order and the block on one image (notebook 04).

    Args:
        model: None (the bundled checkpoint trained with ToMe), or what `rv.explore` takes (one model).
        r: tokens merged away per block, 0..P // depth (default: the r the model was trained with, else 8).
        order: rv.ToMe's order, "official" (the authors') or "spatial".
        view: "pieces" or "status".
        images, masks, labels, class_names, num_images, threads, block, image: as `evit_lesson` takes them.

    Raises:
        ValueError: an r, block or image out of range, an unknown order or view (before anything is drawn).
    """
    choose("order", order, ORDER_LABELS)
    session, name = _session(model, bundled_name("ToMe"), images, masks, labels, class_names, num_images, threads)
    return ToMeLesson(session, name, r=r, order=order, block=block, view=view, image=image)


class HidingLesson(Redraws):
    """Notebook 01: the untouched model on one image; click a patch to hide it (or show it again), or hide the
    object's or the background's patches at once, and watch the answer change. A hidden patch is filled with the
    image's mean colour (`rv.robustness.hide_patches`), as the notebook's measurement does.

    Attributes:
        hidden: the hidden patches, a set of (row, col).
        prediction: [(class name, probability)] the top 3 for the image as shown.
        picture, buttons, answer, root: the widgets.
    """

    def __init__(self, session: Session, model: str, image: int) -> None:
        import ipywidgets as w
        import torch

        from retokviz.explorer.parts import Picture

        self.session, self.model_name = session, model
        self.image_index = check_int("image", image, 0, len(session.gallery) - 1)
        self.tensor, _, self.mask = session.gallery.input_for(self.image_index, self.model)    # [1, 3, S, S]
        self.patch_size = self.model.patch_embed.patch_size[0]
        self.grid = tuple(self.model.patch_embed.grid_size)
        on_object = torch.zeros(self.grid, dtype=torch.bool) if self.mask is None else \
            patch_mask(torch.as_tensor(self.mask)[None], self.patch_size)[0]
        self.on_object = {(int(r), int(c)) for r, c in on_object.nonzero().tolist()}
        self.hidden: set[tuple[int, int]] = set()
        self.prediction: list[tuple[str, float]] = []
        self.picture = Picture(size=PIXELS, grid=list(self.grid),
                               hint="click a patch to hide it, click again to show it")
        self.buttons = {
            "object": w.Button(description="hide the object", tooltip="hide every patch that touches the object",
                               disabled=self.mask is None),
            "background": w.Button(description="hide the background",
                                   tooltip="hide every patch that touches no object pixel", disabled=self.mask is None),
            "none": w.Button(description="show everything", tooltip="hide no patch"),
        }
        for where, button in self.buttons.items():
            button.on_click(lambda _, where=where: self.hide(where))
        self.answer = w.HTML()
        entry = session.gallery.entries[self.image_index]
        self.truth = None if entry.label is None else session.label(model, entry.label)
        self.root = w.VBox([
            w.HTML(f'<div style="font-size:15px"><b>{html.escape(model)}</b> · {html.escape(entry.name)} · '
                   "click patches to hide them</div>"),
            w.HBox(list(self.buttons.values())),
            w.HBox([self.picture, self.answer]),
        ])
        self.picture.observe(self._on_pick, names="picked")
        self._refresh(SETTING)

    @property
    def model(self):
        return self.session.models[self.model_name]

    def set(self, *, hidden) -> "HidingLesson":
        """Hide exactly the patches `hidden` ((row, col) pairs), checked before anything changes."""
        rows, cols = self.grid
        patches = {(check_int("patch row", r, 0, rows - 1), check_int("patch col", c, 0, cols - 1)) for r, c in hidden}
        self.hidden = patches
        self._changed(SETTING)
        return self

    def hide(self, where: str) -> "HidingLesson":
        """Hide the patches touching the object ("object"), the others ("background"), or none ("none")."""
        where = choose("where", where, [(w, w) for w in ("object", "background", "none")])
        if where != "none" and self.mask is None:
            raise ValueError("this image has no object mask, so its object's patches are not known")
        every = {(r, c) for r in range(self.grid[0]) for c in range(self.grid[1])}
        chosen = {"object": self.on_object, "background": every - self.on_object, "none": set()}[where]
        return self.set(hidden=chosen)

    def _on_pick(self, change: dict) -> None:
        if change["new"] is None or getattr(self, "_showing", False):
            return
        patch = (int(change["new"][0]), int(change["new"][1]))
        self.set(hidden=self.hidden ^ {patch})
        self._showing = True
        try:
            self.picture.picked = None      # ready for the next click, on the same patch too
        finally:
            self._showing = False

    def _refresh(self, level: int) -> None:
        import numpy as np
        import torch

        from retokviz._util.png import png_bytes
        from retokviz.images import denormalize
        from retokviz.views.raster import draw_outline

        cols = self.grid[1]
        chosen = torch.tensor([[r * cols + c for r, c in sorted(self.hidden)]], dtype=torch.long).reshape(1, -1)
        shown = hide_patches(self.tensor.cpu(), chosen, self.patch_size)
        device = next(self.model.parameters()).device
        with torch.no_grad(), threads(self.session.threads), applied(self.model, None) as network:
            probabilities = network(shown.to(device)).float().softmax(-1)[0].cpu()
        values, indices = probabilities.topk(min(3, probabilities.numel()))
        self.prediction = [(self.session.label(self.model_name, int(i)), float(v)) for v, i in zip(values, indices)]
        rgb = (denormalize(shown[0]).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        if self.mask is not None:
            out = rgb.astype(np.float32) / 255
            draw_outline(out, np.asarray(self.mask))
            rgb = (out * 255).round().astype(np.uint8)
        self.picture.value = png_bytes(rgb, max(1, round(PIXELS / rgb.shape[0])), compress_level=1)
        on_object = len(self.hidden & self.on_object)
        self.answer.value = (
            f'<div style="font-size:12px;line-height:1.5;margin-left:16px">{len(self.hidden)} patches hidden: '
            f'{on_object} on the object, {len(self.hidden) - on_object} background'
            + (f"<br>true class: <b>{html.escape(self.truth)}</b>" if self.truth is not None else "")
            + "<br>the model reads: " + ", ".join(f"<b>{html.escape(n)}</b> {p:.0%}" if k == 0 else
                                                  f"{html.escape(n)} {p:.0%}" for k, (n, p) in
                                                  enumerate(self.prediction)) + "</div>")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.root._repr_mimebundle_(**kwargs)


def hiding_lesson(model: Any = None, images: Any = None, masks: Any = None, *, image: int = 0, labels: Any = None,
                  class_names: list[str] | None = None, num_images: int = LESSON_IMAGES,
                  threads: int | None = THREADS) -> HidingLesson:
    """Click patches to hide them and watch the untouched model's answer (notebook 01).

    Args:
        model: None (the bundled baseline, on generated test images with their masks), or what `rv.explore` takes.
        image: which image.
        images, masks, labels, class_names, num_images, threads: as `rv.explore` takes them.
    """
    session, name = _session(model, bundled_name("none"), images, masks, labels, class_names, num_images, threads)
    return HidingLesson(session, name, image)
