"""Datasets by content: the content id, the dataset card and the simulated-cohort cache.

A dataset's ``id`` hashes the table *content* and the schema, never the parquet
bytes (those change with the polars version and the compression): rows sorted
by ``patient_id``, columns ``patient_id, centre, <guide features>, time, event``
(plus ``oracle_risk`` when present), each column canonicalised on its own
(ARCHITECTURE §1.2). Simulated cohorts are cached under
``<data_root>/simulated/<use_case>/n<n>-seed<seed>/`` as ``simulated.parquet``
plus the card ``dataset.json``; a cache whose content no longer matches its
card's id is reported, never silently used.
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

from fedjax_rhd.simulate import aml as _aml
from fedjax_rhd.simulate import cmml as _cmml
from fedjax_rhd.simulate import mds as _mds
from fedjax_rhd.simulate import mds_wsi as _mds_wsi
from fedjax_rhd.simulate import mm as _mm
from harmonize.guide import Guide

ID_FORMAT = "fedjax_rhd/dataset-id/v1"  # bump when the canonical form below changes
ID_COLUMNS_HEAD: tuple[str, ...] = ("patient_id", "centre")
ID_COLUMNS_TAIL: tuple[str, ...] = ("time", "event")
ORACLE_COLUMN = "oracle_risk"
TABLE_FILE = "simulated.parquet"
CARD_FILE = "dataset.json"

Simulator = Callable[..., pl.DataFrame]

SIMULATORS: dict[str, Simulator] = {
    "mds": _mds.simulate_mds,
    "cmml": _cmml.simulate_cmml,
    "aml": _aml.simulate_aml,
    "mm": _mm.simulate_mm,
    "mds_wsi": _mds_wsi.simulate_mds_wsi,
}
"""Simulator per use case: ``f(guide, n=..., seed=...) -> polars.DataFrame``."""

_GENERATOR_INFO: dict[str, tuple[str, str]] = {
    "mds": (
        _mds.GENERATOR_VERSION,
        "Synthetic MDS cohort from fedjax_rhd.simulate.mds (Gaussian copula fitted on the IWG-PM cohort, "
        "Bernard E, et al. NEJM Evidence 2022;1(7); hazard from IPSS-M plus effects it misses).",
    ),
    "cmml": (
        _cmml.GENERATOR_VERSION,
        "Synthetic CMML cohort from fedjax_rhd.simulate.cmml (Gaussian copula fitted on the CMML patients of "
        "IWG-PM, Bernard E, et al. NEJM Evidence 2022;1(7); hazard from CPSS-mol, Elena C, et al. "
        "Blood 2016;128:1408-17, plus effects it misses).",
    ),
    "aml": (
        _aml.GENERATOR_VERSION,
        "Synthetic AML cohort from fedjax_rhd.simulate.aml, calibrated on Beat AML 2.0 "
        "(Bottomly D, et al. Cancer Cell 2022;40:850-64); ELN 2022 "
        "(Dohner H, et al. Blood 2022;140:1345-77).",
    ),
    "mm": (
        _mm.GENERATOR_VERSION,
        "Synthetic multiple myeloma cohort from fedjax_rhd.simulate.mm; published frequencies "
        "(Kyle RA, et al. Mayo Clin Proc 2003; Greipp PR, et al. J Clin Oncol 2005; Palumbo A, et al. "
        "J Clin Oncol 2015; Walker BA, et al. Blood 2018).",
    ),
    "mds_wsi": (
        f"{_mds_wsi.GENERATOR_VERSION}+{_mds.GENERATOR_VERSION}",
        "Synthetic MDS cohort (fedjax_rhd.simulate.mds) with a simulated 1,536-dimensional whole-slide-image "
        "embedding (fedjax_rhd.simulate.mds_wsi; the study's pathology foundation-model width).",
    ),
}


class DatasetCacheError(RuntimeError):
    """A cached dataset is corrupted or stale; the message names the folder to delete."""


def simulator_for(use_case: str) -> Simulator:
    """Return the simulator of a use case.

    Raises:
        KeyError: naming the use case and the use cases that have a simulator.
    """
    try:
        return SIMULATORS[use_case]
    except KeyError:
        raise KeyError(
            f"no simulator for use case {use_case!r}; simulators exist for {sorted(SIMULATORS)}"
        ) from None


# The files a simulator's output depends on: a change to any of them makes cached
# datasets of that use case stale, even without a version bump.
_GENERATOR_FILES: dict[str, tuple[str, ...]] = {
    "mds": ("mds.py", "copula.py", "params_mds.json"),
    "cmml": ("cmml.py", "copula.py", "params_cmml.json"),
    "aml": ("aml.py", "common.py", "params/aml_beat.json"),
    "mm": ("mm.py", "common.py"),
    "mds_wsi": ("mds_wsi.py", "common.py", "mds.py", "copula.py", "params_mds.json"),
}


def generator_fingerprint(use_case: str, *, treatment: bool = False) -> str:
    """sha256 (first 12 hex) of the simulator's code and fitted parameters.

    ``treatment``: the optional treatment layer is on, so its code is part of the generator.
    """
    simulator_for(use_case)
    digest = hashlib.sha256()
    folder = Path(_mds.__file__).parent
    files = _GENERATOR_FILES.get(use_case, ()) + (("treatment.py",) if treatment else ())
    for name in files:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:12]


def generator_info(use_case: str) -> tuple[str, str]:
    """``(generator version, citation)`` of a use case's simulator."""
    simulator_for(use_case)
    return _GENERATOR_INFO[use_case]


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
    for name in cols:
        is_string = name in ID_COLUMNS_HEAD or kinds.get(name) == "categorical"
        tag = "str" if is_string else "f64"
        null, values = (_canonical_strings if is_string else _canonical_numbers)(name, df[name])
        for part in (name.encode(), tag.encode(), null, values):
            _frame(h, part)
    return "ds-" + h.hexdigest()[:16]


