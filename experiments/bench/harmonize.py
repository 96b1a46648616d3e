"""Benchmark: the simulated MDS cohort from canonical export to registered dataset.

Runs every step of ``harmonize build`` on the study-size cohort (4,427 patients,
all centres) in a fresh temporary data root and prints:
  * wall time per step (simulate, export, ingest = build + validate + write,
    extract + quality + card) and in total, against the 60 s budget
    (export to registered dataset, i.e. everything after simulating);
  * resources per second for build + validate, and for extraction;
  * the share of the pipeline's time spent validating with ``fhir.resources``.

Run:  python experiments/bench/harmonize.py                 (about 25 s on 2 cores)
      python experiments/bench/harmonize.py --n 20000       (a bigger cohort)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fedjax_rhd.sources import UseCase, dataset_spec  # noqa: E402
from fedjax_rhd.sources.simulated import simulated_table  # noqa: E402
from harmonize.datasets import extract_dataset  # noqa: E402
from harmonize.fhir import ingest_source  # noqa: E402
from harmonize.guide import load_guide  # noqa: E402
from harmonize.identity import dataset_id  # noqa: E402
from harmonize.sources import CanonicalExportSource, write_canonical_export  # noqa: E402

BUDGET_SECONDS = 60.0


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=4427, help="patients (default: the study's 4,427)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    guide = load_guide("mds")
    with tempfile.TemporaryDirectory() as tmp:
        name = dataset_spec(UseCase(name="mds", n_patients=args.n), seed_data=args.seed).name
        folder = Path(tmp) / "datasets" / name
        t0 = time.perf_counter()
        df, provenance = simulated_table(guide, {"n": args.n, "seed": args.seed})
        t1 = time.perf_counter()
        write_canonical_export(df, guide, folder / "export", provenance)
        source = CanonicalExportSource(folder / "export", guide)
        t2 = time.perf_counter()
        stats = ingest_source(source, guide, folder / "fhir")
        t3 = time.perf_counter()
        card = extract_dataset(
            folder / "fhir",
            folder,
            guide,
            name=folder.name,
            source_card={"name": "simulated", "options": {"n": args.n, "seed": args.seed}},
            provenance=source.provenance(),
            truth=source.truth(),
            centres=list(source.centres()),
        )
        t4 = time.perf_counter()
        assert card["id"] == dataset_id(df.sort("patient_id"), guide), "round trip changed the table"

    n_resources = sum(sum(s.resources.values()) for s in stats.values())
    build = sum(s.build_seconds for s in stats.values())
    validate = sum(s.validate_seconds for s in stats.values())
    write = sum(s.write_seconds for s in stats.values())
    pipeline = t4 - t1  # export -> registered dataset
    extract = t4 - t3
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    print(f"cohort: simulated MDS, {args.n} patients, {len(stats)} centre(s), {n_resources} FHIR resources")
    print(f"  simulate                    {t1 - t0:7.2f} s   (not part of the budget)")
    print(f"  canonical export (CSV)      {t2 - t1:7.2f} s")
    print(
        f"  ingest -> FHIR NDJSON       {t3 - t2:7.2f} s   (build {build:.2f}, validate {validate:.2f}, "
        f"write {write:.2f})"
    )
    print(f"  extract + quality + card    {extract:7.2f} s")
    print(
        f"  export -> registered dataset {pipeline:6.2f} s   (budget {BUDGET_SECONDS:.0f} s: "
        f"{'OK' if pipeline <= BUDGET_SECONDS else 'OVER'})"
    )
    print(f"resources/s, build + validate: {n_resources / (build + validate):,.0f}")
    print(f"resources/s, extraction:       {card_resources(stats) / extract:,.0f}")
    print(f"share of pipeline time in validation: {validate / pipeline:.0%}")
    print(f"dataset id {card['id']} (equal to the canonical table's)")
    return {"pipeline_seconds": pipeline, "validate_share": validate / pipeline}


def card_resources(stats: dict) -> int:
    """Resources extraction reads back (all that ingestion wrote)."""
    return sum(sum(s.resources.values()) for s in stats.values())


if __name__ == "__main__":
    main()
