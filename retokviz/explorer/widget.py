"""The explorer widget: controls in, one picture and a few panels out. Everything it shows comes from the
session's cached passes; the block slider, the view toggle and the patch picker never run the model.

    ex = rv.explore()                 # see retokviz.explorer.explore
    ex.keep_rate.value = 0.5          # a control set in code acts as if dragged
    ex.set(method="tome", block=3)    # several at once (one redraw), checked: bad names list the valid ones
    ex                                # as a cell's last line: the widget
"""
from __future__ import annotations

import html
import io
import numbers
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from retokviz._util.png import png_bytes
from retokviz.explorer import panels
from retokviz.explorer.controls import (DISPLAY, KEEP_RATES, LEARNED_SCORES_TOOLTIP, SETTING, VIEW_TOOLTIPS, Redraws,
                                        check_int, choose, note_html)
from retokviz.explorer.parts import Picture, Player
from retokviz.explorer.session import Run, Session
from retokviz.methods.registry import label as method_label
from retokviz.images import load_image, prepare
from retokviz.views.extract import lineage, to_uint8
from retokviz.views.raster import VIEW_LABELS, VIEWS, legend_keys, lineage_image, view_image, view_labels

DEFAULT_KEEP_RATE = 0.7
# The real model the picker offers beside the models given: ImageNet's classes, loaded when it is picked, where
# its pretrained weights can be had (the local cache, else the network).
REAL_MODEL = "deit_small_patch16_224"
REAL_LABEL = f"{REAL_MODEL} (ImageNet, 1000 classes)"
# What each control does, in plain words (shown on hover).
TOOLTIPS = {
    "model": "which model: the bundled ones are small ViTs trained on the generated digits (they know only the "
             f"digits 0-9); {REAL_MODEL} is a real ImageNet model, loaded when you pick it if its weights can be had",
    "method": "how tokens are reduced",
    "keep rate": "the share of patch tokens a reduction block keeps (ToMe: merges to the same token budget)",
    "block": "the transformer block whose output is shown (0 is the first)",
    "play": "step through the blocks from here; click again to pause where it is",
    "image": "which image to show",
    "upload": "show a picture of your own (resized and centre-cropped to the model's input)",
    "follow": "follow one patch through the blocks: which token carries it, and with which other patches",
    "row": "the followed patch's row (or click the picture)",
    "col": "the followed patch's column (or click the picture)",
    "picture": "click a patch to follow it through the blocks; arrow keys move it, Escape stops",
}
METHOD_TOOLTIPS = {
    "evit": "EViT: keep the tokens the class token attends to most, fuse the rest into one token",
    "imagepiece": "ImagePiece: merge the least meaningful tokens into pieces, keep the pieces that gain meaning",
    "tome": "ToMe: merge the most similar tokens in every block",
    "imagepiece+tome": "ImagePiece, then ToMe on what is left",
    "dynamicvit": "DynamicViT: small learned modules score the tokens; the lowest scored are dropped",
}


