"""Pictures of a trace: which patches are kept, merged, fused or dropped, drawn over the image."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch as LegendPatch

from retokviz.provenance import Status, Trace

# RGBA tint per status; kept patches are shown as they are.
STATUS_COLOURS = {
    Status.KEPT: (0.0, 0.0, 0.0, 0.0),
    Status.MERGED: (0.15, 0.4, 1.0, 0.55),
    Status.FUSED: (0.9, 0.1, 0.9, 0.6),
    Status.DROPPED: (0.0, 0.0, 0.0, 0.85),
}


def status_grid(trace: Trace, layer: int, image: int = 0) -> np.ndarray:
    """[rows, cols] the rv.Status of each patch of one image, leaving block `layer`."""
    if trace.grid_size is None:
        raise ValueError("this trace has no patch grid (patches were dropped before block 0); nothing to draw")
    if not 0 <= layer < len(trace.layers):
        raise IndexError(f"layer must be in 0..{len(trace.layers) - 1}, got {layer}")
    batch = trace.layers[layer].status.shape[0]
    if not 0 <= image < batch:
        raise IndexError(f"image must be in 0..{batch - 1} (the batch has {batch}), got {image}")
    return trace.layers[layer].status[image].reshape(trace.grid_size).cpu().numpy()


def overlay_status(picture: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Tint each patch of `picture` ([H, W, 3] in 0..1) by its status in `grid` ([rows, cols]); [H, W, 3]."""
    rows, cols = grid.shape
    height, width = picture.shape[:2]
    colours = np.array([STATUS_COLOURS[Status(value)] for value in range(len(Status))])
    tint = colours[grid]                                                    # [rows, cols, 4]
    tint = tint.repeat(-(-height // rows), axis=0).repeat(-(-width // cols), axis=1)[:height, :width]
    alpha = tint[..., 3:]
    return picture * (1 - alpha) + tint[..., :3] * alpha


def plot_layers(picture: np.ndarray, trace: Trace, layers: list[int] | None = None, image: int = 0) -> Figure:
    """One panel per block: the image with its patches tinted by status, titled with the token count.

    Args:
        picture: [H, W, 3] in 0..1, the image as the model saw it (see retokviz.images.prepare).
        trace: a recorded trace.
        layers: the blocks to show; None means every reduction block.
        image: which image of the batch.
    """
    if layers is None:
        layers = [index for index, layer in enumerate(trace.layers) if layer.scores is not None]
    figure = Figure(figsize=(2.4 * max(len(layers), 1), 2.9))
    axes = figure.subplots(1, max(len(layers), 1), squeeze=False)[0]
    for ax, layer in zip(axes, layers):
        ax.imshow(overlay_status(picture, status_grid(trace, layer, image)))
        ax.set_title(f"after block {layer}: {trace.layers[layer].num_tokens} tokens", fontsize=8)
        ax.axis("off")
    handles = [LegendPatch(facecolor=STATUS_COLOURS[s][:3] if s != Status.KEPT else "white", edgecolor="gray",
                           label=s.name.lower()) for s in Status]
    figure.legend(handles=handles, loc="lower center", ncol=len(Status), fontsize=7, frameon=False)
    figure.subplots_adjust(left=0.01, right=0.99, top=0.88, bottom=0.12, wspace=0.04)
    return figure


def plot_attention(picture: np.ndarray, trace: Trace, layer: int | None = None, image: int = 0,
                   mask: np.ndarray | None = None) -> Figure:
    """Two panels: the image (with the object's outline where a mask is given), and the class attention that
    decided a reduction block's choice, one value per patch, drawn over the image.

    Args:
        picture: [H, W, 3] in 0..1, the image as the model saw it.
        trace: a recorded trace of a model with a class token and a reduction method applied.
        layer: a reduction block; None means the first one.
        image: which image of the batch.
        mask: optional [H, W] bool, the object's pixels (e.g. from rv.data.make_clutter).
    """
    scored = [index for index, record in enumerate(trace.layers) if record.scores is not None]
    if not scored:
        raise ValueError("this trace has no class-attention scores: record a model with a class token and a "
                         "reduction method applied (the scores are taken where a block reduces)")
    layer = scored[0] if layer is None else layer
    if layer not in scored:
        raise ValueError(f"block {layer} made no reduction, so it has no scores; the scored blocks are {scored}")
    grid = status_grid(trace, layer, image)                  # checks the grid and the indices
    scores = trace.layers[layer].scores[image].reshape(grid.shape).float().cpu().numpy()
    height, width = picture.shape[:2]

    figure = Figure(figsize=(5.0, 2.9))
    left, right = figure.subplots(1, 2)
    left.imshow(picture)
    left.set_title("the image" + (" and the object (outlined)" if mask is not None else ""), fontsize=8)
    if mask is not None:
        left.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="yellow", linewidths=1.0)
    right.imshow(picture)
    heat = right.imshow(scores, cmap="inferno", alpha=0.75, extent=(0, width, height, 0), interpolation="nearest")
    right.set_title(f"class attention at block {layer}", fontsize=8)
    figure.colorbar(heat, ax=right, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    for ax in (left, right):
        ax.axis("off")
    figure.subplots_adjust(left=0.01, right=0.93, top=0.9, bottom=0.02, wspace=0.05)
    return figure
