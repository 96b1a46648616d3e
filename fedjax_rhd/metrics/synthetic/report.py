"""The validation report of a synthetic table: fidelity, utility, privacy and validity in one dict.

``validation_report(real_train, synthetic, holdout, guide)`` is a pure function of three tables
in the guide's schema; every number in it is JSON-able (NaN written as ``None``), so that a run
can store it in ``results.json`` and :func:`privacy_gate` can decide on it later. Each metric is
defined in docs/synthetic.md.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata

import numpy as np
import polars as pl

from fedjax_rhd.metrics.synthetic import fidelity as fid
from fedjax_rhd.metrics.synthetic._columns import finite_or_none
from fedjax_rhd.metrics.synthetic.detection import Classifier, detection_metrics
from fedjax_rhd.metrics.synthetic.genomics import co_mutation_agreement, gene_frequencies
from fedjax_rhd.metrics.synthetic.privacy import privacy_metrics
from fedjax_rhd.metrics.synthetic.survival import km_comparison, train_synthetic_test_real
from fedjax_rhd.metrics.synthetic.tstr_deepsurv import DeepSurvTSTR, train_synthetic_test_real_deepsurv
from fedjax_rhd.metrics.synthetic.validity import impossible_values
from harmonize.guide import Guide


@dataclasses.dataclass(frozen=True)
class ValidationSettings:
    """Knobs of :func:`validation_report`; the defaults run in seconds on the MDS table."""

    seed: int = 0  # detection folds and privacy subsampling
    km_groups: tuple[str, ...] = ("TP53", "ipssr_cyto")  # key groups present in the guide are used
    alpha: float = 0.05  # log-rank and chi-square significance level
    fdr_q: float = 0.05  # Benjamini-Hochberg level of the co-mutation pairs
    cox_l2: float = 1.0  # ridge penalty of the train-on-synthetic Cox model
    detection_classifier: Classifier = "logistic"
    privacy_max_rows: int | None = 5000  # distances cost n_query x n_reference x columns
    # DeepSurv train-on-synthetic (tstr_deepsurv.py); None skips it (two small jitted fits)
    tstr_deepsurv: DeepSurvTSTR | None = DeepSurvTSTR()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def validation_report(
    real_train: pl.DataFrame,
    synthetic: pl.DataFrame,
    holdout: pl.DataFrame,
    guide: Guide,
    settings: ValidationSettings = ValidationSettings(),
) -> dict[str, object]:
    """Every validation metric of a synthetic table, as JSON-able numbers.

    Args:
        real_train: the real rows the generator learnt from (guide features, ``time``, ``event``).
        synthetic: the generated rows, same schema.
        holdout: real rows the generator never saw (privacy baseline, TSTR test set).
        guide: the feature schema.
        settings: seeds, key groups and levels.

    Returns:
        ``{"n", "fidelity", "utility", "privacy", "validity", "settings", "versions"}``; the headline
        numbers are ``fidelity.csf``, ``fidelity.gsf``, ``fidelity.detection.auc``,
        ``utility.tstr.difference`` (linear Cox; ``utility.tstr_deepsurv.difference`` with DeepSurv),
        ``privacy.mia_auc`` and ``validity.total``.
    """
    shapes = fid.column_shapes(real_train, synthetic, guide)
    chi = {f.name: fid.chi_square(real_train, synthetic, f) for f in guide.features if f.kind != "continuous"}
    details = fid.pair_details(real_train, synthetic, guide)
    pairs_all = fid.pair_trends(details)
    pairs_sdm = fid.pair_trends(
        details,
        real_correlation_threshold=fid.SDMETRICS_CORRELATION_THRESHOLD,
        real_association_threshold=fid.SDMETRICS_ASSOCIATION_THRESHOLD,
    )
    shapes_mean = _mean([v["score"] for v in shapes.values()])
    fidelity = {
        "column_shapes": {"score": shapes_mean, "features": shapes},
        "missingness": {f.name: fid.missingness(real_train, synthetic, f) for f in guide.features},
        "chi_square": {
            "features": chi,
            "share_p_below_alpha": _mean([float(v["p_value"] < settings.alpha) for v in chi.values()]),
        },
        "pair_trends": pairs_all,
        "pair_trends_sdmetrics_thresholds": pairs_sdm,
        # SDMetrics' quality score: mean of Column Shapes and Column Pair Trends (its thresholds).
        "quality_sdmetrics_style": _mean([shapes_mean, pairs_sdm["score"]]),
        "association_difference": fid.association_difference(real_train, synthetic, guide),
        "detection": detection_metrics(
            real_train, synthetic, guide, classifier=settings.detection_classifier, seed=settings.seed
        ),
        "csf": fid.clinical_fidelity_score(real_train, synthetic, guide, details),
        "gsf": fid.genomic_fidelity_score(real_train, synthetic, guide, details),
    }
    groups = [g for g in settings.km_groups if g in guide.feature_names]
    utility = {
        "gene_frequencies": gene_frequencies(real_train, synthetic, guide),
        "co_mutation": co_mutation_agreement(real_train, synthetic, guide, q=settings.fdr_q),
        "kaplan_meier": {
            g: km_comparison(real_train, synthetic, guide, g, alpha=settings.alpha) for g in groups
        },
        "tstr": train_synthetic_test_real(real_train, synthetic, holdout, guide, l2=settings.cox_l2),
    }
    if settings.tstr_deepsurv is not None:
        utility["tstr_deepsurv"] = train_synthetic_test_real_deepsurv(
            real_train, synthetic, holdout, guide, settings.tstr_deepsurv
        )
    report = {
        "n": {"real_train": real_train.height, "synthetic": synthetic.height, "holdout": holdout.height},
        "fidelity": fidelity,
        "utility": utility,
        "privacy": privacy_metrics(
            real_train, synthetic, holdout, guide, max_rows=settings.privacy_max_rows, seed=settings.seed
        ),
        "validity": impossible_values(synthetic, guide),
        "settings": dataclasses.asdict(settings),
        "versions": {
            "guide": guide.version,
            "sdmetrics_thresholds": fid.SDMETRICS_VERSION,  # of pair_trends_sdmetrics_thresholds
            "scikit-learn": _version("scikit-learn"),
            "scipy": _version("scipy"),
        },
    }
    return finite_or_none(report)
