"""A real cohort adapter's code fingerprint, recorded in its dataset card like a simulator's.

A dataset built by an older adapter (before a parsing or scoring fix) must not be reused: the
cached card records the sha256 of the adapter's and reader's source files, and a cache whose
fingerprint differs is refused naming the folder to delete (``harmonize.datasets``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from harmonize.guide import Guide


def code_fingerprint(*modules: ModuleType) -> Callable[[Guide, Mapping[str, Any]], str]:
    """``fingerprint(guide, options) -> 12 hex digits`` of the modules' source files."""

    def fingerprint(guide: Guide, options: Mapping[str, Any]) -> str:
        del guide, options  # the code alone decides how the public files are read
        digest = hashlib.sha256()
        for module in modules:
            path = Path(module.__file__ or "")
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:12]

    return fingerprint
