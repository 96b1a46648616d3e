"""Leave one centre out: every row of one real centre becomes the test set, the others federate.

External validation across sites is the usual test of a prognostic model's transport (Steyerberg
& Harrell 2016, "Prediction models need appropriate internal, internal-external, and external
validation", J Clin Epidemiol 69:245-7: *internal-external* cross-validation holds out each centre
in turn). ``split=natural split.holdout_centre=<centre>`` moves all of that centre's patients out of
the federation: the remaining centres are the nodes (one per centre, as under ``split=natural``),
and the held-out rows are the run's test set, kept by the manager like ``test.dataset``'s rows
(``build_federated_data``'s ``test_table`` path), so no statistic, selection or preprocessing
ever sees them.
"""

from __future__ import annotations

import polars as pl

from fedjax_rhd.data.checks import UnusableData, require_rows


def resolve_centre(centres: list[str], name: str, dataset: str) -> str:
    """The ``centre`` value ``name`` denotes: the value itself, or a node name ``centre<value>``.

    Raises:
        UnusableData: no centre of that name (the valid values listed).
    """
    if name in centres:
        return name
    if name.startswith("centre") and name[len("centre") :] in centres:
        return name[len("centre") :]
    raise UnusableData(
        f"split.holdout_centre={name!r}: dataset {dataset!r} has no such centre; its centres: "
        f"{', '.join(centres)} (the value of the 'centre' column, or its node name centre<value>)"
    )


def split_off_centre(df: pl.DataFrame, name: str, dataset: str) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """``df`` without the centre ``name``, that centre's rows, and the centre's value.

    Args:
        df: the table (``centre``, ``event`` columns).
        name: the centre to hold out (``split.holdout_centre``): a value of ``centre`` or its
            node name ``centre<value>``.
        dataset: the dataset's name, for messages.

    Returns:
        ``(federated rows, held-out rows, centre value)``, each in ``df``'s order.

    Raises:
        UnusableData: no ``centre`` column, a row without a centre, an unknown centre (the valid
            ones listed), a held-out centre without an event, or fewer than two centres left to
            federate.
    """
    if "centre" not in df.columns:
        raise UnusableData(f"split.holdout_centre: dataset {dataset!r} has no 'centre' column")
    centre = df["centre"].cast(pl.String)
    if centre.null_count():
        raise UnusableData(
            f"split.holdout_centre: dataset {dataset!r} has {centre.null_count()} rows without a centre"
        )
    counts = dict(centre.value_counts().iter_rows())
    ordered = sorted(counts, key=lambda c: (-counts[c], c))  # largest first, as the nodes are named
    value = resolve_centre(ordered, name, dataset)
    held = centre == value
    rest, test = df.filter(~held), df.filter(held)
    require_rows(dataset, test, what=f"held-out centre {value!r} (split.holdout_centre)")
    left = [c for c in ordered if c != value]
    if len(left) < 2:
        raise UnusableData(
            f"split.holdout_centre={name!r}: holding out centre {value!r} of dataset {dataset!r} leaves "
            f"{len(left)} centre ({', '.join(left) or 'none'}) to federate; a federation needs at least 2"
        )
    return rest, test, value
