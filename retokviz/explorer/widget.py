"""The explorer widget: controls in, one picture and a few panels out. Everything it shows comes from the
session's cached passes; the block slider, the view toggle and the patch picker never run the model.

    ex = rv.explore()                 # see retokviz.explorer.explore
    ex.keep_rate.value = 0.5          # a control set in code acts as if dragged
    ex.set(method="tome", block=3)    # several at once (one redraw), checked: bad names list the valid ones
    ex                                # as a cell's last line: the widget
"""
from __future__ import annotations

import io
import numbers
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from retokviz._util.png import png_bytes
from retokviz.explorer import panels
from retokviz.explorer.session import Run, Session
from retokviz.methods.registry import label as method_label
from retokviz.images import load_image, prepare
from retokviz.views.extract import lineage, to_uint8
from retokviz.views.raster import VIEWS, legend_keys, lineage_image, view_image

KEEP_RATES = (0.1, 1.0, 0.05)                    # the slider's min, max, step
VIEW_LABELS = {"status": "status", "pieces": "pieces", "attention": "attention", "removed": "removed background"}
DEFAULT_KEEP_RATE = 0.7
# What a change needs redrawn: the picture and panels only, or a (cached) pass first.
DISPLAY, SETTING = 1, 2


def _choose(kind: str, value: Any, options: list[tuple[str, Any]]) -> Any:
    """The option `value` names (its value or its label, any case), or a ValueError listing the valid ones."""
    for text, option in options:
        if value == option or (isinstance(value, str) and value.lower() in (str(option).lower(), text.lower())):
            return option
    valid = ", ".join(f"{option!r}" + (f" ({text})" if text != str(option) else "") for text, option in options)
    raise ValueError(f"unknown {kind} {value!r}; the valid ones are {valid}")


def _renamed(block: int | None, layer: int | None) -> int | None:
    """`block`, or the deprecated `layer` where only it is given."""
    if layer is None:
        return block
    warnings.warn("layer= is now block=", DeprecationWarning, stacklevel=3)
    if block is not None and block != layer:
        raise ValueError(f"block={block!r} and its former name layer={layer!r} disagree; give block= alone")
    return layer


