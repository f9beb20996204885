"""The keep-rate trade-off of a sweep table (`python -m retokviz.sweep`), drawn: a matplotlib figure for files,
a plotly figure and an ipywidgets view for notebooks (plotly and ipywidgets are imported only when used).

    plot_tradeoff("sweep.csv").savefig("sweep.png")            # four panels, one model, batch size and dtype
    tradeoff_figure("sweep.csv", batch_size=256, dtype="bf16")   # the same, interactive (hover for each row)
    tradeoff_view("sweep.csv")                                 # pickers for model, methods, batch size, dtype

The panels: top-1 against throughput, top-1 against MACs, speed-up against keep rate with each method's MACs
ceiling dashed (removing tokens can't go faster than the arithmetic it removes), and batch-1 latency against batch
throughput. The EViT paper's published DeiT-S figures are drawn as a reference series: in the speed-up panel
always (a ratio is comparable across models and machines), in the accuracy panels only when the table's model
costs about as much as DeiT-S (its untouched MACs within a factor 2 of 4.6 G), since top-1 on ImageNet and on
another test set, or img/s of a model of another size, do not share an axis.

How sure each figure is, drawn with it:

- top-1 carries its 95 % bootstrap interval over the test images (`accuracy_interval`): a bar through each point.
  The table holds the accuracy and how many images gave it (the `data` column), and for a share that is all the
  bootstrap needs (resampling n images of which k were right draws Binomial(n, k / n) right ones);
- the top-1 axis spans at least TOP1_MIN_SPAN points and every interval (`top1_limits`), so that one or two images
  more or fewer (0.1 or 0.2 points on 1000 images) stay a small step inside their bars, never the panel's height;
- a speed-up carries a bar of +/- the spread of its timing rounds (the larger of its own and the untouched model's,
  as the sweep's note uses it). Where that bar reaches 1 the point is hollow: "within spread", the run did not
  tell the speed-up from none. A speed-up above its MACs ceiling is crossed out: noise. `CAPTION` says so under
  the figure, in plain words, and `note_meaning` explains a row's note wherever it is shown;
- keep-rate labels are placed where they overlap no other label (`place_labels`), and left out where no place is
  free (the keep rate of every point is in the plotly figure's hover).
"""
from __future__ import annotations

import functools
import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import to_hex, to_rgb

from retokviz.methods.registry import label
from retokviz.views.figure import Figure
from retokviz.views.palette import method_colour
from retokviz.measure.intervals import LEVEL
from retokviz.sweep.config import UNTOUCHED
from retokviz.sweep.noise import ABOVE_CEILING, WITHIN_SPREAD
from retokviz.sweep.table import COLUMNS, INTS, parse_row, read_table

PAPER_LABEL = "EViT paper (DeiT-S, ImageNet, 300 epochs)"
# keep rate, top-1 (%), GMACs, images/s: the EViT paper's DeiT-S with fused inattentive tokens.
PAPER_EVIT_DEIT_S = (
    (1.0, 79.8, 4.6, 2923),
    (0.9, 79.8, 4.0, 3197),
    (0.8, 79.8, 3.5, 3619),
    (0.7, 79.5, 3.0, 4385),
    (0.6, 78.9, 2.6, 4722),
    (0.5, 78.5, 2.3, 5408),
)
PAPER_GREY = "#7f7f7f"
PANELS = ("top-1 against throughput", "top-1 against MACs", "speed-up against keep rate",
          "batch-1 latency against batch throughput")
TOP1_MIN_SPAN = 5.0           # points: the least a top-1 axis spans (see top1_limits)
LABEL_SIZE = 6                # points: the keep-rate labels
NOTE_MEANINGS = {
    WITHIN_SPREAD: "within spread: the speed-up is closer to 1 than the timing rounds varied, so this run could "
                   "not tell it from no speed-up at all",
    ABOVE_CEILING: "noise, above the MACs ceiling: faster than removing tokens can make it (the arithmetic it "
                   "removes), so the difference is the machine's variation, not speed",
}
CAPTION = {   # the sentences under the figure, each where the figure shows what it explains
    "interval": "Bars on top-1: its {level:.0%} interval, where top-1 would fall for most other draws of {images} "
                "test images (bootstrap).",
    "band": "The grey band: the untouched model's interval; a method's bar that overlaps it is not told apart.",
    "span": "The top-1 axes span at least {span:g} points, so a step of one or two images stays small.",
    "spread": "Bars on speed-ups: +/- the spread of the timing rounds.",
    WITHIN_SPREAD: "Hollow marker, \"within spread\": the speed-up is closer to 1 than the timing rounds varied, so "
                   "this run could not tell it from no speed-up.",
    ABOVE_CEILING: "Crossed marker, \"above MACs ceiling\": faster than the arithmetic removed allows, so noise.",
}


def note_meaning(note: str | None) -> str:
    """A sweep row's note (its `note` column) in plain words, or "" for none; an unknown note as it is."""
    if not note:
        return ""
    return NOTE_MEANINGS.get(note, note)


