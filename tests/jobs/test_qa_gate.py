"""A failing blocking QA check stops publish, marks the run failed and leaves the previous release serving."""

from __future__ import annotations

import datetime as dt

import pytest
from rich.console import Console

from geo.catalogue import load_catalogue
from jobs.orchestration.pipeline import nightly
from jobs.orchestration.qa import QAFailed, QAStore
from jobs.orchestration.runs import Ledger
from jobs.settings import JobSettings
from tests.synth import SynthConfig, generate_pings

END = dt.date(2025, 6, 30)


def test_a_blocking_check_stops_publish_until_it_passes(spark, tmp_path):
    routes = load_catalogue().subset(["channel"])
    raw = tmp_path / "raw"
    # The generator injects invalid rows, so a little is quarantined; a zero-tolerance file refuses that.
    generate_pings(routes, SynthConfig(start=END - dt.timedelta(days=34), days=35), raw)
    strict = tmp_path / "strict.toml"
    strict.write_text('[ingest.share_quarantined]\nmax = 0.0\nblocking = true\ndescription = "none at all"\n')
    common = {"var_dir": tmp_path / "var", "resolutions": (5, 7), "hourly": False}
    common["forecast_candidates"] = ("seasonal_naive",)
    settings = JobSettings(**common, qa_config=strict)
    console = Console(record=True, width=120)

    with pytest.raises(QAFailed, match="ingest.share_quarantined"):
        nightly(spark, settings, END, raw_path=raw, catalogue=routes, console=console)
    assert not (settings.store_dir / "CURRENT").exists()
    publish = next(r for r in Ledger(settings.runs_dir).rows(run_date=END) if r.stage == "publish")
    assert publish.status == "failed" and publish.detail.startswith("blocked by QA: ingest.share_quarantined")
    assert "QA checks for 2025-06-30" in console.export_text()  # the one-screen summary
    stored = {r.name: r for r in QAStore(Ledger(settings.runs_dir).path).results(END)}
    assert not stored["ingest.share_quarantined"].passed and stored["ingest.share_quarantined"].value > 0

    # The default thresholds accept the same data: the stages already done are skipped, publish runs.
    resumed = nightly(spark, JobSettings(**common), END, raw_path=raw, catalogue=routes, console=Console(quiet=True))
    assert resumed.release is not None and (settings.store_dir / "CURRENT").exists()
    assert {"ingest", "aggregate", "series", "forecast"} <= set(resumed.skipped)
