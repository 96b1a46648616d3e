"""Dataset registry: named, harmonised ML-ready datasets, built on first use and cached.

A :class:`DatasetSpec` names a dataset and says where it comes from (a source
and its options). :func:`load_or_build_dataset` returns the cached dataset or
builds it through the whole path (ARCHITECTURE §1.1-1.2)::

    source -> canonical export -> FHIR R5 NDJSON -> per-centre parquet + quality -> dataset card

under ``<data_root>/datasets/<name>/``::

    export/              the source's canonical per-centre export (table sources)
    fhir/<centre>/       <ResourceType>.ndjson + ingest.json
    tables/<centre>.parquet
    quality/<centre>.json, quality/<centre>.md
    truth.parquet        simulation ground truth (oracle risk), never FHIR
    dataset.json         the card, written last: a card means a complete dataset

The folder is built under a temporary name and renamed into place, so
parallel runs never see half a dataset. On reuse the tables are read back and
their content id recomputed and compared with the card's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from fedjax_rhd.datasets import (
    DatasetCacheError,
    dataset_id,
    features_card,
    generator_fingerprint,
    generator_info,
    simulator_for,
)
from harmonize.dialects import write_dialect_exports
from harmonize.extract import extract_centre
from harmonize.fhir import INGEST_REPORT, ingest_source
from harmonize.guide import Guide, require_fhir
from harmonize.mapping import MappedSource, load_mapping, mapped_source
from harmonize.quality import quality_report, report_markdown
from harmonize.sources import CanonicalExportSource, SourceAdapter, write_canonical_export

CARD_FILE = "dataset.json"
TRUTH_FILE = "truth.parquet"
REFERENCE_FILE = "reference.parquet"  # per-patient data kept outside FHIR (clinical scores, specimen ids)
REFERENCE_PREFIXES = ("clinical_score", "score_", "source_")
DATASET_FORMAT = "fedjax_rhd/harmonised-dataset/v1"

TableSource = Callable[[Guide, Mapping[str, Any]], tuple[pl.DataFrame, dict[str, Any]]]
"""``f(guide, options) -> (canonical table with a centre column, provenance)``."""


def _simulated(guide: Guide, options: Mapping[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    n, seed = int(options["n"]), int(options["seed"])
    # The optional treatment layer (fedjax_rhd.simulate.treatment) is passed only when on, so
    # simulators without it keep their signature.
    layer = {"with_treatment": True} if options.get("treatment") else {}
    df = simulator_for(guide.use_case)(guide, n=n, seed=seed, **layer)
    version, citation = generator_info(guide.use_case)
    return df, {
        "source": f"simulated ({version}{' + treatment layer' if layer else ''}, n={n}, seed={seed})",
        "licence": "CC0-1.0 (synthetic)",
        "citation": citation,
    }


def wrap_loader(load: Callable[[Guide], pl.DataFrame], provenance: Mapping[str, Any]) -> TableSource:
    """Wrap a direct loader (``guide -> canonical table``) as a table source.

    Real-cohort loaders that already return ``patient_id, <guide features>,
    time, event`` (and a ``centre`` column, or one centre named after the
    source) plug into the registry this way, e.g.
    ``TABLE_SOURCES["iwgpm"] = wrap_loader(load_iwgpm, {...})``.
    """

    def source(guide: Guide, options: Mapping[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
        del options
        return load(guide), dict(provenance)

    return source


def _real(source: str) -> TableSource:
    def load(guide: Guide, options: Mapping[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
        from fedjax_rhd.cohorts.harmonised import real_source  # the cohort readers import scores etc.

        return real_source(source, guide, options)

    return load


TABLE_SOURCES: dict[str, TableSource] = {
    "simulated": _simulated,
    "iwgpm": _real("iwgpm"),
    "beataml": _real("beataml"),
}
"""Sources that produce a canonical table; they go through a canonical export.