def test_images(row: Mapping) -> int | None:
    """How many test images a row's accuracy was measured on, read from its `data` column ("clutter test, 1000
    images, seed 0"), or None where it does not say."""
    found = re.search(r"(\d+) images", str(row.get("data") or ""))
    return int(found.group(1)) if found else None


@functools.lru_cache(maxsize=4096)
def share_interval(correct: int, count: int, level: float = LEVEL) -> tuple[float, float]:
    """The percentile bootstrap interval (rv.intervals.bootstrap with `share`) of a share of `correct` right out
    of `count`, computed exactly: resampling the count images draws Binomial(count, correct / count) right ones,
    so the interval is that distribution's (1 - level) / 2 and (1 + level) / 2 quantiles, divided by the count
    (the bootstrap's 2000 draws approximate these within about one image)."""
    if not 0 <= correct <= count or count < 1:
        raise ValueError(f"a share needs 0 <= correct <= count and count >= 1, got {correct} of {count}")
    rate = correct / count
    if rate in (0.0, 1.0):
        return rate, rate
    k = np.arange(count + 1)
    log_pmf = (math.lgamma(count + 1) - np.array([math.lgamma(i + 1) + math.lgamma(count - i + 1) for i in k])
               + k * math.log(rate) + (count - k) * math.log1p(-rate))
    cdf = np.cumsum(np.exp(log_pmf - log_pmf.max()))
    cdf /= cdf[-1]
    tail = (1.0 - level) / 2
    low, high = np.searchsorted(cdf, [tail, 1.0 - tail])
    return float(low / count), float(min(high, count) / count)


def accuracy_interval(row: Mapping, level: float = LEVEL) -> tuple[float, float] | None:
    """The bootstrap interval (0..1) of a row's top-1 over its test images (`share_interval`), or None where the
    row has no accuracy or does not say how many images gave it."""
    count = test_images(row)
    if row.get("accuracy") is None or not count:
        return None
    return share_interval(round(row["accuracy"] * count), count, level)


def top1_limits(values: Iterable[float], min_span: float = TOP1_MIN_SPAN) -> tuple[float, float]:
    """The top-1 axis's limits (in %) for `values` (every point and interval end drawn, in %): at least `min_span`
    points wide, centred on them, never past 100 or below 0; wider data get 8 % of their span on either side.

    The rule keeps noise small: two models that differ by one image in 1000 (0.1 point) are 2 % of the axis
    apart, inside bars about 2.5 points long, not the panel's full height."""
    values = [float(value) for value in values if value is not None and not math.isnan(value)]
    if not values:
        return 0.0, 100.0
    low, high = min(values), max(values)
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    else:
        margin = 0.08 * (high - low)
        low, high = low - margin, high + margin
    edge = 0.02 * (high - low)                           # room for a marker at 100 % or at 0 %
    if high > 100.0 + edge:
        low, high = low - (high - 100.0 - edge), 100.0 + edge
    if low < -edge:
        low, high = -edge, high - low - edge
    return low, min(high, 100.0 + edge)


def place_labels(ax, items: Sequence[tuple[float, float, str, str]], size: float = LABEL_SIZE,
                 avoid: Sequence[tuple[float, float, float, float]] = ()) -> list:
    """Label points without overlap: each (x, y, text, colour) in data coordinates gets the first of a few places
    around its point (right above, right below, left above, left below, above, below) whose box overlaps no label
    placed before it nor a box of `avoid` (display pixels) and lies inside the axes; a label with no free place
    is left out. Call it once the axes' limits and the figure's layout are final.

    Returns:
        The texts placed (matplotlib Annotations).
    """
    from retokviz.views.static import text_width

    figure = ax.figure
    pixels = figure.dpi / 72.0
    frame = ax.get_window_extent()
    placed: list[tuple[float, float, float, float]] = list(avoid)
    texts = []
    height = size * 1.25 * pixels
    for x, y, text, colour in items:
        px, py = ax.transData.transform((x, y))
        width = text_width(text, size) * 72 * pixels + 2
        gap = 3 * pixels
        spots = [(gap, gap, "left", "bottom"), (gap, -gap, "left", "top"), (-gap, gap, "right", "bottom"),
                 (-gap, -gap, "right", "top"), (0, 2 * gap, "center", "bottom"), (0, -2 * gap, "center", "top")]
        for dx, dy, ha, va in spots:
            left = px + dx - {"left": 0, "right": width, "center": width / 2}[ha]
            bottom = py + dy - {"bottom": 0, "top": height}[va]
            box = (left, bottom, left + width, bottom + height)
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not any(box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and
                                  other[1] < box[3] for other in placed):
                placed.append(box)
                texts.append(ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx / pixels, dy / pixels),
                                         ha=ha, va=va, fontsize=size, color=colour))
                break
    return texts


