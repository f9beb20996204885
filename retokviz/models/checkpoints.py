"""The project's own trained checkpoints: safetensors files that rebuild a reduced timm ViT without running code.

    rv.checkpoints()                          # what data/ holds: model, method, measured accuracy, recipe
    model = rv.load_checkpoint("vit_tiny_evit07_clutter")     # timm model, weights, method applied, eval mode
    rv.export_checkpoint(model, "data/mine.safetensors", recipe={"command": "...", "test_acc": 0.93})

A file holds the model's state dict (float32) and, in its header, one JSON entry (key "retokviz"):

    {"format": 1,
     "model": {"name": "vit_tiny_patch16_224", "kwargs": {"num_classes": 10, "img_size": 128, ...}},
     "coherence_stem": false,
     "method": {"name": "EViT", "keep_rate": 0.7, "layers": null, "fuse": true},     (or null)
     "recipe": {"command": "python -m retokviz.training ...", "seed": 0, "test_acc": 0.93, ...},
     "weights_sha256": "9f86d0..."}

Loading reads JSON and tensors only (no pickle, no eval): the model is built by `timm.create_model`, the method is
looked up by name in the method registry (`retokviz.methods.registry`). A header of a format this retokviz doesn't
read (`READABLE_FORMATS`) is refused. Whatever reads the tensors (`load_checkpoint`, `checkpoint_weights`) checks
them against the header's `weights_sha256` (`weights_digest`: names, dtypes, shapes and bytes), so weights changed
after export (a flipped bit, an edit) are refused rather than reported with the accuracy the header recorded for
others; NaN or infinite weights are refused too. Files exported before the digest existed (the bundled `data/`
files among them) have none: they load as before, unchecked. `checkpoints()` reads headers only and checks nothing
about the weights. Files are written atomically (`write_atomically`), so a killed export never
leaves half a file; bundled files stay under `MAX_BYTES` so that the repository stays small.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from retokviz._util.files import write_atomically
from retokviz.models.bundled import FORMER_NAMES
from retokviz.methods.registry import build_method, method_spec
from retokviz.patch import MODULES, apply, method_of

DATA_DIR = Path(__file__).parents[2] / "data"
METADATA_KEY = "retokviz"
FORMAT = 1                  # the header format written
READABLE_FORMATS = (1,)     # the header formats read
MAX_BYTES = 12_000_000
DIGEST_KEY = "weights_sha256"   # the header entry holding `weights_digest` of the tensors (absent in older files)


class CheckpointError(ValueError):
    """A checkpoint file exists but can't be used: corrupt, truncated, or without retokviz metadata."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint's header says about it (read without loading the weights).

    Attributes:
        name: the file name without `.safetensors`, what `load_checkpoint` takes.
        path: the file.
        model: the timm model name.
        model_kwargs: the keyword arguments of `timm.create_model` (num_classes, img_size, embed_dim, ...).
        coherence_stem: whether the patch embedding is ImagePiece's local-coherence stem.
        method: the reduction method as {"name": class name, field: value, ...}, a list of those for composed
            methods, or None.
        accuracy: the measured test accuracy (0..1) the recipe records, or None.
        recipe: how it was made (command, seed, device, seconds, test accuracy, ...).
        size_bytes: the file's size.
    """

    name: str
    path: Path
    model: str
    model_kwargs: dict[str, Any]
    coherence_stem: bool
    method: dict[str, Any] | list[dict[str, Any]] | None
    accuracy: float | None
    recipe: dict[str, Any]
    size_bytes: int


def infer_model_kwargs(model: nn.Module) -> dict[str, Any]:
    """The `timm.create_model` keyword arguments that a ViT's size depends on, read off the model."""
    rows, cols = model.patch_embed.img_size
    patch_rows, _ = model.patch_embed.patch_size
    return {
        "num_classes": model.num_classes,
        "img_size": rows if rows == cols else [rows, cols],
        "patch_size": patch_rows,
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_heads": model.blocks[0].attn.num_heads,
    }