Real cohorts register their loaders here (wrapped to return the canonical
table and provenance); dialect adapters register under ``ADAPTERS``."""

ADAPTERS: dict[str, Callable[[Guide, Mapping[str, Any]], SourceAdapter]] = {
    "export": lambda guide, options: CanonicalExportSource(options["path"], guide),
    "csv": lambda guide, options: mapped_source(guide, options["mapping"]),
}
"""Sources read directly by an adapter (options name their files; ``csv``: ``mapping``, one
YAML path or a list, one per centre, see :mod:`harmonize.mapping`)."""


def _simulated_dialects(guide: Guide, options: Mapping[str, Any], folder: Path) -> SourceAdapter:
    """The simulated cohort split over ``centres`` centres, each exported in its own dialect."""
    df, provenance = _simulated(guide, options)
    n_centres = int(options.get("centres", 3))
    paths = write_dialect_exports(df, guide, folder, n_centres=n_centres, seed=int(options["seed"]))
    truth_cols = [
        c for c in df.columns if c not in (*guide.feature_names, "patient_id", "centre", "time", "event")
    ]
    truth = df.select("patient_id", *truth_cols).sort("patient_id") if truth_cols else None
    provenance = {**provenance, "source": f"{provenance['source']} in {n_centres} hospital dialects"}
    return MappedSource(
        [load_mapping(p, guide) for p in paths],
        guide,
        provenance=provenance,
        name="simulated_dialects",
        truth=truth,
    )


EXPORT_SOURCES: dict[str, Callable[[Guide, Mapping[str, Any], Path], SourceAdapter]] = {
    "simulated_dialects": _simulated_dialects,
}
"""Sources that write their own export files into ``<dataset>/export`` and read them back."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A named dataset and its origin.

    Attributes:
        name: the dataset's name (folder under ``<data_root>/datasets``).
        guide: guide name (``harmonize/guides/<guide>.yaml``) or path.
        source: a key of :data:`TABLE_SOURCES` or :data:`ADAPTERS`.
        options: the source's options as sorted ``(key, value)`` pairs.
    """

    name: str
    guide: str
    source: str
    options: tuple[tuple[str, Any], ...] = ()

    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)


def spec_for_run(
    *,
    use_case: str,
    guide: str,
    source: str,
    dataset: str | None,
    n_patients: int,
    seed_data: int,
    n_centres: int = 3,
    mapping: tuple[str, ...] = (),
    treatment: bool = False,
) -> DatasetSpec:
    """The dataset a run's ``use_case`` config names (simulated sources take n and seed).

    ``treatment`` (simulated source only) adds the optional treatment layer: the dataset
    is another dataset, so its name gets the suffix ``-treatment`` and never reuses the
    cache of the default one.
    """
    if treatment and source != "simulated":
        raise ValueError(f"use_case.treatment=true needs use_case.source=simulated, not {source!r}")
    options: tuple[tuple[str, Any], ...] = ()
    if source in ("simulated", "simulated_dialects"):
        options = (("n", int(n_patients)), ("seed", int(seed_data)))
    if source == "simulated_dialects":
        options = (("centres", int(n_centres)), *options)
    if source == "csv":
        if not mapping:
            raise ValueError(
                "use_case.source=csv needs use_case.mapping: the mapping YAML(s), one per centre"
            )
        options = (("mapping", [str(m) for m in mapping]),)
    name = dataset or (f"{use_case}-sim-n{n_patients}-seed{seed_data}" if source == "simulated" else use_case)
    if treatment:
        options = (*options, ("treatment", True))
        name = name if name.endswith("-treatment") else f"{name}-treatment"
    return DatasetSpec(name=name, guide=guide, source=source, options=options)


def dataset_folder(data_root: str | Path, name: str) -> Path:
    return Path(data_root) / "datasets" / name


def _adapter(spec: DatasetSpec, guide: Guide, folder: Path) -> SourceAdapter:
    if spec.source in TABLE_SOURCES:
        df, provenance = TABLE_SOURCES[spec.source](guide, spec.options_dict())
        if "centre" not in df.columns:
            df = df.with_columns(pl.lit(spec.source).alias("centre"))
        reference = [c for c in df.columns if c.startswith(REFERENCE_PREFIXES)]
        if reference:
            df.select("patient_id", *reference).sort("patient_id").write_parquet(folder / REFERENCE_FILE)
        truth = [
            c
            for c in df.columns
            if c not in (*guide.feature_names, "patient_id", "centre", "time", "event", *reference)
        ]
        write_canonical_export(
            df.select("patient_id", "centre", *guide.feature_names, "time", "event", *truth),
            guide,
            folder / "export",
            provenance,
        )
        return CanonicalExportSource(folder / "export", guide)
    if spec.source in EXPORT_SOURCES:
        return EXPORT_SOURCES[spec.source](guide, spec.options_dict(), folder / "export")
    if spec.source in ADAPTERS:
        return ADAPTERS[spec.source](guide, spec.options_dict())
    raise KeyError(
        f"dataset {spec.name!r}: unknown source {spec.source!r}; "
        f"known: {sorted({*TABLE_SOURCES, *ADAPTERS, *EXPORT_SOURCES})}"
    )


def _features_card(guide: Guide) -> list[dict[str, Any]]:
    """The dataset card's feature schema (``datasets.features_card``) plus each FHIR mapping."""
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


