"""Static figures of traces and of the robustness measurements, as matplotlib figures: they show themselves in
Jupyter (retokviz.views.figure.Figure) and save as PNG or SVG with `figure.savefig("name.svg")`. No pyplot, no global
matplotlib state is touched.

    arrays = extract(trace, images[0], mask=masks[0])
    plot_status(arrays)                         # one panel per reduction block, with the legend
    plot_pieces(arrays)                         # the pieces forming, block by block
    plot_attention(arrays)                      # the class attention behind the first reduction
    plot_lineage(arrays, patch=(2, 5))          # where one patch went
    plot_removed(arrays)                        # what was let go of: background or object
    plot_tokens([evit_arrays, tome_arrays])     # tokens per block, several methods on one axis
    plot_methods([evit_arrays, tome_arrays])    # methods side by side at one token budget

    from retokviz.measure import robustness
    plot_background_removed(robustness.background_by_keep_rate(model, images, masks))
    plot_let_go_by_reason(rv.analysis.let_go_by_reason(model, images, masks))
    plot_masking_effect(robustness.masking_effect(model, images, labels, masks, counts=(1, 2, 4)))
    plot_masked_accuracy(robustness.masked_accuracy(model, methods, images, labels, counts=(0, 4, 8)))
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Patch as LegendPatch
from matplotlib.patheffects import withStroke

from retokviz.trace.record import Status
from retokviz.views.figure import Figure
from retokviz.methods.registry import label as method_label
from retokviz.views.palette import method_colour
from retokviz.views import palette, raster
from retokviz.views.extract import TraceArrays, check_block, patch_position

PANEL = 2.4          # inches per image panel
TITLE_SIZE = 8


def _blocks(arrays: TraceArrays, blocks: Sequence[int] | None) -> list[int]:
    """The blocks to draw, checked: `blocks`, or the reduction blocks (every block if none reduced)."""
    if blocks is None:
        blocks = arrays.reduction_blocks or range(arrays.num_blocks)
    blocks = [check_block(arrays, block) for block in blocks]
    if not blocks:
        raise ValueError("blocks is empty; give at least one block index")
    return blocks


def _panels(count: int, extra_height: float = 0.5) -> tuple[Figure, list]:
    """A figure with `count` image panels in a row, axes off."""
    figure = Figure(figsize=(PANEL * count, PANEL + extra_height))
    axes = list(figure.subplots(1, count, squeeze=False)[0])
    for ax in axes:
        ax.set_axis_off()
    return figure, axes


def legend_handles(entries: Sequence[tuple[str, str, str]]) -> list[LegendPatch]:
    """Legend handles (matplotlib patches) of palette.legend entries [(label, colour, hatch), ...], each swatch drawn
    as the views draw it (palette.swatch): plain, striped ("/", "\\", "x": stripes of the colour over a paled
    swatch), outlined (a bright line in a dark one, as the object's) or tinted in a darker outline (a piece)."""
    handles = []
    for label, colour, hatch in entries:
        fill, line = palette.swatch(colour, hatch)
        if hatch == palette.OUTLINED:
            handles.append(LegendPatch(facecolor=fill, edgecolor=line, linewidth=2.0, label=label,
                                       path_effects=[withStroke(linewidth=3.5, foreground="black")]))
        elif hatch == palette.TINTED:
            handles.append(LegendPatch(facecolor=fill, edgecolor=line, linewidth=2.0, label=label))
        elif hatch:
            handles.append(LegendPatch(facecolor=fill, edgecolor=line, hatch=hatch * 3, linewidth=0.8, label=label))
        else:
            handles.append(LegendPatch(facecolor=fill, edgecolor=line, linewidth=0.6, label=label))
    return handles


LEGEND_SIZE = 7               # points, the legend's text


def text_width(text: str, size: float = LEGEND_SIZE) -> float:
    """The width of `text` in inches at `size` points, in matplotlib's default font (measured, no drawing)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width, _, _ = TextToPath().get_text_width_height_descent(text, FontProperties(size=size), ismath=False)
    return width / 72


def legend_columns(labels: Sequence[str], width: float, most: int = 5, size: float = LEGEND_SIZE) -> int:
    """How many columns (at most `most`) a legend of `labels` can have and fit `width` inches: matplotlib fills
    the columns top to bottom, each as wide as its longest label plus its swatch (2 em), the gap after the swatch
    (0.8 em) and between columns (2 em)."""
    em = size / 72
    for ncol in range(max(1, min(len(labels), most)), 1, -1):
        rows = -(-len(labels) // ncol)
        columns = [labels[start:start + rows] for start in range(0, len(labels), rows)]
        needed = sum(max(text_width(label, size) for label in column) + 2.8 * em for column in columns)
        if needed + 2 * em * (len(columns) - 1) + 2 * em <= width:
            return len(columns)
    return 1


def _legend(figure: Figure, view: str, ncol: int = 5, present: set[str] | None = None) -> int:
    """The palette's legend of `view` along the figure's bottom, in at most `ncol` columns (fewer where the labels
    would not fit the figure's width: the entries wrap onto more rows), listing only what `present` names
    (raster.legend_keys; None: every entry). Returns the number of rows."""
    entries = palette.legend(view, present)
    width = figure.get_figwidth() * 0.98
    columns = legend_columns([label for label, _, _ in entries], width, ncol)
    if columns == 1:                    # a label wider than the figure: wrapped onto lines that fit
        entries = [(_wrap(label, width - 4 * LEGEND_SIZE / 72), colour, hatch) for label, colour, hatch in entries]
    figure.legend(handles=legend_handles(entries), loc="lower center", ncol=columns, fontsize=LEGEND_SIZE,
                  frameon=False)
    if columns == 1:
        return sum(label.count("\n") + 1 for label, _, _ in entries)
    return -(-len(entries) // columns)


def _wrap(label: str, width: float) -> str:
    """`label` broken at spaces into lines no wider than `width` inches (at the legend's size)."""
    lines: list[str] = []
    for word in label.split(" "):
        if lines and text_width(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


def _layout(figure: Figure, bottom: float = 0.14, rows: int = 1, top: float = 0.86) -> None:
    """Room for the panels' titles on top (`top`) and for a legend of `rows` rows below them (`bottom`, the share
    of the figure's height for one row): each row past the first makes the figure taller, the panels keep their
    size."""
    height = figure.get_figheight()
    extra = (rows - 1) * 0.16                                      # inches per legend row
    figure.set_figheight(height + extra)
    scale = height / (height + extra)
    figure.subplots_adjust(left=0.01, right=0.99, top=1 - (1 - top) * scale, bottom=bottom * scale + extra /
                           (height + extra), wspace=0.04)


def plot_view(arrays: TraceArrays, view: str = "status", blocks: Sequence[int] | None = None,
              patch: int | tuple[int, int] | None = None) -> Figure:
    """One panel per block of a raster view (one of retokviz.views.raster.VIEWS), titled with the token count.

    Args:
        blocks: the blocks to show; None means the reduction blocks.
        patch: a patch whose token is outlined in every panel, or None.
    """
    blocks = _blocks(arrays, blocks)
    figure, axes = _panels(len(blocks))
    for ax, block in zip(axes, blocks):
        ax.imshow(raster.view_image(arrays, view, block, patch), interpolation="nearest")
        ax.set_title(f"after block {block}: {arrays.num_tokens[block]} tokens", fontsize=TITLE_SIZE)
    figure.suptitle(arrays.method, fontsize=TITLE_SIZE + 1)
    rows = _legend(figure, view, present=raster.legend_keys(arrays, view, blocks))
    _layout(figure, rows=rows)
    return figure


def plot_status(arrays: TraceArrays, blocks: Sequence[int] | None = None) -> Figure:
    """The status of every patch leaving each block: kept as is, merged per piece (outlined), fused and dropped
    striped."""
    return plot_view(arrays, "status", blocks)


def plot_pieces(arrays: TraceArrays, blocks: Sequence[int] | None = None, fill: str = "colour") -> Figure:
    """The merged pieces leaving each block (default: the reduction blocks), one colour and outline per piece,
    titled with the number of pieces: ImagePiece's pieces forming, block by block.

    Args:
        fill: "colour" (each piece tinted with its own colour) or "mean" (filled with its pixels' mean colour).
    """
    blocks = _blocks(arrays, blocks)
    figure, axes = _panels(len(blocks))
    for ax, block in zip(axes, blocks):
        pieces = arrays.pieces[block]
        count = len(np.unique(pieces[pieces >= 0]))
        ax.imshow(raster.pieces_image(arrays, block, fill=fill), interpolation="nearest")
        ax.set_title(f"after block {block}: {count} pieces, {arrays.num_tokens[block]} tokens", fontsize=TITLE_SIZE)
    figure.suptitle(f"{arrays.method}: pieces", fontsize=TITLE_SIZE + 1)
    rows = _legend(figure, "pieces", present=raster.legend_keys(arrays, "pieces", blocks))
    _layout(figure, rows=rows)
    return figure


def plot_attention(arrays: TraceArrays, block: int | None = None) -> Figure:
    """Two panels: the picture (the object outlined where a mask is given), and the class attention that
    decided a reduction, translucent over the greyed picture, with its colour bar.

    Args:
        block: a block with class-attention scores; None means the first one.

    Raises:
        ValueError: no scores in the trace, or `block` has none (the message lists the scored blocks).
    """
    scored = arrays.scored_blocks
    if block is None:
        raster.attention_source(arrays, 0)           # raises the clear error where there are no scores at all
        block = scored[0]
    block = check_block(arrays, block)
    if block not in scored:
        raise ValueError(f"block {block} has no class-attention scores; the scored blocks are {list(scored)}")
    figure = Figure(figsize=(2 * PANEL + 0.6, PANEL + 0.5))
    left, right = figure.subplots(1, 2)
    left.imshow(raster.picture_image(arrays))
    left.set_title("the image" + (" (object outlined)" if arrays.mask is not None else ""), fontsize=TITLE_SIZE)
    right.imshow(raster.attention_image(arrays, block), interpolation="nearest")
    right.set_title(f"class attention at block {block}", fontsize=TITLE_SIZE)
    scores = arrays.scores[block]
    valid = scores[~np.isnan(scores)]
    mappable = ScalarMappable(Normalize(float(valid.min()), float(valid.max())), palette.HEAT_CMAP)
    bar = figure.colorbar(mappable, ax=right, fraction=0.046, pad=0.02)
    bar.ax.tick_params(labelsize=6)
    bar.set_label("class attention (more opaque: higher)", fontsize=6)
    for ax in (left, right):
        ax.set_axis_off()
    figure.suptitle(arrays.method, fontsize=TITLE_SIZE + 1)
    figure.subplots_adjust(left=0.01, right=0.9, top=0.82, bottom=0.03, wspace=0.05)
    return figure


def plot_lineage(arrays: TraceArrays, patch: int | tuple[int, int], blocks: Sequence[int] | None = None) -> Figure:
    """Where one patch went: one panel per block (default: every block), the patches its token carries outlined.

    Args:
        patch: a flat index (row * cols + col) or a (row, col) pair.
    """
    row, col = patch_position(arrays, patch)
    blocks = list(range(arrays.num_blocks)) if blocks is None else _blocks(arrays, blocks)
    figure, axes = _panels(len(blocks))
    for ax, block in zip(axes, blocks):
        ax.imshow(raster.lineage_image(arrays, block, (row, col)), interpolation="nearest")
        token = int(arrays.owner[block, row, col])
        status = Status(int(arrays.status[block, row, col])).name.lower()
        title = f"block {block}: {status}"
        if token >= 0:
            carried = int((arrays.owner[block] == token).sum())
            title += f", token {token} ({carried} patch{'es' if carried > 1 else ''})"
        ax.set_title(title, fontsize=TITLE_SIZE)
    figure.suptitle(f"{arrays.method}: patch (row {row}, col {col})", fontsize=TITLE_SIZE + 1)
    present = {"mask"} if arrays.mask is not None else set()        # the patch hatched only where it is dropped
    present |= {"dropped"} if (arrays.owner[blocks, row, col] < 0).any() else set()
    rows = _legend(figure, "lineage", present=present)
    _layout(figure, rows=rows)
    return figure


def plot_removed(arrays: TraceArrays, block: int | None = None) -> Figure:
    """The patches let go of up to `block` (default: the last block), coloured by whether they touch the object,
    with the background share against a random choice of as many patches in the title.

    Raises:
        ValueError: the arrays hold no mask.
    """
    block = arrays.num_blocks - 1 if block is None else check_block(arrays, block)
    counts = raster.removed_counts(arrays, block)
    figure, (ax,) = _panels(1, extra_height=1.3)
    ax.imshow(raster.removed_image(arrays, block), interpolation="nearest")
    ax.set_title(f"{arrays.method}\nup to block {block}: {counts['removed']} of {arrays.num_patches} let go of,\n"
                 f"{100 * counts['share']:.0f} % background (random: {100 * counts['random']:.0f} %)",
                 fontsize=TITLE_SIZE - 1)
    _legend(figure, "removed", ncol=1, present=raster.legend_keys(arrays, "removed", block))
    figure.subplots_adjust(left=0.02, right=0.98, top=0.75, bottom=0.22)
    return figure


def _token_series(items) -> list[tuple[str, np.ndarray]]:
    """TraceArrays, a sequence of them or of counts, or {label: arrays or counts} -> [(label, counts [L])]."""
    if isinstance(items, TraceArrays):
        items = [items]
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = [(item.method if isinstance(item, TraceArrays) else f"series {index}", item)
                 for index, item in enumerate(items)]
    series = []
    for label, item in pairs:
        counts = item.num_tokens if isinstance(item, TraceArrays) else np.asarray(item)
        if counts.ndim != 1 or counts.size == 0:
            raise ValueError(f"token counts for {label!r} must be a non-empty [L] sequence, got shape {counts.shape}")
        series.append((str(label), counts))
    if not series:
        raise ValueError("nothing to plot: give TraceArrays, token counts, or a {label: either} mapping")
    return series


def token_series(items) -> list[tuple[str, np.ndarray]]:
    """The (label, [L] patch tokens leaving each block) pairs plot_tokens and the plotly chart draw.

    Args:
        items: TraceArrays, a sequence of TraceArrays or of token counts, or {label: TraceArrays or counts}.
    """
    return _token_series(items)


def plot_tokens(items, title: str = "patch tokens leaving each block") -> Figure:
    """Patch tokens leaving each block, a line per method, all on one axis.

    Args:
        items: TraceArrays, a sequence of TraceArrays or of token counts, or {label: TraceArrays or counts}.
    """
    figure = Figure(figsize=(4.8, 3.0))
    ax = figure.subplots()
    for order, (label, counts) in enumerate(_token_series(items)):
        ax.plot(np.arange(len(counts)), counts, marker="o", markersize=3, label=label,
                color=method_colour(label, order))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("block")
    ax.set_ylabel("patch tokens")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=TITLE_SIZE + 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return figure


def plot_methods(items: Sequence[TraceArrays] | Mapping[str, TraceArrays], view: str = "status",
                 block: int | None = None) -> Figure:
    """Methods side by side (e.g. at one token budget): one panel each, leaving `block` (default: the last).

    Args:
        items: TraceArrays of the same image under several methods, or {label: TraceArrays}.
        view: one of retokviz.views.raster.VIEWS.
    """
    pairs = list(items.items()) if isinstance(items, Mapping) else [(item.method, item) for item in items]
    if not pairs:
        raise ValueError("give at least one TraceArrays to compare")
    figure, axes = _panels(len(pairs), extra_height=0.7)
    present: set[str] = set()
    for ax, (label, arrays) in zip(axes, pairs):
        shown = arrays.num_blocks - 1 if block is None else check_block(arrays, block)
        ax.imshow(raster.view_image(arrays, view, shown), interpolation="nearest")
        ax.set_title(f"{label}\nafter block {shown}: {arrays.num_tokens[shown]} tokens", fontsize=TITLE_SIZE - 1)
        present |= raster.legend_keys(arrays, view, shown)
    rows = _legend(figure, view, present=present)
    _layout(figure, bottom=0.16, rows=rows, top=0.8)
    return figure


# --- robustness -------------------------------------------------------------------------------------------

def _series_name(method: str) -> str:
    """A method's description as a series name: "EViT(keep_rate=0.7)" -> "EViT" (its registry label)."""
    key = palette.method_key(method)
    return method if key is None else method_label(key)


def plot_background_removed(results: Sequence) -> Figure:
    """The background share of the patches let go of, against the keep rate (reversed: less kept to the right),
    one line per method, with a random choice's share.

    Args:
        results: retokviz.measure.robustness.background_by_keep_rate's list (keep_rate, method, removed, background,
            random), of one method or several (concatenated lists).
    """
    if not results:
        raise ValueError("results is empty: give background_by_keep_rate's list")
    series: dict[str, list] = {}
    for result in results:
        series.setdefault(_series_name(result.method), []).append(result)
    figure = Figure(figsize=(4.6, 3.1))
    ax = figure.subplots()
    for order, (name, rows) in enumerate(series.items()):
        rows = sorted(rows, key=lambda r: r.keep_rate)
        ax.plot([r.keep_rate for r in rows], [100 * r.background for r in rows], marker="o", label=name,
                color=method_colour(name, order))
        for r in rows:
            ax.annotate(f"{100 * r.removed:.0f} %", (r.keep_rate, 100 * r.background), fontsize=6,
                        textcoords="offset points", xytext=(0, 5), ha="center")
    rates = sorted({r.keep_rate for r in results})
    random = sum(r.random for r in results) / len(results)
    ax.plot(rates, [100 * random] * len(rates), linestyle="--", color="0.4", label="a random choice")
    ax.invert_xaxis()
    ax.set_xlabel("keep rate")
    ax.set_ylabel("background share (%)")
    ax.set_title("background among the patches let go of\n(labels: share of all patches let go of)",
                 fontsize=TITLE_SIZE)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return figure


def plot_let_go_by_reason(reasons: Mapping[int, Mapping[str, object]], title: str | None = None) -> Figure:
    """What each reduction block let go of, by reason: one bar per reason and block, as high as the share of all
    patches it let go of, split into background (below) and object (above), with the background lift on top.

    Args:
        reasons: rv.analysis.let_go_by_reason's {block: {"bottom": ..., "displaced": ...}} (BackgroundRemoved).
        title: the figure's title (default: says what the bars are).
    """
    if not reasons:
        raise ValueError("reasons is empty: give rv.analysis.let_go_by_reason's result")
    blocks = sorted(reasons)
    names = list(next(iter(reasons.values())))
    width = 0.8 / len(names)
    figure = Figure(figsize=(1.2 + 1.3 * len(blocks), 3.3))
    ax = figure.subplots()
    hatches = {"bottom": "", "displaced": "////"}
    for order, name in enumerate(names):
        x = np.arange(len(blocks)) + (order - (len(names) - 1) / 2) * width
        parts = [reasons[block][name] for block in blocks]
        removed = np.array([100 * part.removed for part in parts])
        plain = np.array([part.background if part.removed else 0.0 for part in parts]) * removed
        hatch = hatches.get(name, "..")
        ax.bar(x, plain, width * 0.92, color=palette.REMOVED_BACKGROUND_HEX, hatch=hatch, edgecolor="white")
        ax.bar(x, removed - plain, width * 0.92, bottom=plain, color=palette.REMOVED_OBJECT_HEX, hatch=hatch,
               edgecolor="white")
        for position, part, height in zip(x, parts, removed):
            label = f"{name}\nlift {part.lift:+.2f}" if part.removed else f"{name}\nnone"
            ax.annotate(label, (position, height), fontsize=6, textcoords="offset points", xytext=(0, 2),
                        ha="center", va="bottom")
    ax.set_xticks(np.arange(len(blocks)), [f"block {block}" for block in blocks])
    ax.set_ylabel("share of all patches (%)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)                     # room for the labels
    ax.set_title(title or "let go of at each reduction block, by reason\n(lift: background over a random choice)",
                 fontsize=TITLE_SIZE)
    handles = [LegendPatch(color=palette.REMOVED_BACKGROUND_HEX, label="background"),
               LegendPatch(color=palette.REMOVED_OBJECT_HEX, label="object")]
    handles += [LegendPatch(facecolor="0.55", hatch=hatches.get(name, ".."), edgecolor="white", label=name)
                for name in names if name != "bottom"]                 # only the reasons drawn
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.1),
              ncol=len(handles))
    ax.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure


def _accuracy_against_masked(figure: Figure, ax, xlabel: str, title: str) -> Figure:
    """The axes, title, grid and legend both masking figures share (whole patches on x, accuracy in % on y)."""
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=TITLE_SIZE)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return figure


def plot_masking_effect(effect) -> Figure:
    """Accuracy against the number of patches masked on the object and on the background.

    Args:
        effect: retokviz.measure.robustness.masking_effect's result.
    """
    figure = Figure(figsize=(4.4, 3.0))
    ax = figure.subplots()
    ax.plot(effect.counts, [100 * a for a in effect.object], marker="o", color=palette.REMOVED_OBJECT_HEX,
            label="masked on the object")
    ax.plot(effect.counts, [100 * a for a in effect.background], marker="s", color=palette.REMOVED_BACKGROUND_HEX,
            label="masked on the background")
    ax.axhline(100 * effect.baseline, color="0.4", linestyle="--", linewidth=1, label="nothing masked")
    return _accuracy_against_masked(figure, ax, "patches masked per image",
                                    f"{effect.method}: masking the object against the background\n"
                                    f"({effect.images} images)")


def plot_masked_accuracy(result) -> Figure:
    """Accuracy against the number of randomly masked patches, one line per method.

    Args:
        result: retokviz.measure.robustness.masked_accuracy's result.
    """
    figure = Figure(figsize=(4.4, 3.0))
    ax = figure.subplots()
    for order, (label, accuracy) in enumerate(result.accuracy.items()):
        ax.plot(result.counts, [100 * a for a in accuracy], marker="o", label=label,
                color=method_colour(label, order))
    return _accuracy_against_masked(figure, ax, f"patches masked per image ({result.where})",
                                    f"accuracy under random masking ({result.images} images)")
