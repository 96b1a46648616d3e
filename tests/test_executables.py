"""The executable store: programs kept on disk load without a trace and compute the same bits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd import executables
from fedjax_rhd.executables import stored_jit

TRACES: list[int] = []


# A constant of this test session inside the program (min(x, 1e6 + SALT) is x for the inputs here):
# JAX's persistent cache, on in a worker that ran a CLI test, never holds the program, so XLA
# compiles it here and the store keeps it.
SALT = float(time.time_ns() % 1_000_003)


@stored_jit(static_argnames=("power",))
def _scaled_ramp(x: jax.Array, scale: jax.Array, power: int) -> jax.Array:
    TRACES.append(power)  # runs only while tracing
    # an iota and a conversion fused with the input: the kind of program whose reload once failed
    return (jnp.arange(x.shape[0], dtype=jnp.float32) * scale + jnp.minimum(x, 1e6 + SALT)) ** power


@pytest.fixture
def store(tmp_path):
    """A fresh store folder for one test; the process's previous store is restored after it."""
    before = executables.store()
    executables.enable_store(tmp_path / "executables")
    executables.forget(_scaled_ramp.jitted)
    _scaled_ramp.jitted.clear_cache()
    yield tmp_path / "executables"
    executables.forget(_scaled_ramp.jitted)
    if before is None:
        executables.disable_store()
    else:
        executables.enable_store(before)


def _reload_from_disk() -> None:
    executables.forget(_scaled_ramp.jitted)
    _scaled_ramp.jitted.clear_cache()


def test_a_stored_program_loads_without_tracing_and_gives_the_same_bits(store):
    x = np.linspace(-1.0, 1.0, 7, dtype=np.float32)
    first = np.asarray(_scaled_ramp(x, np.float32(0.5), power=3))
    expected = (np.arange(7, dtype=np.float32) * np.float32(0.5) + x) ** 3
    np.testing.assert_allclose(first, expected, rtol=1e-6)
    assert TRACES[-1:] == [3] and len(list(store.glob("*.bin"))) == 1
    traces, loads = len(TRACES), executables.LOADS[_name()]
    _reload_from_disk()
    again = np.asarray(_scaled_ramp(x, np.float32(0.5), power=3))
    assert len(TRACES) == traces  # no trace: the program came from the file
    assert executables.LOADS[_name()] == loads + 1
    np.testing.assert_array_equal(again, first)


def test_a_runs_program_list_makes_the_next_run_read_its_programs_ahead(store):
    """A run's list names the programs it used; the next run of the same configuration has them read
    by a background thread, and takes them from it without a trace, with the same bits."""
    # a shape and power no other test compiles: JAX's cache in this worker must not hold the program
    x = np.linspace(-1.0, 1.0, 9, dtype=np.float32)
    first = np.asarray(_scaled_ramp(x, np.float32(2.0), power=5))
    run = {"use_case": "mds", "seed": {"split": 3}}
    executables.remember_run_programs(run)
    (listed,) = (store / "runs").glob("*.txt")
    (program,) = store.glob("*.bin")
    assert program.stem in listed.read_text().split()
    _reload_from_disk()
    assert executables.start_run_programs({**run, "seed": {"split": 4}}) == 0  # another configuration
    assert executables.start_run_programs(run) >= 1
    traces, ahead = len(TRACES), executables.PREFETCHED[_name()]
    np.testing.assert_array_equal(np.asarray(_scaled_ramp(x, np.float32(2.0), power=5)), first)
    assert len(TRACES) == traces and executables.PREFETCHED[_name()] == ahead + 1
    # a program this process already holds is not read again (a sweep worker's earlier jobs)
    assert executables.start_run_programs(run) == 0


def test_a_new_static_value_or_shape_is_a_new_program(store):
    x = np.ones(4, np.float32)
    _scaled_ramp(x, np.float32(1.0), power=2)
    _scaled_ramp(x, np.float32(2.0), power=2)  # a traced value: the same program
    assert len(list(store.glob("*.bin"))) == 1
    _scaled_ramp(x, np.float32(1.0), power=3)
    _scaled_ramp(np.ones(5, np.float32), np.float32(1.0), power=2)
    assert len(list(store.glob("*.bin"))) == 3


def test_keys_name_everything_and_refuse_process_addresses():
    tree = jax.tree.structure(((), {"x": 0}))
    avals = (jax.typeof(np.ones(3, np.float32)),)
    key = executables.program_key("f", (("power", 2),), tree, avals)
    assert key is not None and len(key) == 64
    assert executables.program_key("g", (("power", 2),), tree, avals) != key
    assert executables.program_key("f", (("power", 3),), tree, avals) != key
    assert executables.program_key("f", (("power", 2),), tree, (jax.typeof(np.ones(4, np.float32)),)) != key
    assert executables.program_key("f", (("power", 2),), tree, (jax.typeof(np.ones(3, np.int32)),)) != key
    assert executables.program_key("f", (object(),), tree, avals) is None  # repr holds " at 0x..."


