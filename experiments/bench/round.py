"""Benchmark: one FedAvg DeepSurv round on the five-node simulated MDS split.

Prints, measured side by side in one run on this machine:
  * compile time of the jitted round and steady seconds per round;
  * seconds per full-batch local step (one node, one optimiser step);
  * the step's floating-point work (analytic count for the MLP, and XLA's own
    cost analysis) against this machine's float32 matmul rate measured here,
    with and without the padding rows counted;
  * Harrell's C-index time at 10k / 100k / 1M rows against lifelines (equal values).

Run:  python experiments/bench/round.py            (about a minute on 2 cores)
      python experiments/bench/round.py --sizes 10000 100000   (skip the 1M C-index)
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds after compilation")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
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
    train = jax.tree.map(jnp.asarray, data.train)
    state = algorithm.init(model.init(jax.random.key(0)), data.num_nodes)
    key = jax.random.key(1)

    start = time.perf_counter()
    traces = TRACE_COUNTS["round"]
    state, _ = federated_round(spec, state, train, key)
    jax.block_until_ready(state)
    first = time.perf_counter() - start

    def one_round() -> None:
        nonlocal state
        state, _ = federated_round(spec, state, train, key)
        jax.block_until_ready(state)

    per_round = _time(one_round, args.rounds)
    compile_s = first - per_round

    # One full-batch step on the largest node (gradient + Adam update), jitted alone.
    node0 = jax.tree.map(lambda a: a[0], train)
    grad = jax.jit(jax.grad(lambda p, b, k: model.loss(p, b, k)[0]))
    params = state.params
    grad(params, node0, key)
    step_s = _time(lambda: jax.block_until_ready(grad(params, node0, key)), 50)
    xla_cost = grad.lower(params, node0, key).compile().cost_analysis()
    xla_flops = float((xla_cost[0] if isinstance(xla_cost, list) else xla_cost).get("flops", np.nan))

    d_in = data.num_features * (2 if model_config.use_observed_mask else 1)
    layers = [d_in, *model_config.hidden, 1]
    padded_rows, real_rows = int(node0.x.shape[0]), int(data.n_train[0])
    rate = matmul_rate()
    flops_padded, flops_real = mlp_step_flops(padded_rows, layers), mlp_step_flops(real_rows, layers)

    k, e = data.num_nodes, client.local_epochs
    print(f"five-node split: node rows {data.n_train} padded to {padded_rows}; layers {layers}")
    print(f"round compilations: {TRACE_COUNTS['round'] - traces}")
    print(f"compile time of the round:        {compile_s:8.3f} s")
    print(f"steady time per round:            {per_round * 1e3:8.2f} ms  ({k} nodes x {e} steps, vmapped)")
    useful = sum(data.n_train) / (k * padded_rows)
    print(f"rows in the stacked round that are patients (not padding): {useful:.1%}")
    print(f"per node-step within the round:   {per_round / (k * e) * 1e3:8.3f} ms")
    print(f"one full-batch step (node1 alone): {step_s * 1e3:8.3f} ms (gradient only)")
    print(f"machine float32 matmul rate:      {rate:8.1f} GFLOP/s (1024x1024, measured now)")
    print(
        f"step FLOPs, analytic matmuls:     {flops_padded / 1e6:8.2f} MFLOP with padding, "
        f"{flops_real / 1e6:.2f} MFLOP real rows; XLA cost analysis {xla_flops / 1e6:.2f} MFLOP"
    )
    for label, flops in (("with padding", flops_padded), ("real rows only", flops_real)):
        achieved = flops / step_s / 1e9
        share = achieved / rate
        print(f"achieved ({label:>14}):     {achieved:8.2f} GFLOP/s = {share:6.1%} of the matmul rate")
    print("\nHarrell's C-index, ours vs lifelines (values asserted equal):")
    cindex_main(["--sizes", *map(str, args.sizes)])


if __name__ == "__main__":
    main()
