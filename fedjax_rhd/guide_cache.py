"""Parse each guide once per process: a multirun worker runs many jobs on the same guide.

``harmonize.guide.load_guide`` parses and validates YAML; the ``mds_wsi`` guide (a
1,536-dimensional embedding as features) takes seconds, which every job of a sweep paid
again. Guides are frozen dataclasses, so one parsed object can serve every run; the
cache key includes the file's modification time, so an edited guide is parsed afresh.
"""

from __future__ import annotations

import functools
from pathlib import Path

from harmonize.guide import Guide, guide_file, load_guide


@functools.lru_cache(maxsize=32)
def _parsed(use_case_or_path: str, resolved: str, mtime_ns: int | None) -> Guide:
    del resolved, mtime_ns  # part of the key only
    return load_guide(use_case_or_path)


def cached_guide(use_case_or_path: str | Path) -> Guide:
    """``load_guide(use_case_or_path)``, parsed once per process while the file is unchanged.

    Errors are never cached: a missing or malformed guide raises on every call, as
    ``load_guide`` does.
    """
    path = guide_file(use_case_or_path)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = None  # load_guide raises its own FileNotFoundError
    return _parsed(str(use_case_or_path), str(path.resolve()), mtime)
