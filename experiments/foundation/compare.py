"""Superseded by the report: ``fedjax-rhd-report <sweep dir> --out <dir>``.

Kept so the foundation README's earlier command still works; it writes the full report
(table, paired comparisons, figures, HTML) into ``<first dir>/report`` and prints the
one-sentence summaries.

Usage:  python experiments/foundation/compare.py multirun/foundation [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fedjax_rhd.report import main as report_main  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    report_main([*map(str, args.roots), "--out", str(args.roots[0] / "report"), "--n-boot", str(args.n_boot)])


if __name__ == "__main__":
    main()
