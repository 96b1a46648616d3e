"""Where a run's table comes from: use cases, simulators and real cohorts registered as sources.

Importing this package registers every source fedjax_rhd provides with
:mod:`harmonize.registry` (one module each: :mod:`~fedjax_rhd.sources.simulated`
registers ``simulated`` and ``simulated_dialects``; :mod:`~fedjax_rhd.sources.iwgpm`
``iwgpm``; :mod:`~fedjax_rhd.sources.beataml` ``beataml``; a new cohort is a new module
and one import line below). :func:`load_use_case` is the one data path of a run.
The ``harmonize`` command finds these sources through the entry point
``harmonize.sources`` (``pyproject.toml``) naming this package.
"""

from fedjax_rhd.cohorts import Cohort
from fedjax_rhd.sources import beataml, iwgpm, simulated, synthetic  # noqa: F401  (registers the sources)
from fedjax_rhd.sources.load import dataset_spec, load_registered_dataset, load_use_case
from fedjax_rhd.sources.scores import clinical_scores
from fedjax_rhd.sources.use_case import UseCase

__all__ = [
    "Cohort",
    "UseCase",
    "clinical_scores",
    "dataset_spec",
    "load_registered_dataset",
    "load_use_case",
]