def load_rows(table: str | os.PathLike | Iterable[Mapping] | Any) -> list[dict]:
    """A sweep table as typed rows: from a CSV path, rows (typed, or text as csv.DictReader gives them), or a
    pandas DataFrame.

    Raises:
        ValueError: rows without the sweep's columns.
    """
    if isinstance(table, (str, os.PathLike)):
        return read_table(table)
    if hasattr(table, "to_dict"):                                  # a pandas DataFrame
        table = table.to_dict("records")
    rows = []
    for row in table:
        missing = [column for column in COLUMNS if column not in row]
        if missing:
            raise ValueError(f"not a sweep table row: it lacks the columns {missing}")
        text = {column: "" if _empty(row[column]) else _text(column, row[column]) for column in COLUMNS}
        rows.append(parse_row(text))
    return rows


def _empty(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and value != value)    # NaN from pandas


def _text(column: str, value: object) -> str:
    if column in INTS and isinstance(value, float) and value.is_integer():     # pandas makes ints floats
        return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    return str(value)


def choices(rows: Sequence[Mapping]) -> dict[str, list]:
    """The models, methods, batch sizes and dtypes the table holds, in order of first appearance."""
    return {key: list(dict.fromkeys(row[column] for row in rows))
            for key, column in (("model", "model"), ("method", "method"), ("batch_size", "batch_size"),
                                ("dtype", "dtype"))}


def select(rows: Sequence[Mapping], model: str | None = None, batch_size: int | None = None,
           dtype: str | None = None, methods: Sequence[str] | None = None) -> tuple[list[dict], dict]:
    """The rows of one model, batch size and dtype (defaults: the first model, its largest batch size, the first
    dtype), of `methods` (default all; the untouched model always), and the selection made.

    Raises:
        ValueError: an empty table, or a value it doesn't hold (the message lists the ones it does).
    """
    if not rows:
        raise ValueError("the sweep table has no rows to draw")
    found = choices(rows)
    model = _pick("model", model, found["model"], found["model"][0])
    of_model = [row for row in rows if row["model"] == model]
    dtype = _pick("dtype", dtype, choices(of_model)["dtype"], choices(of_model)["dtype"][0])
    sizes = choices([row for row in of_model if row["dtype"] == dtype])["batch_size"]
    batch_size = _pick("batch_size", batch_size, sizes, max(sizes))
    wanted = None if methods is None else {UNTOUCHED, *(_pick("method", name, found["method"], None)
                                                        for name in methods)}
    picked = [dict(row) for row in of_model if row["dtype"] == dtype and row["batch_size"] == batch_size
              and (wanted is None or row["method"] in wanted)]
    return picked, {"model": model, "batch_size": batch_size, "dtype": dtype}


def _pick(kind: str, value: object, valid: list, default: object) -> object:
    if value is None:
        return default
    if value not in valid:
        raise ValueError(f"the table has no {kind} {value!r}; it has {', '.join(str(item) for item in valid)}")
    return value


def _name(method: str) -> str:
    return "untouched" if method == UNTOUCHED else label(method)


def series(rows: Sequence[Mapping]) -> dict[str, list[dict]]:
    """The selected rows by method (untouched model left out), each by keep rate, highest first."""
    methods = [name for name in dict.fromkeys(row["method"] for row in rows) if name != UNTOUCHED]
    return {name: sorted((row for row in rows if row["method"] == name), key=lambda row: -row["keep_rate"])
            for name in methods}


def untouched(rows: Sequence[Mapping]) -> dict | None:
    return next((dict(row) for row in rows if row["method"] == UNTOUCHED), None)


def nearest(rows: Sequence[Mapping], method: str, keep_rate: float) -> dict | None:
    """The row of `method` at the keep rate nearest `keep_rate` among selected rows (one model, batch size and
    dtype, as `select` gives them), or None where the table has no row of that method."""
    of_method = [row for row in rows if row["method"] == method]
    if not of_method:
        return None
    return dict(min(of_method, key=lambda row: (abs(row["keep_rate"] - keep_rate), -row["keep_rate"])))


def paper_fits(rows: Sequence[Mapping]) -> bool:
    """Whether the table's model costs about what DeiT-S costs (untouched MACs within a factor 2 of 4.6 G)."""
    base = untouched(rows)
    return base is not None and 0.5 <= base["macs"] / 4.6e9 <= 2.0


def paper_points() -> dict[str, list[float]]:
    """The paper's reference series: keep rates, top-1 (%), GMACs, img/s, speed-up and MACs ceiling."""
    rates, top1, gmacs, speed = (list(column) for column in zip(*PAPER_EVIT_DEIT_S))
    return {"keep_rate": rates, "accuracy": top1, "gmacs": gmacs, "images_per_s": speed,
            "speedup": [value / speed[0] for value in speed], "ceiling": [gmacs[0] / value for value in gmacs]}


