"""The ``fedjax-rhd`` console script (also ``python -m fedjax_rhd``).

A thin ``@hydra.main``: compose ``conf/``, convert to typed settings, run.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fedjax_rhd.config import register_configs, settings_from_config

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _app(cfg: DictConfig) -> float:
    from fedjax_rhd.experiment import run  # JAX imports after Hydra has parsed the command line

    results = run(settings_from_config(cfg), HydraConfig.get().runtime.output_dir)
    return float(results["final"]["c_index_test"]["estimate"])


def main() -> None:
    """Console-script entry point."""
    _app()
