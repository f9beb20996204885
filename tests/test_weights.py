"""Loading timm ViTs with real weights: from a file, from the cache, or a quick one-line no."""
from __future__ import annotations

import socket
import time

import pytest
import safetensors.torch
import timm
import torch

from retokviz.models import weights

TINY = dict(depth=2, embed_dim=48, num_heads=3, img_size=32, num_classes=10)


@pytest.fixture
def saved_model():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    one, two = a.state_dict(), b.state_dict()
    return one.keys() == two.keys() and all(torch.equal(one[key], two[key]) for key in one)


@pytest.mark.parametrize("suffix", ["pth", "safetensors"])
def test_a_weights_file_is_loaded_through_timm_head_included(tmp_path, saved_model, suffix):
    path = tmp_path / f"mine.{suffix}"
    if suffix == "pth":
        torch.save(saved_model.state_dict(), path)
    else:
        safetensors.torch.save_file(saved_model.state_dict(), path)
    model, source = weights.load_pretrained("vit_tiny_patch16_224", path, **TINY)
    assert same_weights(model, saved_model) and source == f"file {path}" and not model.training


def test_the_cache_is_read_without_the_network(tmp_path, saved_model, monkeypatch):
    """A Hugging Face cache laid out as the hub client leaves it: refs/main names the snapshot."""
    config = timm.models.get_pretrained_cfg("vit_tiny_patch16_224")
    repo = tmp_path / ("models--" + config.hf_hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    safetensors.torch.save_file(saved_model.state_dict(), repo / "snapshots" / "0123abcd" / "model.safetensors")
    monkeypatch.setattr(weights, "hub_reachable", lambda *a, **k: pytest.fail("the cache needs no network"))
    model, source = weights.load_pretrained("vit_tiny_patch16_224", cache_dir=tmp_path, **TINY)
    assert same_weights(model, saved_model) and source.startswith("cache ")


@pytest.fixture
def silent_hub(monkeypatch):
    """A 'hub' that accepts connections and never answers: the worst case, a network that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    monkeypatch.setattr(weights, "HUB_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield
    server.close()


def test_no_weights_are_said_in_one_line_within_seconds(tmp_path, silent_hub):
    start = time.monotonic()
    with pytest.raises(weights.WeightsUnavailable) as caught:
        weights.load_pretrained("deit_small_patch16_224", cache_dir=tmp_path)
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert "\n" not in message and "deit_small_patch16_224" in message and "unreachable" in message


def test_the_explorer_falls_back_to_the_bundled_models_quickly(tmp_path, silent_hub, monkeypatch, capsys):
    pytest.importorskip("ipywidgets")
    from retokviz.explorer import explore

    monkeypatch.setattr(weights, "cached_weights", lambda *a, **k: None)
    start = time.monotonic()
    ex = explore("deit_small_patch16_224", num_images=1)
    assert time.monotonic() - start < 10
    assert "showcase-evit-0.7" in [value for _, value in ex.checkpoint.options]
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "no pretrained weights" in line and "bundled" in line
    assert "no pretrained weights" in ex.message.value


def test_offline_mode_never_probes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: pytest.fail("probed"))
    assert weights.hub_reachable() is False


def test_bad_names_and_files_are_refused(tmp_path):
    with pytest.raises(RuntimeError, match="no model named"):
        weights.load_pretrained("not_a_model_at_all")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        weights.load_pretrained("vit_tiny_patch16_224", tmp_path / "missing.safetensors")


def test_the_explorer_shows_a_timm_model_with_weights_from_a_file(tmp_path):
    """timm's own small test ViT (160 px, 6 blocks, 1000 classes) with weights this test wrote."""
    pytest.importorskip("ipywidgets")
    from retokviz.explorer import explore

    torch.manual_seed(0)
    original = timm.create_model("test_vit", pretrained=False)
    path = tmp_path / "test_vit.safetensors"
    safetensors.torch.save_file(original.state_dict(), path)
    ex = explore("test_vit", weights=path)
    offered = [value for _, value in ex.checkpoint.options]
    assert offered == ["test_vit", "deit_small_patch16_224"] and same_weights(ex.model, original)   # and a real one
    assert [name for name, _ in ex.image.options][0] == "0: astronaut"       # the bundled photographs
    assert ex.run.arrays.picture.shape == (160, 160, 3)
    assert ex.session.label("test_vit", 207) == "golden retriever"         # ImageNet's class names
