"""Each node alone: its own preprocessing, and the test set as that node would see it (``local``).

Under ``strategy=local`` node k's model is the "node k alone" cell of the study's
Table 2, so nothing of the other nodes may shape it: not their rows, and not the
preprocessing statistics merged over them either. Here every node fits centre,
scale and imputation value on its own training rows alone (the same moments and
histograms a node sends for federated preprocessing, :func:`fit_federated` on one
node), packs its own rows with them, and scores the benchmark test set encoded
the same way.

A node that never measured a feature layer (the ``worst`` scenario,
``data.scenario``) has those columns unobserved in every training row; its view
of the test set has them unobserved too (``observed = False``, filled with its own
imputation value, which for a column it never observed is its centre: input 0,
:func:`alone`), so the isolated model is scored on what its site could measure,
not on values only other sites hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import polars as pl

from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.data.preprocess import Moments, Preprocessor, encode, fit_federated
from fedjax_rhd.typing import NodeData
from harmonize.guide import Guide


def own_preprocessors(
    guide: Guide, node_train: Sequence[pl.DataFrame], min_cell_count: int = 0
) -> tuple[Preprocessor, ...]:
    """Per node, the preprocessing fitted on its own training rows alone (``patient_id`` order).

    With ``privacy.min_cell_count`` the node's statistics are coarsened as when they cross to the
    manager (a Flower manager fits node k's own preprocessing from node k's message alone).
    """
    return tuple(
        alone(*fit_federated(guide, [encode(part.sort("patient_id"), guide)], min_cell_count))
        for part in node_train
    )


def alone(prep: Preprocessor, moments: Moments) -> Preprocessor:
    """One node's own fit, with every column it never observed imputed at its centre (input 0).

    A column without one observed value has centre 0, scale 1 and, from an empty histogram, the
    middle of the guide's range as its median (a platelet count of 1000, say): a constant far
    from every standardised input, which would skew a network's training for nothing. At the
    centre it reads 0 in every one of the node's rows, as padding does: no information.
    """
    return dataclasses.replace(prep, fill=np.where(moments.count > 0, prep.fill, prep.center))


def missing_columns(guide: Guide, groups: Sequence[str]) -> np.ndarray:
    """bool[d]: the encoded columns of the feature groups a node never measured.

    By group, so a reduced group (its principal components, :mod:`fedjax_rhd.data.reduce`) is
    masked like the raw features it replaced.
    """
    return np.concatenate([np.full(f.width, f.group in groups) for f in guide.features]).astype(bool)


def node_views(
    test_sorted: pl.DataFrame,
    guide: Guide,
    preprocessors: Sequence[Preprocessor],
    missing: Sequence[np.ndarray],
) -> NodeData:
    """The test rows as each node's model sees them: stacked ``NodeData`` [K, n_test, ...].

    Args:
        test_sorted: the test rows in the global test set's order (descending time,
            ``patient_id`` within ties), so view k's row i is the global test set's row i.
        guide: the guide the nodes trained on (after any reduction).
        preprocessors: per node, its own preprocessing (:func:`own_preprocessors`).
        missing: per node, bool[d] columns it never measured (:func:`missing_columns`):
            unobserved in its view, whatever the test row holds.
    """
    values, observed = encode(test_sorted, guide)
    time = test_sorted["time"].to_numpy()
    event = test_sorted["event"].to_numpy().astype(np.float32)
    views = []
    for prep, lacks in zip(preprocessors, missing, strict=True):
        seen = observed & ~lacks[None, :]
        views.append(make_node_data(prep.transform(values, seen), seen, time, event, pad_to=None))
    return NodeData(*(np.stack(leaves) for leaves in zip(*views, strict=True)))