class Explorer:
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
        _choose("model", first, [(name, name) for name in names])
        controls = {"description_width": "70px"}
        self.checkpoint = w.Dropdown(options=names, value=first, description="model", style=controls,
                                     layout=w.Layout(width="420px", display="flex" if len(names) > 1 else "none"))
        self.method = w.ToggleButtons(options=[("EViT", "evit")], description="method", style={
            **controls, "button_width": "auto"})
        low, high, step = KEEP_RATES
        self.keep_rate = w.FloatSlider(value=DEFAULT_KEEP_RATE, min=low, max=high, step=step, description="keep rate",
                                       readout_format=".2f", style=controls, layout=w.Layout(width="420px"))
        self.block = w.IntSlider(value=0, min=0, max=1, description="block", style=controls,
                                 layout=w.Layout(width="340px"))
        self.play = w.Play(value=0, min=0, max=1, step=1, interval=900, description="play through the blocks",
                           layout=w.Layout(width="70px"))
        w.jslink((self.play, "value"), (self.block, "value"))
        self.view = w.ToggleButtons(options=[(VIEW_LABELS[v], v) for v in VIEWS], value="status",
                                    description="view", style={**controls, "button_width": "auto"})
        self.image = w.Dropdown(options=self._image_options(), value=0, description="image", style=controls,
                                layout=w.Layout(width="260px"))
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="your picture",
                                   layout=w.Layout(width="150px"))
        self.follow = w.Checkbox(value=False, description="follow a patch", indent=False,
                                 layout=w.Layout(width="120px"))
        self.patch_row = w.IntSlider(value=0, min=0, max=1, description="row", style={"description_width": "28px"},
                                     layout=w.Layout(width="150px"))
        self.patch_col = w.IntSlider(value=0, min=0, max=1, description="col", style={"description_width": "28px"},
                                     layout=w.Layout(width="150px"))
        self.picture = w.Image(format="png")
        self.legend = w.HTML()
        self.tokens = w.HTML()
        self.prediction = w.HTML()
        self.lineage = w.HTML()
        self._note = note
        self.message = w.HTML(_note_html(note))
        self.title = w.HTML()
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
        self.root = w.VBox([
            self.title, self.message,
            w.HBox([
                w.VBox([self.picture, self.legend], layout=w.Layout(width="auto", margin="0 16px 0 0")),
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
        target = self.checkpoint.value if model is None else _choose(
            "model", model, [(n, n) for n in self.checkpoint.options])
        network = self.session.models[target]
        if method is not None:
            method = _choose("method", method, [(method_label(m), m) for m in self.session.methods_for(target)])
        if keep_rate is not None:
            low, high, _ = KEEP_RATES
            if isinstance(keep_rate, (bool, np.bool_)) or not isinstance(keep_rate, numbers.Real) \
                    or not low <= float(keep_rate) <= high:
                raise ValueError(f"keep_rate must be a number in {low}..{high}, got {keep_rate!r}")
            keep_rate = float(keep_rate)
        if view is not None:
            view = _choose("view", view, list(self.view.options))
        if block is not None:
            block = _in_range("block", block, len(network.blocks) - 1)
        if image is not None:
            image = _in_range("image", image, len(self.session.gallery) - 1)
        if patch is not None and not (isinstance(patch, str) and patch == "keep"):
            if isinstance(patch, str) or not isinstance(patch, (tuple, list)) or len(patch) != 2:
                raise ValueError(f"patch must be (row, col), None or left out, got {patch!r}")
            rows, cols = network.patch_embed.grid_size
            patch = (_in_range("patch row", patch[0], rows - 1), _in_range("patch col", patch[1], cols - 1))
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
        index = self.session.gallery.add_picture(picture, name)
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
        from retokviz.views import html

        rates = html.KEEP_RATES if keep_rates is None else tuple(keep_rates)
        model, image, method = self.checkpoint.value, self.image.value, self.method.value
        runs = [self.session.run(model, image, method, rate) for rate in rates]
        untouched, untouched_macs = self.session.untouched(model, image)
        entry = self.session.gallery.entries[image]
        truth = None if entry.label is None else self.session.label(model, entry.label)
        settings = [html.Setting(rate, run.arrays, run.prediction.top, run.macs, self._measured_html(rate))
                    for rate, run in zip(rates, runs)]
        start = {"view": self.view.value, "block": self.block.value, "keep_rate": self.keep_rate.value}
        return html.save_html(path, settings, title=f"{model} · {method_label(method)} · {entry.name}",
                              untouched=untouched.top, untouched_macs=untouched_macs, truth=truth, start=start)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.root._repr_mimebundle_(**kwargs)

    # --- redrawing ----------------------------------------------------------------------------------------

    @contextmanager
    def _hold(self):
        """Changes inside are drawn once, at the end of the outermost hold."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._pending:
                level, self._pending = self._pending, 0
                self._refresh(level)

    def _changed(self, level: int) -> None:
        self._pending = max(self._pending, level)
        if not self._holding:
            level, self._pending = self._pending, 0
            self._refresh(level)

    def _on_model(self, change: dict) -> None:
        """Another model: fit the controls to it now, so that a method set next (in the same `set`) applies."""
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
            chosen = _choose("method", method, options)
        else:
            own = session.own_method(name)
            chosen = own if own in usable else (self.method.value if self.method.value in usable else usable[0])
        self.method.options = options
        self.method.value = chosen
        if keep_rate is not None:
            self.set(keep_rate=keep_rate)
        network = session.models[name]
        depth = len(network.blocks)
        rows, cols = network.patch_embed.grid_size
        self.block.max = self.play.max = depth - 1
        self.patch_row.max, self.patch_col.max = rows - 1, cols - 1
        if self.block.value == 0 and self._run is None:
            self.block.value = depth - 1

    def _draw(self, level: int) -> None:
        run = self._run
        arrays = run.arrays
        block, view, patch = self.block.value, self.view.value, self.patch
        note = ""
        try:
            if patch is not None:
                rgb = lineage_image(arrays, block, patch)
                legend = panels.legend_html("lineage", legend_keys(arrays, "status", block))
            else:
                rgb = view_image(arrays, view, block)
                legend = panels.legend_html(view, legend_keys(arrays, view, block))
        except ValueError as error:   # e.g. attention of ToMe, or "removed" without a mask
            rgb, legend = to_uint8(arrays.picture), ""
            note = f'<div style="color:#c92a2a;font-size:12px;line-height:1.4;max-width:380px">{_escape(str(error))}</div>'
        self.picture.value = png_bytes(rgb, panels.display_scale(*rgb.shape[:2]), compress_level=1)
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
        self.prediction.value = panels.prediction_html(run, untouched, untouched_macs, truth, run.arrays.method)
        self.message.value = _note_html("; ".join((*filter(None, [self._note]), *run.notes)))
        self.title.value = (f'<div style="font-size:15px"><b>retokviz explorer</b> &nbsp;{_escape(model)} · '
                            f'{_escape(method_label(self.method.value))} · {_escape(entry.name)}</div>')
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
            return _note_html(f"measured ({self._tradeoff_source}): {error}")
        row = nearest(rows, self.method.value, keep_rate)
        return panels.measured_html(row, untouched(rows), keep_rate, method_label(self.method.value),
                                    self._tradeoff_source)

    def _draw_tradeoff(self) -> None:
        """Ring the setting shown in the trade-off panel, when the panel is open."""
        if self.tradeoff_panel is not None and self.tradeoff_panel.selected_index == 0:
            self.tradeoff.mark(self.method.value, self.keep_rate.value)

    def _image_options(self) -> list[tuple[str, int]]:
        return [(f"{index}: {entry.name}", index) for index, entry in enumerate(self.session.gallery.entries)]

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
                    self.message.value = _note_html(f"could not read {name}: {error}")
                except Exception as error:                   # noqa: BLE001 - anything else, said, not lost
                    self.message.value = _note_html(f"could not read {name}: {type(error).__name__}: {error}")
        finally:
            self._clearing_upload = True
            try:
                self.upload.value = ()
            finally:
                self._clearing_upload = False


def _in_range(kind: str, value: Any, last: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= last:
        raise ValueError(f"{kind} must be an int in 0..{last}, got {value!r}")
    return int(value)


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _note_html(note: str | None) -> str:
    return "" if not note else f'<div style="color:#a61e4d;font-size:12px;line-height:1.4">{_escape(note)}</div>'
