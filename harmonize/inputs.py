"""Digests of the files a dataset was built from: the guide, the mappings, the source files.

A cached dataset is only as current as its inputs: a mapping or guide fixed in place, or a
source table re-exported, must never be answered with the old tables. The card's ``source``
record holds ``inputs`` (:func:`input_digests`: a stable label per file -> its sha256), and a
reuse recomputes them (:func:`changed_inputs` names each file that changed, appeared or went
missing). Labels, not absolute paths, are compared, so a project moved to another folder keeps
its caches. Which files a source reads is the source's business: a registration's ``inputs``
(:data:`Inputs`) lists them; the ``csv`` source's are its mappings and the tables they name
(:func:`mapping_inputs`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harmonize.guide import LAYERS_DIR, Guide
from harmonize.mapping import load_mapping

Inputs = Callable[[Guide, Mapping[str, Any]], dict[str, Path]]
"""``f(guide, options) -> {label: file}``: the files a source reads for these options."""

MISSING = "missing"  # the digest recorded for a file that is not there


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, or ``"missing"`` when it is absent."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return MISSING
    return digest.hexdigest()


def guide_files(guide: Guide) -> dict[str, Path]:
    """The guide's file and each of its layers' files, labelled ``guide <use case>`` / ``guide layer <l>``."""
    files = {f"guide {guide.use_case}": Path(guide.path)}
    files.update({f"guide layer {layer}": LAYERS_DIR / f"{layer}.yaml" for layer in guide.layers})
    return files


def folder_inputs(folder: Path) -> dict[str, Path]:
    """Every file under ``folder`` (recursively, hidden files aside), labelled by its relative path."""
    if not folder.is_dir():
        return {f"source {folder.name}/": folder}
    return {
        f"source {folder.name}/{p.relative_to(folder).as_posix()}": p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def mapping_inputs(guide: Guide, options: Mapping[str, Any]) -> dict[str, Path]:
    """The ``csv`` source's inputs: each mapping YAML and the table (and variant list) it names.

    Raises:
        harmonize.mapping.MappingError: a mapping that no longer parses (named with its key).
    """
    files: dict[str, Path] = {}
    for path in options.get("mapping") or ():
        files[f"mapping {path}"] = Path(path)
        if not Path(path).is_file():
            continue
        m = load_mapping(path, guide)
        files[f"source {m.file}"] = Path(m.file)
        if m.variants is not None:
            files[f"source {m.variants.file}"] = Path(m.variants.file)
    return files


def input_digests(guide: Guide, source_files: Mapping[str, Path]) -> dict[str, str]:
    """``{label: sha256}`` of the guide's files and the source's, sorted by label."""
    files = {**guide_files(guide), **source_files}
    return {label: file_digest(files[label]) for label in sorted(files)}


def changed_inputs(built: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """What differs between the digests a dataset was built from and the files now, one line each."""
    out = []
    for label in sorted({*built, *now}):
        before, after = built.get(label), now.get(label)
        if before == after:
            continue
        if before is None:
            out.append(f"{label} is new since the build")
        elif after is None:
            out.append(f"{label} is no longer an input")
        elif after == MISSING:
            out.append(f"{label} is missing (was sha256 {before[:12]})")
        else:
            out.append(f"{label} changed (sha256 {before[:12]} -> {after[:12]})")
    return out
