"""Late data: pings or official counts arriving for past dates make the next run for a date redo what reads them."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from contracts import tables
from geo.catalogue import load_catalogue
from jobs.lake import drop_partitions, read_table
from jobs.orchestration.pipeline import nightly
from jobs.orchestration.runs import STAGES
from jobs.schemas import DENSITY, PINGS, arrow_schema
from jobs.settings import JobSettings
from jobs.stages.counts import ingest_counts
from jobs.stages.people import DEFAULT_CONFIG as DEFAULT_PEOPLE_CONFIG
from tests.synth import SynthConfig, generate_pings

END = dt.date(2025, 6, 30)
LATE_DAY = END - dt.timedelta(days=3)


def _density_on(spark, settings: JobSettings, day: dt.date) -> int:
    density = read_table(spark, settings.lake(tables.DENSITY), DENSITY)
    return int(
        density.where((density.date == day) & (density.res == settings.h3_res)).agg({"devices": "sum"}).first()[0]
    )


def test_late_pings_and_counts_are_picked_up_by_the_next_run_for_the_date(spark, tmp_path):
    routes = load_catalogue().subset(["channel"])
    settings = JobSettings(
        var_dir=tmp_path / "var",
        resolutions=(5, 7),
        hourly=False,
        forecast_candidates=("seasonal_naive",),
    )
    raw = tmp_path / "raw"
    cfg = SynthConfig(start=END - dt.timedelta(days=34), days=35, background_per_hub=30, migrants_per_hub=10)
    generate_pings(routes, cfg, raw)
    quiet = Console(quiet=True)
    first = nightly(spark, settings, END, raw_path=raw, catalogue=routes, console=quiet)
    before = _density_on(spark, settings, LATE_DAY)

    # A provider delivers a late file for a past day: 40 more phones at one place, each seen three times.
    base = pq.read_table(raw / f"pings-{LATE_DAY:%Y%m%d}.parquet").to_pandas().iloc[0]
    late = pd.DataFrame(
        {
            "device_id": [f"late-{i}" for i in range(40) for _ in range(3)],
            "ts": [pd.Timestamp(LATE_DAY) + pd.Timedelta(hours=9 + k) for _ in range(40) for k in range(3)],
            "lat": base["lat"],
            "lon": base["lon"],
            "accuracy_m": 20.0,
            "mcc": base["mcc"],
        }
    )
    pq.write_table(
        pa.Table.from_pandas(late, schema=arrow_schema(PINGS), preserve_index=False), raw / "late-delivery.parquet"
    )
    # ... with a corrupt file beside it: reported by name, never read, the run goes on.
    (raw / "truncated-delivery.parquet").write_bytes(b"PAR1 cut short")
    second = nightly(spark, settings, END, raw_path=raw, catalogue=routes, console=quiet)
    # Ingest saw new input: everything after it ran (people has no official counts to be fitted on yet).
    assert second.skipped.keys() <= {"retention", "people"}, second.skipped
    assert [name for name, _ in second.ingest.rejected_files] == [str(raw / "truncated-delivery.parquet")]
    assert _density_on(spark, settings, LATE_DAY) >= before + 40
    assert second.release.release_id != first.release.release_id

    # Official counts arriving later: only the stages that read them (people, forecast, publish) run again.
    counts = tmp_path / "uk.csv"
    days = pd.date_range(END - dt.timedelta(days=59), END)
    counts.write_text(
        "date,migrants_arrived,boats_arrived,boats_uncontrolled_landings,notes\n"
        + "".join(f"{d:%Y-%m-%d},{(i * 37) % 300},{(i * 5) % 7},,\n" for i, d in enumerate(days))
    )
    ingest_counts(spark, settings, counts, "uk-channel")
    third = nightly(spark, settings, END, raw_path=raw, catalogue=routes, console=quiet)
    assert set(third.skipped) == set(STAGES) - {"people", "forecast", "publish"}
    assert "uk-channel" in set(third.forecast.forecasts.merge(third.forecast.keys, on="series_id")["source"])
    # The people stage now has counts to be fitted on; the release names its model exactly when it has people series.
    assert third.people is not None and third.people.model_id.startswith("people-")
    manifest = json.loads((third.release.path / "manifest.json").read_text())
    has_people = bool((third.forecast.keys["source"] == "people").any())
    assert (manifest["people_model"] is not None) == has_people
    if has_people:
        assert manifest["people_model"]["model_id"] == third.people.model_id
    # Nothing new: nothing runs.
    fourth = nightly(spark, settings, END, raw_path=raw, catalogue=routes, console=quiet)
    assert set(fourth.skipped) == set(STAGES)
    # A revised prior (a new survey of journey times) refits the people model: people and what reads it run again.
    priors = tmp_path / "people.toml"
    priors.write_text(DEFAULT_PEOPLE_CONFIG.read_text().replace("channel = 26", "channel = 30"))
    revised = settings.model_copy(update={"people_config": priors})
    fifth = nightly(spark, revised, END, raw_path=raw, catalogue=routes, console=quiet)
    assert set(fifth.skipped) == set(STAGES) - {"people", "forecast", "publish"}
    assert fifth.people.model_id != third.people.model_id
    # The official counts withdrawn: the people stage no longer applies, and what it made goes with it (no stale
    # people are forecast or published).
    drop_partitions(settings.lake(tables.SERIES), "source", ["uk-channel"])
    sixth = nightly(spark, revised, END, raw_path=raw, catalogue=routes, console=quiet)
    assert "no official counts" in sixth.skipped["people"]
    assert not (sixth.forecast.keys["source"] == "people").any()
    assert not (settings.lake(tables.PEOPLE) / "measure=present").exists()