def test_the_package_source_is_part_of_every_key(tmp_path, monkeypatch):
    tree = jax.tree.structure(((), {"x": 0}))
    avals = (jax.typeof(np.ones(3, np.float32)),)
    before = executables.program_key("f", (), tree, avals)
    monkeypatch.setattr(executables, "source_digest", lambda: "an edited package")
    assert executables.program_key("f", (), tree, avals) != before


def test_an_unreadable_file_is_counted_and_the_program_compiled_again(store):
    x = np.ones(3, np.float32)
    first = np.asarray(_scaled_ramp(x, np.float32(1.0), power=2))
    (path,) = store.glob("*.bin")
    path.write_bytes(b"not a program")
    _reload_from_disk()
    failed, traces = executables.FAILED_LOADS[_name()], len(TRACES)
    np.testing.assert_array_equal(np.asarray(_scaled_ramp(x, np.float32(1.0), power=2)), first)
    assert executables.FAILED_LOADS[_name()] == failed + 1 and len(TRACES) == traces + 1


def test_inside_another_trace_the_function_is_traced_inline(store):
    @jax.jit
    def outer(x):
        return _scaled_ramp(x, jnp.float32(1.0), power=2).sum()

    assert float(outer(np.zeros(3, np.float32))) == pytest.approx(0.0 + 1.0 + 4.0)
    assert not list(store.glob("*.bin"))  # nothing stored for a call made with tracers


def test_off_the_store_it_is_plain_jit(tmp_path):
    before = executables.store()
    executables.disable_store()
    try:
        assert (
            executables.compiled_program("f", jax.jit(lambda x: x), (), (np.ones(2),), lambda: None) is None
        )
    finally:
        if before is not None:
            executables.enable_store(before)


def _name() -> str:
    return f"{__name__}._scaled_ramp"


# Four processes. With cache A: the first fills JAX's persistent cache only; the second finds the
# program there and must not store it (an executable JAX reloaded from its cache and serialized
# again failed to run after loading: "Function ... not found"). With a fresh cache B: the third
# compiles the program itself and stores it; the fourth loads it without tracing. Each prints its
# result's bytes in hex, its traces, its loads and the programs in its store.
_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    import jax, jax.numpy as jnp
    from fedjax_rhd import executables
    from fedjax_rhd.jax_setup import enable_compilation_cache
    cache = enable_compilation_cache(sys.argv[1])
    if sys.argv[2] == "no-store":
        executables.disable_store()
    traced = []

    @executables.stored_jit()
    def ramp(x):
        traced.append(1)
        return jnp.exp(jnp.arange(x.shape[0], dtype=jnp.float32) * 0.25 + x).cumsum()

    out = np.asarray(ramp(np.linspace(0, 1, 33, dtype=np.float32)))
    stored = len(list((cache / "executables").glob("*.bin")))
    print(out.tobytes().hex(), len(traced), sum(executables.LOADS.values()), stored)
    """
)


def test_only_programs_xla_compiled_here_are_stored_and_they_run_in_a_new_process(tmp_path):
    script = tmp_path / "ramp.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def run(cache: str, mode: str) -> list[str]:
        command = [sys.executable, str(script), str(tmp_path / cache), mode]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()

    plain, served = run("a", "no-store"), run("a", "store")
    compiled, loaded = run("b", "store"), run("b", "store")
    assert plain[1:] == ["1", "0", "0"]  # traced, nothing stored
    assert served[1:] == ["1", "0", "0"]  # JAX's cache served it: used, not stored
    assert compiled[1:] == ["1", "0", "1"]  # XLA compiled it here: stored
    assert loaded[1:] == ["0", "1", "1"]  # no trace: loaded from the store
    assert plain[0] == served[0] == compiled[0] == loaded[0]  # the same bits in all four processes


def test_the_store_is_trimmed_oldest_first(tmp_path):
    for i, size in enumerate((300, 200, 100)):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(b"x" * size)
        os.utime(path, (1000 + i, 1000 + i))
    assert executables.trim(tmp_path, 250) == 2  # 600 bytes: drop the oldest (300), then the next (200)
    assert sorted(p.name for p in tmp_path.glob("*.bin")) == ["2.bin"]
    assert executables.trim(tmp_path, 100) == 0
