"""Views of a trace as plain RGB images ([H, W, 3] uint8), drawn with numpy from TraceArrays: no model, no
matplotlib figure, a few milliseconds each, so an interactive view can redraw on every slider move.

    arrays = extract(trace, images[0], mask=masks[0])
    status_image(arrays, block=2)              # kept as is, merged per piece, fused and dropped striped
    pieces_image(arrays, block=2)              # each piece in its own colour, outlined
    attention_image(arrays, block=2)           # the class attention that decided the reduction, over the image
    removed_image(arrays, block=3)             # what was let go of so far: background or object (needs a mask)
    lineage_image(arrays, block=3, patch=(2, 5))
    view_image(arrays, "status", block=2, patch=(2, 5))    # by name, VIEWS; `patch` marks a patch's token

Colours and looks come from retokviz.views.palette. Where the arrays hold a mask, the object is outlined
(pass outline=False to leave it out).
"""
from __future__ import annotations

import numpy as np
import torch

from retokviz.trace.read import is_let_go, patch_mask
from retokviz.trace.record import Status
from retokviz.views import palette
from retokviz.views.extract import TraceArrays, check_block, patch_position, to_uint8

VIEWS: tuple[str, ...] = ("status", "pieces", "attention", "removed")
VIEW_LABELS = {"status": "status", "pieces": "pieces", "attention": "attention", "removed": "removed background"}


def view_labels(learned_scores: bool = False) -> dict[str, str]:
    """VIEW_LABELS, with the attention view called "learned scores" where the scores are a learned module's
    (DynamicViT's predictors: TraceArrays.learned_scores)."""
    return {**VIEW_LABELS, "attention": "learned scores"} if learned_scores else dict(VIEW_LABELS)

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --- small helpers -----------------------------------------------------------------------------------------

def upsample(arrays: TraceArrays, values: np.ndarray) -> np.ndarray:
    """[rows, cols, ...] per-patch values -> [H, W, ...], each patch's value over its pixels."""
    height, width = arrays.patch_size
    return np.repeat(np.repeat(values, height, axis=0), width, axis=1)


def luminance(picture: np.ndarray) -> np.ndarray:
    """[H, W, 3] in 0..1 -> [H, W] float32 luminance (Rec. 601)."""
    return picture @ _LUMA


def greyed(picture: np.ndarray) -> np.ndarray:
    """[H, W, 3] -> [H, W, 3], the picture in grey."""
    return np.repeat(luminance(picture)[..., None], 3, axis=2)


def _mix(base: np.ndarray, where: np.ndarray, colour, alpha: float | np.ndarray) -> None:
    """In place: base[where] = base[where] * (1 - alpha) + colour * alpha. colour: (3,) or [H, W, 3]."""
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 3:
        colour = colour[where]
    base[where] = base[where] * (1.0 - alpha) + colour * alpha


def hatch(height: int, width: int, direction: str = palette.DROPPED_HATCH) -> np.ndarray:
    """[H, W] bool, diagonal stripes continuous across patches: "/" rising to the right (a dropped patch's),
    "\\" falling to the right (a fused patch's), "x" both (crossed)."""
    rows, cols = np.ogrid[:height, :width]
    rising = (rows + cols) % palette.HATCH_PERIOD < palette.HATCH_WIDTH
    falling = (rows - cols) % palette.HATCH_PERIOD < palette.HATCH_WIDTH
    if direction not in ("/", "\\", "x"):
        raise ValueError(f"direction must be '/', '\\\\' or 'x', got {direction!r}")
    return {"/": rising, "\\": falling, "x": rising | falling}[direction]


def draw_striped(out: np.ndarray, arrays: TraceArrays, patches: np.ndarray, colour: str, tint: float,
                 direction: str) -> None:
    """In place: the patches ([rows, cols] bool) paled (greyed and pulled towards palette.PALE_LEVEL, the picture
    faint), tinted with `colour` by `tint`, under stripes of `colour` (hatch `direction`): how fused and let-go
    patches look, so that none reads as a kept patch of the same colour."""
    if not patches.any():
        return
    where = upsample(arrays, patches)
    rgb = np.asarray(palette.hex_to_rgb(colour), dtype=np.float32)
    pale = greyed(arrays.picture) * (1.0 - palette.PALE_PULL) + palette.PALE_LEVEL * palette.PALE_PULL
    pale = pale * (1.0 - tint) + rgb * tint
    value = np.where(hatch(*where.shape, direction)[..., None], rgb, pale)
    out[where] = value[where]


