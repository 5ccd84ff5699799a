"""One nightly run with the default settings, published, that several tests of the whole path read.

Made once per pytest worker by the session fixture ``published_run`` (tests/conftest.py); the tests that read it
are marked ``PUBLISHED`` so that pytest-xdist (``--dist loadgroup``) gives them the same worker. They read it, or
run the same date again only in a way that leaves everything as it was (a forced rerun publishes the same release).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from rich.console import Console

from geo.catalogue import Catalogue
from jobs.orchestration.pipeline import NightlyReport, nightly
from jobs.settings import JobSettings
from tests.synth import SynthConfig, generate_pings

END = dt.date(2025, 6, 30)
PUBLISHED = pytest.mark.xdist_group("published_run")


@dataclass(frozen=True)
class PublishedRun:
    settings: JobSettings
    routes: Catalogue  # the catalogue's first two routes
    raw: Path  # the generated pings
    rows: int  # how many were generated
    report: NightlyReport


def publish_run(spark: SparkSession, var_dir: Path, catalogue: Catalogue) -> PublishedRun:
    """Six weeks of synthetic pings along two routes to ``END``, through a nightly run with the default settings."""
    settings = JobSettings(var_dir=var_dir)
    routes = catalogue.subset(catalogue.route_ids()[:2])
    cfg = SynthConfig(
        start=END - dt.timedelta(days=41),
        days=42,
        background_per_hub=30,
        migrants_per_hub=10,
        pings_per_device=1.0,
        spread_km=0.2,
    )
    raw = settings.raw_dir / "pings"
    rows = generate_pings(routes, cfg, raw)
    report = nightly(spark, settings, END, raw_path=raw, catalogue=routes, console=Console(quiet=True))
    return PublishedRun(settings, routes, raw, rows, report)
