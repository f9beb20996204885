"""The explorer's model side, with no widget: one recorded forward pass per (model, image, method, keep rate),
kept in an LRU cache, so that moving through blocks, views or patches never runs the model again.

    session = Session(models, gallery, class_names)
    run = session.run("small-evit-0.7", image=0, method="tome", keep_rate=0.5)
    run.arrays.status[block]          # [rows, cols], what view images are drawn from
    run.top                           # [(class name, probability), ...] top-3 at this setting
    session.untouched(model, image)   # the same for the model without any reduction
    session.forward_passes            # how many passes ran so far
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from retokviz.explorer.inputs import Gallery
from retokviz.measure.macs import count_macs
from retokviz.methods.budget import method_at
from retokviz.methods.registry import method_name, method_names
from retokviz.patch import UnsupportedModelError, applied, check_model, method_of
from retokviz.trace.record import Trace, record
from retokviz.views.extract import TraceArrays, extract

# Recorded passes kept; one pass of a bundled model at one image holds a few kilobytes, DeiT-S's about 1 MB.
CACHE_SIZE = 128
TOP = 3
# torch threads for the explorer's one-image passes. One: a single image gives a thread little to share, and on a
# busy CPU a second thread waits for a core (a bundled model's pass: 5 ms on one thread, 670 ms on two, measured on
# a 2-core machine under load).
THREADS = 1


@contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Run torch on at most `count` threads inside (None: as it is), restoring the number after."""
    before = torch.get_num_threads()
    if count is not None and count < before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@dataclass(frozen=True)
class Prediction:
    """What a model said about one image.

    Attributes:
        top: [(class name, probability)] the TOP most probable classes, most probable first.
        index: the predicted class index.
    """

    top: tuple[tuple[str, float], ...]
    index: int

    @property
    def name(self) -> str:
        return self.top[0][0]


@dataclass(frozen=True)
class Run:
    """One recorded forward pass of one image at one setting.

    Attributes:
        trace: the rv.Trace of the pass (on the CPU).
        arrays: the trace as numpy arrays for that image (what every view draws from).
        prediction: the prediction at this setting.
        method: the method as applied (a tuple for a composition).
        macs: multiply-accumulates of one image at this setting.
        notes: the warnings the pass raised (e.g. a ToMe block asked to merge more than it can), each once.
    """

    trace: Trace
    arrays: TraceArrays
    prediction: Prediction
    method: object
    macs: int
    notes: tuple[str, ...] = ()

    @property
    def tokens(self) -> int:
        """Patch tokens leaving the last block."""
        return int(self.arrays.num_tokens[-1])


def rate_key(keep_rate: float) -> float:
    """A keep rate as a cache key (slider floats like 0.7000000000000001 and 0.7 are one setting)."""
    return round(float(keep_rate), 4)


