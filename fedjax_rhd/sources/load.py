"""The one data path of a run: use case -> registered dataset (through FHIR R5) -> Cohort."""

from __future__ import annotations

from pathlib import Path

from fedjax_rhd.cohorts import Cohort
from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.sources.scores import clinical_scores
from fedjax_rhd.sources.use_case import UseCase
from harmonize.datasets import load_or_build_dataset, load_reference
from harmonize.registry import DatasetSpec, spec_for_run


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
