"""Source registry: every source by name, one factory signature, and the dataset a run names.

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
and its options); :func:`spec_for_run` derives it from what a run's use case names,
with the dataset-name rule in one place (:func:`dataset_name`). Building and
loading the dataset itself is :mod:`harmonize.datasets`.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from harmonize.guide import Guide
from harmonize.inputs import Inputs, folder_inputs, input_digests, mapping_inputs
from harmonize.mapped_source import mapped_source
from harmonize.sources import (
    CanonicalExportSource,
    SourceAdapter,
    write_canonical_export,
)

__all__ = [
    "DatasetSpec",
    "Fingerprint",
    "RUN_OPTIONS",
    "RegisteredSource",
    "SOURCES",
    "SourceFactory",
    "TableSource",
    "dataset_folder",
    "dataset_name",
    "load_source_plugins",
    "register_source",
    "source_card",
    "source_registration",
    "spec_for_run",
    "table_source",
]

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
        inputs: the files the source reads for given options (:data:`harmonize.inputs.Inputs`);
            their digests, with the guide's, go into the card, so an edited file makes the
            cache stale. ``None``: no files (generated data; its ``fingerprint`` covers it).
    """

    name: str
    factory: SourceFactory
    fingerprint: Fingerprint | None = None
    run_options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    dataset_name: str | None = None
    inputs: Inputs | None = None


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
    inputs: Inputs | None = None,
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
        inputs: the files it reads (their digests make a cache stale when they change).
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
    entry = RegisteredSource(
        name, factory, fingerprint, tuple(run_options), tuple(required), dataset_name, inputs
    )
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
register_source(
    "export",
    lambda guide, options, folder: CanonicalExportSource(options["path"], guide),
    inputs=lambda guide, options: folder_inputs(Path(options["path"])),
)
register_source(
    "csv",
    lambda guide, options, folder: mapped_source(guide, options["mapping"]),
    run_options=("mapping",),
    required=("mapping",),
    inputs=mapping_inputs,
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
    """The card's ``source`` record: name, options, a generator's fingerprint, the inputs' digests.

    ``inputs`` (:func:`harmonize.inputs.input_digests`): the sha256 of the guide's files and of
    every file the source reads, so a mapping, guide or source file edited in place makes the
    cache stale instead of being answered with the old tables.
    """
    card: dict[str, Any] = {"name": spec.source, "options": {k: v for k, v in spec.options}}
    reg = SOURCES.get(spec.source)
    if reg is not None and reg.fingerprint is not None:
        # The generator's code and parameters: a recalibrated simulator makes the cache stale.
        card["generator"] = reg.fingerprint(guide, spec.options_dict())
    files = reg.inputs(guide, spec.options_dict()) if reg is not None and reg.inputs is not None else {}
    card["inputs"] = input_digests(guide, files)
    return card
