"""Dataset registry: named, harmonised ML-ready datasets, built on first use and cached.

A *source* is registered by name (:func:`register_source`) with one factory
signature, :data:`SourceFactory`: ``f(guide, options, export_folder) ->``
:class:`~harmonize.sources.SourceAdapter`. A source that produces a canonical
table writes the canonical export into the folder it is given and returns a
:class:`~harmonize.sources.CanonicalExportSource` (:func:`table_source` turns a
``(guide, options) -> (table, provenance)`` function into such a factory); a
source that reads files (``export``, ``csv``) returns its adapter directly.
``harmonize`` registers only these generic sources; other packages register
theirs on import (simulators, real cohorts), and the command line imports them
as plugins (:func:`load_source_plugins`).

A :class:`DatasetSpec` names a dataset and says where it comes from (a source
and its options). :func:`load_or_build_dataset` returns the cached dataset or
builds it through the whole path (ARCHITECTURE §1.1-1.2)::

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

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from harmonize.extract import extract_centre
from harmonize.fhir import INGEST_REPORT, ingest_source
from harmonize.guide import Guide, require_fhir
from harmonize.identity import (
    CARD_FILE,
    DatasetCacheError,
    dataset_id,
    fhir_features_card,
    read_card,
    write_card,
)
from harmonize.mapping import mapped_source
from harmonize.quality import quality_report, report_markdown
from harmonize.sources import (
    REFERENCE_FILE,
    TRUTH_FILE,
    CanonicalExportSource,
    SourceAdapter,
    write_canonical_export,
)

__all__ = [
    "CARD_FILE",
    "DatasetCacheError",
    "DatasetSpec",
    "Fingerprint",
    "RUN_OPTIONS",
    "RegisteredSource",
    "SOURCES",
    "SourceFactory",
    "TableSource",
    "build_dataset",
    "dataset_folder",
    "dataset_name",
    "extract_dataset",
    "load_dataset",
    "load_or_build_dataset",
    "load_reference",
    "load_source_plugins",
    "read_card",
    "register_source",
    "source_card",
    "source_registration",
    "spec_for_run",
    "table_source",
]

DATASET_FORMAT = "fedjax_rhd/harmonised-dataset/v1"
PLUGIN_GROUP = "harmonize.sources"  # entry points: modules that register sources when imported
PLUGIN_ENV = "HARMONIZE_SOURCES"  # comma-separated modules to import too (installs without the entry point)

SourceFactory = Callable[[Guide, Mapping[str, Any], Path], SourceAdapter]
"""``f(guide, options, export_folder) -> adapter``; the folder is ``<dataset>/export`` (not yet created)."""

TableSource = Callable[[Guide, Mapping[str, Any]], tuple[pl.DataFrame, dict[str, Any]]]
"""``f(guide, options) -> (canonical table, provenance)``; see :func:`table_source`."""

Fingerprint = Callable[[Guide, Mapping[str, Any]], str]
"""``f(guide, options) -> str``: a generator's code and parameters; a change makes caches stale."""

RUN_OPTIONS: dict[str, str] = {
    "centres": "use_case.n_centres",
    "n": "use_case.n_patients",
    "seed": "seed.data",
    "mapping": "use_case.mapping",
    "root": "real_data_root",
    "treatment": "use_case.treatment",
}
"""Source options a run's settings can fill (:func:`spec_for_run`) -> the setting that fills each."""


@dataclasses.dataclass(frozen=True)
class RegisteredSource:
    """A registered source: how to build its adapter and how a run names its options.

    Attributes:
        name: the source's name (``use_case.source``, ``DatasetSpec.source``).
        factory: builds the adapter (:data:`SourceFactory`).
        fingerprint: for generated data, the generator's fingerprint, recorded in the
            card (``source.generator``): a cached dataset whose fingerprint differs is
            stale. ``None`` for data read from files.
        run_options: the keys of :data:`RUN_OPTIONS` this source takes from a run, in
            the order its options are recorded.
        required: those of ``run_options`` a run must set.
        dataset_name: the default dataset name as a ``str.format`` template over
            ``use_case`` and the options (e.g. ``"{use_case}-sim-n{n}-seed{seed}"``);
            ``None``: the use case's name.
    """

    name: str
    factory: SourceFactory
    fingerprint: Fingerprint | None = None
    run_options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    dataset_name: str | None = None


