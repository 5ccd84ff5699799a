"""The ``routecast`` command line."""

from __future__ import annotations

import datetime as dt
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from contracts import tables
from jobs.settings import JobSettings
from serving import cli as serving_cli  # `routecast token|audit`, the API's admin commands

if TYPE_CHECKING:
    from jobs.analysis.truth import Scores

app = typer.Typer(help="routecast: migration-flow forecasts from anonymised mobility density.", no_args_is_help=True)
app.add_typer(serving_cli.token_app, name="token")
app.add_typer(serving_cli.audit_app, name="audit")
app.add_typer(serving_cli.scenario_app, name="scenario")
console = Console(stderr=True)
# Others may not read what routecast writes (docs/design.md): files 0640, folders 0750 at most. Equal to
# jobs.spark.PRIVATE_UMASK, which is not imported here so that commands without Spark do not load pyspark.
PRIVATE_UMASK = 0o027


@app.callback()
def restrict_umask() -> None:
    """Before every command: narrow the process umask by 027 (a tighter one stays as it is).

    Everything a command creates inherits it: the lake, the store, MLflow, the ledger, and the Spark JVM and the
    API server that `serve` and `demo` start in this process (Hadoop's own umask is jobs.spark's business).
    """
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)  # os.umask returns the previous mask: keep its bits


def main() -> None:
    """The ``routecast`` command. Settings that fail validation (e.g. a weak ROUTECAST_DP_SECRET) end it with one
    message naming each variable, exit code 2, instead of a traceback; the value itself is never printed."""
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:
        problems = "; ".join(
            ("ROUTECAST_" + "_".join(map(str, e["loc"])).upper() + ": " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors(include_input=False)
        )
        console.print(f"[red]error:[/] invalid settings: {problems}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


class CountsSource(StrEnum):
    """The official sources ``ingest-counts`` reads (jobs.stages.counts.SOURCES)."""

    frontex = "frontex"
    uk_channel = "uk-channel"
    iom_dtm = "iom-dtm"
    generic = "generic"
    landings = "landings"


class Freq(StrEnum):
    D = "D"
    W = "W"
    M = "M"


DateOpt = Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Run date (UTC), YYYY-MM-DD.")]
PoolOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="SOURCE=FILE: another counts file whose series the monthly forecasts' pooled model learns from too "
        "(repeatable; e.g. iom-dtm=iom_dtm_med_arrivals.csv beside a Frontex file, as the nightly run pools both)."
    ),
]


def _pool(values: list[str] | None) -> list[tuple[Path, str]]:
    """``--pool SOURCE=FILE`` values as (path, source); a malformed one ends the command with the reason."""
    out = []
    for value in values or []:
        source, sep, path = value.partition("=")
        if not sep or source not in {s.value for s in CountsSource} or not Path(path).is_file():
            console.print(
                f"[red]error:[/] --pool {value!r}: write SOURCE=FILE, SOURCE one of "
                f"{', '.join(s.value for s in CountsSource)}, FILE an existing counts file",
                highlight=False,
            )
            raise typer.Exit(code=2)
        out.append((Path(path), source))
    return out


def _yesterday() -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


class Scale(StrEnum):
    """The simulator's size presets (simulator/simulator.toml, [scales.*])."""

    small = "small"
    medium = "medium"
    large = "large"


def _load_sim_config(config: Path | None, scale: str):
    """The simulator config, checked before any Spark starts; a bad file is one clear line and exit code 2."""
    from simulator.config import DEFAULT_CONFIG_PATH, SimulatorConfigError, load_config

    try:
        cfg = load_config(config)
        if scale not in cfg.scales:
            name = (config or DEFAULT_CONFIG_PATH).name
            raise SimulatorConfigError(f"{name}: no [scales.{scale}]; it has {', '.join(cfg.scales) or 'none'}")
    except SimulatorConfigError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    return cfg


