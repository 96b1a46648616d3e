"""What ``conf/strategy/<name>.yaml`` says: one frozen dataclass, also the group's Hydra schema.

A strategy file names an ``algorithm`` (``fedavg``, ``centralized``, ``local``: the keys of
:data:`fedjax_rhd.strategies.ALGORITHMS`) and its settings; FedAvg's variants (FedProx,
FedAvgM, FedAdam, FedYogi, FedAdagrad) are presets of the ``fedavg`` algorithm, so a new
variant is one YAML file (fedjax's habit: FedAdam is FedAvg with another server optimiser).
``name`` and ``label`` only name the preset in results and reports.
"""

from __future__ import annotations

import dataclasses

from fedjax_rhd.federation.participation import RoundPolicy, Sampling
from fedjax_rhd.metrics.synthetic.privacy import PrivacyThresholds
from fedjax_rhd.strategies.client import ClientConfig
from fedjax_rhd.strategies.dp import DPConfig
from fedjax_rhd.strategies.fedavg import ServerConfig


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    """A federated strategy preset: the algorithm, its budget and its round policy.

    Attributes:
        name: the preset's name (``fedavg``, ``fedadam``, ...): how runs are keyed in reports.
        label: how tables print it (``FedAdam``); empty = ``name``.
        algorithm: ``fedavg`` | ``centralized`` | ``local`` | ... (:data:`~fedjax_rhd.strategies.ALGORITHMS`).
        rounds: maximum communication rounds.
        patience: stop after this many rounds without federated-validation gain (None: never).
        client: local training (FedProx when ``client.proximal_mu`` is set, even to 0).
        server: the server optimiser on the pseudo-gradient (FedAvg = sgd 1.0).
        sampling: which nodes are asked to train each round.
        min_nodes: fewest nodes that must return for a round to count.
        accept_failures: False stops (with a checkpoint) at the first failed or late node.
        finetune_epochs: > 0 fine-tunes the final global model on each node (personalised column).
        dp: client-level DP-FedAvg (``dp.clip`` set) and its accounting's δ.
        selection: ``validation`` chooses the round by federated validation loss; ``last`` keeps
            the final round (a fixed budget; needs ``patience`` null; allows ``split.val_fraction=0``).
        validation_weights: how nodes weigh in the federated validation loss: ``patients`` (the
            study's rule) or ``events`` (robust to nodes with 0-1 validation events).
        gate: ``sd_sharing``: the privacy limits each node's synthetic rows must meet, checked on
            the node against its own rows, before any row is sent (``fedjax_rhd/sd_sharing.py``).
        retrain_on_pool: ``sd_sharing``: train the model once more, centrally, on the pooled
            synthetic rows and sample the final table from it (else the pool is the final table).
    """

    name: str = "fedavg"
    label: str = ""
    algorithm: str = "fedavg"
    rounds: int = 30
    patience: int | None = 10
    client: ClientConfig = dataclasses.field(default_factory=ClientConfig)
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    sampling: Sampling = dataclasses.field(default_factory=Sampling)
    min_nodes: int = 1
    accept_failures: bool = True
    finetune_epochs: int = 0
    dp: DPConfig = dataclasses.field(default_factory=DPConfig)
    selection: str = "validation"  # validation | last (a fixed budget; with split.val_fraction=0)
    validation_weights: str = "patients"  # patients | events (the pooled partial likelihood per event)
    gate: PrivacyThresholds = dataclasses.field(default_factory=PrivacyThresholds)
    retrain_on_pool: bool = False

    def __post_init__(self) -> None:
        from fedjax_rhd.strategies import ALGORITHMS  # the registry imports this module

        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"strategy.algorithm={self.algorithm!r}: expected one of {sorted(ALGORITHMS)}")
        if self.rounds < 1:
            raise ValueError(f"strategy.rounds must be >= 1, got {self.rounds}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"strategy.patience must be >= 1 or null, got {self.patience}")
        _ = self.policy  # RoundPolicy checks min_nodes, naming strategy.min_nodes
        if self.finetune_epochs < 0:
            raise ValueError(f"strategy.finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if self.selection not in ("validation", "last"):
            raise ValueError(f"strategy.selection={self.selection!r}: expected 'validation' or 'last'")
        if self.validation_weights not in ("patients", "events"):
            raise ValueError(
                f"strategy.validation_weights={self.validation_weights!r}: expected 'patients' or 'events'"
            )
        if self.selection == "last" and self.patience is not None:
            raise ValueError("strategy.selection=last trains a fixed budget: set strategy.patience=null")
        if self.dp.enabled and self.algorithm != "fedavg":
            raise ValueError(
                f"strategy.dp.clip is set: client-level DP-FedAvg needs strategy.algorithm=fedavg, "
                f"not {self.algorithm!r}"
            )
        if self.retrain_on_pool and self.algorithm != "sd_sharing":
            raise ValueError(
                f"strategy.retrain_on_pool applies to strategy=sd_sharing (the pooled synthetic rows), "
                f"not algorithm {self.algorithm!r}"
            )
        if self.client.dp_sgd.enabled and self.finetune_epochs > 0:
            raise ValueError(
                "strategy.client.dp_sgd accounts the federated rounds' local steps only: fine-tuning "
                "(strategy.finetune_epochs > 0) would train on the rows outside that account; set it to 0"
            )

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def policy(self) -> RoundPolicy:
        """The round loop's participation policy (sampling, fewest nodes, failures accepted)."""
        return RoundPolicy(self.sampling, self.min_nodes, self.accept_failures)