def _title(selection: Mapping, rows: Sequence[Mapping]) -> tuple[str, bool]:
    """The figure's title, and whether it must warn that some figures are noise."""
    first = rows[0]
    device = str(first["device"]).split(",")[0]
    attention = (untouched(rows) or first)["attention"]
    lines = [f"{selection['model']}: batch {selection['batch_size']}, {selection['dtype']}, "
             f"{first['img_size']} px, {device}",
             f"{attention}{', compiled' if first['compiled'] else ''}; {first['warmup']} warm-up + {first['runs']} "
             f"timed passes x {first['rounds']} rounds, interleaved; torch {first['torch']}, timm {first['timm']}"]
    noisy = any(row["note"] for row in rows) or (first["rounds"] or 0) < 3
    if noisy:
        lines.append("some speed-ups are not resolved (hollow) or are noise (crossed): see the note below")
    return "\n".join(lines), noisy


def speedup_spread(row: Mapping, base: Mapping | None) -> float | None:
    """The spread a row's speed-up is judged by (the larger of its rounds' and the untouched model's, as the
    sweep's note), or None where it was not measured."""
    spreads = [row.get("spread")] + ([base.get("spread")] if base is not None else [])
    return None if any(spread is None for spread in spreads) else max(spreads)


def caption(rows: Sequence[Mapping]) -> str:
    """The plain words printed under the figure (CAPTION): what the bars are, the top-1 axis's rule, and what a
    hollow or crossed marker means, each sentence where the figure shows it."""
    parts = []
    counts = sorted({count for count in (test_images(row) for row in rows if accuracy_interval(row) is not None)})
    if counts:
        parts.append(CAPTION["interval"].format(level=LEVEL, images=" or ".join(str(count) for count in counts)))
    base = untouched(rows)
    if base is not None and accuracy_interval(base) is not None:
        parts.append(CAPTION["band"])
    if any(row["accuracy"] is not None for row in rows):
        parts.append(CAPTION["span"].format(span=TOP1_MIN_SPAN))
    if any(row.get("spread") is not None for row in rows):
        parts.append(CAPTION["spread"])
    parts += [CAPTION[note] for note in (WITHIN_SPREAD, ABOVE_CEILING) if any(row["note"] == note for row in rows)]
    return " ".join(parts)


