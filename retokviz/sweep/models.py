"""The models a sweep measures: timm models by name and the project's checkpoints, built plain (no method), and the
conditions of the machine they run on.

A checkpoint trained with a method is swept as its plain ViT with each method applied in turn: its own method is
removed, so its "none" row is the untouched network. A learned method (one whose members own modules: DynamicViT's
predictors) is measured only on a checkpoint trained with it, whose trained modules it keeps (`methods_for`); on
any other model its modules would be untrained, so its rows are left out there.
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import nn

from retokviz.models.checkpoints import build_model, checkpoints, load_checkpoint, resolve_checkpoint
from retokviz.methods.registry import build_method, members, method_class, method_name
from retokviz.patch import check_model, method_of, remove
from retokviz.sweep.config import SweepConfig
from retokviz._util.device import describe_device

CHECKPOINT, TIMM = "checkpoint", "timm"


@dataclass(frozen=True)
class Source:
    """A model to sweep: `name` is what the table's `model` column says; `kind` is CHECKPOINT or TIMM."""

    name: str
    kind: str


def sources(config: SweepConfig) -> list[Source]:
    """The sweep's models: the checkpoints, then the timm models, as given."""
    return [Source(name, CHECKPOINT) for name in config.checkpoints] + [Source(name, TIMM) for name in config.models]


def _timm_model(name: str, img_size: int | None, pretrained: bool) -> nn.Module:
    """A timm model at `img_size`; one that takes no image size (a CNN) is made at its own, so that the support
    check can say why it can't be patched."""
    try:
        return timm.create_model(name, pretrained=pretrained, **({} if img_size is None else {"img_size": img_size}))
    except TypeError as error:
        if "img_size" not in str(error):
            raise
        return timm.create_model(name, pretrained=pretrained)


def build(source: Source, config: SweepConfig) -> nn.Module:
    """The model, float32, on the CPU, in eval mode, without a method."""
    if source.kind == CHECKPOINT:
        model = load_checkpoint(source.name)
        if method_of(model) is not None and not learned(method_name(method_of(model))):
            remove(model)            # a learned method stays: rv.applied keeps its trained modules across rows
        return model.eval()
    return _timm_model(source.name, config.img_size, config.pretrained).eval()


def _shape_only(source: Source, config: SweepConfig) -> nn.Module:
    """The model's structure on the meta device: no weights read, no memory, the RNG untouched."""
    with torch.device("meta"):
        if source.kind == CHECKPOINT:
            path = resolve_checkpoint(source.name).resolve()
            info = next(item for item in checkpoints(path.parent) if item.path.resolve() == path)
            return build_model(info.model, info.model_kwargs, info.coherence_stem)
        return _timm_model(source.name, config.img_size, pretrained=False)


def learned(name: str) -> bool:
    """Whether the registry method `name` has a member that owns modules (trained with the model: DynamicViT)."""
    return any(method_class(member).owns_modules for member in members(name))


def trained_with(source: Source) -> str | None:
    """The registry name of the method a checkpoint was trained with (from its header), or None."""
    if source.kind != CHECKPOINT:
        return None
    path = resolve_checkpoint(source.name).resolve()
    info = next(item for item in checkpoints(path.parent) if item.path.resolve() == path)
    method = build_method(info.method)
    try:
        return None if method is None else method_name(method)
    except ValueError:
        return None


def methods_for(source: Source, config: SweepConfig) -> tuple[str, ...]:
    """The sweep's methods measured on `source`: all of them, but a learned one only on a checkpoint trained with
    it (see the module)."""
    own = trained_with(source)
    return tuple(name for name in config.methods if not learned(name) or name == own)


def check_supported(source: Source, config: SweepConfig) -> None:
    """Refuse, before anything is measured, a model that can't run one of the sweep's methods.

    Raises:
        UnsupportedModelError: not a timm ViT retokviz patches, or it lacks what a method needs.
    """
    model = _shape_only(source, config)
    for name in methods_for(source, config):
        check_model(model, tuple(method_class(member)() for member in members(name)))


def check_learned(config: SweepConfig) -> None:
    """Refuse a learned method that no model of the sweep was trained with (it would measure nothing).

    Raises:
        ValueError: naming the method and what to give instead.
    """
    for name in config.methods:
        if learned(name) and not any(name in methods_for(source, config) for source in sources(config)):
            raise ValueError(f"{name} is a learned method: the sweep measures it only on a checkpoint trained with "
                             f"it (its predictors are trained with the model), and none of "
                             f"{', '.join(source.name for source in sources(config))} was; add one, e.g. "
                             f"--checkpoints showcase-dynamicvit-0.7")


def conditions(config: SweepConfig) -> dict[str, object]:
    """The conditions every row of the sweep shares (the table's CONDITIONS columns)."""
    return {"device": describe_device(torch.device(config.device)), "torch": torch.__version__,
            "timm": timm.__version__, "compiled": config.compile, "warmup": config.warmup, "runs": config.iters,
            "rounds": config.rounds}

