"""Threshold claims decided on hand-made intervals: every claim at its three outcomes."""

from __future__ import annotations

import pytest

from fedjax_rhd.report.decide import Outcome, decide
from fedjax_rhd.report.stats import Interval

SHOWN, NOT_SHOWN, OTHERWISE = Outcome.SHOWN, Outcome.NOT_SHOWN, Outcome.SHOWN_OTHERWISE


@pytest.mark.parametrize(
    ("interval", "claim", "d", "outcome", "words"),
    [
        # within a margin (equivalence): inside, straddling an edge, wholly outside on either side
        ((-0.011, -0.002), "within", 0.02, SHOWN, "shown: within ±0.02"),
        ((-0.025, 0.004), "within", 0.02, NOT_SHOWN, "not shown: within ±0.02"),
        ((-0.010, 0.021), "within", 0.02, NOT_SHOWN, "reaches past the margin"),
        ((-0.060, -0.030), "within", 0.02, OTHERWISE, "more than 0.02 below"),
        ((0.021, 0.050), "within", 0.02, OTHERWISE, "more than 0.02 above"),
        # at least d below: the CMML case (-0.037 [-0.054, -0.018]) is NOT shown at 0.03
        ((-0.054, -0.018), "below", 0.03, NOT_SHOWN, "not shown: more than 0.03 below"),
        ((-0.070, -0.031), "below", 0.03, SHOWN, "shown: more than 0.03 below"),
        ((-0.029, 0.010), "below", 0.03, OTHERWISE, "shown otherwise: not more than 0.03 below"),
        # at least d above
        ((0.031, 0.060), "above", 0.03, SHOWN, "shown: more than 0.03 above"),
        ((0.010, 0.040), "above", 0.03, NOT_SHOWN, "contains +0.03"),
        ((-0.010, 0.029), "above", 0.03, OTHERWISE, "not more than 0.03 above"),
        # gained (above 0) / lost (below 0)
        ((0.001, 0.020), "above", 0.0, SHOWN, "shown: above 0"),
        ((-0.004, 0.020), "above", 0.0, NOT_SHOWN, "contains 0)"),
        ((-0.030, -0.001), "above", 0.0, OTHERWISE, "shown otherwise: below 0"),
        ((-0.030, -0.001), "below", 0.0, SHOWN, "shown: below 0"),
    ],
)
def test_each_claim_at_each_outcome(interval, claim, d, outcome, words):
    decision = decide(interval, claim, d)
    assert decision.outcome is outcome
    assert decision.text.startswith(outcome.value + ":")
    assert words in decision.text
    assert decision.shown is (outcome is SHOWN)


def test_the_point_estimate_never_decides():
    # The same point estimate (-0.037, "at least 0.03 below" by its value) at three widths.
    for (low, high), outcome in [((-0.045, -0.031), SHOWN), ((-0.054, -0.018), NOT_SHOWN)]:
        assert decide(Interval(-0.037, low, high, (0, 1), 100), "below", 0.03).outcome is outcome
    # A point estimate inside the margin with an interval that leaves it is not "matched".
    assert decide(Interval(0.0, -0.03, 0.03, (0,), 100), "within", 0.02).outcome is NOT_SHOWN


def test_an_interval_ending_on_the_threshold_is_not_shown_either_way():
    assert decide((-0.05, -0.03), "below", 0.03).outcome is NOT_SHOWN
    assert decide((-0.03, -0.01), "below", 0.03).outcome is NOT_SHOWN
    assert decide((0.0, 0.01), "above", 0.0).outcome is NOT_SHOWN
    assert decide((-0.02, 0.01), "within", 0.02).outcome is NOT_SHOWN


@pytest.mark.parametrize(
    ("args", "match"),
    [(((0.1, 0.0), "above", 0.0), "out of order"), (((0.0, 0.1), "within", 0.0), "positive margin"),
     (((0.0, 0.1), "above", -1.0), ">= 0"), (((0.0, 0.1), "beside", 0.0), "unknown claim")],
)  # fmt: skip
def test_bad_arguments_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        decide(*args)


def test_short_form_drops_the_interval():
    assert decide((-0.03, -0.01), "above").short == "shown otherwise: below 0"
    assert decide((-0.03, 0.01), "above").short == "not shown: above 0"
