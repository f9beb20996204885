"""The figure every retokviz plot returns: a matplotlib Figure that shows itself as a picture in JupyterLab, VS Code
and any other IPython front end, with or without `%matplotlib inline`, and that a script saves with
`figure.savefig(path)`. Nothing here touches matplotlib's global state: no backend is chosen, no rcParams are set,
no pyplot figure is opened.
"""
from __future__ import annotations

import io

import matplotlib.figure

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
