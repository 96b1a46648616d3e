"""Benchmark: seconds per simulator round against the number of nodes and of patients.

A FedAvg DeepSurv round (the five-node MDS defaults: hidden [32, 32], dropout 0.1,
5 full-batch Adam steps) on simulated rows of the MDS guide's width (69 features
one-hot encoded to 73 columns, with their observed masks: 146 inputs), in the
simulator's layout (``fedjax_rhd.data.buckets``: nodes padded to their size
class, one vmapped update per bucket, at most 16 buckets):

  * 3, 5, 10, 50, 200, 500 nodes at a fixed total (``--fixed-total``, 100k);
  * 1k, 10k, 100k, 1M total patients at five nodes;
  * 500 nodes x 1M patients (the issue's largest case).

Node sizes are a Dirichlet(2) draw of the total (seed 0; at least 8 rows each),
so nodes differ in size as real centres do. Each case runs in its own process,
so its peak resident memory (``ru_maxrss``) is its own. Prints a table, the
fitted growth exponents (least squares of log seconds on log size) and the
machine's matmul rate and core count measured in the same run; writes
``results/scaling.csv`` and ``results/scaling.png``.

Run:  python experiments/bench/scaling.py                 (~5 min on 2 cores)
      python experiments/bench/scaling.py --quick         (small cases only, seconds)
The script uses only JAX's default device, so a CUDA JAX install runs it unchanged on a GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

NUM_FEATURES = 73  # the MDS guide one-hot encoded (experiments/bench/round.py prints it)
NODE_COUNTS = (3, 5, 10, 50, 200, 500)
TOTALS = (1_000, 10_000, 100_000, 1_000_000)


def node_sizes(num_nodes: int, total: int, seed: int = 0) -> list[int]:
    """A Dirichlet(2) split of ``total`` rows over ``num_nodes`` nodes, each at least 8 rows."""
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.full(num_nodes, 2.0))
    sizes = np.maximum(8, np.floor(shares * total)).astype(int)
    sizes[np.argmax(sizes)] += total - sizes.sum()  # the largest absorbs the rounding
    return sizes.tolist()


def measure(num_nodes: int, total: int, rounds: int) -> dict:
    """One case in this process: build the nodes, compile, time ``rounds`` rounds."""
    import jax
    import jax.numpy as jnp

    from fedjax_rhd.data.buckets import plan_buckets, stack_buckets
    from fedjax_rhd.data.packing import make_node_data
    from fedjax_rhd.federation.simulator import federated_round
    from fedjax_rhd.models import DeepSurvConfig
    from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, build_algorithm, build_model

    sizes = node_sizes(num_nodes, total)
    rng = np.random.default_rng(1)
    nodes = []
    for n in sizes:
        x = rng.normal(size=(n, NUM_FEATURES)).astype(np.float32)
        observed = rng.random((n, NUM_FEATURES)) < 0.85
        time_ = rng.exponential(1.0, n)
        nodes.append(make_node_data(np.where(observed, x, 0.0), observed, time_, rng.random(n) < 0.6))
    plan = plan_buckets(sizes)
    train = jax.tree.map(jnp.asarray, stack_buckets(nodes, plan))
    del nodes
    client = ClientConfig(learning_rate=2e-3, local_epochs=5)
    spec = AlgorithmSpec("fedavg", "deepsurv", DeepSurvConfig(), NUM_FEATURES, client=client)
    state = build_algorithm(spec).init(build_model(spec).init(jax.random.key(0)), num_nodes)
    key = jax.random.key(1)
    start = time.perf_counter()
    state, _ = federated_round(spec, state, train, key)
    jax.block_until_ready(state)
    first = time.perf_counter() - start
    times = []
    for r in range(rounds):
        start = time.perf_counter()
        state, _ = federated_round(spec, state, train, jax.random.fold_in(key, r))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    best = float(np.min(times))
    return {
        "nodes": num_nodes,
        "patients": total,
        "buckets": len(plan.pads),
        "stacked_rows": plan.padded_rows(),
        "compile_s": first - best,
        "round_s": best,
        "round_median_s": float(np.median(times)),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "device": str(jax.devices()[0].device_kind),
    }


def _run_case(num_nodes: int, total: int, rounds: int) -> dict:
    """``measure`` in a fresh process (its own peak memory and compile)."""
    command = [sys.executable, __file__, "--case", str(num_nodes), str(total), "--rounds", str(rounds)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {num_nodes} nodes x {total} patients failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth_exponent(sizes: list[float], seconds: list[float]) -> float:
    """Slope of log(seconds) on log(size): 1 = linear, < 1 = sub-linear."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def _plot(rows: list[dict], fixed_total: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    by_nodes = [r for r in rows if r["sweep"] == "nodes"]
    by_total = [r for r in rows if r["sweep"] == "patients"]
    axes[0].loglog([r["nodes"] for r in by_nodes], [r["round_s"] for r in by_nodes], "o-")
    axes[0].set(xlabel="nodes", ylabel="s per round", title=f"{fixed_total:,} patients")
    axes[1].loglog(
        [r["patients"] for r in by_total], [r["round_s"] for r in by_total], "o-", label="measured"
    )
    ref = np.array([r["patients"] for r in by_total], dtype=float)
    if by_total:
        axes[1].loglog(ref, by_total[-1]["round_s"] * ref / ref[-1], "k--", lw=1, label="linear")
    axes[1].set(xlabel="patients (5 nodes)", title="five nodes")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", type=int, nargs=2, metavar=("NODES", "PATIENTS"), help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per case after compilation")
    parser.add_argument("--fixed-total", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="only cases up to 10k patients and 50 nodes")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "bench" / "results")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure(*args.case, args.rounds)))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jax
    from round import matmul_rate

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, jax {jax.__version__} "
        f"on {jax.default_backend()} ({jax.devices()[0].device_kind}); "
        f"float32 matmul rate {matmul_rate():.1f} GFLOP/s (measured now)"
    )
    fixed = 10_000 if args.quick else args.fixed_total
    node_counts = [k for k in NODE_COUNTS if not args.quick or k <= 50]
    totals = [t for t in TOTALS if not args.quick or t <= 10_000]
    cases = [("nodes", k, fixed) for k in node_counts] + [("patients", 5, t) for t in totals]
    if not args.quick:
        cases.append(("largest", 500, 1_000_000))
    rows = []
    print(
        f"{'sweep':9s} {'nodes':>5s} {'patients':>9s} {'buckets':>7s} {'compile s':>9s} "
        f"{'s/round':>9s} {'peak GiB':>8s}"
    )
    for sweep, k, total in cases:
        row = {"sweep": sweep, **_run_case(k, total, args.rounds)}
        rows.append(row)
        print(
            f"{sweep:9s} {k:5d} {total:9d} {row['buckets']:7d} {row['compile_s']:9.2f} "
            f"{row['round_s']:9.4f} {row['peak_rss_gib']:8.2f}",
            flush=True,
        )
    by_nodes = [r for r in rows if r["sweep"] == "nodes"]
    by_total = [r for r in rows if r["sweep"] == "patients" and r["patients"] >= 10_000]
    e_nodes = growth_exponent([r["nodes"] for r in by_nodes], [r["round_s"] for r in by_nodes])
    print(f"growth in nodes at {fixed:,} patients: seconds ~ nodes^{e_nodes:.2f}")
    if len(by_total) >= 2:
        e_total = growth_exponent([r["patients"] for r in by_total], [r["round_s"] for r in by_total])
        print(f"growth in patients at 5 nodes (10k and up): seconds ~ patients^{e_total:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "scaling_quick" if args.quick else "scaling"
    with open(args.out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, fixed, args.out / f"{name}.png")
    print(f"wrote {args.out / (name + '.csv')} and {args.out / (name + '.png')}")


if __name__ == "__main__":
    main()
