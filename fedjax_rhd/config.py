"""The run's configuration: the library's frozen dataclasses are the Hydra schemas.

Each config group's schema is the dataclass the library itself takes: ``UseCase``
(``use_case``), ``SplitSpec`` (``split``), ``ScenarioSpec`` (``scenario``), each model's
config class (``model``, from :data:`fedjax_rhd.models.MODELS`), ``StrategyConfig``
(``strategy``), each backend's config class (``backend``, from the backend registry) and
``TrackerSettings`` (``tracker``); :class:`RunConfig` is the root. No mirror classes and no
enums restating registries: names are checked once, against the registries, in each
dataclass's ``__post_init__``. A misspelt key fails at composition (OmegaConf struct
mode), a bad value when :func:`run_config` builds the typed objects.

``run_config`` is the one place config touches code: the entry point calls it, library
code never sees a ``DictConfig``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from fedjax_rhd.data import ScenarioSpec, SplitSpec
from fedjax_rhd.federation.loop import TrainSchedule
from fedjax_rhd.federation.registry import BACKENDS
from fedjax_rhd.jax_setup import cache_dir
from fedjax_rhd.models import MODELS, config_for_guide
from fedjax_rhd.sources import UseCase
from fedjax_rhd.strategies import AlgorithmSpec, StrategyConfig, check_dp_sgd
from fedjax_rhd.tracking import TrackerSettings


@dataclasses.dataclass(frozen=True)
class Seeds:
    """One seed per purpose (``seed.*``)."""

    data: int = 0  # simulated cohort draw
    split: int = 0  # test split, node partition, node validation parts (``split.seed`` follows it)
    init: int = 0  # model initialisation
    train: int = 0  # dropout keys during training
    sample: int = 0  # which nodes are sampled each round
    failure: int = 0  # injected node failures and simulated timing jitter
    synthetic: int = 0  # generative models: the mixture's initial means and the synthetic draws


@dataclasses.dataclass(frozen=True)
class TestSpec:
    """Where the test rows come from (``test.*``).

    ``dataset``: another registered dataset (``<data_root>/datasets/<name>``, built by a run or
    ``harmonize build``/``map``) in the same feature schema: every row of the run's own dataset
    then goes to the nodes (training and validation; ``split.test_fraction`` is not used) and the
    model is tested on that dataset's rows (external validation). ``None``: the split's test part.
    """

    __test__ = False  # not a pytest test class
    dataset: str | None = None


@dataclasses.dataclass(frozen=True)
class PrivacySettings:
    """What a node may release beyond the defaults (``privacy.*``; ``docs/privacy.md``).

    ``min_cell_count``: every count of a node's patients in a bin or table cell that leaves the
    node holds 0 or at least this many (``fedjax_rhd/data/small_cells.py``: histogram and time-grid
    bins are merged into runs, contingency cells below it are sent as 0, the largest follow-up
    becomes the k-th largest). 0 (the default) or 1: every statistic is exact, as before.
    """

    min_cell_count: int = 0

    def __post_init__(self) -> None:
        if self.min_cell_count < 0:
            raise ValueError(f"privacy.min_cell_count must be >= 0 (0: off), got {self.min_cell_count}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything one run is told: the root schema ``config_schema`` of ``conf/config.yaml``."""

    # Group fields are typed Any here because OmegaConf marks a frozen dataclass node read-only
    # when it builds one from its type; each group's own schema (its defaults list) types and
    # validates it, and run_config checks the classes below.
    use_case: Any = MISSING  # UseCase
    split: Any = MISSING  # SplitSpec
    scenario: Any = MISSING  # ScenarioSpec
    model: Any = MISSING  # the chosen model's config class (fedjax_rhd.models.MODELS)
    strategy: Any = MISSING  # StrategyConfig
    backend: Any = MISSING  # the chosen backend's config class (its registry)
    tracker: Any = MISSING  # TrackerSettings
    seed: Seeds = dataclasses.field(default_factory=Seeds)
    test: TestSpec = dataclasses.field(default_factory=TestSpec)
    privacy: PrivacySettings = dataclasses.field(default_factory=PrivacySettings)
    data_root: str = "data"  # registered datasets are built and cached here
    real_data_root: str | None = None  # real cohorts; None: $FEDJAX_RHD_SHARED_DATA or ../shared/data
    bootstrap: int = 1000  # resamples for the C-index confidence intervals
    progress: bool = True  # progress bar over rounds
    resume: str | None = None  # a run directory to continue from its checkpoint
    curve_every: int = 1  # per-round test C-index (Figure 2) at round 1 and every k-th round
    checkpoint_every: int = 1  # write the resumable checkpoint every k-th round (and at the end)
    # generative models: CSF / GSF of the current generator(s) against the benchmark holdout at
    # round 1 and every k-th round (the study's Figure 3; fedjax_rhd/synthetic_rounds.py); 0 = off
    fidelity_every: int = 0

    def __post_init__(self) -> None:
        check_dp_sgd(self.model.name, self.strategy.client)  # before any data is read
        for key in ("curve_every", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1 (1: every round), got {getattr(self, key)}")
        if self.fidelity_every < 0:
            raise ValueError(f"fidelity_every must be >= 0 (0: off), got {self.fidelity_every}")
        if self.bootstrap < 1:
            raise ValueError(f"bootstrap must be >= 1 resample, got {self.bootstrap}")
        if self.split.seed != self.seed.split:
            raise ValueError(
                f"split.seed={self.split.seed} differs from seed.split={self.seed.split}; set seed.split only"
            )
        if self.test.dataset is not None and self.split.column is not None:
            raise ValueError(
                f"test.dataset={self.test.dataset} and split.column={self.split.column} both name the test "
                "rows; set one"
            )
        if self.test.dataset is not None and self.split.holdout_centre is not None:
            raise ValueError(
                f"test.dataset={self.test.dataset} and split.holdout_centre={self.split.holdout_centre} both "
                "name the test rows; set one"
            )
        named_test = (self.test.dataset, self.split.column, self.split.holdout_centre)
        if self.split.test_fraction == 0 and all(v is None for v in named_test):
            raise ValueError(
                "split.test_fraction=0 leaves no test rows: set test.dataset=<registered dataset> (external "
                "validation) or split=given split.column=<column> (a fixed assignment)"
            )
        if self.test.dataset is not None and MODELS[self.model.name].generative:
            raise ValueError(f"test.dataset applies to survival models, not model={self.model.name}")
        if self.split.holdout_centre is not None and MODELS[self.model.name].generative:
            raise ValueError(f"split.holdout_centre applies to survival models, not model={self.model.name}")
        if self.split.val_fraction == 0 and self.strategy.selection != "last":
            raise ValueError(
                "split.val_fraction=0 leaves no validation rows to choose a round by: "
                "set strategy.selection=last and strategy.patience=null (a fixed budget)"
            )
        if MODELS[self.model.name].generative and self.use_case.reductions:
            raise ValueError(
                f"model={self.model.name} samples the harmonised schema, but use_case.reduce replaces "
                "feature groups by components; set use_case.reduce={} for a generative model"
            )
        from_counts = MODELS[self.model.name].from_counts
        if from_counts != (self.strategy.algorithm == "bn_two_step") and self.strategy.algorithm not in (
            "centralized",
            "local",
            "sd_sharing",
        ):
            raise ValueError(
                f"model={self.model.name} with strategy={self.strategy.name}: a model fitted from node "
                "counts (model=bn) takes strategy=bn_two_step, centralized, local or sd_sharing, "
                "and bn_two_step takes model=bn"
            )
        if self.strategy.algorithm == "sd_sharing":
            self._check_sd_sharing()
        if (
            self.privacy.min_cell_count > 1
            and self.strategy.algorithm == "centralized"
            and self.backend.name == "flower"
        ):
            raise ValueError(
                "privacy.min_cell_count with strategy=centralized under backend=flower: the pooled node "
                "would coarsen one table where the data layer coarsened each node's; run it with "
                "backend=simulator (the centralized reference pools rows by design)"
            )
        if self.use_case.treatment and self.use_case.source != "simulated":
            raise ValueError(
                f"use_case.treatment=true needs use_case.source=simulated, not {self.use_case.source!r}"
            )

    def _check_sd_sharing(self) -> None:
        """What ``strategy=sd_sharing`` needs (``fedjax_rhd/sd_sharing.py``), checked before data is read."""
        from fedjax_rhd.sd_sharing import check_supported  # the protocol's module owns its own rules

        if self.resume is not None:
            raise ValueError("strategy=sd_sharing keeps no resumable checkpoint: drop resume=...")

        check_supported(
            self.model.name, self.backend.name, val_fraction=self.split.val_fraction,
            fidelity_every=self.fidelity_every,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The config as JSON containers (what ``results.json`` records for a library caller)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def schedule(self) -> TrainSchedule:
        """Rounds, patience and the initialisation and training seeds of the round loop."""
        s = self.strategy
        return TrainSchedule(
            s.rounds, s.patience, self.seed.init, self.seed.train, s.selection, s.validation_weights
        )

    def algorithm_spec(self, num_features: int, guide: Any = None) -> AlgorithmSpec:
        """This run's algorithm: model (filled from ``guide`` if needed), settings; skeleton = jit key."""
        model = self.model if guide is None else config_for_guide(self.model, guide)
        s = self.strategy
        return AlgorithmSpec(s.algorithm, model.name, model, num_features, s.client, s.server, s.dp)


def _writable(node: Any) -> Any:
    """Clear the read-only flag OmegaConf puts on frozen dataclasses, so YAML can merge onto them."""
    if isinstance(node, DictConfig | ListConfig):
        OmegaConf.set_readonly(node, None)
        children = node.keys() if isinstance(node, DictConfig) else range(len(node))
        for key in children:
            _writable(node._get_node(key))
    return node


def schema(cls: type) -> DictConfig:
    """A frozen library dataclass as a mergeable Hydra schema (``OmegaConf.to_object`` rebuilds it)."""
    return _writable(OmegaConf.structured(cls))


_REGISTERED: dict[str, object] = {}  # the registries' contents when the schemas were last stored


def _register_resolvers() -> None:
    """``${fedjax_rhd.abspath:PATH}`` (absolute, from where the command runs) and ``${fedjax_rhd.jax_cache:}``
    (the compilation cache's folder, absolute): what a launcher hands workers that may start elsewhere
    (``conf/hydra/launcher/ray.yaml``; resolved in the launching process, before any job runs)."""
    if not OmegaConf.has_resolver("fedjax_rhd.abspath"):
        OmegaConf.register_new_resolver(
            "fedjax_rhd.abspath", lambda path: os.path.abspath(os.path.expanduser(path))
        )
    if not OmegaConf.has_resolver("fedjax_rhd.jax_cache"):
        OmegaConf.register_new_resolver("fedjax_rhd.jax_cache", lambda: os.path.abspath(cache_dir()))


def register_configs() -> None:
    """Register every group's schema; group files name theirs in their defaults list.

    Models and backends register one schema per registry entry (``<name>_schema``), so a
    new model or backend needs no line here.
    """
    _register_resolvers()
    cs = ConfigStore.instance()
    # Building the schemas costs ~0.1-0.3 s, and every in-process compose (tests, the tuner's trials)
    # calls this: store them once per set of registered models and backends.
    signature = (tuple(MODELS.items()), tuple(BACKENDS.items()))
    if _REGISTERED.get("signature") == signature and "config_schema.yaml" in cs.repo:
        return
    cs.store(name="config_schema", node=schema(RunConfig))
    for group, cls in [
        ("use_case", UseCase),
        ("split", SplitSpec),
        ("scenario", ScenarioSpec),
        ("strategy", StrategyConfig),
        ("tracker", TrackerSettings),
    ]:
        cs.store(group=group, name=f"{group}_schema", node=schema(cls))
    for name, entry in MODELS.items():
        cs.store(group="model", name=f"{name}_schema", node=schema(entry.config))
    for name, entry in BACKENDS.items():
        cs.store(group="backend", name=f"{name}_schema", node=schema(entry.config))
    _REGISTERED["signature"] = signature


def run_config(cfg: DictConfig) -> RunConfig:
    """The composed config as typed library objects (the only ``DictConfig`` reader).

    Raises:
        ValueError: a value the library refuses, naming its key.
    """
    typed = OmegaConf.to_object(cfg)
    if not isinstance(typed, RunConfig):
        raise TypeError(
            f"the composed config is {type(typed).__name__}, not RunConfig (missing config_schema?)"
        )
    # Each group must have come through its schema (a group file that forgets to list it in its
    # defaults gives a plain dict); a model or backend config class checks its own registered name.
    groups = {
        "use_case": UseCase, "split": SplitSpec, "scenario": ScenarioSpec, "strategy": StrategyConfig,
        "tracker": TrackerSettings, "model": tuple(e.config for e in MODELS.values()),
        "backend": tuple(e.config for e in BACKENDS.values()),
    }  # fmt: skip
    for key, cls in groups.items():
        if not isinstance(getattr(typed, key), cls):
            raise TypeError(
                f"{key}: conf/{key}/<option>.yaml must list its schema (<name>_schema) in its defaults"
            )
    return typed


def run_config_from_json(recorded: dict[str, Any]) -> RunConfig:
    """A run's recorded config (``results.json`` ``config``) as typed library objects again.

    What ``fedjax-rhd-score`` rebuilds a finished run's algorithm spec from: each group merged
    onto its schema, as :func:`run_config` types a composed config.

    Raises:
        ValueError: a recorded value the library now refuses, naming its key.
        KeyError: a recorded model or backend the registries no longer know.
    """
    groups = {
        "use_case": UseCase, "split": SplitSpec, "scenario": ScenarioSpec, "strategy": StrategyConfig,
        "tracker": TrackerSettings, "model": MODELS[recorded["model"]["name"]].config,
        "backend": BACKENDS[recorded["backend"]["name"]].config,
    }  # fmt: skip
    cfg = OmegaConf.merge(schema(RunConfig), {k: v for k, v in recorded.items() if k not in groups})
    for key, cls in groups.items():
        cfg[key] = OmegaConf.merge(schema(cls), recorded[key])
    return run_config(cfg)


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain JSON-able containers (``results.json`` ``config``)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]
