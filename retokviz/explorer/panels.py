"""The explorer's panels as bytes and HTML strings: the view picture (PNG), its legend, the token counts (an
inline SVG bar chart), the predictions and a patch's lineage. Pure functions of a Run, no widgets.
"""
from __future__ import annotations

import html

import numpy as np

from retokviz.trace.record import Status
from retokviz.views import palette

# The view picture is enlarged (whole pixels, nearest neighbour) to about this many pixels on its longer side.
DISPLAY_PIXELS = 384


def display_scale(height: int, width: int) -> int:
    """The whole-number enlargement that brings an image closest to DISPLAY_PIXELS (at least 1)."""
    return max(1, round(DISPLAY_PIXELS / max(height, width)))


def legend_html(view: str, present: set[str] | None = None) -> str:
    """A legend of `view` (palette.legend, only what `present` names): a swatch and a label per entry, wrapping."""
    entries = []
    for label, colour, hatch in palette.legend(view, present):
        entries.append(f'<span style="white-space:nowrap;margin-right:10px"><span style="display:inline-block;'
                       f'box-sizing:border-box;width:12px;height:12px;{palette.swatch_css(colour, hatch)};'
                       f'vertical-align:-1px"></span> {html.escape(label)}</span>')
    return f'<div style="font-size:12px;line-height:1.6">{"".join(entries)}</div>'