def plot_tradeoff(table, *, model: str | None = None, batch_size: int | None = None, dtype: str | None = None,
                  methods: Sequence[str] | None = None, reference: bool | str = "auto",
                  highlight: tuple[str, float] | None = None) -> Figure:
    """The four trade-off panels of one model, batch size and dtype (see the module docstring), as a matplotlib
    Figure that shows itself in notebooks and saves with `.savefig(path)`.

    Top-1 carries its bootstrap interval as bars, on an axis at least TOP1_MIN_SPAN points tall; speed-ups carry
    the spread of their timing rounds, hollow where "within spread"; the caption under the panels says so.

    Args:
        table: a sweep CSV path, its rows, or a DataFrame.
        model, batch_size, dtype: the selection (defaults: the first model, its largest batch size, first dtype).
        methods: the methods drawn (default all); the untouched model always is.
        reference: the EViT paper's DeiT-S series: "auto" (see the module docstring), True (in every panel it
            has figures for) or False.
        highlight: (method, keep rate): ring that row's point in every panel (the row at the nearest keep rate the
            table holds; nothing where the method is not drawn), as the explorer does for its setting.
    """
    rows, selection = select(load_rows(table), model, batch_size, dtype, methods)
    figure = Figure(figsize=(11.0, 8.8), dpi=100)
    axes = figure.subplots(2, 2).ravel()
    by_method = series(rows)
    base = untouched(rows)
    paper = paper_points()
    in_accuracy = reference is True or (reference == "auto" and paper_fits(rows))
    has_accuracy = any(row["accuracy"] is not None for row in rows)
    top1 = lambda row: 100 * row["accuracy"] if row["accuracy"] is not None else None   # noqa: E731
    panels = [(axes[0], lambda row: row["images_per_s"], top1, "images / s (batch)", "top-1 (%)"),
              (axes[1], lambda row: row["macs"] / 1e9, top1, "GMACs per image", "top-1 (%)"),
              (axes[3], lambda row: row["images_per_s"], lambda row: row["latency_ms"], "images / s (batch)",
               "latency, batch 1 (ms)")]
    labels: dict[Any, list] = {ax: [] for ax in axes}          # keep-rate labels, placed once the layout is final
    top1_values: list[float] = []                              # every top-1 and interval end drawn, in %

    def interval_bars(ax, xs, items, colour):
        bounds = [accuracy_interval(row) for row in items]
        drawn = [(x, 100 * row["accuracy"], bound) for x, row, bound in zip(xs, items, bounds)
                 if bound is not None and not (base is not None and row["keep_rate"] == 1.0)]   # 1.0: the band's
        if drawn:
            ax.errorbar([d[0] for d in drawn], [d[1] for d in drawn],
                        yerr=[[d[1] - 100 * d[2][0] for d in drawn], [100 * d[2][1] - d[1] for d in drawn]],
                        fmt="none", ecolor=colour, elinewidth=1.2, alpha=0.75, capsize=2.5, zorder=2)
            top1_values.extend(100 * end for d in drawn for end in d[2])

    for order, (name, items) in enumerate(by_method.items()):
        colour = method_colour(name, order)
        for index, (ax, x, y, _, _) in enumerate(panels):
            scored = [row for row in items if y(row) is not None]
            if scored:
                xs, ys = [x(row) for row in scored], [y(row) for row in scored]
                ax.plot(xs, ys, "o-", color=colour, label=_name(name), markersize=4, zorder=3)
                labels[ax] += [(px, py, f"{row['keep_rate']:g}", colour) for px, py, row in zip(xs, ys, scored)]
                if index < 2:
                    interval_bars(ax, xs, scored, colour)
                    top1_values.extend(ys)
        rates = [row["keep_rate"] for row in items]
        speedups = [row["speedup"] for row in items]
        spreads = [speedup_spread(row, base) for row in items]
        if any(spread is not None for spread in spreads):
            axes[2].errorbar(rates, speedups, yerr=[spread or 0.0 for spread in spreads], fmt="none", ecolor=colour,
                             elinewidth=4, alpha=0.28, capsize=0, zorder=1)
        axes[2].plot(rates, speedups, "-", color=colour, label=_name(name), zorder=3)
        resolved = [(rate, value) for rate, value, row in zip(rates, speedups, items) if not row["note"]]
        within = [(rate, value) for rate, value, row in zip(rates, speedups, items) if row["note"] == WITHIN_SPREAD]
        above = [(rate, value) for rate, value, row in zip(rates, speedups, items) if row["note"] == ABOVE_CEILING]
        for points, style in ((resolved, dict(marker="o")), (within, dict(marker="o", markerfacecolor="white")),
                              (above, dict(marker="X", markerfacecolor="white"))):
            if points:
                axes[2].plot(*zip(*points), linestyle="none", color=colour, markersize=5, zorder=4, **style)
        axes[2].plot(rates, [row["macs_ceiling"] for row in items], "--", color=colour, alpha=0.6, linewidth=1)
    if base is not None:
        for ax, x, y, _, _ in panels:
            if y(base) is not None:
                ax.plot([x(base)], [y(base)], "*", color="black", markersize=10, label="untouched", zorder=5)
        band = accuracy_interval(base) if has_accuracy and base["accuracy"] is not None else None
        if band is not None:                # the untouched model's interval across the panel: is a method apart?
            for ax in axes[:2]:
                ax.axhspan(100 * band[0], 100 * band[1], color="0.5", alpha=0.14, linewidth=0, zorder=0,
                           label=f"untouched, its {LEVEL:.0%} interval (band)" if ax is axes[0] else None)
            top1_values.extend(100 * end for end in band)
        if has_accuracy and base["accuracy"] is not None:
            top1_values.append(100 * base["accuracy"])
    marked = None if highlight is None else nearest(rows, *highlight)
    if marked is not None:
        ring = dict(marker="o", markersize=13, markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.6,
                    linestyle="none", zorder=6)
        label = f"{_name(marked['method'])} at keep {marked['keep_rate']:g}"
        for index, (ax, x, y, _, _) in enumerate(panels):
            if y(marked) is not None:
                ax.plot([x(marked)], [y(marked)], label=label if index == 0 else None, **ring)
        axes[2].plot([marked["keep_rate"]], [marked["speedup"]], label=label, **ring)
    axes[2].axhline(1.0, color="black", linewidth=0.6)
    axes[2].plot([], [], "--", color="gray", label="MACs ceiling (dashed)")
    if any(row["note"] == WITHIN_SPREAD for row in rows):
        axes[2].plot([], [], "o", color="gray", markerfacecolor="white", label="within spread (hollow): not resolved")
    if any(row["note"] == ABOVE_CEILING for row in rows):
        axes[2].plot([], [], "X", color="gray", markerfacecolor="white", label="above MACs ceiling: noise")
    if reference:
        axes[2].plot(paper["keep_rate"], paper["speedup"], "s:", color=PAPER_GREY, markersize=4, label=PAPER_LABEL)
    if reference and in_accuracy:
        axes[0].plot(paper["images_per_s"], paper["accuracy"], "s:", color=PAPER_GREY, markersize=4,
                     label=PAPER_LABEL)
        axes[1].plot(paper["gmacs"], paper["accuracy"], "s:", color=PAPER_GREY, markersize=4, label=PAPER_LABEL)
        top1_values.extend(paper["accuracy"])
    elif reference == "auto":
        for ax in axes[:2]:
            ax.plot([], [], " ", label="EViT paper: another model or test set,\nnot drawn (see the speed-up panel)")
    for ax in axes[:2]:
        if top1_values:
            ax.set_ylim(*top1_limits(top1_values))
    if has_accuracy:
        intervals_shown = any(accuracy_interval(row) is not None for row in rows)
        for ax in axes[:2]:
            if intervals_shown and ax is axes[0]:
                ax.errorbar([], [], yerr=[], fmt="none", ecolor="gray", elinewidth=1.2, capsize=2.5,
                            label=f"bars: top-1's {LEVEL:.0%} interval")
    else:
        for ax in axes[:2]:
            ax.text(0.5, 0.06, "no accuracy in this table (a timm model without --data)", transform=ax.transAxes,
                    ha="center", va="bottom", fontsize=8, color="gray",
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.8))
    for ax, _, _, xlabel, ylabel in panels:
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    axes[2].invert_xaxis()                                                  # less kept to the right
    axes[2].set_xlabel("keep rate (ToMe: EViT's token budget)", fontsize=8)
    axes[2].set_ylabel("throughput / untouched (bars: spread of the rounds)", fontsize=8)
    axes[2].set_ylim(min(0.9, axes[2].get_ylim()[0]), axes[2].get_ylim()[1])
    for ax, name in zip(axes, PANELS):
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
    handles: dict[str, Any] = {}                  # one legend for the four panels, above them: none covers data
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    title, noisy = _title(selection, rows)
    figure.suptitle(title, fontsize=8, color="firebrick" if noisy else "black", y=0.995)
    legend = figure.legend(list(handles.values()), list(handles), loc="upper center", bbox_to_anchor=(0.5, 0.94),
                           ncol=min(4, len(handles)), fontsize=7, frameon=False)
    note = figure.text(0.5, 0.006, _wrapped(caption(rows), 190), ha="center", va="bottom", fontsize=7,
                       color="0.25")
    from matplotlib.backend_bases import FigureCanvasBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()       # the legend's and the caption's heights, measured
    height = figure.bbox.height
    bottom = note.get_window_extent(renderer).y1 / height + 0.005
    figure.tight_layout(rect=(0, bottom, 1, 1))
    above = max(ax.title.get_window_extent(renderer).y1 / height - ax.get_position().y1 for ax in axes[:2])
    figure.subplots_adjust(top=legend.get_window_extent(renderer).y0 / height - above - 0.008)   # under the legend
    figure.set_canvas(FigureCanvasBase(figure))
    for ax in axes:
        place_labels(ax, labels[ax])
    return figure


