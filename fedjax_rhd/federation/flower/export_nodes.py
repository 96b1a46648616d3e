"""Write each node's folder for a deployment whose SuperNodes run at the sites (``docs/deployment.md``).

``python -m fedjax_rhd.federation.flower.export_nodes <hydra overrides...> --out DIR`` composes the run
config exactly as ``fedjax-rhd <overrides>`` does, builds the federated data as a run does
(``load_use_case`` then ``build_federated_data``) and writes node ``k``'s packed training and validation
rows into ``DIR/<k>/`` (``backend.write_node_folders``), then prints which folder goes to which site.
A run with ``backend.superlink=...`` writes no folders: it expects the sites' SuperNodes to hold these.

Give it the same data overrides as the run (``use_case``, ``split``, ``scenario``, ``seed.data``,
``seed.split``, ``data_root``...): the run's manager checks the nodes' names, not their rows.

What is and is not federated in this version: the folders are cut from the whole harmonised table in
one place, which also draws the test split. A site that holds only its own table cannot yet make its
folder by itself. The run fits the preprocessing and any feature-group reduction from the nodes' messages:
a reduced group's folder holds its raw columns, and each node computes its components itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fedjax_rhd.data import FederatedData


def export(overrides: Sequence[str], out: Path) -> tuple[FederatedData, list[Path]]:
    """Compose the run config, build its federated data and write every node's folder under ``out``.

    Args:
        overrides: Hydra overrides, as on the ``fedjax-rhd`` command line (e.g. ``split=five``).
        out: The folder that receives ``<k>/`` per node (created); it must not hold anything else.

    Returns:
        The federated data and the folders written, in partition order.

    Raises:
        ValueError: The config is invalid, asks for ``strategy=centralized`` (one pooled node: no
            site to send a folder to), or ``out`` holds other files.
    """
    from hydra import compose, initialize_config_dir

    from fedjax_rhd.cli import CONF_DIR
    from fedjax_rhd.config import register_configs, run_config
    from fedjax_rhd.experiment import run_data
    from fedjax_rhd.federation.flower.backend import write_node_folders
    from fedjax_rhd.guide_cache import cached_guide

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    config = run_config(cfg)
    if config.strategy.algorithm == "centralized":
        raise ValueError(
            "strategy=centralized pools every row into one node on the manager: no site to export to"
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(not p.name.isdecimal() for p in out.iterdir()):  # checked before the slow part
        others = sorted(p.name for p in out.iterdir() if not p.name.isdecimal())
        raise ValueError(f"--out {out} holds other files {others}; export into an empty folder")
    # fedjax_rhd.experiment's own function, so that these folders hold the rows a run's simulator would use
    data = run_data(config, cached_guide(config.use_case.guide_name))[0]
    ours = {str(k) for k in range(len(data.node_names))}
    others = sorted(p.name for p in out.iterdir() if p.name not in ours) if out.is_dir() else []
    if others:
        raise ValueError(f"--out {out} holds other files {others}; export into an empty folder")
    return data, write_node_folders(out, data)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0; 2 for a bad config or output folder; 1 for data that cannot be loaded.
    """
    parser = argparse.ArgumentParser(
        prog="python -m fedjax_rhd.federation.flower.export_nodes",
        description="Write each node's folder for SuperNodes started at the sites (docs/deployment.md).",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for fedjax-rhd (e.g. split=five)")
    parser.add_argument("--out", required=True, type=Path, help="folder that receives one folder per node")
    args = parser.parse_args(argv)
    from hydra.errors import HydraException

    from fedjax_rhd.cohorts import RealDataMissing
    from fedjax_rhd.data.checks import UnusableData
    from harmonize.errors import InputError
    from harmonize.identity import DatasetCacheError

    try:
        data, folders = export(args.overrides, args.out)
    # the message names the folder, file, dataset or node and what to do (checked before ValueError)
    except (DatasetCacheError, RealDataMissing, UnusableData, InputError) as err:
        print(f"export_nodes: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, HydraException) as err:  # the message names the key or folder
        print(f"export_nodes: {err}", file=sys.stderr)
        return 2
    n = len(folders)
    print(f"wrote {n} node folders under {args.out.resolve()}; copy each to its own site only:")
    for k, (folder, name) in enumerate(zip(folders, data.node_names, strict=True)):
        print(
            f"  {folder.resolve()}  ->  site of {name} (partition-id {k} of {n}; "
            f"{data.n_train[k]} training and {data.n_val[k]} validation rows)"
        )
    print(
        "at each site, start its SuperNode with "
        f"--node-config 'partition-id=<k> num-partitions={n} data-dir=\"<the folder at the site>\"'"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