def features_card(guide: Guide) -> list[dict[str, Any]]:
    """The feature schema as it appears in a dataset card."""
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


def _simulated_card(df: pl.DataFrame, guide: Guide, *, n: int, seed: int) -> dict[str, Any]:
    version, citation = _GENERATOR_INFO[guide.use_case]
    centres = df.group_by("centre").agg(pl.len().alias("n_rows"), pl.col("event").sum().alias("n_events"))
    return {
        "id": dataset_id(df, guide),
        "name": f"{guide.use_case}-simulated-n{n}-seed{seed}",
        "use_case": guide.use_case,
        "guide_version": guide.version,
        "generator": {"version": version, "seed": seed, "n": n},
        "centres": [
            {"name": c, "n_rows": int(r), "n_events": int(e)} for c, r, e in sorted(centres.iter_rows())
        ],
        "features": features_card(guide),
        "n_rows": df.height,
        "n_events": int(df["event"].sum()),
        "provenance": {"source": "simulated", "licence": "CC0-1.0 (synthetic)", "citation": citation},
    }


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then ``os.replace`` it into place."""
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


def _write_text(text: str) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    return write


def load_or_build_simulated(
    guide: Guide, *, n: int, seed: int, data_root: str | Path
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Load a cached simulated cohort, or simulate and cache it on first use.

    The cache lives in ``<data_root>/simulated/<use_case>/n<n>-seed<seed>/``:
    ``simulated.parquet`` and the card ``dataset.json`` (written last, so a
    card means a complete cache). Both are written atomically, so parallel
    processes building the same cohort never see half a file (they write
    identical content). On later calls the parquet is read back and its id
    recomputed and compared with the card's.

    Args:
        guide: the use case's guide.
        n: number of patients.
        seed: simulator seed.
        data_root: root folder of the data cache.

    Returns:
        ``(table, card)``: rows sorted by ``patient_id``; the card as a dict
        (``id``, ``name``, ``use_case``, ``guide_version``, ``generator``,
        ``centres``, ``features``, ``n_rows``, ``n_events``, ``provenance``).

    Raises:
        KeyError: no simulator for the guide's use case.
        DatasetCacheError: the cache is corrupted (content id differs from the
            card, parquet missing or unreadable) or stale (another generator or
            guide version); delete the named folder to rebuild it.
    """
    simulate = simulator_for(guide.use_case)
    folder = Path(data_root) / "simulated" / guide.use_case / f"n{n}-seed{seed}"
    table_path, card_path = folder / TABLE_FILE, folder / CARD_FILE
    if card_path.is_file():
        return _load_cached(guide, folder, n=n, seed=seed)
    df = simulate(guide, n=n, seed=seed).sort("patient_id")
    card = _simulated_card(df, guide, n=n, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(table_path, df.write_parquet)
    _atomic_write(card_path, _write_text(json.dumps(card, indent=2) + "\n"))
    return df, card


def _load_cached(guide: Guide, folder: Path, *, n: int, seed: int) -> tuple[pl.DataFrame, dict[str, Any]]:
    table_path, card_path = folder / TABLE_FILE, folder / CARD_FILE
    hint = f"delete {folder} to rebuild it"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        recorded = card["id"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetCacheError(f"dataset card {card_path} is unreadable ({err}); {hint}") from err
    version = _GENERATOR_INFO[guide.use_case][0]
    expected = {"version": version, "seed": seed, "n": n}
    if card.get("generator") != expected or card.get("guide_version") != guide.version:
        raise DatasetCacheError(
            f"stale simulated dataset in {folder}: card has generator {card.get('generator')} and guide "
            f"version {card.get('guide_version')!r}, expected generator {expected} and guide version "
            f"{guide.version!r}; {hint}"
        )
    if card.get("features") != features_card(guide):
        raise DatasetCacheError(
            f"stale simulated dataset in {folder}: its feature schema differs from the guide; {hint}"
        )
    try:
        df = pl.read_parquet(table_path).sort("patient_id")
        actual = dataset_id(df, guide)
    except (OSError, ValueError, TypeError, pl.exceptions.PolarsError) as err:
        raise DatasetCacheError(f"corrupted simulated dataset {table_path}: {err}; {hint}") from err
    if actual != recorded:
        raise DatasetCacheError(
            f"corrupted simulated dataset {table_path}: content id {actual} differs from {recorded} "
            f"recorded in {card_path}; {hint}"
        )
    return df, card
