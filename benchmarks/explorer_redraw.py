"""How long the explorer takes to redraw after each kind of change, driven headless (control values set in
code, exactly what dragging a slider does in a notebook, minus the browser's own drawing).

    OMP_NUM_THREADS=1 python benchmarks/explorer_redraw.py              # the bundled models, 40 repeats
    python benchmarks/explorer_redraw.py --repeats 100 --threads 2

A keep-rate change is timed twice: new (the model runs: one recorded pass and one MAC count) and cached
(a setting seen before). Layer and view changes never run the model. Prints median and p90 per kind of change,
with the conditions (CPU, threads, torch version, model).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from retokviz._util.device import describe_device


def timed(change) -> float:
    start = time.perf_counter()
    change()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="changes timed per kind")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as set by the environment)")
    parser.add_argument("--pass-threads", type=int, default=None,
                        help="threads for the explorer's passes (default: the explorer's, 1); 0: torch's setting")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from retokviz.explorer import explore

    start = time.perf_counter()
    kwargs = {} if args.pass_threads is None else {"threads": args.pass_threads or None}
    ex = explore(**kwargs)
    built = time.perf_counter() - start
    session = ex.session
    blocks = ex.block.max + 1
    views = [value for _, value in ex.view.options]
    rates = [round(r, 2) for r in np.arange(0.3, 1.0001, 0.05)]
    times: dict[str, list[float]] = {"block": [], "view": [], "patch (lineage)": [], "keep rate, new": [],
                                     "keep rate, cached": [], "method, new": []}
    for i in range(args.repeats):
        times["block"].append(timed(lambda: setattr(ex.block, "value", (ex.block.value + 1) % blocks)))
        times["view"].append(timed(lambda: setattr(ex.view, "value", views[(views.index(ex.view.value) + 1)
                                                                             % len(views)])))
        times["patch (lineage)"].append(timed(lambda: ex.set(patch=(i % (ex.patch_row.max + 1), 3))))
        ex.set(patch=None)
        session.clear(untouched=False)   # a keep rate not seen before: the model runs
        times["keep rate, new"].append(timed(lambda: setattr(ex.keep_rate, "value", rates[i % len(rates)])))
        ex.keep_rate.value = rates[(i + 3) % len(rates)]   # away (the model runs, untimed) and back (cached)
        times["keep rate, cached"].append(timed(lambda: setattr(ex.keep_rate, "value", rates[i % len(rates)])))
        session.clear(untouched=False)
        methods = [value for _, value in ex.method.options]
        times["method, new"].append(timed(lambda: setattr(ex.method, "value", methods[(methods.index(
            ex.method.value) + 1) % len(methods)])))

    passes = "torch's setting" if session.threads is None else f"at most {session.threads}"
    print(f"conditions: {describe_device('cpu')} ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}), "
          f"{torch.get_num_threads()} torch thread(s) ({passes} in the explorer's passes), torch {torch.__version__}, "
          f"Python {platform.python_version()}; model {ex.checkpoint.value} ({blocks} blocks, "
          f"{ex.run.arrays.num_patches} patches, {ex.run.arrays.picture.shape[0]} px), explorer built in "
          f"{built:.1f} s; {args.repeats} changes per kind")
    print(f"{'change':22s} {'median ms':>10s} {'p90 ms':>8s}")
    for kind, values in times.items():
        p90 = float(np.percentile(values, 90))
        print(f"{kind:22s} {statistics.median(values):10.1f} {p90:8.1f}")


if __name__ == "__main__":
    main()