def draw_dropped(out: np.ndarray, arrays: TraceArrays, dropped: np.ndarray) -> None:
    """In place: the patches dropped ([rows, cols] bool) greyed, pulled towards mid grey and hatched.

    Each dropped patch gets light stripes if its grey is dark and dark stripes if it is light, so that it
    differs from the image on black and on white patches alike.
    """
    if not dropped.any():
        return
    where = upsample(arrays, dropped)
    grey = luminance(arrays.picture)
    pulled = grey * (1.0 - palette.DROPPED_PULL) + palette.DROPPED_LEVEL * palette.DROPPED_PULL
    rows, cols = arrays.grid
    height, width = arrays.patch_size
    patch_grey = grey.reshape(rows, height, cols, width).mean(axis=(1, 3))
    stripe = upsample(arrays, np.where(patch_grey < 0.5, palette.HATCH_LIGHT, palette.HATCH_DARK).astype(np.float32))
    value = np.where(hatch(*grey.shape), stripe, pulled)
    out[where] = value[where][:, None]


def piece_ranks(pieces: np.ndarray) -> np.ndarray:
    """[rows, cols] piece ids (-1: none) -> [rows, cols] each piece's rank by first appearance row by row (-1: none)."""
    flat = pieces.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids >= 0
    ids, first = ids[keep], first[keep]
    order = ids[np.argsort(first)]
    lookup = {int(piece): rank for rank, piece in enumerate(order)}
    return np.array([lookup.get(int(piece), -1) for piece in flat], dtype=np.int32).reshape(pieces.shape)


def piece_colour_indices(pieces: np.ndarray) -> np.ndarray:
    """[rows, cols] piece ids (-1: none) -> [rows, cols] each piece's index into palette.PIECE_COLOURS (-1: none).

    Touching pieces (sharing a patch side) get different colours wherever the palette allows: the pieces are
    coloured most constrained first (the one whose neighbours already show the most colours, then the one with the
    most neighbours, then the first in the grid, row by row), each with the colour fewest of its neighbours have,
    and of those the one fewest pieces have so far, so the colours also spread over the picture. Scattered pieces
    (ToMe's) can touch more pieces than there are colours; every piece is outlined (draw_pieces), so two touching
    pieces of one colour are still told apart. The result depends on the pieces alone.
    """
    ranks = piece_ranks(pieces)
    count = int(ranks.max()) + 1 if ranks.size else 0
    indices = np.full(pieces.shape, -1, dtype=np.int32)
    if count == 0:
        return indices
    pairs = np.concatenate([np.stack([ranks[:, :-1].ravel(), ranks[:, 1:].ravel()], axis=1),
                            np.stack([ranks[:-1].ravel(), ranks[1:].ravel()], axis=1)])
    pairs = pairs[(pairs[:, 0] >= 0) & (pairs[:, 1] >= 0) & (pairs[:, 0] != pairs[:, 1])]
    neighbours: list[list[int]] = [[] for _ in range(count)]
    for first, second in np.unique(np.sort(pairs, axis=1), axis=0).tolist():
        neighbours[first].append(second)
        neighbours[second].append(first)
    palette_size = len(palette.PIECE_COLOURS)
    chosen = np.full(count, -1, dtype=np.int32)
    used = np.zeros(palette_size, dtype=np.int64)
    around = np.zeros((count, palette_size), dtype=np.int64)       # per piece, its neighbours of each colour
    degree = np.array([len(others) for others in neighbours], dtype=np.int64)
    # the order: most colours around, then most neighbours, then first in the grid (one number, larger first)
    priority = degree * count + (count - 1 - np.arange(count))
    saturation = np.zeros(count, dtype=np.int64)
    order = np.arange(palette_size)
    for _ in range(count):
        piece = int(np.argmax(np.where(chosen < 0, saturation * (count * count + count) + priority, -1)))
        colour = int(np.lexsort((order, used, around[piece]))[0])
        chosen[piece] = colour
        used[colour] += 1
        for other in neighbours[piece]:
            saturation[other] += around[other, colour] == 0
            around[other, colour] += 1
    indices[ranks >= 0] = chosen[ranks[ranks >= 0]]
    return indices


def piece_colours(pieces: np.ndarray) -> np.ndarray:
    """[rows, cols] piece ids -> [rows, cols, 3] float32, each piece's palette colour (piece_colour_indices;
    unused where -1)."""
    table = np.array(palette.PIECE_COLOURS, dtype=np.float32)
    return table[np.maximum(piece_colour_indices(pieces), 0)]


def group_edges(groups: np.ndarray, width: int) -> np.ndarray:
    """[H, W] int labels -> [H, W] bool, the pixels within `width` pixels inside a label region's border."""
    edge = _near_boundary(groups, width)
    if width > 0:
        edge[:width] = edge[-width:] = True
        edge[:, :width] = edge[:, -width:] = True
    return edge


