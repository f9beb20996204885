"""The one palette of every retokviz view and chart: the colour of each method, how kept, merged, fused and dropped patches look, the colours of
pieces, class attention, removed patches and the object's outline, and the legend labels.

It is built so that no status can be mistaken for the picture, whatever colour the object is. The generated digits
(rv.data.make_clutter) come in every hue, light on dark surroundings and dark on light, so a hue alone would always
clash with some digit. Two rules keep them apart:

- every status is told apart by more than its colour: merged pieces are outlined, fused and let-go patches are
  paled and striped, dropped ones greyed and striped the other way, and the object has a two-tone outline
  (a bright line inside, a dark one outside, so one of the two stands out on any colour);
- every status colour lies in the middle band of lightness that the digits avoid (CIELAB L* about 50-60), at
  least MIN_DATA_DISTANCE (CIEDE2000) from every colour the generator can give a digit; tests/test_views.py checks
  it on the generator's own colours.

The looks:

- kept: the image as it is, no tint;
- merged: tinted with the colour of its piece, each piece outlined in a darker shade of its colour (so two
  touching pieces are always separated by a line); touching pieces get different colours where PIECE_HEX allows
  (a greedy colouring of the pieces' neighbourhood, `raster.piece_colours`);
- fused: paled, under purple stripes falling to the right (HATCH "\\");
- dropped: the image greyed and pulled towards mid grey, under stripes rising to the right (light stripes on a dark
  patch, dark ones on a light patch), so a black or white object that is kept never reads as dropped;
- let go of (the removed view): paled, under stripes in blue violet (background), cross-hatched in vermilion (touching
  the object) or striped in purple (a picture without a mask).

    from retokviz.views import palette
    palette.PIECE_COLOURS[0]            # (r, g, b) in 0..1
    palette.legend("status")            # [(label, "#rrggbb", hatch), ...] for a legend; hatch "" for a plain swatch
    palette.swatch_css("#808080", "/")  # a legend swatch's CSS background
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


# How far (CIEDE2000) every status colour stays from every colour the clutter generator can give a digit. The
# digits take any hue at CIELAB L* below about 40 or above 65, and saturated hues clipped into the band between:
# only the middle band of lightness, and there reds, oranges, olives, greens, violets and magentas (not cyans or
# light blues, which the clipping reaches), stay 12 or more away from all of them.
MIN_DATA_DISTANCE = 12.0

# Status colours. KEPT is drawn as the image itself; the others are tints mixed in with their alpha, and patterns.
KEPT_HEX = "#ffffff"          # legend only: a kept patch has no tint
MERGED_HEX = "#cc5900"        # legend only: merged patches take their piece's colour (PIECE_HEX[0])
FUSED_HEX = "#9966b3"         # purple, of the middle lightness band
DROPPED_HEX = "#808080"       # the mid grey dropped patches are pulled towards (legend swatch, hatched)
FUSED_ALPHA = 0.25            # the purple tint over a fused patch's paled picture, under its stripes
MERGED_ALPHA = 0.5            # a piece's tint over its patches
DROPPED_PULL = 0.6            # how far a dropped patch's grey is pulled towards DROPPED_LEVEL
DROPPED_LEVEL = 0.5
HATCH_PERIOD = 6              # pixels between diagonal stripes of a dropped, fused or let-go patch
HATCH_WIDTH = 2               # pixels of each stripe
HATCH_LIGHT = 0.92            # stripe grey on a dark dropped patch
HATCH_DARK = 0.08             # stripe grey on a light dropped patch
PALE_PULL = 0.7               # a fused or let-go patch's grey pulled this far towards PALE_LEVEL (its picture faint)
PALE_LEVEL = 0.92
# The pattern of each look, as matplotlib hatches ("" plain): the legends draw their swatches with it.
DROPPED_HATCH = "/"           # stripes rising to the right
FUSED_HATCH = "\\"            # stripes falling to the right
OUTLINED = "outline"          # a legend swatch drawn as an outline (the object's, a lineage's)
TINTED = "tinted"             # a legend swatch tinted with its colour inside a darker outline (a merged piece's)

# RGBA tint per status, the one status palette of every view and figure (kept: fully transparent).
STATUS_COLOURS: dict[Status, tuple[float, float, float, float]] = {
    Status.KEPT: (0.0, 0.0, 0.0, 0.0),
    Status.MERGED: (*hex_to_rgb(MERGED_HEX), MERGED_ALPHA),
    Status.FUSED: (*hex_to_rgb(FUSED_HEX), FUSED_ALPHA),
    Status.DROPPED: (*hex_to_rgb(DROPPED_HEX), DROPPED_PULL),
}

STATUS_LABELS: dict[Status, str] = {
    Status.KEPT: "kept",
    Status.MERGED: "merged into a piece (tinted, outlined)",
    Status.FUSED: "fused into one token (striped)",
    Status.DROPPED: "dropped (grey, striped)",
}

# Pieces: five hues of the middle lightness band (see MIN_DATA_DISTANCE), each 19 or more (CIEDE2000) from the
# others, 14 or more from fused purple and 22 from dropped grey. Touching pieces take different ones where five
# suffice (raster.piece_colour_indices); every piece is outlined, so two touching pieces of one colour are still two.
PIECE_HEX: tuple[str, ...] = (
    "#cc5900",  # vermilion
    "#8066ff",  # blue violet
    "#809900",  # green
    "#b36673",  # rose
    "#b38000",  # ochre
)
PIECE_COLOURS: tuple[tuple[float, float, float], ...] = tuple(hex_to_rgb(c) for c in PIECE_HEX)
PIECE_OUTLINE_SHADE = 0.55    # a piece's outline: its colour times this
PIECE_OUTLINE_WIDTH = 2       # pixels, inside the piece

# Class attention: a colour map over the greyed image, translucent so that the image stays readable: the
# opacity grows from HEAT_ALPHA[0] at a block's lowest score to HEAT_ALPHA[1] at its highest.
HEAT_CMAP = "inferno"
HEAT_ALPHA = (0.2, 0.85)

# Removed patches (let go of so far), by whether they touch the object: paled, under stripes of their colour.
REMOVED_BACKGROUND_HEX = "#8066ff"   # blue violet: background let go of, as a good method does
REMOVED_OBJECT_HEX = "#cc5900"       # vermilion: the object let go of, cross-hatched
REMOVED_ALPHA = 0.25                 # their tint over the paled picture, under the stripes
LET_GO_HEX = "#9966b3"               # purple: let go of, on a picture without a mask (no background/object split)
REMOVED_HATCH = {"background": "/", "object": "x", "let go": "/"}
REMOVED_LABELS = {"background": "let go of: background", "object": "let go of: touches the object",
                  "kept": "still carried (as it is)"}

# ImagePiece's candidates (the bottom set that merges), for the lessons: a plum 17 or more (CIEDE2000) from every
# piece's colour, since a figure of ImagePiece shows both (it fuses nothing, so fused purple is never beside it).
CANDIDATE_HEX = "#8c6699"

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


def legend(view: str = "status", present: set[str] | None = None) -> list[tuple[str, str, str]]:
    """The legend of a view: [(label, "#rrggbb", hatch), ...] (see legend_entries). `hatch` is how the swatch is
    drawn: "" plain, a matplotlib hatch ("/", "\\", "x": stripes of the colour over a paled swatch), OUTLINED (an
    outline in the colour) or TINTED (a piece: tinted, in a darker outline); it is truthy exactly when the swatch is
    more than a plain fill. `swatch` gives its colours, `swatch_css` draws one in CSS.

    Args:
        view: "status", "pieces", "attention", "removed" or "lineage".
        present: what the figure holds, as keys ("kept", "merged", "fused", "dropped", "pieces", "more pieces",
            "background", "object", "let go", "carried", "mask"; see `present_in` and raster.legend_keys; "learned"
            for scores a learned module gave, DynamicViT's); None lists every entry. An entry whose key is not
            present is left out, so a legend never names a colour its figure doesn't use.
    """
    entries = legend_entries(view)
    if view == "attention":   # the scores are class attention unless the keys say learned (DynamicViT's)
        scored_by = {key for key in ("class attention", "learned") if present is not None and key in present}
        scored_by = scored_by or {"class attention"}      # both where a figure shows both kinds side by side
        entries = [(None if key in scored_by else key, entry) for key, entry in entries
                   if key not in ("learned", "class attention") or key in scored_by]
    return [entry for key, entry in entries if present is None or key is None or key in present]


def legend_entries(view: str) -> list[tuple[str | None, tuple[str, str, str]]]:
    """Every entry of a view's legend with the key that decides whether a picture holds it (None: always shown):
    [(key, (label, "#rrggbb", hatch)), ...]."""
    if view not in LEGEND_VIEWS:
        raise ValueError(f"unknown view {view!r}; the views with a legend are {', '.join(LEGEND_VIEWS)}")
    status = {"kept": (STATUS_LABELS[Status.KEPT], KEPT_HEX, ""),
              "merged": (STATUS_LABELS[Status.MERGED], PIECE_HEX[0], TINTED),
              "fused": (STATUS_LABELS[Status.FUSED], FUSED_HEX, FUSED_HATCH),
              "dropped": (STATUS_LABELS[Status.DROPPED], DROPPED_HEX, DROPPED_HATCH)}
    outline = ("mask", ("the object's outline", OUTLINE_HEX, OUTLINED))
    keyed = {
        "status": [*status.items(), outline],
        "pieces": [("pieces", ("a piece: patches merged into one token", PIECE_HEX[0], TINTED)),
                   ("more pieces", ("another piece (outlines part pieces of one colour)", PIECE_HEX[1], TINTED)),
                   ("kept", ("not merged (greyed)", rgb_to_hex((0.6, 0.6, 0.6)), "")),
                   ("fused", status["fused"]), ("dropped", status["dropped"]), outline],
        "attention": [("class attention", ("low class attention", rgb_to_hex(heat_lut()[0]), "")),
                      ("class attention", ("high class attention", rgb_to_hex(heat_lut()[-1]), "")),
                      ("learned", ("low learned keep score", rgb_to_hex(heat_lut()[0]), "")),
                      ("learned", ("high learned keep score", rgb_to_hex(heat_lut()[-1]), "")),
                      ("dropped", ("dropped before this block", DROPPED_HEX, DROPPED_HATCH)), outline],
        "removed": [("background", (REMOVED_LABELS["background"], REMOVED_BACKGROUND_HEX,
                                    REMOVED_HATCH["background"])),
                    ("object", (REMOVED_LABELS["object"], REMOVED_OBJECT_HEX, REMOVED_HATCH["object"])),
                    ("let go", ("let go of (no object outline to split by)", LET_GO_HEX, REMOVED_HATCH["let go"])),
                    ("carried", (REMOVED_LABELS["kept"], KEPT_HEX, "")), outline],
        "lineage": [(None, ("the patch", LINEAGE_PATCH_HEX, OUTLINED)),
                    (None, ("carried by the same token", LINEAGE_HEX, OUTLINED)),
                    ("dropped", ("dropped", DROPPED_HEX, DROPPED_HATCH)), outline],
    }[view]
    return keyed


def swatch(colour: str, hatch: str) -> tuple[str, str]:
    """A legend swatch's (fill, line) colours: a plain swatch is filled with `colour`; a patterned one is the paled
    look (light grey, or mid grey for dropped) under stripes of `colour` (dark ones for dropped); an outlined one is
    white inside a line of `colour`; a tinted one, `colour` over white as a piece's tint, inside its darker outline."""
    if not hatch:
        return colour, "#4d4d4d"
    if hatch == OUTLINED:
        return "#ffffff", colour
    if hatch == TINTED:
        rgb = np.asarray(hex_to_rgb(colour))
        return rgb_to_hex(rgb * MERGED_ALPHA + (1 - MERGED_ALPHA)), rgb_to_hex(rgb * PIECE_OUTLINE_SHADE)
    if colour == DROPPED_HEX:
        return DROPPED_HEX, "#1a1a1a"
    return rgb_to_hex(np.add(np.multiply(hex_to_rgb(colour), 0.3), 0.7 * PALE_LEVEL)), colour


def swatch_css(colour: str, hatch: str) -> str:
    """A legend swatch as CSS declarations (background and border) for an inline-block element."""
    fill, line = swatch(colour, hatch)
    if not hatch:
        return f"background:{fill};border:1px solid {line}"
    if hatch == OUTLINED:
        return f"background:{fill};border:2px solid {line};box-shadow:0 0 0 1px #000"
    if hatch == TINTED:
        return f"background:{fill};border:2px solid {line}"
    angles = {"/": ["45deg"], "\\": ["-45deg"], "x": ["45deg", "-45deg"]}.get(hatch, ["45deg"])
    stripes = ",".join(f"repeating-linear-gradient({angle},{line} 0 2px,transparent 2px 5px)" for angle in angles)
    return f"background:{stripes},{fill};border:1px solid {line}"


def colour_distance(first, second) -> np.ndarray:
    """The CIEDE2000 colour difference of sRGB colours ("#rrggbb" or (r, g, b) in 0..1, or [..., 3] arrays of
    them), broadcast: about 2 is barely seen side by side, 10 or more reads as another colour."""
    from skimage.color import deltaE_ciede2000, rgb2lab     # scikit-image: a dependency (the clutter data)

    def lab(colours) -> np.ndarray:
        if isinstance(colours, str):
            colours = hex_to_rgb(colours)
        elif isinstance(colours, (list, tuple)) and colours and isinstance(colours[0], str):
            colours = [hex_to_rgb(colour) for colour in colours]
        values = np.asarray(colours, dtype=np.float64)
        return rgb2lab(values.reshape(-1, 1, 3)).reshape(values.shape)

    first, second = np.broadcast_arrays(lab(first), lab(second))
    return np.asarray(deltaE_ciede2000(first, second))


LEGEND_VIEWS = ("status", "pieces", "attention", "removed", "lineage")


def present_in(status: np.ndarray, pieces: np.ndarray | None = None, removed: np.ndarray | None = None,
               on_object: np.ndarray | None = None) -> set[str]:
    """The legend keys a picture holds, from the arrays it is drawn from.

    Args:
        status: [..., rows, cols] rv.Status values of the patches shown (one block or several).
        pieces: the same shape, piece ids (-1 for unmerged); one or more distinct ids give "pieces", two or more
            in one picture (the last two axes) "more pieces" too.
        removed, on_object: [rows, cols] bool, the patches let go of so far and those touching the object.
    """
    keys = {name.lower() for name in Status.__members__ if (status == Status[name]).any()}
    if pieces is not None and (pieces >= 0).any():
        keys.add("pieces")
        per_picture = pieces.reshape(-1, *pieces.shape[-2:])
        if any(len(np.unique(picture[picture >= 0])) >= 2 for picture in per_picture):
            keys.add("more pieces")
    if removed is not None and on_object is not None:
        if (removed & ~on_object).any():
            keys.add("background")
        if (removed & on_object).any():
            keys.add("object")
    return keys


def to_payload() -> dict:
    """The palette as JSON-able data (hex colours, alphas, labels), for a web page drawing its own legend (each
    legend entry with its swatch's CSS, `swatch_css`)."""
    return {
        "status": {status.name.lower(): {"label": STATUS_LABELS[status], "rgba": list(STATUS_COLOURS[status])}
                   for status in Status},
        "pieces": list(PIECE_HEX),
        "heat": [rgb_to_hex(rgb) for rgb in heat_lut()[::17]],
        "removed": {"background": REMOVED_BACKGROUND_HEX, "object": REMOVED_OBJECT_HEX, "let go": LET_GO_HEX},
        "outline": OUTLINE_HEX,
        "lineage": {"patch": LINEAGE_PATCH_HEX, "shares": LINEAGE_HEX},
        "legends": {view: [{"label": label, "colour": colour, "hatch": hatch, "hatched": bool(hatch),
                            "css": swatch_css(colour, hatch), "key": key}
                           for key, (label, colour, hatch) in legend_entries(view)]
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