def tokens_svg(num_tokens: np.ndarray, num_patches: int, block: int, reduction_blocks: tuple[int, ...],
               width: int = 300, height: int = 86) -> str:
    """A bar chart of the patch tokens leaving each block (an SVG string), the chosen block highlighted.

    Args:
        num_tokens: [L] tokens leaving each block.
        num_patches: P, the tokens before block 0 (the chart's full height).
        block: the block shown in the picture.
        reduction_blocks: blocks that reduced (their bars are labelled).
    """
    count = len(num_tokens)
    top, bottom = 14, 16
    plot = height - top - bottom
    gap = 3
    bar = max(2.0, (width - gap * (count + 1)) / max(count, 1))
    parts = [f'<svg width="{width}" height="{height}" '
             f'style="font:10px sans-serif">',
             f'<line x1="0" x2="{width}" y1="{top}" y2="{top}" stroke="#bbb" stroke-dasharray="3,3"/>',
             f'<text x="{width - 2}" y="{top - 3}" text-anchor="end" fill="#888">{num_patches} patches</text>']
    for index, tokens in enumerate(np.asarray(num_tokens).tolist()):
        x = gap + index * (bar + gap)
        h = plot * tokens / max(num_patches, 1)
        colour = "#d6336c" if index == block else ("#4c6ef5" if index in reduction_blocks else "#9aa5b1")
        parts.append(f'<rect x="{x:.1f}" y="{top + plot - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                     f'fill="{colour}"><title>block {index}: {tokens} tokens</title></rect>')
        if index == block or count <= 12:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{top + plot - h - 2:.1f}" text-anchor="middle" '
                         f'fill="{"#d6336c" if index == block else "#555"}">{tokens}</text>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - 3}" text-anchor="middle" fill="#555">{index}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _top_table(title: str, top, truth: str | None) -> str:
    rows = []
    for rank, (name, probability) in enumerate(top):
        mark = ""
        if truth is not None and rank == 0:
            mark = ' <span style="color:#2b8a3e">&#10003;</span>' if name == truth else \
                ' <span style="color:#c92a2a">&#10007;</span>'
        weight = "bold" if rank == 0 else "normal"
        rows.append(f'<tr><td style="font-weight:{weight};padding-right:8px">{html.escape(name)}{mark}</td>'
                    f'<td style="text-align:right">{probability:.1%}</td></tr>')
    return (f'<div style="display:inline-block;vertical-align:top;margin-right:18px"><div style="color:#555">'
            f'{html.escape(title)}</div><table style="font-size:12px;line-height:1.4">{"".join(rows)}</table></div>')


def classes_line(names: list[str] | None, count: int) -> str:
    """One line on what the model can answer: its classes, named when there are a few, counted otherwise."""
    if names and len(names) <= 12:
        known = ", ".join(names)
        return f"this model knows only {len(names)} classes: {known}; any picture gets one of them"
    return f"this model knows {count} classes" + (f" ({names[0]}, {names[1]}, ...)" if names else "")


def prediction_html(run, untouched, untouched_macs: int, truth: str | None, method_text: str,
                    classes: str = "") -> str:
    """The prediction and top-3 at this setting beside the untouched model's, with tokens left and MACs.

    Args:
        run: the session.Run shown.
        untouched: the session.Prediction of the model without reduction.
        untouched_macs: its MACs for one image.
        truth: the image's true class name, or None.
        method_text: how the method reads, e.g. "EViT(keep_rate=0.5)".
        classes: a line on the classes the model knows (classes_line), or "".
    """
    arrays = run.arrays
    patches = arrays.num_patches
    share = run.macs / untouched_macs if untouched_macs else float("nan")
    head = (f'<div style="font-size:12px;line-height:1.4;margin-bottom:4px"><b>{html.escape(method_text)}</b><br>'
            f'tokens left after the last block: <b>{run.tokens}</b> of {patches}<br>'
            f'MACs: <b>{run.macs / 1e6:.1f} M</b>, {share:.0%} of the untouched model\'s {untouched_macs / 1e6:.1f} M'
            + (f'<br>true class: <b>{html.escape(truth)}</b>' if truth is not None else "")
            + (f'<br><span style="color:#555">{html.escape(classes)}</span>' if classes else "") + "</div>")
    return (head + _top_table("at this setting", run.prediction.top, truth)
            + _top_table("untouched model", untouched.top, truth))


_STATUS_WORDS = {Status.KEPT: "alone", Status.MERGED: "merged", Status.FUSED: "fused", Status.DROPPED: "dropped"}


def lineage_html(steps: list[dict], patch: tuple[int, int]) -> str:
    """Where one patch went (retokviz.views.lineage's steps), one line per block."""
    lines = []
    for step in steps:
        status = Status(step["status"])
        shared = int(step["shares_with"].sum())
        if status == Status.DROPPED:
            text = "dropped"
        elif shared > 1:
            text = f"token {step['token']}, {_STATUS_WORDS[status]} with {shared - 1} other patch" + \
                   ("es" if shared > 2 else "")
        else:
            text = f"token {step['token']}, {_STATUS_WORDS[status]}"
        lines.append(f"<li>block {step['block']}: {text}</li>")
    return (f'<div style="font-size:12px;line-height:1.4"><b>patch (row {patch[0]}, col {patch[1]})</b>'
            f'<ul style="margin:2px 0 0 0;padding-left:18px">{"".join(lines)}</ul></div>')


def measured_html(row: dict | None, base: dict | None, keep_rate: float, method_text: str, source: str) -> str:
    """What the sweep table measured for the method and keep rate shown: throughput against the untouched model
    (with the MACs ceiling), batch-1 latency and top-1, with the table's conditions.

    Args:
        row: the table's row of this method at its nearest keep rate (views.tradeoff.nearest), or None.
        base: the table's untouched row of the same selection, or None.
        keep_rate: the explorer's keep rate (the row's may differ: the nearest one measured).
        method_text: the method's label, e.g. "EViT".
        source: where the table comes from, e.g. its file name.
    """
    from retokviz.measure.intervals import LEVEL
    from retokviz.views.tradeoff import accuracy_interval, note_meaning

    style = 'style="font-size:12px;line-height:1.4;margin-top:6px;max-width:420px"'
    if row is None:
        return (f'<div {style}><b>measured</b> ({html.escape(source)}): {html.escape(method_text)} is not in this '
                f'sweep table</div>')
    conditions = (f'{row["model"]}, {str(row["device"]).split(",")[0]}, batch {row["batch_size"]}, {row["dtype"]}, '
                  f'{row["attention"]}')
    lines = [f'{html.escape(method_text)} at keep {row["keep_rate"]:g}: <b>{row["speedup"]:.2f}x</b> the untouched '
             f'throughput (MACs ceiling {row["macs_ceiling"]:.2f}x)']
    if row["latency_ms"] is not None:
        lines.append(f'batch-1 latency {row["latency_ms"]:.1f} ms'
                     + (f' (untouched {base["latency_ms"]:.1f} ms)' if base and base["latency_ms"] is not None else ""))
    if row["accuracy"] is not None:
        bounds = accuracy_interval(row)
        lines.append(f'top-1 {row["accuracy"]:.1%}' + (f' (untouched {base["accuracy"]:.1%})'
                                                       if base and base["accuracy"] is not None else "")
                     + (f' on {html.escape(str(row["data"]))}' if row.get("data") else "")
                     + (f'; its {LEVEL:.0%} interval {bounds[0]:.1%} to {bounds[1]:.1%}' if bounds else ""))
    if row["note"]:         # the sweep's verdict on this speed-up, in plain words
        lines.append(f'<span style="color:#c92a2a">{html.escape(note_meaning(row["note"]))}</span>')
    if abs(row["keep_rate"] - keep_rate) > 1e-6:
        lines.append(f'<i>the table\'s nearest keep rate; the slider is at {keep_rate:.2f}</i>')
    return (f'<div {style}><b>measured</b> ({html.escape(source)}: {html.escape(conditions)})<br>'
            + "<br>".join(lines) + "</div>")
