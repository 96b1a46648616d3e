"""The simulators as registry sources: ``simulated`` and ``simulated_dialects``.

One simulator per use case (``mds``, ``cmml``, ``aml``, ``mm``, ``mds_wsi``), each
with its generator version, citation and the files its output depends on. Both
sources register with :func:`harmonize.registry.register_source` on import:

- ``simulated``: the cohort as one canonical export (options ``n``, ``seed`` and,
  for MDS and CMML, the optional ``treatment`` layer); its dataset name is
  ``<use case>-sim-n<n>-seed<seed>`` and its card records the generator's
  fingerprint, so a recalibrated simulator makes cached datasets stale;
- ``simulated_dialects``: the same cohort split over ``centres`` centres, each
  exported in its own hospital dialect (:mod:`harmonize.dialects`).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from harmonize.dialects import write_dialect_exports
from harmonize.guide import Guide
from harmonize.mapped_source import MappedSource
from harmonize.mapping import load_mapping
from harmonize.registry import register_source, table_source
from harmonize.sources import SourceAdapter

Simulator = Callable[..., pl.DataFrame]

# use case -> (module of fedjax_rhd.simulate, its simulator function). The modules are imported
# when a cohort is built, not when this module is: every run registers the sources, but only a
# dataset build needs a simulator (and scipy.stats, which the copula imports: seconds of start-up).
_SIMULATOR_FUNCTIONS: dict[str, tuple[str, str]] = {
    "mds": ("mds", "simulate_mds"),
    "cmml": ("cmml", "simulate_cmml"),
    "aml": ("aml", "simulate_aml"),
    "mm": ("mm", "simulate_mm"),
    "mds_wsi": ("mds_wsi", "simulate_mds_wsi"),
}


class _Simulators(Mapping[str, Simulator]):
    """``SIMULATORS``: a read-only mapping that imports a simulator's module on first lookup."""

    def __getitem__(self, use_case: str) -> Simulator:
        module, function = _SIMULATOR_FUNCTIONS[use_case]
        return getattr(_simulate_module(module), function)

    def __iter__(self) -> Iterator[str]:
        return iter(_SIMULATOR_FUNCTIONS)

    def __len__(self) -> int:
        return len(_SIMULATOR_FUNCTIONS)


def _simulate_module(name: str) -> Any:
    return importlib.import_module(f"fedjax_rhd.simulate.{name}")


SIMULATORS: Mapping[str, Simulator] = _Simulators()
"""Simulator per use case: ``f(guide, n=..., seed=...) -> polars.DataFrame``."""

_CITATIONS: dict[str, str] = {
    "mds": "Synthetic MDS cohort from fedjax_rhd.simulate.mds (Gaussian copula fitted on the IWG-PM cohort, "
    "Bernard E, et al. NEJM Evidence 2022;1(7); hazard from IPSS-M plus effects it misses).",
    "cmml": "Synthetic CMML cohort from fedjax_rhd.simulate.cmml (Gaussian copula fitted on the CMML "
    "patients of IWG-PM, Bernard E, et al. NEJM Evidence 2022;1(7); hazard from CPSS-mol, Elena C, et al. "
    "Blood 2016;128:1408-17, plus effects it misses).",
    "aml": "Synthetic AML cohort from fedjax_rhd.simulate.aml, calibrated on Beat AML 2.0 "
    "(Bottomly D, et al. Cancer Cell 2022;40:850-64); ELN 2022 "
    "(Dohner H, et al. Blood 2022;140:1345-77).",
    "mm": "Synthetic multiple myeloma cohort from fedjax_rhd.simulate.mm; published frequencies "
    "(Kyle RA, et al. Mayo Clin Proc 2003; Greipp PR, et al. J Clin Oncol 2005; Palumbo A, et al. "
    "J Clin Oncol 2015; Walker BA, et al. Blood 2018).",
    "mds_wsi": "Synthetic MDS cohort (fedjax_rhd.simulate.mds) with a simulated 1,536-dimensional "
    "whole-slide-image embedding (fedjax_rhd.simulate.mds_wsi; the study's pathology foundation-model "
    "width).",
}

# The files a simulator's output depends on: a change to any of them makes cached
# datasets of that use case stale, even without a version bump.
_GENERATOR_FILES: dict[str, tuple[str, ...]] = {
    "mds": ("mds.py", "copula.py", "params_mds.json"),
    "cmml": ("cmml.py", "copula.py", "params_cmml.json"),
    "aml": ("aml.py", "common.py", "params/aml_beat.json"),
    "mm": ("mm.py", "common.py"),
    "mds_wsi": ("mds_wsi.py", "common.py", "mds.py", "copula.py", "params_mds.json"),
}

_SIMULATE_DIR = Path(__file__).resolve().parents[1] / "simulate"
DATASET_NAME = "{use_case}-sim-n{n}-seed{seed}"  # the simulated source's default dataset name


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


def generator_fingerprint(use_case: str, *, treatment: bool = False) -> str:
    """sha256 (first 12 hex) of the simulator's code and fitted parameters.

    Args:
        use_case: a use case with a simulator.
        treatment: the optional treatment layer is on, so its code is part of the generator.

    Returns:
        12 hex digits.
    """
    simulator_for(use_case)
    digest = hashlib.sha256()
    folder = _SIMULATE_DIR  # the files, read without importing the simulators
    files = _GENERATOR_FILES.get(use_case, ()) + (("treatment.py",) if treatment else ())
    for name in files:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:12]


def generator_info(use_case: str) -> tuple[str, str]:
    """``(generator version, citation)`` of a use case's simulator."""
    simulator_for(use_case)
    version = _simulate_module(_SIMULATOR_FUNCTIONS[use_case][0]).GENERATOR_VERSION
    if use_case == "mds_wsi":  # the WSI layer on top of the MDS simulator: both versions
        version = f"{version}+{_simulate_module('mds').GENERATOR_VERSION}"
    return version, _CITATIONS[use_case]


def simulated_table(guide: Guide, options: Mapping[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The simulated cohort of ``guide.use_case`` and its provenance (a table source).

    Args:
        guide: the use case's guide (``<use case>+treatment`` with the treatment layer).
        options: ``n``, ``seed`` and optionally ``treatment``.

    Returns:
        ``(table, provenance)``: ``patient_id, centre, <features>, time, event`` plus the
        ground truth (``oracle_risk``...), and ``source``, ``licence``, ``citation``.
    """
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


def simulated_fingerprint(guide: Guide, options: Mapping[str, Any]) -> str:
    """The ``simulated`` source's generator fingerprint (:func:`generator_fingerprint`)."""
    return generator_fingerprint(guide.use_case, treatment=bool(options.get("treatment")))


def simulated_dialects(guide: Guide, options: Mapping[str, Any], folder: Path) -> SourceAdapter:
    """The simulated cohort split over ``centres`` centres, each exported in its own dialect.

    Args:
        guide: the use case's guide.
        options: ``centres`` (default 3), ``n``, ``seed``.
        folder: the export folder; one table and mapping YAML per centre are written there.

    Returns:
        The mapped source reading those exports back, with the simulation's ground truth.
    """
    df, provenance = simulated_table(guide, options)
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


register_source(
    "simulated",
    table_source(simulated_table),
    fingerprint=simulated_fingerprint,
    run_options=("n", "seed", "treatment"),
    required=("n", "seed"),
    dataset_name=DATASET_NAME,
)
register_source(
    "simulated_dialects",
    simulated_dialects,
    run_options=("centres", "n", "seed"),
    required=("n", "seed"),
)
