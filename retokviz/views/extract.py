"""A recorded trace as plain numpy arrays for one image: what every view (matplotlib, plotly, widget, web page)
draws from, with no torch and no model needed afterwards.

    with rv.record(model) as trace:
        model(images)
    arrays = extract(trace, images[0], mask=masks[0])     # the picture may be the normalised tensor
    arrays.status[block]                                  # [rows, cols] rv.Status values leaving `block`
    lineage(arrays, (3, 4))                               # where patch (row 3, col 4) went, block by block
    json.dumps(arrays.to_payload())                       # for a web page

A TraceArrays is frozen and cheap to keep: a 12-block DeiT trace of one 224-pixel image is about 1 MB.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch

from retokviz._util.png import png_data_url
from retokviz.images import denormalize
from retokviz.methods.registry import describe as describe_method
from retokviz.trace.read import let_go_statuses
from retokviz.trace.record import Status, Trace


@dataclass(frozen=True, eq=False)
class TraceArrays:
    """One image's trace as numpy arrays (L blocks, a rows x cols patch grid, an H x W picture).

    Compared and hashed by identity (arrays have no single truth value), so it can key a cache.

    Attributes:
        picture: [H, W, 3] float32 in 0..1, the image as the model saw it.
        mask: [H, W] bool, the object's pixels, or None.
        grid: (rows, cols) of the patch grid.
        status: [L, rows, cols] int8, rv.Status values, the state leaving each block.
        owner: [L, rows, cols] int32, the token (0-based among patch tokens) carrying each patch, -1 if dropped.
        pieces: [L, rows, cols] int32, the piece id (its token) of MERGED patches, -1 for the others.
        scores: [L, rows, cols] float32, the class attention (of the token carrying each patch when the block
            received it) where the block recorded one, i.e. at reduction blocks; NaN elsewhere.
        sizes: per block, [T_l] int32, how many patches each token leaving it carries.
        num_tokens: [L] int32, the patch tokens leaving each block.
        reduction_blocks: the blocks that changed the tokens (made a reduction).
        method: how the method reads, e.g. "EViT(keep_rate=0.7)", or "untouched".
        let_go: the rv.Status values that count as "let go of" under the method (trace.read.let_go_statuses).
        learned_scores: whether `scores` are a learned module's keep probabilities (DynamicViT's predictors)
            rather than the class attention.
    """

    picture: np.ndarray
    mask: np.ndarray | None
    grid: tuple[int, int]
    status: np.ndarray
    owner: np.ndarray
    pieces: np.ndarray
    scores: np.ndarray
    sizes: tuple[np.ndarray, ...]
    num_tokens: np.ndarray
    reduction_blocks: tuple[int, ...]
    method: str
    let_go: tuple[int, ...]
    learned_scores: bool = False

    @property
    def num_blocks(self) -> int:
        """L, the number of blocks."""
        return int(self.status.shape[0])

    @property
    def num_patches(self) -> int:
        """P = rows * cols."""
        return self.grid[0] * self.grid[1]

    @property
    def patch_size(self) -> tuple[int, int]:
        """(height, width) of one patch in pixels."""
        return self.picture.shape[0] // self.grid[0], self.picture.shape[1] // self.grid[1]

    @property
    def scored_blocks(self) -> tuple[int, ...]:
        """The blocks with class-attention scores (reduction blocks, of a model with a class token)."""
        return tuple(int(i) for i in np.flatnonzero(~np.isnan(self.scores).all(axis=(1, 2))))

    def to_payload(self) -> dict:
        """The arrays as JSON-able data for a web page: nested lists of ints / floats / bools, NaN as None.

        Keys: the field names, plus "num_blocks", "patch_size" ([height, width] in pixels), "status_names"
        (the rv.Status names by value, lower case) and "picture_png" (the picture as a PNG data URL).
        "picture" is [H][W][3] ints in 0..255.
        """
        return {
            "picture": to_uint8(self.picture).tolist(),
            "picture_png": png_data_url(to_uint8(self.picture)),
            "mask": None if self.mask is None else self.mask.tolist(),
            "grid": list(self.grid),
            "patch_size": list(self.patch_size),
            "num_blocks": self.num_blocks,
            "status": self.status.astype(int).tolist(),
            "status_names": [status.name.lower() for status in Status],
            "owner": self.owner.tolist(),
            "pieces": self.pieces.tolist(),
            "scores": _nan_to_none(self.scores),
            "sizes": [size.tolist() for size in self.sizes],
            "num_tokens": self.num_tokens.tolist(),
            "reduction_blocks": list(self.reduction_blocks),
            "method": self.method,
            "let_go": list(self.let_go),
        }


def _nan_to_none(values: np.ndarray) -> list:
    """A float array as nested lists of Python floats, NaN as None (JSON has no NaN)."""
    objects = values.astype(np.float64).astype(object)
    objects[np.isnan(values)] = None
    return objects.tolist()


def to_uint8(picture: np.ndarray) -> np.ndarray:
    """[H, W, 3] float in 0..1 -> the same as uint8 in 0..255."""
    return (np.clip(picture, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _as_picture(picture: np.ndarray | torch.Tensor, image: int) -> np.ndarray:
    """A picture in any accepted form -> [H, W, 3] float32 in 0..1.

    Accepted: a [H, W, 3] array (uint8, or float in 0..1), a normalised [3, H, W] tensor, or a normalised batch
    [B, 3, H, W] (image `image` is taken).
    """
    if isinstance(picture, torch.Tensor):
        tensor = picture.detach().cpu()
        if tensor.dim() == 4 and tensor.shape[1] == 3:
            if not 0 <= image < tensor.shape[0]:
                raise IndexError(f"image must be in 0..{tensor.shape[0] - 1} for a picture batch of shape "
                                 f"{tuple(tensor.shape)}, got {image}")
            tensor = tensor[image]
        if tensor.dim() == 3 and tensor.shape[0] == 3:
            return denormalize(tensor.float()).permute(1, 2, 0).numpy().astype(np.float32)
        if tensor.dim() == 3 and tensor.shape[2] == 3:
            picture = tensor.numpy()
        else:
            raise ValueError(f"a picture tensor must be normalised [3, H, W] (or [B, 3, H, W]), or [H, W, 3] in "
                             f"0..1, got shape {tuple(tensor.shape)}")
    array = np.asarray(picture)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"a picture array must be [H, W, 3] (uint8, or float in 0..1), got shape {array.shape}")
    if array.dtype == np.uint8:
        return (array / 255.0).astype(np.float32)
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def _as_mask(mask: np.ndarray | torch.Tensor | None, size: tuple[int, int]) -> np.ndarray | None:
    """A mask -> [H, W] bool, checked against the picture's size."""
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    array = np.asarray(mask)
    if array.shape != size:
        raise ValueError(f"mask must be [H, W] = {list(size)}, the picture's size, got shape {list(array.shape)}")
    return array.astype(bool)


