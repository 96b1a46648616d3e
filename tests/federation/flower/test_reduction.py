"""A Flower node reduces its own feature group: its components equal the data layer's, bit for bit.

The node handlers are called directly on written node folders (no Flower process): a small
stand-in for the ServerApp sends each node the same content ``server_app.FlowerRounds`` sends,
and the driver's own ``federated_reduction`` and ``federated_preprocessing`` run over it. The
Flower engine runs the same path in ``test_simulation.py`` (slow suite).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fedjax_rhd.data import SplitSpec, build_federated_data, small_cells
from fedjax_rhd.data.scenario import ScenarioSpec
from fedjax_rhd.federation.flower import node_handlers, protocol, wire
from fedjax_rhd.federation.flower.backend import (
    federated_preprocessing,
    federated_reduction,
    write_node_folders,
)
from fedjax_rhd.federation.flower.wire import ARRAYS, CONFIG, Part
from fedjax_rhd.simulate.mm import simulate_mm
from harmonize.guide import load_guide

K = 4  # components of the 40 PET features kept


class InProcessNodes:
    """The ServerApp's methods the driver calls before training, answered by each node's handlers here."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders

    def call(self, method: str, *args: object) -> object:
        return getattr(self, method)(*args)

    def _ask_all(self, message_type: str, inputs: dict, reply: str | None, **config: object) -> list:
        content = {"inputs": Part(ARRAYS, inputs), "config": Part(CONFIG, config)}
        answers = [node_handlers.handle(message_type, folder, content) for folder in self.folders]
        return [None if reply is None else a[reply].values for a in answers]

    def reduction_sums(self, group: str, min_cell_count: int = 0) -> list:
        inputs = small_cells.with_min_cell_count({}, min_cell_count)  # as the ServerApp
        return self._ask_all(wire.REDUCE_SUMS, inputs, "outputs", group=group)

    def reduction_scatters(self, group: str, mean: np.ndarray, min_cell_count: int = 0) -> list:
        inputs = small_cells.with_min_cell_count({"mean": mean}, min_cell_count)
        return self._ask_all(wire.REDUCE_SCATTER, inputs, "outputs", group=group)

    def reduce(self, fits: dict) -> None:
        self._ask_all(wire.REDUCE_APPLY, fits, None)

    def preprocessing_statistics(self, ranges: np.ndarray, min_cell_count: int = 0) -> list:
        inputs = small_cells.with_min_cell_count({"ranges": ranges}, min_cell_count)  # as the ServerApp
        return self._ask_all(wire.PREPARE_STATS, inputs, "outputs")

    def prepare(self, preps: list[dict], pad_train: list[int], pad_val: int) -> None:
        for folder, inputs, pad in zip(self.folders, preps, pad_train, strict=True):
            config = {"pad_train": int(pad), "pad_val": int(pad_val)}
            node_handlers.handle(
                wire.PREPARE, folder, {"inputs": Part(ARRAYS, inputs), "config": Part(CONFIG, config)}
            )


