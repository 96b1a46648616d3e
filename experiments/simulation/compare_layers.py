"""With vs without a data layer (slides on ``mds_wsi``, PET on ``mm``), paired on the same test rows.

    PYTHONPATH=. python experiments/simulation/compare_layers.py WITH_DIR WITHOUT_DIR [--label NAME]

Both multiruns use the same split seeds, so every (strategy, seed) pair has the same
test patients in the same order (checked). Per pair: Harrell's C of each arm; over the
seeds: the mean difference with a 95% interval from a paired bootstrap that resamples
each seed's test rows once for both arms (the same resamples for both), and the mean
over seeds of each resample's difference (as ``fedjax-rhd-report`` does).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from fedjax_rhd.metrics.concordance import concordance_index


def _runs(root: Path) -> dict[tuple[str, int], pl.DataFrame]:
    out = {}
    for res in sorted(root.glob("*/results.json")):
        cfg = json.loads(res.read_text())["config"]
        key = (cfg["strategy"]["name"], int(cfg["seed"]["split"]))
        if cfg["scenario"]["name"] != "best":
            continue
        out[key] = pl.read_parquet(res.parent / "test_predictions.parquet")
    return out


def compare(with_dir: Path, without_dir: Path, n_boot: int = 1000, seed: int = 0) -> list[str]:
    a, b = _runs(with_dir), _runs(without_dir)
    by_strategy: dict[str, list[tuple[int, float, float, np.ndarray]]] = defaultdict(list)
    for key in sorted(set(a) & set(b)):
        pa, pb = a[key], b[key]
        if pa["patient_id"].to_list() != pb["patient_id"].to_list():
            raise ValueError(f"{key}: the two arms have different test rows")
        t, e = pa["time"].to_numpy(), pa["event"].to_numpy()
        ra, rb = pa["risk"].to_numpy(), pb["risk"].to_numpy()
        rng = np.random.default_rng([seed, key[1]])
        diffs = np.full(n_boot, np.nan)
        for i in range(n_boot):
            idx = rng.integers(0, len(t), len(t))
            if e[idx].sum() == 0:
                continue
            diffs[i] = concordance_index(t[idx], e[idx], ra[idx]) - concordance_index(t[idx], e[idx], rb[idx])
        by_strategy[key[0]].append((key[1], concordance_index(t, e, ra), concordance_index(t, e, rb), diffs))
    lines = [
        "| strategy | seeds | C with | C without | mean diff [95% paired bootstrap] | seeds with > without |",
        "|---|---|---|---|---|---|",
    ]
    for strategy, rows in sorted(by_strategy.items()):
        ca, cb = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
        boots = np.nanmean(np.stack([r[3] for r in rows]), axis=0)
        low, high = np.nanquantile(boots, [0.025, 0.975])
        lines.append(
            f"| {strategy} | {','.join(str(r[0]) for r in rows)} | {ca.mean():.3f} | {cb.mean():.3f} | "
            f"{(ca - cb).mean():+.3f} [{low:+.3f}, {high:+.3f}] | {int((ca > cb).sum())}/{len(rows)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("with_dir", type=Path)
    parser.add_argument("without_dir", type=Path)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    if args.label:
        print(f"### {args.label}\n")
    print("\n".join(compare(args.with_dir, args.without_dir)))


if __name__ == "__main__":
    main()
