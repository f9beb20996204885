"""Notebook 01's widget: the untouched model on one image; click patches to hide them and watch its answer change
(`hiding_lesson`)."""
from __future__ import annotations

import html
from typing import Any

from retokviz.explorer.controls import SETTING, Redraws, check_int, choose
from retokviz.explorer.session import THREADS, Session, threads
from retokviz.measure.robustness import hide_patches
from retokviz.models.bundled import name as bundled_name
from retokviz.patch import applied
from retokviz.trace.read import patch_mask
from retokviz.tutorial.widgets.base import LESSON_IMAGES, PIXELS, _session


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
