"""Typed configuration: Hydra ConfigStore schemas and their conversion to library objects.

The schemas make a misspelt key or a bad value fail at start with its name
(OmegaConf struct mode and Enum validation). ``settings_from_config`` is the
one place config touches code: it turns the composed ``DictConfig`` into
frozen, hashable library objects; nothing below the entry point sees a
``DictConfig``.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from fedjax_rhd.data.federated import SplitSpec
from fedjax_rhd.data.scenario import ScenarioSpec
from fedjax_rhd.federation.backend import BackendConfig
from fedjax_rhd.federation.faults import Failures, NodeDown, NodeSlowdown, Timing
from fedjax_rhd.federation.loop import TrainSchedule
from fedjax_rhd.federation.participation import RoundPolicy, Sampling
from fedjax_rhd.federation.simulator import SimulatorConfig
from fedjax_rhd.models import MODEL_CONFIGS
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, ServerConfig
from fedjax_rhd.tracking import TrackerSettings


class StrategyName(enum.StrEnum):
    fedavg = "fedavg"
    fedprox = "fedprox"
    fedavgm = "fedavgm"
    fedadam = "fedadam"
    fedyogi = "fedyogi"
    fedadagrad = "fedadagrad"
    centralized = "centralized"
    local = "local"


class Activation(enum.StrEnum):
    relu = "relu"
    selu = "selu"
    tanh = "tanh"
    gelu = "gelu"


class OptimizerName(enum.StrEnum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class ServerOptimizerName(enum.StrEnum):
    sgd = "sgd"
    adam = "adam"
    yogi = "yogi"
    adagrad = "adagrad"


class BackendName(enum.StrEnum):
    simulator = "simulator"


class TrackerName(enum.StrEnum):
    none = "none"
    wandb = "wandb"
    mlflow = "mlflow"


class WandbMode(enum.StrEnum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class ScenarioName(enum.StrEnum):
    best = "best"
    worst = "worst"


@dataclasses.dataclass
class SeedSchema:
    data: int = 0  # simulated cohort draw
    split: int = 0  # test split, node partition, node validation parts
    init: int = 0  # model initialisation
    train: int = 0  # dropout keys during training
    sample: int = 0  # which nodes are sampled each round
    failure: int = 0  # injected node failures and simulated timing jitter


@dataclasses.dataclass
class UseCaseSchema:
    name: str = MISSING
    guide: str = MISSING  # harmonize/guides/<guide>.yaml: the one feature schema
    source: str = "simulated"
    n_patients: int = 4427
    dataset: str | None = None  # registered dataset name (harmonize.registry); built on first use
    n_centres: int = 3  # source simulated_dialects: centres, each exporting in its own hospital dialect
    mapping: list[str] = dataclasses.field(default_factory=list)  # source csv: mapping YAMLs, one per centre
    # feature group -> principal components kept, fitted federatedly (fedjax_rhd/reduce.py); 0 drops it
    reduce: dict[str, int] = field(default_factory=dict)
    # optional treatment/response layer (MDS, CMML; simulated source): measured after diagnosis,
    # it leaks outcome information into prognostic models, so it is off (docs/treatment.md)
    treatment: bool = False


@dataclasses.dataclass
class SplitSchema:
    name: str = MISSING
    fractions: list[float] = MISSING  # training share per node, largest first ([] when natural)
    natural: bool = False  # one node per real centre (the table's ``centre`` column)
    test_fraction: float = 0.1
    val_fraction: float = 0.2
    # optional case-mix shift: node rank ("1" largest, "-1" smallest) -> strength (fedjax_rhd/case_mix.py)
    case_mix: dict[str, float] = field(default_factory=dict)


@dataclasses.dataclass
class ScenarioSchema:
    name: ScenarioName = ScenarioName.best
    # node rank ("1" = largest, "-1" = smallest) -> feature groups that node never measured
    missing_groups: dict[str, list[str]] = field(default_factory=dict)
    extra_missing: float = 0.0  # extra per-value missingness on every node row


@dataclasses.dataclass
class DeepSurvSchema:
    """conf/model/deepsurv.yaml; fields mirror ``DeepSurvConfig``."""

    name: str = "deepsurv"
    hidden: list[int] = field(default_factory=lambda: [32, 32])
    dropout: float = 0.1
    activation: Activation = Activation.selu
    l2: float = 1e-4
    use_observed_mask: bool = True


@dataclasses.dataclass
class CoxPHSchema:
    """conf/model/coxph.yaml; fields mirror ``CoxPHConfig``."""

    name: str = "coxph"
    l2: float = 1e-3
    use_observed_mask: bool = False


@dataclasses.dataclass
class SAVAESchema:
    """conf/model/savae.yaml; fields mirror ``SAVAEConfig`` (the layout comes from the guide)."""

    name: str = "savae"
    latent_dim: int = 5
    hidden: list[int] = field(default_factory=lambda: [50])
    dropout: float = 0.1
    activation: Activation = Activation.relu
    beta: float = 1.0
    use_observed_mask: bool = True


# Model name -> its schema; each conf/model/<name>.yaml lists "<name>_schema" in
# its defaults so a misspelt model key fails at composition.
MODEL_SCHEMAS: dict[str, type] = {"deepsurv": DeepSurvSchema, "coxph": CoxPHSchema, "savae": SAVAESchema}


@dataclasses.dataclass
class ClientSchema:
    optimizer: OptimizerName = OptimizerName.adam
    learning_rate: float = 1e-3
    local_epochs: int = 5
    proximal_mu: float = 0.0  # FedProx's μ (strategy=fedprox only)


@dataclasses.dataclass
class ServerSchema:
    learning_rate: float = 1.0
    momentum: float = 0.0  # sgd only (FedAvgM)
    b1: float = 0.9  # adaptive servers (Reddi et al. 2021)
    b2: float = 0.99
    tau: float = 1e-3


@dataclasses.dataclass
class SamplingSchema:
    fraction: float = 1.0  # share of nodes asked to train each round
    min_nodes: int = 1  # never sample fewer


@dataclasses.dataclass
class NodeDownSchema:
    node: str = MISSING  # e.g. node3
    from_round: int = 1


@dataclasses.dataclass
class FailureSchema:
    probability: float = 0.0  # per sampled node per round
    down: list[NodeDownSchema] = field(default_factory=list)


@dataclasses.dataclass
class NodeSlowdownSchema:
    node: str = MISSING
    factor: float = 1.0  # multiplies the node's simulated time


@dataclasses.dataclass
class TimingSchema:
    seconds_per_row: float = 1e-3  # simulated compute per training row and local epoch
    jitter: float = 0.0  # log-normal sigma per node and round
    slowdown: list[NodeSlowdownSchema] = field(default_factory=list)  # per-node time factors


@dataclasses.dataclass
class StrategySchema:
    name: StrategyName = StrategyName.fedavg
    rounds: int = 30
    patience: int | None = 10
    client: ClientSchema = field(default_factory=ClientSchema)
    server: ServerSchema = field(default_factory=ServerSchema)
    server_optimizer: ServerOptimizerName = ServerOptimizerName.sgd
    sampling: SamplingSchema = field(default_factory=SamplingSchema)
    min_nodes: int = 1  # fewest nodes that must return for a round to count
    accept_failures: bool = True  # false: stop (with a checkpoint) at the first failed node
    finetune_epochs: int = 0  # > 0: fine-tune the final global model on each node (personalised column)


@dataclasses.dataclass
class BackendSchema:
    name: BackendName = BackendName.simulator
    failures: FailureSchema = field(default_factory=FailureSchema)
    time_limit: float | None = None  # seconds per round; slower nodes are dropped from the round
    timing: TimingSchema = field(default_factory=TimingSchema)


@dataclasses.dataclass
class TrackerSchema:
    """conf/tracker/<name>.yaml; fields mirror ``fedjax_rhd.tracking.TrackerSettings``."""

    name: TrackerName = TrackerName.none
    project: str = "fedjax_rhd"
    run_name: str | None = None
    mode: WandbMode | None = None  # wandb only; WANDB_MODE wins
    tracking_uri: str | None = None  # mlflow only
    registered_model: str | None = None  # mlflow only


@dataclasses.dataclass
class ConfigSchema:
    use_case: UseCaseSchema = MISSING
    split: SplitSchema = MISSING
    scenario: ScenarioSchema = MISSING
    model: Any = MISSING  # validated by the chosen model's own schema
    strategy: StrategySchema = MISSING
    backend: BackendSchema = MISSING
    tracker: TrackerSchema = MISSING
    seed: SeedSchema = field(default_factory=SeedSchema)
    data_root: str = "data"  # simulated cohorts and their dataset cards are cached here
    real_data_root: str | None = None  # real cohorts; None: $FEDJAX_RHD_SHARED_DATA or ../shared/data
    bootstrap: int = 1000  # resamples for the C-index confidence intervals
    progress: bool = True  # progress bar over rounds
    resume: str | None = None  # a run directory to continue from its checkpoint
    curve_every: int = 1  # per-round test C-index (Figure 2) at round 1 and every k-th round
    checkpoint_every: int = 1  # write the resumable checkpoint every k-th round (and at the end)


def register_configs() -> None:
    """Register the schemas; group files name theirs in their defaults list."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=ConfigSchema)
    for group, schema in [
        ("use_case", UseCaseSchema),
        ("split", SplitSchema),
        ("scenario", ScenarioSchema),
        ("strategy", StrategySchema),
        ("backend", BackendSchema),
        ("tracker", TrackerSchema),
    ]:
        cs.store(group=group, name=f"{group}_schema", node=schema)
    for name, schema in MODEL_SCHEMAS.items():
        cs.store(group="model", name=f"{name}_schema", node=schema)