def _simulate(spark, settings: JobSettings, end: dt.date, scale: str, days: int | None, cfg):
    from simulator.run import simulate

    n_days = days or cfg.scales[scale].days
    start = end - dt.timedelta(days=n_days - 1)
    with console.status(f"[bold]simulate[/] {scale} scale, {start} .. {end} (Spark) …"):
        report = simulate(spark, settings, start, n_days, scale, config=cfg)
    console.print(
        f"[green]✓[/] simulate  {report.seconds:5.1f} s  {report.pings:,} pings "
        f"({report.migrant_pings:,} from migrants, {report.resident_pings:,} from {report.residents:,} residents), "
        f"{report.journeys:,} journeys on {len(report.routes)} routes ({report.diverted:,} diverted), "
        f"{start} .. {end}",
        highlight=False,
    )
    console.print(f"          pings → {report.pings_path}   ground truth → {report.truth_path}", highlight=False)
    for path in report.official_paths:  # what the official sources would publish (routecast ingest-counts reads it)
        console.print(f"          official figures of the simulated arrivals → {path}", highlight=False)
    return report


def _print_people_scores(scores: Scores | None) -> None:
    """One line: how well the people present per route match the simulated truth (``routecast truth`` has it all);
    ``scores``: what the nightly run scored and logged (None: not scored, e.g. no people stage)."""
    import pandas as pd

    if scores is None:
        console.print("[yellow]![/] people not scored against the truth (no people estimated)", highlight=False)
        return
    shown = ", ".join(
        f"{r.route_id} " + ("blind" if pd.isna(r.r) else f"r {r.r:.2f}, weekly APE {r.weekly_ape:.2f}")
        for r in scores.presence.itertuples()
    )
    console.print(f"people present vs simulated people (routecast truth for all): {shown}", highlight=False)


def _ingest_official(spark, settings: JobSettings, paths: tuple[Path, ...]) -> None:
    """Ingest what the simulated world's official sources publish (the people model is fitted on it)."""
    from jobs.stages.counts import ingest_counts
    from simulator.official import FILE_SOURCES

    for path in paths:
        report = ingest_counts(spark, settings, path, FILE_SOURCES[path.name])
        console.print(f"[green]✓[/] ingest-counts {path.name}: {report.accepted:,} rows", highlight=False)


ScaleOpt = Annotated[Scale, typer.Option(help="Size preset from the simulator config.")]
EndOpt = Annotated[
    dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last simulated day (default yesterday).")
]
SimDaysOpt = Annotated[int | None, typer.Option(min=1, help="Days to simulate (default: the scale's days).")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(exists=True, dir_okay=False, help="Simulator config (default: simulator/simulator.toml)."),
]


