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
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matplotlib.colors import to_hex

from retokviz.methods.registry import label
from retokviz.views.figure import Figure
from retokviz.views.palette import method_colour
from retokviz.sweep.config import UNTOUCHED
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
        lines.append("some speed-ups are not resolved or are noise (see the note column)")
    return "\n".join(lines), noisy


def plot_tradeoff(table, *, model: str | None = None, batch_size: int | None = None, dtype: str | None = None,
                  methods: Sequence[str] | None = None, reference: bool | str = "auto",
                  highlight: tuple[str, float] | None = None) -> Figure:
    """The four trade-off panels of one model, batch size and dtype (see the module docstring), as a matplotlib
    Figure that shows itself in notebooks and saves with `.savefig(path)`.

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
    figure = Figure(figsize=(11.0, 8.2), dpi=100)
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
    for order, (name, items) in enumerate(by_method.items()):
        colour = method_colour(name, order)
        for ax, x, y, _, _ in panels:
            points = [(x(row), y(row), row["keep_rate"]) for row in items if y(row) is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color=colour, label=_name(name),
                        markersize=4)
                for px, py, rate in points:
                    ax.annotate(f"{rate:g}", (px, py), textcoords="offset points", xytext=(3, 3), fontsize=6,
                                color=colour)
        rates = [row["keep_rate"] for row in items]
        axes[2].plot(rates, [row["speedup"] for row in items], "o-", color=colour, label=_name(name), markersize=4)
        axes[2].plot(rates, [row["macs_ceiling"] for row in items], "--", color=colour, alpha=0.6, linewidth=1)
    if base is not None:
        for ax, x, y, _, _ in panels:
            if y(base) is not None:
                ax.plot([x(base)], [y(base)], "*", color="black", markersize=10, label="untouched", zorder=5)
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
    if reference:
        axes[2].plot(paper["keep_rate"], paper["speedup"], "s:", color=PAPER_GREY, markersize=4, label=PAPER_LABEL)
    if reference and in_accuracy:
        axes[0].plot(paper["images_per_s"], paper["accuracy"], "s:", color=PAPER_GREY, markersize=4,
                     label=PAPER_LABEL)
        axes[1].plot(paper["gmacs"], paper["accuracy"], "s:", color=PAPER_GREY, markersize=4, label=PAPER_LABEL)
    elif reference == "auto":
        for ax in axes[:2]:
            ax.plot([], [], " ", label="EViT paper: another model or test set,\nnot drawn (see the speed-up panel)")
    if not has_accuracy:
        for ax in axes[:2]:
            ax.text(0.5, 0.5, "no accuracy in this table\n(a timm model without --data)", transform=ax.transAxes,
                    ha="center", va="center", fontsize=8, color="gray")
    for ax, _, _, xlabel, ylabel in panels:
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    axes[2].invert_xaxis()                                                  # less kept to the right
    axes[2].set_xlabel("keep rate (ToMe: EViT's token budget)", fontsize=8)
    axes[2].set_ylabel("throughput / untouched", fontsize=8)
    for ax, name in zip(axes, PANELS):
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
    title, noisy = _title(selection, rows)
    figure.suptitle(title, fontsize=8, color="firebrick" if noisy else "black")
    figure.tight_layout()
    return figure


def png_bytes(figure: Figure, dpi: int = 80) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _hover(row: Mapping) -> str:
    accuracy = "" if row["accuracy"] is None else f"top-1 {100 * row['accuracy']:.1f}%<br>"
    note = f"<br><b>{row['note']}</b>" if row["note"] else ""
    return (f"<b>{_name(row['method'])}</b> keep {row['keep_rate']:g} {row['setting'] or ''}<br>{accuracy}"
            f"{row['images_per_s']:.1f} img/s, {row['speedup']:.2f}x (ceiling {row['macs_ceiling']:.2f}x)<br>"
            f"latency {row['latency_ms']:.2f} ms, {row['macs'] / 1e9:.3f} GMACs<br>tokens {row['tokens']}<br>"
            f"spread {row['spread']:.1%}{note}")


def tradeoff_figure(table, *, model: str | None = None, batch_size: int | None = None, dtype: str | None = None,
                    methods: Sequence[str] | None = None, reference: bool | str = "auto"):
    """The panels of `plot_tradeoff` as one interactive plotly Figure (hover shows each row; clicking a method in
    the legend hides it in every panel). Needs plotly (pip install 'retokviz[notebooks]')."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as error:  # pragma: no cover - plotly is in the notebooks extra
        raise ImportError("tradeoff_figure needs plotly: pip install 'retokviz[notebooks]'") from error
    rows, selection = select(load_rows(table), model, batch_size, dtype, methods)
    figure = make_subplots(rows=2, cols=2, subplot_titles=PANELS, horizontal_spacing=0.1, vertical_spacing=0.14)
    cells = {"throughput": (1, 1), "macs": (1, 2), "speedup": (2, 1), "latency": (2, 2)}
    has_accuracy = any(row["accuracy"] is not None for row in rows)

    def add(cell, x, y, name, colour, group, first, dash="solid", text=None, symbol="circle", mode="lines+markers"):
        figure.add_trace(go.Scatter(x=x, y=y, name=name, legendgroup=group, showlegend=first, mode=mode,
                                    line={"color": colour, "dash": dash}, marker={"symbol": symbol, "size": 7},
                                    hovertext=text, hoverinfo="text" if text else "x+y+name"), *cells[cell])

    for order, (name, items) in enumerate(series(rows).items()):
        colour, text = to_hex(method_colour(name, order)), [_hover(row) for row in items]
        first = True
        if has_accuracy:
            scored = [row for row in items if row["accuracy"] is not None]
            add("throughput", [r["images_per_s"] for r in scored], [100 * r["accuracy"] for r in scored],
                _name(name), colour, name, first, text=[_hover(r) for r in scored])
            add("macs", [r["macs"] / 1e9 for r in scored], [100 * r["accuracy"] for r in scored], _name(name),
                colour, name, False, text=[_hover(r) for r in scored])
            first = False
        rates = [row["keep_rate"] for row in items]
        add("speedup", rates, [row["speedup"] for row in items], _name(name), colour, name, first, text=text)
        add("speedup", rates, [row["macs_ceiling"] for row in items], f"{_name(name)} MACs ceiling", colour, name,
            False, dash="dash")
        add("latency", [row["images_per_s"] for row in items], [row["latency_ms"] for row in items], _name(name),
            colour, name, False, text=text)
    base = untouched(rows)
    if base is not None:
        marker = dict(colour="black", group=UNTOUCHED, text=[_hover(base)], symbol="star", mode="markers")
        if has_accuracy and base["accuracy"] is not None:
            add("throughput", [base["images_per_s"]], [100 * base["accuracy"]], "untouched", first=True, **marker)
            add("macs", [base["macs"] / 1e9], [100 * base["accuracy"]], "untouched", first=False, **marker)
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
    figure.update_xaxes(title_text="images / s (batch)", row=1, col=1)
    figure.update_xaxes(title_text="GMACs per image", row=1, col=2)
    figure.update_xaxes(title_text="keep rate (ToMe: EViT's token budget)", autorange="reversed", row=2, col=1)
    figure.update_xaxes(title_text="images / s (batch)", row=2, col=2)
    for row, col in ((1, 1), (1, 2)):
        figure.update_yaxes(title_text="top-1 (%)", row=row, col=col)
    figure.update_yaxes(title_text="throughput / untouched", row=2, col=1)
    figure.update_yaxes(title_text="latency, batch 1 (ms)", row=2, col=2)
    title, noisy = _title(selection, rows)
    figure.update_layout(title={"text": title.replace("\n", "<br>"), "font": {"size": 12,
                                "color": "firebrick" if noisy else "black"}},
                         height=780, margin={"t": 110}, legend={"font": {"size": 10}})
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
