"""Helpers of the tutorial notebooks (notebooks/00-03): the few figures and counts the library's views don't give.

    from retokviz.tutorial import lessons
    lessons.plot_patches(picture)                     # an image cut into 16 x 16 patches, and its first tokens
    lessons.class_attention(model, images)            # [blocks, n, P]: the class token's attention, nothing reduced
    lessons.plot_class_attention(model, images[3], masks[3])
    lessons.plot_candidates(arrays, keep_rate=0.7)    # ImagePiece: semantic tokens, candidates, the pieces formed
    lessons.rescoring(trace)                          # per block: semantic tokens displaced by pieces
    lessons.receptive_field(model)                    # the pixels one patch token depends on
    lessons.pretrained("deit_small_patch16_224")      # pretrained timm weights, or None and one line saying why
    lessons.page_data("build/tour.html")              # what a page saved by the explorer holds

Figures are retokviz.views.figure.Figure: they show themselves as pictures in a notebook. Nothing here touches pyplot.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from retokviz.methods.base import ceil_share
from retokviz.methods.evit import EViT
from retokviz.patch import applied
from retokviz.trace.read import rescoring  # noqa: F401  the lesson's name for the trace reader's answer
from retokviz.trace.record import record
from retokviz.views.figure import Figure
from retokviz.views import palette, raster
from retokviz.views.static import legend_handles
from retokviz.views.extract import TraceArrays, check_block, extract, to_uint8

PANEL = 2.4                  # inches per image panel
CANDIDATE_ALPHA = 0.5        # a candidate: greyed, then tinted this much with palette.CANDIDATE_HEX (plum)


def _picture(picture: np.ndarray | Tensor) -> np.ndarray:
    """A normalised [3, H, W] tensor or an [H, W, 3] array (uint8 or 0..1) -> [H, W, 3] float in 0..1."""
    if isinstance(picture, Tensor):
        from retokviz.images import denormalize

        tensor = picture.detach().cpu().float()
        tensor = tensor[0] if tensor.dim() == 4 else tensor
        return denormalize(tensor).clamp(0, 1).permute(1, 2, 0).numpy()
    array = np.asarray(picture)
    return array / 255.0 if array.dtype == np.uint8 else np.clip(array, 0.0, 1.0)


# --- patches and tokens ------------------------------------------------------------------------------------

def plot_patches(picture: np.ndarray | Tensor, patch_size: int = 16, tokens: int = 8,
                 mask: np.ndarray | Tensor | None = None) -> Figure:
    """The image cut into its patch grid, and its first `tokens` patches in a row, as the transformer reads them.

    Args:
        picture: a normalised [3, H, W] tensor (as the model takes it) or an [H, W, 3] array.
        patch_size: the side of a patch in pixels.
        tokens: how many patches to show in the row (row by row from the top left).
        mask: [H, W] bool, the object's pixels: the patches touching it are outlined, and counted in the title.
    """
    image = _picture(picture)
    height, width = image.shape[:2]
    rows, cols = height // patch_size, width // patch_size
    figure = Figure(figsize=(PANEL * 3.2, PANEL + 0.4))
    grid_ax, row_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.2]})
    grid_ax.imshow(image)
    for line in range(1, rows):
        grid_ax.axhline(line * patch_size - 0.5, color="white", linewidth=0.8)
    for line in range(1, cols):
        grid_ax.axvline(line * patch_size - 0.5, color="white", linewidth=0.8)
    title = f"{rows} x {cols} = {rows * cols} patches of {patch_size} x {patch_size} px"
    if mask is not None:
        mask = mask.cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
        touches = mask[:rows * patch_size, :cols * patch_size].reshape(rows, patch_size, cols, patch_size)
        touches = touches.any(axis=(1, 3))
        for row, col in zip(*np.nonzero(touches)):
            grid_ax.add_patch(Rectangle((col * patch_size - 0.5, row * patch_size - 0.5), patch_size, patch_size,
                                        fill=False, edgecolor=palette.OUTLINE_HEX, linewidth=1.5))
        title += f"\n{int(touches.sum())} touch the object (outlined)"
    grid_ax.set_title(title, fontsize=8)
    count = min(tokens, rows * cols)
    gap = max(2, patch_size // 4)
    strip = np.ones((patch_size, count * (patch_size + gap) - gap, 3), dtype=np.float32)
    for index in range(count):
        row, col = divmod(index, cols)
        left = index * (patch_size + gap)
        strip[:, left:left + patch_size] = image[row * patch_size:(row + 1) * patch_size,
                                                 col * patch_size:(col + 1) * patch_size]
    row_ax.imshow(strip, interpolation="nearest")
    for index in range(count):
        row_ax.text(index * (patch_size + gap) + patch_size / 2, patch_size + 2, str(index), ha="center",
                    va="top", fontsize=7)
    row_ax.set_title(f"the first {count} of {rows * cols} patch tokens, row by row: each is flattened and "
                     f"projected\nto one vector; a class token is put in front, and every token attends to "
                     f"every other", fontsize=8)
    for ax in (grid_ax, row_ax):
        ax.set_axis_off()
    figure.subplots_adjust(left=0.01, right=0.99, top=0.8, bottom=0.05, wspace=0.08)
    return figure


def plot_images(pictures: Sequence[np.ndarray | Tensor], titles: Sequence[str] | None = None) -> Figure:
    """Pictures side by side (normalised [3, H, W] tensors or [H, W, 3] arrays), each with its title."""
    if not len(pictures):
        raise ValueError("give at least one picture")
    figure = Figure(figsize=(PANEL * len(pictures), PANEL + 0.5))
    axes = figure.subplots(1, len(pictures), squeeze=False)[0]
    for index, (ax, picture) in enumerate(zip(axes, pictures)):
        ax.imshow(_picture(picture))
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[index], fontsize=8)
    figure.subplots_adjust(left=0.01, right=0.99, top=0.82, bottom=0.02, wspace=0.05)
    return figure


def plot_curves(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str, ylabel: str,
                title: str, reference: tuple[str, float] | None = None, invert_x: bool = False,
                percent: bool = True) -> Figure:
    """Lines on one axis: {label: (x values, y values)}, a dashed horizontal reference (label, value) if given.

    Args:
        invert_x: draw x from high to low (keep rates: less kept to the right).
        percent: the y values are shares in 0..1, drawn as percentages.
    """
    scale = 100.0 if percent else 1.0
    figure = Figure(figsize=(4.8, 3.1))
    ax = figure.subplots()
    colours = _series_colours(list(series))
    xs_all = set()
    for (label, (xs, ys)), colour in zip(series.items(), colours):
        ax.plot(list(xs), [scale * y for y in ys], marker="o", markersize=4, label=label, color=colour)
        xs_all.update(xs)
    if xs_all and all(float(x).is_integer() for x in xs_all):   # blocks: one tick each
        ax.set_xticks(sorted(xs_all))
    if reference is not None:
        ax.axhline(scale * reference[1], color="0.4", linestyle="--", linewidth=1, label=reference[0])
    if invert_x:
        ax.invert_xaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (" (%)" if percent else ""))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return figure


def _series_colours(labels: list[str]) -> list[str | None]:
    """Each label's method colour where each starts with a different method's name ("ImagePiece, trained"), else
    matplotlib's colour cycle (None) for all."""
    keys = [palette.method_key(label) for label in labels]
    if None in keys or len(set(keys)) != len(keys):
        return [None] * len(labels)
    return [palette.method_colour(key) for key in keys]