@app.command()
def simulate(
    scale: ScaleOpt = Scale.small,
    end: EndOpt = None,
    days: SimDaysOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Simulate phone pings along the routes (a Spark job) into var/raw/pings, and the ground truth into var/truth."""
    from jobs.spark import build_spark

    cfg = _load_sim_config(config, scale.value)
    settings = JobSettings()
    last = end.date() if end else _yesterday()
    spark = build_spark(settings)
    try:
        _simulate(spark, settings, last, scale.value, days, cfg)
    finally:
        spark.stop()
    first = last - dt.timedelta(days=(days or cfg.scales[scale.value].days) - 1)
    console.print(
        f"next:  routecast nightly --date {last} --since {first}   then   routecast truth --date {last}",
        highlight=False,
    )


@app.command()
def truth(
    date: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Also score the published density (Pearson r per route, up to DATE; starts Spark).",
        ),
    ] = None,
    date_from: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="First day the people are scored on (default: the first with both)."),
    ] = None,
    date_to: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last day the people are scored on (default: the last with both)."),
    ] = None,
    log: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Also log the scores to MLflow (experiment routecast-truth).")
    ] = True,
) -> None:
    """How well the published figures match the simulated truth, against the targets.

    People (no Spark): per route, people present per day; per crossing point, people crossing per day (the 10 busiest
    arrival points, then the rest summed up); per people series of the current release, its forecasts beside naive
    baselines on the days after its as_of that the truth covers. With --date, first the density: Pearson r of each
    route's published density excess with the true people, up to DATE.
    """
    from jobs.analysis.truth import EXPERIMENT, PeopleMissing, TruthMissing, log_to_mlflow, printable
    from jobs.analysis.truth import score_against_truth as score

    settings = JobSettings()
    if not (settings.truth_dir / "segment_people").exists():
        console.print(
            f"[red]error:[/] no simulated truth under {settings.truth_dir}: the truth exists only for a simulated "
            "world; run routecast simulate, then routecast nightly",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=2)
    if date is not None:
        _density_truth(settings, date.date())
    try:
        scores = score(settings, date_from.date() if date_from else None, date_to.date() if date_to else None)
    except (TruthMissing, PeopleMissing) as exc:
        if date is not None:  # the density was scored: say why the people were not, and stop there
            console.print(f"[yellow]![/] people not scored: {exc}", highlight=False, soft_wrap=True)
            return
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    out = Console()
    out = out if out.is_terminal else Console(width=240)  # piped: do not squeeze the tables into 80 columns
    for part in printable(scores):
        out.print(part, highlight=False, markup=False)
    if log:
        run_id = log_to_mlflow(scores, settings.tracking_uri, experiment=EXPERIMENT)
        console.print(
            f"MLflow run {run_id} in experiment {EXPERIMENT} at {settings.tracking_uri}",
            highlight=False,
            soft_wrap=True,
        )


def _density_truth(settings: JobSettings, date: dt.date) -> None:
    """Print Pearson r of each route's published density excess with the true people, up to ``date``."""
    from jobs.spark import build_spark
    from simulator.truth import truth_correlation

    if not settings.lake(tables.SERIES).exists():
        console.print("[red]error:[/] no gold series to score the density of; run routecast nightly first")
        raise typer.Exit(code=2)
    spark = build_spark(settings)
    try:
        table = truth_correlation(spark, settings, date)
    finally:
        spark.stop()
    if table.empty:
        console.print("[red]error:[/] no days with both density series and simulated truth; run simulate and nightly")
        raise typer.Exit(code=1)
    typer.echo("Density (devices): Pearson r of each route's excess with the true people on it")
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


SinceOpt = Annotated[
    dt.datetime | None,
    typer.Option(
        formats=["%Y-%m-%d"],
        help="First date to (re)process (default: DATE minus the bronze retention, ROUTECAST_BRONZE_RETENTION_DAYS).",
    ),
]


ForceOpt = Annotated[bool, typer.Option("--force", help="Redo stages the ledger records as done for the date.")]
RawOpt = Annotated[
    Path | None,
    typer.Option(
        help="Folder of raw ping Parquet files (default var/raw/pings), or the tiles file when "
        "ROUTECAST_DENSITY_INPUT=tiles."
    ),
]


def _run_dates(dates: list[dt.date], raw: Path | None, since: dt.date | None, force: bool, only=None) -> None:
    """Run the chain (or ``only`` some stages) for each date in turn; stop at the first failure (exit 1), or
    refuse when another run holds a date (exit 3)."""
    from jobs.orchestration.pipeline import nightly as run_nightly
    from jobs.orchestration.qa import QAFailed
    from jobs.orchestration.runs import RunLocked
    from jobs.spark import build_spark

    settings = JobSettings()
    started: list = []

    def spark():  # started when the first stage is due: a refused or all-done run pays no JVM start-up
        if not started:
            started.append(build_spark(settings))
        return started[0]

    try:
        for n, date in enumerate(dates, 1):
            if len(dates) > 1:
                console.rule(f"{date} ({n}/{len(dates)})")
            try:
                report = run_nightly(
                    spark, settings, date, raw_path=raw, since=since, console=console, force=force, only=only
                )
            except QAFailed as exc:
                console.print(
                    f"[red]failed:[/] {date}: no release — blocking QA checks failed:\n{exc}\n"
                    "The previous release keeps serving. Fix the input and run again, or change the thresholds "
                    "(ROUTECAST_QA_CONFIG; see jobs/orchestration/qa.toml).",
                    highlight=False,
                )
                raise typer.Exit(code=1) from None
            except RunLocked as exc:
                console.print(f"[red]refused:[/] {exc}", highlight=False)
                raise typer.Exit(code=3) from None
            except Exception as exc:
                console.print(
                    f"[red]failed:[/] {date}: {type(exc).__name__}: {exc}\n"
                    f"The stages done so far are kept; run the same command again to resume "
                    f"(routecast status --date {date} shows where it stopped).",
                    highlight=False,
                )
                raise typer.Exit(code=1) from None
            console.print(f"run {report.run_id}: {len(report.seconds)} stages run, {len(report.skipped)} skipped")
    finally:
        for session in started:
            session.stop()
    _print_where(settings)


@app.command()
def nightly(date: DateOpt, raw: RawOpt = None, since: SinceOpt = None, force: ForceOpt = False) -> None:
    """Run ingest → aggregate → flows → retention → series → forecast → publish for DATE, from the data up to DATE.

    Stages the run ledger records as done for DATE are skipped (a killed run resumes where it stopped) unless
    --force; a second run for the same date while one is running is refused (exit 3).
    """
    _run_dates([date.date()], raw, since.date() if since else None, force)


@app.command()
def backfill(
    start: Annotated[dt.datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First run date.")],
    end: Annotated[dt.datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last run date (inclusive).")],
    raw: RawOpt = None,
    force: ForceOpt = False,
) -> None:
    """Run the nightly chain for every date from --from to --to, oldest first, each as its own ledgered run."""
    first, last = start.date(), end.date()
    if last < first:
        console.print(f"[red]error:[/] --to {last} is before --from {first}")
        raise typer.Exit(code=2)
    dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    _run_dates(dates, raw, None, force)


class StageName(StrEnum):
    ingest = "ingest"
    aggregate = "aggregate"
    flows = "flows"
    retention = "retention"
    series = "series"
    people = "people"
    forecast = "forecast"
    publish = "publish"


@app.command()
def stage(
    name: Annotated[StageName, typer.Argument(help="The stage to run.")],
    date: DateOpt,
    raw: RawOpt = None,
    since: SinceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Run one stage of the nightly chain for DATE (for schedulers that run a task per stage, e.g. Airflow).

    Skipped when the ledger records it done since its inputs last changed, unless --force.
    """
    _run_dates([date.date()], raw, since.date() if since else None, force, only={name.value})


@app.command()
def status(
    date: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Only the runs for this date.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most recent stage attempts to show.")] = 40,
) -> None:
    """The run ledger: recent stage attempts, newest first (status, rows in/out, time, MLflow run, release)."""
    from rich.table import Table

    from jobs.orchestration.runs import Ledger

    settings = JobSettings()
    rows = Ledger(settings.runs_dir).rows(run_date=date.date() if date else None, limit=limit)
    if not rows:
        console.print(f"no runs recorded in {settings.runs_dir}")
        return
    colour = {"done": "green", "failed": "red", "interrupted": "red", "running": "yellow", "skipped": "dim"}
    table = Table(
        "run date",
        "run",
        "stage",
        "status",
        "started (UTC)",
        "s",
        "rows in",
        "rows out",
        "MLflow run / release",
        "detail",
    )
    for r in reversed(rows):
        table.add_row(
            str(r.run_date),
            r.run_id,
            r.stage,
            f"[{colour.get(r.status, 'white')}]{r.status}[/]",
            r.started[:19].replace("T", " "),
            "" if r.seconds is None else f"{r.seconds:.1f}",
            "" if r.rows_in is None else f"{r.rows_in:,}",
            "" if r.rows_out is None else f"{r.rows_out:,}",
            r.release_id or (r.mlflow_run_id or "")[:12],
            (r.detail or "")[:60],
        )
    console.print(table)


@app.command()
def qa(
    date: DateOpt,
    everything: Annotated[bool, typer.Option("--all", help="Also the informational values.")] = False,
) -> None:
    """The QA checks of DATE (the latest value of each, whichever run computed it): value, range, pass, blocking."""
    from jobs.orchestration.qa import QAStore, summary
    from jobs.orchestration.runs import Ledger

    settings = JobSettings()
    results = QAStore(Ledger(settings.runs_dir).path).results(date.date())
    if not results:
        console.print(f"no QA checks recorded for {date.date()} in {settings.runs_dir}")
        raise typer.Exit(code=1)
    console.print(summary(results, everything=everything))


@app.command("aggregate")
def aggregate_cmd(date: DateOpt, since: SinceOpt = None) -> None:
    """Aggregate bronze pings from SINCE to DATE into suppressed H3 density in silver (the Spark job alone).

    Runs on the Spark profile of the settings, so it can be submitted to a cluster:
    ROUTECAST_SPARK_PROFILE=cluster spark-submit --master spark://HOST:7077 routecast/cli.py aggregate --date D
    """
    from jobs.orchestration.pipeline import describe_aggregate
    from jobs.spark import build_spark
    from jobs.stages import aggregate

    settings = JobSettings()
    spark = build_spark(settings)
    try:
        counts = aggregate.run(spark, settings, date.date(), since=since.date() if since else None)
    finally:
        spark.stop()
    console.print(f"[green]✓[/] aggregate  {describe_aggregate(counts, settings)}", highlight=False)


@app.command("privacy-ledger")
def privacy_ledger_cmd(
    period: Annotated[str | None, typer.Option(help="One month, YYYY-MM: list its charges.")] = None,
) -> None:
    """The differential-privacy ledger: epsilon spent per month against the budget, or one month's charges."""
    from jobs.privacy.ledger import ledger_entries, ledger_summary

    settings = JobSettings()
    table = ledger_entries(settings, period) if period else ledger_summary(settings)
    if table.empty:
        console.print(
            f"no privacy charges{' in ' + period if period else ''} (ledger: {settings.lake(tables.PRIVACY_LEDGER)})"
        )
        return
    typer.echo(table.to_string(index=False))


@app.command("ingest-counts")
def ingest_counts_cmd(
    file: Annotated[Path, typer.Argument(help="The counts file (CSV).", exists=True, dir_okay=False)],
    source: Annotated[CountsSource, typer.Option(help="Which official source the file comes from.")],
    freq: Annotated[Freq | None, typer.Option(help="Frequency, for --source generic only (default D).")] = None,
) -> None:
    """Validate an official counts file into route-level gold series; bad rows go to quarantine."""
    from jobs.spark import build_spark
    from jobs.stages.counts import CountsFileError, ingest_counts

    settings = JobSettings()
    try:
        spark = build_spark(settings)
        try:
            report = ingest_counts(spark, settings, file, source.value, freq=freq.value if freq else None)
        finally:
            spark.stop()
    except (CountsFileError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    for line in report.summary_lines():
        console.print(line, highlight=False)


class OutputFormat(StrEnum):
    csv = "csv"
    json = "json"


@app.command("forecast")
def forecast_cmd(
    file: Annotated[Path, typer.Argument(help="The counts file (CSV).", exists=True, dir_okay=False)],
    source: Annotated[CountsSource, typer.Option(help="Which source the file comes from (as ingest-counts).")],
    as_of: Annotated[
        dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Use only periods ended by this date, YYYY-MM-DD.")
    ],
    horizon: Annotated[int, typer.Option(min=1, help="Periods to forecast after --as-of.")],
    freq: Annotated[Freq | None, typer.Option(help="D, W or M (default: the source's; daily sums up).")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="csv or json, to stdout.")] = OutputFormat.csv,
    exceeds: Annotated[
        float | None, typer.Option(min=0, help="Also give the probability that each total is above this number.")
    ] = None,
    pool: PoolOpt = None,
) -> None:
    """Forecast each route of a counts file after --as-of with 80 % and 95 % intervals (no Spark, nothing written).

    Columns: route, ds, yhat, lo80, hi80, lo95, hi95, model. Then, after a blank line (csv) or under "totals"
    (json), the totals of the next days / weeks / months with intervals of the total itself (not sums of the
    periods' bounds), and with --exceeds the probability that a total is above it (p_bound "at least"/"at most"
    when the number is beyond the calibrated range). Notes (stale or refused routes) go to standard error.
    """
    import json
    import sys

    from jobs.analysis.adhoc import adhoc_forecast
    from jobs.stages.counts import CountsFileError

    try:
        result = adhoc_forecast(
            file, source.value, as_of.date(), horizon, freq.value if freq else None, exceeds=exceeds, pool=_pool(pool)
        )
    except (CountsFileError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    totals = result.totals.assign(start=result.totals["start"].astype(str), end=result.totals["end"].astype(str))
    if output is OutputFormat.csv:
        result.table.to_csv(sys.stdout, index=False, float_format="%.2f")
        if not totals.empty:
            sys.stdout.write("\n")
            totals.to_csv(sys.stdout, index=False, float_format="%.2f")
    else:
        forecasts = json.loads(result.table.assign(ds=result.table["ds"].astype(str)).to_json(orient="records"))
        sys.stdout.write(json.dumps({"forecasts": forecasts, "totals": json.loads(totals.to_json(orient="records"))}))
        sys.stdout.write("\n")


@app.command("evaluate")
def evaluate_cmd(
    file: Annotated[Path, typer.Argument(help="The counts file (CSV).", exists=True, dir_okay=False)],
    source: Annotated[CountsSource, typer.Option(help="Which source the file comes from (as ingest-counts).")],
    freq: Annotated[Freq | None, typer.Option(help="D, W or M (default: the source's; daily sums up).")] = None,
    origins: Annotated[
        int | None, typer.Option(min=1, help="Forecast origins (default: 52 weekly for days, 52 weeks, 24 months).")
    ] = None,
    step: Annotated[int | None, typer.Option(min=1, help="Periods between origins (default: 7 days, else 1).")] = None,
    horizon: Annotated[
        int | None, typer.Option(min=1, help="Periods ahead (default: 28 days, 4 weeks, 3 months).")
    ] = None,
    until: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Evaluate an earlier window: only periods ended by this date."),
    ] = None,
    pool: PoolOpt = None,
) -> None:
    """Score routecast's forecasts of a counts file over its last origins against naive and seasonal naive.

    At each origin the product's own procedure (the nightly run's, the API's and `routecast forecast`'s) sees only
    the periods before it. Prints, per horizon and per total of the next k periods, the MAE of the champion and of
    the baselines, the ratio to the better baseline and the coverage of the 80 % and 95 % intervals; writes
    var/evaluate/ and logs a run to the MLflow experiment routecast-evaluate.
    """
    from jobs.analysis.evaluate import EvaluationError, evaluate_file, summary_markdown
    from jobs.stages.counts import CountsFileError

    settings = JobSettings()
    pooled = _pool(pool)
    try:
        with console.status(f"evaluating {file.name}") as status:
            result = evaluate_file(
                file,
                source.value,
                freq=freq.value if freq else None,
                origins=origins,
                step=step,
                horizon=horizon,
                until=until.date() if until else None,
                settings=settings,
                progress=lambda msg: status.update(msg),
                pool=pooled,
            )
    except (CountsFileError, EvaluationError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    typer.echo(summary_markdown(result, file.name))
    typer.echo(f"written: {result.output_dir}  MLflow run: {result.run_id}")


# On the `scenario` group of serving.cli (beside `run`), but here: it reads the simulator's history or official
# counts, which the API never reads, and writes a file the API then uses.
@serving_cli.scenario_app.command("estimate")
def scenario_estimate(
    counts: Annotated[
        Path,
        typer.Argument(
            help="People passing crossing points per day: the simulator's truth folder (var/truth) or a CSV/parquet "
            "with date, route_id, crossing_point_id, people."
        ),
    ],
    closed: Annotated[str, typer.Option(help="The target that was closed, e.g. point:central_mediterranean/zuwara.")],
    start: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="First day of the closure.")],
    end: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Last day of the closure (inclusive).")],
    to: Annotated[
        list[str] | None, typer.Option(help="Where blocked people may have diverted (a target; repeatable).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="The parameters file to write or update (default: <var_dir>/scenario-parameters.json)."),
    ] = None,
    as_default: Annotated[
        bool, typer.Option("--as-default", help="Use the estimate for closures of any target, not only this one.")
    ] = False,
    before_days: Annotated[int, typer.Option(min=7, help="Days before the closure that give the usual level.")] = 28,
    release_days: Annotated[int, typer.Option(min=1, help="Days after the reopening read as the backlog.")] = 14,
    divert_days: Annotated[int, typer.Option(min=0, help="Days after the end still read for diversion.")] = 35,
    release: Annotated[str | None, typer.Option(help="Release whose route network resolves targets.")] = None,
    source: Annotated[
        str | None, typer.Option(help="What the counts are, kept with each parameter (default: from the path).")
    ] = None,
) -> None:
    """Estimate what people did when a crossing point was closed before (who diverted where, after how long, how fast
    the backlog left), from daily counts, and write the parameters scenarios run with.

    Prints each measured quantity with its 90 % interval and writes (or adds to) a parameters file: pass it to
    `routecast scenario run --parameters`, or set ROUTECAST_SCENARIO_PARAMETERS for the API. How it works and how
    well it recovers the simulator's behaviour: docs/scenarios.md.
    """
    from rich.table import Table

    from forecasting.scenario import DEFAULT_PARAMETERS, ScenarioError, Target, load_parameters
    from jobs.analysis.behaviour import estimate_closure, read_point_counts, target_key, with_estimate
    from jobs.analysis.counterfactual import TRUTH_ARRIVALS, read_release

    settings = JobSettings()
    out = out or settings.var_dir / "scenario-parameters.json"
    try:
        table = read_point_counts(counts)
        network = read_release(settings.store_dir, release).network
        closed_target = Target.model_validate(closed)
        destinations = [Target.model_validate(t) for t in (to or [])]
        history = (counts / TRUTH_ARRIVALS).exists()
        label = source or ("the simulator's history" if history else f"counts in {counts.name}")
        estimate = estimate_closure(
            table, network, closed_target, start.date(), end.date(), destinations, source=label,
            before_days=before_days, release_days=release_days, divert_days=divert_days,
        )  # fmt: skip
        base = load_parameters(out) if out.exists() else DEFAULT_PARAMETERS
        key = target_key(network, closed_target)
    except (ScenarioError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    grid = Table(title=f"{key}, closed {start.date()} to {end.date()}: what the counts show (90 % interval)")
    for column in ("quantity", "unit", "estimate", "90 % interval", "read with the mean level"):
        grid.add_column(column, justify="left" if column in ("quantity", "unit") else "right")
    for row in estimate.table.itertuples(index=False):
        fmt = "{:,.2f}" if row.unit == "share" else "{:,.1f}"
        grid.add_row(
            row.quantity, row.unit, fmt.format(row.estimate), f"[{fmt.format(row.lo90)}, {fmt.format(row.hi90)}]",
            "" if row.observed != row.observed else fmt.format(row.observed),
        )  # fmt: skip
    Console(soft_wrap=False, width=200).print(grid)
    for note in estimate.notes:
        console.print(f"[yellow]![/] {note}", highlight=False)
    updated = with_estimate(base, key, estimate, as_default=as_default)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(updated.model_dump_json(indent=2))
    tmp.replace(out)
    console.print(
        f"written: {out} (closures of {key}{' and, by default, any other' if as_default else ''}); use it with "
        f"`routecast scenario run --parameters {out}` or ROUTECAST_SCENARIO_PARAMETERS={out}",
        highlight=False,
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the published forecasts (FastAPI on uvicorn)."""
    import uvicorn

    # Imported by name: the API is its own deployable and never imports jobs.
    uvicorn.run("serving.app:create_app", factory=True, host=host, port=port)


@app.command()
def demo(
    scale: ScaleOpt = Scale.medium,
    end: EndOpt = None,
    serve_api: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the API afterwards.")] = True,
    host: Annotated[str, typer.Option(help="Interface for the API.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the API.")] = 8000,
) -> None:
    """Simulate pings, run the nightly pipeline on them, score density against the truth, then serve the API."""
    from jobs.orchestration.pipeline import nightly as run_nightly
    from jobs.spark import build_spark
    from simulator.truth import truth_correlation

    cfg = _load_sim_config(None, scale.value)
    settings = JobSettings()
    run_date = end.date() if end else _yesterday()
    with console.status("[bold]starting Spark[/] (local mode, spark-conf/local.conf) …"):
        spark = build_spark(settings)
    try:
        sim = _simulate(spark, settings, run_date, scale.value, None, cfg)
        _ingest_official(spark, settings, sim.official_paths)
        first_day = run_date - dt.timedelta(days=cfg.scales[scale.value].days - 1)
        report = run_nightly(spark, settings, run_date, raw_path=sim.pings_path, since=first_day, console=console)
        fit = truth_correlation(spark, settings, run_date)
    finally:
        spark.stop()
    total = sum(report.seconds.values())
    console.print(f"pipeline done in {total:.0f} s")
    scores = ", ".join(f"{r.route_id} {r.pearson_r:.2f}" for r in fit.itertuples())
    console.print(f"density excess (devices) vs simulated people on the route (Pearson r): {scores}", highlight=False)
    _print_people_scores(report.truth)
    _print_where(settings)
    if serve_api:
        from serving.auth import create_token
        from serving.settings import ServingSettings

        # Every /v1 read needs a token: the demo issues one (admin, all routes, 12 h) so the examples work as printed.
        token = create_token(ServingSettings(), subject="demo", role="admin", routes=None, ttl=dt.timedelta(hours=12))
        base = f"http://{host}:{port}"
        console.print(
            f"serving on {base} (Ctrl-C stops); OpenAPI at {base}/docs. A demo token (admin, all routes, 12 h):\n"
            f"  export TOKEN={token}\n"
            f"The map: open {base}/map and paste the token. The API:\n"
            f"  curl -H \"Authorization: Bearer $TOKEN\" '{base}/v1/crossing-points/dover/arrivals?days=7'\n"
            f"  curl -H \"Authorization: Bearer $TOKEN\" '{base}/v1/routes/channel/forecast?horizon=14&history=28'\n"
            "Other tokens: routecast token create --role analyst|planner|admin --routes ROUTE,... --ttl 8h",
            highlight=False,
            soft_wrap=True,
        )
        serve(host=host, port=port)


experiment_app = typer.Typer(help="Declared experiments (experiments/<name>/experiment.toml).", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("list")
def experiment_list() -> None:
    """The declared experiments and their questions."""
    from jobs.analysis.experiment import DEFAULT_EXPERIMENTS_DIR, load_experiment

    for path in sorted(DEFAULT_EXPERIMENTS_DIR.glob("*/experiment.toml")):
        spec = load_experiment(path.parent.name)
        typer.echo(f"{spec.name}: {' '.join(spec.question.split())}")


@experiment_app.command("run")
def experiment_run(
    name: Annotated[str, typer.Argument(help="The experiment: a folder of experiments/ (see `experiment list`).")],
    data_dir: Annotated[
        Path, typer.Option(help="Folder holding the experiment's data file, e.g. ../shared/data/real.", file_okay=False)
    ],
    variant: Annotated[
        list[str] | None, typer.Option(help="Run only these variants (main = [selection]); default all.")
    ] = None,
) -> None:
    """Roll the pipeline's model selection over past origins of a real counts file, beside the baselines.

    Prints the result table (markdown), writes var/experiments/<name>/ and logs a parent run with one nested run per
    variant to the MLflow experiment routecast-experiments.
    """
    from jobs.analysis.experiment import ExperimentError, load_experiment, run_experiment

    settings = JobSettings()
    try:
        spec = load_experiment(name)
        if variant:
            unknown = [v for v in variant if v not in spec.variant_names]
            if unknown:
                raise ExperimentError(f"unknown variant(s) {unknown}; declared: {', '.join(spec.variant_names)}")
            spec = spec.model_copy(update={"variants": {v: spec.variants[v] for v in variant if v != "main"}})
        with console.status(f"experiment {name}") as status:
            result = run_experiment(spec, data_dir, settings, progress=lambda msg: status.update(msg))
    except ExperimentError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    typer.echo((result.output_dir / "summary.md").read_text())
    console.print(f"written: {result.output_dir.resolve()}")
    console.print(f"MLflow run {result.run_id} in experiment routecast-experiments at {settings.tracking_uri}")


@app.command()
def models() -> None:
    """The registered forecaster's versions, newest first: which was promoted to champion, on what evidence."""
    import pandas as pd

    from forecasting.tracking import champion_history

    settings = JobSettings()
    history = champion_history(settings.tracking_uri, settings.registered_model)
    if history.empty:
        console.print(f"no versions of {settings.registered_model} at {settings.tracking_uri}; run the pipeline first")
        raise typer.Exit(code=1)
    from rich.table import Table

    table = Table(title=f"{settings.registered_model} at {settings.tracking_uri}")
    for column in ("version", "created", "run", "promoted", "champion now", "MASE (chosen)", "series", "reason"):
        table.add_column(column)
    for r in history.itertuples():
        table.add_row(
            str(r.version),
            f"{r.created:%Y-%m-%d %H:%M}",
            f"{r.run_name} ({str(r.run_id)[:8]})",
            "yes" if r.promoted else "no",
            "◀ champion" if r.is_champion_now else "",
            "–" if pd.isna(r.mase_mean_chosen) else f"{r.mase_mean_chosen:.3f}",
            "–" if pd.isna(r.n_series) else str(r.n_series),
            str(r.reason),
        )
    out = Console()
    # Piped (a file, a log): do not squeeze the run names and reasons into 80 columns.
    (out if out.is_terminal else Console(width=220)).print(table)


def _print_where(settings: JobSettings) -> None:
    console.print(f"store:  {settings.store_dir.resolve()}")
    console.print(f"MLflow: {settings.tracking_uri}")
    console.print(f"        mlflow ui --backend-store-uri {settings.tracking_uri}")


if __name__ == "__main__":
    app()
