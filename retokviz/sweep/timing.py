"""Honest timing of several configurations of one model against each other.

What is timed is the model's forward pass alone, on inputs already on the device, under `torch.inference_mode`.
Each configuration runs one untimed pass first (memory allocation, kernel selection, compilation), then in every
round `warmup` untimed passes and `iters` timed ones; the device is synchronised before each clock read, so a
CUDA pass is timed to its end, not to its launch. The configurations take turns within every round, in reverse
order every other round, so that slow drift of the machine (clocks, heat, other work) hits all of them alike, and
each keeps its median round; the spread of its rounds says how far the figure can be trusted.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from retokviz._util.device import synchronize

# A configuration to time: entering it gives the forward function (the model with its method applied), leaving
# it puts the model back as it was.
Runner = Callable[[], AbstractContextManager[Callable[[torch.Tensor], object]]]


@dataclass(frozen=True)
class Timing:
    """One configuration's rounds.

    Attributes:
        seconds: seconds per forward pass, one figure per round (the mean of its timed passes).
        peak_bytes: the most memory the device held during its timed passes (CUDA only, else None).
        first_seconds: the untimed first pass (for a compiled model: its compilation at this input shape).
    """

    seconds: tuple[float, ...]
    peak_bytes: int | None = None
    first_seconds: float | None = None

    @property
    def median(self) -> float:
        """Seconds per pass of the median round."""
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float | None:
        """(slowest round - fastest round) / median round: the run's own noise, as a share; None with fewer than 2
        rounds, where there is no spread to measure (0.0 would read as a noiseless measurement)."""
        if len(self.seconds) < 2:
            return None
        return (max(self.seconds) - min(self.seconds)) / self.median


def time_interleaved(runners: Sequence[Runner], inputs: torch.Tensor, *, warmup: int, iters: int, rounds: int,
                     on_step: Callable[[], None] | None = None) -> list[Timing]:
    """Time each runner on `inputs`, the runners taking turns over `rounds` rounds (see the module docstring).

    Args:
        runners: the configurations, each a callable giving a context manager that yields the forward function.
        inputs: the batch, already on the device and in the dtype.
        warmup: untimed passes before each timed run (>= 0); iters: timed passes per round (>= 1);
        rounds: rounds (>= 1).
        on_step: called after each configuration's turn (a progress bar).

    Returns:
        one Timing per runner, in order.
    """
    device = inputs.device
    cuda = device.type == "cuda"
    seconds: list[list[float]] = [[] for _ in runners]
    peaks: list[int | None] = [None for _ in runners]
    order = list(range(len(runners)))
    firsts: list[float] = []
    with torch.inference_mode():
        for index in order:                                     # the first pass of each, kept out of the rounds
            synchronize(device)
            start = time.perf_counter()
            with runners[index]() as forward:
                forward(inputs)
            synchronize(device)
            firsts.append(time.perf_counter() - start)
        for round_index in range(rounds):
            for index in order if round_index % 2 == 0 else order[::-1]:
                with runners[index]() as forward:
                    for _ in range(warmup):
                        forward(inputs)
                    synchronize(device)
                    if cuda:
                        torch.cuda.reset_peak_memory_stats(device)
                    start = time.perf_counter()
                    for _ in range(iters):
                        forward(inputs)
                    synchronize(device)
                    seconds[index].append((time.perf_counter() - start) / iters)
                    if cuda:
                        peaks[index] = max(peaks[index] or 0, torch.cuda.max_memory_allocated(device))
                if on_step is not None:
                    on_step()
    return [Timing(tuple(times), peak, first) for times, peak, first in zip(seconds, peaks, firsts)]
