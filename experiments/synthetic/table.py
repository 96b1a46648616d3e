"""Table of a VAE-BGM sweep: fidelity, utility, privacy and validity per strategy (and node alone).

Usage: python experiments/synthetic/table.py <multirun dir>  (prints a Markdown table)

Reads every ``results.json`` under the directory (fedjax_rhd/generative.py's ``final.generative``);
one row per generator: FedAvg's global model, the centralised (pooled) model and, under ``local``,
every node's own; mean ± sd over the split seeds found.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from fedjax_rhd.report.synthetic import METRICS  # noqa: E402

# The report's validation columns (its exact-copy share came later and is not in this table's pages).
COLUMNS = tuple(m for m in METRICS if m[0] != "exact_copy_share")


def rows(root: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(root.rglob("results.json")):
        res = json.loads(path.read_text())
        final = res["final"]
        if final.get("kind") != "generative":
            continue
        strategy = res["config"]["strategy"]["name"]
        gen = final["generative"]
        for block in [gen, *gen.get("nodes", [])]:
            name = (
                strategy
                if block["trained_on"] in ("global", "pooled")
                else f"{strategy} {block['trained_on']}"
            )
            found[name].append(
                {
                    **block["validation"],
                    "n": block["synthetic"]["n"],
                    "seconds": res["timing"]["total_seconds"],
                }
            )
    return found


def main(root: str) -> None:
    found = rows(Path(root))
    print("| generator | seeds | n synthetic | " + " | ".join(label for _, label in COLUMNS) + " | run s |")
    print("|---" * (len(COLUMNS) + 4) + "|")
    for name in sorted(found, key=lambda s: (s.split()[0] != "fedavg", s)):
        runs = found[name]
        cells = []
        for key, _ in COLUMNS:
            v = np.array([r[key] for r in runs if r.get(key) is not None], float)
            cells.append(
                f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"
                if len(v) > 1
                else (f"{v[0]:.3f}" if len(v) else "n/a")
            )
        n = int(np.mean([r["n"] for r in runs]))
        secs = np.mean([r["seconds"] for r in runs])
        print(f"| {name} | {len(runs)} | {n} | " + " | ".join(cells) + f" | {secs:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1])