def _wrapped(text: str, width: int) -> str:
    """`text` broken at spaces into lines of at most `width` characters."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def png_bytes(figure: Figure, dpi: int = 80) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _hover(row: Mapping) -> str:
    bounds = accuracy_interval(row)
    accuracy = "" if row["accuracy"] is None else f"top-1 {100 * row['accuracy']:.1f}%" + (
        f" ({LEVEL:.0%} interval {100 * bounds[0]:.1f}-{100 * bounds[1]:.1f}%)" if bounds else "") + "<br>"
    note = f"<br><b>{note_meaning(row['note'])}</b>" if row["note"] else ""
    spread = "spread not measured" if row["spread"] is None else f"spread of the rounds {row['spread']:.1%}"
    return (f"<b>{_name(row['method'])}</b> keep {row['keep_rate']:g} {row['setting'] or ''}<br>{accuracy}"
            f"{row['images_per_s']:.1f} img/s, {row['speedup']:.2f}x (ceiling {row['macs_ceiling']:.2f}x)<br>"
            f"latency {row['latency_ms']:.2f} ms, {row['macs'] / 1e9:.3f} GMACs<br>tokens {row['tokens']}<br>"
            f"{spread}{note}")


def _error(rows: Sequence[Mapping]) -> dict | None:
    """plotly error bars (error_y) of the rows' top-1 intervals, in %, or None where none has one."""
    bounds = [accuracy_interval(row) for row in rows]
    if not any(bounds):
        return None
    return dict(type="data", symmetric=False, thickness=1.2, width=3,
                array=[100 * (bound[1] - row["accuracy"]) if bound else 0.0 for row, bound in zip(rows, bounds)],
                arrayminus=[100 * (row["accuracy"] - bound[0]) if bound else 0.0 for row, bound in zip(rows, bounds)])


