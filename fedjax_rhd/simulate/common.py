"""Helpers every cohort simulator shares: outcome draws, typed columns, guide checks.

The outcome model is the one of the MDS simulator (ARCHITECTURE §1.3): a Weibull
proportional-hazards death time given the true log-hazard, administrative
censoring at a centre's follow-up end drawn uniformly, and exponential loss to
follow-up; times are whole days (ties) of at least one day.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import polars as pl

from harmonize.guide import Feature, Guide

DAYS_PER_YEAR = 365.25


def draw_outcome(
    rng: np.random.Generator,
    eta: np.ndarray,
    *,
    shape: float,
    scale: float,
    follow_up: tuple[float, float],
    loss_rate: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Weibull death time with hazard ``(k / lam) (t / lam)^(k - 1) exp(eta)``, censored.

    Args:
        rng: the simulator's generator (consumes 3 draws per patient).
        eta: f64[n] true log-hazard.
        shape, scale: Weibull ``k`` and ``lam`` (years).
        follow_up: administrative follow-up ~ U(low, high) years.
        loss_rate: loss to follow-up per year (exponential).

    Returns:
        ``(time in years on whole days, event as int8)``.
    """
    n = eta.shape[0]
    death = scale * (rng.standard_exponential(n) * np.exp(-eta)) ** (1.0 / shape)
    admin = rng.uniform(*follow_up, n)
    loss = rng.standard_exponential(n) / loss_rate if loss_rate > 0 else np.full(n, np.inf)
    censor = np.minimum(admin, loss)
    event = (death <= censor).astype(np.int8)
    days = np.maximum(np.round(np.minimum(death, censor) * DAYS_PER_YEAR), 1.0)
    return days / DAYS_PER_YEAR, event


def typed_column(f: Feature, values: np.ndarray, missing: np.ndarray) -> pl.Series:
    """A feature column in the guide's type (continuous Float64, binary Int8, categorical String)."""
    if f.kind == "continuous":
        out = np.where(missing, np.nan, np.asarray(values, dtype=np.float64))
        return pl.Series(f.name, out, dtype=pl.Float64, nan_to_null=True)
    if f.kind == "binary":
        return pl.Series(f.name, np.asarray(values).astype(np.int8), dtype=pl.Int8).set(
            pl.Series(missing), None
        )
    labels = np.asarray(f.levels, dtype=object)[np.asarray(values, dtype=np.int64)]
    labels[missing] = None
    return pl.Series(f.name, labels.tolist(), dtype=pl.String)


def check_guide(
    guide: Guide, needed: Mapping[str, str], bounds: Mapping[str, tuple[float, float]], who: str
) -> None:
    """Fail clearly if the guide and the generator disagree on the feature set or types.

    Args:
        guide: the use case's guide.
        needed: feature name -> kind, for every feature the generator produces.
        bounds: feature name -> (low, high) of the generated values; each must
            lie inside the guide's valid range.
        who: the generator's name for the messages.

    Raises:
        ValueError: naming the guide file and the features at fault.
    """
    by_name = {f.name: f for f in guide.features}
    missing = sorted(set(needed) - set(by_name))
    if missing:
        raise ValueError(f"{who}: guide {guide.use_case!r} ({guide.path}) lacks feature(s) {missing}")
    unknown = sorted(set(by_name) - set(needed))
    if unknown:
        raise ValueError(
            f"{who}: guide {guide.use_case!r} ({guide.path}) has feature(s) {unknown} "
            "with no generative model"
        )
    for name, kind in needed.items():
        if by_name[name].kind != kind:
            raise ValueError(
                f"{who}: guide feature {name!r} is {by_name[name].kind}, the generator needs {kind}"
            )
    for name, (low, high) in bounds.items():
        lo_g, hi_g = by_name[name].valid_range or (-np.inf, np.inf)
        if low < lo_g or high > hi_g:
            raise ValueError(
                f"{who}: generated {name!r} spans [{low}, {high}], outside the guide's range [{lo_g}, {hi_g}]"
            )


def frame(
    prefix: str,
    guide: Guide,
    values: Mapping[str, np.ndarray],
    missing: Mapping[str, np.ndarray],
    time: np.ndarray,
    event: np.ndarray,
    eta: np.ndarray,
    column: Callable[[Feature, np.ndarray, np.ndarray], pl.Series] | None = None,
) -> pl.DataFrame:
    """The simulated table: ``patient_id, centre, <features in guide order>, time, event, oracle_risk``.

    ``column`` builds one feature column (default :func:`typed_column`; the copula
    simulators pass theirs, which also clips continuous values to the guide's range).
    """
    column = column or typed_column
    n = time.shape[0]
    width = max(6, len(str(n)))
    columns = [
        pl.Series("patient_id", [f"{prefix}-{i:0{width}d}" for i in range(1, n + 1)], dtype=pl.String),
        pl.Series("centre", ["simulated"] * n, dtype=pl.String),
    ]
    columns += [column(f, values[f.name], missing[f.name]) for f in guide.features]
    columns += [
        pl.Series("time", time, dtype=pl.Float64),
        pl.Series("event", event, dtype=pl.Int8),
        pl.Series("oracle_risk", eta, dtype=pl.Float64),
    ]
    return pl.DataFrame(columns)
