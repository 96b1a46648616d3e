"""Benchmark: fedjax_rhd.metrics.concordance_index against lifelines.utils.concordance_index.

For each size, draws survival data with many tied times and tied risks (fixed seed), times
both implementations (best of ``--repeats`` runs below 1M rows, best of 2 from 1M rows on),
checks that they agree to 1e-9 and prints a table.

Usage:
    python experiments/bench/cindex.py [--sizes 10000 100000 1000000] [--lifelines-max 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout, uninstalled

import lifelines  # noqa: E402
from lifelines.utils import concordance_index as lifelines_cindex  # noqa: E402

from fedjax_rhd.metrics.concordance import concordance_index  # noqa: E402

SINGLE_RUN_FROM = 1_000_000  # from this size on, best of LARGE_REPEATS runs of each implementation
# Two, not one: the same 1M-row call of ours took 0.38-0.87 s as the first call of fresh
# processes on the quiet 2-core machine (0.37-0.46 s when repeated); lifelines' runs vary too.
LARGE_REPEATS = 2


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times on a coarse integer grid and risks rounded to 2 decimals: many ties of both kinds."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    time_ = np.ceil(rng.exponential(np.exp(-x)) * 365.0)  # days, about 2k distinct values
    event = rng.random(n) < 0.6
    risk = np.round(x + rng.normal(0.0, 1.0, n), 2)  # about 1k distinct values
    return time_, event, risk


def best_time(fn, *fn_args, repeats: int) -> tuple[float, float]:
    """Returns (best wall seconds over ``repeats`` calls of ``fn(*fn_args)``, last result)."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn(*fn_args)
        best = min(best, time.perf_counter() - start)
    return best, value


def cpu_name() -> str:
    """platform.processor(), or the model name from /proc/cpuinfo where that is empty (Linux)."""
    name = platform.processor()
    if not name or name == platform.machine():
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return name or "?"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats below 1M rows")
    parser.add_argument(
        "--lifelines-max",
        type=int,
        default=1_000_000,
        help="skip lifelines for sizes above this (it is O(n log n) but pure Python)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(
        f"machine: {cpu_name()} / {platform.machine()}, cpus={os.cpu_count()}, "
        f"python {platform.python_version()}, numpy {np.__version__}, lifelines {lifelines.__version__}"
    )
    print(f"{'n':>10}  {'ours [s]':>10}  {'lifelines [s]':>14}  {'speed-up':>9}  {'C-index':>10}")
    for n in args.sizes:
        time_, event, risk = make_data(n, args.seed)
        repeats = LARGE_REPEATS if n >= SINGLE_RUN_FROM else args.repeats
        ours_s, ours = best_time(concordance_index, time_, event, risk, repeats=repeats)
        if n > args.lifelines_max:
            print(f"{n:>10d}  {ours_s:>10.4f}  {'skipped':>14}  {'-':>9}  {ours:>10.6f}", flush=True)
            continue
        neg_risk = -risk  # lifelines expects predicted survival times: higher = better
        ref_s, ref = best_time(lifelines_cindex, time_, neg_risk, event, repeats=repeats)
        if abs(ours - ref) > 1e-9:
            raise AssertionError(f"n={n}: ours {ours!r} != lifelines {ref!r}")
        print(
            f"{n:>10d}  {ours_s:>10.4f}  {ref_s:>14.4f}  {ref_s / ours_s:>8.1f}x  {ours:>10.6f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
