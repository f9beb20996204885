"""Nothing computed or drawn changes unless meant to: digests of the logits, traces, token counts, MACs, raster
views and figures on one fixed input (4 generated images, the bundled showcase baseline, five methods), against
those recorded by tests/golden/make_golden.py. When a change is intended, rerun that script and say so in the
commit."""
from __future__ import annotations

import json


from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def test_every_trace_view_and_figure_is_as_recorded():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = json.loads((GOLDEN / "digests.json").read_text())
    actual = module.digests()
    assert set(actual) == set(expected)
    changed = sorted(key for key in expected if actual[key] != expected[key])
    assert not changed, f"{len(changed)} of {len(expected)} digests changed: {changed[:20]}"
