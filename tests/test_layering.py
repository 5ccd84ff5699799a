"""The package rules of docs/design.md, checked on the source: who may import whom, nothing heavy at import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"contracts", "geo", "forecasting", "jobs", "simulator", "serving", "routecast", "experiments"}
# From the bottom up: contracts (what every layer agrees on) < geo, forecasting < jobs < simulator < serving
# (beside jobs, reading only the published store) < routecast (the command line, the composition root).
FORBIDDEN = {
    "contracts": OURS - {"contracts"} | {"pyspark"},
    "geo": OURS - {"contracts", "geo"} | {"pyspark"},
    "forecasting": OURS - {"contracts", "forecasting"} | {"pyspark"},
    "jobs": {"simulator", "serving", "routecast", "experiments"},
    "simulator": {"forecasting", "serving", "routecast", "experiments"},
    "serving": {"jobs", "forecasting", "simulator", "routecast", "experiments", "pyspark"},
}
ALLOWED: dict[str, set[str]] = {}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package):
    offenders = {}
    for p in (ROOT / package).rglob("*.py"):
        rel = p.relative_to(ROOT).as_posix()
        offenders[rel] = sorted(_imports(p) & FORBIDDEN[package] - ALLOWED.get(rel, set()))
    assert {k: v for k, v in offenders.items() if v} == {}


def test_routers_do_not_import_each_other():
    """What several routers share (roles, scope check, parameters) lives in serving/deps.py."""
    offenders = {}
    for p in (ROOT / "serving" / "routers").glob("*.py"):
        tree = ast.parse(p.read_text(), filename=str(p))
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        offenders[p.name] = sorted(m for m in modules if m.startswith("serving.routers"))
    assert {k: v for k, v in offenders.items() if v} == {}


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return out.stdout.strip()


def test_importing_the_api_loads_neither_spark_nor_models():
    code = "import sys, serving.app; print(sorted(m for m in ('pyspark', 'prophet', 'jobs') if m in sys.modules))"
    assert _run(code) == "[]"


def test_importing_the_jobs_starts_no_spark_and_no_model():
    code = (
        "import sys, routecast.cli, jobs.orchestration.pipeline;"
        "from pyspark import SparkContext;"
        "print(SparkContext._active_spark_context is None, 'prophet' in sys.modules)"
    )
    assert _run(code) == "True False"
