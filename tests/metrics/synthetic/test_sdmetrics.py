"""Equality with SDMetrics 0.32 (pinned): column shapes, pair trends and its quality report's thresholds.

Our pair metric bins a continuous column on the REAL table's edges for both tables (SDMetrics'
``ContingencySimilarity(continuous_column_names=...)`` does the same); SDMetrics' QualityReport
bins the synthetic column on its own edges instead, so the report is compared on column sets
without continuous-discrete pairs (docs/synthetic.md).
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
import sdmetrics
from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
from sdmetrics.reports import QualityReport
from sdmetrics.single_column import KSComplement, TVComplement
from sdmetrics.single_table import LogisticDetection

from fedjax_rhd.metrics.synthetic import detection, fidelity

SDTYPE = {"continuous": "numerical", "binary": "boolean", "categorical": "categorical"}


def _pandas(table: pl.DataFrame, names: list[str]):
    # Binary columns as float 0/1/NaN (SDMetrics' boolean sdtype), missing as NaN / None.
    return table.select(
        [pl.col(n).cast(pl.Float64) if table[n].dtype == pl.Int8 else pl.col(n) for n in names]
    ).to_pandas()


def _metadata(guide, names: list[str]) -> dict:
    return {"tables": {"mds": {"columns": {n: {"sdtype": SDTYPE[guide.feature(n).kind]} for n in names}}}}


def test_the_pinned_version_is_the_one_installed():
    # The thresholds recorded in every report are this release's defaults.
    assert sdmetrics.__version__ == fidelity.SDMETRICS_VERSION


def test_column_shapes_equal_ks_and_tv_complement(mds_split, mds_guide):
    train, _, unseen = mds_split
    ours = fidelity.column_shapes(train, unseen, mds_guide)
    names = list(mds_guide.feature_names)
    real, syn = _pandas(train, names), _pandas(unseen, names)
    for f in mds_guide.features:
        metric = KSComplement if f.kind == "continuous" else TVComplement
        # TVComplement adds 1e-6 to real counts of synthetic-only levels: equal up to that.
        assert ours[f.name]["score"] == pytest.approx(metric.compute(real[f.name], syn[f.name]), abs=1e-6), (
            f.name
        )


PAIRS = [("hb", "plt"), ("age", "anc"), ("TP53", "TP53multi"), ("ipssr_cyto", "del5q"), ("SF3B1", "SRSF2")]
PAIRS += [("hb", "ipssr_cyto"), ("bm_blasts", "TP53"), ("plt", "del5q")]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_pair_trend_equals_correlation_or_contingency_similarity(mds_split, mds_guide, a, b):
    train, _, unseen = mds_split
    ours = fidelity.pair_trend(train, unseen, mds_guide.feature(a), mds_guide.feature(b))
    real, syn = _pandas(train, [a, b]), _pandas(unseen, [a, b])
    kinds = {n: mds_guide.feature(n).kind for n in (a, b)}
    if all(k == "continuous" for k in kinds.values()):
        ref = CorrelationSimilarity.compute(real, syn)
    else:
        cont = [n for n, k in kinds.items() if k == "continuous"]
        ref = ContingencySimilarity.compute(real, syn, continuous_column_names=cont or None)
    assert ours["score"] == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize(
    "names",
    [
        ["ipssr_cyto", "del5q", "del7_7q", "complex_karyotype", "TP53", "TP53multi", "SF3B1", "SRSF2"],
        ["age", "hb", "plt", "anc", "bm_blasts"],
    ],
    ids=["discrete", "continuous"],
)
def test_quality_report_scores_and_thresholds(mds_split, mds_guide, names):
    train, _, unseen = mds_split
    details = {
        f"{a}|{b}": fidelity.pair_trend(train, unseen, mds_guide.feature(a), mds_guide.feature(b))
        for a, b in itertools.combinations(names, 2)
    }
    shapes = fidelity.column_shapes(train, unseen, mds_guide)
    real, syn = {"mds": _pandas(train, names)}, {"mds": _pandas(unseen, names)}
    report = QualityReport()
    # The thresholds SDMetrics 0.32 scores pair trends with by default (docs/synthetic.md).
    assert (report.real_correlation_threshold, report.real_association_threshold) == (
        fidelity.SDMETRICS_CORRELATION_THRESHOLD,
        fidelity.SDMETRICS_ASSOCIATION_THRESHOLD,
    )
    for thresholds in ((0.5, 0.3), (0.0, 0.0)):
        report.real_correlation_threshold, report.real_association_threshold = thresholds
        report.generate(real, syn, _metadata(mds_guide, names), verbose=False)
        props = report.get_properties().set_index("Property")["Score"]
        assert props["Column Shapes"] == pytest.approx(np.mean([shapes[n]["score"] for n in names]), abs=1e-6)
        ours = fidelity.pair_trends(
            details, real_correlation_threshold=thresholds[0], real_association_threshold=thresholds[1]
        )
        if np.isnan(ours["score"]):  # no pair passes: SDMetrics has no score either
            assert np.isnan(props["Column Pair Trends"])
        else:
            assert props["Column Pair Trends"] == pytest.approx(ours["score"], abs=1e-12)
    assert ours["n_counted"] == ours["n_pairs"] == len(details)


def test_detection_agrees_with_logistic_detection(mds_split, mds_guide):
    train, _, unseen = mds_split
    names = [*mds_guide.feature_names, "time", "event"]
    meta = _metadata(mds_guide, mds_guide.feature_names)
    meta["tables"]["mds"]["columns"] |= {"time": {"sdtype": "numerical"}, "event": {"sdtype": "boolean"}}
    shifted = unseen.with_columns(pl.col("hb") + 4.0)  # about two standard deviations
    np.random.seed(0)  # SDMetrics shuffles its folds with numpy's global generator
    ref_shifted = LogisticDetection.compute(_pandas(train, names), _pandas(shifted, names), meta, "mds")
    ours_same = detection.detection_metrics(train, train, mds_guide)
    ours_shifted = detection.detection_metrics(train, shifted, mds_guide)
    assert ours_same["score"] == 1.0  # AUC at or below 0.5: undetectable
    assert ours_shifted["auc"] > 0.85 and ours_shifted["score"] < 0.3
    # Folds and scaling differ in detail (5 seeded folds, missing indicators): close, not equal.
    assert ours_shifted["score"] == pytest.approx(ref_shifted, abs=0.1)


def test_gower_distance_without_log_scale_equals_sdmetrics_dcr(mds_split, mds_guide):
    from sdmetrics.single_table.privacy.dcr_utils import calculate_dcr

    from fedjax_rhd.metrics.synthetic.privacy import GowerEncoder

    train, _, unseen = mds_split
    train, syn = train[:60], unseen[:40]  # SDMetrics builds the full cross join in pandas
    names = [*mds_guide.feature_names, "time", "event"]
    meta = _metadata(mds_guide, mds_guide.feature_names)
    meta["tables"]["mds"]["columns"] |= {"time": {"sdtype": "numerical"}, "event": {"sdtype": "boolean"}}
    ref = calculate_dcr(_pandas(syn, names), _pandas(train, names), meta["tables"]["mds"])
    ours = GowerEncoder(mds_guide, train, syn, log_scale=False).nearest(syn, train)[:, 0]
    assert ours == pytest.approx(ref.to_numpy(), abs=1e-12)