def draw_pieces(out: np.ndarray, arrays: TraceArrays, block: int, alpha: float, fill: str = "colour") -> None:
    """In place: each merged piece tinted with its colour (or filled with its mean colour) and outlined."""
    pieces = arrays.pieces[block]
    merged = pieces >= 0
    if not merged.any():
        return
    where = upsample(arrays, merged)
    colours = upsample(arrays, piece_colours(pieces))
    if fill == "mean":
        _fill_mean(out, arrays, upsample(arrays, pieces), where)
    elif fill == "colour":
        _mix(out, where, colours, alpha)
    else:
        raise ValueError(f"fill must be 'colour' or 'mean', got {fill!r}")
    owners = upsample(arrays, arrays.owner[block])
    edge = group_edges(owners, palette.PIECE_OUTLINE_WIDTH) & where
    out[edge] = colours[edge] * palette.PIECE_OUTLINE_SHADE


def _fill_mean(out: np.ndarray, arrays: TraceArrays, pixel_pieces: np.ndarray, where: np.ndarray) -> None:
    """In place: every merged pixel takes the mean colour of its piece's pixels in the picture."""
    ids = pixel_pieces[where]
    _, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse).astype(np.float32)
    means = np.stack([np.bincount(inverse, weights=arrays.picture[where][:, c]) for c in range(3)], axis=1)
    out[where] = (means / counts[:, None])[inverse]


def draw_outline(out: np.ndarray, mask: np.ndarray | None) -> None:
    """In place: the object's outline, a bright line on its border pixels with a dark line just outside."""
    if mask is None:
        return
    inner = mask & _near_boundary(mask, 2)
    outer = ~mask & _near_boundary(mask, 1)
    out[outer] = palette.hex_to_rgb(palette.OUTLINE_SHADOW_HEX)
    out[inner] = palette.hex_to_rgb(palette.OUTLINE_HEX)


def _near_boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """[H, W] bool (or int labels), the pixels within `width` pixels (4-neighbourhood steps along one axis) of a
    change of value."""
    near = np.zeros(mask.shape, dtype=bool)
    for shift in range(1, width + 1):
        near[shift:] |= mask[shift:] != mask[:-shift]
        near[:-shift] |= mask[:-shift] != mask[shift:]
        near[:, shift:] |= mask[:, shift:] != mask[:, :-shift]
        near[:, :-shift] |= mask[:, :-shift] != mask[:, shift:]
    return near


def _finish(out: np.ndarray, arrays: TraceArrays, outline: bool) -> np.ndarray:
    if outline:
        draw_outline(out, arrays.mask)
    return to_uint8(out)


# --- the views ---------------------------------------------------------------------------------------------

def picture_image(arrays: TraceArrays, outline: bool = True) -> np.ndarray:
    """[H, W, 3] uint8: the picture as the model saw it, the object outlined where a mask is given."""
    return _finish(arrays.picture.copy(), arrays, outline)


def status_image(arrays: TraceArrays, block: int, outline: bool = True) -> np.ndarray:
    """[H, W, 3] uint8: the picture with each patch drawn by its status leaving `block`.

    Kept: the picture as it is. Merged: tinted with its piece's colour, pieces outlined. Fused: paled under
    purple stripes falling to the right. Dropped: greyed, pulled to mid grey, under stripes rising to the right.
    """
    block = check_block(arrays, block)
    status = arrays.status[block]
    out = arrays.picture.copy()
    draw_pieces(out, arrays, block, palette.MERGED_ALPHA)
    draw_striped(out, arrays, status == Status.FUSED, palette.FUSED_HEX, palette.FUSED_ALPHA, palette.FUSED_HATCH)
    draw_dropped(out, arrays, status == Status.DROPPED)
    return _finish(out, arrays, outline)


def pieces_image(arrays: TraceArrays, block: int, fill: str = "colour", outline: bool = True) -> np.ndarray:
    """[H, W, 3] uint8: the merged pieces leaving `block`, each in its own colour and outlined; the other patches
    greyed (fused and dropped striped, as in status_image).

    Args:
        fill: "colour": each piece tinted strongly with its palette colour; "mean": each piece filled with the
            mean colour of its pixels (what merging averages), told apart by its coloured outline.
    """
    block = check_block(arrays, block)
    status = arrays.status[block]
    out = greyed(arrays.picture) * 0.6 + 0.4 * 0.75
    merged = upsample(arrays, status == Status.MERGED)
    out[merged] = arrays.picture[merged]
    draw_pieces(out, arrays, block, alpha=0.78, fill=fill)
    draw_striped(out, arrays, status == Status.FUSED, palette.FUSED_HEX, palette.FUSED_ALPHA, palette.FUSED_HATCH)
    draw_dropped(out, arrays, status == Status.DROPPED)
    return _finish(out, arrays, outline)


