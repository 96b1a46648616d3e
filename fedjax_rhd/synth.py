"""``fedjax-rhd-synth``: what leaves the federation from a generative run (``export``).

Usage::

    fedjax-rhd-synth export RUN_DIR --out OUT [--generator node2] [--name NAME]
        [--max-exact-copy-share 0] [--max-dcr-closer-to-train-share 0.6] [--max-mia-auc 0.6]
        [--min-nndr-p05 none]

``export`` writes ``OUT`` (the synthetic table, its validation report and a card) only if the
table passes the privacy thresholds (each flag is a ``PrivacyThresholds`` field; ``none``
switches a check off) and holds no impossible value (``fedjax_rhd/synthetic_export.py``).
Exit codes: 0 exported; 1 the run cannot be exported (the message names the file and why);
3 refused by the gate (each failing metric with its value and limit); 2 a bad argument.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from fedjax_rhd.metrics.synthetic import PrivacyThresholds
from fedjax_rhd.synthetic_export import ExportError, GateRefused, export_run

EXIT_UNUSABLE, EXIT_REFUSED = 1, 3


def _limit(text: str) -> float | None:
    if text.lower() in ("none", "null", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or 'none', not {text!r}") from None


def parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per action (``export``)."""
    p = argparse.ArgumentParser(prog="fedjax-rhd-synth", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write a run's synthetic table if it passes the privacy gate")
    ex.add_argument("run_dir", type=Path, help="a generative run's folder (results.json)")
    ex.add_argument("--out", type=Path, required=True, help="export folder to create")
    ex.add_argument(
        "--generator", default=None, help="global, pooled or a node's name (default: the main one)"
    )
    ex.add_argument("--name", default=None, help="the export's name (default <use case>-synth-<id>)")
    for field in dataclasses.fields(PrivacyThresholds):
        flag = "--" + field.name.replace("_", "-")
        ex.add_argument(flag, type=_limit, default=field.default, help=f"default {field.default}")
    return p


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (exit codes in the module docstring)."""
    args = parser().parse_args(argv)
    thresholds = PrivacyThresholds(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(PrivacyThresholds)}
    )
    try:
        card = export_run(
            args.run_dir, args.out, thresholds=thresholds, generator=args.generator, name=args.name
        )
    except GateRefused as err:
        print(f"fedjax-rhd-synth: {err}; nothing written", file=sys.stderr)
        sys.exit(EXIT_REFUSED)
    except ExportError as err:
        print(f"fedjax-rhd-synth: {err}", file=sys.stderr)
        sys.exit(EXIT_UNUSABLE)
    print(
        f"exported {card['n_rows']} synthetic rows ({card['generator']['trained_on']} generator, "
        f"{card['generator']['strategy']}) to {args.out} as {card['name']} ({card['id']}); "
        "privacy gate passed"
    )


if __name__ == "__main__":
    main()