def _fitted(image: Any, side: int) -> str:
    """How `image` (a path, PIL image or array) was made to fit a model taking side x side pictures, in words."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    width, height = (image.shape[1], image.shape[0]) if isinstance(image, np.ndarray) else image.size
    scale = side / min(width, height)
    how = f"enlarged {scale:.1f}x" if scale > 1.05 else (f"reduced to {scale:.0%}" if scale < 0.95 else "kept its size")
    cut = "" if width == height else f", then centre-cropped to {side} x {side} (the {'sides' if width > height else 'top and bottom'} cut off)"
    return f"your picture is {width} x {height} px: {how} so its shorter side is {side} px{cut}"


def _renamed(block: int | None, layer: int | None) -> int | None:
    """`block`, or the deprecated `layer` where only it is given."""
    if layer is None:
        return block
    warnings.warn("layer= is now block=", DeprecationWarning, stacklevel=3)
    if block is not None and block != layer:
        raise ValueError(f"block={block!r} and its former name layer={layer!r} disagree; give block= alone")
    return layer


class Explorer(Redraws):
    """An interactive view of one model's token reduction, image by image, block by block.

    Controls (ipywidgets, set their `.value` in code or drag them): `checkpoint` (which model), `method`,
    `keep_rate`, `block` (with `play` beside it; `layer` is its former name), `view`, `image`, `upload` (a picture of your own),
    `follow` with `patch_row` / `patch_col` (a patch's lineage).

    With a sweep table (`python -m retokviz.sweep`), a "measured" line gives what the table measured for the method
    and keep rate shown (speed-up, latency, top-1), and a "measured trade-off" panel below (closed at first) draws
    the table's trade-off with that setting ringed; `tradeoff` is its views.tradeoff.TradeoffView.

    Attributes:
        session: the models, the images and the cache of recorded passes.
        measured: the HTML widget of the measured line (empty without a table).
        tradeoff: the trade-off view of the sweep table, or None without a table.
        tradeoff_panel: the accordion holding it (`selected_index = 0` opens it, None closes it), or None.
        root: the widget shown.
    """

    def __init__(self, session: Session, *, model: str | None = None, method: str | None = None,
                 keep_rate: float | None = None, view: str = "status", block: int | None = None, image: int = 0,
                 note: str | None = None, tradeoff: Any = None, tradeoff_source: str = "sweep table") -> None:
        import ipywidgets as w

        self.session = session
        self._holding = 0
        self._pending = 0
        self._run: Run | None = None
        names = list(session.models)
        first = model if model is not None else names[0]
        choose("model", first, [(name, name) for name in names])
        controls = {"description_width": "70px"}
        options = [(name, name) for name in names] + ([] if REAL_MODEL in names else [(REAL_LABEL, REAL_MODEL)])
        self.checkpoint = w.Dropdown(options=options, value=first, description="model", style=controls,
                                     tooltip=TOOLTIPS["model"], layout=w.Layout(width="420px"))
        self.method = w.ToggleButtons(options=[("EViT", "evit")], description="method", tooltips=[], style={
            **controls, "button_width": "auto"})
        low, high, step = KEEP_RATES
        self.keep_rate = w.FloatSlider(value=DEFAULT_KEEP_RATE, min=low, max=high, step=step, description="keep rate",
                                       readout_format=".2f", style=controls, layout=w.Layout(width="420px"),
                                       tooltip=TOOLTIPS["keep rate"])
        self.block = w.IntSlider(value=0, min=0, max=1, description="block", style=controls,
                                 layout=w.Layout(width="330px"), tooltip=TOOLTIPS["block"])
        self.play = Player(interval=900, hint=TOOLTIPS["play"])
        w.jslink((self.play, "value"), (self.block, "value"))
        w.jslink((self.play, "max"), (self.block, "max"))
        self.view = w.ToggleButtons(options=[(VIEW_LABELS[v], v) for v in VIEWS], value="status",
                                    description="view", style={**controls, "button_width": "auto"},
                                    tooltips=[VIEW_TOOLTIPS[v] for v in VIEWS])
        self.image = w.Dropdown(options=self._image_options(), value=0, description="image", style=controls,
                                layout=w.Layout(width="260px"), tooltip=TOOLTIPS["image"])
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="your picture",
                                   layout=w.Layout(width="150px"), tooltip=TOOLTIPS["upload"])
        self.follow = w.Checkbox(value=False, description="follow a patch", indent=False,
                                 layout=w.Layout(width="120px"), tooltip=TOOLTIPS["follow"])
        self.patch_row = w.IntSlider(value=0, min=0, max=1, description="row", style={"description_width": "28px"},
                                     layout=w.Layout(width="150px"), tooltip=TOOLTIPS["row"])
        self.patch_col = w.IntSlider(value=0, min=0, max=1, description="col", style={"description_width": "28px"},
                                     layout=w.Layout(width="150px"), tooltip=TOOLTIPS["col"])
        self.picture = Picture(size=panels.DISPLAY_PIXELS, hint=TOOLTIPS["picture"])
        self.legend = w.HTML(layout=w.Layout(width=f"{panels.DISPLAY_PIXELS}px"))
        self.tokens = w.HTML()
        self.prediction = w.HTML()
        self.lineage = w.HTML()
        self._note = note
        self.message = w.HTML(note_html(note), layout=w.Layout(width=f"{panels.DISPLAY_PIXELS}px"))
        self.title = w.HTML(layout=w.Layout(height="26px", overflow="hidden"))
        self.measured = w.HTML()
        self.tradeoff = self.tradeoff_panel = None
        self._tradeoff_source = tradeoff_source
        below = []
        if tradeoff is not None:
            from retokviz.views.tradeoff import TradeoffView

            self.tradeoff = TradeoffView(tradeoff, draw=False)     # drawn when its panel is opened
            self.tradeoff_panel = w.Accordion(children=[self.tradeoff.root], selected_index=None)
            self.tradeoff_panel.set_title(0, f"measured trade-off ({tradeoff_source})")
            self.tradeoff_panel.observe(lambda change: self._draw_tradeoff(), names="selected_index")
            for control in (self.tradeoff.model, self.tradeoff.batch_size, self.tradeoff.dtype):
                control.observe(lambda change: self._draw_measured(), names="value")
            below = [self.tradeoff_panel]
        # The picture's column has a fixed width and the notes go under the picture, so nothing that changes with a
        # view, a legend or a note moves the controls beside it.
        self.root = w.VBox([
            self.title,
            w.HBox([
                w.VBox([self.picture, self.legend, self.message],
                       layout=w.Layout(width=f"{panels.DISPLAY_PIXELS}px", min_width=f"{panels.DISPLAY_PIXELS}px",
                                       margin="0 16px 0 0")),
                w.VBox([self.checkpoint, self.method, self.keep_rate, w.HBox([self.play, self.block]), self.view,
                        w.HBox([self.image, self.upload]), w.HBox([self.follow, self.patch_row, self.patch_col]),
                        self.tokens, self.prediction, self.measured, self.lineage]),
            ]),
            *below,
        ])
        self.checkpoint.observe(self._on_model, names="value")
        for control, level in ((self.method, SETTING), (self.keep_rate, SETTING),
                               (self.image, SETTING), (self.block, DISPLAY), (self.view, DISPLAY),
                               (self.follow, DISPLAY), (self.patch_row, DISPLAY), (self.patch_col, DISPLAY)):
            control.observe(lambda change, level=level: self._changed(level), names="value")
        self.upload.observe(self._on_upload, names="value")
        self.picture.observe(self._on_pick, names="picked")
        self.follow.observe(self._on_follow, names="value")
        self._holding += 1   # the first drawing waits for every control to be set
        try:
            self._configure_model(method, keep_rate)
            self.set(view=view, image=image, **({} if block is None else {"block": block}))
        finally:
            self._holding -= 1
        self._pending = 0
        self._refresh(SETTING)

    # --- what is shown ------------------------------------------------------------------------------------

    @property
    def run(self) -> Run:
        """The recorded pass shown now (trace, arrays, prediction, MACs)."""
        return self._run

    @property
    def trace(self):
        """The rv.Trace shown now."""
        return self._run.trace

    @property
    def model(self):
        """The nn.Module shown now."""
        return self.session.models[self.checkpoint.value]

    @property
    def layer(self):
        """The block slider by its former name (deprecated: use `block`)."""
        warnings.warn("Explorer.layer is now Explorer.block", DeprecationWarning, stacklevel=2)
        return self.block

    @property
    def patch(self) -> tuple[int, int] | None:
        """The patch followed, (row, col), or None."""
        return (self.patch_row.value, self.patch_col.value) if self.follow.value else None

    def set(self, *, model: str | None = None, method: str | None = None, keep_rate: float | None = None,
            block: int | None = None, view: str | None = None, image: int | None = None,
            patch: tuple[int, int] | None | str = "keep", layer: int | None = None) -> "Explorer":
        """Set several controls at once, checked (one redraw). Names may be values ("tome") or labels ("ToMe").

        Args:
            patch: (row, col) to follow a patch, None to stop following, or left out.
            layer: the former name of `block` (deprecated).

        Raises:
            ValueError: an unknown model, method or view (the message lists the valid ones); a keep rate that is
                not a number in the slider's range (a bool is not one); a block, image or patch that is not an int
                in range. Every argument is checked, against the model it names (its methods, blocks and patch
                grid), before any control changes: a refused call leaves every control as it was.
        """
        block = _renamed(block, layer)
        # Check everything first, against the model that will be shown, and only then change controls.
        target = self.checkpoint.value if model is None else choose("model", model, list(self.checkpoint.options))
        if target not in self.session.models:
            self._load_real(target)          # WeightsUnavailable (a RuntimeError) where none can be had
        network = self.session.models[target]
        if method is not None:
            method = choose("method", method, [(method_label(m), m) for m in self.session.methods_for(target)])
        if keep_rate is not None:
            low, high, _ = KEEP_RATES
            if isinstance(keep_rate, (bool, np.bool_)) or not isinstance(keep_rate, numbers.Real) \
                    or not low <= float(keep_rate) <= high:
                raise ValueError(f"keep_rate must be a number in {low}..{high}, got {keep_rate!r}")
            keep_rate = float(keep_rate)
        if view is not None:
            view = choose("view", view, list(self.view.options))
        if block is not None:
            block = check_int("block", block, 0, len(network.blocks) - 1)
        if image is not None:
            image = check_int("image", image, 0, len(self.session.gallery) - 1)
        if patch is not None and not (isinstance(patch, str) and patch == "keep"):
            if isinstance(patch, str) or not isinstance(patch, (tuple, list)) or len(patch) != 2:
                raise ValueError(f"patch must be (row, col), None or left out, got {patch!r}")
            rows, cols = network.patch_embed.grid_size
            patch = (check_int("patch row", patch[0], 0, rows - 1), check_int("patch col", patch[1], 0, cols - 1))
        with self._hold():
            if model is not None:
                self.checkpoint.value = target
            if method is not None:
                self.method.value = method
            if keep_rate is not None:
                self.keep_rate.value = keep_rate
            if view is not None:
                self.view.value = view
            if block is not None:
                self.block.value = block
            if image is not None:
                self.image.value = image
            if patch is None:
                self.follow.value = False
            elif patch != "keep":
                self.patch_row.value, self.patch_col.value = patch
                self.follow.value = True
        return self

    def add_image(self, image: Any, name: str | None = None) -> int:
        """Add a picture of your own (a path, a PIL image or an [H, W, 3] array), resized and centre-cropped for the
        model shown (rv.images.prepare), and show it. Returns its index."""
        _, picture = prepare(image, self.model)
        name = name or (Path(image).name if isinstance(image, (str, os.PathLike)) else "your picture")
        index = self.session.gallery.add_picture(picture, name, _fitted(image, picture.shape[0]))
        with self._hold():
            self.image.options = self._image_options()
            self.image.value = index
        return index

    def save_html(self, path: str | os.PathLike, keep_rates: tuple[float, ...] | None = None) -> Path:
        """Write a standalone web page of the image, model and method shown, at every keep rate of `keep_rates`
        (default 0.3 to 1.0 by 0.1) and every block, with sliders that work without a kernel or a network. With a
        sweep table, each keep rate carries its measured line, as in the explorer.

        Returns:
            the page's path.
        """
        from retokviz.views import html as page

        rates = page.KEEP_RATES if keep_rates is None else tuple(keep_rates)
        model, image, method = self.checkpoint.value, self.image.value, self.method.value
        runs = [self.session.run(model, image, method, rate) for rate in rates]
        untouched, untouched_macs = self.session.untouched(model, image)
        entry = self.session.gallery.entries[image]
        truth = None if entry.label is None else self.session.label(model, entry.label)
        settings = [page.Setting(rate, run.arrays, run.prediction.top, run.macs, self._measured_html(rate))
                    for rate, run in zip(rates, runs)]
        start = {"view": self.view.value, "block": self.block.value, "keep_rate": self.keep_rate.value}
        return page.save_html(path, settings, title=f"{model} · {method_label(method)} · {entry.name}",
                              untouched=untouched.top, untouched_macs=untouched_macs, truth=truth, start=start)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.root._repr_mimebundle_(**kwargs)

    # --- redrawing ----------------------------------------------------------------------------------------

    def _load_real(self, name: str) -> None:
        """Load the real model `name` (pretrained weights: the cache, else the network) into the session, with
        ImageNet's class names and scikit-image's photographs added to the images; WeightsUnavailable if none."""
        from retokviz import data
        from retokviz.explorer import _class_names
        from retokviz.explorer.inputs import check_supported
        from retokviz.models.weights import load_pretrained

        model, _ = load_pretrained(name)
        model.eval()
        self.session.models[name] = check_supported(model)
        self.session.class_names[name] = _class_names(model, bundled=False)
        known = {entry.name for entry in self.session.gallery.entries}
        for photo in data.PHOTOS:
            if photo not in known:
                picture = data.sample_photo(photo, 256)[1]                     # uint8
                self.session.gallery.add_picture(picture.astype(np.float32) / 255.0, photo)
        self._holding += 1          # new options, not a new choice: drawn by the caller
        try:
            self.image.options = self._image_options()
        finally:
            self._holding -= 1

    def _on_model(self, change: dict) -> None:
        """Another model: fit the controls to it now, so that a method set next (in the same `set`) applies. The
        real model is loaded when first picked; where its weights can't be had, the note says so and how else,
        and the picker goes back to the model shown."""
        if change["new"] not in self.session.models:
            try:
                self._load_real(change["new"])
            except Exception as error:   # noqa: BLE001 - a callback's exception reaches no one: said in the note
                with self._hold():
                    self.checkpoint.value = change["old"]
                self.message.value = note_html(        # after the redraw, which shows the explorer's own note
                    f"{change['new']} can't be shown here: {error}. With its weights in a file: "
                    f"rv.explore('{change['new']}', weights='file.safetensors'); or any timm ViT: rv.explore(model)")
                return
            self.message.value = note_html(f"{change['new']} knows ImageNet's 1000 classes: pick a photograph "
                                           "below, or upload your own")
        self._holding += 1   # the controls it adjusts are drawn once, below
        try:
            self._configure_model()
        finally:
            self._holding -= 1
        self._changed(SETTING)

    def _refresh(self, level: int) -> None:
        if level >= SETTING or self._run is None:
            self._run = self.session.run(self.checkpoint.value, self.image.value, self.method.value,
                                         self.keep_rate.value)
        self._draw(level)

    def _configure_model(self, method: str | None = None, keep_rate: float | None = None) -> None:
        """Fit the controls to the model now chosen: its methods (its own selected), blocks and patch grid."""
        name = self.checkpoint.value
        session = self.session
        usable = session.methods_for(name)
        options = [(method_label(m), m) for m in usable]
        if method is not None:
            chosen = choose("method", method, options)
        else:
            own = session.own_method(name)
            chosen = own if own in usable else (self.method.value if self.method.value in usable else usable[0])
        self.method.options = options
        self.method.tooltips = [METHOD_TOOLTIPS.get(m, method_label(m)) for m in usable]
        self.method.value = chosen
        if keep_rate is not None:
            self.set(keep_rate=keep_rate)
        network = session.models[name]
        depth = len(network.blocks)
        rows, cols = network.patch_embed.grid_size
        self.block.max = self.play.max = depth - 1
        self.patch_row.max, self.patch_col.max = rows - 1, cols - 1
        self.picture.grid = [rows, cols]
        if self.block.value == 0 and self._run is None:
            self.block.value = depth - 1

    def _name_views(self, learned_scores: bool) -> None:
        """The view buttons' labels and tooltips for the method shown: the attention view is "learned scores" where
        a learned module scored the tokens (DynamicViT). The view chosen stays chosen."""
        labels = view_labels(learned_scores)
        options = [(labels[v], v) for v in VIEWS]
        if list(self.view.options) == options:
            return
        value, pending = self.view.value, self._pending
        self._holding += 1
        try:
            self.view.options = options
            self.view.tooltips = [LEARNED_SCORES_TOOLTIP if v == "attention" and learned_scores else VIEW_TOOLTIPS[v]
                                  for v in VIEWS]
            self.view.value = value
        finally:
            self._holding -= 1
            self._pending = pending

    def _draw(self, level: int) -> None:
        run = self._run
        arrays = run.arrays
        self._name_views(arrays.learned_scores)
        block, view, patch = self.block.value, self.view.value, self.patch
        note = ""
        try:
            if patch is not None:
                rgb = lineage_image(arrays, block, patch)
                legend = panels.legend_html("lineage", legend_keys(arrays, "status", block))
            else:
                rgb = view_image(arrays, view, block)
                legend = panels.legend_html(view, legend_keys(arrays, view, block))
            if view == "removed" and arrays.mask is None and patch is None:
                note = note_html("this picture has no object outline, so what was let go of is one colour: which "
                                  "patches are background can only be counted where the object's pixels are known, "
                                  "as in the generated images")
        except ValueError as error:   # e.g. attention of ToMe
            rgb, legend = to_uint8(arrays.picture), ""
            note = f'<div style="color:#c92a2a;font-size:12px;line-height:1.4;max-width:380px">{html.escape(str(error))}</div>'
        self.picture.value = png_bytes(rgb, panels.display_scale(*rgb.shape[:2]), compress_level=1)
        self._showing_pick = True
        try:
            self.picture.picked = None if patch is None else list(patch)
        finally:
            self._showing_pick = False
        self.legend.value = note + legend
        self.tokens.value = (f'<div style="font-size:12px;line-height:1.4">after block {block}: <b>{arrays.num_tokens[block]}</b> '
                             f'patch tokens of {arrays.num_patches}</div>'
                             + panels.tokens_svg(arrays.num_tokens, arrays.num_patches, block,
                                                 arrays.reduction_blocks))
        self.lineage.value = "" if patch is None else panels.lineage_html(lineage(arrays, patch), patch)
        if level >= SETTING:
            self._draw_setting()

    def _draw_setting(self) -> None:
        session, run = self.session, self._run
        model, image = self.checkpoint.value, self.image.value
        untouched, untouched_macs = session.untouched(model, image)
        entry = session.gallery.entries[image]
        truth = None if entry.label is None else session.label(model, entry.label)
        classes = "" if truth is not None else panels.classes_line(session.class_names.get(model),
                                                                     session.models[model].num_classes)
        self.prediction.value = panels.prediction_html(run, untouched, untouched_macs, truth, run.arrays.method,
                                                       classes)
        self.message.value = note_html("; ".join((*filter(None, [self._note, entry.note]), *run.notes)))
        self.title.value = (f'<div style="font-size:15px"><b>retokviz explorer</b> &nbsp;{html.escape(model)} · '
                            f'{html.escape(method_label(self.method.value))} · {html.escape(entry.name)}</div>')
        self._draw_measured()
        self._draw_tradeoff()

    def _draw_measured(self) -> None:
        """The sweep table's figures for the method and keep rate shown (nothing without a table)."""
        if self.tradeoff is not None:
            self.measured.value = self._measured_html(self.keep_rate.value)

    def _measured_html(self, keep_rate: float) -> str:
        """The measured line of the method shown at `keep_rate` ("" without a table)."""
        if self.tradeoff is None:
            return ""
        from retokviz.views.tradeoff import nearest, select, untouched

        view = self.tradeoff
        try:
            rows, _ = select(view.rows, view.model.value, view.batch_size.value, view.dtype.value)
        except ValueError as error:            # e.g. this model was not swept at this batch size
            return note_html(f"measured ({self._tradeoff_source}): {error}")
        row = nearest(rows, self.method.value, keep_rate)
        return panels.measured_html(row, untouched(rows), keep_rate, method_label(self.method.value),
                                    self._tradeoff_source)

    def _draw_tradeoff(self) -> None:
        """Ring the setting shown in the trade-off panel, when the panel is open."""
        if self.tradeoff_panel is not None and self.tradeoff_panel.selected_index == 0:
            self.tradeoff.mark(self.method.value, self.keep_rate.value)

    def _image_options(self) -> list[tuple[str, int]]:
        return [(f"{index}: {entry.name}", index) for index, entry in enumerate(self.session.gallery.entries)]

    def _on_pick(self, change: dict) -> None:
        """A patch clicked on the picture (or moved to with the arrow keys): follow it; Escape (None) stops."""
        if getattr(self, "_showing_pick", False):
            return
        picked = change["new"]
        with self._hold():
            if picked is None:
                self.follow.value = False
            else:
                self.patch_row.value, self.patch_col.value = int(picked[0]), int(picked[1])
                self.follow.value = True

    def _on_follow(self, change: dict) -> None:
        """The picture marks the followed patch; unticking "follow" clears the pick."""
        if not change["new"] and self.picture.picked is not None:
            self._showing_pick = True
            try:
                self.picture.picked = None
            finally:
                self._showing_pick = False

    def _on_upload(self, change: dict) -> None:
        """An uploaded picture, read (load_image) and shown; one that can't be read is said in `message`, never
        raised (an ipywidgets callback's exception reaches no one), and leaves every other control as it was.
        The upload's value is cleared afterwards, so that its counter doesn't stay at 1."""
        if getattr(self, "_clearing_upload", False) or not change["new"]:
            return                                       # the clearing below, observed
        try:
            for item in change["new"]:
                name = str(item.get("name", "your picture"))
                try:
                    picture = load_image(io.BytesIO(bytes(item["content"])), name=name)
                    self.add_image(picture, name)
                except (OSError, ValueError) as error:       # corrupt, not an image, too large, unsupported
                    self.message.value = note_html(f"could not read {name}: {error}")
                except Exception as error:                   # noqa: BLE001 - anything else, said, not lost
                    self.message.value = note_html(f"could not read {name}: {type(error).__name__}: {error}")
        finally:
            self._clearing_upload = True
            try:
                self.upload.value = ()
            finally:
                self._clearing_upload = False
