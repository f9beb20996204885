"""The figures retokviz returns, and the colours of its charts: the `Figure` every plot returns, the colour of each
method, the benchmark's speed-ups and the evaluation's curves, and shortcuts to the trace views (`plot_layers`,
`plot_attention`), which `retokviz.views` draws with its one palette of kept, merged, fused and dropped patches.

The functions return a `Figure` that shows itself as a picture in JupyterLab, VS Code and any other IPython front
end, with or without `%matplotlib inline`, and that a script saves with `figure.savefig(path)`. Nothing here touches
matplotlib's global state: no backend is chosen, no rcParams are set, no pyplot figure is opened.
"""
from __future__ import annotations

import io
import math

import matplotlib.figure
import numpy as np

from retokviz.methods.registry import members
from retokviz.provenance import Trace

# One colour per method (registry name) in every chart; other methods take the spare colours in turn.
METHOD_COLOURS = {"evit": "tab:blue", "imagepiece": "tab:orange", "tome": "tab:green", "imagepiece+tome": "tab:purple"}
SPARE_COLOURS = ("tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that IPython displays as a PNG, drawn through its own canvas.

    A Figure made without pyplot is shown as the text `<Figure size ...>` unless `%matplotlib inline` has registered
    matplotlib's display hook; this one carries its own (`_repr_png_`). Where the hook is registered, IPython uses it
    instead, so the figure still appears once.
    """

    def _repr_png_(self) -> bytes:
        """The figure as PNG bytes, trimmed to what is drawn (as the inline backend does)."""
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def method_colour(name: str, order: int = 0) -> str:
    """The colour of a method by registry name or label ("evit", "EViT", "ImagePiece + ToMe"); a method without
    one of its own gets spare colour number `order` (cycled)."""
    try:
        key = "+".join(members(name))
    except ValueError:
        key = name
    return METHOD_COLOURS.get(key, SPARE_COLOURS[order % len(SPARE_COLOURS)])


def plot_layers(picture: np.ndarray, trace: Trace, layers: list[int] | None = None, image: int = 0) -> Figure:
    """One panel per block: the image with each patch drawn by its status (retokviz.views.palette), titled with
    the token count. A shortcut for `views.static.plot_status(views.extract(trace, picture, image=image), layers)`.

    Args:
        picture: [H, W, 3] in 0..1, the image as the model saw it (see retokviz.images.prepare).
        trace: a recorded trace.
        layers: the blocks to show; None means every reduction block.
        image: which image of the batch.
    """
    from retokviz.views import extract, static   # the views draw with this module's Figure: imported on use

    return static.plot_status(extract(trace, picture, image=image), blocks=layers)


def plot_attention(picture: np.ndarray, trace: Trace, layer: int | None = None, image: int = 0,
                   mask: np.ndarray | None = None) -> Figure:
    """Two panels: the image (with the object's outline where a mask is given), and the class attention that
    decided a reduction block's choice, drawn over the image. A shortcut for
    `views.static.plot_attention(views.extract(trace, picture, mask, image), layer)`.

    Args:
        picture: [H, W, 3] in 0..1, the image as the model saw it.
        trace: a recorded trace of a model with a class token and a reduction method applied.
        layer: a reduction block; None means the first one.
        image: which image of the batch.
        mask: optional [H, W] bool, the object's pixels (e.g. from rv.data.make_clutter).
    """
    from retokviz.views import extract, static

    return static.plot_attention(extract(trace, picture, mask=mask, image=image), block=layer)


def _methods_in(rows: list[dict]) -> list[str]:
    """The method labels of result rows, in order of first appearance, without the untouched model or baseline."""
    return list(dict.fromkeys(row["method"] for row in rows if row["method"] not in ("untouched", "none")))


def plot_benchmark(result: dict) -> Figure:
    """Measured speed-up against keep rate (solid), beside the ceiling the MACs set (dashed), per method.

    Args:
        result: what `retokviz.bench.run` returns (or its JSON): "conditions" and "rows", each row with "method",
            "keep_rate", "speedup" and "ceiling"; with "caveats", a warning is drawn under the title.
    """
    figure = Figure(figsize=(5.5, 3.6), dpi=120)
    axes = figure.subplots()
    rows = result["rows"]
    for order, name in enumerate(_methods_in(rows)):
        picked = sorted((row["keep_rate"], row["ceiling"], row["speedup"]) for row in rows if row["method"] == name)
        rates, ceilings, speedups = zip(*picked)
        colour = method_colour(name, order)
        axes.plot(rates, ceilings, "--", color=colour, alpha=0.6)
        axes.plot(rates, speedups, "o-", color=colour, label=f"{name} measured")
    axes.plot([], [], "--", color="gray", label="MACs ceiling (dashed)")
    axes.axhline(1.0, color="black", linewidth=0.6)
    axes.invert_xaxis()                                     # less kept to the right
    axes.set_xlabel("keep rate (ToMe: EViT's final token budget)")
    axes.set_ylabel("throughput / untouched model")
    c = result["conditions"]
    title = f"{c['model']}, {c['device'].split(',')[0]}\n{c['dtype']}, batch {c['batch']}, {c['image_size']} px"
    if result.get("caveats"):
        title += "\nmeasured too briefly to trust: see the report's caveats"
    axes.set_title(title, fontsize=8, color="firebrick" if result.get("caveats") else "black")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _series(rows: list[dict], name: str, setting: str, key: str) -> tuple[list[float], list[float]]:
    """(keep rates, values of `key`) of one method and setting, by keep rate."""
    picked = sorted((row["keep_rate"], row[key]) for row in rows if row["method"] == name and row["setting"] == setting)
    return [rate for rate, _ in picked], [value for _, value in picked]


def plot_evaluation(result: dict) -> Figure:
    """Two panels: accuracy against keep rate, and the background lift of the patches let go of,
    (share of background - random share) / (1 - random share), per method; solid lines trained, dashed off the
    shelf. A lift of 0 is what a random choice gives, 1 means only background was let go of.

    Args:
        result: what `retokviz.evaluate.evaluate` returns (or its JSON): "conditions" with "test_images", and
            "rows", the baseline's (method "none") and one per method, setting and keep rate.
    """
    rows = result["rows"]
    baseline = next(row for row in rows if row["method"] == "none")["accuracy"]
    figure = Figure(figsize=(9.0, 3.4))
    left, right = figure.subplots(1, 2)
    left.axhline(100 * baseline, color="gray", linewidth=1, label=f"baseline ({baseline:.1%})")
    for order, name in enumerate(_methods_in(rows)):
        colour = method_colour(name, order)
        for setting, style in (("trained", "-"), ("off the shelf", "--")):
            rates, accuracies = _series(rows, name, setting, "accuracy")
            left.plot(rates, [100 * value for value in accuracies], style, marker="o", markersize=3, color=colour,
                      label=f"{name}, {setting}")
            rates, lifts = _series(rows, name, setting, "lift")
            points = [(rate, lift) for rate, lift in zip(rates, lifts) if not math.isnan(lift)]  # NaN: none let go
            right.plot([rate for rate, _ in points], [lift for _, lift in points], style, marker="o",
                       markersize=3, color=colour)
    right.axhline(0.0, color="gray", linewidth=1, label="a random choice")
    left.set(xlabel="keep rate", ylabel="test accuracy (%)", title="accuracy")
    right.set(xlabel="keep rate", ylabel="background lift", title="background lift of the patches let go of")
    for ax in (left, right):
        ax.invert_xaxis()                                   # less kept to the right
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
    left.legend(fontsize=6, ncol=2)
    right.legend(fontsize=6)
    conditions = result["conditions"]
    seed = f", seed {conditions['data_seed']}" if "data_seed" in conditions else ""
    figure.suptitle(f"bundled checkpoints on {conditions['test_images']} generated test images{seed}", fontsize=9)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.84, bottom=0.15, wspace=0.25)
    return figure
