"""The explorer's two widgets of its own (anywidget, scripts in `assets/`): the picture, a PNG at a fixed size (so
the controls beside it never move) that answers a click, and the arrow keys, by picking a patch; and the player,
which steps through the blocks and pauses where it is."""
from __future__ import annotations

import base64
from pathlib import Path

import anywidget
import traitlets

PREFIX = "data:image/png;base64,"


class Picture(anywidget.AnyWidget):
    """A square picture of `size` pixels over a `grid` of patches.

    Attributes (traitlets, synced with the browser):
        png: the picture as a PNG data URL.
        size: its side on screen, in pixels (the PNG is scaled crisply to it).
        grid: [rows, cols] of the patch grid, which a click is mapped onto.
        picked: [row, col] of the patch clicked (or moved to with the arrow keys), None after Escape.
        hint: what the picture says on hover (not ipywidgets' `tooltip`, which its views read with a `description`
            an anywidget lacks).
    """

    _esm = Path(__file__).with_name("assets").joinpath("picture.js").read_text(encoding="utf-8")
    png = traitlets.Unicode("").tag(sync=True)
    size = traitlets.Int(400).tag(sync=True)
    grid = traitlets.List(traitlets.Int(), default_value=[1, 1]).tag(sync=True)
    picked = traitlets.List(traitlets.Int(), default_value=None, allow_none=True).tag(sync=True)
    hint = traitlets.Unicode("").tag(sync=True)

    @property
    def value(self) -> bytes:
        """The PNG bytes shown (as ipywidgets.Image's `value`)."""
        return base64.b64decode(self.png[len(PREFIX):]) if self.png.startswith(PREFIX) else b""

    @value.setter
    def value(self, data: bytes) -> None:
        self.png = PREFIX + base64.b64encode(bytes(data)).decode("ascii")


class Player(anywidget.AnyWidget):
    """A play / pause button stepping `value` from where it is to `max`, every `interval` ms (link `value` to a
    slider with ipywidgets.jslink). Pausing leaves `value` where it is; play at the end starts from `min`."""

    _esm = Path(__file__).with_name("assets").joinpath("player.js").read_text(encoding="utf-8")
    value = traitlets.Int(0).tag(sync=True)
    min = traitlets.Int(0).tag(sync=True)
    max = traitlets.Int(1).tag(sync=True)
    interval = traitlets.Int(900).tag(sync=True)
    hint = traitlets.Unicode("").tag(sync=True)