SOURCES: dict[str, RegisteredSource] = {}
"""Every registered source by name (:func:`register_source`)."""


def register_source(
    name: str,
    factory: SourceFactory,
    *,
    fingerprint: Fingerprint | None = None,
    run_options: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
    dataset_name: str | None = None,
    replace: bool = False,
) -> RegisteredSource:
    """Register a source under ``name`` (see :class:`RegisteredSource` for the arguments).

    Args:
        name: the source's name.
        factory: builds its adapter.
        fingerprint: the generator's fingerprint (generated data only).
        run_options: options it takes from a run (keys of :data:`RUN_OPTIONS`).
        required: options a run must set.
        dataset_name: default dataset-name template.
        replace: replace an existing registration of ``name`` (tests, local overrides).

    Returns:
        The registration.

    Raises:
        ValueError: ``name`` is registered already with something else (and not
            ``replace``), or an option is not a run option.
    """
    unknown = [o for o in (*run_options, *required) if o not in RUN_OPTIONS]
    if unknown or not set(required) <= set(run_options):
        raise ValueError(
            f"source {name!r}: run_options {run_options} / required {required} must be keys of "
            f"{sorted(RUN_OPTIONS)}, required a subset of run_options"
        )
    entry = RegisteredSource(name, factory, fingerprint, tuple(run_options), tuple(required), dataset_name)
    existing = SOURCES.get(name)
    if existing is not None and existing != entry and not replace:
        raise ValueError(
            f"source {name!r} is registered already (factory {existing.factory.__module__}."
            f"{existing.factory.__qualname__}); pass replace=True to replace it"
        )
    SOURCES[name] = entry
    return entry


def source_registration(name: str) -> RegisteredSource:
    """The registration of source ``name``.

    Raises:
        KeyError: unknown source; the message lists the known ones and how others get registered.
    """
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(
            f"unknown source {name!r}; known: {sorted(SOURCES)}. Sources are registered on import of the "
            f"package that provides them (fedjax_rhd.sources for simulators and real cohorts); the "
            f"harmonize command imports the modules named by entry points {PLUGIN_GROUP!r} and ${PLUGIN_ENV}"
        ) from None


def load_source_plugins() -> list[str]:
    """Import the modules that register more sources, so a command line sees every source.

    The modules are named by the installed entry points of group ``harmonize.sources``
    (an installed ``fedjax_rhd`` names ``fedjax_rhd.sources``), then by the comma-separated
    ``$HARMONIZE_SOURCES`` (for an install made before its entry point existed).
    Importing one registers its sources (:func:`register_source`).

    Returns:
        The modules imported, in order.
    """
    names = [ep.value for ep in metadata.entry_points(group=PLUGIN_GROUP)]
    names += [m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",") if m.strip()]
    loaded = []
    for name in dict.fromkeys(names):  # each once, in order
        module, _, attr = name.partition(":")
        imported = importlib.import_module(module.strip())
        if attr:  # an entry point may name a registering function instead of a module
            getattr(imported, attr.strip())()
        loaded.append(name)
    return loaded


def table_source(produce: TableSource, *, centre: str | None = None) -> SourceFactory:
    """Turn a ``(guide, options) -> (canonical table, provenance)`` function into a source factory.

    The factory writes the table as the canonical export into the folder it is given
    (:func:`~harmonize.sources.write_canonical_export`: ``reference`` columns to
    ``reference.parquet``, other extra columns to ``truth.parquet``) and returns the
    :class:`~harmonize.sources.CanonicalExportSource` that reads it back.

    Args:
        produce: returns ``patient_id, [centre,] <guide features>, time, event`` plus
            optional reference and truth columns, and the provenance (``source``,
            ``licence``, ``citation``, ...).
        centre: the centre of every row when the table has no ``centre`` column.

    Returns:
        The factory, for :func:`register_source`.
    """

    def factory(guide: Guide, options: Mapping[str, Any], folder: Path) -> SourceAdapter:
        df, provenance = produce(guide, options)
        if "centre" not in df.columns:
            if centre is None:
                raise ValueError("table source: the table has no centre column and no default centre is set")
            df = df.with_columns(pl.lit(centre).alias("centre"))
        write_canonical_export(df, guide, folder, provenance)
        return CanonicalExportSource(folder, guide)

    return factory


