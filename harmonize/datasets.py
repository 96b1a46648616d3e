"""Registered datasets: built on first use through the whole path, cached, checked on reuse.

:func:`load_or_build_dataset` returns the cached dataset a :class:`~harmonize.registry.DatasetSpec`
names, or builds it (ARCHITECTURE §1.1-1.2)::

    source -> canonical export -> FHIR R5 NDJSON -> per-centre parquet + quality -> dataset card

under ``<data_root>/datasets/<name>/``::

    export/              the source's export (canonical per-centre CSVs, or its own files)
    fhir/<centre>/       <ResourceType>.ndjson + ingest.json
    tables/<centre>.parquet
    quality/<centre>.json, quality/<centre>.md
    truth.parquet        simulation ground truth (oracle risk), never FHIR
    reference.parquet    per-patient values outside FHIR (clinical scores), never in the id
    dataset.json         the card, written last: a card means a complete dataset

The folder is built under a temporary name and renamed into place, so
parallel runs never see half a dataset. On reuse the tables are read back and
their content id (:func:`harmonize.identity.dataset_id`) recomputed and
compared with the card's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from harmonize.errors import NoUsableRows
from harmonize.extract import extract_centre
from harmonize.guide import Guide, require_fhir
from harmonize.identity import (
    CARD_FILE,
    DatasetCacheError,
    dataset_id,
    fhir_features_card,
    read_card,
    write_card,
)
from harmonize.inputs import changed_inputs
from harmonize.quality import quality_report, report_markdown
from harmonize.registry import DatasetSpec, dataset_folder, source_card, source_registration
from harmonize.sources import REFERENCE_FILE, TRUTH_FILE

if TYPE_CHECKING:
    from harmonize.fhir import IngestStats

DATASET_FORMAT = "fedjax_rhd/harmonised-dataset/v1"


def _read_parquet(path: Path) -> pl.DataFrame:
    """A dataset's parquet, or a DatasetCacheError naming the file (edited, truncated, foreign)."""
    try:
        return pl.read_parquet(path)
    except BaseException as err:  # polars errors, OSError, and Rust panics (BaseException)
        if isinstance(err, KeyboardInterrupt | SystemExit | MemoryError):
            raise
        raise DatasetCacheError(
            f"corrupted dataset file {path}: not a readable parquet file ({type(err).__name__}: {err}); "
            f"delete {path.parent.parent} to rebuild it"
        ) from None


def _combine(folder: Path, centres: list[str], guide: Guide) -> pl.DataFrame:
    tables = [_read_parquet(folder / "tables" / f"{c}.parquet") for c in centres]
    df = pl.concat(tables) if tables else pl.DataFrame()
    truth_path = folder / TRUTH_FILE
    if truth_path.is_file():
        df = df.join(_read_parquet(truth_path), on="patient_id", how="left")
    return df.sort("patient_id")


def check_usable(stats: dict[str, IngestStats]) -> None:
    """Refuse a source that gave no usable row, naming the quarantine reasons with counts.

    A centre whose every record was quarantined is refused even when other centres have
    rows (that is a broken export or mapping, never data); a source with no record at all
    (a header-only file) is refused with that said.

    Raises:
        NoUsableRows: naming the centre's file, the reasons and their counts, and the first
            quarantined rows.
    """
    total = sum(st.n_patients for st in stats.values())
    for centre, st in stats.items():
        if st.n_patients or (total and not st.n_records):
            continue
        file = st.notes.get("file", f"centre {centre}")
        if not st.n_records:
            raise NoUsableRows(
                file,
                "1 (header)",
                "(records)",
                "the file has a header but no data rows; nothing to harmonise",
            )
        reasons = ", ".join(f"{reason} ({n})" for reason, n in st.quarantined.most_common())
        first = "; ".join(
            f"{r['source']} row {r['row']}, field {r['field']!r}" for r in st.quarantined_rows[:3]
        )
        raise NoUsableRows(
            file,
            f"1-{st.n_records}",
            "(records)",
            f"no usable rows: all {st.n_records} records of centre {centre!r} were quarantined: {reasons}; "
            f"first: {first}. Fix the export or the mapping (a wrong column or code maps every record "
            "alike), or pass --allow-empty to write the empty dataset anyway",
        )


def build_dataset(
    spec: DatasetSpec,
    guide: Guide,
    folder: str | Path,
    *,
    progress: bool = False,
    allow_empty: bool = False,
) -> dict[str, Any]:
    """Build a dataset into ``folder`` (export, FHIR, tables, quality, card); return the card.

    Raises:
        NoUsableRows: a centre gave no usable row (unless ``allow_empty``); see :func:`check_usable`.
    """
    # fhir.resources (pydantic models of every resource) is imported by a build only: a run that
    # loads a built dataset never needs it (a second of every process's start).
    from harmonize.fhir import ingest_source

    require_fhir(guide)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = source_registration(spec.source).factory(guide, spec.options_dict(), folder / "export")
    stats = ingest_source(source, guide, folder / "fhir", progress=progress)
    if not allow_empty:
        check_usable(stats)
    card = extract_dataset(
        folder / "fhir",
        folder,
        guide,
        name=spec.name,
        source_card=source_card(spec, guide),
        provenance=source.provenance(),
        truth=source.truth(),
        centres=list(source.centres()),
        progress=progress,
    )
    # Optional adapter method: per-patient values kept outside FHIR and outside the id.
    ref = source.reference() if hasattr(source, "reference") else None
    if ref is not None:
        ref.write_parquet(folder / REFERENCE_FILE)
        card["reference"] = {
            "file": REFERENCE_FILE,
            "columns": [c for c in ref.columns if c != "patient_id"],
            "n_rows": ref.height,
            "note": "per-patient values outside FHIR (clinical scores, chosen specimen), not in the id",
        }
        write_card(folder, card)
    return card


