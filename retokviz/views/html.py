"""One standalone web page of a trace at many keep rates: sliders for the keep rate and the block, a view
toggle, a token chart and a click-to-follow patch lineage, all working in a browser with no kernel and no network.

    settings = [Setting(rate, arrays, top, macs) for ...]       # one recorded pass per keep rate
    save_html("build/explorer.html", settings, title="EViT on digit 7")

Every frame (keep rate x block x view) is in the page as a base64 PNG (each distinct picture once), next to the
arrays the lineage and the chart are drawn from; plotly.js is inlined, so the page loads nothing from anywhere
(about 6 MB for a bundled model, 4.8 of them plotly.js).
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
from retokviz.views.raster import VIEWS, legend_keys, view_image

# The keep rates a page holds by default: 0.3 to 1.0 by 0.1.
KEEP_RATES: tuple[float, ...] = tuple(round(0.3 + 0.1 * step, 1) for step in range(8))
VIEW_LABELS = {"status": "status", "pieces": "pieces", "attention": "attention", "removed": "removed background"}
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
    """The views that can be drawn from `arrays` ("removed" needs a mask, "attention" class-attention scores)."""
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
        "view_labels": [VIEW_LABELS.get(view, view) for view in views],
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

    views = usable_views(settings[0].arrays) if views is None else list(views)
    data = json.dumps(payload(settings, views, title=title, untouched=untouched, untouched_macs=untouched_macs,
                              truth=truth, start=start), separators=(",", ":"))
    data = data.replace("</", "<\\/")   # nothing in the data can close its script element
    plotly = get_plotlyjs().replace("</script", "<\\/script")
    template = _asset("page.html").replace("__TITLE__", html.escape(title)).replace("__WIDTH__", str(DISPLAY_PIXELS))
    head, rest = template.split("__PLOTLY__")   # inserted by position: nothing inserted is searched again
    middle, rest = rest.split("__DATA__")
    before, tail = rest.split("__SCRIPT__")
    return head + plotly + middle + data + before + _asset("page.js") + tail


def save_html(path: str | os.PathLike, settings: Sequence[Setting], **kwargs) -> Path:
    """Write `page(settings, **kwargs)` to `path` (folders made as needed), atomically: a failed write (a full disk)
    leaves the file as it was, never a part of the page; returns the path."""
    path = Path(path)
    data = page(settings, **kwargs).encode("utf-8")   # made whole before the file is touched
    write_atomically(path, lambda file: file.write(data))
    return path
