"""The reduction methods by name: the one table that checkpoints, the trainer, the benchmark, the evaluation, the
sweep and the explorer look methods up in.

    rv.methods.registry.method_class("evit")          # -> rv.EViT  (case-insensitive; "EViT" works too)
    rv.methods.registry.method_names()                 # ("evit", "imagepiece", "tome", "dynamicvit")
    rv.methods.registry.method_name(rv.ToMe(r=8))      # "tome"; a composition: "imagepiece+tome"
    rv.methods.registry.register(MyMethod, "mine")     # a method of your own, known to all of the above
    rv.methods.registry.describe(rv.EViT(keep_rate=0.7))   # "EViT(keep_rate=0.7)": how an instance reads
    rv.methods.registry.label("imagepiece+tome")       # "ImagePiece + ToMe": how a name reads

A composition is named by its members' names joined with "+", in order ("imagepiece+tome").
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from retokviz.methods.base import Method
from retokviz.methods.dynamicvit import DynamicViT
from retokviz.methods.evit import EViT
from retokviz.methods.imagepiece import ImagePiece
from retokviz.methods.tome import ToMe

# short name -> class; the short name is what command lines, CSV tables and the explorer use.
_METHODS: dict[str, type[Method]] = {"evit": EViT, "imagepiece": ImagePiece, "tome": ToMe, "dynamicvit": DynamicViT}
# short name -> the name people read (class name, as the papers write it).
_LABELS: dict[str, str] = {"evit": "EViT", "imagepiece": "ImagePiece", "tome": "ToMe", "dynamicvit": "DynamicViT"}
# The compositions offered by name (the explorer's method menu, the sweep's --methods).
COMPOSITIONS: tuple[str, ...] = ("imagepiece+tome",)


def register(cls: type[Method], name: str | None = None) -> type[Method]:
    """Make a Method subclass known by `name` (default: its class name in lower case). Returns the class.

    Raises:
        TypeError: `cls` is not a Method subclass.
        ValueError: the name is taken by another class, or contains "+" or white space.
    """
    if not (isinstance(cls, type) and issubclass(cls, Method) and cls is not Method):
        raise TypeError(f"register takes a subclass of rv.Method, got {cls!r}")
    key = (name or cls.__name__).lower()
    if not key or "+" in key or any(c.isspace() for c in key):
        raise ValueError(f"a method name must be non-empty, without '+' or spaces, got {key!r}")
    if _METHODS.get(key, cls) is not cls:
        raise ValueError(f"the method name {key!r} is taken by {_METHODS[key].__name__}")
    _METHODS[key] = cls
    _LABELS[key] = cls.__name__
    return cls


def method_names(compositions: bool = False) -> tuple[str, ...]:
    """The registered short names, in registration order; with `compositions`, the named compositions too."""
    return tuple(_METHODS) + (COMPOSITIONS if compositions else ())


def _unknown(name: object, compositions: bool) -> ValueError:
    return ValueError(f"unknown method {name!r}; the methods are {', '.join(method_names(compositions))}")


def method_class(name: str) -> type[Method]:
    """The class registered as `name` (short name or class name, any case).

    Raises:
        ValueError: no such method; the message lists the valid names.
    """
    key = name.lower() if isinstance(name, str) else None
    if key not in _METHODS:
        raise _unknown(name, False)
    return _METHODS[key]


def members(name: str) -> tuple[str, ...]:
    """The short names a method or composition name stands for: "imagepiece+tome" -> ("imagepiece", "tome").

    Raises:
        ValueError: a part is not a registered method (the message lists the valid names).
    """
    if not isinstance(name, str) or not name.strip():
        raise _unknown(name, True)
    parts = tuple(part.strip().lower() for part in name.replace(" ", "").split("+"))
    for part in parts:
        if part not in _METHODS:
            raise _unknown(name, True)
    return parts


def method_name(method: Method | Sequence[Method]) -> str:
    """The short name of a method instance, or of a composition ("imagepiece+tome").

    Raises:
        ValueError: a method whose class is not registered.
    """
    if isinstance(method, Method):
        for key, cls in _METHODS.items():
            if type(method) is cls:
                return key
        raise ValueError(f"{type(method).__name__} is not a registered method; rv.methods.registry.register it")
    return "+".join(method_name(member) for member in method)


def label(name: str) -> str:
    """How a method or composition name is written for people: "imagepiece+tome" -> "ImagePiece + ToMe"."""
    return " + ".join(_LABELS[part] for part in members(name))


def describe(method: Method | tuple[Method, ...] | None) -> str:
    """How a method reads: its class and the fields set away from their defaults, e.g. "EViT(keep_rate=0.7)".

    The keep rate (or ToMe's r) is always shown; a composition joins its members with " + "; None is "untouched".
    """
    if method is None:
        return "untouched"
    if not isinstance(method, Method):
        return " + ".join(describe(member) for member in method)
    if not dataclasses.is_dataclass(method):
        return type(method).__name__
    shown = []
    for field in dataclasses.fields(method):
        if not field.init:
            continue
        value = getattr(method, field.name)
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.name in ("keep_rate", "r") or value != default:
            shown.append(f"{field.name}={value!r}")
    return f"{type(method).__name__}({', '.join(shown)})"


def method_spec(method: Method | Sequence[Method] | None) -> dict[str, Any] | list[dict[str, Any]] | None:
    """A method as JSON-able data: {"name": class name, field: value, ...} over the fields its constructor takes
    (tuples become lists); a composition (a sequence of methods) as a list of those."""
    if method is None:
        return None
    if not isinstance(method, Method):
        return [method_spec(member) for member in method]
    fields = {field.name: getattr(method, field.name) for field in dataclasses.fields(method) if field.init}
    return {"name": type(method).__name__,
            **{key: list(value) if isinstance(value, tuple) else value for key, value in fields.items()}}


def build_method(spec: dict[str, Any] | list[dict[str, Any]] | None) -> Method | tuple[Method, ...] | None:
    """The method (or composition, as a tuple) `method_spec` described, its class looked up in the method
    registry (`retokviz.methods.registry.method_class`, which takes class names such as "EViT").

    Raises:
        ValueError: a name is not a registered method (the message lists them), or the fields don't fit its class.
    """
    if spec is None:
        return None
    if isinstance(spec, list):
        return tuple(build_method(member) for member in spec)
    if not isinstance(spec, dict):
        raise ValueError(f"a method is described as {{'name': class name, field: value, ...}}, got {spec!r}")
    fields = dict(spec)
    cls = method_class(fields.pop("name", None))
    try:
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()})
    except (TypeError, ValueError) as error:
        raise ValueError(f"method {spec} doesn't fit {cls.__name__}: {error}") from error
