"""One ``flwr-clientapp``-like process, timed part by part (started by ``backends.py``).

Does what a deployment's ClientApp process does before and during one
``train`` message, minus Flower's HTTP calls and FAB install: start Python,
import the module ``flwr-clientapp`` runs, import the app, read the node's
folder, run the local update twice (the first call compiles, or loads from
JAX's persistent cache when one is set and warm; the second is the steady
cost). Prints one JSON object of wall-clock timestamps (``time.time()``), so
the parent can also time the interpreter's start.

Usage:  python clientapp_probe.py ours NODE_FOLDER SPEC_JSON_FILE
        python clientapp_probe.py bare NUM_PARAMS LOCAL_EPOCHS
"""

import time

marks = {"python_started": time.time()}

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

# This folder last: its harmonize.py must not shadow the harmonize package.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here] + [_here]

import flwr.supernode.cli.flwr_clientapp  # noqa: E402, F401  (what every flwr-clientapp imports)

marks["flwr_imported"] = time.time()


def _ours(folder: str, spec_file: str) -> None:
    from pathlib import Path

    import jax
    import numpy as np

    marks["jax_imported"] = time.time()
    # what a ClientApp process does for a training message when its node runs no worker
    from fedjax_rhd.federation.flower import node_handlers, protocol
    from fedjax_rhd.federation.node_tasks import node_update

    marks["app_imported"] = time.time()
    _, rows = protocol.read_node_folder(Path(folder))
    marks["data_loaded"] = time.time()
    spec = node_handlers._spec(Path(spec_file).read_text())
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), node_handlers._params_template(spec))
    key = jax.random.key(0)
    jax.block_until_ready(node_update(spec, params, rows.train, key))
    marks["first_update"] = time.time()
    jax.block_until_ready(node_update(spec, params, rows.train, key))
    marks["second_update"] = time.time()


def _bare(num_params: str, local_epochs: str) -> None:
    import jax
    import jax.numpy as jnp

    marks["jax_imported"] = time.time()
    from bare_app import client_app

    marks["app_imported"] = time.time()
    marks["data_loaded"] = marks["app_imported"]  # the bare app reads no data
    params = jnp.zeros(int(num_params), jnp.float32)
    steps = int(local_epochs)
    jax.block_until_ready(client_app.local_update(params, jnp.float32(1.0), steps))
    marks["first_update"] = time.time()
    jax.block_until_ready(client_app.local_update(params, jnp.float32(1.0), steps))
    marks["second_update"] = time.time()


if __name__ == "__main__":
    {"ours": _ours, "bare": _bare}[sys.argv[1]](*sys.argv[2:])
    print(json.dumps(marks))
