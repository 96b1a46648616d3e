"""The BN's structure rules: consensus DAG on hand-made structures, clinical rules, candidates, SHD."""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_rhd.models import bn_structure as st

A, B, C, D = range(4)


def _dag(*edges: tuple[int, int], n: int = 4) -> np.ndarray:
    out = np.zeros((n, n), np.int8)
    for i, j in edges:
        out[i, j] = 1
    return out


def test_weighted_majority_keeps_and_orients_edges():
    nodes = np.stack([
        _dag((A, B), (C, D), (A, D)),  # 50 patients
        _dag((A, B), (D, C)),  # 30
        _dag((B, C), (D, A)),  # 20
    ])  # fmt: skip
    dag, support = st.consensus_dag(nodes, np.array([50, 30, 20]), max_indegree=3)
    # A->B 0.8 kept; B->C 0.2 dropped; C-D 0.5 + 0.3 = 0.8 joined, oriented C->D (0.5 > 0.3);
    # A-D 0.5 + 0.2 = 0.7 joined, A->D
    assert support[A, B] == pytest.approx(0.8) and support[C, D] == pytest.approx(0.5)
    np.testing.assert_array_equal(dag, _dag((A, B), (C, D), (A, D)))


def test_exactly_half_is_not_a_majority():
    nodes = np.stack([_dag((A, B)), _dag((C, D))])
    dag, _ = st.consensus_dag(nodes, np.array([10, 10]), max_indegree=3)
    assert dag.sum() == 0


def test_a_cycle_loses_its_least_supported_edge():
    nodes = np.stack([_dag((A, B), (B, C)), _dag((B, C), (C, A)), _dag((A, B), (C, A))])
    # supports: A->B 0.65, B->C 0.80, C->A 0.55: all kept, a cycle; C->A goes
    dag, support = st.consensus_dag(nodes, np.array([45, 35, 20]), max_indegree=3)
    assert support[C, A] == pytest.approx(0.55)
    np.testing.assert_array_equal(dag, _dag((A, B), (B, C)))


def test_too_many_parents_keep_the_best_supported():
    nodes = np.stack([_dag((A, D), (B, D), (C, D)), _dag((A, D), (B, D))])
    dag, _ = st.consensus_dag(nodes, np.array([60, 40]), max_indegree=2)
    np.testing.assert_array_equal(dag, _dag((A, D), (B, D)))  # C->D (0.6) has the least support


def test_shd_matches_pgmpy():
    from pgmpy.base import DAG
    from pgmpy.metrics import SHD

    a = _dag((A, B), (B, C), (C, D))
    b = _dag((B, A), (B, C), (A, D))  # reversed A-B, missing C-D, extra A-D
    assert st.shd(a, b) == 3
    names = "abcd"

    def graph(m: np.ndarray) -> DAG:
        g = DAG([(names[i], names[j]) for i, j in zip(*np.nonzero(m), strict=True)])
        g.add_nodes_from(names)
        return g

    assert SHD(edge_reverse_penalty=1).evaluate(graph(a), graph(b)) == 3
    assert st.shd_of_edges(st.edge_list(a, names), st.edge_list(b, names)) == 3


def test_clinical_rules():
    names = ["age", "sex_male", "hb", "TP53", "time", "event"]
    banned = st.forbidden(names, ("age", "sex_male"))
    assert banned[:, 0].all() and banned[:, 1].all()  # nothing into age or sex
    assert banned[4, :4].all() and banned[5, :4].all()  # the outcome has no feature children
    assert not banned[4, 5] and not banned[5, 4]  # time and event: either way
    assert not banned[0, 2] and not banned[3, 4]  # age -> hb, TP53 -> time allowed


def test_mutual_information_and_top_k_candidates():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, 500)
    b = (a + (rng.random(500) < 0.2)) % 3
    c = rng.integers(0, 2, 500)
    codes = np.stack([a, b, c], axis=1)
    pairs = st.pair_counts(codes, np.array([3, 3, 2]))
    mi = st.mutual_information(pairs)
    assert mi[0, 1] == pytest.approx(mutual_info_score(a, b), abs=1e-12)
    assert mi[0, 2] == pytest.approx(mutual_info_score(a, c), abs=1e-12)
    allowed = st.candidate_edges(mi, 1, np.eye(3, dtype=bool))
    # a and b are each other's top partner; c's top partner (a or b) joins c too
    assert allowed[0, 1] and allowed[1, 0] and allowed[2].sum() == 1 and allowed[:, 2].sum() == 1


def test_hill_climbing_sees_its_candidates_in_an_order_free_of_the_hash_seed():
    # pgmpy keeps the first of equally scored operations from a set of variable pairs; names that
    # hash by index order that set as integer pairs, the same in every process (a Flower node, a rerun)
    from itertools import permutations

    labels = [st._Name(f"v{j}", j) for j in range(12)]
    assert labels[3] == "v3" and hash(labels[3]) == 3
    by_name = [(a.index, b.index) for a, b in set(permutations(labels, 2))]
    assert by_name == list(set(permutations(range(12), 2)))


@pytest.mark.slow
def test_the_learned_dag_is_the_same_under_another_hash_seed():
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import numpy as np\n"
        "from fedjax_rhd.models.bn_structure import learn_structure\n"
        "rng = np.random.default_rng(0)\n"
        "c = np.zeros((400, 12), np.int64); c[:, 0] = rng.integers(0, 3, 400)\n"
        "for j in range(1, 12): c[:, j] = (c[:, j - 1] + (rng.random(400) < 0.3)) % 3\n"
        "a = learn_structure(c, np.full(12, 3), [f'x{j}' for j in range(12)], ~np.eye(12, dtype=bool),"
        " max_indegree=3, max_iter=100)\n"
        "print(''.join(map(str, a.ravel())))\n"
    )
    outs = set()
    for seed in ("1", "4"):  # plain string names gave two different DAGs under these seeds
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.add(proc.stdout.strip().splitlines()[-1])
    assert len(outs) == 1
