"""JAX process settings: the persistent compilation cache and the executable store."""

from __future__ import annotations

import os
from pathlib import Path

import jax

from fedjax_rhd import executables

DEFAULT_CACHE = Path.home() / ".cache" / "fedjax_rhd" / "jax"


def cache_dir() -> Path:
    """The persistent compilation cache's folder: ``$FEDJAX_RHD_JAX_CACHE``, else ``DEFAULT_CACHE``."""
    return Path(os.environ.get("FEDJAX_RHD_JAX_CACHE", DEFAULT_CACHE))


def enable_compilation_cache(path: str | Path | None = None) -> Path:
    """Turn on JAX's persistent compilation cache for every compile.

    ``jax_persistent_cache_min_compile_time_secs`` defaults to 1 s, which would
    skip our sub-second compiles; 0 caches all of them, so a second process
    (the next job of a sweep, the next CLI call) loads instead of compiling.
    Beside it, ``executables/`` keeps the spec-jitted programs themselves, so a new process
    skips their tracing and lowering too (``fedjax_rhd.executables``);
    ``FEDJAX_RHD_EXECUTABLE_STORE=0`` leaves it off.
    ``FEDJAX_RHD_JAX_CACHE`` overrides the location.
    """
    cache = Path(path or cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if os.environ.get("FEDJAX_RHD_EXECUTABLE_STORE", "1") != "0":
        executables.enable_store(cache / "executables")
    else:  # the persistent cache alone (benchmarks compare; a suspected stale program is ruled out)
        executables.disable_store()
    return cache
