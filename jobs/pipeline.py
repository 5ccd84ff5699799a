"""The nightly run: ingest → aggregate → series → forecast → publish for one date, each stage idempotent."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import SparkSession
from rich.console import Console

from forecasting.protocol import FREQS
from geo.catalogue import Catalogue, load_catalogue
from jobs import aggregate, flows, forecast, ingest, publish, retention, series, tiles
from jobs.settings import JobSettings


@dataclass
class NightlyReport:
    run_date: dt.date
    ingest: ingest.IngestCounts | tiles.TileCounts | None = None
    aggregate: aggregate.AggregateCounts | None = None
    flows: flows.FlowCounts | None = None
    retention: retention.RetentionReport | None = None
    series_rows: int = 0
    forecast: forecast.ForecastResult | None = None
    release: publish.Release | None = None
    seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _stage(name: str, report: NightlyReport, console: Console, describe: Callable[[], str]) -> Iterator[None]:
    start = time.perf_counter()
    with console.status(f"[bold]{name}[/] …"):
        yield
    report.seconds[name] = time.perf_counter() - start
    console.print(f"[green]✓[/] {name:<9} {report.seconds[name]:6.1f} s  {describe()}")


def nightly(
    spark: SparkSession,
    settings: JobSettings,
    run_date: dt.date,
    *,
    raw_path: Path | None = None,
    since: dt.date | None = None,
    catalogue: Catalogue | None = None,
    console: Console | None = None,
) -> NightlyReport:
    """Run every stage for ``run_date`` using the data up to that date; re-running gives the same release.

    Pings dated ``since`` .. ``run_date`` are (re)processed; ``since`` defaults to the bronze retention window.
    """
    console = console or Console(stderr=True)
    catalogue = catalogue or load_catalogue()
    report = NightlyReport(run_date)

    if settings.density_input == "tiles":
        if raw_path is None:
            raise ValueError("ROUTECAST_DENSITY_INPUT=tiles needs the tiles file: routecast nightly --raw FILE")
        with _stage("ingest", report, console, lambda: _describe_ingest(report.ingest)):
            report.ingest = tiles.run(spark, settings, run_date, raw_path, since=since)
        with _stage("aggregate", report, console, lambda: describe_aggregate(report.aggregate, settings)):
            report.aggregate = aggregate.run_tiles(spark, settings, run_date, since=since)
    else:
        with _stage("ingest", report, console, lambda: _describe_ingest(report.ingest)):
            report.ingest = ingest.run(spark, settings, run_date, raw_path, since=since)
        for path, why in report.ingest.rejected_files:
            console.print(f"[yellow]![/] skipped unreadable input {path}: {why}", highlight=False)
        with _stage("aggregate", report, console, lambda: describe_aggregate(report.aggregate, settings)):
            report.aggregate = aggregate.run(spark, settings, run_date, since=since)
        if settings.dp_mechanism == "none":
            with _stage("flows", report, console, lambda: _describe_flows(report.flows)):
                report.flows = flows.run(spark, settings, run_date, since=since, catalogue=catalogue)
        else:
            console.print("[yellow]![/] flows skipped: their counts are not covered by differential privacy yet")
    with _stage("retention", report, console, lambda: _describe_retention(report.retention)):
        report.retention = retention.run(settings, run_date)
    with _stage("series", report, console, lambda: f"{report.series_rows:,} series-days"):
        report.series_rows = series.run(spark, settings, run_date, catalogue)
    with _stage("forecast", report, console, lambda: _describe_forecast(report.forecast)):
        report.forecast = forecast.run(spark, settings, run_date)
    stale = report.forecast.stale(run_date)
    for source, rows in stale.groupby("source", sort=True):
        last = ", ".join(f"{r.series_id.split(':')[-1]} {r.last_observed}" for r in rows.itertuples())
        console.print(
            f"[yellow]![/] {source}: data end before the run date, so forecasts start there — last observed: {last}",
            highlight=False,
        )
    run = report.forecast.run
    if run.promoted:
        with _stage("publish", report, console, lambda: _describe_release(report.release)):
            cells = publish.cells_table(spark, settings, run_date, catalogue)
            report.release = publish.publish(
                settings.store_dir,
                report.forecast.forecasts,
                report.forecast.keys,
                as_of=run_date,
                run=run,
                min_devices=settings.min_devices,
                manifest_extra={
                    "h3_res": settings.h3_res,
                    "periods": {f: dict(zip(("holdout", "horizon"), settings.periods(f), strict=True)) for f in FREQS},
                    "failed_series": report.forecast.failed,
                    "inputs": report.forecast.inputs,
                    "cell_resolutions": list(settings.cell_resolutions()),
                },
                history=report.forecast.history,
                cells=cells,
            )
    else:
        # The registry kept the previous champion: this run's choices scored worse on its own backtest than the
        # champion's would have. Publishing them anyway would serve what the gate just refused.
        console.print(
            f"[yellow]![/] model version {run.model_version} was not promoted (champion stays version "
            f"{run.champion_version}; see `routecast models`): the current release keeps serving",
            highlight=False,
        )
    for sid, why in (report.forecast.failed if report.forecast else {}).items():
        console.print(f"[yellow]![/] no forecast for {sid}: {why}")
    return report


def _describe_ingest(c: ingest.IngestCounts | tiles.TileCounts | None) -> str:
    if c is None:
        return ""
    if isinstance(c, tiles.TileCounts):
        return (
            f"{c.rows_in:,} tiles in = {c.accepted:,} accepted + {c.deferred:,} deferred + {c.earlier:,} earlier + "
            f"{c.quarantined:,} quarantined + {c.duplicates:,} duplicates"
        )
    return (
        f"{c.rows_in:,} rows in = {c.accepted:,} accepted + {c.deferred:,} deferred + {c.earlier:,} earlier + "
        f"{c.quarantined:,} quarantined + {c.duplicates:,} duplicates; "
        f"{c.files_in - len(c.rejected_files):,}/{c.files_in:,} files read"
    )


def _describe_flows(c: flows.FlowCounts | None) -> str:
    if c is None:
        return ""
    return (
        f"segment → segment: {c.segment_published:,} published, {c.segment_suppressed:,} suppressed; "
        f"cell → cell: {c.cell_published:,} published, {c.cell_suppressed:,} suppressed; "
        f"{c.series_rows:,} flow series-days"
    )


def _describe_retention(r: retention.RetentionReport | None) -> str:
    if r is None:
        return ""
    return f"deleted {len(r.bronze_days)} bronze days and {len(r.quarantine_days)} quarantine days before {r.cutoff}"


def describe_aggregate(c: aggregate.AggregateCounts | None, settings: JobSettings) -> str:
    if c is None:
        return ""
    return (
        f"{c.aggregates:,} cell-days at res {','.join(map(str, settings.resolutions))}: {c.published:,} published, "
        f"{c.suppressed:,} suppressed (≤ {settings.min_devices} devices); "
        f"{c.hourly_published:,} of {c.hourly_aggregates:,} cell-hours published"
    )


def _describe_forecast(r: forecast.ForecastResult | None) -> str:
    if r is None:
        return ""
    chosen = r.metrics[r.metrics["chosen"].eq(True)]["model"].value_counts().to_dict()
    return f"{r.forecasts['series_id'].nunique()} series, champions {chosen}, MLflow run {r.run.run_id[:8]}"


def _describe_release(r: publish.Release | None) -> str:
    if r is None:
        return ""
    return f"release {r.release_id}" + ("" if r.created else " (unchanged, re-pointed)")