def build_model(name: str, kwargs: dict[str, Any], coherence_stem: bool) -> nn.Module:
    """A freshly initialised timm model as a checkpoint describes it (no download: pretrained=False)."""
    model = timm.create_model(name, pretrained=False, **kwargs)
    if coherence_stem:
        from retokviz.models.stem import use_coherence_stem

        use_coherence_stem(model)
    return model


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """The SHA-256 hex digest of a checkpoint's tensors: each name, dtype, shape and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        described = json.dumps([name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape)]).encode()
        digest.update(len(described).to_bytes(8, "little") + described)
        data = tensor.reshape(-1).view(torch.uint8).numpy()
        digest.update(data.nbytes.to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first tensor (sorted) holding a NaN or an infinity, or None."""
    return next((name for name in sorted(tensors) if tensors[name].is_floating_point()
                 and not bool(torch.isfinite(tensors[name]).all())), None)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def export_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    recipe: dict[str, Any],
    model_name: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    max_bytes: int = MAX_BYTES,
) -> CheckpointInfo:
    """Write `model` (weights, architecture, coherence stem, applied method) and `recipe` as one safetensors file.

    Args:
        model: a timm ViT, possibly with a retokviz method applied and a coherence stem.
        path: the file to write, e.g. `DATA_DIR / "vit_tiny_evit07_clutter.safetensors"`.
        recipe: how the model was made, JSON-able: the exact command, seed, device, seconds, and `test_acc`
            (the measured test accuracy, 0..1), which `checkpoints()` reports as `accuracy`.
        model_name: the timm name; None reads it from `model.pretrained_cfg["architecture"]`.
        model_kwargs: the `timm.create_model` kwargs; None infers num_classes, img_size, patch_size,
            embed_dim, depth and num_heads from the model.
        max_bytes: the largest file allowed; nothing is written above it.

    Returns:
        the written file's CheckpointInfo.

    Raises:
        ValueError: the name is unknown, the kwargs don't rebuild this model, a weight holds NaN or infinity, or the
            file would exceed max_bytes.
    """
    from retokviz.models.stem import has_coherence_stem

    path = Path(path)
    name = model_name or (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not name:
        raise ValueError(f"{type(model).__name__} carries no timm model name; pass model_name=")
    kwargs = infer_model_kwargs(model) if model_kwargs is None else dict(model_kwargs)
    stem = has_coherence_stem(model)
    with torch.device("meta"):  # shapes only: no memory, no initialisation, the RNG untouched
        rebuilt = _shapes(build_model(name, kwargs, stem))
    # a learned method's modules (model.retokviz_modules) come back when the method is applied on loading
    own = {key: shape for key, shape in _shapes(model).items() if not key.startswith(MODULES + ".")}
    if rebuilt != own:
        differ = sorted(set(rebuilt.items()) ^ set(own.items()))[:4]
        raise ValueError(f"timm.create_model({name!r}, **{kwargs}) doesn't rebuild this model (parameters that "
                         f"differ, name and shape: {differ}); pass the model's own model_kwargs=")
    header = {"format": FORMAT, "model": {"name": name, "kwargs": kwargs}, "coherence_stem": stem,
              "method": method_spec(method_of(model)), "recipe": recipe}
    tensors = {key: (value.float() if value.is_floating_point() else value).detach().cpu().contiguous()
               for key, value in model.state_dict().items()}
    bad = _non_finite(tensors)
    if bad is not None:
        raise ValueError(f"{bad} holds NaN or infinite values; a checkpoint of such weights could not be loaded, "
                         f"so {path.name} is not written")
    header[DIGEST_KEY] = weights_digest(tensors)
    data = safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(header)})
    if len(data) > max_bytes:
        raise ValueError(f"{path.name} would be {len(data):,} bytes, over the limit of {max_bytes:,} bytes "
                         f"(max_bytes); use a smaller model (depth, embed_dim) for a bundled checkpoint")
    write_atomically(path, lambda file: file.write(data))
    return _info(path, header)