def source_card(spec: DatasetSpec, guide: Guide) -> dict[str, Any]:
    """The card's ``source`` record: source name, options and, for simulators, their fingerprint."""
    card: dict[str, Any] = {"name": spec.source, "options": {k: v for k, v in spec.options}}
    if spec.source == "simulated":
        # The simulator's code and parameters: a recalibrated simulator makes the cache stale.
        layer = {"treatment": True} if dict(spec.options).get("treatment") else {}
        card["generator"] = generator_fingerprint(guide.use_case, **layer)
    return card


def _combine(folder: Path, centres: list[str], guide: Guide) -> pl.DataFrame:
    tables = [pl.read_parquet(folder / "tables" / f"{c}.parquet") for c in centres]
    df = pl.concat(tables) if tables else pl.DataFrame()
    truth_path = folder / TRUTH_FILE
    if truth_path.is_file():
        df = df.join(pl.read_parquet(truth_path), on="patient_id", how="left")
    return df.sort("patient_id")


def build_dataset(
    spec: DatasetSpec, guide: Guide, folder: str | Path, *, progress: bool = False
) -> dict[str, Any]:
    """Build a dataset into ``folder`` (export, FHIR, tables, quality, card); return the card."""
    require_fhir(guide)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = _adapter(spec, guide, folder)
    ingest_source(source, guide, folder / "fhir", progress=progress)
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
    reference = folder / REFERENCE_FILE
    if reference.is_file():
        ref = pl.read_parquet(reference)
        card["reference"] = {
            "file": REFERENCE_FILE,
            "columns": [c for c in ref.columns if c != "patient_id"],
            "n_rows": ref.height,
            "note": "per-patient values outside FHIR (clinical scores, chosen specimen), not in the id",
        }
        (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
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
        "features": _features_card(guide),
        "truth_columns": [c for c in (truth.columns if truth is not None else []) if c != "patient_id"],
        "fhir": {"version": "R5 (5.0.0)", "validated_with": f"fhir.resources {fhir_version}"},
        "provenance": provenance,
    }
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a built dataset folder."""
    path = Path(folder) / CARD_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DatasetCacheError(
            f"dataset card {path} is unreadable ({err}); delete {folder} to rebuild it"
        ) from err


def load_dataset(folder: str | Path, guide: Guide) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read a built dataset and check its content against the card's id.

    Raises:
        DatasetCacheError: unreadable, stale (another guide version or schema) or
            corrupted (content id differs from the card); the message says what to delete.
    """
    folder = Path(folder)
    card = read_card(folder)
    hint = f"delete {folder} to rebuild it"
    if card.get("guide_version") != guide.version or card.get("features") != _features_card(guide):
        raise DatasetCacheError(
            f"stale dataset {folder}: built with guide {card.get('use_case')!r} version "
            f"{card.get('guide_version')!r}, the guide is now version {guide.version!r} "
            f"with another schema; {hint}"
        )
    try:
        df = _combine(folder, [c["name"] for c in card["centres"]], guide)
        actual = dataset_id(df, guide)
    except (OSError, KeyError, ValueError, TypeError, pl.exceptions.PolarsError) as err:
        raise DatasetCacheError(f"corrupted dataset {folder}: {err}; {hint}") from err
    if actual != card["id"]:
        raise DatasetCacheError(
            f"corrupted dataset {folder}: content id {actual} differs from {card['id']} in its card; {hint}"
        )
    return df, card


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
    if "generator" in wanted and {**built, "generator": None} == {**wanted, "generator": None}:
        if built.get("generator") != wanted["generator"]:
            raise DatasetCacheError(
                f"stale dataset {folder}: the simulator changed since it was built (code and "
                f"parameters fingerprint {built.get('generator')} -> {wanted['generator']}); "
                f"delete {folder} to rebuild it"
            )
    if built != wanted or card.get("use_case") != guide.use_case:
        raise DatasetCacheError(
            f"dataset {spec.name!r} in {folder} was built from source {card.get('source')} for use case "
            f"{card.get('use_case')!r}, the config asks for {wanted} and {guide.use_case!r}; "
            "rename the dataset in the config or delete the folder"
        )
    return df, card
