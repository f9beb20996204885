"""Digests of what retokviz computes and draws on one fixed input, for the golden test (tests/test_golden.py).

    python tests/golden/make_golden.py            # rewrite tests/golden/digests.json

Run it only when a change to what is computed or drawn is intended, and say which in the commit. The test recomputes
everything with the same function (`record`) and names the keys that differ.

The attention views are kept as pictures (attention_views.npz), not digests, and compared within a tolerance: they
draw the class attention of a side computation whose last bits differ between CPUs and thread counts (its float
sums run in another order; for ToMe it decides nothing, so the logits and traces stay bit-identical), and one
patch's heat can then land a level apart. Everything else is compared by exact digest.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch

import retokviz as rv

OUT = Path(__file__).with_name("digests.json")
PICTURES = OUT.with_name("attention_views.npz")
METHODS = {
    "evit": lambda: rv.EViT(keep_rate=0.7),
    "evit-nofuse": lambda: rv.EViT(keep_rate=0.5, fuse=False),
    "imagepiece": lambda: rv.ImagePiece(keep_rate=0.7),
    "tome": lambda: rv.ToMe(r=8),
    "imagepiece+tome": lambda: (rv.ImagePiece(keep_rate=0.7), rv.ToMe(r=4)),
}


def _digest(value) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous().numpy()
    if isinstance(value, np.ndarray):
        return hashlib.sha256(str((value.dtype, value.shape)).encode() + np.ascontiguousarray(value).tobytes()).hexdigest()[:16]
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _pixels(figure) -> np.ndarray:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="rgba", dpi=50)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def record() -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Every digest on the fixed input (4 generated test images, seed 7, the bundled showcase baseline), and the
    attention views as [H, W, 3] uint8 pictures (see the module)."""
    from retokviz.views import extract, static, view_image

    torch.set_num_threads(1)
    model = rv.load_checkpoint(rv.bundled.name("none"))
    images, _, masks = rv.data.make_clutter(4, seed=7, image_size=model.patch_embed.img_size[0])
    out: dict[str, str] = {}
    pictures: dict[str, np.ndarray] = {}
    with torch.no_grad():
        out["untouched/logits"] = _digest(model(images))
        for key, make in METHODS.items():
            method = make()
            rv.apply(model, method)
            with rv.record(model) as trace:
                logits = model(images)
            out[f"{key}/logits"] = _digest(logits)
            out[f"{key}/macs"] = _digest(rv.count_macs(model))
            out[f"{key}/tokens"] = _digest([layer.num_tokens for layer in trace.layers])
            for i, layer in enumerate(trace.layers):
                out[f"{key}/block{i}/owner"] = _digest(layer.owner)
                out[f"{key}/block{i}/status"] = _digest(layer.status)
            arrays = extract(trace, rv.data.denormalize(images[:1])[0].permute(1, 2, 0), mask=masks[0])
            for view in ("status", "pieces", "attention", "removed"):
                for block in (0, len(trace.layers) - 1):
                    image = view_image(arrays, view, block=block)
                    if view == "attention":
                        pictures[f"{key}/view/{view}/{block}"] = image
                    else:
                        out[f"{key}/view/{view}/{block}"] = _digest(image)
            out[f"{key}/figure/status"] = _digest(_pixels(static.plot_status(arrays)))
            out[f"{key}/figure/removed"] = _digest(_pixels(static.plot_removed(arrays)))
            rv.remove(model)
    out["untouched-after-remove/logits"] = _digest(model(images))
    return out, pictures


if __name__ == "__main__":
    found, drawn = record()
    OUT.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    np.savez_compressed(PICTURES, **drawn)
    print(f"wrote {OUT} and {PICTURES}", file=sys.stderr)
