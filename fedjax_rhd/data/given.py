"""A split given by the data: each patient's role (train or test) read from a column.

A published benchmark fixes which patients are tested (e.g. a federated survival benchmark's
per-patient train/test assignment); drawing a new split would make its numbers incomparable.
``split=given split.column=<column>`` honours the assignment exactly: the rows marked ``test``
are the test set, every other row trains, nodes come from the ``centre`` column as under
``split=natural``, and each node's validation part is still drawn from its training rows with
``seed.split``. Values are ``train`` or ``test`` (case and surrounding blanks ignored); anything
else, a null included, is refused with its count.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from fedjax_rhd.data.checks import UnusableData

ROLES = ("train", "test")


def given_test_rows(df: pl.DataFrame, column: str, dataset: str) -> np.ndarray:
    """bool[n]: the rows whose ``column`` says ``test``, in ``df``'s order.

    Args:
        df: the table, holding ``column``.
        column: the role column (``split.column``).
        dataset: the dataset's name, for messages.

    Raises:
        UnusableData: the column is absent, or holds a value other than ``train``/``test``
            (each offending value named with its count).
    """
    if column not in df.columns:
        raise UnusableData(
            f"split=given: dataset {dataset!r} has no column {column!r} (split.column); its columns: "
            f"{', '.join(df.columns)}"
        )
    role = df[column].cast(pl.String).str.strip_chars().str.to_lowercase()
    bad = df.filter(role.is_null() | ~role.is_in(ROLES))[column].cast(pl.String)
    if bad.len():
        counts = bad.fill_null("<missing>").value_counts(sort=True)
        listed = ", ".join(f"{v!r} ({n})" for v, n in counts.iter_rows())
        raise UnusableData(
            f"split=given: dataset {dataset!r}, column {column!r} holds values other than "
            f"{' or '.join(ROLES)}: {listed} of {df.height} rows"
        )
    return (role == "test").to_numpy()


def with_role_column(
    table: pl.DataFrame, reference: pl.DataFrame | None, column: str, dataset: str
) -> pl.DataFrame:
    """``table`` holding ``column``: its own, else the dataset's reference column, joined by patient.

    A source keeps per-patient values that are not features outside FHIR, in the dataset's
    ``reference.parquet`` (columns ``source_*``, ...): the role column is looked up there as
    ``column`` or ``source_<column>``.

    Raises:
        UnusableData: neither the table nor the reference holds it (both sets of columns named),
            or a patient of the table has no row in the reference.
    """
    if column in table.columns:
        return table
    ref_columns = [] if reference is None else reference.columns
    found = next((c for c in (column, f"source_{column}") if c in ref_columns), None)
    if found is None or reference is None:
        raise UnusableData(
            f"split=given: dataset {dataset!r} has no column {column!r} (split.column): not in its table "
            f"({', '.join(table.columns)}) nor in its reference.parquet "
            f"({', '.join(c for c in ref_columns if c != 'patient_id') or 'none'})"
        )
    joined = table.join(
        reference.select("patient_id", pl.col(found).alias(column)), on="patient_id", how="left"
    )
    absent = ~table["patient_id"].is_in(reference["patient_id"])
    if absent.any():
        raise UnusableData(
            f"split=given: dataset {dataset!r}: {int(absent.sum())} patients have no row in "
            f"reference.parquet (column {found!r}), e.g. {table.filter(absent)['patient_id'][0]!r}"
        )
    return joined
