"""Where does VAE-BGM lose the covariate-outcome link? Train-on-synthetic C of partial reconstructions.

Usage: python experiments/synthetic/vae_tstr_diagnosis.py <run dir> [<run dir> ...]  (a Markdown table)

For a finished ``model=vae_bgm`` run on a simulated cohort (benchmark holdout) it rebuilds the run's
data from its recorded config, loads ``params.npz`` and scores a linear Cox model (the suite's
``train_synthetic_test_real``) fitted on each of these tables, every one scored on the holdout:

* ``real``: the federation's training rows (the reference C);
* ``generated``: the run's generator (mixture prior, every head sampled; the run's own table);
* ``generated, time mean``: as ``generated`` but log time = the time head's mean (no time noise);
* ``recon``: each training row through its encoder mean z = mu(x), every head sampled (the VAE
  without the mixture);
* ``recon, time mean``: as ``recon`` with log time = the head's mean;
* ``real x, outcome recon``: the real covariates, time and event drawn from the heads at mu(x)
  (does z carry the outcome?);
* ``recon x, real outcome``: covariates drawn from the heads at mu(x), the real time and event
  (how much does covariate noise dilute the link?).

A diagnosis tool: it reads the training rows, which only a simulation's manager may.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from fedjax_rhd import generative as gen  # noqa: E402
from fedjax_rhd.config import run_config_from_json  # noqa: E402
from fedjax_rhd.experiment import run_data  # noqa: E402
from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig  # noqa: E402
from fedjax_rhd.guide_cache import cached_guide  # noqa: E402
from fedjax_rhd.io import load_params  # noqa: E402
from fedjax_rhd.metrics.synthetic.survival import train_synthetic_test_real  # noqa: E402
from fedjax_rhd.models.savae import MAX_LOG_SD  # noqa: E402
from fedjax_rhd.models.tabular import decode_table  # noqa: E402
from fedjax_rhd.models.vae_bgm import VAEBGMNet  # noqa: E402


def _heads(config, num_features: int):
    schema = config.schema
    gauss = np.array([c.start for c in schema if c.kind == "continuous"], np.int32)
    bern = np.array([c.start for c in schema if c.kind == "binary"], np.int32)
    cats = [(c.start, c.width) for c in schema if c.kind == "categorical"]
    g, b, f = len(gauss), len(bern), len(schema)
    ncat = sum(w for _, w in cats)
    off_obs = 2 * g + b + ncat
    return gauss, bern, cats, g, b, f, off_obs, off_obs + f


def _bounded(v):
    return MAX_LOG_SD * jnp.tanh(v / MAX_LOG_SD)


def _sample_heads(out, key, config, num_features):
    """Every head of the decoder output sampled, as ``vae_bgm``'s draw does (x standardised)."""
    gauss, bern, cats, g, b, _f, off_obs, off_time = _heads(config, num_features)
    n = out.shape[0]
    keys = jax.random.split(key, 6)
    x = jnp.zeros((n, num_features))
    x = x.at[:, gauss].set(
        out[:, :g] + jnp.exp(_bounded(out[:, g : 2 * g])) * jax.random.normal(keys[0], (n, g))
    )
    x = x.at[:, bern].set(jax.random.bernoulli(keys[1], jax.nn.sigmoid(out[:, 2 * g : 2 * g + b])))
    offset = 2 * g + b
    for i, (start, width) in enumerate(cats):
        level = jax.random.categorical(jax.random.fold_in(keys[2], i), out[:, offset : offset + width])
        x = x.at[:, start : start + width].set(jax.nn.one_hot(level, width))
        offset += width
    present = jax.random.bernoulli(keys[3], jax.nn.sigmoid(out[:, off_obs:off_time]))
    t_mean = out[:, off_time]
    log_t = t_mean + jnp.exp(_bounded(out[:, off_time + 1])) * jax.random.normal(keys[4], (n,))
    event = jax.random.bernoulli(keys[5], jax.nn.sigmoid(out[:, off_time + 2]))
    return {
        k: np.asarray(v)
        for k, v in dict(x=x, present=present, log_t=log_t, t_mean=t_mean, event=event).items()
    }


