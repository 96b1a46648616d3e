"""Compiled programs kept on disk, so a new process calls them without tracing or lowering them.

JAX's persistent compilation cache (``jax_setup``) skips XLA's compile in a new process, but every
jitted function is still traced to a jaxpr and lowered to StableHLO before the cache is consulted:
on a warm centralised IWG-PM run that was about 0.5 s for the round alone, a quarter of the run.
This store keeps the compiled executable itself (``jax.experimental.serialize_executable``) under
a key that names everything the program depends on, so a later process loads it in milliseconds.

The key (``program_key``) is the SHA-256 of

* the function's module and name, the **source of the whole ``fedjax_rhd`` package** and of the
  function's own file (for a function defined outside the package): any edit to any module gives
  new keys, so nothing stale is ever loaded after a code change;
* ``repr`` of the static arguments (the spec's skeleton: a frozen dataclass whose repr lists every
  field), refused when a repr carries an object address (`` at 0x``), which differs per process;
* the argument tree and each leaf's abstract value (shape, dtype, weak type);
* jax and jaxlib versions, the backend, device kind and count, ``XLA_FLAGS`` and the JAX flags that
  change lowering (x64, matmul precision).

A program is stored when XLA compiled it in this process; one that JAX's persistent cache served
is used but not stored (it could not be reloaded: ``_compile_counting_cache_hits``), so the store
fills as programs are first compiled, e.g. on a fresh cache folder, and a source edit that leaves
a program's lowered module unchanged costs what it cost before the store. A program that cannot be
keyed, serialized or loaded is simply traced and compiled as by ``jax.jit``; a load that fails (a
truncated file, another jaxlib) is counted and compiled again.
Files are written to a temporary name and renamed, so concurrent sweep workers never read half
a file. The store is on where ``jax_setup.enable_compilation_cache`` turned the persistent cache
on (every run, the sweep workers, Flower's nodes), in its ``executables/`` folder. Its files are
native code, as JAX's cache entries are: the folder is trusted as that cache is. Every source edit
leaves the previous keys' files behind, so the folder is trimmed to ``MAX_STORE_BYTES`` (oldest
files first) once per process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import pickle
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import jax

from harmonize.identity import atomic_write

PACKAGE_ROOT = Path(__file__).resolve().parent
_STORE: list[Path] = []  # the folder, once enable_store() ran; empty: programs live in the process only
LOADS: Counter[str] = Counter()  # programs loaded from disk in this process, per function name
FAILED_LOADS: Counter[str] = Counter()
PREFETCHED: Counter[str] = Counter()  # of LOADS, those read ahead (start_run_programs)
_USED: list[str] = []  # keys of the stored programs this run called, in first-use order
_HELD: set[str] = set()  # keys of the stored programs this process holds (a sweep worker's earlier jobs)
_AHEAD: dict[str, Future[Any]] = {}  # key -> the prefetch thread's load of it


MAX_STORE_BYTES = 2 * 1024**3
MAX_RUN_LISTS = 5000


def enable_store(folder: str | Path) -> Path:
    """Keep compiled programs in ``folder`` from now on (idempotent; the last call wins)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    if not _STORE or _STORE[0] != path:
        trim(path, MAX_STORE_BYTES)
    _STORE[:] = [path]
    return path


def trim(folder: Path, max_bytes: int) -> int:
    """Delete the oldest stored programs (by modification time) until ``folder`` holds at most
    ``max_bytes``; returns how many were deleted. A file another process removed first is skipped."""
    entries = []
    for path in folder.glob("*.bin"):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total, deleted = sum(size for _, size, _ in entries), 0
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total, deleted = total - size, deleted + 1
    # the runs' program lists (a few hundred bytes each): the newest MAX_RUN_LISTS kept
    lists = []
    for path in (folder / "runs").glob("*.txt"):
        with contextlib.suppress(OSError):
            lists.append((path.stat().st_mtime, path))
    for _, path in sorted(lists)[:-MAX_RUN_LISTS]:
        path.unlink(missing_ok=True)
    return deleted


def disable_store() -> None:
    """Stop reading and writing compiled programs on disk (the process's own stay)."""
    _STORE.clear()


def store() -> Path | None:
    """The folder compiled programs are kept in, or None when the store is off."""
    return _STORE[0] if _STORE else None