# The generic sources: files that are already an export (``export``: option ``path``) or a user
# table with a mapping YAML per centre (``csv``: option ``mapping``, see harmonize.mapping).
register_source("export", lambda guide, options, folder: CanonicalExportSource(options["path"], guide))
register_source(
    "csv",
    lambda guide, options, folder: mapped_source(guide, options["mapping"]),
    run_options=("mapping",),
    required=("mapping",),
)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A named dataset and its origin.

    Attributes:
        name: the dataset's name (folder under ``<data_root>/datasets``).
        guide: guide name (``harmonize/guides/<guide>.yaml``) or path.
        source: a registered source (:data:`SOURCES`).
        options: the source's options as sorted ``(key, value)`` pairs.
    """

    name: str
    guide: str
    source: str
    options: tuple[tuple[str, Any], ...] = ()

    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)


def dataset_name(use_case: str, source: str, options: Mapping[str, Any], dataset: str | None = None) -> str:
    """The dataset-name rule, the one place it is written.

    ``dataset`` when given; else the source's template (:class:`RegisteredSource`,
    e.g. ``mds-sim-n4427-seed0``), else the use case. A dataset with the optional
    treatment layer is another dataset: its name ends in ``-treatment``, so it never
    reuses the cache of the default one.

    Args:
        use_case: the use case (``mds``, ``aml_beat``...).
        source: a registered source.
        options: the source's options.
        dataset: the name a config gives, if any.

    Returns:
        The dataset's name.
    """
    template = source_registration(source).dataset_name
    name = dataset or (template.format(use_case=use_case, **options) if template else use_case)
    if options.get("treatment"):
        name = name if name.endswith("-treatment") else f"{name}-treatment"
    return name


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
    root: str | Path | None = None,
) -> DatasetSpec:
    """The dataset a run's ``use_case`` settings name.

    The source's registration says which of the run's values become its options
    (:data:`RUN_OPTIONS`): simulators take ``n`` and ``seed``, real cohorts the raw
    data folder ``root`` (when set), ``csv`` its ``mapping``. ``treatment`` (the
    optional treatment layer) needs a source that takes it.

    Raises:
        KeyError: unknown source.
        ValueError: a required option is unset, or the source has no treatment layer.
    """
    reg = source_registration(source)
    if treatment and "treatment" not in reg.run_options:
        takers = "|".join(sorted(n for n, r in SOURCES.items() if "treatment" in r.run_options))
        raise ValueError(f"use_case.treatment=true needs use_case.source={takers}, not {source!r}")
    values: dict[str, Any] = {
        "centres": int(n_centres),
        "n": int(n_patients),
        "seed": int(seed_data),
        "mapping": [str(m) for m in mapping] or None,
        "root": str(root) if root else None,
        "treatment": True if treatment else None,
    }
    options: list[tuple[str, Any]] = []
    for key in reg.run_options:
        if values[key] is not None:
            options.append((key, values[key]))
        elif key in reg.required:
            raise ValueError(f"use_case.source={source} needs {RUN_OPTIONS[key]} (its option {key!r})")
    name = dataset_name(use_case, source, dict(options), dataset)
    return DatasetSpec(name=name, guide=guide, source=source, options=tuple(options))


def dataset_folder(data_root: str | Path, name: str) -> Path:
    """``<data_root>/datasets/<name>``: where a registered dataset lives."""
    return Path(data_root) / "datasets" / name


def source_card(spec: DatasetSpec, guide: Guide) -> dict[str, Any]:
    """The card's ``source`` record: source name, options and, for generators, their fingerprint."""
    card: dict[str, Any] = {"name": spec.source, "options": {k: v for k, v in spec.options}}
    reg = SOURCES.get(spec.source)
    if reg is not None and reg.fingerprint is not None:
        # The generator's code and parameters: a recalibrated simulator makes the cache stale.
        card["generator"] = reg.fingerprint(guide, spec.options_dict())
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
    source = source_registration(spec.source).factory(guide, spec.options_dict(), folder / "export")
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
