"""Benchmark: series per minute for backtest + final fit, routecast's Spark fan-out against statsforecast's batch API.

    .venv/bin/python bench/forecast.py [--series 200 2000] [--models seasonal_naive auto_ets auto_theta]

For each N, the same synthetic daily series (bench/_forecast_gen.py: 730 days, weekly and yearly seasonality, trend,
surges, over-dispersed counts, ~1 % zero days; seeded) go through the same work in both, one after the other in
this process:

- ``routecast``: ``jobs.stages.forecast.fan_out`` — ``groupBy("series_id").applyInPandas`` running
  ``forecasting.selection.select`` per series (forecast, metrics and the champion's backtest residuals) — with
  ``SelectionConfig(freq="D", holdout=14, horizon=28, origins=3, step=14, candidates=--models)`` and the selection
  defaults (``ensemble_top=3``: the median of the best three competes as "ensemble"; ``calibrate=True``: the
  champion's intervals are conformally calibrated from its backtest). Spark is the job's own session
  (``jobs.spark.build_spark``, the ``local`` profile of spark-conf/: ``local[*]``). Timed: ``fan_out`` up to and
  including the collect to pandas. Not timed: the session start, a warm-up fan-out over a few other series, and
  building and caching the input DataFrame (the job caches the gold series it reads the same way).
- ``statsforecast``: ``StatsForecast(models=[SeasonalNaive(7), AutoETS(season_length=7), AutoTheta(season_length=7)],
  freq="D", n_jobs=-1)``, ``cross_validation(h=14, n_windows=3, step_size=14, level=[80, 95])`` and
  ``forecast(h=28, level=[80, 95])``. routecast's statsforecast models fit log1p(y) and back-transform, so this
  side is given log1p(y) and its outputs go through expm1 (clipped at 0) too, inside the timing. Not timed: a
  warm-up call on a few series (statsforecast 2.x has no numba JIT left, but the first call still pays imports).

The backtest fits are the same: each model at each of the 3 origins; AutoETS and AutoTheta are the same statsforecast
classes on the same log1p values; seasonal naive is routecast's own on y against statsforecast's on log1p(y), the
same point forecasts (and next to no cost). Then statsforecast refits every model on the whole series, while
routecast ranks the candidates, refits only its champion (all three members when the ensemble wins) and calibrates
it; it also validates each series and scores the backtest. The check printed below each table compares every
model's backtest MAE per series between the two: if they did the same fits the difference is ~0.

Also printed: CPU seconds of this process tree (the JVM, PySpark's Python workers and statsforecast's pool
included; each process polled once a second, see TreeCpu) and how many of the 2 cores that is; the tasks of each
Spark stage; the machine's other load (the share of its cores used by processes outside the benchmark during the
timed run: figures taken under load are inflated); and, once, ``select`` run serially in this process on a few
series (its CPU per series without Spark, and the share of it spent in model fit/predict calls, from cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench`, `jobs` and `forecasting` importable
    sys.path.insert(0, str(ROOT))

from bench._forecast_gen import synthetic_daily_series  # noqa: E402
from bench._procs import busy_cpu_seconds, load_average, own_cpu_seconds, process_tree  # noqa: E402

IMPLS = ("routecast", "statsforecast")
LEVELS = [80, 95]
SEASON = 7
# routecast alias -> statsforecast model (built in _statsforecast_models) and its output column. Only models that
# are the same computation on both sides: routecast's seasonal_naive and naive fit y itself, statsforecast's fit
# log1p(y), and expm1(log1p(y)) gives back y, so their point forecasts agree; drift and window_mean would not.
STATSFORECAST_NAMES = {
    "seasonal_naive": "SeasonalNaive",
    "naive": "Naive",
    "auto_ets": "AutoETS",
    "auto_theta": "AutoTheta",
    "auto_arima": "AutoARIMA",
}
DEFAULT_MODELS = ("seasonal_naive", "auto_ets", "auto_theta")
WARMUP_SERIES = 4


@dataclass
class Result:
    impl: str
    series: int
    seconds: float
    cpu_seconds: float
    others_cpu_share: float
    with_forecast: int  # series with a complete forecast
    stage_tasks: list[int] = field(default_factory=list)  # Spark: tasks per stage of the fan-out

    @property
    def series_per_min(self) -> float:
        return self.series / self.seconds * 60


@dataclass
class Check:
    """Whether both sides did the same work on one N."""

    series: int
    mae_gap: dict[str, tuple[float, float, int]]  # alias -> (mean |Δ MAE|, max relative |Δ|, series compared)
    champions: dict[str, int]  # routecast's chosen model -> series
    final_fits_per_series: float  # routecast's; statsforecast refits every model
    failed: int  # routecast series without a forecast


# ----------------------------------------------------------------------------------------------------------------
# Timing


class TreeCpu:
    """CPU seconds of this process and its descendants since ``start()``, polled every ``interval`` seconds.

    Each process counts from the start (or its birth) to its last poll, so one that exits in between keeps what it
    used: summing the live processes with their reaped children's time loses PySpark's idle Python workers, which
    Spark stops after a minute and whose time does not reach any parent's. A process loses at most its last
    ``interval`` of CPU.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> TreeCpu:
        self.poll(initial=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.poll()
        return self.seconds

    @property
    def seconds(self) -> float:
        with self._lock:
            return sum(cpu - self._first.get(pid, 0.0) for pid, cpu in self._last.items())

    def poll(self, initial: bool = False) -> None:
        for proc in process_tree(os.getpid()):
            cpu = own_cpu_seconds(proc.pid)
            if cpu is None:
                continue
            with self._lock:
                if initial:
                    self._first[proc.pid] = cpu
                self._last[proc.pid] = cpu

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()


@dataclass
class Timed:
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    others_cpu_share: float = 0.0


@contextmanager
def timed(label: str, console, every: float, status: Callable[[], str] | None = None) -> Iterator[Timed]:
    """Wall and CPU seconds of this process tree over the block and the machine's other load during it; logs
    elapsed and CPU seconds (plus ``status()``) every ``every`` seconds meanwhile."""
    out = Timed()
    stop = threading.Event()
    busy0, t0 = busy_cpu_seconds(), time.perf_counter()
    cpu = TreeCpu().start()

    def heartbeat() -> None:
        while not stop.wait(every):
            extra = ""
            if status is not None:
                try:
                    extra = status()
                except Exception as exc:  # progress is best effort; never break the run for it
                    extra = f"(no progress: {exc})"
            elapsed = time.perf_counter() - t0
            console.log(f"{label}: {elapsed:,.0f} s, CPU {cpu.seconds:,.0f} s{', ' + extra if extra else ''}")

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        out.seconds = time.perf_counter() - t0
        out.cpu_seconds = cpu.stop()
        busy = busy_cpu_seconds() - busy0
        stop.set()
        thread.join()
    out.others_cpu_share = max(busy - out.cpu_seconds, 0.0) / (out.seconds * (os.cpu_count() or 1))


# ----------------------------------------------------------------------------------------------------------------
# routecast: the Spark fan-out


def _selection_config(models: list[str], holdout: int, horizon: int, origins: int):
    from forecasting.selection import SelectionConfig

    return SelectionConfig(
        freq="D",
        holdout=holdout,
        horizon=horizon,
        season_length=SEASON,
        origins=origins,
        step=holdout,
        candidates=tuple(models),
    )


def _input_frame(spark, frame: pd.DataFrame):
    """The series as the cached Spark DataFrame fan_out reads, in the gold SERIES column types."""
    from pyspark.sql.types import StructType

    from jobs.schemas import SERIES

    schema = StructType([SERIES[name] for name in ("series_id", "ds", "y", "freq")])
    sdf = spark.createDataFrame(frame.assign(ds=frame["ds"].dt.date)[schema.fieldNames()], schema=schema).cache()
    sdf.count()
    return sdf


def _spark_progress(sc) -> Callable[[], str]:
    def status() -> str:
        tracker = sc.statusTracker()
        parts = []
        for sid in tracker.getActiveStageIds():
            info = tracker.getStageInfo(sid)
            if info is not None:
                parts.append(
                    f"stage {sid}: {info.numCompletedTasks}/{info.numTasks} tasks done, {info.numActiveTasks} running"
                )
        return "; ".join(parts)

    return status


def _stage_tasks(sc, group: str) -> list[int]:
    """Tasks of every stage the jobs of ``group`` ran (skipped stages left out)."""
    tracker = sc.statusTracker()
    tasks = []
    for job in sorted(tracker.getJobIdsForGroup(group)):
        info = tracker.getJobInfo(job)
        for sid in sorted(info.stageIds if info else []):
            stage = tracker.getStageInfo(sid)
            if stage is not None and stage.numCompletedTasks:
                tasks.append(stage.numTasks)
    return tasks


def warm_up_routecast(spark, cfg, days: int, seed: int) -> None:
    """One fan-out over a few other series: starts the Python workers and their imports (not timed)."""
    from jobs.stages.forecast import fan_out

    sdf = _input_frame(spark, synthetic_daily_series(WARMUP_SERIES, days, seed=seed + 1))
    fan_out(sdf, {"D": cfg})
    sdf.unpersist()


def run_routecast(spark, frame: pd.DataFrame, cfg, console, every: float) -> tuple[Result, pd.DataFrame, pd.DataFrame]:
    from forecasting.selection import FORECAST_COLUMNS
    from jobs.stages.forecast import fan_out

    n = frame["series_id"].nunique()
    sdf = _input_frame(spark, frame)
    sc = spark.sparkContext
    group = f"bench-forecast-{n}-{time.monotonic_ns()}"
    sc.setJobGroup(group, f"forecast bench, {n} series")
    with timed(f"routecast {n:,} series", console, every, _spark_progress(sc)) as t:
        out = fan_out(sdf, {"D": cfg})
    sdf.unpersist()
    forecasts, metrics = out.forecasts, out.metrics
    complete = forecasts.dropna(subset=FORECAST_COLUMNS).groupby("series_id").size()
    result = Result(
        impl="routecast",
        series=n,
        seconds=t.seconds,
        cpu_seconds=t.cpu_seconds,
        others_cpu_share=t.others_cpu_share,
        with_forecast=int((complete == cfg.horizon).sum()),
        stage_tasks=_stage_tasks(sc, group),
    )
    return result, forecasts, metrics


# ----------------------------------------------------------------------------------------------------------------
# statsforecast: the batch API


def _statsforecast_models(models: list[str]) -> list:
    from statsforecast import models as sfm

    made = {
        "seasonal_naive": lambda: sfm.SeasonalNaive(season_length=SEASON),
        "naive": lambda: sfm.Naive(),
        "auto_ets": lambda: sfm.AutoETS(season_length=SEASON),
        "auto_theta": lambda: sfm.AutoTheta(season_length=SEASON),
        "auto_arima": lambda: sfm.AutoARIMA(season_length=SEASON),
    }
    return [made[alias]() for alias in models]


def _statsforecast_run(frame: pd.DataFrame, models: list[str], cfg, n_jobs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cross-validation, forecast) of statsforecast on log1p(y), model columns back through expm1 and clipped at 0."""
    from statsforecast import StatsForecast

    df = pd.DataFrame({"series_id": frame["series_id"], "ds": frame["ds"], "y": np.log1p(frame["y"].to_numpy())})
    sf = StatsForecast(models=_statsforecast_models(models), freq="D", n_jobs=n_jobs)
    kw = {"level": LEVELS, "id_col": "series_id", "time_col": "ds", "target_col": "y"}
    cv = sf.cross_validation(h=cfg.holdout, df=df, n_windows=cfg.origins, step_size=cfg.step, **kw)
    fc = sf.forecast(h=cfg.horizon, df=df, **kw)
    for out in (cv, fc):
        columns = [c for c in out.columns if c.split("-")[0] in {STATSFORECAST_NAMES[m] for m in models}]
        out[columns] = np.clip(np.expm1(out[columns].to_numpy(dtype="float64")), 0.0, None)
    cv["y"] = np.expm1(cv["y"].to_numpy(dtype="float64"))
    return cv, fc


def warm_up_statsforecast(models: list[str], cfg, days: int, seed: int) -> None:
    _statsforecast_run(synthetic_daily_series(WARMUP_SERIES, days, seed=seed + 1), models, cfg, n_jobs=1)


def run_statsforecast(
    frame: pd.DataFrame, models: list[str], cfg, console, every: float
) -> tuple[Result, pd.DataFrame, pd.DataFrame]:
    n = frame["series_id"].nunique()
    with timed(f"statsforecast {n:,} series", console, every) as t:
        cv, fc = _statsforecast_run(frame, models, cfg, n_jobs=-1)
    columns = [STATSFORECAST_NAMES[m] for m in models]
    complete = fc.dropna(subset=columns).groupby("series_id").size()
    result = Result(
        impl="statsforecast",
        series=n,
        seconds=t.seconds,
        cpu_seconds=t.cpu_seconds,
        others_cpu_share=t.others_cpu_share,
        with_forecast=int((complete == cfg.horizon).sum()),
    )
    return result, cv, fc


# ----------------------------------------------------------------------------------------------------------------
# Did both do the same work?


def check_same_work(n: int, models: list[str], metrics: pd.DataFrame, cv: pd.DataFrame, ensemble_top: int) -> Check:
    """Per model, routecast's backtest MAE against statsforecast's cross-validation MAE on the same series."""
    gap = {}
    for alias in models:
        column = STATSFORECAST_NAMES[alias]
        sf_mae = (cv[column] - cv["y"]).abs().groupby(cv["series_id"]).mean()
        rc = metrics.loc[(metrics["model"] == alias) & metrics["error"].isna()].set_index("series_id")["mae"]
        both = pd.concat([rc.rename("routecast"), sf_mae.rename("statsforecast")], axis=1, join="inner").dropna()
        diff = (both["routecast"] - both["statsforecast"]).abs()
        rel = diff / both["statsforecast"].abs().clip(lower=1e-12)
        gap[alias] = (float(diff.mean()), float(rel.max()), len(both))
    chosen = metrics.loc[metrics["chosen"].astype(bool), "model"]
    members = min(ensemble_top, len(models)) if ensemble_top >= 2 else 1
    fits = float(np.where(chosen == "ensemble", members, 1).mean()) if len(chosen) else 0.0
    return Check(
        series=n,
        mae_gap=gap,
        champions={str(k): int(v) for k, v in chosen.value_counts().items()},
        final_fits_per_series=fits,
        failed=int(metrics["series_id"].nunique() - chosen.size),
    )


def profile_select(frame: pd.DataFrame, cfg, sample: int) -> dict[str, float]:
    """``forecasting.selection.select`` (what each Spark group runs) serially in this process, no Spark, on the first
    ``sample`` series: CPU seconds per series, and the share of its time in model fit/predict calls (cProfile over at
    most 3 of them)."""
    import pstats

    from forecasting.selection import select

    groups = [g for _, g in frame.groupby("series_id", sort=True)][:sample]
    select(groups[0], cfg)  # imports, first-call costs
    cpu0 = time.process_time()
    for group in groups:
        select(group, cfg)
    cpu_per_series = (time.process_time() - cpu0) / len(groups)

    profiled = groups[:3]
    profiler = cProfile.Profile()
    profiler.enable()
    for group in profiled:
        select(group, cfg)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, function) -> (calls, primitive, own, cumulative, callers)
    model_files = tuple(f"forecasting/models/{name}.py" for name in ("statsforecast", "prophet", "baselines"))
    total = fits = 0.0
    for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
        if function == "select" and filename.endswith("forecasting/selection.py"):
            total += cumulative
        elif function in ("fit", "predict") and filename.endswith(model_files):
            fits += cumulative
    share = fits / total if total else 0.0
    return {"series": len(groups), "cpu_per_series": cpu_per_series, "fit_share": share, "profiled": len(profiled)}


# ----------------------------------------------------------------------------------------------------------------
# Report


def print_table(results: list[Result], console) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.MARKDOWN, show_edge=True)
    for col in (
        "N",
        "implementation",
        "seconds",
        "series/min",
        "× statsforecast",
        "CPU s",
        "cores busy",
        "forecasts",
        "Spark tasks per stage",
        "other load",
    ):
        table.add_column(
            col, justify="left" if col in ("implementation", "Spark tasks per stage") else "right", no_wrap=True
        )
    base = {r.series: r for r in results if r.impl == "statsforecast"}
    for r in results:
        ref = base.get(r.series)
        table.add_row(
            f"{r.series:,}",
            {"routecast": "routecast (fan_out)", "statsforecast": "statsforecast (batch)"}[r.impl],
            f"{r.seconds:,.1f}",
            f"{r.series_per_min:,.1f}",
            f"{ref.series_per_min / r.series_per_min:.2f}" if ref else "–",
            f"{r.cpu_seconds:,.0f}",
            f"{r.cpu_seconds / r.seconds:.2f}",
            f"{r.with_forecast:,}/{r.series:,}",
            " / ".join(str(t) for t in r.stage_tasks) or "–",
            f"{r.others_cpu_share:.0%}",
        )
    console.print(table)


def print_check(check: Check, console) -> None:
    gaps = "; ".join(
        f"{alias} mean |Δ| {mean:.2g} (max relative {rel:.1g}, {n:,} series)"
        for alias, (mean, rel, n) in check.mae_gap.items()
    )
    champions = ", ".join(f"{k} {v:,}" for k, v in sorted(check.champions.items(), key=lambda kv: -kv[1]))
    console.print(
        f"N={check.series:,}: backtest MAE per series, routecast vs statsforecast cross-validation: {gaps}. "
        f"routecast champions: {champions or '–'} ({check.failed} series failed); final refits per series: "
        f"routecast {check.final_fits_per_series:.2f}, statsforecast {len(check.mae_gap)} (every model)."
    )


# ----------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--series", type=int, nargs="+", default=[200, 2000], help="numbers of series (default 200 2000)"
    )
    parser.add_argument("--models", nargs="+", choices=list(STATSFORECAST_NAMES), default=list(DEFAULT_MODELS))
    parser.add_argument("--impl", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--days", type=int, default=730, help="length of every series (default 730)")
    parser.add_argument("--holdout", type=int, default=14, help="backtest horizon and step between origins")
    parser.add_argument("--origins", type=int, default=3)
    parser.add_argument("--horizon", type=int, default=28, help="final forecast horizon")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--profile",
        type=int,
        default=10,
        metavar="K",
        help="run forecasting.selection.select serially on K series without Spark, for its CPU per series (0: skip)",
    )
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark SQL setting on top of the local profile, for experiments (repeatable)",
    )
    parser.add_argument("--every", type=float, default=30.0, help="seconds between progress lines")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.series):
        parser.error("--series must be positive")
    conf = dict(item.split("=", 1) for item in args.conf if "=" in item)
    if len(conf) != len(args.conf):
        parser.error("--conf takes KEY=VALUE")

    from rich.console import Console

    console = Console(width=max(Console().width, 150), soft_wrap=True)
    models = list(dict.fromkeys(args.models))
    cfg = _selection_config(models, args.holdout, args.horizon, args.origins)
    console.log(
        f"models {', '.join(models)}; {args.days} days per series; backtest {cfg.origins} origins × {cfg.holdout} days "
        f"(step {cfg.step}); forecast {cfg.horizon} days at {'/'.join(map(str, LEVELS))} %; routecast ensemble_top "
        f"{cfg.ensemble_top}, calibrate {cfg.calibrate}; load average {load_average():.1f}"
    )

    spark = None
    if "statsforecast" in args.impl:
        t0 = time.perf_counter()
        warm_up_statsforecast(models, cfg, args.days, args.seed)
        console.log(f"statsforecast warmed up on {WARMUP_SERIES} series ({time.perf_counter() - t0:.1f} s, not timed)")
    if "routecast" in args.impl:
        from jobs.settings import JobSettings
        from jobs.spark import build_spark

        t0 = time.perf_counter()
        spark = build_spark(JobSettings())
        for key, value in conf.items():
            spark.conf.set(key, value)
        console.log(f"Spark session {spark.sparkContext.master} ({time.perf_counter() - t0:.1f} s, not timed)")
        t0 = time.perf_counter()
        warm_up_routecast(spark, cfg, args.days, args.seed)
        console.log(f"routecast warmed up on {WARMUP_SERIES} series ({time.perf_counter() - t0:.1f} s, not timed)")

    results: list[Result] = []
    checks: list[Check] = []
    try:
        for n in args.series:
            frame = synthetic_daily_series(n, args.days, seed=args.seed)
            zeros = float((frame["y"] == 0).mean())
            console.log(f"{n:,} series × {args.days} days generated ({zeros:.1%} zero days); load {load_average():.1f}")
            metrics = cv = None
            if "routecast" in args.impl:
                result, _forecasts, metrics = run_routecast(spark, frame, cfg, console, args.every)
                results.append(result)
                console.log(
                    f"routecast {n:,} series: {result.seconds:,.1f} s ({result.series_per_min:,.1f} series/min)"
                )
            if "statsforecast" in args.impl:
                result, cv, _fc = run_statsforecast(frame, models, cfg, console, args.every)
                results.append(result)
                console.log(
                    f"statsforecast {n:,} series: {result.seconds:,.1f} s ({result.series_per_min:,.1f} series/min)"
                )
            print_table([r for r in results if r.series == n], console)
            if metrics is not None and cv is not None:
                checks.append(check_same_work(n, models, metrics, cv, cfg.ensemble_top))
                print_check(checks[-1], console)
    finally:
        if spark is not None:
            spark.stop()

    profile = None
    if args.profile > 0 and "routecast" in args.impl:
        frame = synthetic_daily_series(args.profile, args.days, seed=args.seed)
        profile = profile_select(frame, cfg, args.profile)
    if len(args.series) > 1:
        console.print("All runs:")
        print_table(results, console)
    if profile:
        console.print(
            f"forecasting.selection.select serially in one process (no Spark), {profile['series']} series: "
            f"{profile['cpu_per_series']:.2f} CPU s per series, {profile['fit_share']:.0%} of it in model fit/predict "
            f"calls (cProfile, {profile['profiled']} series)."
        )
    for r in results:
        console.print(f"{r.impl} N={r.series:,}: {r.cpu_seconds / r.series:.2f} CPU s per series (whole process tree)")
    if conf:
        console.print(f"Spark settings on top of the local profile: {conf}")
    console.print(
        "× statsforecast = statsforecast's series/min ÷ this row's (2.00: half as many series a minute). statsforecast "
        "fits every model and picks none; routecast also ranks the candidates, refits the champion and calibrates it."
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": [{**asdict(r), "series_per_min": r.series_per_min} for r in results],
                    "checks": [asdict(c) for c in checks],
                    "profile": profile,
                    "conf": conf,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
