"""Benchmark: the Spark aggregate job against the same aggregation in one process (Polars or DuckDB + h3ronpy).

    .venv/bin/python bench/aggregate.py [--pings 2000000 20000000] [--impl spark polars duckdb] [--keep]

For each N: generate N pings of a week into a bronze table (bench/_gen.py; not timed against anything), then run
each implementation in its own child process, read the same bronze Parquet and write silver density (daily and
hourly, partitioned by date and res):

- ``spark``: the real ``jobs.stages.aggregate.run`` with ``JobSettings(var_dir=<tmp>/spark-var)`` (resolutions 5..9,
  hourly, min_devices 15) on the ``local`` profile (spark-conf/local.conf), after a warm-up run on a tiny input;
- ``polars`` / ``duckdb``: bench/_single.py, the same aggregation, one date at a time, on all cores.

Only the aggregation is timed (not the session start or the warm-up). Spark's published rows must be every other
implementation's rows less those its complementary suppression removed (which they do not do), with the same
device counts; the run fails otherwise. Peak RSS is sampled from
/proc for the child's process tree: the driver Python, the JVM and PySpark's Python workers separately.
The machine's other load during each timed run is printed too: figures taken while something else ran are not
comparable.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench`, `jobs` and `geo` importable
    sys.path.insert(0, str(ROOT))

from bench._gen import GenConfig, generate_bronze  # noqa: E402
from bench._procs import MIB, TreePeaks, TreeSampler, busy_cpu_seconds, load_average, tree_cpu_seconds  # noqa: E402
from contracts import tables  # noqa: E402

IMPLS = ("spark", "polars", "duckdb")
SINGLE = ("polars", "duckdb")
WARMUP_PINGS = 50_000
# spark-conf keys that bound Spark's memory and parallelism in local mode.
SPARK_MEMORY_KEYS = (
    "spark.master",
    "spark.driver.memory",
    "spark.sql.shuffle.partitions",
    "spark.sql.execution.arrow.maxRecordsPerBatch",
    "spark.sql.adaptive.enabled",
)


@dataclass
class Result:
    impl: str
    pings: int
    seconds: float
    cpu_seconds: float
    others_cpu_share: float  # share of the machine's CPU used by processes outside this run during it
    counts: dict
    peaks: dict | None = None  # role -> peak RSS bytes, "total", "jvm_flags"

    @property
    def pings_per_s(self) -> float:
        return self.pings / self.seconds


# ----------------------------------------------------------------------------------------------------------------
# Children: one implementation each, so that peak memory is its own


def _child(args: argparse.Namespace) -> None:
    from jobs.settings import JobSettings

    settings = JobSettings(var_dir=Path(args.var))
    since, until = dt.date.fromisoformat(args.since), dt.date.fromisoformat(args.until)
    bronze = settings.lake(tables.BRONZE_PINGS)
    if args.child == "spark":
        from jobs.spark import build_spark
        from jobs.stages import aggregate

        spark = build_spark(settings)
        # The first UDF query of a session is ~10 s slower: warm up on a tiny lake of its own.
        warm = JobSettings(var_dir=Path(args.var).parent / "warmup-var")
        for _ in generate_bronze(GenConfig(WARMUP_PINGS, start=since), warm.lake(tables.BRONZE_PINGS)):
            pass
        aggregate.run(spark, warm, until, since=since)

        def work() -> dict:
            return asdict(aggregate.run(spark, settings, until, since=since))

    else:
        from bench import _single

        run = _single.run_polars if args.child == "polars" else _single.run_duckdb

        def work() -> dict:
            counts = run(bronze, Path(args.out), since, until, settings.resolutions, settings.min_devices)
            return asdict(counts)

    cpu0, busy0, t0 = tree_cpu_seconds(), busy_cpu_seconds(), time.perf_counter()
    counts = work()
    seconds = time.perf_counter() - t0
    cpu, busy = tree_cpu_seconds() - cpu0, busy_cpu_seconds() - busy0
    if args.child == "spark":
        spark.stop()
    others = max(busy - cpu, 0.0) / (seconds * (os.cpu_count() or 1))
    Path(args.result).write_text(
        json.dumps({"seconds": seconds, "cpu_seconds": cpu, "others_cpu_share": others, "counts": counts})
    )


def _run_child(impl: str, n: int, var: Path, out: Path, cfg: GenConfig, result: Path) -> Result:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        impl,
        "--var",
        str(var),
        "--out",
        str(out),
        "--since",
        cfg.dates[0].isoformat(),
        "--until",
        cfg.dates[-1].isoformat(),
        "--result",
        str(result),
    ]
    proc = subprocess.Popen(cmd)
    with TreeSampler(proc.pid) as sampler:
        code = proc.wait()
    if code != 0:
        raise SystemExit(f"{impl} at {n:,} pings failed (exit {code}); see its output above")
    peaks: TreePeaks = sampler.peaks
    data = json.loads(result.read_text())
    return Result(
        impl=impl,
        pings=n,
        seconds=data["seconds"],
        cpu_seconds=data["cpu_seconds"],
        others_cpu_share=data["others_cpu_share"],
        counts=data["counts"],
        peaks={**peaks.roles, "total": peaks.total, "jvm_flags": peaks.jvm_flags, "most_workers": peaks.most_workers},
    )


# ----------------------------------------------------------------------------------------------------------------
# Comparison of published rows


def read_published(table: Path, hourly: bool):
    """A silver density table written by any implementation, in the declared columns, sorted by its keys."""
    import polars as pl

    from jobs.schemas import DENSITY, DENSITY_HOURLY

    schema = DENSITY_HOURLY if hourly else DENSITY
    files = sorted(str(f) for f in table.glob("date=*/res=*/*.parquet") if not f.name.startswith(("_", ".")))
    if not files:
        return None
    keys = ["date", "res", "cell", *(["hour"] if hourly else [])]
    frame = pl.scan_parquet(files, hive_partitioning=True, hive_schema={"date": pl.Date, "res": pl.Int32})
    return frame.select(schema.fieldNames()).sort(keys).collect()


def compare_published(reference: Path, other: Path, label: str) -> None:
    """Fail loudly unless Spark's rows (``reference``) are ``other``'s rows less those complementary suppression
    removed, with the same device counts.

    The single-process implementations do primary suppression only: they keep rows Spark removes so that no
    parent minus its children reveals a suppressed count (jobs/privacy/suppression.py), and their baselines
    (which count a removed day as 0 in Spark) and pings (null in Spark) are not compared. So Spark does strictly more
    work than they do, and the ratios are conservative for Spark.
    """
    for name, hourly in (("density", False), ("density_hourly", True)):
        a, b = read_published(reference / name, hourly), read_published(other / name, hourly)
        if a is None or b is None:
            raise SystemExit(f"{label}: {name} is missing ({'spark' if a is None else label} wrote no files)")
        keys = [c for c in ("date", "res", "cell", "hour") if c in a.columns]
        only_spark = a.join(b, on=keys, how="anti")
        if only_spark.height:
            raise SystemExit(f"{label}: {name} lacks {only_spark.height} of Spark's rows:\n{only_spark.head()}")
        both = a.join(b, on=keys, how="inner", suffix="_other")
        wrong = both.filter(both["devices"] != both["devices_other"])
        if wrong.height:
            raise SystemExit(f"{label}: {name}: device counts differ from Spark's in {wrong.height} rows:\n{wrong}")
        removed = b.height - a.height
        print(
            f"{label}: {name} agrees with Spark on {a.height:,} rows; {removed:,} more rows "
            f"({removed / max(b.height, 1):.1%}) are what Spark's complementary suppression removed"
        )


# ----------------------------------------------------------------------------------------------------------------
# Report


def _mib(value: int | None) -> str:
    return f"{value / MIB:,.0f}" if value else "–"


def print_run(n: int, results: list[Result], gen_seconds: float, console) -> None:
    from rich.table import Table

    singles = [r for r in results if r.impl in SINGLE]
    best = min(singles, key=lambda r: r.seconds) if singles else None
    table = Table(title=f"aggregate, {n:,} pings (generation {gen_seconds:.1f} s, not compared)")
    for col in (
        "implementation",
        "seconds",
        "pings/s",
        "CPU s",
        "× best single",
        "peak RSS MiB: driver",
        "JVM",
        "workers",
        "total",
        "other load",
    ):
        table.add_column(col, justify="left" if col == "implementation" else "right")
    for r in results:
        p = r.peaks or {}
        table.add_row(
            r.impl + (" (baseline)" if r is best else ""),
            f"{r.seconds:.1f}",
            f"{r.pings_per_s:,.0f}",
            f"{r.cpu_seconds:.0f}",
            f"{r.seconds / best.seconds:.2f}" if best else "–",
            _mib(p.get("driver")),
            _mib(p.get("jvm")),
            _mib(p.get("workers")) + (f" ({p['most_workers']} proc.)" if p.get("most_workers") else ""),
            _mib(p.get("total")),
            f"{r.others_cpu_share:.0%}",
        )
    console.print(table)
    c = results[0].counts
    console.print(
        f"published: daily {c['published']:,} of {c['aggregates']:,} aggregates, "
        f"hourly {c['hourly_published']:,} of {c['hourly_aggregates']:,}; pings in {c['pings_in']:,}"
    )


def print_spark_settings(console, jvm_flags: list[str]) -> None:
    from jobs.settings import JobSettings
    from jobs.spark import read_spark_conf

    settings = JobSettings()
    conf = read_spark_conf(settings.spark_conf_dir / f"{settings.spark_profile}.conf")
    shown = ", ".join(f"{k}={conf.get(k, '(default)')}" for k in SPARK_MEMORY_KEYS)
    console.print(f"Spark profile {settings.spark_profile}: {shown}; JVM flags seen: {' '.join(jvm_flags) or '–'}")


# ----------------------------------------------------------------------------------------------------------------


def bench_one(n: int, impls: list[str], base: Path | None, keep: bool, console) -> list[Result]:
    from jobs.settings import JobSettings

    tmp = Path(tempfile.mkdtemp(prefix=f"routecast-bench-{n}-", dir=base))
    try:
        var = tmp / "spark-var"
        settings = JobSettings(var_dir=var)
        cfg = GenConfig(pings=n)
        t0 = time.perf_counter()
        for date, rows in generate_bronze(cfg, settings.lake(tables.BRONZE_PINGS)):
            console.log(f"generated {date}: {rows:,} pings")
        gen_seconds = time.perf_counter() - t0
        results = []
        for impl in impls:
            console.log(f"running {impl} on {n:,} pings (load average {load_average():.1f})")
            out = settings.lake_dir / "silver" if impl == "spark" else tmp / impl
            results.append(_run_child(impl, n, var, out, cfg, tmp / f"{impl}.json"))
            console.log(f"{impl}: {results[-1].seconds:.1f} s")
        if "spark" in impls:
            for r in results:
                if r.impl != "spark":
                    compare_published(settings.lake_dir / "silver", tmp / r.impl, r.impl)
                    _check_counts(results[0], r)
            console.log("published rows: Spark's = each other's less what complementary suppression removed")
        print_run(n, results, gen_seconds, console)
        if keep:
            console.print(f"kept {tmp}")
        return results
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _check_counts(spark: Result, other: Result) -> None:
    """The other implementation's counts: Spark's, with what complementary suppression removed published."""
    expected = dict(spark.counts)
    expected["published"] += spark.counts.get("complementary_suppressed", 0)
    expected["hourly_published"] += spark.counts.get("hourly_complementary_suppressed", 0)
    for key in ("pings_in", "aggregates", "published", "hourly_aggregates", "hourly_published"):
        if expected[key] != other.counts[key]:
            raise SystemExit(f"{other.impl}: {key}={other.counts[key]}, Spark (before complementary) {expected[key]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, nargs="+", default=[2_000_000, 20_000_000])
    parser.add_argument("--impl", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--keep", action="store_true", help="keep the generated lake and outputs")
    parser.add_argument("--tmp", type=Path, default=None, help="where to make the temporary folders")
    parser.add_argument("--json", type=Path, default=None, help="also write every result to this JSON file")
    for internal in ("--child", "--var", "--out", "--since", "--until", "--result"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return

    from rich.console import Console

    console = Console(width=max(Console().width, 150))
    impls = [i for i in IMPLS if i in args.impl]
    everything: list[Result] = []
    for n in args.pings:
        everything += bench_one(n, impls, args.tmp, args.keep, console)
    flags = next((r.peaks["jvm_flags"] for r in everything if r.peaks and r.peaks["jvm_flags"]), [])
    if "spark" in impls:
        print_spark_settings(console, flags)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "pings_per_s": r.pings_per_s} for r in everything], indent=1))


if __name__ == "__main__":
    main()
