"""PNG encoding, one place for every picture retokviz hands to a widget or a page."""
from __future__ import annotations

import base64
import io

import numpy as np


def png_bytes(rgb: np.ndarray, scale: int = 1, compress_level: int = 6) -> bytes:
    """[H, W, 3] uint8 -> PNG bytes, enlarged `scale` times (nearest neighbour). compress_level 1 is fast (a
    widget redrawing on every slider move), 6 is small (a page holding hundreds of pictures)."""
    from PIL import Image

    if scale > 1:
        rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def png_data_url(rgb: np.ndarray, compress_level: int = 6) -> str:
    """[H, W, 3] uint8 -> "data:image/png;base64,...", for an <img> or a plotly layout image."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb, compress_level=compress_level)).decode("ascii")
