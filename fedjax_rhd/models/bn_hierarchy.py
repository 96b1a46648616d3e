"""How alike are the nodes' CPDs? A hierarchical Dirichlet-multinomial over nodes (numpyro NUTS).

For one family (a variable and its parents) with node counts ``c[k, col]`` (node k, parent
configuration col):

    θ_col ~ Dirichlet(1)              (the shared CPD column)
    log κ ~ Normal(log 10, 2)          (concentration: how alike the nodes are)
    c[k, col] ~ DirichletMultinomial(κ θ_col, n[k, col])

Large κ: the nodes' columns scatter little around the shared one, so pooling their counts (what
the two-step protocol's sum does) is warranted; small κ: node CPDs differ, and a node's own
posterior mean (c + κ θ) / (n + κ) leans on its own counts with weight n / (n + κ). This is a
diagnostic beside the exact conjugate posterior the synthetic data are drawn from; it is *not*
equal to the pooled posterior by design (``shared/docs/synthetic_tuning_facts.md`` T4). NUTS:
Hoffman & Gelman 2014. Columns no node observed carry no information on κ and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _model(counts: jax.Array) -> None:
    import numpyro
    import numpyro.distributions as dist

    _, q, r = counts.shape
    theta = numpyro.sample("theta", dist.Dirichlet(jnp.ones(r)).expand([q]).to_event(1))
    kappa = jnp.exp(numpyro.sample("log_kappa", dist.Normal(jnp.log(10.0), 2.0)))
    numpyro.sample(
        "counts",
        dist.DirichletMultinomial(kappa * theta[None], total_count=counts.sum(-1)).to_event(2),
        obs=counts,
    )


def node_concentration(
    node_counts: Sequence[np.ndarray], *, seed: int, warmup: int, samples: int
) -> dict[str, Any]:
    """κ's posterior for one family from the nodes' f64[r, q] counts (module docstring).

    Returns:
        ``kappa_median``, ``kappa_q05``, ``kappa_q95``; ``columns`` used; ``node_weight_median``:
        the median over (node, observed column) of n / (n + κ_median), the weight a node's own
        counts keep in its partially pooled CPD.
    """
    from numpyro.infer import MCMC, NUTS

    stacked = np.stack([np.asarray(c, np.float64).T for c in node_counts])  # [K, q, r]
    used = stacked.sum(axis=(0, 2)) > 0
    stacked = stacked[:, used]
    if stacked.shape[1] == 0:
        return {"columns": 0, "kappa_median": None, "kappa_q05": None, "kappa_q95": None,
                "node_weight_median": None}  # fmt: skip
    mcmc = MCMC(NUTS(_model), num_warmup=warmup, num_samples=samples, progress_bar=False)
    mcmc.run(jax.random.key(seed), jnp.asarray(stacked, jnp.float32))
    kappa = np.exp(np.asarray(mcmc.get_samples()["log_kappa"], np.float64))
    median = float(np.median(kappa))
    n = stacked.sum(-1)
    return {
        "columns": int(stacked.shape[1]),
        "kappa_median": median,
        "kappa_q05": float(np.quantile(kappa, 0.05)),
        "kappa_q95": float(np.quantile(kappa, 0.95)),
        "node_weight_median": float(np.median(n[n > 0] / (n[n > 0] + median))),
    }
