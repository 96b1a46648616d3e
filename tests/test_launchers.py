"""Hydra launchers: joblib for parallel local sweeps, submitit for SLURM (conf/hydra/launcher/slurm.yaml)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

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
