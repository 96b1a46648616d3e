"""The report over a real multirun: complete table, numbers traced to results.json, figures, HTML."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from fedjax_rhd.report import write_report
from tests.conftest import TINY, run_in_process

pytestmark = pytest.mark.e2e

HEADER_RGB = (0x1F, 0x4E, 0x79)  # table.survival th background in render._CSS


@pytest.fixture(scope="module")
def multirun(tiny_multirun) -> Path:
    """The foundation's 12 tiny runs (``tests/conftest.py``; the score tests read them too)."""
    return tiny_multirun


@pytest.fixture(scope="module")
def report(multirun, tmp_path_factory):
    return write_report([multirun], tmp_path_factory.mktemp("report"), n_boot=200)


def _results(multirun: Path) -> dict[tuple[str, str, int], dict]:
    out = {}
    for path in multirun.rglob("results.json"):
        res = json.loads(path.read_text())
        out[
            (
                res["config"]["split"]["name"],
                res["config"]["strategy"]["name"],
                res["config"]["seed"]["split"],
            )
        ] = res
    return out


def _expected(results: dict, split: str) -> dict[str, float]:
    """Each column's mean over seeds, read straight from the results.json files."""
    cols: dict[str, list[float]] = defaultdict(list)
    for seed in (0, 1):
        fed, cen, loc = (results[(split, s, seed)]["final"] for s in ("fedavg", "centralized", "local"))
        cols["full"].append(cen["c_index_test"]["estimate"])
        cols["global"].append(fed["global_model"]["c_index_test"]["estimate"])
        for node in fed["nodes"]:
            cols[f"node:{node['name']}"].append(node["c_index_test"]["estimate"])
        cols["isolated_biggest"].append(
            loc["nodes"][0]["c_index_test"]["estimate"]
        )  # node1: the largest share
        cols["isolated_smallest"].append(loc["nodes"][-1]["c_index_test"]["estimate"])
        cols["oracle"].append(fed["oracle_c_index_test"]["estimate"])
        if fed.get("clinical_score"):
            cols["clinical"].append(fed["clinical_score"]["c_index_test"]["estimate"])
        cols["gain:smallest"].append(
            fed["nodes"][-1]["c_index_test"]["estimate"] - cols["isolated_smallest"][-1]
        )
        cols["fl_minus_centralised"].append(cols["global"][-1] - cols["full"][-1])
    return {k: float(np.mean(v)) for k, v in cols.items()}


def test_complete_table_matches_the_results_json_files(multirun, report):
    results = _results(multirun)
    rows = list(csv.DictReader(report.files["csv"].open()))
    assert {r["split"] for r in rows} == {"three", "five"}
    for split in ("three", "five"):
        mine = {r["column"]: r for r in rows if r["split"] == split}
        expected = _expected(results, split)
        n_nodes = 3 if split == "three" else 5
        assert len(mine) == 2 + n_nodes + 2 + 2  # full, global, nodes, isolated x2, clinical, oracle
        for column, row in mine.items():
            if column == "clinical" and "clinical" not in expected:  # no score yet: the cell says so
                assert row["estimate"] == "" and "final.clinical_score is null" in row["reason"]
                continue
            assert row["estimate"] != "", f"split {split}: empty cell {column}: {row['reason']}"
            assert float(row["estimate"]) == pytest.approx(expected[column], abs=1e-12), column
            assert float(row["ci_low"]) <= float(row["estimate"]) <= float(row["ci_high"])
            assert row["n_seeds"] == "2" and row["seeds"] == "0 1"
        smallest = f"node{n_nodes}"
        assert mine["isolated_smallest"]["node"] == smallest
        share = np.mean([results[(split, "local", s)]["final"]["nodes"][-1]["share"] for s in (0, 1)])
        assert float(mine["isolated_smallest"]["share"]) == pytest.approx(share)
        comps = {
            r["comparison"]: r
            for r in csv.DictReader(report.files["comparisons"].open())
            if r["split"] == split
        }
        fl = float(comps["fl_minus_centralised"]["difference"])
        assert fl == pytest.approx(expected["fl_minus_centralised"], abs=1e-12)
        gain = float(comps[f"gain:{smallest}"]["difference"])
        assert gain == pytest.approx(expected["gain:smallest"], abs=1e-12)


def test_reference_strategies_hold_their_nodes(multirun):
    """``centralized`` trains one pooled node; ``local`` keeps every node's own model, no global one."""
    for (split, strategy, _), res in _results(multirun).items():
        names = [n["name"] for n in res["final"]["nodes"]]
        if strategy == "centralized":
            assert names == ["pooled"] and res["final"]["global_model"] is None
        else:
            assert names == [f"node{i + 1}" for i in range({"three": 3, "five": 5}[split])]
            assert (res["final"]["global_model"] is None) == (strategy == "local")