def _check_image(trace: Trace, image: int) -> None:
    if not trace.layers:
        raise ValueError("the trace is empty: run the model inside `with rv.record(model) as trace:` first")
    if trace.grid_size is None:
        raise ValueError("this trace has no patch grid (grid_size is None: patches were dropped before block 0, as "
                         "patch dropout does in training); record the model in eval mode to draw it")
    batch = trace.layers[0].owner.shape[0]
    if isinstance(image, bool) or not isinstance(image, numbers.Integral) or not 0 <= image < batch:
        raise IndexError(f"image must be an int in 0..{batch - 1} (the trace holds {batch} images), got {image!r}")


def _reduction_blocks(trace: Trace, image: int) -> tuple[int, ...]:
    """The blocks that changed the tokens: a recorded step, or another token count or owner than before."""
    blocks = []
    previous_owner = torch.arange(trace.num_patches)
    for index, layer in enumerate(trace.layers):
        owner = layer.owner[image].detach().cpu()
        if layer.step is not None or not torch.equal(owner, previous_owner):
            blocks.append(index)
        previous_owner = owner
    return tuple(blocks)


def extract(trace: Trace, picture: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None = None,
            image: int = 0) -> TraceArrays:
    """One image of a recorded trace as TraceArrays.

    Args:
        trace: from `rv.record(model)`, after a forward pass.
        picture: the image the model saw: [H, W, 3] array in 0..1 or uint8, or the normalised [3, H, W] tensor
            (denormalised with rv.data.denormalize), or the normalised batch [B, 3, H, W].
        mask: [H, W] bool, the object's pixels (e.g. masks[i] of rv.data.make_clutter), or None.
        image: which image of the trace's batch.

    Raises:
        ValueError: an empty trace or one without a patch grid, a picture whose size does not split into the
            grid, a mask of another size than the picture.
        IndexError: `image` outside the trace's batch.
    """
    _check_image(trace, image)
    rows, cols = trace.grid_size
    array = _as_picture(picture, image)
    height, width = array.shape[:2]
    if height % rows or width % cols:
        raise ValueError(f"the picture is {height} x {width} pixels, which does not split into the trace's "
                         f"{rows} x {cols} patch grid; pass the picture the model saw (e.g. rv.images.prepare)")
    layers = trace.layers
    owner = np.stack([layer.owner[image].detach().cpu().numpy() for layer in layers]).astype(np.int32)
    status = np.stack([layer.status[image].detach().cpu().numpy() for layer in layers]).astype(np.int8)
    pieces = np.where(status == Status.MERGED, owner, -1).astype(np.int32)
    scores = np.full(owner.shape, np.nan, dtype=np.float32)
    for index, layer in enumerate(layers):
        if layer.scores is not None:
            scores[index] = layer.scores[image].float().detach().cpu().numpy()
    sizes = tuple(layer.sizes[image].detach().cpu().numpy().astype(np.int32) for layer in layers)
    shape = (len(layers), rows, cols)
    return TraceArrays(
        picture=array,
        mask=_as_mask(mask, (height, width)),
        grid=(rows, cols),
        status=status.reshape(shape),
        owner=owner.reshape(shape),
        pieces=pieces.reshape(shape),
        scores=scores.reshape(shape),
        sizes=sizes,
        num_tokens=np.array([layer.num_tokens for layer in layers], dtype=np.int32),
        reduction_blocks=_reduction_blocks(trace, image),
        method=describe_method(trace.method),
        let_go=tuple(int(status) for status in let_go_statuses(trace.method)),
        learned_scores=any(getattr(member, "owns_modules", False) for member in
                           (trace.method if isinstance(trace.method, tuple) else (trace.method,))),
    )


