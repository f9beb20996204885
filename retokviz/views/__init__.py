"""Views of a recorded trace: the arrays every view draws from, the palette, raster images (numpy), static
figures (matplotlib, `static`) and interactive charts (plotly, `charts`, imported only when a chart is made).

    from retokviz.views import extract, view_image
    with rv.record(model) as trace:
        model(images)
    arrays = extract(trace, images[0], mask=masks[0])
    rgb = view_image(arrays, "status", block=2)      # [H, W, 3] uint8
"""
from retokviz.views import charts, palette, raster, static
from retokviz.views.extract import TraceArrays, describe_method, extract, lineage
from retokviz.views.raster import (
    VIEWS,
    attention_image,
    lineage_image,
    pieces_image,
    removed_counts,
    removed_image,
    status_image,
    view_image,
)

__all__ = [
    "VIEWS",
    "TraceArrays",
    "attention_image",
    "charts",
    "describe_method",
    "extract",
    "lineage",
    "lineage_image",
    "palette",
    "pieces_image",
    "raster",
    "removed_counts",
    "removed_image",
    "static",
    "status_image",
    "view_image",
]