def _read(path: Path, with_tensors: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A checkpoint's header entry and (if asked) its tensors, with errors that name the file."""
    try:
        with safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()} if with_tensors else {}
    except SafetensorError as error:
        raise CheckpointError(f"{path} is corrupt or truncated, not a complete safetensors file ({error}); "
                              "restore or re-export it") from error
    text = metadata.get(METADATA_KEY)
    if text is None:
        raise CheckpointError(f"{path} has no retokviz metadata (no {METADATA_KEY!r} entry in its header), so "
                              "the model to build is unknown; write checkpoints with rv.export_checkpoint")
    try:
        header = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} has corrupt retokviz metadata ({error}): {text[:200]!r}") from error
    _check_header(path, header, text)
    if with_tensors:
        _check_weights(path, header, tensors)
    return header, tensors


def _check_weights(path: Path, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError if the tensors differ from those exported (the header's digest) or aren't finite.
    A header without a digest (a file exported before it existed) leaves the weights unchecked but for that."""
    expected = header.get(DIGEST_KEY)
    if expected is not None:
        actual = weights_digest(tensors)
        if actual != expected:
            raise CheckpointError(f"{path}: its weights changed after export (their SHA-256 digest is {actual}, its "
                                  f"header recorded {expected!r}), so they are not the weights the header (model, "
                                  "recorded accuracy) describes; restore the file or re-export it")
    bad = _non_finite(tensors)
    if bad is not None:
        raise CheckpointError(f"{path}: its weight {bad} holds NaN or infinite values; restore the file or "
                              "re-export it")


def _check_header(path: Path, header: object, text: str) -> None:
    """Raise CheckpointError unless `header` is of a format this retokviz reads and names a timm model."""
    version = header.get("format") if isinstance(header, dict) else None
    if version not in READABLE_FORMATS:
        readable = ", ".join(str(number) for number in READABLE_FORMATS)
        raise CheckpointError(f"{path} has retokviz metadata of format {version!r}; this retokviz reads format "
                              f"{readable}, so the file was written by another version of retokviz: load it with "
                              "that version, or re-export it")
    model = header.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("name"), str) and isinstance(model.get("kwargs"), dict)):
        raise CheckpointError(f"{path}: its retokviz metadata names no model (a 'model' entry with 'name' and "
                              f"'kwargs'): {text[:200]!r}")


def _info(path: Path, header: dict[str, Any]) -> CheckpointInfo:
    recipe = header.get("recipe") or {}
    return CheckpointInfo(
        name=path.name.removesuffix(".safetensors"), path=path, model=header["model"]["name"],
        model_kwargs=header["model"]["kwargs"], coherence_stem=bool(header.get("coherence_stem")),
        method=header.get("method"), accuracy=recipe.get("test_acc"), recipe=recipe,
        size_bytes=path.stat().st_size,
    )


def _checkpoint_files(folder: Path) -> list[Path]:
    """The `*.safetensors` files in `folder`, sorted (a sub-folder with such a name is not one)."""
    return sorted(path for path in folder.glob("*.safetensors") if path.is_file())


def checkpoints(directory: str | os.PathLike | None = None) -> list[CheckpointInfo]:
    """The checkpoints in `directory` (default: the repository's data/), read from their headers only.

    Raises:
        FileNotFoundError, NotADirectoryError: there is no folder `directory`.
        CheckpointError: a file there is corrupt, truncated, lacks retokviz metadata or has an unknown format.
    """
    folder = DATA_DIR if directory is None else Path(directory)
    if not folder.is_dir():
        error = NotADirectoryError if folder.exists() else FileNotFoundError
        why = " (it is a file)" if folder.exists() else ""
        if directory is None:
            why += " (the repository's data/ folder: a retokviz installed without its repository has no bundled " \
                   "checkpoints)"
        raise error(f"no checkpoint folder at {folder}{why}")
    return [_info(path, _read(path, with_tensors=False)[0]) for path in _checkpoint_files(folder)]


def resolve_checkpoint(name_or_path: str | os.PathLike, directory: str | os.PathLike | None = None) -> Path:
    """The file of a bundled checkpoint name (in `directory`, default data/) or of an explicit path.

    Raises:
        FileNotFoundError: no such file; for a name, the message lists the available names.
    """
    candidate = Path(name_or_path)
    if candidate.suffix == ".safetensors" or len(candidate.parts) > 1:
        if not candidate.is_file():
            raise FileNotFoundError(f"no checkpoint file at {candidate}")
        return candidate
    folder = DATA_DIR if directory is None else Path(directory)
    path = folder / f"{candidate}.safetensors"
    current = FORMER_NAMES.get(str(candidate))
    if not path.is_file() and current is not None and (folder / f"{current}.safetensors").is_file():
        warnings.warn(f"checkpoint {str(candidate)!r} is now named {current!r}; loading that", DeprecationWarning,
                      stacklevel=2)
        path = folder / f"{current}.safetensors"
    if not path.is_file():
        if not folder.is_dir():
            raise FileNotFoundError(f"no checkpoint named {str(name_or_path)!r}: there is no checkpoint folder "
                                    f"{folder}")
        available = ", ".join(path.name.removesuffix(".safetensors") for path in _checkpoint_files(folder))
        raise FileNotFoundError(f"no checkpoint named {str(name_or_path)!r} in {folder}; "
                                f"available: {available or 'none'}")
    return path


def checkpoint_weights(name_or_path: str | os.PathLike, *,
                       directory: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """A checkpoint's weights by parameter name, as stored; no model is built (the trainer's --init reads them).
    They are checked against the header's digest; a file exported before the digest existed loads unchecked.

    Raises:
        FileNotFoundError: unknown name (the message lists the available ones) or missing file.
        CheckpointError: the file is corrupt or truncated, lacks metadata or has an unknown format, its weights
            changed after export, or a weight holds NaN or infinity.
    """
    return _read(resolve_checkpoint(name_or_path, directory), with_tensors=True)[1]


def load_checkpoint(name_or_path: str | os.PathLike, *, directory: str | os.PathLike | None = None) -> nn.Module:
    """The timm model a checkpoint describes: built, weights loaded (strict), method applied, in eval mode, on CPU.

    The weights are checked against the SHA-256 digest the header recorded at export; a file exported before the
    digest existed (no `weights_sha256` in its header, like the bundled data/ files) loads unchecked, but for NaNs.

    Args:
        name_or_path: a name from `checkpoints()` (looked up in `directory`, default data/), or a file path.
        directory: where names are looked up.

    Raises:
        FileNotFoundError: unknown name (the message lists the available ones) or missing file.
        CheckpointError: the file is corrupt or truncated, lacks metadata or has an unknown format, its weights
            changed after export or hold NaN or infinity, or its metadata describes a model, method or weights that
            can't be built (each message names the file).
    """
    path = resolve_checkpoint(name_or_path, directory)
    header, tensors = _read(path, with_tensors=True)
    name, kwargs = header["model"]["name"], header["model"]["kwargs"]
    try:
        model = build_model(name, kwargs, bool(header.get("coherence_stem")))
    except (RuntimeError, TypeError, ValueError) as error:   # timm: unknown name, or kwargs the model doesn't take
        raise CheckpointError(f"{path}: its metadata describes a model that can't be built, "
                              f"timm.create_model({name!r}, **{kwargs}): {error}") from error
    owned = {key.removeprefix(MODULES + "."): tensors.pop(key) for key in list(tensors)
             if key.startswith(MODULES + ".")}                 # a learned method's modules, loaded once applied
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: its weights don't fit the model its metadata describes: {error}") from error
    try:
        method = build_method(header.get("method"))
    except ValueError as error:
        raise CheckpointError(f"{path}: its metadata describes no valid method: {error}") from error
    if method is not None:
        try:
            apply(model, method)
        except (ValueError, TypeError) as error:             # UnsupportedModelError is a TypeError
            raise CheckpointError(f"{path}: its method doesn't fit its model: {error}") from error
    if owned or MODULES in model._modules:
        try:
            model.get_submodule(MODULES).load_state_dict(owned, strict=True)
        except (AttributeError, RuntimeError) as error:
            raise CheckpointError(f"{path}: its weights don't fit the modules of its method: {error}") from error
    # retokviz trains on images normalised with ImageNet's mean and std (rv.data.normalize, timm's transforms),
    # whatever the timm configuration it builds from says (vit_tiny's says 0.5): say so where preprocessing reads it.
    model.pretrained_cfg = {**(getattr(model, "pretrained_cfg", None) or {}),
                            "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}
    return model.eval()