def check_block(arrays: TraceArrays, block: int) -> int:
    """`block` as an int in 0..L-1, or an IndexError naming the valid range."""
    last = arrays.num_blocks - 1
    if isinstance(block, bool) or not isinstance(block, numbers.Integral) or not 0 <= block <= last:
        raise IndexError(f"block must be an int in 0..{last} (the trace has {last + 1} blocks), got {block!r}")
    return int(block)


def patch_position(arrays: TraceArrays, patch: int | tuple[int, int]) -> tuple[int, int]:
    """A patch as a flat index (row * cols + col) or a (row, col) pair -> (row, col), checked against the grid."""
    rows, cols = arrays.grid
    if isinstance(patch, numbers.Integral) and not isinstance(patch, bool):
        if not 0 <= patch < rows * cols:
            raise IndexError(f"patch must be in 0..{rows * cols - 1} ({rows} x {cols} patches) or a (row, col) "
                             f"pair, got {patch}")
        return divmod(int(patch), cols)
    try:
        row, col = (int(v) for v in patch)
    except (TypeError, ValueError):
        raise TypeError(f"patch must be a flat index or a (row, col) pair, got {patch!r}") from None
    if not (0 <= row < rows and 0 <= col < cols):
        raise IndexError(f"patch (row, col) must be in (0..{rows - 1}, 0..{cols - 1}), got {(row, col)}")
    return row, col


def lineage(arrays: TraceArrays, patch: int | tuple[int, int]) -> list[dict]:
    """Where one patch went, block by block.

    Args:
        patch: a flat index (row * cols + col) or a (row, col) pair.

    Returns:
        One dict per block: {"block": i, "token": the token carrying the patch or -1 if dropped,
        "shares_with": [rows, cols] bool, the patches carried by that same token (itself included; all False
        once the patch is dropped), "status": its rv.Status value as an int}.
    """
    row, col = patch_position(arrays, patch)
    steps = []
    for block in range(arrays.num_blocks):
        token = int(arrays.owner[block, row, col])
        shares = arrays.owner[block] == token if token >= 0 else np.zeros(arrays.grid, dtype=bool)
        steps.append({"block": block, "token": token, "shares_with": shares,
                      "status": int(arrays.status[block, row, col])})
    return steps
