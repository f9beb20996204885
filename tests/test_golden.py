"""Nothing computed or drawn changes unless meant to: digests of the logits, traces, token counts, MACs, raster
views and figures on one fixed input (4 generated images, the bundled showcase baseline, five methods), against
those recorded by tests/golden/make_golden.py, and its attention views as pictures, within a tolerance (the script
says why). When a change is intended, rerun that script and say so in the commit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "golden"
# An attention view may differ from the recorded one by this much: a patch's heat a level or two apart where the
# class attention's last bits differ (CPU, threads); a change in how the view is drawn moves far more.
MOST_LEVELS, MOST_PIXELS = 4, 0.01


def test_every_trace_view_and_figure_is_as_recorded():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = json.loads((GOLDEN / "digests.json").read_text())
    actual, pictures = module.record()
    assert set(actual) == set(expected)
    changed = sorted(key for key in expected if actual[key] != expected[key])
    assert not changed, f"{len(changed)} of {len(expected)} digests changed: {changed[:20]}"
    with np.load(GOLDEN / "attention_views.npz") as recorded:
        assert set(pictures) == set(recorded.files) and len(pictures) == 10
        for key, picture in pictures.items():
            before = recorded[key]
            assert picture.shape == before.shape and picture.dtype == before.dtype == np.uint8, key
            moved = np.abs(picture.astype(np.int16) - before.astype(np.int16)).max(axis=-1)
            assert moved.max() <= MOST_LEVELS and (moved > 0).mean() <= MOST_PIXELS, \
                (key, int(moved.max()), float((moved > 0).mean()))
