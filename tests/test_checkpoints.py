"""Bundled checkpoints: export -> list -> load round-trips exactly; bad files and names fail clearly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import images_for, tiny_vit

import retokviz as rv
from retokviz.checkpoints import (DATA_DIR, CheckpointError, checkpoints, export_checkpoint, load_checkpoint,
                                  resolve_checkpoint)
from retokviz.stem import has_coherence_stem, use_coherence_stem

RECIPE = {"command": "python -m retokviz.train --epochs 1", "seed": 0, "device": "cpu", "seconds": 1.5,
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
        with pytest.raises(CheckpointError, match=rf"unknown method '{name}'; this retokviz has .*EViT"):
            load_checkpoint(path)


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
