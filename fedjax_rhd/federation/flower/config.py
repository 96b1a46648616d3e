"""``backend=flower``'s settings (``FlowerConfig``, also its Hydra schema), importable without flwr.

The config layer registers every backend's schema at start-up; keeping this dataclass apart from
``backend.py`` (which imports flwr through the wire protocol) spares every run that does not use
Flower the flwr import (seconds of a process's start).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from fedjax_rhd.federation.faults import Failures

MODES = ("simulation", "deployment")


@dataclasses.dataclass(frozen=True)
class NodeDelay:
    """``backend.delays`` entry: ``node`` sleeps ``seconds`` before answering each training message."""

    node: str
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"backend.delays: node {self.node!r} seconds must be >= 0, got {self.seconds}")


@dataclasses.dataclass(frozen=True)
class FlowerConfig:
    """``backend=flower`` (conf/backend/flower.yaml); also the backend's Hydra schema.

    Attributes:
        name: the registry key, always ``"flower"``.
        mode: ``simulation`` (Flower's simulation engine, Ray) or ``deployment`` (SuperLink and
            SuperNodes as processes).
        time_limit: seconds a round waits for the nodes' replies, measured on the ServerApp from
            pushing the messages to pulling the replies (so Flower's own latency counts); also the
            messages' TTL, so a slow node skips a stale round. None: wait until every node answers or
            Flower reports it unavailable (about 30-60 s after it died).
        failures: injected failures, drawn exactly as the simulator draws them (``seed.failure``):
            the manager does not send to a node it draws as failed.
        delays: injected slowness: the named node sleeps this many seconds before answering each
            ``train`` message (to study ``time_limit``; a real slow site needs no injection).
        actors: simulation: Ray actors (one CPU each) running the ClientApps.
        superlink: deployment: ``host:port`` of a SuperLink whose SuperNodes were started elsewhere
            (``docs/deployment.md``); None starts a local SuperLink and one SuperNode per node.
        connect_timeout: seconds to wait for every node to register and answer.
        poll_interval: seconds between the ServerApp's pulls of replies.
        superexec_poll: deployment: ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` of Flower's processes.
        node_workers: local deployment: start each node's warm worker (``node_worker``) beside its
            SuperNode, so that the per-message ClientApp process imports no JAX (same results).
        insecure: deployment: plaintext transport. By default a local deployment serves TLS with a
            CA and certificate made for the run, and a remote SuperLink is reached over TLS trusting
            ``root_certificates``. Recorded in ``results.json`` with the rest of the config.
        node_auth: local deployment with TLS: register one key pair per node and start the SuperLink
            with ``--enable-supernode-auth`` (only registered keys connect).
        root_certificates: deployment with ``superlink``: the CA certificate of that SuperLink.
        workdir: folder for the nodes' folders and Flower's home (default: a temporary folder,
            removed when the run ends).
    """

    name: str = "flower"
    mode: str = "simulation"
    time_limit: float | None = None
    failures: Failures = dataclasses.field(default_factory=Failures)
    delays: tuple[NodeDelay, ...] = ()
    actors: int = 2
    superlink: str | None = None
    connect_timeout: float = 180.0
    poll_interval: float = 0.05
    superexec_poll: float = 0.25
    node_workers: bool = True
    insecure: bool = False
    node_auth: bool = True
    root_certificates: str | None = None
    workdir: str | None = None

    def __post_init__(self) -> None:
        if self.name != "flower":
            raise ValueError(f"backend.name must be 'flower' for FlowerConfig, got {self.name!r}")
        if self.mode not in MODES:
            raise ValueError(f"backend.mode must be one of {list(MODES)}, got {self.mode!r}")
        if isinstance(self.failures, Mapping):
            object.__setattr__(self, "failures", Failures(**self.failures))
        delays = tuple(NodeDelay(**d) if isinstance(d, Mapping) else d for d in self.delays)
        object.__setattr__(self, "delays", delays)
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"backend.time_limit must be > 0 seconds or null, got {self.time_limit}")
        if self.actors < 1:
            raise ValueError(f"backend.actors must be >= 1, got {self.actors}")
        if self.superlink is not None and self.mode != "deployment":
            raise ValueError("backend.superlink applies to backend.mode=deployment")
        if self.insecure and self.node_auth and self.mode == "deployment" and self.superlink is None:
            raise ValueError(
                "backend.node_auth needs TLS: set backend.node_auth=false with backend.insecure=true"
            )
        if self.superlink is not None and not self.insecure and self.root_certificates is None:
            raise ValueError(
                "backend.superlink over TLS needs backend.root_certificates=<the SuperLink's ca.crt> "
                "(or backend.insecure=true for plaintext)"
            )

    def check_nodes(self, node_names: tuple[str, ...]) -> None:
        for entry in (*self.failures.down, *self.delays):
            if entry.node not in node_names:
                raise ValueError(
                    f"backend.failures.down / backend.delays: no node named {entry.node!r}; "
                    f"nodes are {list(node_names)}"
                )