@functools.cache
def source_digest() -> str:
    """SHA-256 over every ``.py`` file of the package (path and bytes): the code's identity."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _platform() -> str:
    import jaxlib

    devices = jax.devices()
    flags = (
        jax.config.jax_enable_x64,
        jax.config.jax_default_matmul_precision,
        os.environ.get("XLA_FLAGS", ""),
    )
    versions = f"{jax.__version__}|{jaxlib.__version__}"
    return f"{versions}|{jax.default_backend()}|{devices[0].device_kind}|{len(devices)}|{flags}"


@functools.cache
def file_digest(path: str) -> str:
    """SHA-256 of one source file's bytes ("" where it cannot be read: the key then omits it)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def program_key(
    name: str, static: tuple[Any, ...], tree: Any, avals: tuple[Any, ...], source_file: str = ""
) -> str | None:
    """The store's file name for a program, or None where a static value has no stable repr.

    Args:
        name: the function's qualified name.
        static: its static arguments.
        tree: the traced arguments' tree structure.
        avals: the traced arguments' abstract values.
        source_file: the file defining the function (its bytes join the key).
    """
    text = f"{name}|{static!r}|{tree}|{avals}"
    if " at 0x" in text:
        return None
    code = f"{source_digest()}|{file_digest(source_file) if source_file else ''}"
    return hashlib.sha256(f"{text}|{_platform()}|{code}".encode()).hexdigest()


def load(name: str, key: str) -> Any | None:
    """The compiled program stored under ``key``, or None (absent, or unreadable: counted)."""
    folder = store()
    if folder is None:
        return None
    path = folder / f"{key}.bin"
    if not path.is_file():
        return None
    ahead = _AHEAD.pop(key, None)
    try:
        program = _read_program(path) if ahead is None else ahead.result()
    except Exception:  # a truncated file, another jaxlib: compile again, as without the store
        FAILED_LOADS[name] += 1
        return None
    LOADS[name] += 1
    PREFETCHED[name] += ahead is not None
    return program


def _read_program(path: Path) -> Any:
    from jax.experimental import serialize_executable

    payload, in_tree, out_tree = pickle.loads(path.read_bytes())
    return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)


def _used(key: str) -> None:
    if key not in _USED:
        _USED.append(key)


def _manifest(folder: Path, run: dict[str, Any]) -> Path:
    blob = json.dumps(run, sort_keys=True, default=str).encode() + source_digest().encode()
    return folder / "runs" / f"{hashlib.sha256(blob).hexdigest()}.txt"


def start_run_programs(run: dict[str, Any]) -> int:
    """A run starts: its list of used programs starts empty, and the programs the last run of ``run``
    used start loading on one background thread.

    ``run`` is a run's resolved configuration (JSON-able): the same configuration on the same
    source gives the same shapes, so the same keys. Deserializing releases the GIL (measured: a
    busy main thread keeps ~97 % of its pace beside a load), so the loads overlap the run's data
    loading; :func:`load` takes a prefetched program instead of reading it. Returns how many loads
    were started (0: no store, or no earlier run of this configuration on this source).
    """
    _USED.clear()
    _AHEAD.clear()  # an earlier run's reads it never took: not kept alive in a sweep worker
    folder = store()
    if folder is None:
        return 0
    try:
        keys = _manifest(folder, run).read_text().split()
    except OSError:
        return 0
    # a sweep worker already holds its earlier jobs' programs: read ahead only what it lacks
    keys = [k for k in keys if k not in _HELD and (folder / f"{k}.bin").is_file()]
    if not keys:
        return 0
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedjax-rhd-prefetch")
    for key in keys:  # in the order the last run first used them
        _AHEAD[key] = loader.submit(_read_program, folder / f"{key}.bin")
    loader.shutdown(wait=False)
    return len(keys)


def remember_run_programs(run: dict[str, Any]) -> None:
    """Write the keys of the stored programs this run called (since :func:`start_run_programs`), in
    first-use order, for the next run of ``run``."""
    folder = store()
    if folder is None or not _USED:
        return
    path = _manifest(folder, run)
    try:
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(_USED) + "\n"))
    except OSError:  # a read-only or full disk costs the next run its prefetch, never this run
        pass


def save(key: str, program: Any) -> bool:
    """Write a compiled program under ``key`` (atomically); False where it cannot be serialized."""
    folder = store()
    if folder is None:
        return False
    from jax.experimental import serialize_executable

    try:
        blob = pickle.dumps(serialize_executable.serialize(program))
    except Exception:  # e.g. a program with host callbacks: it stays in this process only
        return False
    try:
        atomic_write(folder / f"{key}.bin", lambda tmp: Path(tmp).write_bytes(blob))
    except OSError:  # a full or read-only disk costs the next process a trace, never this run
        return False
    return True


