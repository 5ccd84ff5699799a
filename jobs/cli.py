"""The ``routecast`` command line."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobs.settings import JobSettings

app = typer.Typer(help="routecast: migration-flow forecasts from anonymised mobility density.", no_args_is_help=True)
console = Console(stderr=True)


class CountsSource(StrEnum):
    """The official sources ``ingest-counts`` reads (jobs.counts.SOURCES)."""

    frontex = "frontex"
    uk_channel = "uk-channel"
    iom_dtm = "iom-dtm"
    generic = "generic"


class Freq(StrEnum):
    D = "D"
    W = "W"
    M = "M"


DateOpt = Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="Run date (UTC), YYYY-MM-DD.")]


def _yesterday() -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def _generate(settings: JobSettings, end: dt.date, days: int, seed: int) -> Path:
    from geo.catalogue import load_catalogue
    from jobs.synth import SynthConfig, generate_pings

    cfg = SynthConfig(start=end - dt.timedelta(days=days - 1), days=days, seed=seed)
    out = settings.raw_dir / "pings"
    columns = (TextColumn("[bold]generate[/] pings"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("days", total=days)
        rows = generate_pings(load_catalogue(), cfg, out, on_day=lambda _d: progress.advance(task))
    console.print(f"[green]✓[/] generate  {rows:,} synthetic pings, {cfg.start} .. {cfg.end} → {out}")
    return out


@app.command()
def generate(
    end: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day (default yesterday).")] = None,
    days: Annotated[int, typer.Option(min=1, help="Number of days.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Write a small synthetic ping data set under var/raw/pings (the simple generator)."""
    _generate(JobSettings(), end.date() if end else _yesterday(), days, seed)


@app.command()
def nightly(
    date: DateOpt,
    raw: Annotated[Path | None, typer.Option(help="Folder of raw ping Parquet files (default var/raw/pings).")] = None,
) -> None:
    """Run ingest → aggregate → series → forecast → publish for DATE, from the data up to DATE."""
    from jobs.pipeline import nightly as run_nightly
    from jobs.spark import build_spark

    settings = JobSettings()
    spark = build_spark(settings)
    try:
        run_nightly(spark, settings, date.date(), raw_path=raw, console=console)
    finally:
        spark.stop()
    _print_where(settings)


@app.command("ingest-counts")
def ingest_counts_cmd(
    file: Annotated[Path, typer.Argument(help="The counts file (CSV).", exists=True, dir_okay=False)],
    source: Annotated[CountsSource, typer.Option(help="Which official source the file comes from.")],
    freq: Annotated[Freq | None, typer.Option(help="Frequency, for --source generic only (default D).")] = None,
) -> None:
    """Validate an official counts file into route-level gold series; bad rows go to quarantine."""
    from jobs.counts import CountsFileError, ingest_counts
    from jobs.spark import build_spark

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
    days: Annotated[int, typer.Option(min=42, help="Days of synthetic data.")] = 90,
    end: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day (default yesterday).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 7,
    serve_api: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the API afterwards.")] = True,
    host: Annotated[str, typer.Option(help="Interface for the API.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the API.")] = 8000,
) -> None:
    """Generate synthetic pings, run the nightly pipeline on them, then serve the API."""
    from jobs.pipeline import nightly as run_nightly
    from jobs.spark import build_spark

    settings = JobSettings()
    run_date = end.date() if end else _yesterday()
    raw = _generate(settings, run_date, days, seed)
    with console.status("[bold]starting Spark[/] (local mode, spark-conf/local.conf) …"):
        spark = build_spark(settings)
    try:
        report = run_nightly(spark, settings, run_date, raw_path=raw, console=console)
    finally:
        spark.stop()
    total = sum(report.seconds.values())
    console.print(f"pipeline done in {total:.0f} s")
    _print_where(settings)
    if serve_api:
        console.print(
            f"serving on http://{host}:{port}  — try "
            f"curl 'http://{host}:{port}/v1/routes/channel/forecast?horizon=14'  (Ctrl-C stops)"
        )
        serve(host=host, port=port)


def _print_where(settings: JobSettings) -> None:
    console.print(f"store:  {settings.store_dir.resolve()}")
    console.print(f"MLflow: {settings.tracking_uri}")
    console.print(f"        mlflow ui --backend-store-uri {settings.tracking_uri}")


if __name__ == "__main__":
    app()