# --- class attention ---------------------------------------------------------------------------------------

def _attention_everywhere(model: nn.Module) -> EViT:
    """EViT at keep rate 1.0 at every block: it scores every token with the class attention and reduces none."""
    return EViT(keep_rate=1.0, layers=tuple(range(len(model.blocks))))


@torch.no_grad()
def class_attention(model: nn.Module, images: Tensor, batch_size: int = 256, progress: bool = True) -> Tensor:
    """The class token's attention to each patch at every block of `model`, with nothing reduced.

    EViT at keep rate 1.0 at every block scores the tokens and reduces none, so each pass is the untouched
    model's; the model's own method (if any) is back in place afterwards.

    Args:
        images: [n, 3, H, W] normalised.
        progress: a progress bar over the batches.

    Returns:
        [blocks, n, P] float: a_i at each block, averaged over heads (softmax over all tokens, class token
        included, so a row sums to a little less than 1).
    """
    from retokviz.measure.metrics import traces

    parts = []
    with applied(model, _attention_everywhere(model)):
        for _, trace in traces(model, images, batch_size, progress, "class attention"):
            parts.append(torch.stack([layer.scores.float() for layer in trace.layers]))
    return torch.cat(parts, dim=1)


@torch.no_grad()
def plot_class_attention(model: nn.Module, image: Tensor, mask: Tensor | None = None,
                         blocks: Sequence[int] | None = None, title: str = "where the class token looks") -> Figure:
    """The picture, then the class attention of `model` at each block (default: every block) over it, nothing
    reduced, the object outlined where a mask is given; each panel titled with the share of attention on the
    object's patches.

    Args:
        image: one normalised image [3, H, W]; mask: [H, W] bool, the object's pixels, or None.
    """
    device = next(model.parameters()).device
    with applied(model, _attention_everywhere(model)), record(model) as trace:
        model(image[None].to(device))
    arrays = extract(trace.to("cpu"), image, mask)
    blocks = list(range(arrays.num_blocks) if blocks is None else blocks)
    on_object = raster.object_patches(arrays) if arrays.mask is not None else None
    figure = Figure(figsize=(PANEL * (len(blocks) + 1), PANEL + 0.6))
    axes = figure.subplots(1, len(blocks) + 1)
    axes[0].imshow(raster.picture_image(arrays))
    axes[0].set_title("the image" + (" (object outlined)" if on_object is not None else ""), fontsize=8)
    for ax, block in zip(axes[1:], blocks):
        block = check_block(arrays, block)
        ax.imshow(raster.attention_image(arrays, block), interpolation="nearest")
        label = f"block {block}"
        if on_object is not None:
            scores = np.nan_to_num(arrays.scores[block])
            label += f": {scores[on_object].sum() / scores.sum():.0%} on the object"
        ax.set_title(label, fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    figure.suptitle(f"{title} (brighter: more attention)", fontsize=9)
    figure.subplots_adjust(left=0.01, right=0.99, top=0.8, bottom=0.02, wspace=0.05)
    return figure


# --- ImagePiece --------------------------------------------------------------------------------------------

def _received(arrays: TraceArrays, block: int) -> np.ndarray:
    """[rows, cols] the token (among those block `block` received) carrying each patch, -1 if discarded before."""
    if block == 0:
        return np.arange(arrays.num_patches, dtype=np.int32).reshape(arrays.grid)
    return arrays.owner[block - 1]


def semantic_patches(arrays: TraceArrays, keep_rate: float, block: int | None = None) -> np.ndarray:
    """[rows, cols] bool: the patches of the semantic tokens at a reduction block, the ceil(keep_rate * T) tokens
    with the highest class attention among the T it received (ImagePiece's step 1). The others still carried are
    the candidates (the bottom set).

    Args:
        block: a block with scores; None means the first reduction block.
    """
    block = arrays.scored_blocks[0] if block is None else check_block(arrays, block)
    received = _received(arrays, block)
    scores = arrays.scores[block]
    tokens = np.unique(received[received >= 0])
    token_scores = np.array([scores[received == token][0] for token in tokens])
    top = tokens[np.argsort(-token_scores, kind="stable")[:ceil_share(keep_rate, len(tokens))]]
    return np.isin(received, top)


def plot_candidates(arrays: TraceArrays, keep_rate: float, block: int | None = None) -> Figure:
    """ImagePiece at one reduction block in three panels: the class attention that ranks the tokens; the semantic
    tokens (as they are, never merged) against the candidates (greyed and tinted plum, palette.CANDIDATE_HEX: the
    bottom set that merges); and the tokens leaving the block, each piece tinted and outlined in its colour. Each
    legend lists only what its panel holds, drawn as the panel draws it (static.legend_handles).

    Args:
        arrays: one image's TraceArrays of a model running ImagePiece.
        keep_rate: the method's keep rate (the share of tokens that are semantic).
        block: a reduction block; None means the first.
    """
    block = arrays.scored_blocks[0] if block is None else check_block(arrays, block)
    semantic = semantic_patches(arrays, keep_rate, block)
    received = _received(arrays, block)
    candidates = ~semantic & (received >= 0)
    out = arrays.picture.copy()
    where = raster.upsample(arrays, candidates)
    out[where] = raster.greyed(arrays.picture)[where]
    raster._mix(out, where, palette.hex_to_rgb(palette.CANDIDATE_HEX), CANDIDATE_ALPHA)
    raster.draw_dropped(out, arrays, received < 0)
    raster.draw_outline(out, arrays.mask)
    count_semantic = len(np.unique(received[semantic]))
    count_candidates = len(np.unique(received[candidates]))
    pieces = arrays.pieces[block]
    figure = Figure(figsize=(PANEL * 3, PANEL + 1.5))
    axes = figure.subplots(1, 3)
    panels = [
        (raster.attention_image(arrays, block), f"class attention at block {block}\n(brighter: more)"),
        (to_uint8(out), f"{count_semantic} semantic tokens (as they are)\n"
                        f"{count_candidates} candidates (greyed, plum)"),
        (raster.pieces_image(arrays, block), f"leaving block {block}: {arrays.num_tokens[block]} tokens,\n"
                                             f"{len(np.unique(pieces[pieces >= 0]))} of them pieces "
                                             "(tinted, outlined)"),
    ]
    for ax, (rgb, title) in zip(axes, panels):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    # each panel its own legend, listing only what it holds, each swatch drawn as the panel draws it: the middle
    # one's candidate swatch is plum over mid grey, as a candidate is the greyed picture tinted plum
    candidate = palette.rgb_to_hex(np.multiply(palette.hex_to_rgb(palette.CANDIDATE_HEX), CANDIDATE_ALPHA)
                                   + 0.5 * (1 - CANDIDATE_ALPHA))
    middle = [("semantic token (as it is)", palette.KEPT_HEX, ""), ("candidate (bottom set)", candidate, "")]
    if (received < 0).any():
        middle.append(("dropped at an earlier block", palette.DROPPED_HEX, palette.DROPPED_HATCH))
    for ax, entries in ((axes[1], middle),
                        (axes[2], palette.legend("pieces", raster.legend_keys(arrays, "pieces", block)))):
        ax.legend(handles=legend_handles(entries), loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=6,
                  frameon=False, ncol=1)
    figure.suptitle(f"{arrays.method}: candidates become pieces", fontsize=9)
    figure.subplots_adjust(left=0.01, right=0.99, top=0.8, bottom=0.24, wspace=0.05)
    return figure


def receptive_field(model: nn.Module, token: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width) in pixels of the image region one token of `model.patch_embed` depends on: where the
    gradient of that token with respect to a random image is non-zero.

    A 16 x 16 patchify sees exactly its own 16 x 16 pixels; a convolutional stem also sees its neighbours'.

    Args:
        token: (row, col) in the patch grid; None means the middle one.
    """
    embed = model.patch_embed
    height, width = embed.img_size if not isinstance(embed.img_size, int) else (embed.img_size, embed.img_size)
    rows, cols = embed.grid_size
    row, col = token if token is not None else (rows // 2, cols // 2)
    was_training = embed.training
    embed.eval()
    try:
        generator = torch.Generator().manual_seed(0)
        parameter = next(model.parameters())
        image = torch.randn(1, 3, height, width, generator=generator).to(parameter)
        image.requires_grad_(True)
        out = embed(image)
        out = out.reshape(1, rows, cols, -1)                                 # [1, P, C] or [1, rows, cols, C]
        out[0, row, col].sum().backward()
    finally:
        embed.train(was_training)
    touched = image.grad.abs().sum(dim=(0, 1)) > 0                           # [H, W]
    ys, xs = touched.any(dim=1).nonzero().flatten(), touched.any(dim=0).nonzero().flatten()
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


# --- weights and pages -------------------------------------------------------------------------------------

def pretrained(name: str, download: bool = True) -> nn.Module | None:
    """A timm model with pretrained weights, in eval mode, or None; prints one line saying which.

    Args:
        name: a timm model name, e.g. "deit_small_patch16_224".
        download: fetch the weights from the hub where it is reachable; False looks only in the local cache
            (the notebooks' quick mode downloads nothing).
    """
    from retokviz.models.weights import WeightsUnavailable, cached_weights, load_pretrained

    try:
        if not download and cached_weights(name) is None:
            raise WeightsUnavailable(f"{name}: no pretrained weights in the local cache (quick mode downloads "
                                     "nothing)")
        model, source = load_pretrained(name)
    except WeightsUnavailable as error:
        print(f"{error}: the bundled models stand in")
        return None
    print(f"{name}: pretrained weights from {source}")
    return model


def page_data(path: str | os.PathLike) -> dict:
    """The data a page written by `Explorer.save_html` carries: "settings" (one per keep rate, each with its
    "frames" {view: [index into "images" per block]}), "images" (the distinct frames as PNG data URLs), "views",
    "num_blocks" and the rest (see retokviz.views.html.payload)."""
    text = Path(path).read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.DOTALL)
    if found is None:
        raise ValueError(f"{path} holds no explorer data: not a page written by save_html")
    return json.loads(found.group(1))