@dataclasses.dataclass(frozen=True)
class ExperimentSettings:
    """Everything ``experiment.run`` needs, as typed, hashable library objects."""

    use_case: str
    guide: str
    source: str
    n_patients: int
    seed_data: int
    data_root: str
    split: SplitSpec
    scenario: ScenarioSpec
    spec: AlgorithmSpec  # num_features is filled in once the data is built
    schedule: TrainSchedule
    bootstrap: int
    tracker: TrackerSettings
    backend: BackendConfig  # the chosen backend's config, e.g. SimulatorConfig (federation.registry)
    progress: bool
    dataset: str | None = None  # registered dataset name; None = derived from the use case
    resolved_config: Any = field(default=None, compare=False, hash=False)
    real_data_root: str | None = None  # real cohorts (fedjax_rhd.cohorts.resolve_real_data_root)
    policy: RoundPolicy = RoundPolicy()  # strategy.sampling, strategy.min_nodes, strategy.accept_failures
    seed_sample: int = 0  # seed.sample: which nodes are sampled each round
    seed_failure: int = 0  # seed.failure: the backend's injected failures and timing jitter
    finetune_epochs: int = 0
    resume: str | None = None
    n_centres: int = 3  # simulated_dialects: centres, one hospital dialect each
    mapping: tuple[str, ...] = ()  # csv: mapping YAMLs (harmonize.mapping), one per centre
    reduce: tuple[tuple[str, int], ...] = ()  # (feature group, components) reductions, in order
    treatment: bool = False  # optional treatment layer; ``guide`` then names "<guide>+treatment"
    curve_every: int = 1  # per-round test curves at round 1 and every k-th round (selection unaffected)
    checkpoint_every: int = 1  # resumable checkpoint every k-th round and at the end (results unaffected)


