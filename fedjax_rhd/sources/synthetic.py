"""Source ``synthetic``: an exported synthetic table (``fedjax-rhd-synth export``) as a dataset.

``use_case.source=synthetic real_data_root=<export folder>`` builds the registered dataset
``<use case>-synthetic`` (or ``use_case.dataset``) the one way every dataset is built: the
export's table -> canonical export -> FHIR R5 -> table, quality report and dataset card. Only an
export whose card says the privacy gate passed and whose table still has the card's content id
is read (``fedjax_rhd.synthetic_export.read_export``); the card's id is the source's
fingerprint, so a cached dataset built from another export in that folder is reported stale.
All rows are in one centre, ``synthetic``; there is no ground truth (no ``oracle_risk``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from fedjax_rhd.synthetic_export import CARD, CENTRE, read_export
from harmonize.guide import Guide
from harmonize.registry import register_source, table_source

SOURCE = "synthetic"


def _folder(options: Mapping[str, Any]) -> Path:
    return Path(options["root"])


def synthetic_table(guide: Guide, options: Mapping[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The export in ``options["root"]`` as a registry table source: ``(table, provenance)``."""
    table, card = read_export(_folder(options), guide)
    provenance = {
        **card["provenance"],
        "export": {"name": card["name"], "id": card["id"], "card": str(_folder(options) / CARD)},
        "generator": card["generator"]["model"],
        "trained_on_dataset": card["run"]["dataset"],
    }
    return table.with_columns(pl.lit(CENTRE).alias("centre")), provenance


def export_fingerprint(guide: Guide, options: Mapping[str, Any]) -> str:
    """The export's content id: another table in the same folder makes a cached dataset stale."""
    return str(read_export(_folder(options), guide)[1]["id"])


register_source(
    SOURCE,
    table_source(synthetic_table),
    fingerprint=export_fingerprint,
    run_options=("root",),
    required=("root",),
    dataset_name="{use_case}-synthetic",
)
