"""Benchmark: one FedAvg DeepSurv round on the five-node simulated MDS split.

Prints, measured side by side in one run on this machine:
  * the floor: the real rows' matmul work of a round (analytic forward + backward
    count of the MLP) over this machine's float32 matmul rate, measured here;
  * compile time, best and median seconds per round of the same round on two
    layouts: every node padded to the largest (the layout before size buckets)
    and the simulator's size buckets (``fedjax_rhd.data.buckets``), each against
    the floor; the last line is ``round time / floor: <ratio>x`` (the simulator);
  * one node's full-batch step alone against the matmul rate;
  * Harrell's C-index time at 10k / 100k / 1M rows against lifelines (equal values).
Writes ``results/round.csv`` and ``results/round.png``.

Run:  python experiments/bench/round.py            (about a minute on 2 cores)
      python experiments/bench/round.py --sizes    (skip the C-index comparison)
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments" / "bench"))

from cindex import main as cindex_main  # noqa: E402

from fedjax_rhd.data.buckets import bucket_nodes, plan_buckets  # noqa: E402
from fedjax_rhd.data.federated import SplitSpec, build_federated_data  # noqa: E402
from fedjax_rhd.federation.simulator import TRACE_COUNTS, federated_round  # noqa: E402
from fedjax_rhd.models import DeepSurvConfig  # noqa: E402
from fedjax_rhd.sources import UseCase, load_use_case  # noqa: E402
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, build_algorithm, build_model  # noqa: E402
from harmonize.guide import load_guide  # noqa: E402


def _time(fn, repeats: int) -> float:
    """Best-of-``repeats`` wall time of ``fn()`` (which must block)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(n: int = 1024, repeats: int = 10) -> float:
    """Float32 GFLOP/s of a jitted n×n matmul on the default device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    seconds = _time(lambda: f(a).block_until_ready(), repeats)
    return 2 * n**3 / seconds / 1e9


def mlp_step_flops(rows: int, layer_sizes: list[int]) -> float:
    """Forward+backward matmul FLOPs of one full-batch step: ~3 × forward (2·n·in·out per layer)."""
    forward = sum(2 * rows * a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:], strict=True))
    return 3.0 * forward


def _round_timer(spec, state, train, key, repeats: int) -> tuple[float, float, float]:
    """(first call incl. compile, best, median) seconds of ``federated_round`` on ``train``."""
    start = time.perf_counter()
    jax.block_until_ready(federated_round(spec, state, train, key))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(federated_round(spec, state, train, key))
        times.append(time.perf_counter() - start)
    return first, float(np.min(times)), float(np.median(times))


def _plot(rows: list[dict], floor: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    labels = [r["layout"] for r in rows]
    ax.barh(labels, [r["best_ms"] for r in rows], color=["#bbbbbb", "#3366aa"][: len(rows)])
    ax.axvline(floor * 1e3, color="k", ls="--", lw=1)
    ax.text(floor * 1e3, len(rows) - 0.5, " floor (real rows / matmul rate)", va="center", fontsize=8)
    ax.set_xlabel("ms per FedAvg DeepSurv round (5 MDS nodes x 5 local steps), best of N")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds after compilation")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "bench" / "results")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, jax {jax.__version__} "
        f"on {jax.default_backend()} ({jax.devices()[0].device_kind})"
    )
    guide = load_guide("mds")
    with tempfile.TemporaryDirectory() as tmp:
        df = load_use_case(UseCase(name="mds"), seed_data=0, data_root=tmp, real_data_root=None).table
    split = SplitSpec(name="five", fractions=(0.45, 0.2, 0.15, 0.1, 0.1), seed=0)
    data = build_federated_data(df, guide, split)
    model_config = DeepSurvConfig()
    client = ClientConfig(learning_rate=2e-3, local_epochs=5)
    spec = AlgorithmSpec("fedavg", "deepsurv", model_config, data.num_features, client=client)
    algorithm, model = build_algorithm(spec), build_model(spec)
    plan = plan_buckets(data.n_train)
    layouts = {
        "one stack, padded to the largest node": jax.tree.map(jnp.asarray, data.train),
        "size buckets (the simulator)": jax.tree.map(
            jnp.asarray, bucket_nodes(data.train, data.n_train, plan)
        ),
    }
    state = algorithm.init(model.init(jax.random.key(0)), data.num_nodes)
    key = jax.random.key(1)
    rate = matmul_rate()

    d_in = data.num_features * (2 if model_config.use_observed_mask else 1)
    layers = [d_in, *model_config.hidden, 1]
    k, e = data.num_nodes, client.local_epochs
    real_rows = int(sum(data.n_train))
    floor = e * mlp_step_flops(real_rows, layers) / (rate * 1e9)
    stacked_rows = {
        "one stack, padded to the largest node": k * int(data.train.x.shape[1]),
        "size buckets (the simulator)": plan.padded_rows(),
    }
    print(f"five-node split: node rows {list(data.n_train)}; layers {layers}; {k} nodes x {e} local steps")
    print(f"size buckets: {list(zip(plan.nodes, plan.pads, strict=True))}")
    print(f"machine float32 matmul rate: {rate:8.1f} GFLOP/s (1024x1024, measured now)")
    flops = e * mlp_step_flops(real_rows, layers)
    print(f"floor: {flops / 1e6:.0f} MFLOP of real-row matmuls per round / rate = {floor * 1e3:.2f} ms")
    rows = []
    for name, train in layouts.items():
        traces = TRACE_COUNTS["round"]
        first, best, median = _round_timer(spec, state, train, key, args.rounds)
        rows.append(
            {
                "layout": name,
                "stacked_rows": stacked_rows[name],
                "patient_share": real_rows / stacked_rows[name],
                "compile_s": first - best,
                "best_ms": best * 1e3,
                "median_ms": median * 1e3,
                "over_floor": best / floor,
                "compilations": TRACE_COUNTS["round"] - traces,
            }
        )
    print(
        f"\n{'layout':40s} {'rows':>6s} {'patients':>8s} {'compile s':>9s} "
        f"{'best ms':>8s} {'median':>8s} {'/floor':>7s}"
    )
    for r in rows:
        print(
            f"{r['layout']:40s} {r['stacked_rows']:6d} {r['patient_share']:8.1%} {r['compile_s']:9.2f} "
            f"{r['best_ms']:8.2f} {r['median_ms']:8.2f} {r['over_floor']:6.2f}x"
        )
    print(f"bucketed vs one stack (same run): {rows[0]['best_ms'] / rows[1]['best_ms']:.2f}x faster")

    # One full-batch step on the largest node (gradient only), jitted alone: how close XLA gets to the rate.
    node0 = jax.tree.map(lambda a: a[0], layouts["size buckets (the simulator)"].parts[0])
    grad = jax.jit(jax.grad(lambda p, b, k: model.loss(p, b, k)[0]))
    params = state.params
    grad(params, node0, key)
    step_s = _time(lambda: jax.block_until_ready(grad(params, node0, key)), 50)
    achieved = mlp_step_flops(int(data.n_train[0]), layers) / step_s / 1e9
    print(
        f"one full-batch step (node1 alone): {step_s * 1e3:.3f} ms = {achieved / rate:.1%} of the matmul rate"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "round.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "floor_ms", "matmul_gflops"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "floor_ms": floor * 1e3, "matmul_gflops": rate})
    _plot(rows, floor, args.out / "round.png")
    print(f"wrote {args.out / 'round.csv'} and {args.out / 'round.png'}")
    print(f"round time / floor: {rows[1]['over_floor']:.2f}x")
    if args.sizes:
        print("\nHarrell's C-index, ours vs lifelines (values asserted equal):")
        cindex_main(["--sizes", *map(str, args.sizes)])


if __name__ == "__main__":
    main()