def settings_from_config(cfg: DictConfig) -> ExperimentSettings:
    """Turn the composed config into library objects (the only DictConfig reader)."""
    m, s = cfg.model, cfg.strategy
    if m.name not in MODEL_CONFIGS:
        raise ValueError(f"model.name={m.name!r}: expected one of {sorted(MODEL_CONFIGS)}")
    fields = OmegaConf.to_container(m, resolve=True, enum_to_str=True)
    fields.pop("name")
    model_config = MODEL_CONFIGS[m.name](**fields)
    spec = AlgorithmSpec(
        strategy=s.name.value,
        model_name=m.name,
        model_config=model_config,
        num_features=0,
        client=ClientConfig(
            optimizer=s.client.optimizer.value,
            learning_rate=float(s.client.learning_rate),
            local_epochs=int(s.client.local_epochs),
            proximal_mu=_proximal_mu(s),
        ),
        server=ServerConfig(
            optimizer_name=s.server_optimizer.value,
            learning_rate=float(s.server.learning_rate),
            momentum=float(s.server.momentum),
            b1=float(s.server.b1),
            b2=float(s.server.b2),
            tau=float(s.server.tau),
        ),
    )
    if s.rounds < 1:
        raise ValueError(f"strategy.rounds must be >= 1, got {s.rounds}")
    if s.patience is not None and s.patience < 1:
        raise ValueError(f"strategy.patience must be >= 1 or null, got {s.patience}")
    treatment = bool(cfg.use_case.get("treatment", False))
    policy, backend = _participation(cfg)
    return ExperimentSettings(
        use_case=cfg.use_case.name,
        guide=f"{cfg.use_case.guide}+treatment" if treatment else cfg.use_case.guide,
        treatment=treatment,
        source=cfg.use_case.source,
        n_patients=int(cfg.use_case.n_patients),
        seed_data=int(cfg.seed.data),
        data_root=str(cfg.data_root),
        split=SplitSpec(
            name=cfg.split.name,
            fractions=tuple(float(f) for f in cfg.split.fractions),
            test_fraction=float(cfg.split.test_fraction),
            val_fraction=float(cfg.split.val_fraction),
            seed=int(cfg.seed.split),
            natural=bool(cfg.split.natural),
            case_mix=tuple((int(rank), float(v)) for rank, v in cfg.split.case_mix.items()),
        ),
        scenario=ScenarioSpec(
            name=cfg.scenario.name.value,
            missing_groups=tuple(
                (int(rank), tuple(str(g) for g in groups))
                for rank, groups in cfg.scenario.missing_groups.items()
            ),
            extra_missing=float(cfg.scenario.extra_missing),
        ),
        spec=spec,
        schedule=TrainSchedule(
            rounds=int(s.rounds),
            patience=None if s.patience is None else int(s.patience),
            seed_init=int(cfg.seed.init),
            seed_train=int(cfg.seed.train),
        ),
        bootstrap=int(cfg.bootstrap),
        tracker=TrackerSettings(
            **OmegaConf.to_container(cfg.tracker, resolve=True, enum_to_str=True)  # type: ignore[arg-type]
        ),
        backend=backend,
        progress=bool(cfg.progress),
        dataset=cfg.use_case.get("dataset"),
        resolved_config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        real_data_root=None if cfg.real_data_root is None else str(cfg.real_data_root),
        reduce=tuple((str(g), int(k)) for g, k in (cfg.use_case.get("reduce") or {}).items()),
        n_centres=int(cfg.use_case.get("n_centres", 3)),
        mapping=tuple(str(p) for p in cfg.use_case.get("mapping") or ()),
        policy=policy,
        seed_sample=int(cfg.seed.sample),
        seed_failure=int(cfg.seed.failure),
        finetune_epochs=int(s.finetune_epochs),
        resume=None if cfg.resume is None else str(cfg.resume),
        curve_every=_every(cfg, "curve_every"),
        checkpoint_every=_every(cfg, "checkpoint_every"),
    )


