"""Fixtures for the forecasting tests: MLflow telemetry off and a real SQLite-backed MLflow store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def no_mlflow_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real SQLite-backed MLflow store under a tmp folder: (tracking URI, folder).

    Module-scoped because creating the database tables takes seconds; tests using it must not depend on
    each other's runs beyond what they log themselves.
    """
    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield f"sqlite:///{folder}/mlflow.db", folder