def load_reference(data_root: str | Path, name: str) -> pl.DataFrame | None:
    """A built dataset's ``reference.parquet`` (``patient_id`` + columns), or ``None``."""
    path = dataset_folder(data_root, name) / REFERENCE_FILE
    return pl.read_parquet(path) if path.is_file() else None


def extract_dataset(
    fhir_dir: str | Path,
    folder: str | Path,
    guide: Guide,
    *,
    name: str,
    source_card: dict[str, Any],
    provenance: dict[str, Any],
    truth: pl.DataFrame | None = None,
    centres: list[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """FHIR folder -> ``tables/``, ``quality/`` and the card ``dataset.json`` in ``folder``.

    Args:
        fhir_dir: holds ``<centre>/<Type>.ndjson`` and ``<centre>/ingest.json``.
        folder: the dataset folder (created).
        guide: the guide the resources follow.
        name: the dataset's name.
        source_card: ``{"name": source, "options": {...}}`` for the card.
        provenance: ``source``, ``licence``, ``citation``.
        truth: simulation ground truth keyed by ``patient_id`` (kept beside the tables).
        centres: centres to extract (default: every sub-folder of ``fhir_dir``).
        progress: progress bar over centres.

    Returns:
        The card.
    """
    fhir_dir, folder = Path(fhir_dir), Path(folder)
    if centres is None:
        centres = sorted(p.name for p in fhir_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not centres:
        raise ValueError(f"no centre folders in {fhir_dir}")
    for sub in ("tables", "quality"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    from harmonize.fhir import INGEST_REPORT  # a build's step: see build_dataset

    centres_card = []
    iterator: Any = centres
    if progress:
        from tqdm import tqdm

        iterator = tqdm(centres, desc="extract", unit=" centre", leave=False)
    for centre in iterator:
        table, stats = extract_centre(fhir_dir, centre, guide)
        table.write_parquet(folder / "tables" / f"{centre}.parquet")
        ingest_path = fhir_dir / centre / INGEST_REPORT
        ingest = json.loads(ingest_path.read_text(encoding="utf-8")) if ingest_path.is_file() else {}
        report = quality_report(table, guide, ingest, stats.to_json())
        (folder / "quality" / f"{centre}.json").write_text(
            json.dumps(report, indent=1) + "\n", encoding="utf-8"
        )
        (folder / "quality" / f"{centre}.md").write_text(report_markdown(report), encoding="utf-8")
        centres_card.append(
            {
                "name": centre,
                "n_rows": table.height,
                "n_events": int(table["event"].sum()) if table.height else 0,
                "n_records": report["counts"]["n_records"],
                "quarantined": report["counts"]["quarantined_at_ingest"]
                + report["counts"]["quarantined_at_extraction"],
                "quality_report": f"quality/{centre}.md",
            }
        )
    if truth is not None:
        truth.write_parquet(folder / TRUTH_FILE)
    df = _combine(folder, centres, guide)
    try:
        fhir_version = metadata.version("fhir.resources")
    except metadata.PackageNotFoundError:
        fhir_version = None
    card = {
        "format": DATASET_FORMAT,
        "id": dataset_id(df, guide),
        "name": name,
        "use_case": guide.use_case,
        "guide_version": guide.version,
        "source": source_card,
        "centres": centres_card,
        "n_rows": df.height,
        "n_events": int(df["event"].sum()),
        "features": fhir_features_card(guide),
        "truth_columns": [c for c in (truth.columns if truth is not None else []) if c != "patient_id"],
        "fhir": {"version": "R5 (5.0.0)", "validated_with": f"fhir.resources {fhir_version}"},
        "provenance": provenance,
    }
    write_card(folder, card)
    return card


def load_dataset(folder: str | Path, guide: Guide) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read a built dataset and check its content against the card's id.

    Raises:
        DatasetCacheError: unreadable, stale (another guide version or schema) or
            corrupted (content id differs from the card); the message says what to delete.
    """
    folder = Path(folder)
    card = read_card(folder)
    hint = f"delete {folder} to rebuild it"
    if card.get("guide_version") != guide.version or card.get("features") != fhir_features_card(guide):
        raise DatasetCacheError(
            f"stale dataset {folder}: built with guide {card.get('use_case')!r} version "
            f"{card.get('guide_version')!r}, the guide is now version {guide.version!r} "
            f"with another schema; {hint}"
        )
    key = _checked_key(folder, card, guide)
    if key in _CHECKED:  # read and checked by this process, and no file changed since
        return _CHECKED[key], card
    try:
        df = _combine(folder, [c["name"] for c in card["centres"]], guide)
        actual = dataset_id(df, guide)
    except (OSError, KeyError, ValueError, TypeError, pl.exceptions.PolarsError) as err:
        raise DatasetCacheError(f"corrupted dataset {folder}: {err}; {hint}") from err
    if actual != card.get("id"):
        raise DatasetCacheError(
            f"corrupted dataset {folder}: content id {actual} differs from {card.get('id')} in its card "
            f"{folder / CARD_FILE} (a table under {folder / 'tables'} or the card was edited); {hint}"
        )
    if key is not None:
        while len(_CHECKED) >= _CHECKED_MAX:  # oldest first: a worker moves from cohort to cohort
            del _CHECKED[next(iter(_CHECKED))]
        _CHECKED[key] = df
    return df, card


# Tables this process has read and checked against their card's id, keyed by the dataset's files'
# (name, size, mtime, inode) and the guide. A sweep's worker runs dozens of jobs on one
# dataset; reading it and hashing every value again took a tenth of a DeepSurv run. Any write to a
# table, the truth file or the card changes the key, so an edited dataset is checked afresh (and
# refused). The frames are shared between callers, who treat them as read-only (polars returns
# new frames). Bounded: a study's five cohorts fit.
_CHECKED: dict[tuple[Any, ...], pl.DataFrame] = {}
_CHECKED_MAX = 8


def _checked_key(folder: Path, card: dict[str, Any], guide: Guide) -> tuple[Any, ...] | None:
    """The files' state and the schema a check of ``folder`` depends on; None when a file cannot be read."""
    try:
        names = [CARD_FILE, TRUTH_FILE, *(f"tables/{c['name']}.parquet" for c in card["centres"])]
    except (KeyError, TypeError):
        return None  # a malformed card: the full read reports it
    state = []
    for name in names:
        try:
            st = (folder / name).stat()
        except FileNotFoundError:
            state.append((name, None))
            continue
        except OSError:
            return None
        state.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
    # the schema part of the id: the card's features already equal the guide's (checked above)
    return str(folder.resolve()), tuple(state), card.get("id"), guide.use_case, guide.version


def stale_reasons(built: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Why a cache of the same source and options is stale: its generator or its inputs changed.

    Args:
        built: the card's ``source`` record.
        wanted: :func:`harmonize.registry.source_card` now.

    Returns:
        One line per reason (none when current, or when the source or options differ: that is
        another dataset, not a stale one).
    """
    volatile = ("generator", "inputs")
    if {k: v for k, v in built.items() if k not in volatile} != {
        k: v for k, v in wanted.items() if k not in volatile
    }:
        return []
    out = []
    if built.get("generator") != wanted.get("generator"):
        out.append(
            "the source's code changed since it was built (a simulator's code and parameters, or a cohort "
            f"adapter's code: fingerprint {built.get('generator')} -> {wanted.get('generator')})"
        )
    if "inputs" not in built:
        out.append(
            "it was built before datasets recorded the digests of their guide, mapping and source files, "
            "so an edit since cannot be ruled out"
        )
    elif built["inputs"] != wanted.get("inputs"):
        out.append(
            "its inputs changed since it was built: "
            + ", ".join(changed_inputs(built["inputs"], wanted["inputs"]))
        )
    return out


def load_or_build_dataset(
    spec: DatasetSpec, guide: Guide, data_root: str | Path, *, progress: bool = False
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Return a registered dataset, building and caching it on first use.

    Args:
        spec: the dataset's name and source.
        guide: its guide (with FHIR mappings).
        data_root: root of the data cache.
        progress: progress bars while building.

    Returns:
        ``(table, card)``: all centres' rows sorted by ``patient_id`` (plus
        ground-truth columns of simulated sources) and the card.

    Raises:
        DatasetCacheError: the cached dataset is stale, corrupted, or was built
            from another source or options than ``spec`` says.
    """
    folder = dataset_folder(data_root, spec.name)
    if not (folder / CARD_FILE).is_file():
        if folder.exists():
            # Builds happen in temporary folders renamed into place with their
            # card, so a folder without a card is debris of an older layout.
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{spec.name}.", suffix=".tmp"))
        try:
            build_dataset(spec, guide, tmp, progress=progress)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / CARD_FILE).is_file():  # not a parallel build that finished first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    df, card = load_dataset(folder, guide)
    wanted = source_card(spec, guide)
    built = card.get("source") or {}
    stale = stale_reasons(built, wanted)
    if stale:
        raise DatasetCacheError(f"stale dataset {folder}: {'; '.join(stale)}; delete {folder} to rebuild it")
    if built != wanted or card.get("use_case") != guide.use_case:
        raise DatasetCacheError(
            f"dataset {spec.name!r} in {folder} was built from source {card.get('source')} for use case "
            f"{card.get('use_case')!r}, the config asks for {wanted} and {guide.use_case!r}; "
            "rename the dataset in the config or delete the folder"
        )
    return df, card