def _every(cfg: DictConfig, key: str) -> int:
    k = int(cfg.get(key, 1))
    if k < 1:
        raise ValueError(f"{key} must be >= 1 (1: every round), got {k}")
    return k


def _proximal_mu(s: DictConfig) -> float | None:
    mu = float(s.client.proximal_mu)
    if s.name.value == "fedprox":
        return mu
    if mu != 0.0:
        raise ValueError(f"strategy.client.proximal_mu={mu} applies to strategy=fedprox, not {s.name.value}")
    return None


def _participation(cfg: DictConfig) -> tuple[RoundPolicy, SimulatorConfig]:
    """The strategy's round policy and the backend's config (its injected faults)."""
    s, b = cfg.strategy, cfg.backend
    if s.finetune_epochs < 0:
        raise ValueError(f"strategy.finetune_epochs must be >= 0, got {s.finetune_epochs}")
    policy = RoundPolicy(
        sampling=Sampling(fraction=float(s.sampling.fraction), min_nodes=int(s.sampling.min_nodes)),
        min_nodes=int(s.min_nodes),
        accept_failures=bool(s.accept_failures),
    )
    backend = SimulatorConfig(
        name=b.name.value,
        failures=Failures(
            probability=float(b.failures.probability),
            down=tuple(NodeDown(str(d.node), int(d.from_round)) for d in b.failures.down),
        ),
        time_limit=None if b.time_limit is None else float(b.time_limit),
        timing=Timing(
            seconds_per_row=float(b.timing.seconds_per_row),
            jitter=float(b.timing.jitter),
            slowdown=tuple(NodeSlowdown(str(d.node), float(d.factor)) for d in b.timing.slowdown),
        ),
    )
    return policy, backend
