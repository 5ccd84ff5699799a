"""The nightly run: ingest → aggregate → flows → retention → series → forecast → publish for one date, each stage
idempotent, recorded in the run ledger and skipped when already done (``jobs.orchestration.runs``)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import SparkSession
from rich.console import Console

from forecasting.protocol import FREQS
from geo.catalogue import Catalogue, load_catalogue
from jobs.orchestration import qa
from jobs.orchestration.runs import STAGES, Ledger, date_lock, fingerprint, new_run_id
from jobs.settings import JobSettings
from jobs.stages import aggregate, flows, forecast, ingest, publish, retention, series, tiles


@dataclass
class NightlyReport:
    run_date: dt.date
    run_id: str = ""
    ingest: ingest.IngestCounts | tiles.TileCounts | None = None
    aggregate: aggregate.AggregateCounts | None = None
    flows: flows.FlowCounts | None = None
    retention: retention.RetentionReport | None = None
    series_rows: int = 0
    forecast: forecast.ForecastResult | None = None
    release: publish.Release | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # stage -> why (done earlier, or not applicable)
    qa: list[qa.CheckResult] = field(default_factory=list)  # the checks of the stages this run ran


class _Stages:
    """Runs the stages of one run in order, recording each in the ledger, skipping those already done.

    A stage is skipped when its latest attempt for the date completed, read the same input files (their fingerprint:
    late data changes it) and started after every stage before it last completed, unless ``force``; once a stage
    runs, every later one runs too. ``only``, when given, restricts the run to those stages (``routecast stage``).
    After each stage its QA checks are stored; publish waits for every blocking check of the date to pass.
    """

    def __init__(
        self,
        ledger: Ledger,
        report: NightlyReport,
        console: Console,
        force: bool,
        only: Collection[str] | None,
        checks: qa.QAConfig,
        store: qa.QAStore,
    ) -> None:
        self.ledger, self.report, self.console = ledger, report, console
        self.rerun, self.only = force, only
        self.checks, self.store = checks, store
        self.inputs: dict[str, str | None] = {}
        self.outputs: dict[str, Callable[[], str] | None] = {}

    def wanted(self, name: str, inputs: str | None = None, outputs: Callable[[], str] | None = None) -> bool:
        """Whether ``name`` runs; ``inputs`` is the fingerprint of the files it reads (late data changes it),
        ``outputs`` fingerprints the files it writes (another date's run may rewrite them)."""
        self.inputs[name], self.outputs[name] = inputs, outputs
        if self.only is not None and name not in self.only:
            return False
        if self.rerun:
            return True
        previous = self.ledger.up_to_date(self.report.run_date, name, inputs, outputs() if outputs else None)
        if previous is None:
            self.rerun = True
            return True
        why = f"done by run {previous.run_id} at {previous.ended}"
        self.ledger.skip(self.report.run_id, self.report.run_date, name, why)
        self.report.skipped[name] = why
        self.console.print(f"[dim]- {name:<9} skipped: {why} (--force redoes it)[/]", highlight=False)
        return False

    def not_applicable(self, name: str, why: str) -> None:
        self.ledger.skip(self.report.run_id, self.report.run_date, name, why)
        self.report.skipped[name] = why
        self.console.print(f"[yellow]![/] {name} skipped: {why}", highlight=False)

    @contextmanager
    def run(self, name: str, describe: Callable[[], str], counts: Callable[[], dict]) -> Iterator[None]:
        self.ledger.start(self.report.run_id, self.report.run_date, name, self.inputs.get(name))
        start = time.perf_counter()
        try:
            with self.console.status(f"[bold]{name}[/] …"):
                yield
        except BaseException as exc:
            self.ledger.finish(
                self.report.run_id,
                name,
                "failed",
                seconds=time.perf_counter() - start,
                detail=f"{type(exc).__name__}: {exc}"[:1000],
            )
            raise
        seconds = self.report.seconds[name] = time.perf_counter() - start
        summary = describe()
        outputs = self.outputs.get(name)
        self.ledger.finish(
            self.report.run_id,
            name,
            "done",
            seconds=seconds,
            detail=summary,
            outputs=outputs() if outputs else None,
            **counts(),
        )
        self.console.print(f"[green]✓[/] {name:<9} {seconds:6.1f} s  {summary}")

    def check(self, name: str, result: object) -> None:
        """Evaluate and store the QA checks of a stage that just ran; print the ones that failed."""
        results = qa.evaluate(
            name, result, run_date=self.report.run_date, run_id=self.report.run_id, checks=self.checks, store=self.store
        )
        self.report.qa.extend(results)
        for r in results:
            if not r.passed:
                colour = "red" if r.blocking else "yellow"
                self.console.print(
                    f"[{colour}]![/] QA {r.name} = {qa.format_value(r.check, r.value)}, expected {r.threshold}"
                    + (" (blocking: no release)" if r.blocking else ""),
                    highlight=False,
                )

    def gate(self) -> None:
        """Refuse to publish while a blocking check of the date fails (the latest value of each check, whichever run
        of the date computed it): the publish attempt is recorded as failed and the summary printed."""
        # Stored values are judged by today's thresholds: a changed QA file applies to stages that were not redone.
        results = [qa.rejudge(r, self.checks) for r in self.store.results(self.report.run_date)]
        failures = qa.blocking_failures(results)
        if not failures:
            return
        self.ledger.start(self.report.run_id, self.report.run_date, "publish", self.inputs.get("publish"))
        self.ledger.finish(
            self.report.run_id,
            "publish",
            "failed",
            seconds=0.0,
            detail="blocked by QA: " + "; ".join(f"{f.name} = {qa.format_value(f.check, f.value)}" for f in failures),
        )
        self.console.print(qa.summary(results))
        raise qa.QAFailed(failures)


def nightly(
    spark: SparkSession,
    settings: JobSettings,
    run_date: dt.date,
    *,
    raw_path: Path | None = None,
    since: dt.date | None = None,
    catalogue: Catalogue | None = None,
    console: Console | None = None,
    force: bool = False,
    only: Collection[str] | None = None,
) -> NightlyReport:
    """Run every stage for ``run_date`` using the data up to that date; re-running gives the same release.

    Pings dated ``since`` .. ``run_date`` are (re)processed; ``since`` defaults to the bronze retention window.
    Each stage is recorded in the run ledger (``routecast status``); stages already done for the date are skipped
    unless ``force`` (see :class:`_Stages`), so a killed run resumes where it stopped. A second live run for the
    same date is refused (:class:`jobs.orchestration.runs.RunLocked`).
    """
    console = console or Console(stderr=True)
    catalogue = catalogue or load_catalogue(settings.routes_dir)
    unknown = sorted(set(only or ()) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}; the stages are {', '.join(STAGES)}")
    checks = qa.load_config(settings.qa_config)  # a broken QA file fails here, before any work
    report = NightlyReport(run_date, run_id=new_run_id(run_date))
    ledger = Ledger(settings.runs_dir)
    stages = _Stages(ledger, report, console, force, only, checks, qa.QAStore(ledger.path))
    with date_lock(settings.runs_dir, run_date):
        _run_stages(spark, settings, report, stages, raw_path, since, catalogue)
    return report


def _run_stages(
    spark: SparkSession,
    settings: JobSettings,
    report: NightlyReport,
    stages: _Stages,
    raw_path: Path | None,
    since: dt.date | None,
    catalogue: Catalogue,
) -> None:
    run_date, console = report.run_date, stages.console
    # What each stage reads, fingerprinted when it is about to run: data that arrives late for a past date changes
    # the fingerprint of the stage that reads it, which then runs again, and every stage after it.
    window = (since or run_date - dt.timedelta(days=settings.bronze_retention_days - 1), run_date)
    bronze = settings.lake("bronze", "tiles" if settings.density_input == "tiles" else "pings")
    raw = raw_path or settings.raw_dir / "pings"
    gold = settings.lake("gold", "series")
    density = settings.lake("silver", "density")
    # Raw pings: files wholly before the window are left out, so that retention deleting them (the raw routecast
    # owns) does not make the next run for this date ingest again.
    raw_inputs = fingerprint(raw) if settings.density_input == "tiles" else retention.raw_fingerprint(raw, window[0])
    if stages.wanted("ingest", raw_inputs, lambda: fingerprint(bronze, since=window[0], until=window[1])):
        if settings.density_input == "tiles" and raw_path is None:
            raise ValueError("ROUTECAST_DENSITY_INPUT=tiles needs the tiles file: routecast nightly --raw FILE")
        with stages.run("ingest", lambda: _describe_ingest(report.ingest), lambda: _ingest_counts(report.ingest)):
            if settings.density_input == "tiles":
                report.ingest = tiles.run(spark, settings, run_date, raw_path, since=since)
            else:
                report.ingest = ingest.run(spark, settings, run_date, raw_path, since=since)
        stages.check("ingest", report.ingest)
        for path, why in getattr(report.ingest, "rejected_files", ()):
            console.print(f"[yellow]![/] skipped unreadable input {path}: {why}", highlight=False)
    if stages.wanted(
        "aggregate",
        fingerprint(bronze, since=window[0], until=window[1]),
        lambda: fingerprint(density, since=window[0], until=window[1]),
    ):
        with stages.run(
            "aggregate",
            lambda: describe_aggregate(report.aggregate, settings),
            lambda: {"rows_in": report.aggregate.aggregates, "rows_out": report.aggregate.published},
        ):
            if settings.density_input == "tiles":
                report.aggregate = aggregate.run_tiles(spark, settings, run_date, since=since)
            else:
                report.aggregate = aggregate.run(spark, settings, run_date, since=since)
        stages.check("aggregate", report.aggregate)
    if settings.density_input == "tiles":
        stages.not_applicable("flows", "tiles carry no trajectories")
    elif settings.dp_mechanism != "none":
        stages.not_applicable("flows", "their counts are not covered by differential privacy yet")
    elif stages.wanted(
        "flows",
        fingerprint(bronze, since=window[0], until=window[1]),
        lambda: fingerprint(gold / "source=flows", settings.lake("silver", "flows_segment"), until=window[1]),
    ):
        with stages.run("flows", lambda: _describe_flows(report.flows), lambda: _flow_counts(report.flows)):
            report.flows = flows.run(spark, settings, run_date, since=since, catalogue=catalogue)
        stages.check("flows", report.flows)
    if stages.wanted("retention"):
        with stages.run("retention", lambda: _describe_retention(report.retention), dict):
            report.retention = retention.run(settings, run_date, raw_path)
    if stages.wanted("series", fingerprint(density, until=run_date), lambda: fingerprint(gold / "source=density")):
        with stages.run(
            "series", lambda: f"{report.series_rows:,} series-days", lambda: {"rows_out": report.series_rows}
        ):
            report.series_rows = series.run(spark, settings, run_date, catalogue)
        stages.check("series", report.series_rows)
    saved = settings.runs_dir / "forecast" / str(run_date)
    if stages.wanted("forecast", fingerprint(gold), lambda: fingerprint(saved)):
        with stages.run("forecast", lambda: _describe_forecast(report.forecast), lambda: _forecast_counts(report)):
            report.forecast = forecast.run(spark, settings, run_date)
            forecast.save_result(report.forecast, saved)  # for a publish stage run by another process
        stages.check("forecast", report.forecast)
        _warn_stale(report.forecast, run_date, console)
    # The release's cells read CELL_DAYS of silver and, for their baselines, the weeks before (publish.release_cells).
    cells_from = run_date - dt.timedelta(days=publish.CELL_DAYS - 1 + 7 * aggregate.BASELINE_WEEKS)
    if stages.wanted(
        "publish", fingerprint(saved, settings.lake("silver", "density"), since=cells_from, until=run_date)
    ):
        stages.gate()
        with stages.run("publish", lambda: _describe_release(report), lambda: _publish_counts(report)):
            if report.forecast is None:
                try:
                    report.forecast = forecast.load_result(saved)
                except FileNotFoundError:
                    raise RuntimeError(
                        f"no forecast to publish for {run_date} in {saved}: run the forecast stage first"
                    ) from None
            _publish(spark, settings, report, catalogue, console)
        for sid, why in report.forecast.failed.items():
            console.print(f"[yellow]![/] no forecast for {sid}: {why}")


def _publish(
    spark: SparkSession, settings: JobSettings, report: NightlyReport, catalogue: Catalogue, console: Console
) -> None:
    run = report.forecast.run
    if not run.promoted:
        # The registry kept the previous champion: this run's choices scored worse on its own backtest than the
        # champion's would have. Publishing them anyway would serve what the gate just refused.
        console.print(
            f"[yellow]![/] model version {run.model_version} was not promoted (champion stays version "
            f"{run.champion_version}; see `routecast models`): the current release keeps serving",
            highlight=False,
        )
        return
    cells = publish.cells_table(spark, settings, report.run_date, catalogue)
    report.release = publish.publish(
        settings.store_dir,
        report.forecast.forecasts,
        report.forecast.keys,
        as_of=report.run_date,
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


def _warn_stale(result: forecast.ForecastResult, run_date: dt.date, console: Console) -> None:
    for source, rows in result.stale(run_date).groupby("source", sort=True):
        last = ", ".join(f"{r.series_id.split(':')[-1]} {r.last_observed}" for r in rows.itertuples())
        console.print(
            f"[yellow]![/] {source}: data end before the run date, so forecasts start there — last observed: {last}",
            highlight=False,
        )


def _ingest_counts(c: ingest.IngestCounts | tiles.TileCounts | None) -> dict:
    return {} if c is None else {"rows_in": c.rows_in, "rows_out": c.accepted}


def _flow_counts(c: flows.FlowCounts | None) -> dict:
    if c is None:
        return {}
    found = c.segment_published + c.segment_suppressed + c.cell_published + c.cell_suppressed
    return {"rows_in": found, "rows_out": c.segment_published + c.cell_published}


def _forecast_counts(report: NightlyReport) -> dict:
    r = report.forecast
    if r is None:
        return {}
    return {"rows_in": len(r.keys), "rows_out": len(r.forecasts), "mlflow_run_id": r.run.run_id}


def _publish_counts(report: NightlyReport) -> dict:
    r, run = report.release, report.forecast.run if report.forecast else None
    return {
        "rows_in": None if report.forecast is None else len(report.forecast.forecasts),
        "rows_out": None if r is None else len(report.forecast.forecasts),
        "mlflow_run_id": None if run is None else run.run_id,
        "release_id": None if r is None else r.release_id,
    }


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
    return "" if r is None else r.describe()


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


def _describe_release(report: NightlyReport) -> str:
    r = report.release
    if r is None:
        run = report.forecast.run if report.forecast else None
        return "" if run is None else f"not published: model version {run.model_version} was not promoted"
    return f"release {r.release_id}" + ("" if r.created else " (unchanged, re-pointed)")
