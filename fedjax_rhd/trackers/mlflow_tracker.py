"""MLflow tracker (optional extra): a local store, the final model in the model registry.

The store is ``tracker.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else
``sqlite:///mlflow.db`` in the working directory (with artifacts in ``./mlartifacts``);
``mlflow ui --backend-store-uri sqlite:///mlflow.db`` then serves a browser dashboard
from those files with no network. Only aggregate numbers, the resolved config,
``results.json`` and the parameter checkpoint are logged: no patient-level rows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from fedjax_rhd.tracking import TrackerSettings, TrackerStartError

_BATCH = 100  # MLflow's per-request limit on params (metrics allow 1000)
_PARAM_MAX = 6000  # MLflow's limit on a param value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH)
# Files (by the names experiment.run passes) that make up the registered model.
MODEL_FILES = ("checkpoint", "results")
_TAGGED = "final/c_index_test"  # metrics copied onto the model version as tags


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    value = tree if isinstance(tree, str) else json.dumps(tree)
    return {prefix[:-1]: value[:_PARAM_MAX]}


class MlflowTracker:
    """One MLflow run per experiment run; the final checkpoint becomes a registered model version."""

    def __init__(self, settings: TrackerSettings, output_dir: Path) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise TrackerStartError(
                "tracker=mlflow needs the optional extra: pip install -c constraints.txt -e '.[mlflow]' "
                "(or choose tracker=none)"
            ) from err
        self._settings = settings
        self._uri = settings.tracking_uri or default_uri()
        try:
            self._client = MlflowClient(tracking_uri=self._uri)
            experiment = self._client.get_experiment_by_name(settings.project)
            if experiment is None:
                artifacts = None
                if self._uri.startswith("sqlite:///"):
                    artifacts = str(Path(self._uri.removeprefix("sqlite:///")).parent / "mlartifacts")
                experiment_id = self._client.create_experiment(settings.project, artifact_location=artifacts)
            else:
                experiment_id = experiment.experiment_id
            run = self._client.create_run(
                experiment_id, run_name=settings.run_name, tags={"fedjax_rhd.run_dir": str(output_dir)}
            )
        except Exception as err:  # store errors come as MlflowException, sqlalchemy or OS errors
            raise TrackerStartError(
                f"tracker=mlflow could not start with tracking URI {self._uri!r}: {err}. Set "
                "tracker.tracking_uri (e.g. sqlite:///mlflow.db) or choose tracker=none"
            ) from err
        self.run_id = run.info.run_id
        self._config: dict[str, Any] = {}

    def log_config(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self._config = config
        params = [Param(k, v) for k, v in _flatten(config).items()]
        for lo in range(0, len(params), _BATCH):
            self._client.log_batch(self.run_id, params=params[lo : lo + _BATCH])
        self._client.log_dict(self.run_id, config, "config.json")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for lo in range(0, len(items), _BATCH):
            self._client.log_batch(self.run_id, metrics=items[lo : lo + _BATCH])

    def registered_name(self) -> str:
        if self._settings.registered_model:
            return self._settings.registered_model
        cfg = self._config
        try:
            return f"{cfg['use_case']['name']}-{cfg['model']['name']}-{cfg['strategy']['name']}"
        except (KeyError, TypeError):
            return self._settings.project

    def log_final(self, metrics: dict[str, float], files: dict[str, Path]) -> None:
        """Final metrics (at the last round's step), the run's files, and a registered model version."""
        self.log_metrics(metrics, step=int(metrics.get("final/rounds_run", 0)))
        for name, path in files.items():
            folder = "model" if name in MODEL_FILES else None
            self._client.log_artifact(self.run_id, str(path), artifact_path=folder)
        name = self.registered_name()
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException:
            self._client.create_registered_model(name, description="fedjax_rhd final parameters (params.npz)")
        artifact_uri = self._client.get_run(self.run_id).info.artifact_uri
        self.model_version = self._client.create_model_version(
            name,
            source=f"{artifact_uri}/model",
            run_id=self.run_id,
            tags={k.replace("/", "."): repr(v) for k, v in metrics.items() if k.startswith(_TAGGED)},
        )

    def finish(self, success: bool = True) -> None:
        self._client.set_terminated(self.run_id, "FINISHED" if success else "FAILED")
