"""The runs of a SuperLink, through the ``flwr`` CLI: what a local and a remote deployment share.

``processes.LocalDeployment`` (it started the SuperLink) and ``remote.RemoteSuperLink`` (someone
else did) submit, follow and stop runs the same way; each provides ``_cli()``, a ``FlwrCli`` on its
own ``FLWR_HOME`` and connection whose ``before_call`` refuses while it is not started.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fedjax_rhd.federation.flower.flwr_cli import ConfigValue, FlwrCli


class SuperLinkRuns:
    """``submit``, ``run_status``, ``wait_run``, ``stop_run`` and ``online_nodes`` over ``self._cli()``.

    Each method is the ``FlwrCli`` method of the same name (see there for arguments and errors), and
    also raises ``RuntimeError`` when the owner is not started.
    """

    def _cli(self) -> FlwrCli:
        raise NotImplementedError

    def submit(self, app_dir: Path, run_config: Mapping[str, ConfigValue]) -> int:
        """Start a run of the app in ``app_dir`` (``flwr run``) and return its run id."""
        return self._cli().submit(app_dir, run_config)

    def run_status(self, run_id: int) -> str:
        """``"pending"``, ``"starting"``, ``"running"`` or ``"finished:<completed|failed|stopped>"``."""
        return self._cli().run_status(run_id)

    def wait_run(self, run_id: int, timeout: float, *, poll: float = 1.0) -> str:
        """Wait until the run has finished (each status query is a ``flwr`` start, ~1.5 s of CPU)."""
        return self._cli().wait_run(run_id, timeout, poll=poll)

    def stop_run(self, run_id: int) -> None:
        """Stop a run (``flwr stop``); it then ends as ``"finished:stopped"``."""
        self._cli().stop_run(run_id)

    def online_nodes(self) -> list[int]:
        """Node ids listed as online (a SIGKILLed SuperNode stays listed for about 60 s)."""
        return self._cli().online_nodes()