def compiled_program(
    name: str,
    jitted: Callable[..., Any],
    static: tuple[Any, ...],
    dynamic: tuple[Any, ...],
    lower: Callable[[], Any],
    source_file: str = "",
) -> Any | None:
    """The compiled program for one call: from this process, else from the store, else compiled.

    Args:
        name: the function's qualified name (keys and counts).
        jitted: the ``jax.jit`` object (its identity scopes the in-process table).
        static: the call's static arguments, hashable.
        dynamic: the call's traced arguments (a pytree).
        lower: builds ``jitted.lower(...)`` for this call (run only on a miss).
        source_file: the file defining the function (part of the key).

    Returns:
        A ``jax.stages.Compiled``, or None where the call must go through ``jitted``: the store
        is off (plain ``jax.jit`` behaviour), or an argument is a tracer (inside another trace).
    """
    if store() is None:
        return None
    leaves, tree = jax.tree.flatten(dynamic)
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return None
    avals = tuple(jax.typeof(leaf) for leaf in leaves)
    table = _PROGRAMS.setdefault(id(jitted), {})
    memo = (static, tree, avals)
    known = table.get(memo)
    if known is not None:
        program, key = known
        if key is not None:
            _used(key)
        return program
    key = program_key(name, static, tree, avals, source_file)
    program = load(name, key) if key is not None else None
    if program is None:
        program, from_jax_cache = _compile_counting_cache_hits(lower)
        if key is not None and (from_jax_cache or not save(key, program)):
            key = None  # not on disk: nothing for the next run to read ahead
    if key is not None:
        _used(key)
        _HELD.add(key)
    table[memo] = (program, key)
    return program


_PROGRAMS: dict[int, dict[tuple[Any, ...], tuple[Any, str | None]]] = {}  # memo -> (program, stored key)


def _compile_counting_cache_hits(lower: Callable[[], Any]) -> tuple[Any, bool]:
    """``(lower().compile(), whether JAX's persistent cache served it)``.

    Only XLA's own output may be stored. Measured (jaxlib 0.10.2, CPU): an executable that JAX
    loaded from its persistent cache and that was serialized again fails when called after
    loading ("Function iota_convert_fusion not found"): the reloaded CPU executable no longer
    carries its compiled functions. Such a program is used in this process and not stored; the
    next process traces it and loads it from JAX's cache as without the store. (Compiling it
    afresh instead would cost a full XLA compile after every source edit, which JAX's cache, keyed
    on the lowered module, would have skipped.)
    """
    if not _LISTENING:
        jax.monitoring.register_event_listener(_on_event)
        _LISTENING.append(True)
    hits = _CACHE_HITS[0]
    program = lower().compile()
    return program, _CACHE_HITS[0] != hits


_CACHE_HITS = [0]
_LISTENING: list[bool] = []


def _on_event(event: str, **_: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _CACHE_HITS[0] += 1


def call(
    name: str,
    jitted: Callable[..., Any],
    static: dict[str, Any],
    dynamic: dict[str, Any],
    source_file: str = "",
) -> Any:
    """``jitted(**dynamic, **static)``, through the store's program where there is one.

    Args:
        name: the function's qualified name (keys and counts).
        jitted: the ``jax.jit`` object, whose static arguments are exactly ``static``'s names.
        static: the static arguments by name (hashable values).
        dynamic: the traced arguments by name.
        source_file: the file defining the function (part of the key).
    """
    program = compiled_program(
        name,
        jitted,
        tuple(sorted(static.items())),
        ((), dynamic),
        lambda: jitted.lower(**dynamic, **static),
        source_file,
    )
    if program is None:
        return jitted(**dynamic, **static)
    return program(**dynamic)


def forget(jitted: Callable[..., Any]) -> None:
    """Drop this process's programs of one jitted function (the next call loads or compiles)."""
    for _, key in _PROGRAMS.pop(id(jitted), {}).values():
        _HELD.discard(key)


F = TypeVar("F", bound=Callable[..., Any])


def stored_jit(*, static_argnames: tuple[str, ...] = ()) -> Callable[[F], F]:
    """``jax.jit`` whose compiled programs go through the store (a module-level function only).

    For the small eager steps of a run (a model's initial parameters, the Breslow baseline and the
    survival curves of the final metrics): each eager ``jax.numpy`` call is lowered on its own the
    first time in a process, dozens of them per run; one stored program replaces them. The key is
    the function's name, the static arguments and the arguments' abstract values (see
    :func:`program_key`). The wrapped function keeps ``jitted`` (the ``jax.jit`` object).
    """

    def decorate(fn: F) -> F:
        jitted = jax.jit(fn, static_argnames=static_argnames)
        signature = inspect.signature(fn)
        name = f"{fn.__module__}.{fn.__qualname__}"
        source_file = inspect.getsourcefile(fn) or ""

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            arguments = signature.bind(*args, **kwargs).arguments
            static = {key: arguments.pop(key) for key in static_argnames if key in arguments}
            return call(name, jitted, static, arguments, source_file)

        wrapped.jitted = jitted  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorate
