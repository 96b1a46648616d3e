"""A SuperLink started by someone else: submit runs to it and stop them, start and kill no process.

``backend.mode=deployment backend.superlink=host:port`` uses a ``RemoteSuperLink`` where a local
deployment would use ``processes.LocalDeployment``: the same ``submit``, ``run_status``, ``stop_run``
and ``stop``, over a private ``FLWR_HOME/config.toml`` whose one connection points at the given address.
The SuperLink and the sites' SuperNodes are started by hand (``docs/deployment.md``).

The connection trusts the SuperLink's CA certificate (TLS), or is plaintext when none is given
(``backend.insecure=true``); ``docs/deployment.md`` makes the certificates.

Example::

    with RemoteSuperLink("10.0.0.5:9092", workdir) as superlink:
        run_id = superlink.submit(app_dir, {"bridge-address": "127.0.0.1:40001", "bridge-key": key})
        ...
    # leaving the block stops run_id if it still runs
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Mapping
from pathlib import Path

from fedjax_rhd.federation.flower.flwr_cli import CONNECTION, ConfigValue, FlwrCli, flower_env
from fedjax_rhd.federation.flower.runs import SuperLinkRuns

STOP_WAIT = 10.0  # seconds ``stop`` lets a run finish by itself before ``flwr stop``
REACH_TIMEOUT = 5.0  # seconds ``start`` waits for the SuperLink's port to accept a connection

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # one DNS label (IPv4 octets match too)
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\Z")

log = logging.getLogger(__name__)


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of a SuperLink address ``host:port``.

    Args:
        address: ``host:port`` with a host name, an IPv4 address or a bracketed IPv6 address
            (``[::1]:9092``), no scheme.

    Returns:
        The host (without brackets) and the port.

    Raises:
        ValueError: ``address`` is not of that form (the message says what is wrong).
    """
    if not isinstance(address, str):
        raise ValueError(f"the SuperLink address must be a 'host:port' string, got {address!r}")
    if "://" in address:
        raise ValueError(f"the SuperLink address {address!r} must be 'host:port' without a scheme")
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"the SuperLink address {address!r} must be 'host:port' (e.g. 10.0.0.5:9092)")
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the SuperLink address {address!r} has no port in 1-65535 after the last ':'")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as err:
            raise ValueError(f"the SuperLink address {address!r} has a malformed IPv6 host") from err
        return host[1:-1], int(port_text)
    if ":" in host:
        raise ValueError(f"the SuperLink address {address!r}: write an IPv6 host in brackets, [::1]:9092")
    if not _HOSTNAME.match(host):
        raise ValueError(f"the SuperLink address {address!r} has a malformed host {host!r}")
    return host, int(port_text)


class RemoteSuperLink(SuperLinkRuns):
    """Runs on a SuperLink at ``address`` whose SuperNodes were started elsewhere.

    It owns a folder (``workdir``) holding ``flwr_home/config.toml``, the ``flwr`` CLI's one
    connection, and remembers the runs it submitted; ``stop`` stops those that still run. It starts and
    kills no process besides short ``flwr`` CLI calls.

    Attributes:
        address: ``host:port`` of the SuperLink.
        workdir: The folder of ``flwr_home``.
        flwr_home: ``workdir/flwr_home`` (``FLWR_HOME`` of the CLI calls).
        env: The CLI's environment (``flwr_cli.flower_env``).
        connection: The connection's name in ``config.toml``.
    """

    def __init__(
        self,
        address: str,
        workdir: Path,
        *,
        connection: str = CONNECTION,
        root_certificates: Path | None = None,
    ) -> None:
        """Check the address; nothing is written or contacted before ``start``.

        Args:
            address: ``host:port`` of the SuperLink (``backend.superlink``).
            workdir: Where ``flwr_home`` goes.
            connection: The connection's name in ``config.toml``.
            root_certificates: The SuperLink's CA certificate (TLS); None for a plaintext SuperLink.

        Raises:
            ValueError: ``address`` is not ``host:port``.
            FileNotFoundError: ``root_certificates`` does not exist.
        """
        self.host, self.port = parse_address(address)
        self.address = address
        self.workdir = Path(workdir).resolve()
        self.flwr_home = self.workdir / "flwr_home"
        self.env = flower_env(self.flwr_home)
        self.connection = connection
        if root_certificates is not None and not Path(root_certificates).is_file():
            raise FileNotFoundError(f"backend.root_certificates: {root_certificates} is not a file")
        self.root_certificates = None if root_certificates is None else Path(root_certificates).resolve()
        self._runs: list[int] = []
        self._state = "new"  # -> "started" -> "stopped"

    def __enter__(self) -> RemoteSuperLink:
        """Start (write the connection, check the SuperLink answers)."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the runs this object submitted that still run."""
        self.stop()

    def start(self, *, reach_timeout: float = REACH_TIMEOUT) -> None:
        """Write ``FLWR_HOME/config.toml`` and check that the SuperLink's port accepts a connection.

        Args:
            reach_timeout: Seconds to wait for the port.

        Raises:
            RuntimeError: Started before.
            ConnectionError: Nothing accepts connections at ``address``.
        """
        if self._state != "new":
            raise RuntimeError(f"this RemoteSuperLink was already {self._state}; make a new one")
        self._cli(check=False).write_connection(self.address, self.root_certificates)
        try:
            socket.create_connection((self.host, self.port), timeout=reach_timeout).close()
        except OSError as err:
            raise ConnectionError(
                f"no SuperLink accepts connections at {self.address} ({err}); start flower-superlink "
                "there first (docs/deployment.md) or fix backend.superlink"
            ) from err
        self._state = "started"

    def submit(self, app_dir: Path, run_config: Mapping[str, ConfigValue]) -> int:
        """Start a run of the app in ``app_dir`` (``flwr run``) and return its run id.

        Args:
            app_dir: A Flower app dir (``flwr_cli.write_app_dir``) whose components every site has
                installed.
            run_config: Overrides of run-config keys the app declares.

        Returns:
            The run id.

        Raises:
            RuntimeError: Not started, or ``flwr run`` failed (the message quotes Flower's reason).
            FileNotFoundError, ValueError, TypeError, TimeoutError: As ``FlwrCli.submit``.
        """
        run_id = super().submit(app_dir, run_config)
        self._runs.append(run_id)  # stopped by ``stop`` if it still runs
        return run_id

    def stop(self, *, wait: float = STOP_WAIT) -> None:
        """Stop the runs this object submitted that still run; the SuperLink and SuperNodes stay up.

        A run gets up to ``wait`` seconds to finish by itself (the driver's ``stop`` ends the ServerApp
        just before), then ``flwr stop``. Idempotent, a no-op before ``start``, and it never raises:
        failures are logged (a SuperLink that went away has no run left to stop).

        Args:
            wait: Seconds each unfinished run gets to finish by itself.
        """
        if self._state != "started":
            return
        self._state = "stopped"
        cli = self._cli(check=False)
        for run_id in self._runs:
            try:
                cli.wait_run(run_id, timeout=wait, poll=1.0)
            except TimeoutError:
                try:
                    cli.stop_run(run_id)
                except (RuntimeError, TimeoutError, OSError) as err:
                    log.warning("could not stop Flower run %s at %s: %s", run_id, self.address, err)
            except (RuntimeError, OSError) as err:
                log.warning("could not follow Flower run %s at %s: %s", run_id, self.address, err)

    def _require_started(self) -> None:
        if self._state != "started":
            raise RuntimeError(f"the RemoteSuperLink at {self.address} is {self._state}, not started")

    def _cli(self, *, check: bool = True) -> FlwrCli:
        return FlwrCli(
            self.env,
            self.workdir,
            connection=self.connection,
            before_call=self._require_started if check else None,
        )
