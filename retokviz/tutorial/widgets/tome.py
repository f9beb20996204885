"""Notebook 04's widget: ToMe on one image, its r per block, proportional attention, its token order and the block
(`tome_lesson`)."""
from __future__ import annotations

from typing import Any

from retokviz.explorer.compare import view_options
from retokviz.explorer.controls import DISPLAY, SETTING, check_int, choose
from retokviz.explorer.session import THREADS, Run, Session
from retokviz.methods.tome import ToMe
from retokviz.models.bundled import name as bundled_name
from retokviz.patch import method_of
from retokviz.tutorial.widgets.base import LESSON_IMAGES, Lesson, _session


ORDER_LABELS = [("authors' order", "official"), ("spatial order", "spatial")]


class ToMeLesson(Lesson):
    """ToMe on one image: drag r (tokens merged away in every block) and the block, switch proportional
    attention (log(size) added to every later attention towards a merged token) and the token order (the authors'
    A/B split and order, or retokviz's spatial variant), and see the pieces ToMe forms (or every patch's status),
    the tokens leaving every block and the prediction.

    Controls: `r`, `proportional`, `order`, `block`, `view` (ipywidgets; `set` them in code).
    """

    def __init__(self, session: Session, model: str, *, r: int | None = None, order: str = "official",
                 block: int | None = None, view: str = "pieces", image: int = 0, proportional: bool = True) -> None:
        super().__init__(session, model, image, "ToMe")
        patches = int(self.model.patch_embed.num_patches)
        self.max_r = max(1, patches // self.depth)
        if r is None:
            own = method_of(self.model)
            r = own.r if isinstance(own, ToMe) and isinstance(own.r, int) and own.r <= self.max_r else 8
        r = check_int("r", r, 0, self.max_r)
        order = choose("order", order, ORDER_LABELS)
        proportional = _check_flag(proportional)
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
                                    tooltips=["each piece of merged patches tinted and outlined, touching pieces "
                                              "in different colours",
                                              "each patch by what happened to it: kept alone or merged"])
        self.proportional = w.Checkbox(
            value=proportional, description="proportional attention", indent=False,
            tooltip="on: every later attention adds log(size) towards a merged token, as if all its patches were "
                    "still there (the authors' default); off: a merged token is attended once, like any other")
        self._layout([self.r, self.proportional, self.order, self.block, self.view])
        for control, level in ((self.r, SETTING), (self.proportional, SETTING), (self.order, SETTING),
                               (self.block, DISPLAY), (self.view, DISPLAY)):
            self._watch(control, level)
        self._start()

    @property
    def method(self) -> ToMe:
        """The ToMe shown."""
        return ToMe(r=self.r.value, order=self.order.value, proportional=self.proportional.value)

    def _passes(self) -> list[Run]:
        return [self.session.run(self.model_name, self.image_index, self.method, 1.0)]

    def set(self, *, r: int | None = None, order: str | None = None, block: int | None = None,
            view: str | None = None, proportional: bool | None = None) -> "ToMeLesson":
        """Set r, proportional attention, the order, the block and the view (one redraw), all checked before any
        changes.

        Raises:
            ValueError: an r or block that is not an int in range, an unknown order or view, a proportional that
                is not True or False (the message names the bad value and the valid ones).
        """
        if proportional is not None:
            proportional = _check_flag(proportional)
        if r is not None:
            r = check_int("r", r, 0, self.max_r)
        if order is not None:
            order = choose("order", order, ORDER_LABELS)
        if block is not None:
            block = check_int("block", block, 0, self.depth - 1)
        if view is not None:
            view = choose("view", view, list(self.view.options))
        with self._hold():
            for control, value in ((self.r, r), (self.proportional, proportional), (self.order, order),
                                   (self.block, block), (self.view, view)):
                if value is not None:
                    control.value = value
        return self


def tome_lesson(model: Any = None, images: Any = None, masks: Any = None, *, r: int | None = None,
                order: str = "official", proportional: bool = True, block: int | None = None, view: str = "pieces",
                image: int = 0,
                labels: Any = None, class_names: list[str] | None = None, num_images: int = LESSON_IMAGES,
                threads: int | None = THREADS) -> ToMeLesson:
    """ToMe's r per block, its token order and the block on one image (notebook 04).

    Args:
        model: None (the bundled checkpoint trained with ToMe), or what `rv.explore` takes (one model).
        r: tokens merged away per block, 0..P // depth (default: the r the model was trained with, else 8).
        order: rv.ToMe's order, "official" (the authors') or "spatial".
        proportional: rv.ToMe's proportional attention, True (the authors' default) or False.
        view: "pieces" or "status".
        images, masks, labels, class_names, num_images, threads, block, image: as `evit_lesson` takes them.

    Raises:
        ValueError: an r, block or image out of range, an unknown order or view (before anything is drawn).
    """
    choose("order", order, ORDER_LABELS)
    _check_flag(proportional)
    session, name = _session(model, bundled_name("ToMe"), images, masks, labels, class_names, num_images, threads)
    return ToMeLesson(session, name, r=r, order=order, block=block, view=view, image=image,
                      proportional=proportional)


def _check_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"proportional must be True or False, got {value!r}")
    return value