@pytest.fixture(scope="module")
def centres():
    """240 simulated MM patients relabelled over three centres (each keeps a test part); the smallest
    centre has no PET at all and every node loses 10% of its other values."""
    guide = load_guide("mm")
    df = simulate_mm(guide, n=240, seed=5)
    df = df.with_columns(centre=pl.Series(np.array(["A", "B", "C"])[np.arange(240) % 7 // 3]))
    scenario = ScenarioSpec(name="worst", missing_groups={"-1": ("pet",)}, extra_missing=0.1)
    return df, guide, scenario


def assert_rows_equal(a: protocol.EncodedRows, b: protocol.EncodedRows) -> None:
    for field in protocol.EncodedRows._fields:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), strict=True)


def test_the_nodes_compute_the_data_layers_components_exactly(centres, tmp_path):
    df, guide, scenario = centres
    split = SplitSpec(name="natural", fractions=(), natural=True, seed=1)
    data = build_federated_data(df, guide, split, scenario=scenario, reduce=[("pet", K)])
    folders = write_node_folders(tmp_path, data)
    width = data.num_features
    for k, folder in enumerate(folders):  # the folder holds the group's raw values, not its components
        with np.load(folder / protocol.RAW_ARRAYS) as raw:
            assert sorted(raw.files) == sorted(
                f"{part}_{key}"
                for part in ("train", "val", "test")
                for key in ("values", "observed", "time", "event", "group.pet")
            )
            assert raw["train_values"].shape[1] == width - K
            for part in ("train", "val", "test"):
                np.testing.assert_array_equal(raw[f"{part}_group.pet"], data.group_values[k][part]["pet"])
                assert raw[f"{part}_group.pet"].shape[1] == 40
    assert np.isnan(data.group_values[2]["train"]["pet"]).all()  # the smallest centre lacks PET
    with pytest.raises(FileNotFoundError, match="query.reduce_apply"):
        protocol.read_encoded(folders[0])

    nodes = InProcessNodes(folders)
    (fitted,) = federated_reduction(nodes, data)
    (theirs,) = data.reductions
    for field in ("mean", "basis", "eigenvalues"):
        np.testing.assert_array_equal(getattr(fitted, field), getattr(theirs, field), strict=True)
    assert (
        fitted.n_rows
        == theirs.n_rows
        == sum(int(np.any(~np.isnan(g["train"]["pet"]), axis=1).sum()) for g in data.group_values)
    )
    for k, folder in enumerate(folders):
        rows = protocol.read_encoded(folder)
        assert_rows_equal(rows["train"], data.encoded[k][0])
        assert_rows_equal(rows["val"], data.encoded[k][1])
        assert_rows_equal(rows["test"], data.encoded_test[k])
    # a row's components are observed where it has any PET value (never at the smallest centre)
    pcs = data.component_columns()["pet"]
    np.testing.assert_array_equal(pcs, np.arange(13, 13 + K))  # where the guide had PET: after 8 + 2 + 3
    for k, folder in enumerate(folders):
        has_pet = np.any(~np.isnan(data.group_values[k]["train"]["pet"]), axis=1)
        observed = protocol.read_encoded(folder)["train"].observed[:, pcs]
        np.testing.assert_array_equal(observed, np.repeat(has_pet[:, None], K, axis=1))
        assert has_pet.any() != (k == 2)

    prep = federated_preprocessing(nodes, data)  # statistics of the node's own components
    for field in ("center", "scale", "fill"):
        np.testing.assert_array_equal(getattr(prep, field), getattr(data.preprocessor, field))
    _, packed = protocol.read_node_folder(folders[1])
    np.testing.assert_array_equal(packed.train.x, data.train.x[1])


def test_a_node_whose_values_differ_stops_the_run(centres, tmp_path):
    df, guide, _ = centres
    data = build_federated_data(df, guide, SplitSpec("three", (0.6, 0.3, 0.1), seed=1), reduce=[("pet", K)])
    folders = write_node_folders(tmp_path, data)
    assert not (folders[0] / protocol.NODE_ARRAYS).exists()
    changed = {part: dict(groups) for part, groups in data.group_values[1].items()}
    changed["train"]["pet"] = changed["train"]["pet"] * 1.001
    layout = protocol.read_layout(folders[1])
    meta = protocol.read_meta(folders[1])
    protocol.write_node_folder(
        folders[1], meta, {"train": data.encoded[1][0], "val": data.encoded[1][1]}, changed, layout
    )
    with pytest.raises(
        RuntimeError, match="reduction of 'pet': the nodes' mean differs from the data layer's"
    ):
        federated_reduction(InProcessNodes(folders), data)


def test_a_pooled_node_agrees_to_rounding(centres, tmp_path):
    """``strategy=centralized``: one node sends the sums the data layer merged from three."""
    df, guide, _ = centres
    split = SplitSpec("three", (0.6, 0.3, 0.1), seed=1)
    data = build_federated_data(df, guide, split, pooled=True, reduce=[("pet", K)])
    folders = write_node_folders(tmp_path, data)
    (fitted,) = federated_reduction(InProcessNodes(folders), data)
    np.testing.assert_allclose(fitted.basis, data.reductions[0].basis, rtol=0, atol=1e-12)
    federated_preprocessing(InProcessNodes(folders), data)
    np.testing.assert_allclose(
        protocol.read_encoded(folders[0])["train"].values, data.encoded[0][0].values, rtol=1e-12, atol=1e-12
    )


def test_min_cell_count_reaches_the_nodes_pca_as_the_data_layer_applies_it(centres, tmp_path):
    """privacy.min_cell_count: each Flower node releases its group values as the data layer did
    (``reduce.released_group``), so the fits agree bit for bit, and a k above a column's count at a
    node keeps that column's values at home."""
    df, guide, scenario = centres
    split = SplitSpec(name="natural", fractions=(), natural=True, seed=1)
    exact = build_federated_data(df, guide, split, scenario=scenario, reduce=[("pet", K)])
    counts = [(~np.isnan(g["train"]["pet"])).sum(axis=0) for g in exact.group_values]
    k = int(min(c.min() for c in counts if c.any())) + 1  # one column of one centre falls below k
    data = build_federated_data(df, guide, split, scenario=scenario, reduce=[("pet", K)], min_cell_count=k)
    (fitted,) = federated_reduction(InProcessNodes(write_node_folders(tmp_path, data)), data)
    (theirs,) = data.reductions
    for field in ("mean", "basis", "eigenvalues"):
        np.testing.assert_array_equal(getattr(fitted, field), getattr(theirs, field), strict=True)
    assert not np.array_equal(fitted.mean, exact.reductions[0].mean)


def test_local_nodes_pack_with_their_own_statistics(centres, tmp_path):
    """``strategy=local``: each node's preprocessing is fitted from its own statistics and sent to it
    alone; its rows pack to the data layer's bits, its test part as the main model (node 1's, which
    never measured PET here) reads rows: node 1's statistics, PET unobserved."""
    df, guide, _ = centres
    largest_lacks_pet = ScenarioSpec(name="worst", missing_groups={"1": ("pet",)})
    split = SplitSpec(name="natural", fractions=(), natural=True, seed=1)
    data = build_federated_data(df, guide, split, scenario=largest_lacks_pet, isolated=True)
    folders = write_node_folders(tmp_path, data)
    nodes = InProcessNodes(folders)
    prep = federated_preprocessing(nodes, data)
    np.testing.assert_array_equal(prep.center, data.preprocessor.center)
    pet = np.array([guide.feature(n.split("=")[0]).group == "pet" for n in guide.encoded_names])
    np.testing.assert_array_equal(data.node_unseen[0], pet)
    for k, folder in enumerate(folders):
        _, packed = protocol.read_node_folder(folder)
        n, v = data.n_train[k], data.n_val[k]  # padded to its size bucket here, to the largest there
        np.testing.assert_array_equal(packed.train.x[:n], data.train.x[k, :n])
        np.testing.assert_array_equal(packed.val.x[:v], data.val.x[k, :v])
        np.testing.assert_array_equal(packed.test.x, data.node_test(k).x)
        assert not packed.test.observed[:, pet].any()
    # the nodes' own fits differ from each other (else this test could not tell them apart)
    assert not np.array_equal(data.node_preprocessors[1].center, data.node_preprocessors[2].center)


def test_local_nodes_own_fits_under_min_cell_count_agree_with_the_data_layer(centres, tmp_path):
    """``strategy=local`` with ``privacy.min_cell_count``: a Flower manager fits node k's own
    preprocessing from node k's coarsened message alone; the data layer coarsens each own fit the same
    way (``federated_preprocessing`` refuses any difference), and the coarsening changes a fit."""
    df, guide, _ = centres
    split = SplitSpec(name="natural", fractions=(), natural=True, seed=1)
    exact = build_federated_data(df, guide, split, isolated=True)
    data = build_federated_data(df, guide, split, isolated=True, min_cell_count=5)
    federated_preprocessing(InProcessNodes(write_node_folders(tmp_path, data)), data)  # raises if unequal
    assert any(
        not np.array_equal(a.fill, b.fill)
        for a, b in zip(exact.node_preprocessors, data.node_preprocessors, strict=True)
    )
