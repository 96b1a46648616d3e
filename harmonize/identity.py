"""Dataset identity: the content id, the dataset card's schema helpers, atomic writes.

A dataset's ``id`` hashes the table *content* and the schema, never the parquet
bytes (those change with the polars version and the compression): rows sorted
by ``patient_id``, columns ``patient_id, centre, <guide features>, time, event``
(plus ``oracle_risk`` when present), each column canonicalised on its own
(ARCHITECTURE §1.2). The registry (:mod:`harmonize.registry`) writes the id into
each dataset's card (:data:`CARD_FILE`) and recomputes it on every reuse; a
cache whose content no longer matches is reported (:class:`DatasetCacheError`),
never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from harmonize.guide import Guide

# The format tag is hashed into every id: bump it only when the canonical form below changes
# (its text predates the move into harmonize/ and stays as it is, so ids stay as they are).
ID_FORMAT = "fedjax_rhd/dataset-id/v1"
ID_COLUMNS_HEAD: tuple[str, ...] = ("patient_id", "centre")
ID_COLUMNS_TAIL: tuple[str, ...] = ("time", "event")
ORACLE_COLUMN = "oracle_risk"
CARD_FILE = "dataset.json"


class DatasetCacheError(RuntimeError):
    """A cached dataset is corrupted or stale; the message names the folder to delete."""


def _id_columns(df: pl.DataFrame, guide: Guide) -> list[str]:
    cols = [*ID_COLUMNS_HEAD, *guide.feature_names, *ID_COLUMNS_TAIL]
    if ORACLE_COLUMN in df.columns:
        cols.append(ORACLE_COLUMN)
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise ValueError(f"dataset_id: table lacks column(s) {absent} of guide {guide.use_case!r}")
    extra = [c for c in df.columns if c not in cols]
    if extra:
        raise ValueError(
            f"dataset_id: table has column(s) {extra} outside the schema of guide {guide.use_case!r} "
            f"(patient_id, centre, guide features, time, event, optional {ORACLE_COLUMN})"
        )
    return cols


def _schema_json(guide: Guide) -> bytes:
    schema = {
        "use_case": guide.use_case,
        "version": guide.version,
        "features": [{"name": f.name, "kind": f.kind, "levels": list(f.levels)} for f in guide.features],
    }
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _frame(h: Any, payload: bytes) -> None:
    """Length-prefixed chunk, so that no two different sequences of chunks hash alike."""
    h.update(len(payload).to_bytes(8, "little"))
    h.update(payload)


def _canonical_numbers(name: str, s: pl.Series) -> tuple[bytes, bytes]:
    if not (s.dtype.is_numeric() or s.dtype == pl.Boolean):
        raise TypeError(f"dataset_id: column {name!r} must be numeric, got {s.dtype}")
    null = s.is_null().to_numpy()
    values = s.cast(pl.Float64).fill_null(0.0).to_numpy().astype("<f8", copy=True)
    values[values == 0.0] = 0.0  # -0.0 -> 0.0
    values[np.isnan(values)] = np.nan  # one NaN bit pattern (NaN is distinct from null)
    return null.astype(np.uint8).tobytes(), values.tobytes()


def _canonical_strings(name: str, s: pl.Series) -> tuple[bytes, bytes]:
    if s.dtype not in (pl.String, pl.Categorical) and not isinstance(s.dtype, pl.Enum):
        raise TypeError(f"dataset_id: column {name!r} must hold strings, got {s.dtype}")
    s = s.cast(pl.String)
    null = s.is_null().to_numpy()
    encoded = [v.encode("utf-8") if v is not None else b"" for v in s.to_list()]
    lengths = np.array([len(b) for b in encoded], dtype="<u8")
    return null.astype(np.uint8).tobytes(), lengths.tobytes() + b"".join(encoded)


def dataset_id(df: pl.DataFrame, guide: Guide) -> str:
    """Content id of an ML-ready table: ``"ds-"`` + the first 16 hex digits of a sha256.

    The hash covers the schema (guide use case, version, features' name, kind
    and levels, as canonical JSON) and, per column in the order ``patient_id,
    centre, <guide features>, time, event[, oracle_risk]`` over rows sorted by
    ``patient_id``: the name, a type tag, the null mask and the values
    (numbers as little-endian float64 with -0.0 folded into 0.0, so Int8 and
    Float64 holding the same numbers agree; strings as utf-8 with lengths).
    It does not depend on the input's row or column order or on parquet bytes.

    Args:
        df: the table; exactly the columns above.
        guide: the guide whose schema the table follows.

    Returns:
        e.g. ``"ds-1f3a9c0b7d2e4a61"``.

    Raises:
        ValueError: missing or extra columns, null or duplicate ``patient_id``.
        TypeError: a column of the wrong type (strings where numbers belong or back).
    """
    cols = _id_columns(df, guide)
    ids = df["patient_id"]
    if ids.null_count():
        raise ValueError("dataset_id: patient_id has nulls")
    if ids.n_unique() != df.height:
        raise ValueError("dataset_id: patient_id is not unique")
    df = df.sort("patient_id")
    kinds = {f.name: f.kind for f in guide.features}
    h = hashlib.sha256()
    _frame(h, ID_FORMAT.encode())
    _frame(h, _schema_json(guide))
    _frame(h, df.height.to_bytes(8, "little"))
    strings = {name for name in cols if name in ID_COLUMNS_HEAD or kinds.get(name) == "categorical"}
    numbers = _canonical_number_block(df, [name for name in cols if name not in strings])
    for name in cols:
        is_string = name in strings
        tag = "str" if is_string else "f64"
        null, values = _canonical_strings(name, df[name]) if is_string else numbers[name]
        for part in (name.encode(), tag.encode(), null, values):
            _frame(h, part)
    return "ds-" + h.hexdigest()[:16]


def _canonical_number_block(df: pl.DataFrame, names: list[str]) -> dict[str, tuple[bytes, bytes]]:
    """``_canonical_numbers`` of every column in ``names`` from two frame-wide conversions.

    The same bytes as column by column; one select per column cost ~1 ms each, a tenth of a
    second on a guide of 80 features, in every process that loads a dataset.
    """
    for name in names:
        dtype = df.schema[name]
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            raise TypeError(f"dataset_id: column {name!r} must be numeric, got {dtype}")
    if not names:
        return {}
    null = df.select(pl.col(n).is_null() for n in names).to_numpy()
    values = df.select(pl.col(n).cast(pl.Float64).fill_null(0.0) for n in names).to_numpy()
    out = {}
    for j, name in enumerate(names):
        column = values[:, j].astype("<f8", copy=True)
        column[column == 0.0] = 0.0  # -0.0 -> 0.0
        column[np.isnan(column)] = np.nan  # one NaN bit pattern (NaN is distinct from null)
        out[name] = (null[:, j].astype(np.uint8).tobytes(), column.tobytes())
    return out


def features_card(guide: Guide) -> list[dict[str, Any]]:
    """The feature schema as it appears in a dataset card (without the FHIR mappings).

    Args:
        guide: the use case's guide.

    Returns:
        One entry per feature: ``name``, ``kind``, ``group``, ``unit``, ``range``, ``levels``.
    """
    return [
        {
            "name": f.name,
            "kind": f.kind,
            "group": f.group,
            "unit": f.unit,
            "range": list(f.valid_range) if f.valid_range is not None else None,
            "levels": list(f.levels),
        }
        for f in guide.features
    ]


def feature_differences(
    ours: list[dict[str, Any]], theirs: list[dict[str, Any]], fields: tuple[str, ...]
) -> tuple[list[str], list[str], list[tuple[str, str, Any, Any]]]:
    """How two feature schemas (``features_card`` entries) differ.

    Returns:
        ``(only in ours, only in theirs, [(feature, field, our value, their value)])``, names in
        ``ours``'s order, then ``theirs``'s; callers word them for their reader.
    """
    a = {f["name"]: f for f in ours}
    b = {f["name"]: f for f in theirs}
    changed = [
        (name, field, a[name].get(field), b[name].get(field))
        for name in a
        if name in b
        for field in fields
        if a[name].get(field) != b[name].get(field)
    ]
    return [n for n in a if n not in b], [n for n in b if n not in a], changed


def fhir_features_card(guide: Guide) -> list[dict[str, Any]]:
    """The registry card's feature schema: :func:`features_card` plus each feature's FHIR mapping.

    Args:
        guide: a guide whose features all carry a ``fhir`` block.

    Returns:
        :func:`features_card` entries, each with a ``fhir`` record (resource, element,
        coding, gene, vector, where the guide sets them).
    """
    out = features_card(guide)
    for entry, f in zip(out, guide.features, strict=True):
        m = f.fhir
        fhir = {"resource": m.resource}
        if m.element:
            fhir["element"] = m.element
        if m.coding is not None:
            fhir.update(system=m.coding.system, code=m.coding.code)
        if m.gene:
            fhir.update(gene=m.gene, hgnc=m.hgnc)
        if m.vector:
            fhir["vector"] = m.vector
        entry["fhir"] = fhir
    return out


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Write ``path`` through a temporary file in the same folder, then ``os.replace`` it into place.

    A reader (a parallel run) sees the old file or the complete new one, never half a file.

    Args:
        path: the file to write.
        write: called with the temporary file's path; writes the content there.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of a UTF-8 text (a card, a report)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_card(folder: str | Path, card: dict[str, Any]) -> None:
    """Write a dataset card (indented JSON) atomically: a card on disk is always complete.

    Args:
        folder: the dataset folder.
        card: the card.
    """
    atomic_write_text(Path(folder) / CARD_FILE, json.dumps(card, indent=2) + "\n")


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a built dataset folder.

    Raises:
        DatasetCacheError: the card is missing or unreadable (names the folder to delete).
    """
    path = Path(folder) / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise DatasetCacheError(
            f"dataset card {path} is unreadable ({err}); delete {folder} to rebuild it"
        ) from err
    if not isinstance(card, dict) or not isinstance(card.get("centres"), list):
        raise DatasetCacheError(f"dataset card {path} is not a card (edited?); delete {folder} to rebuild it")
    return card
