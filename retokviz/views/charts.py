"""Interactive charts of a trace with plotly (imported only when a chart is made): thin wrappers that show the
raster images of retokviz.views.raster and the token counts, for notebooks and web pages.

    arrays = extract(trace, images[0], mask=masks[0])
    status_figure(arrays, block=2, view="status")     # a plotly Figure with the view as an image trace
    tokens_figure([evit_arrays, tome_arrays])         # patch tokens per block, one line per method
    figure.write_html("view.html")                    # or figure.show()

Hovering over the image shows the patch (row, col), its status, its token and that token's size.
"""
from __future__ import annotations

import numpy as np

from retokviz.trace.record import Status
from retokviz.views.palette import method_colour
from retokviz.views import raster
from retokviz.views.extract import TraceArrays, check_block
from retokviz.views.static import token_series


def _plotly():
    """plotly.graph_objects, or an ImportError saying how to install it."""
    try:
        import plotly.graph_objects as go
    except ImportError as error:  # pragma: no cover - plotly is in the notebooks extra
        raise ImportError("the interactive charts need plotly: pip install 'retokviz[notebooks]'") from error
    return go


def _hover(arrays: TraceArrays, block: int) -> np.ndarray:
    """[H, W] str: per pixel, its patch's (row, col), status, token and token size leaving `block`."""
    rows, cols = arrays.grid
    names = [status.name.lower() for status in Status]
    sizes = arrays.sizes[block]
    labels = np.empty((rows, cols), dtype=object)
    for row in range(rows):
        for col in range(cols):
            token = int(arrays.owner[block, row, col])
            carried = f"token {token} ({int(sizes[token])} patches)" if token >= 0 else "no token"
            labels[row, col] = f"patch ({row}, {col}): {names[arrays.status[block, row, col]]}, {carried}"
    return raster.upsample(arrays, labels)


def status_figure(arrays: TraceArrays, block: int, view: str = "status", patch: int | tuple[int, int] | None = None,
                  hover: bool = True):
    """A plotly Figure showing `view` (one of retokviz.views.raster.VIEWS) leaving `block` as an image trace.

    Args:
        patch: a patch whose token is outlined, or None.
        hover: per-patch hover text (status, token); leave it off for large images in a web page.
    """
    go = _plotly()
    block = check_block(arrays, block)
    image = raster.view_image(arrays, view, block, patch)
    trace = go.Image(z=image, hoverinfo="skip" if not hover else None)
    if hover:
        trace.update(text=_hover(arrays, block), hovertemplate="%{text}<extra></extra>")
    figure = go.Figure(trace)
    figure.update_layout(
        title=dict(text=f"{arrays.method}: {view} after block {block} ({arrays.num_tokens[block]} tokens)",
                   font=dict(size=13)),
        margin=dict(l=10, r=10, t=40, b=10), width=None, height=None,
    )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, scaleanchor="x")
    return figure


def tokens_figure(items, title: str = "patch tokens leaving each block"):
    """A plotly Figure of the patch tokens leaving each block, one line per method.

    Args:
        items: TraceArrays, a sequence of TraceArrays or of token counts, or {label: TraceArrays or counts}.
    """
    go = _plotly()
    figure = go.Figure()
    for order, (label, counts) in enumerate(token_series(items)):
        figure.add_trace(go.Scatter(x=list(range(len(counts))), y=[int(c) for c in counts], name=label,
                                    mode="lines+markers", line=dict(color=_css(method_colour(label, order)))))
    figure.update_layout(title=title, xaxis_title="block", yaxis_title="patch tokens", yaxis_rangemode="tozero",
                         margin=dict(l=50, r=10, t=40, b=40), legend=dict(font=dict(size=10)))
    return figure


def _css(colour: str) -> str:
    """A matplotlib colour name ("tab:blue") as a CSS colour plotly takes ("#1f77b4")."""
    from matplotlib.colors import to_hex

    return to_hex(colour)
