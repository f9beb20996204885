"""timm ViTs with real weights, found quickly or not at all: a weights file, the local cache, or the network.

    model, source = load_pretrained("deit_small_patch16_224")                  # cache, else the hub if reachable
    model, source = load_pretrained("deit_small_patch16_224", weights="deit_s.safetensors")   # a file of your own

Where no weights can be had, `WeightsUnavailable` says so in one line within about `probe_timeout` seconds,
instead of timm's `pretrained=True`, which retries an unreachable hub for about a minute.
"""
from __future__ import annotations

import os
import threading
import urllib.request
from pathlib import Path
from typing import Any

import timm
from torch import nn

# Where a reachability probe knocks before any download is tried.
HUB_URL = "https://huggingface.co"
PROBE_TIMEOUT = 2.0
# The files timm reads from a hub repository, in the order it tries them.
HUB_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


class WeightsUnavailable(RuntimeError):
    """No pretrained weights for the model here (none cached, no file given, the network unreachable)."""


def cached_weights(name: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The local file holding `name`'s pretrained weights, if the Hugging Face cache (or torch hub's, for timm
    configurations that download from a URL) already has it; else None. Never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    config = timm.models.get_pretrained_cfg(name)
    if config is None:
        return None
    if config.hf_hub_id:
        files = (config.hf_hub_filename,) if config.hf_hub_filename else HUB_FILES
        for filename in files:
            found = try_to_load_from_cache(config.hf_hub_id, filename, cache_dir=cache_dir)
            if isinstance(found, str):
                return Path(found)
    if config.url:
        from timm.models._hub import get_cache_dir

        candidate = Path(get_cache_dir()) / Path(config.url).name
        if candidate.is_file():
            return candidate
    return None


def hub_reachable(url: str | None = None, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the hub answers a HEAD request with success within `timeout` seconds, name lookup included (the
    probe runs in a thread that is abandoned when the time is up). An HTTP request, not a bare TCP connection:
    proxies and sandboxes accept connections to anywhere. False where HF_HUB_OFFLINE is set."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    request = urllib.request.Request(url or HUB_URL, method="HEAD")
    result: list[bool] = []

    def knock() -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                result.append(200 <= response.status < 400)
        except (OSError, ValueError):   # URLError, HTTPError and timeouts are OSErrors
            result.append(False)

    thread = threading.Thread(target=knock, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def load_pretrained(
    name: str,
    weights: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    probe_timeout: float = PROBE_TIMEOUT,
    **kwargs: Any,
) -> tuple[nn.Module, str]:
    """A timm model with pretrained weights, in eval mode.

    Args:
        name: a timm model name, e.g. "deit_small_patch16_224" (a tag such as ".fb_in1k" is allowed).
        weights: a weights file (safetensors, or a torch state dict), loaded through timm's checkpoint filter
            (`pretrained_cfg_overlay=dict(file=...)`), so foreign layouts and other image sizes are adapted.
        cache_dir: the Hugging Face cache to look in (default: its usual place).
        probe_timeout: seconds to wait for the hub before giving up.
        **kwargs: passed to `timm.create_model` (num_classes, img_size, ...).

    Returns:
        (model, where its weights came from: "file ...", "cache ..." or "hub ...").

    Raises:
        WeightsUnavailable: no file given, nothing cached and the hub unreachable, or the download failed; the
            message is one line.
        FileNotFoundError: `weights` names no file.
        RuntimeError: timm does not know `name`.
    """
    if not timm.is_model(name.split(".")[0]):
        raise RuntimeError(f"timm has no model named {name!r}")
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"no weights file at {path}")
        return _create(name, path, kwargs), f"file {path}"
    cached = cached_weights(name, cache_dir)
    if cached is not None:
        return _create(name, cached, kwargs), f"cache {cached}"
    config = timm.models.get_pretrained_cfg(name)
    if config is None or not (config.hf_hub_id or config.url):
        raise WeightsUnavailable(f"{name}: timm knows no pretrained weights for it")
    if not hub_reachable(timeout=probe_timeout):
        raise WeightsUnavailable(f"{name}: no pretrained weights here (none in the local cache, and "
                                 f"{HUB_URL} is unreachable)")
    try:
        model = timm.create_model(name, pretrained=True, **kwargs)
    except Exception as error:   # any download failure: the hub answered but the weights did not come
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WeightsUnavailable(f"{name}: downloading its weights failed ({first})") from error
    return model.eval(), f"hub {config.hf_hub_id or config.url}"


def _create(name: str, path: Path, kwargs: dict[str, Any]) -> nn.Module:
    """timm's pretrained loading from one local file; the classifier is kept when num_classes is given."""
    overlay = {"file": str(path)}
    if "num_classes" in kwargs:   # else timm drops a classifier whose class count differs from its config's
        overlay["num_classes"] = kwargs["num_classes"]
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs).eval()