def attention_source(arrays: TraceArrays, block: int) -> int | None:
    """The block whose class attention `attention_image(arrays, block)` shows: the last scored block at or
    before `block`, or None if no block up to `block` recorded one.

    Raises:
        ValueError: the trace has no class attention at all (no reduction, or a model without a class token).
    """
    block = check_block(arrays, block)
    scored = arrays.scored_blocks
    if not scored:
        raise ValueError(f"this trace ({arrays.method}) has no class-attention scores: they are recorded where a "
                         "method that ranks by class attention (EViT, ImagePiece) reduces; apply "
                         "EViT(keep_rate=1.0) to record them without reducing anything")
    earlier = [index for index in scored if index <= block]
    return earlier[-1] if earlier else None


def attention_image(arrays: TraceArrays, block: int, outline: bool = True) -> np.ndarray:
    """[H, W, 3] uint8: the class attention that decided the last reduction up to `block`, as a translucent
    heat map (palette.HEAT_CMAP, scaled from the block's lowest to its highest score) over the greyed picture;
    the higher the score, the more opaque the heat (palette.HEAT_ALPHA), so the image stays readable.

    Patches with no score there (dropped earlier) are hatched; before the first scored block the picture is
    shown greyed, without heat (see attention_source).

    Raises:
        ValueError: the trace has no class-attention scores.
    """
    source = attention_source(arrays, block)
    out = greyed(arrays.picture)
    if source is None:
        return _finish(out, arrays, outline)
    scores = arrays.scores[source]
    valid = ~np.isnan(scores)
    low, high = float(scores[valid].min()), float(scores[valid].max())
    scaled = np.where(valid, (scores - low) / (high - low) if high > low else 0.5, 0.0)
    heat = palette.heat_lut()[np.round(scaled * 255).astype(np.int64)]
    where = upsample(arrays, valid)
    alpha = palette.HEAT_ALPHA[0] + (palette.HEAT_ALPHA[1] - palette.HEAT_ALPHA[0]) * scaled
    _mix(out, where, upsample(arrays, heat), upsample(arrays, alpha)[where][:, None])
    draw_dropped(out, arrays, ~valid)
    return _finish(out, arrays, outline)


def removed_patches(arrays: TraceArrays, block: int) -> np.ndarray:
    """[rows, cols] bool: the patches let go of at any block up to `block` (see trace.read.let_go_statuses)."""
    block = check_block(arrays, block)
    return is_let_go(arrays.status[: block + 1], arrays.let_go).any(axis=0)


def object_patches(arrays: TraceArrays) -> np.ndarray:
    """[rows, cols] bool: the patches with any object pixel (trace.read.patch_mask).

    Raises:
        ValueError: the arrays hold no mask.
    """
    if arrays.mask is None:
        raise ValueError("this view needs the object's mask: pass mask= to extract (e.g. masks[i] from "
                         "rv.data.make_clutter)")
    return patch_mask(torch.from_numpy(arrays.mask[None]), arrays.patch_size[0])[0].numpy()


def removed_counts(arrays: TraceArrays, block: int) -> dict[str, float]:
    """What was let go of up to `block`, against the mask.

    Returns:
        {"removed": patches let go of, "background": of those, the ones touching no object pixel,
        "share": background / removed (NaN if none was), "random": the background share of all patches, what a
        random choice would give}.
    """
    removed = removed_patches(arrays, block)
    background = ~object_patches(arrays)
    count = int(removed.sum())
    return {"removed": count, "background": int((removed & background).sum()),
            "share": float((removed & background).sum() / count) if count else float("nan"),
            "random": float(background.mean())}


def removed_image(arrays: TraceArrays, block: int, outline: bool = True) -> np.ndarray:
    """[H, W, 3] uint8: each patch let go of up to `block` paled and striped by whether it touches the object
    (vermilion, cross-hatched) or is background (blue violet, stripes), the other patches as they are. Without a
    mask (a picture of your own: nothing says which pixels are the object) every patch let go of takes one colour
    (palette.LET_GO_HEX).
    """
    removed = removed_patches(arrays, block)
    out = arrays.picture.copy()
    if arrays.mask is None:
        groups = ((removed, palette.LET_GO_HEX, palette.REMOVED_HATCH["let go"]),)
    else:
        on_object = object_patches(arrays)
        groups = ((removed & ~on_object, palette.REMOVED_BACKGROUND_HEX, palette.REMOVED_HATCH["background"]),
                  (removed & on_object, palette.REMOVED_OBJECT_HEX, palette.REMOVED_HATCH["object"]))
    for where, colour, direction in groups:
        draw_striped(out, arrays, where, colour, palette.REMOVED_ALPHA, direction)
    return _finish(out, arrays, outline)


