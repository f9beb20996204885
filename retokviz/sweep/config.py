"""What a sweep measures: one frozen dataclass, checked when it is made, before any model is built.

    SweepConfig(out="sweep.csv", checkpoints=("small-baseline",), keep_rates=(1.0, 0.7, 0.5), quick=True)

Every error names the bad value and the valid range. The timing and test-set sizes left as None take the defaults
of the mode: a measurement (`DEFAULTS`) or, with `quick`, a seconds-long smoke run (`QUICK`).
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import timm
import torch

from retokviz._util.checks import check_flag, int_at_least
from retokviz._util.device import resolve_device
from retokviz.models.checkpoints import resolve_checkpoint
from retokviz.methods.registry import members, method_names

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
UNTOUCHED = "none"   # the method name of the untouched model's rows

# warm-up passes per configuration per round, timed passes per round, rounds, clutter test images
DEFAULTS = {"warmup": 3, "iters": 10, "rounds": 5, "test_size": 1000}
QUICK = {"warmup": 1, "iters": 2, "rounds": 2, "test_size": 64}
QUICK_FOLDER_IMAGES = 256     # an image folder's test images in quick mode (else all of them)


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: models x methods x keep rates x batch sizes x dtypes, and the conditions they are measured under.

    Attributes:
        out: the CSV file the rows are appended to (and resumed from).
        models: timm model names (random weights unless `pretrained`; accuracy only with `data`).
        checkpoints: bundled checkpoint names or .safetensors paths (accuracy on the generated clutter test set).
        methods: registry names ("evit", "imagepiece", "tome", "imagepiece+tome"); the untouched model ("none") is
            always measured.
        keep_rates: EViT keep rates in (0, 1]; a method without a keep rate (ToMe) gets EViT's token budget.
        batch_sizes: batch sizes for throughput (batch-1 latency is measured too).
        dtypes: "fp32", "bf16", "fp16": the model's weights and inputs are cast to it (no autocast).
        device: "auto" (CUDA where present), "cpu", "cuda", "cuda:N" or "mps".
        img_size: the image side for timm models (None: the model's own); checkpoints keep theirs.
        pretrained: load timm's weights for `models` (they must be cached: retokviz never downloads).
        data: an image folder with a val/ split (ImageNet layout), for the timm models' accuracy.
        test_size: test images for accuracy (None: 1000 clutter images or the whole folder; quick: 64).
        seed: the clutter test set's seed, and the folder subset's.
        warmup, iters, rounds: untimed passes before each timed run, timed passes per round, interleaved rounds
            (None: 3, 10, 5; quick: 1, 2, 2).
        compile: time compiled models (`rv.compile_for_inference`: torch.compile with the weights frozen and the
            graph driven from C++; one compiled copy per configuration, the untouched model's too).
        fused_attention: timm's fused attention (F.scaled_dot_product_attention) on; False switches every
            Attention module to the explicit softmax(q k^T) v for the sweep, and back after.
        quick: a smoke run of seconds (few passes, few test images); its figures are not measurements.
    """

    out: Path
    models: tuple[str, ...] = ()
    checkpoints: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("evit", "imagepiece", "tome")
    keep_rates: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
    batch_sizes: tuple[int, ...] = (16,)
    dtypes: tuple[str, ...] = ("fp32",)
    device: str = "auto"
    img_size: int | None = None
    pretrained: bool = False
    data: Path | None = None
    test_size: int | None = None
    seed: int = 0
    warmup: int | None = None
    iters: int | None = None
    rounds: int | None = None
    compile: bool = False
    fused_attention: bool = True
    quick: bool = False

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        set_("out", _path("out", self.out))
        set_("models", _names("models", self.models))
        set_("checkpoints", _names("checkpoints", self.checkpoints))
        if not self.models and not self.checkpoints:
            raise ValueError("nothing to sweep: give at least one timm model (models=, --model) or checkpoint "
                             "(checkpoints=, --checkpoint)")
        set_("methods", _methods(self.methods))
        set_("keep_rates", _keep_rates(self.keep_rates))
        set_("batch_sizes", _unique("batch_sizes", [int_at_least("batch size", value, 1) for value in _seq(self.batch_sizes)]))
        set_("dtypes", _dtypes(self.dtypes))
        set_("device", str(resolve_device(self.device)))
        if self.img_size is not None:
            set_("img_size", int_at_least("img_size", self.img_size, 1))
        for name in ("pretrained", "compile", "fused_attention", "quick"):
            check_flag(name, getattr(self, name))
        set_("seed", int_at_least("seed", self.seed, 0))
        mode = QUICK if self.quick else DEFAULTS
        for name, low in (("warmup", 0), ("iters", 1), ("rounds", 1)):
            value = getattr(self, name)
            set_(name, mode[name] if value is None else int_at_least(name, value, low))
        if self.test_size is not None:
            set_("test_size", int_at_least("test_size", self.test_size, 1))
        if self.data is not None:
            set_("data", _data_folder(self.data))
            if self.models and not self.pretrained:
                raise ValueError(f"data={str(self.data)!r} measures accuracy, and the timm models {list(self.models)} "
                                 "would have random weights: add pretrained=True (--pretrained), or leave data out")
        for name in self.checkpoints:
            resolve_checkpoint(name)     # FileNotFoundError listing the bundled names
        for model in self.models:
            if not timm.is_model(model):
                raise ValueError(f"timm has no model {model!r} (see timm.list_models('*vit*'))")
        check_writable(self.out)

    def test_size_for(self, kind: str) -> int | None:
        """The test images for a model `kind` ("checkpoint" or "timm"): None means the whole folder."""
        if self.test_size is not None:
            return self.test_size
        if kind == "checkpoint":
            return (QUICK if self.quick else DEFAULTS)["test_size"]
        return QUICK_FOLDER_IMAGES if self.quick else None

    def sweep_id(self, conditions: dict[str, str]) -> str:
        """A short hash of everything the table's figures depend on (not `out`), with the run's `conditions`
        (device, torch, timm): rows with another id were measured by another sweep."""
        settings = {key: sorted(value) if isinstance(value, tuple) else value       # the order doesn't matter
                    for key, value in asdict(self).items() if key not in ("out", "quick", "test_size")}
        settings.update(test_images={kind: self.test_size_for(kind) for kind in ("checkpoint", "timm")}, **conditions)
        text = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def with_out(self, out: str | os.PathLike) -> SweepConfig:
        """The same sweep written to another file."""
        return replace(self, out=Path(out))


