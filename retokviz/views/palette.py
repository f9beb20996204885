"""The one palette of every retokviz view and chart: the colour of each method, how kept, merged, fused and dropped patches look, the colours of
pieces, class attention, removed patches and the object's outline, and the legend labels.

It is built to read on dark and light images alike:

- kept: the image as it is, no tint;
- merged: tinted with the colour of its piece (a qualitative cycle, so that pieces are told apart), each
  piece outlined in a darker shade of its colour;
- fused: the image greyed, under a strong magenta tint;
- dropped: the image greyed and pulled towards mid grey, under diagonal stripes (light stripes on a dark patch,
  dark ones on a light patch), so a black or white object that is kept never reads as dropped.

    from retokviz.views import palette
    palette.PIECE_COLOURS[0]            # (r, g, b) in 0..1
    palette.legend("status")            # [(label, "#rrggbb", hatched), ...] for a legend
    palette.to_payload()                # the same as JSON-able data, for a web page
"""
from __future__ import annotations

import functools

import numpy as np

from retokviz.methods.registry import members
from retokviz.trace.record import Status


def hex_to_rgb(colour: str) -> tuple[float, float, float]:
    """"#rrggbb" -> (r, g, b) in 0..1."""
    value = colour.lstrip("#")
    if len(value) != 6:
        raise ValueError(f"a colour must be '#rrggbb', got {colour!r}")
    return tuple(int(value[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


def rgb_to_hex(rgb: tuple[float, ...]) -> str:
    """(r, g, b) in 0..1 -> "#rrggbb"."""
    return "#" + "".join(f"{round(float(np.clip(v, 0, 1)) * 255):02x}" for v in rgb[:3])


# Status colours. KEPT is drawn as the image itself; the others are tints mixed in with their alpha.
KEPT_HEX = "#ffffff"          # legend only: a kept patch has no tint
MERGED_HEX = "#2f6fff"        # legend only: merged patches take their piece's colour
FUSED_HEX = "#e61ae6"         # strong magenta
DROPPED_HEX = "#8c8c94"       # the mid grey dropped patches are pulled towards (legend swatch, hatched)
FUSED_ALPHA = 0.62
MERGED_ALPHA = 0.5            # a piece's tint over its patches
DROPPED_PULL = 0.6            # how far a dropped patch's grey is pulled towards DROPPED_LEVEL
DROPPED_LEVEL = 0.5
HATCH_PERIOD = 6              # pixels between diagonal stripes of a dropped patch
HATCH_WIDTH = 2               # pixels of each stripe
HATCH_LIGHT = 0.92            # stripe grey on a dark dropped patch
HATCH_DARK = 0.08             # stripe grey on a light dropped patch

# RGBA tint per status, the one status palette of every view and figure (kept: fully transparent).
STATUS_COLOURS: dict[Status, tuple[float, float, float, float]] = {
    Status.KEPT: (0.0, 0.0, 0.0, 0.0),
    Status.MERGED: (*hex_to_rgb(MERGED_HEX), MERGED_ALPHA),
    Status.FUSED: (*hex_to_rgb(FUSED_HEX), FUSED_ALPHA),
    Status.DROPPED: (*hex_to_rgb(DROPPED_HEX), DROPPED_PULL),
}

STATUS_LABELS: dict[Status, str] = {
    Status.KEPT: "kept",
    Status.MERGED: "merged (one colour per piece)",
    Status.FUSED: "fused",
    Status.DROPPED: "dropped",
}

# Pieces: a qualitative cycle without magenta (fused) or grey (dropped); neighbours in the cycle differ in hue
# and lightness. Pieces are coloured by their order of first appearance in the grid (row by row).
PIECE_HEX: tuple[str, ...] = (
    "#1f77b4",  # blue
    "#ff7f0e",  # orange
    "#2ca02c",  # green
    "#d62728",  # red
    "#17becf",  # cyan
    "#ffd92f",  # yellow
    "#8c564b",  # brown
    "#a6d854",  # lime
    "#1b3a8c",  # navy
    "#e5a07b",  # sand
    "#0b7a5d",  # teal
    "#bcbd22",  # olive
)
PIECE_COLOURS: tuple[tuple[float, float, float], ...] = tuple(hex_to_rgb(c) for c in PIECE_HEX)
PIECE_OUTLINE_SHADE = 0.55    # a piece's outline: its colour times this
PIECE_OUTLINE_WIDTH = 2       # pixels, inside the piece

# Class attention: a colour map over the greyed image, translucent so that the image stays readable: the
# opacity grows from HEAT_ALPHA[0] at a block's lowest score to HEAT_ALPHA[1] at its highest.
HEAT_CMAP = "inferno"
HEAT_ALPHA = (0.2, 0.85)

# Removed patches (let go of so far), by whether they touch the object.
REMOVED_BACKGROUND_HEX = "#0a84c8"   # blue: background let go of, as a good method does
REMOVED_OBJECT_HEX = "#f04a00"       # vermilion: the object let go of
REMOVED_ALPHA = 0.6
LET_GO_HEX = "#7b3fe4"               # violet: let go of, on a picture without a mask (no background/object split)
REMOVED_LABELS = {"background": "let go of: background", "object": "let go of: touches the object",
                  "kept": "still carried alone"}

# The object's outline: a bright line with a dark line just outside it, visible on any image.
OUTLINE_HEX = "#ffe600"
OUTLINE_SHADOW_HEX = "#000000"

# Lineage: the chosen patch and the patches sharing its token; the rest is dimmed.
LINEAGE_HEX = "#00e5ff"
LINEAGE_PATCH_HEX = "#ff1744"
LINEAGE_DIM = 0.35            # the other patches: greyed, and mixed with black by 1 - this


def piece_colour(rank: int) -> tuple[float, float, float]:
    """The colour of the piece that comes `rank`-th (0-based) in the grid, cycling through PIECE_COLOURS."""
    return PIECE_COLOURS[rank % len(PIECE_COLOURS)]


@functools.cache
def heat_lut() -> np.ndarray:
    """[256, 3] float32, HEAT_CMAP sampled (matplotlib's colour map, no pyplot)."""
    from matplotlib import colormaps

    return colormaps[HEAT_CMAP](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


def legend(view: str = "status", present: set[str] | None = None) -> list[tuple[str, str, bool]]:
    """The legend of a view: [(label, "#rrggbb", hatched), ...] (see legend_entries).

    Args:
        view: "status", "pieces", "attention", "removed" or "lineage".
        present: what the figure holds, as keys ("kept", "merged", "fused", "dropped", "pieces", "background",
            "object"; see `present_in`); None lists every entry. An entry whose key is not present is left out, so
            a legend never names a colour its figure doesn't use.
    """
    return [entry for key, entry in legend_entries(view) if present is None or key is None or key in present]


def legend_entries(view: str) -> list[tuple[str | None, tuple[str, str, bool]]]:
    """Every entry of a view's legend with the key that decides whether a picture holds it (None: always shown):
    [(key, (label, "#rrggbb", hatched)), ...]."""
    if view not in LEGEND_VIEWS:
        raise ValueError(f"unknown view {view!r}; the views with a legend are {', '.join(LEGEND_VIEWS)}")
    status = {name: (STATUS_LABELS[getattr(Status, name.upper())], colour, name == "dropped")
              for name, colour in (("kept", KEPT_HEX), ("merged", PIECE_HEX[0]), ("fused", FUSED_HEX),
                                   ("dropped", DROPPED_HEX))}
    keyed = {
        "status": [(key, entry) for key, entry in status.items()],
        "pieces": [("pieces", ("a piece (one colour each, outlined)", PIECE_HEX[0], False)),
                   ("pieces", ("another piece", PIECE_HEX[1], False)),
                   ("kept", ("not merged (greyed)", rgb_to_hex((0.6, 0.6, 0.6)), False)),
                   ("fused", status["fused"]), ("dropped", status["dropped"])],
        "attention": [(None, ("low class attention", rgb_to_hex(heat_lut()[0]), False)),
                      (None, ("high class attention", rgb_to_hex(heat_lut()[-1]), False)),
                      ("dropped", ("dropped before this block", DROPPED_HEX, True))],
        "removed": [("background", (REMOVED_LABELS["background"], REMOVED_BACKGROUND_HEX, False)),
                    ("object", (REMOVED_LABELS["object"], REMOVED_OBJECT_HEX, False)),
                    ("let go", ("let go of (no object outline to split by)", LET_GO_HEX, False)),
                    (None, (REMOVED_LABELS["kept"], KEPT_HEX, False))],
        "lineage": [(None, ("the patch", LINEAGE_PATCH_HEX, False)),
                    (None, ("carried by the same token", LINEAGE_HEX, False)),
                    ("dropped", ("dropped", DROPPED_HEX, True))],
    }[view]
    return keyed


LEGEND_VIEWS = ("status", "pieces", "attention", "removed", "lineage")


def present_in(status: np.ndarray, pieces: np.ndarray | None = None, removed: np.ndarray | None = None,
               on_object: np.ndarray | None = None) -> set[str]:
    """The legend keys a picture holds, from the arrays it is drawn from.

    Args:
        status: [..., rows, cols] rv.Status values of the patches shown (one block or several).
        pieces: the same shape, piece ids (-1 for unmerged); two or more distinct ids give "pieces".
        removed, on_object: [rows, cols] bool, the patches let go of so far and those touching the object.
    """
    keys = {name.lower() for name in Status.__members__ if (status == Status[name]).any()}
    if pieces is not None and len(np.unique(pieces[pieces >= 0])) >= 1:
        keys.add("pieces")
    if removed is not None and on_object is not None:
        if (removed & ~on_object).any():
            keys.add("background")
        if (removed & on_object).any():
            keys.add("object")
    return keys


def to_payload() -> dict:
    """The palette as JSON-able data (hex colours, alphas, labels), for a web page drawing its own legend."""
    return {
        "status": {status.name.lower(): {"label": STATUS_LABELS[status], "rgba": list(STATUS_COLOURS[status])}
                   for status in Status},
        "pieces": list(PIECE_HEX),
        "heat": [rgb_to_hex(rgb) for rgb in heat_lut()[::17]],
        "removed": {"background": REMOVED_BACKGROUND_HEX, "object": REMOVED_OBJECT_HEX},
        "outline": OUTLINE_HEX,
        "lineage": {"patch": LINEAGE_PATCH_HEX, "shares": LINEAGE_HEX},
        "legends": {view: [{"label": label, "colour": colour, "hatched": hatched, "key": key}
                           for key, (label, colour, hatched) in legend_entries(view)]
                    for view in LEGEND_VIEWS},
    }


# One colour per method (registry name) in every chart; other methods take the spare colours in turn.
METHOD_COLOURS = {"evit": "tab:blue", "imagepiece": "tab:orange", "tome": "tab:green", "imagepiece+tome": "tab:purple"}
SPARE_COLOURS = ("tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def method_key(label: str) -> str | None:
    """The registry name a method label starts with: "evit", "EViT", "EViT(keep_rate=0.7) + ToMe(r=8)" ->
    "evit+tome", "ImagePiece, trained" -> "imagepiece"; None where it names no registered method."""
    parts = [part.split("(")[0].split(",")[0].strip() for part in str(label).replace(" + ", "+").split("+")]
    try:
        return "+".join(members("+".join(parts)))
    except ValueError:
        return None


def method_colour(name: str, order: int = 0) -> str:
    """The colour of a method by registry name or label ("evit", "EViT", "ImagePiece + ToMe", "EViT(keep_rate=0.7)",
    "ToMe, trained"); a method without one of its own gets spare colour number `order` (cycled)."""
    return METHOD_COLOURS.get(method_key(name) or name, SPARE_COLOURS[order % len(SPARE_COLOURS)])
