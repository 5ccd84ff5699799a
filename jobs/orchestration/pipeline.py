"""The nightly run: ingest → aggregate → flows → retention → series → people → forecast → publish for one date.

The stages are a table (:data:`PIPELINE`): each row says what the stage reads and writes and how it runs. Every
stage is idempotent, recorded in the run ledger and skipped when what it reads and writes is unchanged since it last
completed for the date (``jobs.orchestration.runs``), so a killed run resumes where it stopped."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pyspark.sql import SparkSession
from rich.console import Console

from contracts import tables
from contracts.published import SCENARIO_NETWORK
from contracts.series import PEOPLE_SOURCE
from contracts.tables import Table
from forecasting.protocol import FREQS
from geo.catalogue import Catalogue, load_catalogue
from jobs.analysis import truth
from jobs.orchestration import qa
from jobs.orchestration.runs import STAGES, Ledger, date_lock, fingerprint, new_run_id
from jobs.scenario_network import build_network
from jobs.settings import JobSettings
from jobs.stages import aggregate, flows, forecast, ingest, people, publish, retention, series, tiles


@dataclass
class NightlyReport:
    run_date: dt.date
    run_id: str = ""
    ingest: ingest.IngestCounts | tiles.TileCounts | None = None
    aggregate: aggregate.AggregateCounts | None = None
    flows: flows.FlowCounts | None = None
    retention: retention.RetentionReport | None = None
    series_rows: int = 0
    people: people.PeopleReport | None = None
    forecast: forecast.ForecastResult | None = None
    release: publish.PublishedRelease | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # stage -> why (done earlier, or not applicable)
    qa: list[qa.CheckResult] = field(default_factory=list)  # the checks of the stages this run ran
    truth: truth.Scores | None = None  # on a simulated world, the people scored against the truth (after publish)


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
    spark: SparkSession | Callable[[], SparkSession],
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

    ``spark`` may be a session or a function that makes one: it is then called only when the first stage is due, so
    a refused run, or one whose stages are all done, starts no JVM.
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
        _run_stages(_Run(spark, settings, report, stages, raw_path, since, catalogue))
    return report


# --- the stages, as a table -------------------------------------------------------------------------------------

Dates = Literal["all", "window", "until_run_date", "release_cells"]


@dataclass(frozen=True)
class Data:
    """Something a stage reads or writes: a catalogued lake table (or one partition of it), ``bronze`` (pings or
    tiles, whichever the deployment ingests), ``raw`` (the input files), ``handoff`` (the forecast saved for a
    publish run by another process) or ``people_config`` (the people model's priors file: a revised W refits)."""

    what: Table | Literal["bronze", "raw", "handoff", "people_config"]
    partition: str | None = None


@dataclass(frozen=True)
class Stage:
    """One row of the nightly run: what the stage reads and writes (fingerprinted to decide whether it must run
    again; ``*_dates`` say which date partitions count) and how it runs, reports and is checked."""

    name: str
    reads: tuple[Data, ...]
    writes: tuple[Data, ...]
    work: Callable[[_Run], None]
    describe: Callable[[_Run], str]
    counts: Callable[[_Run], dict]
    reads_dates: Dates = "all"
    writes_dates: Dates = "all"
    not_applicable: Callable[[_Run], str | None] = lambda _: None  # why the stage does not apply, if it does not
    cleanup: Callable[[_Run], None] | None = None  # when it does not apply: remove what it made before
    before: Callable[[_Run], None] | None = None  # once the stage is due, before it is recorded as started
    after: Callable[[_Run], None] | None = None  # after its QA checks
    checked: bool = True  # whether it has QA checks (jobs.orchestration.qa)


@dataclass
class _Run:
    """One nightly run of one date: its inputs, its report and the ledger-backed stage runner."""

    spark_source: SparkSession | Callable[[], SparkSession]
    settings: JobSettings
    report: NightlyReport
    stages: _Stages
    raw_path: Path | None
    since: dt.date | None
    catalogue: Catalogue

    @property
    def spark(self) -> SparkSession:
        """The session, made on first use when the run was given a factory."""
        if not isinstance(self.spark_source, SparkSession):
            self.spark_source = self.spark_source()
        return self.spark_source

    @property
    def console(self) -> Console:
        return self.stages.console

    @property
    def run_date(self) -> dt.date:
        return self.report.run_date

    @property
    def handoff(self) -> Path:
        return self.settings.runs_dir / "forecast" / str(self.run_date)

    def dates(self, which: Dates) -> tuple[dt.date | None, dt.date | None]:
        if which == "window":
            return self.settings.window(self.run_date, self.since)
        if which == "until_run_date":
            return None, self.run_date
        if which == "release_cells":
            # The release's cells read CELL_DAYS of silver and, for their baselines, the weeks before.
            days = publish.CELL_DAYS - 1 + 7 * aggregate.BASELINE_WEEKS
            return self.run_date - dt.timedelta(days=days), self.run_date
        return None, None

    def path(self, data: Data) -> Path:
        if data.what == "raw":
            return self.raw_path or self.settings.raw_dir / "pings"
        if data.what == "handoff":
            return self.handoff
        if data.what == "people_config":
            return self.settings.people_config or people.DEFAULT_CONFIG
        table = data.what
        if table == "bronze":
            table = tables.BRONZE_TILES if self.settings.density_input == "tiles" else tables.BRONZE_PINGS
        path = self.settings.lake(table)
        return path / data.partition if data.partition else path

    def fingerprint(self, data: tuple[Data, ...], dates: Dates) -> str | None:
        """What the files of ``data`` are now (None for a stage that declares nothing)."""
        if not data:
            return None
        since, until = self.dates(dates)
        if data == (RAW,) and self.settings.density_input != "tiles":
            # Raw ping files wholly before the window are left out, so that retention deleting them (the raw
            # routecast owns) does not make the next run for this date ingest again.
            return retention.raw_fingerprint(self.path(RAW), self.dates("window")[0])
        return fingerprint(*(self.path(d) for d in data), since=since, until=until)


RAW, BRONZE, HANDOFF = Data("raw"), Data("bronze"), Data("handoff")
# The official sources whose gold series the people stage may be fitted on (its priors file chooses among them).
_OFFICIAL = ("frontex", "uk-channel", "iom-dtm", "generic", "landings")


def _before_ingest(r: _Run) -> None:
    if r.settings.density_input == "tiles" and r.raw_path is None:
        raise ValueError("ROUTECAST_DENSITY_INPUT=tiles needs the tiles file: routecast nightly --raw FILE")


def _ingest(r: _Run) -> None:
    if r.settings.density_input == "tiles":
        r.report.ingest = tiles.run(r.spark, r.settings, r.run_date, r.raw_path, since=r.since)
    else:
        r.report.ingest = ingest.run(r.spark, r.settings, r.run_date, r.raw_path, since=r.since)


def _after_ingest(r: _Run) -> None:
    for path, why in getattr(r.report.ingest, "rejected_files", ()):
        r.console.print(f"[yellow]![/] skipped unreadable input {path}: {why}", highlight=False)


def _aggregate(r: _Run) -> None:
    run = aggregate.run_tiles if r.settings.density_input == "tiles" else aggregate.run
    r.report.aggregate = run(r.spark, r.settings, r.run_date, since=r.since)


def _flows_not_applicable(r: _Run) -> str | None:
    if r.settings.density_input == "tiles":
        return "tiles carry no trajectories"
    if r.settings.dp_mechanism != "none":
        return "differential privacy has no mechanism for flow counts, so they are not computed under it"
    return None


def _flows(r: _Run) -> None:
    r.report.flows = flows.run(r.spark, r.settings, r.run_date, since=r.since, catalogue=r.catalogue)


def _retention(r: _Run) -> None:
    r.report.retention = retention.run(r.settings, r.run_date, r.raw_path)


def _series(r: _Run) -> None:
    r.report.series_rows = series.run(r.spark, r.settings, r.run_date, r.catalogue)


def _people_not_applicable(r: _Run) -> str | None:
    if r.settings.density_input == "tiles":
        return "tiles carry no home networks, so there is no signal to measure people from"
    if r.settings.dp_mechanism != "none":
        return "under differential privacy no home-network groups are published"
    priors = people.load_priors(r.settings.people_config)
    if not people.official_sources_present(r.settings, priors):
        wanted = ", ".join(priors.monthly_sources + priors.daily_sources)
        return f"no official counts to fit the people model on (routecast ingest-counts FILE --source {wanted})"
    return None


def _clear_people(r: _Run) -> None:
    if removed := people.clear(r.settings):
        r.console.print(f"[yellow]![/] people of an earlier run removed: {', '.join(removed)}", highlight=False)


def _people(r: _Run) -> None:
    r.report.people = people.run(r.spark, r.settings, r.run_date, r.catalogue)


def _after_people(r: _Run) -> None:
    for route_id, why in (r.report.people.blind if r.report.people else {}).items():
        r.console.print(f"[yellow]![/] people on {route_id} not measured: {why}", highlight=False)


def _forecast(r: _Run) -> None:
    r.report.forecast = forecast.run(r.spark, r.settings, r.run_date)
    forecast.save_result(r.report.forecast, r.handoff)  # for a publish stage run by another process


def _after_publish(r: _Run) -> None:
    for sid, why in r.report.forecast.failed.items():
        r.console.print(f"[yellow]![/] no forecast for {sid}: {why}")
    # On a simulated world, the people and their forecasts scored against the truth, into the run's MLflow run.
    r.report.truth = scores = truth.score_and_log(r.settings, r.run_date, r.report.forecast.run.run_id)
    if scores is not None:
        r.console.print(f"people scored against the simulated truth: MLflow run {r.report.forecast.run.run_id}")


def _publish_stage(r: _Run) -> None:
    if r.report.forecast is None:
        try:
            r.report.forecast = forecast.load_result(r.handoff)
        except FileNotFoundError:
            raise RuntimeError(
                f"no forecast to publish for {r.run_date} in {r.handoff}: run the forecast stage first"
            ) from None
    _publish(r.spark, r.settings, r.report, r.catalogue, r.console)


# The nightly run, in order. A stage whose reads and writes are unchanged since its last completed attempt for the
# date is skipped (see _Stages.wanted); late data changes the fingerprint of the stage that reads it.
PIPELINE: tuple[Stage, ...] = (
    Stage(
        "ingest",
        reads=(RAW,),
        writes=(BRONZE,),
        writes_dates="window",
        work=_ingest,
        describe=lambda r: _describe_ingest(r.report.ingest),
        counts=lambda r: _ingest_counts(r.report.ingest),
        before=_before_ingest,
        after=_after_ingest,
    ),
    Stage(
        "aggregate",
        reads=(BRONZE,),
        writes=(Data(tables.DENSITY), Data(tables.DENSITY_BY_GROUP)),
        reads_dates="window",
        writes_dates="window",
        work=_aggregate,
        describe=lambda r: describe_aggregate(r.report.aggregate, r.settings),
        counts=lambda r: {"rows_in": r.report.aggregate.aggregates, "rows_out": r.report.aggregate.published},
    ),
    Stage(
        "flows",
        reads=(BRONZE,),
        writes=(Data(tables.SERIES, "source=flows"), Data(tables.FLOWS_SEGMENT)),
        reads_dates="window",
        writes_dates="until_run_date",
        work=_flows,
        describe=lambda r: _describe_flows(r.report.flows),
        counts=lambda r: _flow_counts(r.report.flows),
        not_applicable=_flows_not_applicable,
    ),
    Stage(
        "retention",
        reads=(),
        writes=(),
        work=_retention,
        describe=lambda r: _describe_retention(r.report.retention),
        counts=lambda r: {},
        checked=False,
    ),
    Stage(
        "series",
        reads=(Data(tables.DENSITY),),
        writes=(Data(tables.SERIES, "source=density"),),
        reads_dates="until_run_date",
        work=_series,
        describe=lambda r: f"{r.report.series_rows:,} series-days",
        counts=lambda r: {"rows_out": r.report.series_rows},
    ),
    Stage(
        "people",
        reads=(
            Data(tables.DENSITY),
            Data(tables.DENSITY_BY_GROUP),
            *(Data(tables.SERIES, f"source={s}") for s in _OFFICIAL),
            Data("people_config"),
        ),
        writes=(Data(tables.PEOPLE), Data(tables.SERIES, f"source={PEOPLE_SOURCE}")),
        reads_dates="until_run_date",
        work=_people,
        describe=lambda r: people.describe(r.report.people),
        counts=lambda r: {"rows_out": r.report.people.series_rows} if r.report.people else {},
        not_applicable=_people_not_applicable,
        cleanup=_clear_people,
        after=_after_people,
        checked=False,
    ),
    Stage(
        "forecast",
        reads=(Data(tables.SERIES), Data(tables.PEOPLE)),
        writes=(HANDOFF,),
        work=_forecast,
        describe=lambda r: _describe_forecast(r.report.forecast),
        counts=lambda r: _forecast_counts(r.report),
        after=lambda r: _warn_stale(r.report.forecast, r.run_date, r.console),
    ),
    Stage(
        "publish",
        reads=(HANDOFF, Data(tables.DENSITY)),
        writes=(),
        reads_dates="release_cells",
        work=_publish_stage,
        describe=lambda r: _describe_release(r.report),
        counts=lambda r: _publish_counts(r.report),
        before=lambda r: r.stages.gate(),
        after=_after_publish,
        checked=False,
    ),
)


def _run_stages(r: _Run) -> None:
    for stage in PIPELINE:
        if why := stage.not_applicable(r):
            r.stages.not_applicable(stage.name, why)
            if stage.cleanup and (r.stages.only is None or stage.name in r.stages.only):
                stage.cleanup(r)
            continue
        inputs = r.fingerprint(stage.reads, stage.reads_dates)
        outputs = (lambda s=stage: r.fingerprint(s.writes, s.writes_dates)) if stage.writes else None
        if not r.stages.wanted(stage.name, inputs, outputs):
            continue
        if stage.before:
            stage.before(r)
        with r.stages.run(stage.name, lambda s=stage: s.describe(r), lambda s=stage: s.counts(r)):
            stage.work(r)
        if stage.checked:
            r.stages.check(stage.name, _checked_result(r.report, stage.name))
        if stage.after:
            stage.after(r)


def _checked_result(report: NightlyReport, name: str) -> object:
    """What a stage's QA checks are computed from (jobs.orchestration.qa.stage_values)."""
    return report.series_rows if name == "series" else getattr(report, name)


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
            "people_model": _people_model(settings, report),
            SCENARIO_NETWORK: _scenario_network(catalogue, report),
            **forecast.procedures_manifest(settings, report.forecast.keys),
        },
        history=report.forecast.history,
        cells=cells,
        totals=None if report.forecast.totals.empty else report.forecast.totals,
    )


def _has_people(report: NightlyReport) -> bool:
    """Whether the run forecast people series (the measurement model ran and the release carries its figures)."""
    return bool((report.forecast.keys["source"] == PEOPLE_SOURCE).any())


def _scenario_network(catalogue: Catalogue, report: NightlyReport) -> dict | None:
    """The route network scenarios run on (jobs.scenario_network), from the released people history; None without
    people series."""
    if not _has_people(report):
        return None
    keys = report.forecast.keys
    sigma = keys.set_index("series_id")["level_sigma"].dropna().to_dict() if "level_sigma" in keys else {}
    return build_network(catalogue, report.forecast.history, level_sigma=sigma).to_dict()


def _people_model(settings: JobSettings, report: NightlyReport) -> dict | None:
    """The measurement model behind the release's people series (gold people_model.json), None without them."""
    if not _has_people(report):
        return None
    return people.read_model(settings)


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
        f"{c.hourly_published:,} of {c.hourly_aggregates:,} cell-hours published; "
        f"{c.group_published:,} of {c.group_aggregates:,} cell-day groups at res {settings.h3_res}"
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
