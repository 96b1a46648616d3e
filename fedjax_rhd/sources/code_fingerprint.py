"""A real cohort's code fingerprint and input files, recorded in its dataset card.

A dataset built by an older adapter (before a parsing or scoring fix) must not be reused: the
cached card records the sha256 of the adapter's and reader's source files, and a cache whose
fingerprint differs is refused naming the folder to delete (``harmonize.datasets``). Likewise
the cohort's public files (:func:`cohort_inputs`): a re-downloaded release makes the cache stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from fedjax_rhd.cohorts import resolve_real_data_root
from harmonize.guide import Guide
from harmonize.inputs import Inputs, folder_inputs


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


def cohort_inputs(folder: str) -> Inputs:
    """``inputs(guide, options)``: every file of the cohort's ``folder`` under the real-data root."""

    def inputs(guide: Guide, options: Mapping[str, Any]) -> dict[str, Path]:
        del guide
        return folder_inputs(resolve_real_data_root(options.get("root")) / folder)

    return inputs
