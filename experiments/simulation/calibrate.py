"""Tune a simulator's Weibull baseline against the real Kaplan-Meier curve.

Prints the mean of the oracle log-hazard (``ETA_CENTRE``) and the Weibull shape
and scale that minimise the squared gap between the simulated and the real
(IWG-PM, stored in ``params_<use case>.json``) Kaplan-Meier curves up to 8
years plus the gap in the event fraction, on a seeded draw of 20,000 with the
fitted censoring. Copy the three numbers into ``fedjax_rhd/simulate/<use case>.py``
after changing the hazard. The hazard's strength (``IPSSM_WEIGHT`` /
``CPSS_WEIGHT``, ``MISSED_WEIGHT``) was set by hand so that the oracle and the
clinical score's C-indices land in the ranges of ``../shared/docs/simulation.md``
(checked by ``experiments/simulation/report.py`` and ``tests/simulate/test_simulate.py``).

Run from the repository root: ``python experiments/simulation/calibrate.py mds|cmml``.
"""

from __future__ import annotations

import argparse
import importlib

import numpy as np
from scipy.optimize import minimize

from fedjax_rhd.metrics.ipcw import kaplan_meier
from fedjax_rhd.simulate import copula


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("use_case", choices=["mds", "cmml"])
    parser.add_argument(
        "--n", type=int, default=20_000, help="simulated patients (the smoke test uses a few)"
    )
    args = parser.parse_args(argv)
    module = importlib.import_module(f"fedjax_rhd.simulate.{args.use_case}")
    rng = np.random.default_rng(5)
    cov = module.draw_covariates(rng, args.n)
    eta = module.oracle_log_hazard(cov) + module.ETA_CENTRE
    centre = float(eta.mean())
    eta = eta - centre
    params = copula.load_params(args.use_case)
    km = params.raw["km"]
    pairs = [(t, s) for t, s in zip(km["t"], km["s"], strict=True) if s is not None and 0 < t <= 8]
    grid, target = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    def loss(theta: np.ndarray) -> float:
        t, e = copula.draw_outcome(
            np.random.default_rng(0), eta, np.exp(theta[0]), np.exp(theta[1]), params.censoring
        )
        gap = kaplan_meier(t, e, grid) - target
        return float(np.sum(gap**2) + 10 * (e.mean() - params.raw["event_fraction"]) ** 2)

    res = minimize(loss, [np.log(1.2), np.log(4.0)], method="Nelder-Mead", options={"xatol": 1e-3})
    print(f"ETA_CENTRE = {centre:.2f}")
    print(f"WEIBULL_SHAPE = {np.exp(res.x[0]):.2f}")
    print(f"WEIBULL_SCALE = {np.exp(res.x[1]):.2f}  (loss {res.fun:.4f})")


if __name__ == "__main__":
    main()
