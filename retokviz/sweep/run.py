"""Running a sweep: everything checked first (`prepare`), then measured group by group (`execute`).

A group is one model at one dtype and one batch size: its configurations (the untouched model and every method
at every keep rate) are timed together, taking turns over the rounds (`timing.time_interleaved`), so that every
speed-up is a ratio to the untouched model timed in the same rounds. Batch-1 latency is timed the same way, once
per model and dtype. A group's rows are written as soon as its rounds are done, one by one.

Resuming: a configuration whose key (model, method, keep rate, batch size, dtype) is in the table already is not
measured again. A group with some of its rows missing times only those, with the untouched model again as their
reference (its row is not written twice); a group with none missing is skipped, and a model with nothing missing
is not even built.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from retokviz.compiled import compile_for_inference
from retokviz.patch import applied, apply, input_channels, method_of, remove
from retokviz.sweep import noise
from retokviz.sweep.accuracy import TestSet, test_set, top1
from retokviz.sweep.attention import attention_kernel, fused_attention
from retokviz.sweep.config import DTYPES, UNTOUCHED, SweepConfig
from retokviz.sweep.grid import Configuration, configurations, macs_and_tokens
from retokviz.sweep.models import Source, build, check_learned, check_supported, conditions, methods_for, sources
from retokviz.sweep.table import Table, format_value, parse_row, read_table
from retokviz.sweep.timing import Runner, Timing, time_interleaved

QUICK_CAVEAT = "quick mode: a smoke run of a few passes; its figures are not measurements"


@dataclass
class Plan:
    """A checked sweep, ready to run: nothing in it was built or timed yet."""

    config: SweepConfig
    sources: list[Source]
    conditions: dict[str, object]
    sweep_id: str
    table: Table            # locked for this sweep from `prepare` to the end of `execute`


@dataclass
class SweepResult:
    """What a sweep did.

    Attributes:
        path: the CSV file.
        rows: every row the table holds for this sweep (typed, as `read_table` gives them).
        measured: the rows this call measured and wrote, in order.
        skipped: the configurations that were in the table already.
        caveats: why some figures may be noise, one sentence each (also given as NoiseWarning).
    """

    path: Path
    rows: list[dict] = field(default_factory=list)
    measured: list[dict] = field(default_factory=list)
    skipped: int = 0
    caveats: list[str] = field(default_factory=list)


def prepare(config: SweepConfig) -> Plan:
    """Check what can be checked before any model is built: the table (not another sweep's), and that every model
    can run every method (built on the meta device, without weights).

    The table is locked for this sweep from here to the end of `execute` (see `Table`).

    Raises:
        TableError: `config.out` holds something else than this sweep's rows, or another sweep is writing it.
        UnsupportedModelError: a model that can't run a method.
    """
    found = conditions(config)
    sweep_id = config.sweep_id({key: found[key] for key in ("device", "torch", "timm")})
    axes = {"model": [source.name for source in sources(config)], "method": (UNTOUCHED, *config.methods),
            "keep_rate": (1.0, *config.keep_rates), "batch_size": config.batch_sizes, "dtype": config.dtypes}
    table = Table(config.out, sweep_id, found, axes)      # locked: a second sweep writing it is refused
    try:
        check_learned(config)
        for source in sources(config):
            check_supported(source, config)
    except BaseException:
        table.close()
        raise
    return Plan(config, sources(config), found, sweep_id, table)


def _keys(config: SweepConfig, source: Source) -> list[tuple[str, float]]:
    """(method, keep rate) of every configuration of `source`, the untouched model first (as `configurations`
    orders them)."""
    return [(UNTOUCHED, 1.0)] + [(name, rate) for rate in config.keep_rates for name in methods_for(source, config)]


def _missing(plan: Plan, source: Source, dtype: str, batch: int) -> list[tuple[str, float]]:
    return [(method, rate) for method, rate in _keys(plan.config, source)
            if (source.name, method, round(rate, 6), batch, dtype) not in plan.table.done]


def _turns(plan: Plan) -> int:
    """Configuration turns the sweep will time (for the progress bar)."""
    config, total = plan.config, 0
    for source in plan.sources:
        for dtype in config.dtypes:
            missing = {batch: _missing(plan, source, dtype, batch) for batch in config.batch_sizes}
            union = {key for keys in missing.values() for key in keys}
            if not union:
                continue
            total += len(union | {(UNTOUCHED, 1.0)}) * config.rounds
            total += sum(len(set(keys) | {(UNTOUCHED, 1.0)}) * config.rounds
                         for batch, keys in missing.items() if keys and batch != 1)
    return total


class _Measurer:
    """One model at one dtype on the device: its runners, and what each configuration costs and scores."""

    def __init__(self, base: nn.Module, working: nn.Module, plan: Plan, dtype: str, data: TestSet | None,
                 counted: dict) -> None:
        self.base, self.working, self.plan, self.dtype, self.data = base, working, plan, dtype, data
        self.device = torch.device(plan.config.device)
        self.counted = counted          # Configuration -> (macs, tokens), shared across dtypes
        self._runners: dict[Configuration, Runner] = {}
        self._accuracy: dict[Configuration, float | None] = {}
        self._attention: dict[Configuration, str] = {}

    def inputs(self, batch: int) -> torch.Tensor:
        height, width = self.working.patch_embed.img_size
        return torch.randn(batch, input_channels(self.working), height, width, device=self.device,
                           dtype=DTYPES[self.dtype])

    def eager(self, config: Configuration):
        return applied(self.working, config.reduction)

    def runner(self, config: Configuration) -> Runner:
        if config not in self._runners:
            if not self.plan.config.compile:
                self._runners[config] = lambda: self.eager(config)
            else:
                model = copy.deepcopy(self.working)
                if config.reduction is not None:
                    apply(model, config.reduction)
                elif method_of(model) is not None:      # a learned method's checkpoint: untouched is without it
                    remove(model)
                compiled = compile_for_inference(model)
                self._runners[config] = lambda: nullcontext(compiled)
        return self._runners[config]

    def time(self, group: list[Configuration], batch: int, step: Callable[[], None]) -> dict[Configuration, Timing]:
        config = self.plan.config
        timings = time_interleaved([self.runner(item) for item in group], self.inputs(batch), warmup=config.warmup,
                                   iters=config.iters, rounds=config.rounds, on_step=step)
        return dict(zip(group, timings))

    def cost(self, config: Configuration) -> tuple[int, list[int]]:
        if config not in self.counted:
            self.counted[config] = macs_and_tokens(self.base, config.reduction)
        return self.counted[config]

    def accuracy(self, config: Configuration) -> float | None:
        if config not in self._accuracy:
            with self.eager(config) as model:
                self._accuracy[config] = None if self.data is None else top1(model, self.data, self.device,
                                                                            DTYPES[self.dtype])
        return self._accuracy[config]

    def attention(self, config: Configuration) -> str:
        if config not in self._attention:
            with self.eager(config) as model:
                self._attention[config] = attention_kernel(model, self.inputs(1))
        return self._attention[config]


def _image_size(model: nn.Module) -> int | str:
    height, width = model.patch_embed.img_size
    return height if height == width else f"{height}x{width}"


def _row(plan: Plan, measurer: _Measurer, source: Source, config: Configuration, batch: int,
         timings: dict[Configuration, Timing], latency: dict[Configuration, Timing]) -> dict:
    untouched = next(item for item in timings if item.reduction is None)
    timing, reference = timings[config], timings[untouched]
    macs, tokens = measurer.cost(config)
    speedup = reference.median / timing.median
    ceiling = measurer.cost(untouched)[0] / macs
    return {
        "model": source.name, "method": config.method, "keep_rate": config.keep_rate, "setting": config.setting,
        "accuracy": measurer.accuracy(config), "images_per_s": batch / timing.median, "speedup": speedup,
        "latency_ms": 1000 * latency[config].median, "first_pass_s": timing.first_seconds,
        "peak_memory_mb": None if timing.peak_bytes is None else timing.peak_bytes / 2**20,
        "macs": macs, "macs_ceiling": ceiling, "tokens": tokens, "spread": timing.spread,
        "note": "" if config.reduction is None else noise.note(speedup, ceiling,
                                                              noise.larger(timing.spread, reference.spread)),
        "dtype": measurer.dtype, "batch_size": batch, "img_size": _image_size(measurer.working),
        "attention": measurer.attention(config), "data": "" if measurer.data is None else measurer.data.description,
        "sweep_id": plan.sweep_id, **plan.conditions,
    }


def execute(plan: Plan, on_row: Callable[[dict], None] | None = None, progress: bool = True) -> SweepResult:
    """Measure every configuration missing from the table and append its row (see the module docstring).

    Args:
        plan: what `prepare` returned.
        on_row: called with each row (typed) right after it is written; an exception raised there stops the
            sweep, with every row written so far kept.
        progress: a tqdm progress bar (in notebooks and terminals; none in logs).
    """
    plan.table.open()       # locked by prepare (and again, re-read, for a plan executed once already)
    try:
        return _execute(plan, on_row, progress)
    finally:
        plan.table.close()      # the lock released, also on an error or Ctrl-C


def _execute(plan: Plan, on_row: Callable[[dict], None] | None, progress: bool) -> SweepResult:
    config = plan.config
    result = SweepResult(plan.table.path)
    keys = [(source.name, method, round(rate, 6), batch, dtype) for source in plan.sources
            for dtype in config.dtypes for batch in config.batch_sizes for method, rate in _keys(config, source)]
    result.skipped = sum(key in plan.table.done for key in keys)
    bar = tqdm(total=_turns(plan), desc="sweep", unit="turn", disable=None if progress else True, leave=False)
    try:
        for source in plan.sources:
            _sweep_model(plan, source, bar, result, on_row)
    finally:
        bar.close()
    unmeasured = noise.rounds_caveat(config.rounds) if result.measured or result.skipped else []
    result.caveats[:0] = unmeasured
    noise.warn(unmeasured)
    if config.quick and result.measured:
        result.caveats.insert(0, QUICK_CAVEAT)
        noise.warn([QUICK_CAVEAT])
    result.rows = read_table(plan.table.path) if plan.table.path.exists() else []
    return result


def _sweep_model(plan: Plan, source: Source, bar, result: SweepResult, on_row) -> None:
    config = plan.config
    missing = {(dtype, batch): _missing(plan, source, dtype, batch)
               for dtype in config.dtypes for batch in config.batch_sizes}
    if not any(missing.values()):
        return
    bar.set_description(f"sweep {source.name}")
    base = build(source, config)
    all_configs = configurations(base, methods_for(source, config), config.keep_rates)
    by_key = {(item.method, item.keep_rate): item for item in all_configs}
    untouched = by_key[(UNTOUCHED, 1.0)]
    data = test_set(source, config, base.patch_embed.img_size[0])
    counted: dict = {}
    for dtype in config.dtypes:
        wanted = [by_key[key] for key in _keys(config, source)
                  if any(key in missing[(dtype, batch)] for batch in config.batch_sizes)]
        if not wanted:
            continue
        working = copy.deepcopy(base).to(torch.device(config.device), DTYPES[dtype])
        with fused_attention(working, config.fused_attention):
            measurer = _Measurer(base, working, plan, dtype, data, counted)
            latency = measurer.time(_group(untouched, wanted), 1, bar.update)
            for batch in config.batch_sizes:
                pending = [by_key[key] for key in missing[(dtype, batch)]]
                if not pending:
                    continue
                timings = latency if batch == 1 else measurer.time(_group(untouched, pending), batch, bar.update)
                rows = []
                for item in pending:
                    row = _row(plan, measurer, source, item, batch, timings, latency)
                    plan.table.append(row)
                    typed = parse_row({column: format_value(column, value) for column, value in row.items()})
                    rows.append(typed)
                    result.measured.append(typed)
                    if on_row is not None:
                        on_row(typed)
                sentences = noise.caveats(rows, reference_spread=timings[untouched].spread)
                result.caveats.extend(sentences)
                noise.warn(sentences)
        del working, measurer
        if torch.device(config.device).type == "cuda":
            torch.cuda.empty_cache()


def _group(untouched: Configuration, configs: list[Configuration]) -> list[Configuration]:
    """The untouched model first (every group's reference), then the others."""
    return [untouched] + [item for item in configs if item is not untouched]
