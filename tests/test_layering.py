"""Layering: ``harmonize`` (sources -> FHIR -> tables, dataset identity) sits below ``fedjax_rhd``.

harmonize imports nothing of fedjax_rhd, not even inside a function; fedjax_rhd
registers its sources with harmonize on import, and the ``harmonize`` command finds
them through the ``harmonize.sources`` entry point. No module-level import cycle
runs through either package.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("harmonize", "fedjax_rhd")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of both packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Modules an import statement names (absolute; ``from X import Y`` -> ``X.Y`` or ``X``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        return [base, *(f"{base}.{a.name}" for a in node.names)]
    return []


def test_harmonize_source_never_imports_fedjax_rhd():
    offenders = []
    for name, path in _modules().items():
        if not name.startswith("harmonize"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):  # every statement, inside functions too
            names = _imported(node, name, path.name == "__init__.py")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module",
                "__import__",
            ):
                names += [a.value for a in node.args[:1] if isinstance(a, ast.Constant)]
            bad = [n for n in names if isinstance(n, str) and n.split(".")[0] == "fedjax_rhd"]
            if bad:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {bad[0]}")
    assert not offenders, "harmonize imports fedjax_rhd:\n" + "\n".join(offenders)


def test_importing_every_harmonize_module_loads_no_fedjax_rhd():
    # Every module but __main__ (importing it runs the command).
    names = sorted(n for n in _modules() if n.startswith("harmonize") and not n.endswith("__main__"))
    code = (
        f"import importlib, sys\n"
        f"for name in {names!r}:\n"
        f"    importlib.import_module(name)\n"
        f"from harmonize.cli import build_parser\n"
        f"build_parser()\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'fedjax_rhd')\n"
        f"assert not loaded, loaded\n"
        f"print(len({names!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip()) == len(names) >= 13  # identity, registry, cli, fhir, ...


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (``if TYPE_CHECKING`` aside)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()

        def visit(body: list[ast.stmt], name: str = name, path: Path = path, edges: set[str] = edges) -> None:
            for stmt in body:
                if isinstance(stmt, ast.Import | ast.ImportFrom):
                    found = [n for n in _imported(stmt, name, path.name == "__init__.py") if n in modules]
                    if isinstance(stmt, ast.ImportFrom) and len(found) > 1:
                        found = found[1:]  # `from pkg import sub`: the submodule is the import
                    edges.update(n for n in found if n != name)
                elif isinstance(stmt, ast.If):
                    if "TYPE_CHECKING" not in ast.unparse(stmt.test):
                        visit(stmt.body)
                        visit(stmt.orelse)
                elif isinstance(stmt, ast.Try):
                    visit(stmt.body)
                    for handler in stmt.handlers:
                        visit(handler.body)
                    visit(stmt.orelse)
                    visit(stmt.finalbody)

        visit(tree.body)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


def test_no_module_level_import_cycle():
    graph = _import_graph()
    assert "fedjax_rhd.sources.simulated" in graph["fedjax_rhd.sources"]  # the graph sees registrations
    assert "harmonize.registry" in graph["fedjax_rhd.sources.simulated"]
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check finds one


def test_the_harmonize_command_finds_fedjax_rhd_sources_through_its_entry_point(tmp_path):
    """A fresh install declares the entry point; a stand-in distribution proves harmonize loads it."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["harmonize.sources"] == {"fedjax_rhd": "fedjax_rhd.sources"}
    dist = tmp_path / "stand_in-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: stand-in\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(
        "[harmonize.sources]\n" + "".join(f"{k} = {v}\n" for k, v in declared["harmonize.sources"].items())
    )
    code = (
        "import sys\n"
        "from harmonize.registry import SOURCES, load_source_plugins\n"
        "assert 'simulated' not in SOURCES\n"
        "print(load_source_plugins())\n"
        "assert {'simulated', 'simulated_dialects', 'iwgpm', 'beataml'} <= set(SOURCES), sorted(SOURCES)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HARMONIZE_SOURCES"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fedjax_rhd.sources" in proc.stdout


def test_the_harmonize_command_builds_a_simulated_dataset_in_a_fresh_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARMONIZE_SOURCES": "fedjax_rhd.sources"}
    cmd = [sys.executable, "-m", "harmonize", "build", "--use-case", "mds", "--n", "60", "--seed", "1"]
    cmd += ["--data-root", str(tmp_path), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("mds-sim-n60-seed1: id ds-")


# What a run's start-up must not import: each is used by one path only (flwr: backend=flower;
# pandas, networkx, pgmpy: the Bayesian network; scikit-learn, scipy: synthetic-data metrics,
# simulators, the mixture fit; fhir.resources: dataset builds), and together they cost seconds.
LAZY_AT_START = ("flwr", "pandas", "networkx", "pgmpy", "sklearn", "scipy", "fhir")


def test_the_command_line_app_starts_without_the_heavy_optional_packages():
    code = (
        "import sys\n"
        "import fedjax_rhd.cli, fedjax_rhd.experiment\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({LAZY_AT_START!r})))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
