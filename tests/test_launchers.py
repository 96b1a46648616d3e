"""Hydra launchers: joblib for parallel local sweeps, submitit for SLURM (conf/hydra/launcher/slurm.yaml), Ray
(conf/hydra/launcher/ray.yaml)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def _hydra_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from fedjax_rhd.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} resolves as it does inside a launch
    return cfg


def test_joblib_launcher_composes():
    cfg = _hydra_cfg(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


def test_slurm_preset_writes_the_sbatch_script_a_cluster_user_expects(tmp_path, monkeypatch):
    """The preset's values reach submitit's sbatch script: partition, time, cores, the node's environment."""
    from submitit.slurm.slurm import _make_sbatch_string

    monkeypatch.setenv("FEDJAX_RHD_VENV", "/shared/envs/fedjax")
    monkeypatch.delenv("FEDJAX_RHD_JAX_CACHE", raising=False)
    cfg = _hydra_cfg(
        ["hydra/launcher=slurm", "hydra.launcher.partition=cpu", "hydra.launcher.timeout_min=45"]
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    script = _make_sbatch_string(
        command="python -m fedjax_rhd",
        folder=tmp_path,
        partition=launcher["partition"],
        time=launcher["timeout_min"],
        cpus_per_task=launcher["cpus_per_task"],
        mem=f"{launcher['mem_gb']}GB",
        setup=launcher["setup"],
        array_parallelism=launcher["array_parallelism"],
        map_count=100,
    )
    for line in [
        "#SBATCH --partition=cpu",
        "#SBATCH --time=45",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=4GB",
        "#SBATCH --array=0-99%64",
        "source /shared/envs/fedjax/bin/activate",
    ]:
        assert line in script, line
    # without FEDJAX_RHD_JAX_CACHE, the cache sits in the (shared) directory the sweep was launched from
    cwd = cfg.hydra.runtime.cwd
    assert f"export FEDJAX_RHD_JAX_CACHE={cwd}/.jax_cache" in script


def test_ray_preset_hands_every_worker_the_data_root_and_the_jax_cache(monkeypatch):
    """As joblib's processes do, Ray's workers read the same registered datasets and compilation cache."""
    monkeypatch.delenv("FEDJAX_RHD_DATA_ROOT", raising=False)
    monkeypatch.setenv("FEDJAX_RHD_JAX_CACHE", "/shared/jax_cache")
    cfg = _hydra_cfg(["hydra/launcher=ray", "hydra.launcher.ray.init.address=auto"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    env = launcher["ray"]["init"]["runtime_env"]["env_vars"]
    # absolute: a worker on another node, or in another folder, finds the same files
    assert env["FEDJAX_RHD_DATA_ROOT"] == str(Path.cwd() / "data")
    assert env["FEDJAX_RHD_JAX_CACHE"] == "/shared/jax_cache"
    assert launcher["ray"]["init"]["address"] == "auto" and launcher["ray"]["remote"] == {"num_cpus": 1}


def _sweep(launcher: list[str], sweep_dir: Path, data_root: Path) -> dict[str, dict]:
    jobs = ["strategy.client.learning_rate=0.001,0.004", f"data_root={data_root}"]
    cmd = [sys.executable, "-m", "fedjax_rhd", "-m", *launcher, *TINY, *jobs, f"hydra.sweep.dir={sweep_dir}"]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {}
    for path in sorted(sweep_dir.glob("*/results.json")):
        run = json.loads(path.read_text())
        results[str(run["config"]["strategy"]["client"]["learning_rate"])] = run["final"]
    return results


@pytest.mark.slow  # two 2-job sweeps in fresh processes, Ray's start-up included (~2-3 min on two cores)
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
    reason="hydra-ray-launcher not installed (pip install -c constraints.txt -e '.[ray]')",
)
def test_a_ray_sweep_equals_the_joblib_sweep(tmp_path, tiny_data_root):
    from fedjax_rhd.config import run_config
    from fedjax_rhd.sources import load_use_case
    from tests.conftest import compose

    # the dataset first, as on a cluster: the two jobs must not race to build it
    config = run_config(compose([*TINY, f"data_root={tiny_data_root}"]))
    load_use_case(
        config.use_case, seed_data=config.seed.data, data_root=config.data_root, real_data_root=None
    )
    ray_ = _sweep(
        ["hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2"], tmp_path / "ray", tiny_data_root
    )
    joblib_ = _sweep(
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path / "joblib", tiny_data_root
    )
    assert sorted(ray_) == ["0.001", "0.004"]
    assert ray_ == joblib_  # the same jobs give the same numbers, whoever launched them