def diagnose(run: Path) -> dict[str, float]:
    res = json.loads((run / "results.json").read_text())
    config = run_config_from_json(res["config"])
    guide = cached_guide(config.use_case.guide_name)
    data, table, _card, _ = run_data(config, guide)
    spec = config.algorithm_spec(data.num_features, data.guide)
    mc, d = spec.model_config, data.num_features
    if mc.outcome_head != "latent":
        raise SystemExit(
            f"{run}: outcome_head={mc.outcome_head!r}; the diagnosis reads the latent heads only"
        )
    params = load_params(run / "params.npz")
    params = params["global"] if "global" in params else jax.tree.map(lambda p: p[0], params["nodes"])
    # the decoder as the model builds it
    net_template = VAEBGMNet(2 * d + 2, _heads(mc, d)[-1] + 3, mc, rngs=nnx.Rngs(params=0))
    graphdef, state = nnx.split(net_template, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    net = nnx.merge(graphdef, state)
    # the federation's training rows (standardised, imputed) and their outcome
    rows = [jax.tree.map(lambda a, k=k: np.asarray(a[k]), data.train) for k in range(data.train.x.shape[0])]
    rows = [jax.tree.map(lambda a, r=r: a[r.weight > 0], r) for r in rows]
    x = np.concatenate([r.x for r in rows]).astype(np.float32)
    obs = np.concatenate([r.observed for r in rows])
    time = np.concatenate([r.time for r in rows]).astype(np.float64)
    event = np.concatenate([r.event for r in rows])
    center, scale = np.asarray(data.preprocessor.center), np.asarray(data.preprocessor.scale)
    max_time = float(time.max())
    schema = mc.schema
    f_first = np.array([c.start for c in schema])

    def to_table(xs, present, t, e):
        if present.shape[1] != len(schema):
            present = present[:, f_first]
        return decode_table(
            np.asarray(xs, np.float64) * scale + center, present, t, e, schema,
            time_bounds=(mc.time_floor, max_time), id_prefix="d",
        )  # fmt: skip

    real = to_table(x, obs, time, event)
    holdout = gen.holdout_table(table, data)
    inp = np.concatenate(
        [x, obs.astype(np.float32), np.log(np.maximum(time, mc.time_floor))[:, None], event[:, None]], 1
    )
    mu = net.encoder(jnp.asarray(inp, jnp.float32), None)[:, : mc.latent_dim]
    key = jax.random.key(123)
    rec = _sample_heads(net.decoder(mu, None), key, mc, d)
    # the generator's draws (mixture prior), as the run sampled them
    backend = SimulatorBackend(SimulatorConfig(), data, spec)
    fit = gen.fit_latent_mixture(backend, spec, params, None, config.seed.synthetic)
    prior = gen.generator(params, fit, data, max_time)["prior"]
    k1, k2 = jax.random.split(jax.random.key(7))
    n = mc.n_synthetic or x.shape[0]
    comp = jax.random.categorical(k1, jnp.log(prior["weights"]), shape=(n,))
    eps = jax.random.normal(k2, (n, mc.latent_dim))
    z = prior["means"][comp] + jnp.einsum("nde,ne->nd", prior["cholesky"][comp], eps)
    drawn = _sample_heads(net.decoder(z, None), jax.random.key(11), mc, d)
    tables = {
        "real": real,
        "generated": to_table(drawn["x"], drawn["present"], np.exp(drawn["log_t"]), drawn["event"]),
        "generated, time mean": to_table(
            drawn["x"], drawn["present"], np.exp(drawn["t_mean"]), drawn["event"]
        ),
        "recon": to_table(rec["x"], rec["present"], np.exp(rec["log_t"]), rec["event"]),
        "recon, time mean": to_table(rec["x"], rec["present"], np.exp(rec["t_mean"]), rec["event"]),
        "real x, outcome recon": to_table(x, obs, np.exp(rec["log_t"]), rec["event"]),
        "recon x, real outcome": to_table(rec["x"], rec["present"], time, event),
    }
    c = {
        name: train_synthetic_test_real(real, t, holdout, guide)["c_index_train_synthetic"]
        for name, t in tables.items()
    }
    # how much of the real log time's variance the time head's mean explains at z = mu(x)
    lt = np.log(np.maximum(time, mc.time_floor))
    c["R2 log time | mu"] = float(1 - np.var(lt - rec["t_mean"]) / np.var(lt))
    return c


def main(runs: list[str]) -> None:
    results = {r: diagnose(Path(r)) for r in runs}
    names = list(next(iter(results.values())))
    print("| run | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for r, c in results.items():
        print(f"| {Path(r).name} | " + " | ".join(f"{c[k]:.3f}" for k in names) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