def test_markdown_shows_the_same_numbers(multirun, report):
    md = report.files["markdown"].read_text()
    expected = _expected(_results(multirun), "three")
    assert f"| mds | best | FedAvg | {expected['full']:.3f} [" in md
    assert md.count("- mds (best scenario, split") == 2  # one sentence per use case row
    assert "![per-round curves](figures/curves_mds_best_three_deepsurv_fedavg.png)" in md


def test_one_figure_per_row(report):
    import matplotlib.image as mpimg

    figures = sorted(p.name for k, p in report.files.items() if k.startswith("figure:"))
    assert figures == [
        "curves_mds_best_five_deepsurv_fedavg.png",
        "curves_mds_best_three_deepsurv_fedavg.png",
    ]
    image = mpimg.imread(report.files[f"figure:{figures[0]}"])
    assert image.shape[0] > 300 and image.shape[1] > 500
    assert image[..., :3].std() > 0.05  # not a blank canvas


class _Tables(HTMLParser):
    """Collects every table's header and body cells, and every external reference."""

    def __init__(self):
        super().__init__()
        self.tables: list[dict] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None
        self._in = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])
        if tag == "table":
            self.tables.append({"th": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td"):
            self._cell, self._in = [], tag

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            text = "".join(self._cell)
            (self.tables[-1]["th"] if tag == "th" else self.tables[-1]["rows"][-1]).append(text)
            self._cell = None


def test_html_is_self_contained_and_holds_the_table(report):
    parser = _Tables()
    parser.feed(report.files["html"].read_text())
    parser.close()
    assert parser.external == []  # CSS inline, figures as data URIs
    assert len(parser.tables) == 2
    md = report.files["markdown"].read_text()
    for table in parser.tables:
        assert table["th"][:4] == ["use case", "scenario", "federated strategy", "Full dataset (centralised)"]
        (cells,) = [r for r in table["rows"] if r]
        assert len(cells) == len(table["th"])
        assert f"| {' | '.join(cells)} |" in md  # the same cells as the Markdown table


def _header_pixels(png: Path) -> int:
    import matplotlib.image as mpimg

    img = (mpimg.imread(png)[..., :3] * 255).round().astype(int)
    return int((np.abs(img - np.array(HEADER_RGB)).max(axis=-1) <= 2).sum())


def _screenshot(chromium: str, page: Path, png: Path) -> None:
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1400,900", f"--screenshot={png}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip


def test_html_renders_with_the_table_visible(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the HTML parse test still ran")
    _screenshot(chromium, report.files["html"], tmp_path / "page.png")
    # Control: the same page without its tables must not show the header colour.
    page = report.files["html"].read_text()
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<table.*?</table>", "", page, flags=re.S))
    _screenshot(chromium, bare, tmp_path / "bare.png")
    assert _header_pixels(tmp_path / "page.png") > 2000  # the header row, ~1400 x 40 px
    assert _header_pixels(tmp_path / "bare.png") < 50


def test_cli_writes_the_report_and_fails_clearly(multirun, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "fedjax_rhd.report"]
    ok = subprocess.run([*cmd, str(multirun), "--out", str(tmp_path / "r"), "--n-boot", "50"],
                        capture_output=True, text=True, env=env)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "12 runs, 2 table rows" in ok.stdout and (tmp_path / "r" / "report.html").is_file()
    bad = subprocess.run([*cmd, str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert bad.returncode == 1 and "nowhere: no such run directory" in bad.stderr


def test_finetuned_columns_come_from_final_personalized(multirun, tmp_path, tiny_data_root):
    """Issue 9's personalised models appear as their own cells, equal to results.json. The reference
    runs (centralized and local, split three, the same seeds) are the multirun's own, copied."""
    for seed in (0, 1):
        tuned = [*TINY, "strategy=fedavg", "strategy.finetune_epochs=2", f"seed.split={seed}"]
        run_in_process(tuned, tmp_path / "fl" / f"s{seed}", tiny_data_root)
        for strategy in ("centralized", "local"):
            (reference,) = multirun.glob(f"*_{strategy}_three_s{seed}")
            shutil.copytree(reference, tmp_path / "ref" / f"{strategy}_s{seed}")
    rep = write_report([tmp_path / "fl", tmp_path / "ref"], tmp_path / "report", n_boot=50)
    rows = {r["column"]: r for r in csv.DictReader(rep.files["csv"].open())}
    fed = [json.loads(p.read_text())["final"] for p in sorted((tmp_path / "fl").rglob("results.json"))]
    for i, name in enumerate(("node1", "node2", "node3")):
        expected = np.mean([f["personalized"]["nodes"][i]["c_index_test"]["estimate"] for f in fed])
        assert float(rows[f"finetuned:{name}"]["estimate"]) == pytest.approx(expected, abs=1e-12)
