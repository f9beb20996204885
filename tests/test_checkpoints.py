"""Bundled checkpoints: export -> list -> load round-trips exactly; bad files and names fail clearly."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import images_for, tiny_vit

import retokviz as rv
from retokviz._util.files import STALE_SECONDS, write_atomically
from retokviz.models.checkpoints import (DATA_DIR, CheckpointError, checkpoints, export_checkpoint, load_checkpoint,
                                         resolve_checkpoint)
from retokviz.methods import registry
from retokviz.models.stem import has_coherence_stem, use_coherence_stem

RECIPE = {"command": "python -m retokviz.training --epochs 1", "seed": 0, "device": "cpu", "seconds": 1.5,
          "test_acc": 0.875}


def assert_same_model(loaded: torch.nn.Module, original: torch.nn.Module) -> None:
    original.eval()
    state = original.state_dict()
    assert loaded.state_dict().keys() == state.keys()
    assert all(torch.equal(value, state[key]) for key, value in loaded.state_dict().items())
    images = images_for(original, batch=3)
    with torch.no_grad():
        assert torch.equal(loaded(images), original(images))


def test_export_then_load_round_trips_exactly(tmp_path):
    model = rv.apply(tiny_vit(), rv.EViT(keep_rate=0.5, layers=(1, 2), fuse=False))
    info = export_checkpoint(model, tmp_path / "evit.safetensors", recipe=RECIPE)
    assert info.name == "evit" and info.size_bytes == (tmp_path / "evit.safetensors").stat().st_size

    for reference in ("evit", tmp_path / "evit.safetensors"):
        loaded = load_checkpoint(reference, directory=tmp_path)
        assert not loaded.training
        assert rv.method_of(loaded) == rv.EViT(keep_rate=0.5, layers=(1, 2), fuse=False)
        assert_same_model(loaded, model)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["evit.safetensors"]   # no temp file left


@pytest.mark.parametrize("method", [
    rv.EViT(keep_rate=0.7), rv.ImagePiece(keep_rate=0.5, layers=(0, 2)), rv.ToMe(r=3)], ids=repr)
def test_every_method_is_restored_equal(tmp_path, method):
    model = rv.apply(tiny_vit(), method)
    export_checkpoint(model, tmp_path / "m.safetensors", recipe=RECIPE)
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert rv.method_of(loaded) == method
    assert_same_model(loaded, model)


def test_round_trip_without_method_and_with_coherence_stem(tmp_path):
    model = use_coherence_stem(tiny_vit(depth=2))
    model.train()(images_for(model, batch=4))          # move the stem's batch-norm statistics off their defaults
    export_checkpoint(model, tmp_path / "stem.safetensors", recipe=RECIPE)
    loaded = load_checkpoint(tmp_path / "stem.safetensors")
    assert has_coherence_stem(loaded) and rv.method_of(loaded) is None
    assert_same_model(loaded, model)


def test_checkpoints_lists_the_metadata(tmp_path):
    export_checkpoint(rv.apply(tiny_vit(), rv.EViT(keep_rate=0.7)), tmp_path / "b_evit.safetensors", recipe=RECIPE)
    export_checkpoint(tiny_vit(depth=2), tmp_path / "a_plain.safetensors", recipe={"seed": 1})
    plain, evit = checkpoints(tmp_path)
    assert (plain.name, evit.name) == ("a_plain", "b_evit")
    assert evit.model == "deit_small_patch16_224" and not evit.coherence_stem
    assert evit.model_kwargs == {"num_classes": 10, "img_size": 64, "patch_size": 16, "embed_dim": 48, "depth": 4,
                                 "num_heads": 3}
    assert evit.method == {"name": "EViT", "keep_rate": 0.7, "layers": None, "fuse": True}
    assert evit.accuracy == 0.875 and evit.recipe == RECIPE
    assert plain.method is None and plain.accuracy is None and plain.model_kwargs["depth"] == 2
    assert evit.size_bytes == evit.path.stat().st_size


def test_the_default_directory_is_the_repositorys_data_folder():
    assert DATA_DIR == Path(rv.__file__).parents[1] / "data"
    assert [info.path.parent for info in checkpoints()] == [DATA_DIR] * len(checkpoints())
    with pytest.raises(FileNotFoundError, match=f"no checkpoint named 'no_such_model' in {DATA_DIR}"):
        resolve_checkpoint("no_such_model")


def test_unknown_name_lists_the_available_ones(tmp_path):
    for name in ("vit_b", "vit_a"):
        export_checkpoint(tiny_vit(depth=2), tmp_path / f"{name}.safetensors", recipe=RECIPE)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint named 'vit_c' in .*; available: vit_a, vit_b$"):
        load_checkpoint("vit_c", directory=tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"no checkpoint named 'vit_a': there is no checkpoint folder "
                                                rf"{tmp_path / 'empty'}"):
        load_checkpoint("vit_a", directory=tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="available: none"):
        load_checkpoint("vit_a", directory=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        load_checkpoint(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_truncated_or_corrupt_file_says_so_and_names_itself(tmp_path, damage):
    path = tmp_path / "bad.safetensors"
    export_checkpoint(tiny_vit(depth=2), path, recipe=RECIPE)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else bytes(range(256)) * 8)
    for read in (lambda: load_checkpoint(path), lambda: checkpoints(tmp_path)):
        with pytest.raises(CheckpointError, match=rf"{path} is corrupt or truncated"):
            read()


def test_a_file_without_retokviz_metadata_says_so(tmp_path):
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file(tiny_vit(depth=2).state_dict(), path)
    with pytest.raises(CheckpointError, match="foreign.safetensors has no retokviz metadata"):
        load_checkpoint(path)
    safetensors.torch.save_file({"x": torch.zeros(1)}, path, metadata={"retokviz": json.dumps({"format": 1})})
    with pytest.raises(CheckpointError, match="names no model"):
        checkpoints(tmp_path)


def test_an_unknown_method_in_the_metadata_is_refused_without_running_anything(tmp_path):
    path = tmp_path / "odd.safetensors"
    export_checkpoint(rv.apply(tiny_vit(depth=2), rv.EViT(keep_rate=0.7)), path, recipe=RECIPE)
    tensors = safetensors.torch.load_file(path)
    for name in ("__import__", "Method", "Status"):
        metadata = {"format": 1, "model": {"name": "deit_small_patch16_224", "kwargs": {
            "num_classes": 10, "img_size": 64, "patch_size": 16, "embed_dim": 48, "depth": 2, "num_heads": 3}},
            "method": {"name": name}}
        safetensors.torch.save_file(tensors, path, metadata={"retokviz": json.dumps(metadata)})
        with pytest.raises(CheckpointError, match=rf"odd.safetensors: .*unknown method '{name}'; the methods are "
                                                  r"evit, imagepiece, tome"):
            load_checkpoint(path)


def header_with(path: Path, **changes) -> None:
    """Rewrite the retokviz metadata of the checkpoint at `path` with `changes` (None removes an entry)."""
    with safetensors.safe_open(path, framework="pt") as file:
        header = json.loads(file.metadata()["retokviz"])
    tensors = safetensors.torch.load_file(path)
    header.update(changes)
    header = {key: value for key, value in header.items() if value is not None}
    safetensors.torch.save_file(tensors, path, metadata={"retokviz": json.dumps(header)})


def test_listing_a_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"no checkpoint folder at {tmp_path / 'missing'}"):
        checkpoints(tmp_path / "missing")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(NotADirectoryError, match=r"no checkpoint folder at .*a_file \(it is a file\)"):
        checkpoints(tmp_path / "a_file")


def test_a_folder_named_like_a_checkpoint_is_not_one(tmp_path):
    (tmp_path / "x.safetensors").mkdir()
    export_checkpoint(tiny_vit(depth=2), tmp_path / "real.safetensors", recipe=RECIPE)
    assert [info.name for info in checkpoints(tmp_path)] == ["real"]
    with pytest.raises(FileNotFoundError, match=r"no checkpoint named 'x' in .*; available: real$"):
        load_checkpoint("x", directory=tmp_path)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_an_unknown_format_version_is_refused_naming_the_file_and_the_versions_read(tmp_path, version):
    path = tmp_path / "future.safetensors"
    export_checkpoint(tiny_vit(depth=2), path, recipe=RECIPE)
    header_with(path, format=version)
    message = rf"{path} has retokviz metadata of format {version!r}; this retokviz reads format 1"
    for read in (lambda: load_checkpoint(path), lambda: checkpoints(tmp_path)):
        with pytest.raises(CheckpointError, match=message):
            read()


@pytest.mark.parametrize("change, message", [
    (dict(model={"name": "vit_no_such_model", "kwargs": {}}),
     r"describes a model that can't be built, timm.create_model\('vit_no_such_model', \*\*\{\}\): Unknown model"),
    (dict(model={"name": "deit_small_patch16_224", "kwargs": {"depth": "two"}}), "can't be built"),
    (dict(method={"name": "EViT", "keep_rate": 0.7, "layers": [7]}),
     r"its method doesn't fit its model: EViT.layers=\(7,\) has block 7, outside this model's blocks 0..1"),
    (dict(method={"name": "EViT", "keep_rate": 1.5}), r"no valid method: .*EViT.keep_rate must be in"),
    (dict(method={"name": "EViT", "speed": 2}), r"no valid method: .*doesn't fit EViT"),
    (dict(method="EViT"), r"no valid method: a method is described as"),
])
def test_metadata_that_does_not_build_names_the_file_and_the_problem(tmp_path, change, message):
    path = tmp_path / "odd.safetensors"
    export_checkpoint(tiny_vit(depth=2), path, recipe=RECIPE)
    header_with(path, **change)
    with pytest.raises(CheckpointError, match=rf"{path}: .*{message}"):
        load_checkpoint(path)


@dataclass(frozen=True)
class RegisteredEViT(rv.EViT):
    """A method known to the registry but not to the retokviz namespace."""


def test_methods_are_looked_up_in_the_registry(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "_LABELS", dict(registry._LABELS))
    registry.register(RegisteredEViT)
    model = rv.apply(tiny_vit(depth=2), RegisteredEViT(keep_rate=0.5))
    export_checkpoint(model, tmp_path / "registered.safetensors", recipe=RECIPE)
    assert rv.method_of(load_checkpoint(tmp_path / "registered.safetensors")) == RegisteredEViT(keep_rate=0.5)


def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_write_removes_the_temporary_files_killed_writes_left(tmp_path):
    # A writer of our own that runs while we write: its parent process would do, unless the tests were started
    # from a shell that has exited since (then the parent is pid 1, the "old" file's owner below).
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        path = tmp_path / "m.safetensors"
        dead = tmp_path / f".m.safetensors.{dead_pid()}.tmp"
        running = tmp_path / f".m.safetensors.{writer.pid}.tmp"              # a process that runs: a write in progress
        old = tmp_path / ".m.safetensors.1.tmp"                               # pid 1 runs, but the file is old
        other = tmp_path / f".other.safetensors.{dead_pid()}.tmp"            # another file's: left to its next write
        for temporary in (dead, running, old, other):
            temporary.write_bytes(b"half a file")
        os.utime(old, (0, 0))                                                 # older than STALE_SECONDS
        assert STALE_SECONDS <= 24 * 3600
        write_atomically(path, lambda file: file.write(b"whole"))
        assert path.read_bytes() == b"whole"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, running.name, other.name])
    finally:
        writer.kill()
        writer.wait()


def test_git_ignores_the_temporary_files_of_atomic_writes():
    root = Path(rv.__file__).parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for name in ("data/.vit_tiny.safetensors.1234.tmp", "runs/evit/.last.pt.99.tmp", ".metrics.jsonl.5.tmp"):
        run = subprocess.run(["git", "-C", str(root), "check-ignore", "--no-index", "-q", name])
        assert run.returncode == 0, f"{name} is not ignored"
    run = subprocess.run(["git", "-C", str(root), "check-ignore", "--no-index", "-q", "data/vit_tiny.safetensors"])
    assert run.returncode == 1


def test_export_enforces_the_size_limit_and_writes_nothing_above_it(tmp_path):
    path = tmp_path / "big.safetensors"
    with pytest.raises(ValueError, match=r"big.safetensors would be [\d,]+ bytes, over the limit of 100,000 bytes"):
        export_checkpoint(tiny_vit(), path, recipe=RECIPE, max_bytes=100_000)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert export_checkpoint(tiny_vit(), path, recipe=RECIPE).size_bytes <= 12_000_000


def test_export_refuses_kwargs_that_would_not_rebuild_the_model(tmp_path):
    model = tiny_vit("qk_norm")                  # qk_norm=True is not among the inferred kwargs
    with pytest.raises(ValueError, match=r"doesn't rebuild this model .*q_norm"):
        export_checkpoint(model, tmp_path / "qk.safetensors", recipe=RECIPE)
    kwargs = {"num_classes": 10, "img_size": 64, "embed_dim": 48, "depth": 4, "num_heads": 3, "qk_norm": True}
    export_checkpoint(model, tmp_path / "qk.safetensors", recipe=RECIPE, model_kwargs=kwargs)
    assert_same_model(load_checkpoint(tmp_path / "qk.safetensors"), model)


def test_a_loaded_checkpoint_names_the_normalisation_it_was_trained_with():
    """Trained on ImageNet-normalised images, whatever the timm config it is built from says (vit_tiny's: 0.5), so
    rv.images.prepare makes of a picture what rv.data.normalize makes of it."""
    import numpy as np
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from retokviz.images import prepare

    model = rv.load_checkpoint("small-baseline")
    assert tuple(model.pretrained_cfg["mean"]) == IMAGENET_DEFAULT_MEAN
    assert tuple(model.pretrained_cfg["std"]) == IMAGENET_DEFAULT_STD
    picture = np.random.default_rng(0).random((128, 128, 3)).astype(np.float32)
    tensor, _ = prepare((picture * 255).round().astype(np.uint8), model)
    expected = rv.data.normalize(torch.from_numpy((picture * 255).round() / 255).permute(2, 0, 1).float())
    assert torch.allclose(tensor[0], expected, atol=1e-5)


def data_offset(path: Path) -> int:
    """Where a safetensors file's tensor bytes begin: after the 8-byte header length and the JSON header."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


@pytest.mark.parametrize("position", [0, 0.5, -1])
def test_a_flipped_bit_in_the_weights_is_refused_naming_the_file(tmp_path, position):
    path = tmp_path / "flipped.safetensors"
    export_checkpoint(rv.apply(tiny_vit(depth=2), rv.EViT(keep_rate=0.7)), path, recipe=RECIPE)
    load_checkpoint(path)   # whole, it loads
    data = bytearray(path.read_bytes())
    start = data_offset(path)
    index = {0: start, 0.5: (start + len(data)) // 2, -1: len(data) - 1}[position]
    data[index] ^= 0x01
    path.write_bytes(bytes(data))
    for read in (lambda: load_checkpoint(path), lambda: rv.models.checkpoints.checkpoint_weights(path)):
        with pytest.raises(CheckpointError, match=rf"{path}: its weights changed after export"):
            read()
    assert checkpoints(tmp_path)[0].accuracy == RECIPE["test_acc"]   # the header alone still lists


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, value):
    model = tiny_vit(depth=2)
    path = tmp_path / "nan.safetensors"
    with torch.no_grad():
        model.blocks[1].mlp.fc1.weight[3, 5] = value
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.fc1\.weight holds NaN or infinite"):
        export_checkpoint(model, path, recipe=RECIPE)
    assert not path.exists()
    # A file with such weights and a digest that matches them (written by hand, or by an older exporter)
    export_checkpoint(tiny_vit(depth=2), path, recipe=RECIPE)
    with safetensors.safe_open(path, framework="pt") as file:
        header = json.loads(file.metadata()["retokviz"])
    tensors = safetensors.torch.load_file(path)
    tensors["blocks.1.mlp.fc1.weight"][3, 5] = value
    header["weights_sha256"] = rv.models.checkpoints.weights_digest(tensors)
    safetensors.torch.save_file(tensors, path, metadata={"retokviz": json.dumps(header)})
    for read in (lambda: load_checkpoint(path), lambda: rv.models.checkpoints.checkpoint_weights(path)):
        with pytest.raises(CheckpointError, match=rf"{path}: its weight blocks\.1\.mlp\.fc1\.weight holds NaN"):
            read()


def test_a_checkpoint_without_a_digest_still_loads_unchecked(tmp_path):
    path = tmp_path / "legacy.safetensors"
    model = rv.apply(tiny_vit(depth=2), rv.ToMe(r=2))
    export_checkpoint(model, path, recipe=RECIPE)
    header_with(path, weights_sha256=None)   # as written before the digest existed
    with safetensors.safe_open(path, framework="pt") as file:
        assert "weights_sha256" not in json.loads(file.metadata()["retokviz"])
    assert_same_model(load_checkpoint(path), model)
    digested = []
    for info in checkpoints():   # the bundled files: those exported before digests have none and load unchanged
        with safetensors.safe_open(info.path, framework="pt") as file:
            digested.append("weights_sha256" in json.loads(file.metadata()["retokviz"]))
        assert rv.method_of(load_checkpoint(info.name)) is not None or info.method is None
    names = [info.name for info in checkpoints()]
    assert [name for name, has in zip(names, digested) if has] == ["showcase-dynamicvit-0.7"]   # the newest only
