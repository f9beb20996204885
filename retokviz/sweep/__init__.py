"""The keep-rate trade-off sweep: models x methods x keep rates x batch sizes x dtypes, one CSV row each.

    import retokviz as rv
    result = rv.sweep(out="sweep.csv", checkpoints=["small-baseline"], methods=["evit", "tome"],
                   keep_rates=[1.0, 0.7, 0.5], batch_sizes=[16], quick=True)
    result.rows                      # the table, typed; `read_table("sweep.csv")` reads it back

    python -m retokviz.sweep --checkpoint small-baseline --methods evit imagepiece tome \\
        --keep 1.0 0.7 0.5 --batch 16 --test-size 200 --quick --out sweep.csv
    python -m retokviz.sweep --model deit_small_patch16_224 --device cuda --dtype bf16 --batch 256 \\
        --out results/sweep-h100.csv --plot results/sweep-h100.png

At every keep rate each method gets EViT's token budget there (`rv.method_at`: ToMe the per-block r that ends
with EViT's final token count). The untouched model ("none") is measured in the same run, interleaved with the
methods, and every speed-up is a ratio to it at the same batch size and dtype.

The columns (`COLUMNS`), one row per configuration:

- model, method ("none" for the untouched model), keep_rate (1.0 for "none"), setting (the method's setting as
  text, e.g. ToMe's "r=10 10 10 9");
- accuracy: top-1 (0..1) of the eager model at the row's dtype, on the generated clutter test set (checkpoints)
  or on `data`'s val/ split (timm models); empty where there is no data;
- images_per_s: batch throughput, median round; speedup: against the untouched model, same run, batch and dtype;
- latency_ms: batch 1, median round; first_pass_s: the untimed first pass at the row's batch, in seconds (with
  --compile, the compilation for that input shape, beside the steady-state figures); spread: (slowest - fastest
  round) / median round, at the row's batch (empty with a single round: one round measures no spread, and the
  sweep warns so);
- peak_memory_mb: torch.cuda.max_memory_allocated during the row's timed passes, weights included, in MiB;
  empty on a CPU (a process's RSS is shared by every configuration and never falls, so it can't be given per row);
- macs: per image, counted on a real forward pass (`rv.count_macs`); macs_ceiling: untouched MACs / these MACs,
  the most that removing tokens could speed things up; tokens: patch tokens leaving each block ("64 46 34 25");
- note: "noise: above MACs ceiling" where the speed-up exceeds the ceiling, "within spread" where its difference
  from 1 is smaller than the rounds' spread (both also given as a `NoiseWarning` and printed by the CLI);
- the conditions: device, dtype, batch_size, img_size, attention (the kernel actually run: "sdpa:flash",
  "sdpa:efficient", "sdpa:math", ..., or "explicit softmax"; with compile, eager PyTorch's choice), compiled,
  torch, timm, warmup (untimed passes per round), runs (timed passes per round), rounds, data (the test set),
  and sweep_id (the hash of the sweep's settings that resuming checks).

Rows are written one by one as their group finishes; a sweep run again with the same settings continues where it
stopped, and a file holding another sweep's rows is refused (see `retokviz.sweep.table`). The timing is in
`retokviz.sweep.timing`, the noise checks in `retokviz.sweep.noise`, the plots in `retokviz.views.tradeoff`.
"""
from __future__ import annotations

import sys
import types
from collections.abc import Callable

from retokviz.sweep.config import DTYPES, SweepConfig, field_names
from retokviz.sweep.noise import NoiseWarning
from retokviz.sweep.run import Plan, SweepResult, execute, prepare
from retokviz.sweep.table import COLUMNS, KEY, TableError, read_table


def sweep(config: SweepConfig | None = None, /, *, on_row: Callable[[dict], None] | None = None,
          progress: bool = True, **settings) -> SweepResult:
    """Measure a sweep into its CSV, continuing a table it left unfinished.

    Args:
        config: a SweepConfig; or leave it out and give its settings as keywords (out=, models=, checkpoints=,
            methods=, keep_rates=, batch_sizes=, dtypes=, device=, quick=, ...; see SweepConfig).
        on_row: called with each row right after it is written (an exception there stops the sweep; the rows
            written so far stay).
        progress: show a progress bar.

    Returns:
        a SweepResult: the table's rows, those measured now, how many were there already, and the caveats.

    Raises:
        ValueError: a bad setting (named, with its valid range), before anything is built or timed.
        FileNotFoundError: an unknown checkpoint (the message lists the bundled ones).
        TableError: the output file holds another sweep's rows, or is not a sweep table.
        UnsupportedModelError: a model that can't run a method (checked without loading its weights).
    """
    if config is None:
        unknown = sorted(set(settings) - set(field_names()))
        if unknown:
            raise ValueError(f"unknown sweep setting(s) {unknown}; the settings are {', '.join(field_names())}")
        if "out" not in settings:
            raise ValueError("out= is required: the CSV file the rows are written to (and resumed from)")
        config = SweepConfig(**settings)
    elif not isinstance(config, SweepConfig):
        raise ValueError(f"sweep takes a SweepConfig or keyword settings, got {config!r}")
    elif settings:
        raise ValueError(f"give a SweepConfig or keyword settings, not both (got {sorted(settings)})")
    return execute(prepare(config), on_row=on_row, progress=progress)


class _CallableModule(types.ModuleType):
    """`rv.sweep(...)` runs a sweep, and `rv.sweep` is still this package (`rv.sweep.read_table`, `python -m
    retokviz.sweep`): one name, one object, nothing hidden."""

    def __call__(self, config: SweepConfig | None = None, /, **kwargs) -> SweepResult:
        return sweep(config, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["COLUMNS", "DTYPES", "KEY", "NoiseWarning", "Plan", "SweepConfig", "SweepResult", "TableError", "execute",
           "prepare", "read_table", "sweep"]