def tradeoff_figure(table, *, model: str | None = None, batch_size: int | None = None, dtype: str | None = None,
                    methods: Sequence[str] | None = None, reference: bool | str = "auto"):
    """The panels of `plot_tradeoff` as one interactive plotly Figure (hover shows each row, its interval and its
    note in words; clicking a method in the legend hides it in every panel), with the same bars, axis rule, hollow
    and crossed markers and caption. The keep rate of each point is in its hover, not written beside it. Needs
    plotly (pip install 'retokviz[notebooks]')."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as error:  # pragma: no cover - plotly is in the notebooks extra
        raise ImportError("tradeoff_figure needs plotly: pip install 'retokviz[notebooks]'") from error
    rows, selection = select(load_rows(table), model, batch_size, dtype, methods)
    figure = make_subplots(rows=2, cols=2, subplot_titles=PANELS, horizontal_spacing=0.1, vertical_spacing=0.14)
    cells = {"throughput": (1, 1), "macs": (1, 2), "speedup": (2, 1), "latency": (2, 2)}
    has_accuracy = any(row["accuracy"] is not None for row in rows)
    base = untouched(rows)
    top1_values: list[float] = []

    def add(cell, x, y, name, colour, group, first, dash="solid", text=None, symbol="circle", mode="lines+markers",
            error_y=None):
        symbols = symbol if isinstance(symbol, list) else [symbol] * len(x)
        figure.add_trace(go.Scatter(x=x, y=y, name=name, legendgroup=group, showlegend=first, mode=mode,
                                    line={"color": colour, "dash": dash}, marker={"symbol": symbols, "size": 7},
                                    error_y=error_y, hovertext=text, hoverinfo="text" if text else "x+y+name"),
                         *cells[cell])

    def markers(items):      # the speed-up's marker: hollow within spread, crossed above the ceiling
        return [{WITHIN_SPREAD: "circle-open", ABOVE_CEILING: "x-open"}.get(row["note"], "circle") for row in items]

    for order, (name, items) in enumerate(series(rows).items()):
        colour, text = to_hex(method_colour(name, order)), [_hover(row) for row in items]
        first = True
        if has_accuracy:
            scored = [row for row in items if row["accuracy"] is not None]
            error = _error(scored)
            for cell, x in (("throughput", [r["images_per_s"] for r in scored]),
                            ("macs", [r["macs"] / 1e9 for r in scored])):
                add(cell, x, [100 * r["accuracy"] for r in scored], _name(name), colour, name, first,
                    text=[_hover(r) for r in scored], error_y=error)
                first = False
            top1_values += [100 * r["accuracy"] for r in scored]
            top1_values += [100 * end for r in scored for end in (accuracy_interval(r) or ())]
        rates = [row["keep_rate"] for row in items]
        spreads = [speedup_spread(row, base) for row in items]
        error = None if all(spread is None for spread in spreads) else dict(
            type="data", array=[spread or 0.0 for spread in spreads], thickness=3, width=0,
            color=f"rgba({','.join(str(round(255 * c)) for c in to_rgb(colour))},0.35)")
        add("speedup", rates, [row["speedup"] for row in items], _name(name), colour, name, first, text=text,
            symbol=markers(items), error_y=error)
        add("speedup", rates, [row["macs_ceiling"] for row in items], f"{_name(name)} MACs ceiling", colour, name,
            False, dash="dash", mode="lines")
        add("latency", [row["images_per_s"] for row in items], [row["latency_ms"] for row in items], _name(name),
            colour, name, False, text=text)
    if base is not None:
        marker = dict(colour="black", group=UNTOUCHED, text=[_hover(base)], symbol="star", mode="markers")
        if has_accuracy and base["accuracy"] is not None:
            add("throughput", [base["images_per_s"]], [100 * base["accuracy"]], "untouched", first=True,
                error_y=_error([base]), **marker)
            add("macs", [base["macs"] / 1e9], [100 * base["accuracy"]], "untouched", first=False,
                error_y=_error([base]), **marker)
            band = accuracy_interval(base)
            if band is not None:
                for cell in ("throughput", "macs"):
                    figure.add_hrect(y0=100 * band[0], y1=100 * band[1], fillcolor="gray", opacity=0.14,
                                     line_width=0, row=cells[cell][0], col=cells[cell][1])
                top1_values += [100 * end for end in band]
            top1_values.append(100 * base["accuracy"])
        add("latency", [base["images_per_s"]], [base["latency_ms"]], "untouched", first=not has_accuracy, **marker)
    paper = paper_points()
    if reference:
        add("speedup", paper["keep_rate"], paper["speedup"], PAPER_LABEL, PAPER_GREY, "paper", True, dash="dot",
            symbol="square")
        if reference is True or (reference == "auto" and paper_fits(rows)):
            add("throughput", paper["images_per_s"], paper["accuracy"], PAPER_LABEL, PAPER_GREY, "paper", False,
                dash="dot", symbol="square")
            add("macs", paper["gmacs"], paper["accuracy"], PAPER_LABEL, PAPER_GREY, "paper", False, dash="dot",
                symbol="square")
            top1_values += paper["accuracy"]
    figure.update_xaxes(title_text="images / s (batch)", row=1, col=1)
    figure.update_xaxes(title_text="GMACs per image", row=1, col=2)
    figure.update_xaxes(title_text="keep rate (ToMe: EViT's token budget)", autorange="reversed", row=2, col=1)
    figure.update_xaxes(title_text="images / s (batch)", row=2, col=2)
    for row, col in ((1, 1), (1, 2)):
        figure.update_yaxes(title_text="top-1 (%)", row=row, col=col,
                            range=list(top1_limits(top1_values)) if top1_values else None)
    figure.update_yaxes(title_text="throughput / untouched", row=2, col=1)
    figure.update_yaxes(title_text="latency, batch 1 (ms)", row=2, col=2)
    title, noisy = _title(selection, rows)
    figure.add_annotation(text=_wrapped(caption(rows), 150).replace("\n", "<br>"), xref="paper", yref="paper",
                          x=0.5, y=-0.1, showarrow=False, yanchor="top", font={"size": 10, "color": "#444"})
    figure.update_layout(title={"text": title.replace("\n", "<br>"), "font": {"size": 12,
                                "color": "firebrick" if noisy else "black"}},
                         height=860, margin={"t": 110, "b": 150}, legend={"font": {"size": 10}})
    return figure


class TradeoffView:
    """The trade-off panels with pickers (ipywidgets): model, methods, batch size and dtype over one table.

    Set a picker's `.value` in code or use it; `set(...)` changes several at once; `mark(method, keep_rate)` rings
    one setting's points (the explorer marks the setting it shows). The figure is the matplotlib one of
    `plot_tradeoff`, shown as a PNG, so a saved notebook keeps it.

    Attributes:
        rows: the table's rows; model, methods, batch_size, dtype: the pickers; picture: the figure; root: the
            widget shown; marked: the (method, keep rate) ringed, or None.
    """

    def __init__(self, table, *, model: str | None = None, batch_size: int | None = None, dtype: str | None = None,
                 methods: Sequence[str] | None = None, highlight: tuple[str, float] | None = None,
                 draw: bool = True) -> None:
        try:
            import ipywidgets as w
        except ImportError as error:  # pragma: no cover - ipywidgets is in the notebooks extra
            raise ImportError("tradeoff_view needs ipywidgets: pip install 'retokviz[notebooks]'") from error
        self.rows = load_rows(table)
        _, selection = select(self.rows, model, batch_size, dtype, methods)
        found = choices(self.rows)
        style = {"description_width": "80px"}
        reduced = [name for name in found["method"] if name != UNTOUCHED]
        self.model = w.Dropdown(options=found["model"], value=selection["model"], description="model", style=style)
        self.methods = w.SelectMultiple(options=[(_name(name), name) for name in reduced],
                                        value=tuple(reduced if methods is None else methods), description="methods",
                                        rows=min(4, max(1, len(reduced))), style=style)
        self.batch_size = w.Dropdown(options=found["batch_size"], value=selection["batch_size"],
                                     description="batch size", style=style)
        self.dtype = w.Dropdown(options=found["dtype"], value=selection["dtype"], description="dtype", style=style)
        self.message = w.HTML()
        self.picture = w.Image(format="png")
        self.root = w.VBox([w.HBox([w.VBox([self.model, self.batch_size, self.dtype]), self.methods]),
                            self.message, self.picture])
        self._holding = False
        self.marked = highlight
        for control in (self.model, self.methods, self.batch_size, self.dtype):
            control.observe(lambda change: self._redraw(), names="value")
        if draw:
            self._redraw()

    def selected(self) -> tuple[list[dict], dict]:
        """The rows the pickers select now and the selection (model, batch_size, dtype), as `select` gives them."""
        return select(self.rows, self.model.value, self.batch_size.value, self.dtype.value,
                      list(self.methods.value))

    def mark(self, method: str | None, keep_rate: float | None = None) -> None:
        """Ring the points of `method` at the table's keep rate nearest `keep_rate` (None: no ring); redrawn only
        when the ringed row changes (a slider moving between two swept keep rates redraws nothing)."""
        before, self.marked = self.marked, None if method is None else (method, float(keep_rate))
        if not self.picture.value or self._ringed(before) != self._ringed(self.marked):
            self._redraw()

    def _ringed(self, marked: tuple[str, float] | None) -> tuple | None:
        """The (method, keep rate) of the row `marked` rings in the selection shown, or None."""
        if marked is None:
            return None
        try:
            row = nearest(self.selected()[0], *marked)
        except ValueError:                     # no valid selection: nothing is ringed
            return None
        return None if row is None else (row["method"], row["keep_rate"])

    def set(self, **values) -> None:
        """Set several pickers at once (model=, methods=, batch_size=, dtype=), drawing once.

        Raises:
            ValueError: an unknown picker or a value the table doesn't hold.
        """
        controls = {"model": self.model, "methods": self.methods, "batch_size": self.batch_size, "dtype": self.dtype}
        unknown = sorted(set(values) - set(controls))
        if unknown:
            raise ValueError(f"unknown picker(s) {unknown}; the pickers are {', '.join(controls)}")
        self._holding = True
        try:
            for name, value in values.items():
                control = controls[name]
                options = [option[1] if isinstance(option, tuple) else option for option in control.options]
                for item in value if name == "methods" else [value]:
                    if item not in options:
                        raise ValueError(f"the table has no {name} {item!r}; it has "
                                         f"{', '.join(str(option) for option in options)}")
                control.value = tuple(value) if name == "methods" else value
        finally:
            self._holding = False
        self._redraw()

    def _redraw(self) -> None:
        if self._holding:
            return
        try:
            figure = plot_tradeoff(self.rows, model=self.model.value, batch_size=self.batch_size.value,
                                   dtype=self.dtype.value, methods=list(self.methods.value), highlight=self.marked)
        except ValueError as error:            # e.g. this model was not swept at this batch size
            self.message.value = f"<span style='color:firebrick'>{error}</span>"
            return
        self.message.value = ""
        self.picture.value = png_bytes(figure)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.root)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.root._repr_mimebundle_(**kwargs)


def tradeoff_view(table, **selection) -> TradeoffView:
    """`TradeoffView(table, ...)`: the trade-off panels with model, methods, batch size and dtype pickers."""
    return TradeoffView(table, **selection)
