"""Threshold claims decided on an interval's bounds, never on its point estimate.

A claim such as "FedAvg matched centralised training within ±0.02" or "the smallest node
alone is at least 0.03 below FedAvg" is a statement about a difference of C-indices. It
is decided on the 95% interval of that difference, as an equivalence or a one-sided
test would decide it (the interval-inclusion rule of Schuirmann 1987, "A comparison of
the two one-sided tests procedure and the power approach for assessing the equivalence
of average bioavailability", J Pharmacokinet Biopharm 15:657-80). There are always three
outcomes, and the wording names which one holds:

* ``SHOWN``: the whole interval lies where the claim says;
* ``SHOWN_OTHERWISE``: the whole interval lies where the claim is false;
* ``NOT_SHOWN``: the interval straddles the threshold, so the data decide neither way.

Bounds are strict: an interval that ends exactly on the threshold is not shown either way.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal

from fedjax_rhd.report.stats import Interval

Claim = Literal["within", "below", "above"]


class Outcome(enum.Enum):
    """Which of the three outcomes a claim has on its interval."""

    SHOWN = "shown"
    NOT_SHOWN = "not shown"
    SHOWN_OTHERWISE = "shown otherwise"


@dataclasses.dataclass(frozen=True)
class Decision:
    """A claim's outcome and the sentence fragment that says it."""

    outcome: Outcome
    text: str  # e.g. "shown: more than 0.03 below (95% CI -0.054 to -0.038, wholly below -0.03)"

    @property
    def shown(self) -> bool:
        return self.outcome is Outcome.SHOWN

    @property
    def short(self) -> str:
        """The fragment without its interval, for a table cell: e.g. ``"not shown: above 0"``."""
        return self.text.split(" (", 1)[0]


def _ci(low: float, high: float) -> str:
    return f"95% CI {low:+.3f} to {high:+.3f}"


def decide(interval: Interval | tuple[float, float], claim: Claim, threshold: float = 0.0) -> Decision:
    """Decide a threshold claim about a difference on its interval's bounds.

    Args:
        interval: the difference's interval (an :class:`Interval` or ``(low, high)``).
        claim: ``"within"``: |difference| < threshold (equivalence within a margin);
            ``"below"``: difference < -threshold (at least ``threshold`` below; 0 = "lost");
            ``"above"``: difference > threshold (at least ``threshold`` above; 0 = "gained").
        threshold: the margin (``within``) or the distance ``d`` (``below`` / ``above``), >= 0.

    Returns:
        The outcome and a fragment starting with the outcome's name.

    Raises:
        ValueError: a negative threshold, a ``within`` claim with margin 0 (it can never be
            shown), an interval with ``low > high``, or an unknown claim.

    Example:
        >>> decide((-0.054, -0.018), "below", 0.03).outcome
        <Outcome.NOT_SHOWN: 'not shown'>
    """
    if isinstance(interval, Interval):
        low, high = interval.ci_low, interval.ci_high
    else:
        low, high = map(float, interval)
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if low > high:
        raise ValueError(f"interval bounds out of order: {low} > {high}")
    ci = _ci(low, high)
    d = threshold
    if claim == "within":
        if d == 0:
            raise ValueError("a 'within' claim needs a positive margin")
        if -d < low and high < d:
            return Decision(Outcome.SHOWN, f"shown: within ±{d:g} ({ci}, inside the margin)")
        if high < -d or low > d:
            side = "below" if high < -d else "above"
            return Decision(
                Outcome.SHOWN_OTHERWISE,
                f"shown otherwise: more than {d:g} {side} ({ci}, wholly outside ±{d:g})",
            )
        return Decision(Outcome.NOT_SHOWN, f"not shown: within ±{d:g} ({ci} reaches past the margin)")
    if claim not in ("below", "above"):
        raise ValueError(f"unknown claim {claim!r}; expected 'within', 'below' or 'above'")
    sign = -1.0 if claim == "below" else 1.0
    edge = sign * d if d else 0.0  # the threshold on the difference's axis (never -0.0)
    at = f"{edge:+g}" if d else "0"
    other = "above" if claim == "below" else "below"
    what = f"more than {d:g} {claim}" if d > 0 else f"{claim} 0"
    if (claim == "below" and high < edge) or (claim == "above" and low > edge):
        return Decision(Outcome.SHOWN, f"shown: {what} ({ci}, wholly {claim} {at})")
    if (claim == "below" and low > edge) or (claim == "above" and high < edge):
        neg = f"not {what}" if d > 0 else f"{other} 0"
        return Decision(Outcome.SHOWN_OTHERWISE, f"shown otherwise: {neg} ({ci}, wholly {other} {at})")
    return Decision(Outcome.NOT_SHOWN, f"not shown: {what} ({ci} contains {at})")