def legend_keys(arrays: TraceArrays, view: str, blocks: int | list[int]) -> set[str]:
    """What the pictures of `view` at `blocks` hold, as palette legend keys (palette.legend's `present`)."""
    blocks = [check_block(arrays, block) for block in ([blocks] if isinstance(blocks, int) else blocks)]
    keys = palette.present_in(arrays.status[blocks], arrays.pieces[blocks])
    if view == "attention":
        keys.add("learned" if arrays.learned_scores else "class attention")
        sources = [attention_source(arrays, block) for block in blocks]
        unscored = [np.isnan(arrays.scores[source]).any() for source in sources if source is not None]
        keys.discard("dropped")
        if any(unscored):
            keys.add("dropped")
    if view == "removed":
        last = max(blocks)
        removed = removed_patches(arrays, last)
        if arrays.mask is None:
            keys |= {"let go"} if removed.any() else set()
        else:
            keys |= palette.present_in(arrays.status[last], removed=removed, on_object=object_patches(arrays))
        if not removed_patches(arrays, min(blocks)).all():
            keys.add("carried")
        keys.add("no mask" if arrays.mask is None else "mask")
    if arrays.mask is not None:
        keys.add("mask")                                  # the object is outlined in every view
    return keys


def mark_patch(out: np.ndarray, arrays: TraceArrays, block: int, patch: int | tuple[int, int]) -> None:
    """In place on a float [H, W, 3] image: outline the patches carried by the same token as `patch` leaving
    `block`, and frame `patch` itself."""
    row, col = patch_position(arrays, patch)
    token = arrays.owner[block, row, col]
    if token >= 0:
        group = upsample(arrays, (arrays.owner[block] == token).astype(np.int8))
        edge = group_edges(group, 2) & (group == 1)
        out[edge] = palette.hex_to_rgb(palette.LINEAGE_HEX)
    alone = np.zeros(arrays.grid, dtype=np.int8)
    alone[row, col] = 1
    cell = upsample(arrays, alone)
    frame = group_edges(cell, 2) & (cell == 1)
    out[frame] = palette.hex_to_rgb(palette.LINEAGE_PATCH_HEX)


def lineage_image(arrays: TraceArrays, block: int, patch: int | tuple[int, int], outline: bool = True) -> np.ndarray:
    """[H, W, 3] uint8: where `patch` is leaving `block`. The patches carried by its token as they are and
    outlined (cyan), the patch framed (red), the rest dimmed; a dropped patch is hatched.

    Args:
        patch: a flat index (row * cols + col) or a (row, col) pair.
    """
    block = check_block(arrays, block)
    row, col = patch_position(arrays, patch)
    token = arrays.owner[block, row, col]
    shares = arrays.owner[block] == token if token >= 0 else np.zeros(arrays.grid, dtype=bool)
    out = greyed(arrays.picture) * palette.LINEAGE_DIM
    pixels = upsample(arrays, shares)
    out[pixels] = arrays.picture[pixels]
    if token < 0:
        alone = np.zeros(arrays.grid, dtype=bool)
        alone[row, col] = True
        draw_dropped(out, arrays, alone)
    mark_patch(out, arrays, block, (row, col))
    return _finish(out, arrays, outline)


_DRAW = {"status": status_image, "pieces": pieces_image, "attention": attention_image, "removed": removed_image}


def view_image(arrays: TraceArrays, view: str, block: int, patch: int | tuple[int, int] | None = None,
               outline: bool = True) -> np.ndarray:
    """[H, W, 3] uint8: the view named `view` (one of VIEWS) leaving `block`; with `patch`, the patches its token
    carries outlined and the patch framed on top.

    Raises:
        ValueError: an unknown view (the message lists VIEWS), or what the view itself raises.
    """
    if view not in _DRAW:
        raise ValueError(f"unknown view {view!r}; the views are {', '.join(VIEWS)}")
    image = _DRAW[view](arrays, block, outline=outline)
    if patch is None:
        return image
    out = image.astype(np.float32) / 255.0
    mark_patch(out, arrays, check_block(arrays, block), patch)
    return to_uint8(out)
