"""The backend-neutral round loop on a fake backend: pure numpy, no rows, hand-made losses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from fedjax_rhd.federation import loop as loop_module
from fedjax_rhd.federation.backend import Backend, RoundOutput
from fedjax_rhd.federation.loop import TrainSchedule, run_federation
from fedjax_rhd.federation.participation import (
    RoundPolicy,
    RunInterrupted,
    Sampling,
    TooFewNodes,
    sample_nodes,
)
from fedjax_rhd.federation.run_state import ResumeRefused, load_loop_state, read_identity
from fedjax_rhd.typing import ServerState

NAMES = ("a", "b", "c")


class FakeBackend:
    """Three nodes that hold no rows: params count rounds, losses come from a table.

    Global strategies: params {"w": f32[]} = rounds aggregated; the federation's
    validation loss in round r is ``table[r]`` for every node. Personalised: params
    {"w": f32[K]}; node k's loss is ``table[w_k][k]``.
    """

    def __init__(self, table, *, personalized=False, failing=None):
        self.table = np.asarray(table, dtype=np.float64)  # [rounds + 1, K] (row 0 unused)
        self._personalized = personalized
        self.failing = failing or {}  # round -> bool[K] nodes that fail
        self.calls = []

    node_names = NAMES
    n_train = (10, 20, 30)
    n_val = (1, 2, 1)
    n_val_events = (1, 1, 0)

    @property
    def personalized(self):
        return self._personalized

    def init_state(self, rng):
        self.calls.append(("init", jax.random.key_data(rng).tolist()))
        w = np.zeros(3 if self._personalized else (), np.float32)
        return ServerState({"w": w}, (), np.int32(0))

    def run_round(self, state, round_index, rng, sampled):
        self.calls.append(("round", round_index, jax.random.key_data(rng).tolist(), sampled.tolist()))
        failed = sampled & self.failing.get(round_index, np.zeros(3, dtype=bool))
        returned = sampled & ~failed
        w = np.asarray(state.params["w"])
        new_w = w + returned if self._personalized else w + 1
        return RoundOutput(
            state=ServerState({"w": np.asarray(new_w, np.float32)}, (), np.int32(round_index)),
            train_loss=np.array([0.5, 1.5, 2.5]) + round_index,
            client_params={"w": np.full(3, round_index, np.float32)},
            failed=failed,
            timed_out=np.zeros(3, dtype=bool),
        )

    def validation_losses(self, params):
        w = np.asarray(params["w"]).astype(int)
        if self._personalized:
            return self.table[w, np.arange(3)]
        return self.table[int(w)]

    def final_node_models(self, state, rng):
        self.calls.append(("final", jax.random.key_data(rng).tolist()))
        w = np.asarray(state.params["w"])
        return {"w": w if self._personalized else np.full(3, w, np.float32)}

    def test_risks(self, stacked_params):
        raise AssertionError("the loop never looks at the test set")

    def compilations(self):
        return 0

    def finetune(self, params, rng, epochs):
        raise AssertionError("the loop never fine-tunes")

    def node_statistic(self, name, inputs, params=None, nodes=None):
        raise AssertionError("the loop asks for no node statistic")

    def close(self):
        pass


def _fed(values):
    """A table whose every node has the same loss per round (row 0 unused)."""
    return np.repeat(np.asarray([np.nan, *values])[:, None], 3, axis=1)


def test_fake_backend_is_a_backend():
    assert isinstance(FakeBackend(_fed([1.0])), Backend)


def test_selection_and_patience_on_federated_validation():
    backend = FakeBackend(_fed([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0, 1.0]))
    sim = run_federation(backend, TrainSchedule(rounds=8, patience=3, seed_train=7), progress=False)
    # best at round 3, then three rounds without gain: round 7 never runs
    assert sim.best_round == 3 and len(sim.rounds) == 6
    assert float(sim.global_params["w"]) == 3.0  # the selected round's server state
    assert [r["val_loss_federated"] for r in sim.rounds] == [5.0, 4.0, 3.0, 3.5, 3.2, 3.1]
    # the final models start from the selected state, with the key of the round after the last
    train_key = jax.random.key(7)
    assert backend.calls[-1] == ("final", jax.random.key_data(jax.random.fold_in(train_key, 7)).tolist())
    rounds = [c for c in backend.calls if c[0] == "round"]
    assert [c[2] for c in rounds] == [
        jax.random.key_data(jax.random.fold_in(train_key, r)).tolist() for r in range(1, 7)
    ]
    np.testing.assert_array_equal(sim.node_params["w"], [3.0, 3.0, 3.0])
    assert sim.round_compilations == 0 and len(sim.round_seconds) == 5


def test_federated_validation_is_weighted_by_validation_patients():
    table = np.array([[np.nan] * 3, [1.0, 2.0, 4.0]])
    sim = run_federation(FakeBackend(table), TrainSchedule(rounds=1, patience=None), progress=False)
    (record,) = sim.rounds
    assert record["val_loss"] == [1.0, 2.0, 4.0]
    assert record["val_loss_federated"] == pytest.approx((1 * 1.0 + 2 * 2.0 + 1 * 4.0) / 4)


def test_events_weighted_validation_is_the_pooled_loss_per_event_and_few_events_are_warned(caplog):
    # validation events per node (1, 1, 0): the third node's loss cannot move the choice of round
    table = np.array([[np.nan] * 3, [1.0, 2.0, 4.0]])
    schedule = TrainSchedule(rounds=1, patience=None, validation_weights="events")
    with caplog.at_level("WARNING"):
        sim = run_federation(FakeBackend(table), schedule, progress=False)
    assert sim.rounds[0]["val_loss_federated"] == pytest.approx((1 * 1.0 + 1 * 2.0 + 0 * 4.0) / 2)
    assert "fewer than 5 events" in caplog.text and "a (1), b (1), c (0)" in caplog.text


def test_fixed_budget_keeps_the_last_round_whatever_the_validation_loss():
    backend = FakeBackend(_fed([1.0, 2.0, 3.0]))  # validation gets worse every round
    sim = run_federation(backend, TrainSchedule(rounds=3, patience=None, selection="last"), progress=False)
    assert sim.best_round == 3 and float(sim.global_params["w"]) == 3.0
    with pytest.raises(ValueError, match="selection=last trains a fixed budget: set strategy.patience=null"):
        TrainSchedule(rounds=3, patience=2, selection="last")
    with pytest.raises(ValueError, match="strategy.selection='best'"):
        TrainSchedule(selection="best")


def test_without_validation_rows_a_run_needs_the_fixed_budget():
    backend = FakeBackend(_fed([1.0, 2.0]))
    backend.n_val = (0, 0, 0)
    with pytest.raises(ValueError, match="split.val_fraction=0.*set strategy.selection=last"):
        run_federation(backend, TrainSchedule(rounds=2, patience=None), progress=False)
    sim = run_federation(backend, TrainSchedule(rounds=2, patience=None, selection="last"), progress=False)
    assert sim.best_round == 2
    assert [r["val_loss"] for r in sim.rounds] == [[None] * 3] * 2
    assert all(r["val_loss_federated"] is None for r in sim.rounds)


def test_personalized_selection_keeps_each_nodes_best_round():
    table = [[np.nan] * 3, [3.0, 3.0, 1.0], [1.0, 2.5, 2.0], [2.0, 1.0, 3.0], [2.5, 2.0, 4.0]]
    sim = run_federation(
        FakeBackend(table, personalized=True), TrainSchedule(rounds=4, patience=None), progress=False
    )
    assert sim.global_params is None
    np.testing.assert_array_equal(sim.node_params["w"], [2.0, 3.0, 1.0])  # each node's own best round
    assert sim.best_round == 3  # the last round in which any node improved


def test_participation_is_recorded_and_absent_nodes_have_no_train_loss():
    failing = {r: np.array([False, False, True]) for r in range(1, 5)}
    backend = FakeBackend(_fed([4.0, 3.0, 2.0, 1.0]), failing=failing)
    policy = RoundPolicy(sampling=Sampling(fraction=0.67))
    sim = run_federation(
        backend, TrainSchedule(rounds=4, patience=None), policy, seed_sample=5, progress=False
    )
    for record in sim.rounds:
        sampled = sample_nodes(5, record["round"], 3, 0.67)
        p = record["participation"]
        assert p["sampled"] == [n for n, s in zip(NAMES, sampled, strict=True) if s]
        assert p["failed"] == (["c"] if sampled[2] else [])
        assert p["aggregated"] == [n for n in p["sampled"] if n != "c"]
        assert [t is not None for t in record["train_loss"]] == [n in p["aggregated"] for n in NAMES]
        assert "simulated_seconds" not in p  # the backend reported no times


def _saved_rounds(monkeypatch):
    saved = []
    real = loop_module.save_loop_state

    def spy(path, loop, train_key, identity):
        saved.append(loop.round)
        return real(path, loop, train_key, identity)

    monkeypatch.setattr(loop_module, "save_loop_state", spy)
    return saved


@pytest.mark.parametrize(
    ("every", "patience", "expected"),
    [
        (1, None, [0, 1, 2, 3, 4, 5, 5]),
        (2, None, [0, 2, 4, 5]),
        (5, None, [0, 5, 5]),  # the end rewrites the round just saved
        (4, 2, [0, 4, 4]),  # patience stops after round 4 (best at 2)
    ],
)
def test_checkpoint_cadence(tmp_path, monkeypatch, every, patience, expected):
    saved = _saved_rounds(monkeypatch)
    backend = FakeBackend(_fed([5.0, 4.0, 4.5, 4.5, 3.0]))
    schedule = TrainSchedule(rounds=5, patience=patience)
    run_federation(backend, schedule, progress=False, checkpoint=tmp_path / "c.npz", checkpoint_every=every)
    assert saved == expected


def test_refused_round_is_dropped_and_the_run_resumes(tmp_path, monkeypatch):
    saved = _saved_rounds(monkeypatch)
    path = tmp_path / "c.npz"
    failing = {r: np.array([False, True, True]) for r in range(3, 6)}
    schedule = TrainSchedule(rounds=5, patience=None)
    losses = _fed([5.0, 4.0, 3.0, 2.0, 1.0])
    with pytest.raises(TooFewNodes, match=r"round 3: 1 node\(s\) returned .*checkpoint after round 2"):
        run_federation(
            FakeBackend(losses, failing=failing),
            schedule,
            RoundPolicy(min_nodes=2),
            progress=False,
            checkpoint=path,
            checkpoint_every=10,
        )
    assert saved == [0, 2]  # round 0 and the stop
    template = FakeBackend(losses).init_state(jax.random.key(0))
    stopped = load_loop_state(path, template, jax.random.key(0))
    assert stopped.round == 2 and float(stopped.state.params["w"]) == 2.0  # round 3's state was dropped
    resumed = run_federation(
        FakeBackend(losses, failing=failing), schedule, progress=False, checkpoint=path, resume=True
    )
    straight = run_federation(FakeBackend(losses, failing=failing), schedule, progress=False)
    assert resumed.rounds == straight.rounds
    assert resumed.best_round == straight.best_round == 5


@pytest.mark.parametrize("damage", ["truncate", "not_a_zip", "no_meta"])
def test_a_tampered_checkpoint_is_refused_naming_the_file(tmp_path, damage):
    """A resume= directory whose checkpoint was truncated or edited: ResumeRefused, never a traceback."""
    path = tmp_path / "c.npz"
    losses = _fed([3.0, 2.0])
    run_federation(
        FakeBackend(losses), TrainSchedule(rounds=2, patience=None), progress=False, checkpoint=path
    )
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not_a_zip":
        path.write_bytes(b"edited by hand")
    else:
        np.savez(path, leaf_00000=np.zeros(1))
    template = FakeBackend(losses).init_state(jax.random.key(0))
    with pytest.raises(ResumeRefused, match=rf"{path}: not a readable checkpoint"):
        read_identity(path)
    with pytest.raises(ResumeRefused, match=rf"{path}: not a readable checkpoint"):
        load_loop_state(path, template, jax.random.key(0))


def test_ctrl_c_stops_after_the_round_with_a_checkpoint(tmp_path):
    path = tmp_path / "c.npz"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job

    def press_ctrl_c(record):
        if record["round"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RunInterrupted, match="stopped by Ctrl-C after round 2; checkpoint: "):
        run_federation(
            FakeBackend(_fed([3.0, 2.0, 1.0])),
            TrainSchedule(rounds=3, patience=None),
            on_round=press_ctrl_c,
            progress=False,
            checkpoint=path,
            checkpoint_every=10,
        )
    template = FakeBackend(_fed([1.0])).init_state(jax.random.key(0))
    assert load_loop_state(path, template, jax.random.key(0)).round == 2
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler restored


def test_callback_sees_parameters_that_the_record_does_not_keep():
    seen = []

    def on_round(record):
        seen.append((record["client_params"]["w"].tolist(), float(record["server_params"]["w"])))
        record["c_index_test_global"] = 0.5  # what the driver adds stays

    sim = run_federation(
        FakeBackend(_fed([2.0, 1.0])),
        TrainSchedule(rounds=2, patience=None),
        on_round=on_round,
        progress=False,
    )
    assert seen == [([1.0, 1.0, 1.0], 1.0), ([2.0, 2.0, 2.0], 2.0)]
    assert all("client_params" not in r and r["c_index_test_global"] == 0.5 for r in sim.rounds)


def test_the_loop_imports_no_backend():
    """Backend-neutral: importing the loop loads neither the simulator nor the data layer."""
    code = (
        "import sys, fedjax_rhd.federation.loop;"
        "print(sorted(m for m in sys.modules if m.startswith(('fedjax_rhd.federation.simulator',"
        " 'fedjax_rhd.data'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_validation_objective_is_the_selected_models_validation_loss():
    sim = run_federation(FakeBackend(_fed([5.0, 4.0, 3.0, 3.5])), TrainSchedule(4, None), progress=False)
    assert sim.best_round == 3 and sim.validation_objective == 3.0
    fixed = run_federation(
        FakeBackend(_fed([5.0, 4.0, 3.0, 3.5])), TrainSchedule(4, None, selection="last"), progress=False
    )
    assert fixed.validation_objective == 3.5  # the kept (last) round's
    table = [[np.nan] * 3, [3.0, 3.0, 1.0], [1.0, 2.5, 2.0]]
    own = run_federation(FakeBackend(table, personalized=True), TrainSchedule(2, None), progress=False)
    # each node's own best (1.0, 2.5, 1.0), weighted by validation patients (1, 2, 1)
    assert own.validation_objective == pytest.approx((1.0 + 2 * 2.5 + 1.0) / 4)


def test_each_node_alone_stops_on_its_own_patience_and_records_its_round():
    # node a improves every round; node b stops improving after round 1; node c after round 2
    table = [
        [np.nan] * 3,
        [5.0, 1.0, 3.0],
        [4.0, 2.0, 2.0],
        [3.0, 2.5, 2.1],
        [2.0, 2.6, 2.2],
        [1.0, 2.7, 2.3],
        [0.5, 2.8, 2.4],
    ]
    backend = FakeBackend(table, personalized=True)
    sim = run_federation(backend, TrainSchedule(rounds=6, patience=2), progress=False)
    assert sim.node_best_rounds == [6, 1, 2]
    # node b (patience 2 after round 1) trains in rounds 1-3 only, node c in rounds 1-4
    sampled = [c[3] for c in backend.calls if c[0] == "round"]
    assert [s[1] for s in sampled] == [True, True, True, False, False, False]
    assert [s[2] for s in sampled] == [True, True, True, True, False, False]
    assert sim.rounds[3]["stopped"] == ["b"] and sim.rounds[5]["stopped"] == ["b", "c"]
    # each node keeps its own best model: a after 6 rounds, b after 1, c after 2
    np.testing.assert_array_equal(sim.node_params["w"], [6.0, 1.0, 2.0])