class Session:
    """Models, images and the forward passes already run, by setting.

    Args:
        models: the models by name (timm ViTs, any method applied or none; the session restores it after each
            pass).
        gallery: the images.
        class_names: per model name, the class names by index (None: "class i").
        cache_size: the recorded passes kept (least recently used dropped first).
        threads: torch threads for the passes (see THREADS; None: torch's setting).
    """

    def __init__(self, models: dict[str, nn.Module], gallery: Gallery,
                 class_names: dict[str, list[str] | None], cache_size: int = CACHE_SIZE,
                 threads: int | None = THREADS) -> None:
        self.models = models
        self.threads = threads
        self.gallery = gallery
        self.class_names = class_names
        self.cache_size = cache_size
        self.forward_passes = 0
        self._runs: OrderedDict[tuple, Run] = OrderedDict()
        self._untouched: dict[tuple, Prediction] = {}
        self._macs: dict[tuple, int] = {}

    def methods_for(self, model: str) -> tuple[str, ...]:
        """The method names (registry names, compositions included) that apply to `model`; a model without a
        class token gets only those that need none (ToMe). A learned method (DynamicViT) is offered only to a model
        that came with it, trained: on any other its modules would be untrained."""
        network = self.models[model]
        own = self.own_method(model)
        usable = []
        for name in method_names(compositions=True):
            try:
                method = method_at(name, network, keep_rate=1.0)
                check_model(network, method)
            except UnsupportedModelError:
                continue
            if getattr(method, "owns_modules", False) and name != own:
                continue
            usable.append(name)
        return tuple(usable)

    def own_method(self, model: str) -> str | None:
        """The registry name of the method `model` came with (a checkpoint's training method), or None."""
        method = method_of(self.models[model])
        try:
            return None if method is None else method_name(method)
        except ValueError:
            return None

    def method_for(self, model: str, method: str, keep_rate: float) -> object:
        """The method `method` at `keep_rate` for `model` (rv.method_at). The model's own method is the template
        when it is the same method, so a checkpoint's other fields (blocks, fusing) are kept."""
        network = self.models[model]
        own = method_of(network)
        template = own if own is not None and self.own_method(model) == method else method
        return method_at(template, network, keep_rate=keep_rate)

    def run(self, model: str, image: int, method: str, keep_rate: float) -> Run:
        """The recorded pass of image `image` through `model` with `method` at `keep_rate` (cached)."""
        key = (model, image, method, rate_key(keep_rate))
        if key in self._runs:
            self._runs.move_to_end(key)
            return self._runs[key]
        network = self.models[model]
        chosen = self.method_for(model, method, keep_rate)
        tensor, picture, mask = self.gallery.input_for(image, network)
        macs_key = (model, method, rate_key(keep_rate))
        with warnings.catch_warnings(record=True) as caught, threads(self.threads), applied(network, chosen):
            warnings.simplefilter("always")
            with record(network) as trace, torch.no_grad():
                logits = network(tensor.to(_device(network)))
            self.forward_passes += 1
            if macs_key not in self._macs:   # one image's MACs depend on the setting only, not on the image
                self._macs[macs_key] = count_macs(network)
                self.forward_passes += 1
        trace = trace.to("cpu")
        notes = tuple(dict.fromkeys(str(warning.message) for warning in caught))
        run = Run(trace, extract(trace, picture, mask), self._predict(model, logits), chosen,
                  self._macs[macs_key], notes)
        self._runs[key] = run
        while len(self._runs) > self.cache_size:
            self._runs.popitem(last=False)
        return run

    def untouched(self, model: str, image: int) -> tuple[Prediction, int]:
        """(prediction, MACs) of `model` with no reduction at all (its method taken off for the pass)."""
        key = (model, image)
        if key not in self._untouched:
            network = self.models[model]
            tensor, _, _ = self.gallery.input_for(image, network)
            with applied(network, None), threads(self.threads):      # its own method taken off for the pass
                with torch.no_grad():
                    logits = network(tensor.to(_device(network)))
                if (model, None) not in self._macs:
                    self._macs[(model, None)] = count_macs(network)
                    self.forward_passes += 1
            self.forward_passes += 1
            self._untouched[key] = self._predict(model, logits)
        return self._untouched[key], self._macs[(model, None)]

    def label(self, model: str, index: int) -> str:
        """Class `index` of `model` by name."""
        names = self.class_names.get(model)
        return names[index] if names and 0 <= index < len(names) else f"class {index}"

    def _predict(self, model: str, logits: torch.Tensor) -> Prediction:
        probabilities = logits.float().softmax(dim=-1)[0].cpu()
        values, indices = probabilities.topk(min(TOP, probabilities.numel()))
        top = tuple((self.label(model, int(i)), float(v)) for v, i in zip(values, indices))
        return Prediction(top, int(indices[0]))

    def clear(self, untouched: bool = True) -> None:
        """Forget every recorded pass and MAC count (the next request runs the model again); with `untouched`,
        the untouched models' predictions too."""
        self._runs.clear()
        self._macs = {key: value for key, value in self._macs.items() if not untouched and key[1] is None}
        if untouched:
            self._untouched.clear()

    def cached(self, model: str, image: int, method: str, keep_rate: float) -> bool:
        """Whether that setting's pass is in the cache."""
        return (model, image, method, rate_key(keep_rate)) in self._runs


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
