"""Shared fixtures: one SparkSession for the whole session (spark-conf/test.conf), settings under tmp_path, and one
published nightly run that the tests of the whole path read."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from jobs.settings import JobSettings
    from jobs.spark import build_spark

    session = build_spark(JobSettings(var_dir=tmp_path_factory.mktemp("spark-var")), profile="test")
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path):
    from jobs.settings import JobSettings

    return JobSettings(var_dir=tmp_path / "var")


@pytest.fixture(scope="session")
def catalogue():
    from geo.catalogue import load_catalogue

    return load_catalogue()


@pytest.fixture(scope="session")
def published_run(spark, tmp_path_factory, catalogue):
    """One published nightly run (tests/published.py); its users are marked ``PUBLISHED`` and leave it as it was."""
    from tests.published import publish_run

    return publish_run(spark, tmp_path_factory.mktemp("published") / "var", catalogue)
