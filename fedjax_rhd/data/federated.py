"""From an ML-ready table to federated, padded, time-sorted node arrays.

ARCHITECTURE §1.3: a stratified train/test split (test never seen by training,
selection or preprocessing), training rows partitioned over nodes by fractions,
a local validation part per node, federated preprocessing, and ``NodeData`` per
node sorted by descending time with tie-group ends precomputed and padding rows
(weight 0) so nodes stack to one shape for ``vmap``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from fedjax_rhd.data.case_mix import case_mix_partition
from fedjax_rhd.data.checks import UnusableData, check_nodes, require_rows
from fedjax_rhd.data.given import given_test_rows
from fedjax_rhd.data.holdout import split_off_centre
from fedjax_rhd.data.isolated import missing_columns, node_views, own_preprocessors
from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.data.preprocess import Moments, Preprocessor, encode, fit_federated
from fedjax_rhd.data.reduce import GroupReduction, component_names, group_values, reduce_groups
from fedjax_rhd.data.scenario import BEST, ScenarioSpec, apply_scenario
from fedjax_rhd.typing import NodeData
from harmonize.guide import Guide

PAD_MULTIPLE = 64  # round padded sizes up so nearby splits share one compiled shape

# Fixed stream identifiers: each purpose draws from its own stream of seed.split.
_STREAM_TEST, _STREAM_NODES, _STREAM_VAL, _STREAM_SCENARIO = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """How rows are split: ``conf/split/<name>.yaml`` (this class is the group's Hydra schema).

    ``seed`` is ``seed.split`` (``conf/config.yaml`` sets ``split.seed: ${seed.split}``, so users
    set it in one place). OmegaConf hands lists, which become tuples here.
    """

    name: str = "three"
    fractions: tuple[float, ...] = (0.6, 0.3, 0.1)  # training share per node, largest first
    test_fraction: float = 0.1
    val_fraction: float = 0.2  # per node, for early stopping and node metrics (0: all rows train)
    seed: int = 0
    natural: bool = False  # one node per value of the table's ``centre`` column; fractions unused
    # split=given: the column holding each patient's role (train/test; fedjax_rhd/data/given.py).
    # Needs natural (nodes from ``centre``) and test_fraction 0: the column, not a draw, picks the test rows.
    column: str | None = None
    # Leave one centre out (fedjax_rhd/data/holdout.py): every row of this centre (a value of the
    # ``centre`` column, or its node name ``centre<value>``) is the test set; the others federate.
    # Needs natural; no test draw (test_fraction unused), like test.dataset.
    holdout_centre: str | None = None
    # Optional case-mix shift, node rank ("1" largest, "-1" smallest) -> strength: see
    # fedjax_rhd/data/case_mix.py. Off by default. Pairs ((rank, strength), ...) are accepted too.
    case_mix: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        pairs = self.case_mix.items() if isinstance(self.case_mix, dict) else self.case_mix
        object.__setattr__(self, "case_mix", {str(int(rank)): float(v) for rank, v in pairs})
        if self.natural:
            if self.fractions:
                raise ValueError(f"split {self.name!r}: a natural split takes no fractions")
        elif not self.fractions or any(f <= 0 for f in self.fractions):
            raise ValueError(f"split {self.name!r}: fractions must be positive, got {self.fractions}")
        if not self.natural and abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ValueError(f"split {self.name!r}: fractions sum to {sum(self.fractions)}, not 1")
        if self.column is not None and (not self.natural or self.test_fraction != 0):
            raise ValueError(
                f"split {self.name!r}: split.column={self.column!r} reads each row's role from the data; "
                "it needs natural: true (nodes from the centre column) and test_fraction: 0 "
                "(use split=given)"
            )
        if self.holdout_centre is not None:
            object.__setattr__(self, "holdout_centre", str(self.holdout_centre))
            if not self.natural or self.column is not None:
                raise ValueError(
                    f"split {self.name!r}: split.holdout_centre={self.holdout_centre!r} holds out a real "
                    "centre: it needs split=natural (nodes from the centre column) and no split.column"
                )
        # test_fraction 0: no test part of the run's own rows (only with test.dataset or split.column)
        if not 0 <= self.test_fraction < 1 or not 0 <= self.val_fraction < 1:
            raise ValueError(
                f"split {self.name!r}: test_fraction and val_fraction must be in [0, 1) "
                "(val_fraction 0: every node row trains; needs strategy.selection=last)"
            )

    @property
    def shifts(self) -> tuple[tuple[int, float], ...]:
        """``case_mix`` as ``((node rank, strength), ...)`` in the order given."""
        return tuple((int(rank), v) for rank, v in self.case_mix.items())


@dataclasses.dataclass(frozen=True)
class FederatedData:
    """Everything a backend needs; test rows are kept apart from training.

    ``train`` and ``val`` are stacked over nodes (leading axis K, padded);
    ``test`` is one unpadded ``NodeData``. Per-row side information for the
    test set (patient ids, oracle risk, ``test_node``) is in the same time-sorted order.

    ``test_node`` says where each test row lives. For real centres (``split.natural``,
    not pooled) it is the index of the node of the row's centre, -1 for a row whose
    centre has no training node: each node keeps its own test part (:meth:`node_test`)
    and evaluation is federated. Otherwise (simulated cohorts, ``centralized``) it is
    None: the whole test set is the benchmark holdout the manager keeps.
    """

    guide: Guide
    node_names: tuple[str, ...]
    train: NodeData
    val: NodeData
    test: NodeData
    n_train: tuple[int, ...]
    n_val: tuple[int, ...]
    test_patient_ids: tuple[str, ...]
    test_oracle_risk: np.ndarray | None
    preprocessor: Preprocessor
    moments: Moments
    scenario: tuple[dict, ...] = ()  # per node: what the scenario removed
    # per node: its (train, val) rows encoded, before preprocessing: what a Flower node holds
    encoded: tuple[tuple[EncodedRows, EncodedRows], ...] = ()
    test_node: np.ndarray | None = None  # i64[n_test] node index of each test row's centre, -1: none
    # per node: its own test part encoded (real centres only; () when the manager keeps the test set)
    encoded_test: tuple[EncodedRows, ...] = ()
    holdout_centre: str | None = None  # split.holdout_centre resolved: the held-out centre's value
    reductions: tuple[GroupReduction, ...] = ()  # use_case.reduce as fitted (components 0: dropped)
    # per node: part ("train", "val", "test" where it keeps one) -> reduced group -> f64[n, d_g] the
    # group's values before reduction (NaN = missing), patient_id order: a Flower node reduces them itself
    group_values: tuple[dict[str, dict[str, np.ndarray]], ...] = ()
    # privacy.min_cell_count: every node coarsens its statistics' cells below it (data/small_cells.py);
    # the preprocessing above was fitted so, and the backends pass it with every node statistic
    min_cell_count: int = 0
    # ``strategy=local`` (fedjax_rhd/data/isolated.py): per node, the preprocessing fitted on its own
    # training rows (its train and val rows are packed with it; () = the federation's for every node),
    # the encoded columns it never measured (bool[d]), and the test set as each node's model sees it
    # (stacked [K, n_test, ...], the global test set's row order)
    node_preprocessors: tuple[Preprocessor, ...] = ()
    node_unseen: tuple[np.ndarray, ...] = ()
    test_views: NodeData | None = None

    @property
    def num_nodes(self) -> int:
        return len(self.node_names)

    @property
    def isolated(self) -> bool:
        """True when every node has its own preprocessing (``strategy=local``)."""
        return bool(self.node_preprocessors)

    def test_view(self, k: int) -> NodeData:
        """The benchmark test set as node k's model sees it (``test`` itself unless :attr:`isolated`)."""
        if self.test_views is None:
            return self.test
        # the rows' outcomes and layout are the test set's own; only what the model reads differs
        return self.test._replace(x=self.test_views.x[k], observed=self.test_views.observed[k])

    def node_test(self, k: int) -> NodeData | None:
        """Node k's own test part (its centre's test rows), or None when the manager keeps the test set.

        Packed as a Flower node packs it (``pack_rows`` with the federation's preprocessing):
        sorted by descending time, ``patient_id`` order within ties, i.e. the global test
        set's order restricted to the node's rows; NOT padded (like the global test set,
        and as ``query.prepare`` packs a node's test part). A node without test rows gets
        zero rows. Federated evaluation scores the main model there; under :attr:`isolated`
        that is node 1's own, so the part is packed as node 1's model sees rows
        (:meth:`main_test_packing`).
        """
        if self.test_node is None:
            return None
        prep, unseen = self.main_test_packing()
        return pack_rows(masked(self.encoded_test[k], unseen), prep, None)

    def main_test_packing(self) -> tuple[Preprocessor, np.ndarray | None]:
        """How a node packs its own test part: the main model's preprocessing and unseen columns.

        The federation's preprocessing and nothing masked, or under :attr:`isolated` node 1's own
        (the main model is node 1's; ``results._main_model``).
        """
        if not self.isolated:
            return self.preprocessor, None
        return self.node_preprocessors[0], self.node_unseen[0]

    def component_columns(self) -> dict[str, np.ndarray]:
        """Each kept reduction's encoded column indices (i64[k], component order) in ``guide``'s rows."""
        starts = np.cumsum([0, *(f.width for f in self.guide.features)])
        at = {f.name: int(starts[j]) for j, f in enumerate(self.guide.features)}
        return {
            r.group: np.array([at[name] for name in component_names(r.group, r.components)], dtype=np.int64)
            for r in self.reductions
            if r.components
        }

    @property
    def n_val_events(self) -> tuple[int, ...]:
        """Events in each node's validation part (what an events-weighted selection weighs by)."""
        events = np.asarray(self.val.event) * np.asarray(self.val.weight)
        return tuple(int(round(e)) for e in events.sum(axis=1))

    @property
    def num_features(self) -> int:
        return int(self.train.x.shape[-1])

    def shares(self) -> tuple[float, ...]:
        total = sum(self.n_train) + sum(self.n_val)
        return tuple((t + v) / total for t, v in zip(self.n_train, self.n_val, strict=True))


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _allocate(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Integer counts summing to n, by largest remainder."""
    raw = np.asarray(fractions) * n
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def stratified_partition(
    event: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Assign each row a part index, preserving the event rate in every part.

    Rows must already be in a deterministic order (sorted by ``patient_id``);
    each event class is shuffled with ``rng`` and cut by ``fractions``.
    """
    part = np.empty(len(event), dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(event == cls)
        idx = idx[rng.permutation(len(idx))]
        counts = _allocate(len(idx), fractions)
        part[idx] = np.repeat(np.arange(len(fractions)), counts)
    return part


def _sort_for_cox(df: pl.DataFrame) -> pl.DataFrame:
    # patient_id first makes the order deterministic; the stable time sort keeps
    # it inside tie groups, so make_node_data's own stable sort is the identity.
    return df.sort("patient_id").sort("time", descending=True, maintain_order=True)


def _padded(n: int) -> int:
    return max(PAD_MULTIPLE, -(-n // PAD_MULTIPLE) * PAD_MULTIPLE)


class EncodedRows(NamedTuple):
    """One part's rows encoded but not yet standardised or imputed, in ``patient_id`` order.

    What a node holds before federated preprocessing: the manager fits the
    ``Preprocessor`` from each node's statistics of these rows (computed in this
    order, as the data layer computes them), then every node packs its own
    (``pack_rows``), so the packed arrays equal the data layer's.
    """

    values: np.ndarray  # f64[n, d] encoded features (0 where unobserved)
    observed: np.ndarray  # bool[n, d]
    time: np.ndarray  # [n] follow-up
    event: np.ndarray  # f32[n]


def encode_rows(df: pl.DataFrame, guide: Guide) -> EncodedRows:
    """``df``'s rows encoded, in ``patient_id`` order."""
    df = df.sort("patient_id")
    values, observed = encode(df, guide)
    return EncodedRows(values, observed, df["time"].to_numpy(), df["event"].to_numpy().astype(np.float32))


def masked(rows: EncodedRows, unseen: np.ndarray | None) -> EncodedRows:
    """``rows`` with the columns ``unseen`` (bool[d]; None: none) unobserved: a node's missing layers."""
    if unseen is None or not unseen.any():
        return rows
    return rows._replace(observed=rows.observed & ~np.asarray(unseen, dtype=bool)[None, :])


def pack_rows(rows: EncodedRows, prep: Preprocessor, pad_to: int | None) -> NodeData:
    """Standardise, impute and pack one part's rows: descending time, ``patient_id`` order within ties.

    The stable sort of patient-ordered rows by descending time is ``_sort_for_cox``'s order.
    """
    order = np.argsort(-np.asarray(rows.time), kind="stable")
    observed = rows.observed[order]
    x = prep.transform(rows.values[order], observed)
    return make_node_data(x, observed, rows.time[order], rows.event[order], pad_to=pad_to)


def _node_arrays(
    df: pl.DataFrame, guide: Guide, prep: Preprocessor, pad_to: int | None
) -> tuple[NodeData, pl.DataFrame]:
    df = _sort_for_cox(df)
    values, observed = encode(df, guide)
    x = prep.transform(values, observed)
    node = make_node_data(
        x, observed, df["time"].to_numpy(), df["event"].to_numpy().astype(np.float32), pad_to=pad_to
    )
    return node, df


def padded_size(n: int) -> int:
    """Rows a part is padded to: a multiple of ``PAD_MULTIPLE`` (nearby splits share one compiled shape)."""
    return _padded(n)


def _stack(nodes: Sequence[NodeData]) -> NodeData:
    return NodeData(*(np.stack(leaves) for leaves in zip(*nodes, strict=True)))


def natural_partition(train_df: pl.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    """Node index per training row from its real ``centre``; nodes largest first.

    Node names are ``centre<value>``; ties in size are broken by the centre's name.

    Raises:
        UnusableData: the table has no ``centre`` column, or a row has no centre.
    """
    if "centre" not in train_df.columns:
        raise UnusableData("split=natural needs a 'centre' column in the table")
    centre = train_df["centre"].cast(pl.String)
    if centre.null_count():
        row = int(centre.is_null().arg_true()[0])
        raise UnusableData(
            f"split=natural: patient {train_df['patient_id'][row]!r} has no centre "
            f"({centre.null_count()} rows without one)"
        )
    counts = centre.value_counts()
    ordered = sorted(counts.iter_rows(), key=lambda r: (-r[1], r[0]))
    index = {c: k for k, (c, _) in enumerate(ordered)}
    return np.array([index[c] for c in centre.to_list()], dtype=np.int64), tuple(
        f"centre{c}" for c, _ in ordered
    )


def build_federated_data(
    df: pl.DataFrame,
    guide: Guide,
    split: SplitSpec,
    *,
    pooled: bool = False,
    scenario: ScenarioSpec = BEST,
    reduce: Sequence[tuple[str, int]] = (),
    dataset: str = "table",
    test_table: pl.DataFrame | None = None,
    min_cell_count: int = 0,
    isolated: bool = False,
) -> FederatedData:
    """Split a table into test, nodes and node validation parts; fit preprocessing.

    Args:
        df: ML-ready table (``patient_id``, guide features, ``time``, ``event``).
        guide: the use case's guide.
        split: fractions, test/validation fractions and ``seed.split``.
        pooled: put every node's training (and validation) rows into one node:
            the ``centralized`` strategy trains on exactly the federation's rows.
        scenario: layers each node lacks and extra missingness, applied to the
            node's rows (never to the test set) before any statistic.
        reduce: ``(group, k)``: replace a continuous feature group (a WSI embedding,
            PET radiomics) by ``k`` principal components fitted federatedly on the
            nodes' training parts (:mod:`fedjax_rhd.data.reduce`); ``k = 0`` drops it.
            ``FederatedData.guide`` is then the reduced guide.
        dataset: the table's name, for messages.
        test_table: another dataset's rows in the same schema (``test.dataset``): the test set,
            kept by the manager; every row of ``df`` then goes to the nodes (no test draw).
            ``split.holdout_centre`` takes this path with the held-out centre's rows
            (:mod:`fedjax_rhd.data.holdout`).
        min_cell_count: ``privacy.min_cell_count``: each node's preprocessing statistics with
            cells below it coarsened (``preprocess.node_statistics``); 0: exact.
        isolated: ``strategy=local``: every node also fits its own preprocessing on its own
            training rows and packs its rows with it; the test set is encoded once per node, with
            the feature layers the node lacks unobserved (:mod:`fedjax_rhd.data.isolated`). The
            federation's preprocessing is still fitted (recorded; the pooled case ignores the flag).

    Returns:
        FederatedData with stacked, padded node arrays.

    Raises:
        UnusableData: no rows or no events in the table or its test part, a node left without
            training rows or events, a bad ``split.column`` (:mod:`fedjax_rhd.data.checks`), or a
            ``split.holdout_centre`` that is unknown, has no event or leaves fewer than two centres.
    """
    for col in ("patient_id", "time", "event"):
        if col not in df.columns:
            raise KeyError(f"table lacks required column {col!r}")
    require_rows(dataset, df)
    held_out = None
    if split.holdout_centre is not None:  # leave one centre out: its rows are the test table
        if test_table is not None:
            raise ValueError("split.holdout_centre and test_table both name the test rows; pass one")
        df, test_table, held_out = split_off_centre(df, split.holdout_centre, dataset)
    df = df.sort("patient_id")
    event = df["event"].to_numpy().astype(np.int64)
    if test_table is not None:
        is_test = np.zeros(len(df), dtype=bool)
    elif split.column is not None:
        is_test = given_test_rows(df, split.column, dataset)
    else:
        is_test = (
            stratified_partition(
                event, (1 - split.test_fraction, split.test_fraction), _rng(split.seed, _STREAM_TEST)
            )
            == 1
        )
    test_df = df.filter(pl.Series(is_test)) if test_table is None else test_table.sort("patient_id")
    train_df = df.filter(pl.Series(~is_test))
    if test_table is None:  # another dataset's test rows are checked where it is loaded, by name
        require_rows(dataset, test_df, what="test part")
    require_rows(dataset, train_df, what="training part (every node's rows)")

    if split.natural:
        node_of, names = natural_partition(train_df)
    elif split.case_mix:
        if "oracle_risk" not in train_df.columns:
            raise ValueError(
                f"split {split.name!r}: case_mix shifts nodes by the true risk, which only simulated "
                "cohorts carry (no oracle_risk column)"
            )
        node_of = case_mix_partition(
            train_df["event"].to_numpy().astype(np.int64),
            train_df["oracle_risk"].to_numpy().astype(np.float64),
            split.fractions,
            split.shifts,
            _rng(split.seed, _STREAM_NODES),
            _allocate,
            stratified_partition,
        )
        names = tuple(f"node{k + 1}" for k in range(len(split.fractions)))
    else:
        node_of = stratified_partition(
            train_df["event"].to_numpy().astype(np.int64), split.fractions, _rng(split.seed, _STREAM_NODES)
        )
        names = tuple(f"node{k + 1}" for k in range(len(split.fractions)))
    node_parts = [train_df.filter(pl.Series(node_of == k)) for k in range(len(names))]
    node_parts, scenario_report = apply_scenario(
        node_parts, guide, scenario, _rng(split.seed, _STREAM_SCENARIO)
    )
    val_rng = _rng(split.seed, _STREAM_VAL)
    node_train: list[pl.DataFrame] = []
    node_val: list[pl.DataFrame] = []
    for part in node_parts:
        in_val = (
            stratified_partition(
                part["event"].to_numpy().astype(np.int64),
                (1 - split.val_fraction, split.val_fraction),
                val_rng,
            )
            == 1
        )
        node_train.append(part.filter(pl.Series(~in_val)))
        node_val.append(part.filter(pl.Series(in_val)))
    check_nodes(dataset, split.name, names, node_train, node_val)

    # each part's rows before the reduction: a Flower node holds these and reduces them itself
    raw_train, raw_val, raw_test = node_train, node_val, test_df
    fitted: list[GroupReduction] = []
    if reduce:
        node_train, rest, guide, fitted = reduce_groups(
            node_train, [*node_val, test_df], guide, reduce, min_cell_count
        )
        node_val, test_df = rest[:-1], rest[-1]

    # Each node computes its statistics on its own training part (patient order); only the
    # statistics reach the merge (fit_from_statistics). Under ``pooled`` too: the centralized
    # strategy gets the federation's preprocessing.
    prep, moments = fit_federated(
        guide, [encode(part.sort("patient_id"), guide) for part in node_train], min_cell_count
    )
    # strategy=local: each node alone, its own statistics too (fedjax_rhd/data/isolated.py)
    own = own_preprocessors(guide, node_train, min_cell_count) if isolated and not pooled else ()
    if pooled:
        node_train, node_val, names = [pl.concat(node_train)], [pl.concat(node_val)], ("pooled",)
        raw_train, raw_val = [pl.concat(raw_train)], [pl.concat(raw_val)]
    # what each node holds: its rows encoded, not yet standardised (a Flower node's folder)
    encoded = tuple(
        (encode_rows(t, guide), encode_rows(v, guide)) for t, v in zip(node_train, node_val, strict=True)
    )
    train_pad = _padded(max(len(p) for p in node_train))
    val_pad = _padded(max(len(p) for p in node_val))
    packing = own or (prep,) * len(encoded)
    train = _stack([pack_rows(t, p, train_pad) for (t, _), p in zip(encoded, packing, strict=True)])
    val = _stack([pack_rows(v, p, val_pad) for (_, v), p in zip(encoded, packing, strict=True)])
    test, test_sorted = _node_arrays(test_df, guide, prep, None)
    unseen = tuple(missing_columns(guide, r["missing_groups"]) for r in scenario_report) if own else ()
    views = node_views(test_sorted, guide, own, unseen) if own else None
    oracle = test_sorted["oracle_risk"].to_numpy() if "oracle_risk" in test_sorted.columns else None
    # another dataset's test rows live at no node: the manager keeps them (a benchmark holdout)
    kept = pooled or not split.natural or test_table is not None
    test_node = None if kept else _test_nodes(test_sorted, names)
    raw_parts = [{"train": t, "val": v} for t, v in zip(raw_train, raw_val, strict=True)]
    if test_node is not None:  # a real centre's own test part (the row's centre, as _test_nodes maps it)
        raw_test_node = _test_nodes(raw_test, names)
        for k, parts in enumerate(raw_parts):
            parts["test"] = raw_test.filter(pl.Series(raw_test_node == k))
    return FederatedData(
        guide=guide,
        node_names=names,
        train=train,
        val=val,
        test=test,
        n_train=tuple(len(p) for p in node_train),
        n_val=tuple(len(p) for p in node_val),
        test_patient_ids=tuple(test_sorted["patient_id"].to_list()),
        test_oracle_risk=oracle,
        preprocessor=prep,
        moments=moments,
        scenario=tuple(scenario_report),
        encoded=encoded,
        test_node=test_node,
        holdout_centre=held_out,
        encoded_test=_test_parts(test_sorted, test_node, guide, len(names)),
        reductions=tuple(fitted),
        group_values=_group_values(raw_parts, fitted),
        min_cell_count=int(min_cell_count),
        node_preprocessors=own,
        node_unseen=unseen,
        test_views=views,
    )


def _group_values(
    parts: Sequence[dict[str, pl.DataFrame]], reductions: Sequence[GroupReduction]
) -> tuple[dict[str, dict[str, np.ndarray]], ...]:
    """Per node and part, each kept reduction's raw group values in ``encode_rows``' (patient_id) order."""
    kept = [r for r in reductions if r.components]
    if not kept:
        return ()
    return tuple(
        {
            part: {r.group: group_values(df.sort("patient_id"), r.columns) for r in kept}
            for part, df in node.items()
        }
        for node in parts
    )


def _test_parts(
    test_df: pl.DataFrame, test_node: np.ndarray | None, guide: Guide, num_nodes: int
) -> tuple[EncodedRows, ...]:
    """Each node's own test rows, encoded (what a real centre keeps); () when no node keeps any."""
    if test_node is None:
        return ()
    return tuple(encode_rows(test_df.filter(pl.Series(test_node == k)), guide) for k in range(num_nodes))


def _test_nodes(test_df: pl.DataFrame, names: Sequence[str]) -> np.ndarray:
    """i64[n] each test row's node index by its centre (``natural_partition``'s names); -1 if none."""
    index = {name: k for k, name in enumerate(names)}
    centres = test_df["centre"].cast(pl.String).to_list()
    return np.array([-1 if c is None else index.get(f"centre{c}", -1) for c in centres], dtype=np.int64)
