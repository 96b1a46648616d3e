"""Registers fedjax_rhd's config schemas with Hydra when Hydra scans its plugins.

``conf/`` files name their typed schemas (``config_schema``, ``strategy_schema``, ...),
which live in Hydra's ConfigStore and must be registered before composition. The
``fedjax-rhd`` entry point registers them itself; other composers do not: DVC's Hydra
integration (``dvc exp run -S strategy=...``, ``.dvc/config`` ``[hydra]``) adds the
repository root to ``sys.path`` and scans the ``hydra_plugins`` namespace package,
importing this module, before it composes ``conf/pipeline.yaml``. Registration is
idempotent, so a second import is harmless. (Hydra's own launcher plugins register their
configs the same way, at import.)
"""

from fedjax_rhd.config import register_configs

register_configs()
