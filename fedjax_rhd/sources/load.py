"""The one data path of a run: use case -> registered dataset (through FHIR R5) -> Cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedjax_rhd.cohorts import Cohort
from fedjax_rhd.data.checks import UnusableData, require_rows
from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.sources.scores import clinical_scores
from fedjax_rhd.sources.use_case import UseCase
from harmonize.datasets import load_dataset, load_or_build_dataset, load_reference, stale_reasons
from harmonize.guide import Guide
from harmonize.identity import CARD_FILE, DatasetCacheError, feature_differences, features_card, read_card
from harmonize.registry import SOURCES, DatasetSpec, dataset_folder, source_card, spec_for_run


def dataset_spec(
    use_case: UseCase, *, seed_data: int, real_data_root: str | Path | None = None
) -> DatasetSpec:
    """The registered dataset a use case names (:func:`harmonize.registry.spec_for_run`).

    Args:
        use_case: the use case.
        seed_data: the simulators' seed (``seed.data``); sources that draw no cohort ignore it.
        real_data_root: the real cohorts' folder, for the sources that read one (else
            ``$FEDJAX_RHD_SHARED_DATA`` or ``../shared/data`` when they build).

    Returns:
        Its name, guide, source and options.
    """
    return spec_for_run(
        use_case=use_case.name,
        guide=use_case.guide_name,
        source=use_case.source,
        dataset=use_case.dataset,
        n_patients=use_case.n_patients,
        seed_data=seed_data,
        n_centres=use_case.n_centres,
        mapping=use_case.mapping,
        treatment=use_case.treatment,
        root=real_data_root,
    )


def load_use_case(
    use_case: UseCase,
    *,
    seed_data: int,
    data_root: str | Path,
    real_data_root: str | Path | None,
    progress: bool = False,
) -> Cohort:
    """A use case's data: its registered dataset (source -> FHIR R5 -> table), built on first use.

    Every source goes this one way (simulators, real cohorts, dialects, user CSVs):
    :func:`harmonize.datasets.load_or_build_dataset` builds the dataset under
    ``<data_root>/datasets/<name>`` once and checks its content id on every reuse.

    Args:
        use_case: what ``conf/use_case`` names.
        seed_data: the simulators' seed.
        data_root: root of the dataset cache.
        real_data_root: the real cohorts' folder (``None``: the env var or ``../shared/data``).
        progress: progress bars while building.

    Returns:
        ``Cohort(table, card, score_name, scores)``: rows sorted by ``patient_id`` (with
        ground-truth columns such as ``oracle_risk`` for simulated sources), the card,
        and the clinical score (:func:`fedjax_rhd.sources.scores.clinical_scores`).

    Raises:
        KeyError: unknown source.
        harmonize.identity.DatasetCacheError: a cached dataset is stale or corrupted.
        fedjax_rhd.cohorts.RealDataMissing: a real source whose data folder is absent.
    """
    guide = cached_guide(use_case.guide_name)
    spec = dataset_spec(use_case, seed_data=seed_data, real_data_root=real_data_root)
    table, card = load_or_build_dataset(spec, guide, data_root, progress=progress)
    reference = load_reference(data_root, spec.name)
    score_name, scores = clinical_scores(table, guide, card=card, reference=reference)
    return Cohort(table, card, score_name, scores)


# What encoding a row needs to mean the same in two datasets: a feature's kind, levels and unit.
_SCHEMA_KEYS = ("kind", "levels", "unit")


def schema_differences(guide: Guide, card: dict[str, Any]) -> list[str]:
    """How a built dataset's feature schema differs from ``guide``'s, one line per feature.

    Args:
        guide: the guide a model was trained on.
        card: the other dataset's card (its ``features``).

    Returns:
        ``"<feature>: <what>"`` for each feature missing on either side or differing in kind,
        levels or unit (empty: compatible).
    """
    missing, extra, changed = feature_differences(
        features_card(guide), card.get("features", []), _SCHEMA_KEYS
    )
    out = [f"{n}: not in dataset {card.get('name')!r}" for n in missing]
    out += [f"{n}: not in guide {guide.use_case!r}" for n in extra]
    out += [f"{name}: {key} {theirs!r} there, {ours!r} here" for name, key, ours, theirs in changed]
    return out


def load_registered_dataset(name: str, guide: Guide, *, data_root: str | Path) -> Cohort:
    """An already-built registered dataset, checked against ``guide``: what ``test.dataset`` names.

    The dataset must have been built (by a run naming it, ``harmonize build`` or ``harmonize map
    --out <data_root>/datasets/<name>``) with a guide of the same version and feature schema
    (names, kinds, levels, units), so the trained model's encoding and preprocessing mean the
    same on its rows. Its content id is checked, and, for a registered source, the digests of
    the files it was built from (:func:`harmonize.datasets.stale_reasons`).

    Args:
        name: the dataset's name (``<data_root>/datasets/<name>``).
        guide: the guide the model was trained on.
        data_root: root of the dataset cache.

    Returns:
        The dataset as a :class:`Cohort` (its own clinical score, if any).

    Raises:
        harmonize.identity.DatasetCacheError: not built, stale or corrupted (names the folder).
        UnusableData: another guide version or feature schema (names the features), or no rows
            or no events.
    """
    folder = dataset_folder(data_root, name)
    if not (folder / CARD_FILE).is_file():
        raise DatasetCacheError(
            f"no registered dataset {name!r} (no {folder / CARD_FILE}); build it first: a run with "
            f"use_case.dataset={name}, or `harmonize map ... --out {folder}`"
        )
    card = read_card(folder)
    differences = schema_differences(guide, card)
    if differences or card.get("guide_version") != guide.version:
        raise UnusableData(
            f"dataset {name!r} was built with guide {card.get('use_case')!r} version "
            f"{card.get('guide_version')!r}, the model with {guide.use_case!r} version {guide.version!r}"
            + (f"; features that differ: {'; '.join(differences)}" if differences else "")
        )
    built = card.get("source") or {}
    if built.get("name") in SOURCES:  # a source we can ask which files it read
        options = tuple((k, v) for k, v in (built.get("options") or {}).items())
        wanted = source_card(DatasetSpec(name, guide.use_case, built["name"], options), guide)
        stale = stale_reasons(built, wanted)
        if stale:
            raise DatasetCacheError(
                f"stale dataset {folder}: {'; '.join(stale)}; delete {folder} to rebuild it"
            )
    table, card = load_dataset(folder, guide)
    require_rows(name, table)
    score_name, scores = clinical_scores(table, guide, card=card, reference=load_reference(data_root, name))
    return Cohort(table, card, score_name, scores)
