"""The backend registry, the simulator's config dataclasses and ``SimulatorBackend`` through the loop."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from fedjax_rhd.config import schema as structured_schema
from fedjax_rhd.data.buckets import bucket_nodes, plan_buckets
from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.federation.faults import Failures, NodeDown, NodeSlowdown, Timing
from fedjax_rhd.federation.loop import TrainSchedule, run_federation
from fedjax_rhd.federation.participation import RoundPolicy, Sampling
from fedjax_rhd.federation.registry import BACKENDS, make_backend
from fedjax_rhd.federation.simulator import (
    SimulatorBackend,
    SimulatorConfig,
    broadcast,
    federated_round,
    node_losses,
)
from fedjax_rhd.strategies import build_algorithm, build_model
from tests.federation.conftest import spec_of

# --- config dataclasses ------------------------------------------------------------------------------


def test_simulator_config_coerces_lists_and_dicts_and_stays_hashable():
    config = SimulatorConfig(
        failures={"probability": 0.1, "down": [{"node": "node3", "from_round": 4}]},
        timing=Timing(slowdown=[NodeSlowdown("node2", 10.0)]),
    )
    assert config.failures == Failures(0.1, (NodeDown("node3", 4),))
    assert config.timing.slowdown == (NodeSlowdown("node2", 10.0),)
    assert hash(config) == hash(dataclasses.replace(config))
    assert RoundPolicy(sampling={"fraction": 0.5, "min_nodes": 2}).sampling == Sampling(0.5, 2)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Sampling(fraction=0.0), r"strategy.sampling.fraction must be in \(0, 1\], got 0.0"),
        (lambda: Sampling(min_nodes=0), "strategy.sampling.min_nodes must be >= 1"),
        (lambda: RoundPolicy(min_nodes=0), "strategy.min_nodes must be >= 1"),
        (lambda: Failures(probability=1.0), r"backend.failures.probability must be in \[0, 1\)"),
        (lambda: Failures(down=[{"node": "n", "from_round": 0}]), "node 'n' from_round must be >= 1"),
        (lambda: SimulatorConfig(time_limit=0.0), "backend.time_limit must be > 0 seconds or null"),
        (lambda: Timing(jitter=-1.0), "backend.timing.seconds_per_row must be > 0 and jitter >= 0"),
        (lambda: NodeSlowdown("n", 0.0), "backend.timing.slowdown: node 'n' factor must be > 0"),
        (lambda: SimulatorConfig(name="flower"), "backend.name must be 'simulator'"),
    ],
)
def test_config_errors_name_the_key(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_simulator_config_as_an_omegaconf_schema():
    # A top-level merge works on OmegaConf's own structured node (frozen: read-only) ...
    top = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SimulatorConfig), {"time_limit": 2.5}))
    assert top == SimulatorConfig(time_limit=2.5)
    # ... nested keys need the writable schema node; to_object still builds the frozen classes.
    override = {
        "failures": {"probability": 0.05, "down": [{"node": "node3", "from_round": 4}]},
        "timing": {"jitter": 0.2, "slowdown": [{"node": "node2", "factor": 10}]},
    }
    config = OmegaConf.to_object(OmegaConf.merge(structured_schema(SimulatorConfig), override))
    assert config == SimulatorConfig(
        failures=Failures(0.05, (NodeDown("node3", 4),)),
        timing=Timing(jitter=0.2, slowdown=(NodeSlowdown("node2", 10.0),)),
    )
    assert isinstance(config.failures.down, tuple) and hash(config)
    with pytest.raises(Exception, match="Key 'nod' not in 'NodeDown'"):
        OmegaConf.merge(structured_schema(SimulatorConfig), {"failures": {"down": [{"nod": "node3"}]}})
    with pytest.raises(Exception, match="could not be converted to Integer"):
        OmegaConf.merge(
            structured_schema(SimulatorConfig), {"failures": {"down": [{"node": "n", "from_round": "x"}]}}
        )


def test_registered_schema_composes_with_hydra_overrides(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(
        name="test_backend_schema", node=structured_schema(BACKENDS["simulator"].config)
    )
    (tmp_path / "backend.yaml").write_text(
        "defaults:\n  - test_backend_schema\n  - _self_\nfailures:\n  probability: 0.0\n  down: []\n"
    )
    overrides = ["failures.down=[{node: node3, from_round: 4}]", "time_limit=2.5", "timing.jitter=0.1"]
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        cfg = compose(config_name="backend", overrides=overrides)
    config = OmegaConf.to_object(cfg)
    assert config == SimulatorConfig(
        failures=Failures(down=(NodeDown("node3", 4),)), time_limit=2.5, timing=Timing(jitter=0.1)
    )


# --- registry ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Impostor:
    name: str = "simulator"


def test_make_backend_dispatches_by_name_or_config(data3):
    spec = spec_of(data3)
    by_name = make_backend("simulator", data3, spec)
    assert isinstance(by_name, SimulatorBackend) and by_name.config == SimulatorConfig()
    assert isinstance(by_name, Backend)
    config = SimulatorConfig(time_limit=3.0)
    assert make_backend(config, data3, spec, seed_failure=4).config is config
    with pytest.raises(
        ValueError, match=r"backend='grpc': unknown backend; known backends: \['flower', 'simulator'\]"
    ):
        make_backend("grpc", data3, spec)
    with pytest.raises(TypeError, match="takes a SimulatorConfig, got a Impostor"):
        make_backend(Impostor(), data3, spec)
    with pytest.raises(ValueError, match="backend.failures.down: no node named 'node9'"):
        make_backend(SimulatorConfig(failures=Failures(down=(NodeDown("node9"),))), data3, spec)


# --- the simulator through the loop ------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["fedavg", "local"])
def test_loop_adds_nothing_to_the_jitted_round(data3, strategy):
    """run_federation + SimulatorBackend = the jitted round and evaluation applied by hand."""
    spec = spec_of(data3, strategy)
    schedule = TrainSchedule(rounds=3, patience=None, seed_init=1, seed_train=2)
    backend = make_backend("simulator", data3, spec)
    sim = run_federation(backend, schedule, progress=False)

    k = data3.num_nodes
    # the simulator trains each node padded to its size class (data/buckets.py)
    buckets = bucket_nodes(data3.train, data3.n_train, plan_buckets(data3.n_train))
    train, val = jax.tree.map(jnp.asarray, buckets), jax.tree.map(jnp.asarray, data3.val)
    state = build_algorithm(spec).init(build_model(spec).init(jax.random.key(1)), k)
    personalized = strategy == "local"
    train_key = jax.random.key(2)
    for r in range(1, 4):
        state, _ = federated_round(spec, state, train, jax.random.fold_in(train_key, r), jnp.ones(k))
        held = state.params if personalized else broadcast(state.params, k)
        val_loss = np.asarray(node_losses(spec, held, val), dtype=np.float64)
        assert sim.rounds[r - 1]["val_loss"] == val_loss.tolist()
    # validation loss falls every round here, so the last round is the selected one
    assert sim.best_round == 3
    if personalized:
        expected_nodes = state.params
    else:
        for a, b in zip(jax.tree.leaves(sim.global_params), jax.tree.leaves(state.params), strict=True):
            np.testing.assert_array_equal(a, b)
        final_key = jax.random.fold_in(train_key, 4)
        expected_nodes = federated_round(spec, state, train, final_key, jnp.ones(k))[1].params
    for a, b in zip(jax.tree.leaves(sim.node_params), jax.tree.leaves(expected_nodes), strict=True):
        np.testing.assert_array_equal(a, b)
    risks = backend.test_risks(sim.node_params)
    assert risks.shape == (k, len(data3.test_patient_ids)) and risks.dtype == np.float32


def test_second_run_with_the_same_spec_reuses_the_compiled_round(data3):
    spec = spec_of(data3)
    schedule = TrainSchedule(rounds=2, patience=None)
    run_federation(make_backend("simulator", data3, spec), schedule, progress=False)
    again = run_federation(make_backend("simulator", data3, spec, seed_failure=3), schedule, progress=False)
    assert again.round_compilations == 0
