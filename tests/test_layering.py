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
# Subpackages a package may import although their top-level package is forbidden to it: serving runs what-if
# scenarios with forecasting.scenario (pure numpy, pandas and scipy), and nothing else of forecasting.
EXCEPT: dict[str, set[str]] = {"serving": {"forecasting.scenario"}}


def _imports(source: str) -> set[str]:
    """Every module ``source`` imports, in full (``from a.b import c`` gives ``a.b.c``: c may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forbidden_imports(source: str, package: str) -> list[str]:
    """The modules ``source`` (a module of ``package``) imports against the rules."""
    return sorted(
        m
        for m in _imports(source)
        if m.split(".")[0] in FORBIDDEN[package] and not any(_within(m, e) for e in EXCEPT.get(package, ()))
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package):
    offenders = {}
    for p in (ROOT / package).rglob("*.py"):
        offenders[p.relative_to(ROOT).as_posix()] = forbidden_imports(p.read_text(), package)
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    ("source", "offending"),
    [
        ("from forecasting.scenario import Network", []),
        ("from forecasting.scenario.spec import ScenarioError", []),
        ("import forecasting.scenario.engine", []),
        ("from forecasting import scenario", []),
        ("from forecasting.tracking import RunInfo", ["forecasting.tracking.RunInfo"]),
        ("from forecasting import tracking", ["forecasting.tracking"]),
        ("import forecasting", ["forecasting"]),
        ("import forecasting.scenarios_old", ["forecasting.scenarios_old"]),  # a name that only starts the same
        ("from forecasting.models.prophet import ProphetModel", ["forecasting.models.prophet.ProphetModel"]),
        ("import jobs.stages.publish", ["jobs.stages.publish"]),
    ],
)
def test_serving_may_import_forecasting_scenario_and_no_other_forecasting_module(source, offending):
    assert forbidden_imports(source, "serving") == offending


def test_the_scenario_engine_imports_nothing_of_forecasting_but_itself():
    """What serving may import must not pull the rest of forecasting (models, MLflow) in behind the rule's back."""
    offenders = {}
    for p in (ROOT / "forecasting" / "scenario").rglob("*.py"):
        found = [
            m for m in _imports(p.read_text()) if _within(m, "forecasting") and not _within(m, "forecasting.scenario")
        ]
        offenders[p.name] = sorted(found)
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


HEAVY = ("pyspark", "prophet", "mlflow", "statsforecast", "jobs")


def test_importing_the_api_loads_neither_spark_nor_models():
    code = f"import sys, serving.app; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    assert _run(code) == "[]"


def test_importing_the_scenario_engine_loads_neither_spark_nor_models():
    code = (
        "import sys, forecasting.scenario;"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m.startswith('forecasting.')"
        " and not m.startswith('forecasting.scenario')))"
    )
    assert _run(code) == "[]"


def test_importing_the_jobs_starts_no_spark_and_no_model():
    code = (
        "import sys, routecast.cli, jobs.orchestration.pipeline;"
        "from pyspark import SparkContext;"
        "print(SparkContext._active_spark_context is None, 'prophet' in sys.modules)"
    )
    assert _run(code) == "True False"
