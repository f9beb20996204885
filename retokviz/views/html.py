"""One standalone web page of a trace at many keep rates: sliders for the keep rate and the block, a view
toggle, a token chart and a click-to-follow patch lineage, all working in a browser with no kernel and no network.

    settings = [Setting(rate, arrays, top, macs) for ...]       # one recorded pass per keep rate
    save_html("build/explorer.html", settings, title="EViT on digit 7")

Every frame (keep rate x block x view) is in the page as a base64 PNG (each distinct picture once), next to the
arrays the lineage and the chart are drawn from; plotly.js is inlined, so the page loads nothing from anywhere
(about 6 MB for a bundled model, 4.8 of them plotly.js).

`save_compare_html` writes rv.compare's page (assets compare.html and compare.js): a column per method, one keep-rate
slider and one block slider moving them all; its pictures and HTML fragments are drawn by the explorer and handed
over in a `Store` (each distinct one once), and it needs no plotly.js.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retokviz._util.files import write_atomically
from retokviz._util.png import png_data_url
from retokviz.views import palette
from retokviz.views.extract import TraceArrays
from retokviz.views.raster import VIEW_LABELS, VIEWS, legend_keys, view_image, view_labels

# The keep rates a page holds by default: 0.3 to 1.0 by 0.1.
KEEP_RATES: tuple[float, ...] = tuple(round(0.3 + 0.1 * step, 1) for step in range(8))
DISPLAY_PIXELS = 400   # the picture's displayed width; frames are stored at their own size and scaled crisply


@dataclass(frozen=True)
class Setting:
    """One keep rate's recorded pass.

    Attributes:
        keep_rate: the keep rate.
        arrays: the pass's TraceArrays (one image).
        top: [(class name, probability)] the top classes predicted.
        macs: multiply-accumulates of one image.
        measured: an HTML fragment shown under the prediction: what a sweep table measured at this setting
            (the explorer's "measured" line), or "" for none. Library-made markup, inserted as is.
    """

    keep_rate: float
    arrays: TraceArrays
    top: tuple[tuple[str, float], ...]
    macs: int
    measured: str = ""


def _asset(name: str) -> str:
    """A file of the page (views/assets/NAME): the HTML around the data, the script that draws it."""
    return (Path(__file__).parent / "assets" / name).read_text(encoding="utf-8")


def usable_views(arrays: TraceArrays, views: Sequence[str] = VIEWS) -> list[str]:
    """The views that can be drawn from `arrays` ("attention" needs class-attention scores)."""
    usable = []
    for view in views:
        try:
            view_image(arrays, view, arrays.num_blocks - 1)
        except ValueError:
            continue
        usable.append(view)
    return usable


def frame_count(settings: Sequence[Setting], views: Sequence[str] | None = None) -> int:
    """How many frames `page` stores: keep rates x blocks x views."""
    views = usable_views(settings[0].arrays) if views is None else views
    return sum(setting.arrays.num_blocks for setting in settings) * len(views)


def payload(settings: Sequence[Setting], views: Sequence[str], *, title: str,
            untouched: Sequence[tuple[str, float]] | None = None, untouched_macs: int | None = None,
            truth: str | None = None, start: dict | None = None) -> dict:
    """What the page's script reads: "images", the distinct frames as PNG data URLs; per keep rate its frames
    ([view][block] indices into "images"), tokens per block,
    owners and statuses per block ([L][rows][cols], for the lineage), prediction, MACs and the measured line; plus
    the legends."""
    first = settings[0].arrays
    images: list[str] = []          # each distinct picture once: blocks between reductions look alike
    known: dict[bytes, int] = {}

    def frame(rgb: np.ndarray) -> int:
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16).digest()
        if key not in known:
            known[key] = len(images)
            images.append(png_data_url(rgb))
        return known[key]

    items = []
    for setting in settings:
        arrays = setting.arrays
        if arrays.grid != first.grid or arrays.num_blocks != first.num_blocks:
            raise ValueError("every setting of a page must come from one model and image (one grid, one depth)")
        items.append({
            "keep_rate": setting.keep_rate,
            "method": arrays.method,
            "frames": {view: [frame(view_image(arrays, view, block)) for block in range(arrays.num_blocks)]
                       for view in views},
            "legend_keys": {view: [sorted(legend_keys(arrays, view, block)) for block in range(arrays.num_blocks)]
                            for view in views},
            "num_tokens": arrays.num_tokens.tolist(),
            "owner": arrays.owner.tolist(),
            "status": arrays.status.astype(int).tolist(),
            "reduction_blocks": list(arrays.reduction_blocks),
            "top": [[name, float(p)] for name, p in setting.top],
            "macs": int(setting.macs),
            "measured": setting.measured,
        })
    legends = palette.to_payload()["legends"]
    return {
        "title": title,
        "views": list(views),
        "view_labels": [view_labels(first.learned_scores).get(view, view) for view in views],
        "legends": legends,
        "grid": list(first.grid),
        "size": list(first.picture.shape[:2]),
        "num_patches": first.num_patches,
        "num_blocks": first.num_blocks,
        "status_names": ["kept", "merged", "fused", "dropped"],
        "untouched": None if untouched is None else [[name, float(p)] for name, p in untouched],
        "untouched_macs": untouched_macs,
        "truth": truth,
        "settings": items,
        "images": images,
        "colours": {"patch": palette.LINEAGE_PATCH_HEX, "shares": palette.LINEAGE_HEX},
        "start": start or {},
    }


def page(settings: Sequence[Setting], *, title: str = "retokviz explorer",
         untouched: Sequence[tuple[str, float]] | None = None, untouched_macs: int | None = None,
         truth: str | None = None, views: Sequence[str] | None = None, start: dict | None = None) -> str:
    """The page as one HTML string.

    Args:
        settings: one per keep rate, in slider order, all of one model and image.
        title: the heading.
        untouched: the top classes of the model without reduction; untouched_macs: its MACs.
        truth: the image's true class name, or None.
        views: the views to hold (default: every one the arrays can draw).
        start: what the page opens on: {"view": name, "block": int, "keep_rate": float}, each optional (default:
            the first view, the last block, keep rate 0.7 or the last one).

    Raises:
        ValueError: no settings, or settings of different grids or depths.
    """
    if not settings:
        raise ValueError("a page needs at least one setting (one recorded pass)")
    from plotly.offline import get_plotlyjs

    if views is None:   # the views every setting can draw (ToMe at keep rate 1.0 reduces nothing: no scores)
        views = [view for view in usable_views(settings[0].arrays)
                 if all(view in usable_views(setting.arrays, (view,)) for setting in settings[1:])]
    views = list(views)
    data = json.dumps(payload(settings, views, title=title, untouched=untouched, untouched_macs=untouched_macs,
                              truth=truth, start=start), separators=(",", ":"))
    data = data.replace("</", "<\\/")   # nothing in the data can close its script element
    plotly = get_plotlyjs().replace("</script", "<\\/script")
    template = _asset("page.html").replace("__TITLE__", html.escape(title)).replace("__WIDTH__", str(DISPLAY_PIXELS))
    head, rest = template.split("__PLOTLY__")   # inserted by position: nothing inserted is searched again
    middle, rest = rest.split("__DATA__")
    before, tail = rest.split("__SCRIPT__")
    return head + plotly + middle + data + before + _asset("controls.js") + _asset("page.js") + tail


def save_html(path: str | os.PathLike, settings: Sequence[Setting], **kwargs) -> Path:
    """Write `page(settings, **kwargs)` to `path` (folders made as needed), atomically: a failed write (a full disk)
    leaves the file as it was, never a part of the page; returns the path."""
    path = Path(path)
    data = page(settings, **kwargs).encode("utf-8")   # made whole before the file is touched
    write_atomically(path, lambda file: file.write(data))
    return path


# --- the side-by-side page of rv.compare ---------------------------------------------------------------------

COMPARE_PIXELS = 300   # each column's picture width on the side-by-side page


class Store:
    """Each distinct picture (as a PNG data URL) and HTML fragment of a page once, by index: blocks between
    reductions look alike, and legends repeat."""

    def __init__(self) -> None:
        self.images: list[str] = []
        self.snippets: list[str] = []
        self._images: dict[bytes, int] = {}
        self._snippets: dict[str, int] = {}

    def picture(self, rgb: np.ndarray) -> int:
        """The index of `rgb` ([H, W, 3] uint8) among the page's pictures, encoded on first sight."""
        key = hashlib.blake2b(np.ascontiguousarray(rgb).tobytes() + repr(rgb.shape).encode(), digest_size=16).digest()
        if key not in self._images:
            self._images[key] = len(self.images)
            self.images.append(png_data_url(rgb))
        return self._images[key]

    def snippet(self, text: str) -> int:
        """The index of an HTML fragment (library-made markup, inserted as is) among the page's fragments."""
        if text not in self._snippets:
            self._snippets[text] = len(self.snippets)
            self.snippets.append(text)
        return self._snippets[text]


def compare_payload(columns: Sequence[dict], store: Store, *, title: str, keep_rates: Sequence[float],
                    views: Sequence[str], num_blocks: int, num_patches: int, size: Sequence[int],
                    budgets: Sequence[int] | None = None, start: dict | None = None) -> dict:
    """What the side-by-side page's script reads, checked: every column holds one setting per keep rate, and every
    setting one frame, legend and chart per view and block.

    Args:
        columns: one per method, in page order: {"label": "EViT", "settings": [per keep rate: {"method": text,
            "num_tokens": [L], "frames": {view: [L picture indices]}, "legends": {view: [L snippet indices]},
            "charts": [L snippet indices], "prediction": snippet index}]}.
        store: the pictures and fragments the indices point into.
        budgets: per keep rate, the final token budget the columns share (shown above them), or None.

    Raises:
        ValueError: no columns, or a column whose settings, views or blocks don't match the page's.
    """
    if not columns:
        raise ValueError("a side-by-side page needs at least one column (one method)")
    for column in columns:
        settings = column["settings"]
        if len(settings) != len(keep_rates):
            raise ValueError(f"column {column['label']!r} has {len(settings)} settings for {len(keep_rates)} keep rates")
        for setting in settings:
            lengths = [len(setting["num_tokens"]), len(setting["charts"])]
            lengths += [len(setting["frames"][view]) for view in views] + [len(setting["legends"][view]) for view in views]
            if set(lengths) != {num_blocks}:
                raise ValueError(f"column {column['label']!r}: every setting needs one frame, legend and chart per view "
                                 f"and block ({num_blocks} blocks)")
    return {
        "title": title,
        "views": list(views),
        "view_labels": [VIEW_LABELS.get(view, view) for view in views],
        "keep_rates": [float(rate) for rate in keep_rates],
        "budgets": None if budgets is None else [int(count) for count in budgets],
        "num_blocks": int(num_blocks),
        "num_patches": int(num_patches),
        "size": [int(side) for side in size],
        "columns": [{"label": column["label"], "settings": list(column["settings"])} for column in columns],
        "images": list(store.images),
        "snippets": list(store.snippets),
        "start": start or {},
    }


def compare_page(columns: Sequence[dict], store: Store, *, title: str = "retokviz: methods side by side",
                 **kwargs) -> str:
    """The side-by-side page as one HTML string: a column per method, one keep-rate slider, one block slider and a
    view toggle that move every column together, working offline without a kernel (nothing loaded from anywhere).
    Takes `compare_payload`'s arguments; `start` ({"view", "block", "keep_rate"}, each optional) is what it opens on.
    """
    data = json.dumps(compare_payload(columns, store, title=title, **kwargs), separators=(",", ":"))
    data = data.replace("</", "<\\/")   # nothing in the data can close its script element
    template = (_asset("compare.html").replace("__TITLE__", html.escape(title))
                .replace("__WIDTH__", str(COMPARE_PIXELS)))
    head, rest = template.split("__DATA__")   # inserted by position: nothing inserted is searched again
    before, tail = rest.split("__SCRIPT__")
    return head + data + before + _asset("controls.js") + _asset("compare.js") + tail


def save_compare_html(path: str | os.PathLike, columns: Sequence[dict], store: Store, **kwargs) -> Path:
    """Write `compare_page(columns, store, **kwargs)` to `path` (folders made as needed), atomically; returns it."""
    path = Path(path)
    data = compare_page(columns, store, **kwargs).encode("utf-8")
    write_atomically(path, lambda file: file.write(data))
    return path
