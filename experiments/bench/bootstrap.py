"""Benchmark: Harrell's C and its 1,000-resample bootstrap against lifelines and the old per-resample path.

Two tables from one run, on the machine's CPU (or whatever device JAX has by default):

* C-index at each ``--sizes`` against ``lifelines.utils.concordance_index`` (values asserted
  equal to 1e-9; best of ``--repeats`` below 1M rows, best of 2 from 1M on);
* the bootstrap at each ``--boot-sizes``: ``bootstrap_cindex`` (block path of
  ``fedjax_rhd.metrics.weighted_pairs`` above 2,000 rows: drawing the resamples plus the
  pair counts), its first call (with compilation) and a second call, wall and process CPU
  seconds, against the path it replaces, which scores each expanded resample with
  ``concordance_summary`` (``_per_resample_cindices``), on the first ``--old-resamples``
  resamples of the same draw (all by default); the per-resample C-indices of both are
  asserted equal bit for bit and the old path's time is scaled to ``--n-boot`` resamples
  when it ran fewer.

The machine's core count, load average (before and after) and float32 matmul rate are
printed with the tables; the host is shared, so read ratios measured side by side.
Writes ``results/bootstrap.csv`` and ``results/bootstrap.png`` (``--out``).

Usage:
    python experiments/bench/bootstrap.py [--sizes 10000 100000 1000000] [--boot-sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run from a checkout, uninstalled
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from cindex import LARGE_REPEATS, SINGLE_RUN_FROM, best_time, cpu_name, make_data  # noqa: E402
from lifelines.utils import concordance_index as lifelines_cindex  # noqa: E402

from fedjax_rhd.metrics import concordance as cc  # noqa: E402


def matmul_gflops(size: int = 2048, repeats: int = 3) -> float:
    """Best float32 matmul rate of JAX's default device over ``repeats`` runs, GFLOP/s."""
    a = jnp.ones((size, size), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best, _ = best_time(lambda: f(a).block_until_ready(), repeats=repeats)
    return 2 * size**3 / best / 1e9


def timed(fn, *args, **kwargs) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def cindex_rows(sizes: list[int], repeats: int, seed: int) -> list[dict]:
    rows = []
    print(f"\n{'n':>10}  {'ours [s]':>10}  {'lifelines [s]':>14}  {'speed-up':>9}  {'C-index':>10}")
    for n in sizes:
        time_, event, risk = make_data(n, seed)
        reps = LARGE_REPEATS if n >= SINGLE_RUN_FROM else repeats
        ours_s, ours = best_time(cc.concordance_index, time_, event, risk, repeats=reps)
        ref_s, ref = best_time(lifelines_cindex, time_, -risk, event, repeats=reps)
        if abs(ours - ref) > 1e-9:
            raise AssertionError(f"n={n}: ours {ours!r} != lifelines {ref!r}")
        ratio = ref_s / ours_s
        print(f"{n:>10d}  {ours_s:>10.4f}  {ref_s:>14.4f}  {ratio:>8.1f}x  {ours:>10.6f}", flush=True)
        rows.append({"table": "cindex", "n": n, "ours_s": ours_s, "reference_s": ref_s, "value": ours})
    return rows


def bootstrap_rows(sizes: list[int], n_boot: int, old_resamples: int, seed: int) -> list[dict]:
    rows = []
    print(
        f"\n{n_boot}-resample bootstrap (wall s / process CPU s; 'old' = one expanded resample at a time)\n"
        f"{'n':>10}  {'first call':>16}  {'second call':>16}  {'old':>16}  {'old ran':>8}  "
        f"{'old / new':>9}  {'95% CI':>19}"
    )
    for n in sizes:
        time_, event, risk = make_data(n, seed)
        boot = {"n_boot": n_boot, "seed": seed}
        first_w, first_c, _ = timed(cc.bootstrap_cindex, time_, event, risk, **boot)
        new_w, new_c, res = timed(cc.bootstrap_cindex, time_, event, risk, **boot)
        m = min(old_resamples, n_boot) if old_resamples > 0 else n_boot
        t, e, (rk,) = cc._validate(time_, event, risk)

        def weights(batch: int, m: int = m, n: int = n) -> object:
            return cc._drawn_weights(seed, n, m, batch)

        old_w, old_c, (old, _) = timed(cc._per_resample_cindices, t, e, [rk], weights(256), m)
        new_vals, _ = cc._weighted_cindices(t, e, [rk], weights, m)  # the same resamples, block path
        if not np.array_equal(old, new_vals, equal_nan=True):
            raise AssertionError(f"n={n}: per-resample and block C-indices differ")
        scale = n_boot / m
        ratio = old_w * scale / new_w
        print(
            f"{n:>10d}  {first_w:>7.2f} / {first_c:>6.2f}  {new_w:>7.2f} / {new_c:>6.2f}  "
            f"{old_w * scale:>7.2f} / {old_c * scale:>6.2f}  {m:>8d}  {ratio:>8.1f}x  "
            f"[{res['ci_low']:.4f}, {res['ci_high']:.4f}]",
            flush=True,
        )
        rows.append(
            {
                "table": "bootstrap",
                "n": n,
                "n_boot": n_boot,
                "first_s": first_w,
                "ours_s": new_w,
                "ours_cpu_s": new_c,
                "reference_s": old_w * scale,
                "reference_resamples": m,
                "value": res["estimate"],
            }
        )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, table, title, ref in [
        (axes[0], "cindex", "Harrell's C", "lifelines"),
        (axes[1], "bootstrap", "bootstrap (second call)", "per resample"),
    ]:
        sub = [r for r in rows if r["table"] == table]
        if not sub:
            ax.set_visible(False)
            continue
        n = [r["n"] for r in sub]
        ax.loglog(n, [r["ours_s"] for r in sub], "o-", label="fedjax_rhd")
        ax.loglog(n, [r["reference_s"] for r in sub], "s--", label=ref)
        ax.set_xlabel("rows")
        ax.set_ylabel("seconds")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--boot-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument(
        "--old-resamples", type=int, default=0, help="resamples the old path scores (0: all; scaled up)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats below 1M rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    load = os.getloadavg()
    print(
        f"machine: {cpu_name()}, cpus={os.cpu_count()}, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the start"
    )
    print(f"float32 matmul rate measured now: {matmul_gflops():.1f} GFLOP/s")
    rows = cindex_rows(args.sizes, args.repeats, args.seed)
    rows += bootstrap_rows(args.boot_sizes, args.n_boot, args.old_resamples, args.seed)
    load = os.getloadavg()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; peak RSS {peak:.2f} GiB")
    args.out.mkdir(parents=True, exist_ok=True)
    fields = sorted({k for r in rows for k in r})
    with open(args.out / "bootstrap.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "bootstrap.png")
    print(f"wrote {args.out / 'bootstrap.csv'} and {args.out / 'bootstrap.png'}")


if __name__ == "__main__":
    main()
