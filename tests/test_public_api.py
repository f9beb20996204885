"""Every public name keeps working across the reorganisation: `rv.*`, the modules users reach through it, the
command lines, and the names that changed (with a deprecation, not an error)."""
from __future__ import annotations

import importlib
import subprocess
import sys
import types
import warnings

import pytest

import retokviz as rv

# The public names of retokviz before the package was laid out by stages (its __all__ then), what each is, and the
# names added since.
PUBLIC = {
    "analysis": types.ModuleType, "intervals": types.ModuleType, "data": types.ModuleType,
    "metrics": types.ModuleType, "notebook": types.ModuleType, "robustness": types.ModuleType,
    "weights": types.ModuleType, "bundled": types.ModuleType, "CheckpointError": type, "CheckpointInfo": type,
    "TrainConfig": type, "TrainResult": type, "checkpoints": "function", "export_checkpoint": "function",
    "load_checkpoint": "function", "train": "function", "CoherenceStem": type, "EViT": type, "ImagePiece": type,
    "LayerRecord": type, "Method": type, "Status": type, "ToMe": type, "Trace": type,
    "UnsupportedModelError": type, "applied": "function", "apply": "function", "method_at": "function",
    "method_names": "function", "count_macs": "function", "SweepConfig": type, "sweep": "callable module",
    "explore": "function", "compare": "function", "method_of": "function", "record": "function", "remove": "function",
    "use_coherence_stem": "function", "compile_for_inference": "function",
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_a_public_name_is_there_and_of_its_kind(name):
    value = getattr(rv, name)
    kind = PUBLIC[name]
    if kind == "function":
        assert callable(value) and not isinstance(value, type)
    elif kind == "callable module":
        assert isinstance(value, types.ModuleType) and callable(value)
    else:
        assert isinstance(value, kind), (name, value)
    assert name in rv.__all__


def test_the_module_functions_users_call_through_rv_are_there():
    for dotted in ("data.make_clutter", "data.patch_mask", "data.sample_photo", "data.image_folder", "data.normalize",
                   "data.denormalize", "data.ClutterDataset", "data.CLASSES", "metrics.accuracy",
                   "metrics.background_removed", "metrics.let_go_counts", "analysis.let_go_by_reason",
                   "robustness.background_by_keep_rate", "intervals.bootstrap", "weights.load_pretrained",
                   "bundled.name", "bundled.sweep_table", "notebook.setup", "sweep.read_table", "training.train"):
        value = rv
        for part in dotted.split("."):
            value = getattr(value, part)
        assert value is not None, dotted


def test_no_package_hides_a_function_of_the_same_name():
    sweep = importlib.import_module("retokviz.sweep")
    assert rv.sweep is sweep and sys.modules["retokviz.sweep"] is sweep   # one object: the package, callable
    assert rv.training is importlib.import_module("retokviz.training") and rv.train is rv.training.train
    code = "import retokviz.sweep as s, retokviz.training as t, types; assert isinstance(s, types.ModuleType)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_rv_sweep_called_runs_the_sweep_function(monkeypatch):
    seen = []
    monkeypatch.setattr(rv.sweep, "execute", lambda plan, **kw: seen.append(plan) or "done")
    monkeypatch.setattr(rv.sweep, "prepare", lambda config: config)
    assert rv.sweep(rv.SweepConfig(out="table.csv", checkpoints=("small-baseline",), quick=True)) == "done"
    assert isinstance(seen[0], rv.SweepConfig)


@pytest.mark.parametrize("module", ["retokviz.sweep", "retokviz.training"])
def test_each_command_line_answers_help(module):
    done = subprocess.run([sys.executable, "-W", "error", "-m", module, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and f"python -m {module}" in done.stdout, done.stderr


def test_the_explorers_former_layer_name_still_works_with_a_deprecation():
    from retokviz.explorer.widget import _renamed

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _renamed(None, 3) == 3
    assert any(issubclass(w.category, DeprecationWarning) and "block=" in str(w.message) for w in caught)
    assert _renamed(2, None) == 2
    with pytest.raises(ValueError, match="block=2 and its former name layer=3 disagree"):
        _renamed(2, 3)


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x", 3])
def test_a_device_nobody_has_is_refused_naming_the_accepted_ones(device):
    from retokviz._util.device import resolve_device

    with pytest.raises(ValueError, match=r"device must be auto, cpu, cuda, cuda:N or mps, got"):
        resolve_device(device)
    with pytest.raises(ValueError, match=r"device must be auto, cpu, cuda, cuda:N or mps"):
        rv.SweepConfig(out="table.csv", checkpoints=("small-baseline",), device=device)