def field_names() -> tuple[str, ...]:
    """The settings SweepConfig takes."""
    return tuple(item.name for item in fields(SweepConfig) if item.init)


def _seq(value: object) -> list:
    """A single value or an iterable of them, as a list (a string is one value)."""
    if isinstance(value, (str, bytes, os.PathLike)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _unique(name: str, values: list) -> tuple:
    for index, value in enumerate(values):
        if value in values[:index]:
            raise ValueError(f"{name}: {value!r} is given more than once in {values}; give each once")
    return tuple(values)


def _path(name: str, value: object) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{name} must be a file path, got {value!r}")
    return Path(value)


def _names(name: str, value: object) -> tuple[str, ...]:
    names = _seq(value)
    for item in names:
        if not isinstance(item, (str, os.PathLike)) or not str(item):
            raise ValueError(f"{name} must be names (strings), got {item!r}")
    return _unique(name, [str(item) for item in names])


def _methods(value: object) -> tuple[str, ...]:
    """Registry names, lower case, the untouched model ("none") left out: it is always measured."""
    valid = ", ".join(method_names(compositions=True))
    names = _seq(value)
    out = []
    for item in names:
        if not isinstance(item, str):
            raise ValueError(f"unknown method {item!r}; the methods are {valid} (and {UNTOUCHED!r}, always run)")
        if item.strip().lower() == UNTOUCHED:
            continue
        try:
            out.append("+".join(members(item)))
        except ValueError:
            raise ValueError(f"unknown method {item!r}; the methods are {valid} "
                             f"(and {UNTOUCHED!r}, always run)") from None
    if not out:
        raise ValueError(f"methods is empty; give at least one of {valid}")
    return _unique("methods", out)


def _keep_rates(value: object) -> tuple[float, ...]:
    rates = _seq(value)
    if not rates:
        raise ValueError("keep_rates is empty; give at least one keep rate in (0, 1]")
    out = []
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 < float(rate) <= 1.0:
            raise ValueError(f"keep rates must be numbers in (0, 1], got {rate!r}")
        out.append(float(rate))
    return _unique("keep_rates", out)


def _dtypes(value: object) -> tuple[str, ...]:
    names = _seq(value)
    if not names:
        raise ValueError(f"dtypes is empty; give at least one of {', '.join(DTYPES)}")
    for name in names:
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {name!r}; the dtypes are {', '.join(DTYPES)}")
    return _unique("dtypes", names)


def _data_folder(value: object) -> Path:
    folder = _path("data", value)
    if not (folder / "val").is_dir():
        raise ValueError(f"data={str(folder)!r} must be an image folder with a val/ split "
                         f"({folder}/val/<class>/<image>)")
    return folder.resolve()


def check_writable(path: Path, name: str = "out") -> None:
    """Refuse an output path that can't be written, before anything is measured."""
    if path.is_dir():
        raise ValueError(f"{name}={str(path)!r} is a folder; give a file path such as {str(path / 'sweep.csv')!r}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{name}={str(path)!r} can't be written (no write permission)")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name}={str(path)!r} can't be written: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{name}={str(path)!r} can't be written: no write permission in {parent}")
