"""Does a pooled LightGBM model across routes and sources beat routecast's monthly procedure? (real files)

At every origin the product's own evaluation (``jobs.analysis.evaluate.evaluate_file``, the function behind
``routecast evaluate``) scores the product's ``counts:M`` procedure and the naive and seasonal-naive baselines. Beside
it, at the same origins, a global model (mlforecast + LightGBM on lags 1, 2, 3, 12, rolling means of the last 3 and
12 months, the month of the year and the series as a categorical) is trained on every monthly series it pools, each
cut at the origin, and forecasts 1-3 months ahead (recursively). Its intervals are split conformal on log1p, from
its own misses at earlier origins whose months had been observed by the origin. The combination is the mean of the
product's forecast and the pooled one (its bounds the mean of the two bounds).

Two windows, kept apart:

- ``--window earlier``: the windows the product's procedure was chosen on (Frontex to 2022-04-30, IOM to
  2021-12-31, 36 monthly origins each). Every pooled variant (VARIANTS) is scored; the one with the lowest mean
  ratio over h=1..3, averaged over both files, is the chosen one.
- ``--window report``: the ``routecast evaluate`` defaults (the last 24 monthly origins of each file), only for the
  variant chosen on the earlier windows (``--variant``, default CHOSEN).

Prints the tables as markdown and logs a parent run with one nested run per variant to the MLflow experiment
``routecast-experiments``. Run from the repository root:

    .venv/bin/python experiments/pooled-monthly/measure.py --data-dir ../shared/data/real --window earlier
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.evaluation import two_sided_conformal
from forecasting.protocol import LEVELS
from jobs.analysis.evaluate import evaluate_file, file_series
from jobs.settings import JobSettings

EXPERIMENT = "routecast-experiments"
HORIZON = 3
FILES: dict[str, tuple[str, str]] = {  # label: (file name, source)
    "frontex": ("frontex_ibc_monthly_by_route.csv", "frontex"),
    "iom": ("iom_dtm_med_arrivals.csv", "iom-dtm"),
}
# The windows: per file (until, origins); None means the routecast evaluate defaults (last 24 origins).
WINDOWS: dict[str, dict[str, tuple[dt.date | None, int | None]]] = {
    "earlier": {"frontex": (dt.date(2022, 4, 30), 36), "iom": (dt.date(2021, 12, 31), 36)},
    "report": {"frontex": (None, None), "iom": (None, None)},
}
CALIBRATION_ORIGINS = 24  # earlier origins whose misses calibrate an interval (as the product's 24 backtest origins)
MIN_OWN_SCORES = 12  # fewer misses of the series itself at a step: use the misses of every series of the file
WARMUP = CALIBRATION_ORIGINS + HORIZON  # origins before the first scored one, so that 24 windows have ended
MIN_TRAIN = 15  # months a series needs at an origin to be trained on and forecast (lag 12 + rolling 12 + 2)
LGBM: dict[str, dict[str, float | int]] = {
    "small": {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 7, "min_child_samples": 10},
    "medium": {"n_estimators": 500, "learning_rate": 0.03, "num_leaves": 15, "min_child_samples": 20},
}
LGBM_COMMON: dict[str, float | int] = {
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "random_state": 0,
    "n_jobs": 1,
    "verbose": -1,
}


@dataclass(frozen=True)
class Variant:
    """One pooled model: which series it pools, how the target is scaled, which LightGBM setting."""

    scope: str  # "file": the file's own series; "all": Frontex and IOM series together
    target: str  # "log1p" or "log1p+scale" (log1p, then per-series standardisation on the training months)
    lgbm: str  # key of LGBM

    @property
    def name(self) -> str:
        return f"{self.scope}/{self.target}/{self.lgbm}"


VARIANTS = [
    Variant(scope, target, lgbm)
    for scope in ("file", "all")
    for target in ("log1p", "log1p+scale")
    for lgbm in ("small", "medium")
]
CHOSEN = "all/log1p/small"  # chosen by `--window earlier` (README); the only variant run on the report windows


@dataclass
class FileData:
    label: str
    series: dict[str, pd.Series]  # series_id: monthly counts (MS index), the whole file
    product: pd.DataFrame  # the product's scored step rows (champion, naive, seasonal_naive)
    notes: list[str] = field(default_factory=list)

    @property
    def cutoffs(self) -> list[pd.Timestamp]:
        return sorted(pd.to_datetime(self.product["cutoff"]).unique())


def load_file(data_dir: Path, label: str, window: str, say: Callable[[str], None], settings: JobSettings) -> FileData:
    """The file's series (as the product reads them) and the product's own scored forecasts on ``window``."""
    name, source = FILES[label]
    path = data_dir / name
    series, freq, _ = file_series(path, source)
    if freq != "M":
        raise SystemExit(f"{name}: expected monthly series, got {freq}")
    until, origins = WINDOWS[window][label]
    say(f"{label}: the product's evaluation (until {until or 'the end'}, {origins or 'default'} origins) ...")
    t0 = time.monotonic()
    ev = evaluate_file(path, source, until=until, origins=origins, horizon=HORIZON, settings=settings, log=False)
    say(f"{label}: product evaluated in {time.monotonic() - t0:.0f} s ({len(ev.origins)} origins)")
    rows = ev.rows[(ev.rows["kind"] == "step") & ev.rows["error"].isna()].copy()
    rows["cutoff"] = pd.to_datetime(rows["cutoff"])
    rows["ds"] = pd.to_datetime(rows["ds"])
    rows["step"] = rows["step"].astype(int)
    cols = ["series_id", "cutoff", "step", "ds", "y", "method", "mean", "lo-80", "hi-80", "lo-95", "hi-95"]
    return FileData(label, series, rows[cols].reset_index(drop=True), list(ev.notes))


def _forecaster(variant: Variant) -> object:
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import GlobalSklearnTransformer, LocalStandardScaler
    from sklearn.preprocessing import FunctionTransformer

    transforms = [GlobalSklearnTransformer(FunctionTransformer(np.log1p, np.expm1))]
    if variant.target == "log1p+scale":
        transforms.append(LocalStandardScaler())
    return MLForecast(
        models={"lgbm": LGBMRegressor(**LGBM[variant.lgbm], **LGBM_COMMON)},
        freq="MS",
        lags=[1, 2, 3, 12],
        lag_transforms={1: [RollingMean(window_size=3), RollingMean(window_size=12)]},
        date_features=["month"],
        target_transforms=transforms,
    )


def pooled_forecast(series: dict[str, pd.Series], origin: pd.Timestamp, variant: Variant) -> pd.DataFrame:
    """Train ``variant`` on every series cut at ``origin`` (the last month seen) and forecast HORIZON months.

    Returns series_id, cutoff, step, ds, mean for every series with at least MIN_TRAIN months by the origin.
    """
    categories = sorted(series)
    parts = []
    for sid, y in series.items():
        seen = y[y.index <= origin].dropna()
        if len(seen) >= MIN_TRAIN:
            parts.append(pd.DataFrame({"unique_id": sid, "ds": seen.index, "y": seen.to_numpy(dtype="float64")}))
    if not parts:
        return pd.DataFrame(columns=["series_id", "cutoff", "step", "ds", "mean"])
    train = pd.concat(parts, ignore_index=True)
    train["sid"] = pd.Categorical(train["unique_id"], categories=categories)
    model = _forecaster(variant)
    model.fit(train, static_features=["sid"])
    out = model.predict(h=HORIZON).rename(columns={"unique_id": "series_id", "lgbm": "mean"})
    out["mean"] = out["mean"].clip(lower=0.0)
    out["cutoff"] = origin
    out["step"] = out.groupby("series_id").cumcount() + 1
    return out[["series_id", "cutoff", "step", "ds", "mean"]]


def _months_before(first: pd.Timestamp, n: int) -> list[pd.Timestamp]:
    return [first - pd.DateOffset(months=k) for k in range(n, 0, -1)]


def roll_pooled(files: dict[str, FileData], variant: Variant, say: Callable[[str], None]) -> dict[str, pd.DataFrame]:
    """The pooled variant at every scored origin of each file and WARMUP origins before (for its intervals).

    Scope "file" trains on the file's own series; "all" on the series of every file, each cut at the origin (one
    fit per origin serves both files). Returns per file: series_id, cutoff, step, ds, mean, y.
    """
    groups = [[label] for label in files] if variant.scope == "file" else [list(files)]
    out: dict[str, list[pd.DataFrame]] = {label: [] for label in files}
    for labels in groups:
        pool = {sid: y for label in labels for sid, y in files[label].series.items()}
        needed: dict[pd.Timestamp, set[str]] = {}
        for label in labels:
            cutoffs = files[label].cutoffs
            for origin in [*_months_before(cutoffs[0], WARMUP), *cutoffs]:
                needed.setdefault(pd.Timestamp(origin), set()).add(label)
        t0 = time.monotonic()
        for origin in sorted(needed):
            forecast = pooled_forecast(pool, origin, variant)
            for label in needed[origin]:
                own = forecast[forecast["series_id"].isin(files[label].series)]
                out[label].append(own)
        say(f"  {variant.name} [{'+'.join(labels)}]: {len(needed)} fits in {time.monotonic() - t0:.0f} s")
    result = {}
    for label, frames in out.items():
        frame = pd.concat(frames, ignore_index=True)
        actual = pd.concat(
            [y.rename("y").to_frame().assign(series_id=sid) for sid, y in files[label].series.items()]
        ).rename_axis("ds")
        frame = frame.merge(actual.reset_index(), on=["series_id", "ds"], how="left")
        result[label] = calibrate(frame)
    return result


def calibrate(frame: pd.DataFrame) -> pd.DataFrame:
    """Split-conformal intervals on log1p from the variant's own earlier misses (no month after the origin).

    For a forecast made at origin t, ``step`` k ahead: the misses log1p(y) - log1p(forecast) of the same series and
    step at the last CALIBRATION_ORIGINS origins whose month had been observed by t (ds <= t); with fewer than
    MIN_OWN_SCORES of them, those of every series of the file at that step. Bounds: expm1(log1p(forecast) + q).
    """
    frame = frame.sort_values(["series_id", "step", "cutoff"]).reset_index(drop=True)
    frame["score"] = np.log1p(frame["y"]) - np.log1p(frame["mean"])
    bounds = {f"{side}-{lvl}": np.full(len(frame), np.nan) for lvl in LEVELS for side in ("lo", "hi")}
    ended = frame[frame["score"].notna()]
    for i, row in enumerate(frame.itertuples()):
        past = ended[(ended["step"] == row.step) & (ended["ds"] <= row.cutoff)]
        own = past[past["series_id"] == row.series_id].nlargest(CALIBRATION_ORIGINS, "cutoff")
        if len(own) >= MIN_OWN_SCORES:
            scores = own["score"].to_numpy()
        else:
            recent = sorted(past["cutoff"].unique())[-CALIBRATION_ORIGINS:]
            scores = past.loc[past["cutoff"].isin(recent), "score"].to_numpy()
        if len(scores) < MIN_OWN_SCORES:
            continue
        base = math.log1p(row.mean)
        for lvl in LEVELS:
            lo, hi = two_sided_conformal(scores, (100 - lvl) / 200)
            bounds[f"lo-{lvl}"][i] = max(math.expm1(base + lo), 0.0)
            bounds[f"hi-{lvl}"][i] = math.expm1(base + hi)
    return frame.assign(**bounds).drop(columns="score")


def scored_rows(product: pd.DataFrame, pooled: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, origin, step) the product scored: y and each method's mean (and bounds), with the
    pooled forecast and the combination (mean of the two points, mean of the two bounds)."""
    keys = ["series_id", "cutoff", "step"]
    wide = product.pivot_table(index=keys, columns="method", values="mean", aggfunc="first")
    wide = wide.rename(columns={"champion": "product"})
    first = product[product["method"] == "champion"].set_index(keys)
    wide["y"] = first["y"]
    wide["ds"] = first["ds"]
    bound_cols = [f"{side}-{lvl}" for lvl in LEVELS for side in ("lo", "hi")]
    for col in bound_cols:
        wide[f"product {col}"] = first[col]
    pooled = pooled.set_index(keys)
    wide = wide.join(pooled[["mean", *bound_cols]].add_prefix("pooled ").rename(columns={"pooled mean": "pooled"}))
    wide["combination"] = (wide["product"] + wide["pooled"]) / 2
    for col in bound_cols:
        wide[f"combination {col}"] = (wide[f"product {col}"] + wide[f"pooled {col}"]) / 2
    return wide.reset_index()


METHODS = ("product", "pooled", "combination")
BASELINES = ("naive", "seasonal_naive")


def score_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per step (and the mean over steps): n, MAE of each method and baseline, ratio to the better baseline,
    coverage of the 80 % and 95 % intervals, all on the rows every method forecast."""
    need = ["y", *METHODS, *BASELINES]
    rows = rows.dropna(subset=need)
    table = []
    for step, part in rows.groupby("step"):
        rec: dict[str, float | int | str] = {"step": int(step), "n": len(part)}
        for m in (*METHODS, *BASELINES):
            rec[f"mae.{m}"] = float((part["y"] - part[m]).abs().mean())
        best = min(BASELINES, key=lambda b: rec[f"mae.{b}"])
        rec["baseline"] = best
        for m in METHODS:
            rec[f"ratio.{m}"] = rec[f"mae.{m}"] / rec[f"mae.{best}"]
            for lvl in LEVELS:
                lo, hi = part[f"{m} lo-{lvl}"], part[f"{m} hi-{lvl}"]
                have = lo.notna() & hi.notna()
                inside = (part["y"][have] >= lo[have]) & (part["y"][have] <= hi[have])
                rec[f"cover{lvl}.{m}"] = float(inside.mean()) if have.any() else math.nan
        table.append(rec)
    return pd.DataFrame(table)


def per_series_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    """Per series: the mean over steps of each method's MAE ratio to the better baseline at that step."""
    out = []
    for sid, part in rows.groupby("series_id"):
        table = score_table(part)
        if table.empty:
            continue
        out.append({"series_id": sid, **{m: float(table[f"ratio.{m}"].mean()) for m in METHODS}})
    return pd.DataFrame(out)


def _pct(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.0f} %"


def markdown_table(label: str, table: pd.DataFrame) -> list[str]:
    lines = [
        "| file | h | n | MAE product | MAE pooled | MAE combination | better baseline MAE | ratio product | "
        "ratio pooled | ratio combination | 80 % cover (prod / pooled / comb) | 95 % cover (prod / pooled / comb) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in table.to_dict("records"):
        best = r["baseline"]
        base = best.replace("seasonal_naive", "seasonal")
        base_mae = r[f"mae.{best}"]
        lines.append(
            f"| {label} | {r['step']} | {r['n']} | {r['mae.product']:,.0f} | {r['mae.pooled']:,.0f} | "
            f"{r['mae.combination']:,.0f} | {base_mae:,.0f} ({base}) | {r['ratio.product']:.3f} | "
            f"{r['ratio.pooled']:.3f} | {r['ratio.combination']:.3f} | "
            + " / ".join(_pct(r[f"cover80.{m}"]) for m in METHODS)
            + " | "
            + " / ".join(_pct(r[f"cover95.{m}"]) for m in METHODS)
            + " |"
        )
    return lines


def mean_ratios(tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, float]]:
    """Per method: the mean ratio over h=1..3 per file and overall (the mean of the files' means)."""
    out: dict[str, dict[str, float]] = {}
    for m in METHODS:
        per_file = {label: float(t[f"ratio.{m}"].mean()) for label, t in tables.items()}
        out[m] = {**per_file, "overall": float(np.mean(list(per_file.values())))}
    return out


def log_mlflow(
    window: str,
    results: dict[str, dict[str, pd.DataFrame]],
    summary: str,
    chosen: str,
    params: dict[str, str],
) -> None:
    """A parent run per invocation, one nested run per variant (every table cell as a metric)."""
    import mlflow

    mlflow.set_tracking_uri(JobSettings().tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"pooled-monthly {window}"):
        mlflow.log_params({**params, "window": window, "chosen": chosen, "variants": len(results)})
        for name, tables in results.items():
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.log_params({"variant": name, "window": window})
                metrics = {}
                for label, table in tables.items():
                    for r in table.to_dict("records"):
                        for key, value in r.items():
                            if key in ("step", "baseline") or isinstance(value, str) or math.isnan(float(value)):
                                continue
                            metrics[f"{key}.{label}.h{r['step']}".replace(" ", "_")] = float(value)
                for m, per in mean_ratios(tables).items():
                    metrics |= {f"mean_ratio.{m}.{k}": v for k, v in per.items()}
                mlflow.log_metrics(metrics)
        mean = mean_ratios(results[chosen])
        mlflow.log_metrics({f"mean_ratio.{m}.{k}": v for m, per in mean.items() for k, v in per.items()})
        mlflow.log_text(summary, "summary.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding the Frontex and IOM files")
    parser.add_argument("--window", choices=sorted(WINDOWS), default="earlier")
    parser.add_argument("--variant", default=None, help=f"report window: the variant to run (default {CHOSEN})")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    started = time.monotonic()

    def say(msg: str) -> None:
        sys.stdout.write(f"[{time.monotonic() - started:6.0f} s] {msg}\n")
        sys.stdout.flush()

    settings = JobSettings()
    if args.window == "earlier":
        variants = [v for v in VARIANTS if args.variant in (None, v.name)]
    else:
        variants = [v for v in VARIANTS if v.name == (args.variant or CHOSEN)]
    if not variants:
        raise SystemExit(f"unknown variant {args.variant!r}; one of {', '.join(v.name for v in VARIANTS)}")
    files = {label: load_file(args.data_dir, label, args.window, say, settings) for label in FILES}
    results: dict[str, dict[str, pd.DataFrame]] = {}
    per_series: dict[str, dict[str, pd.DataFrame]] = {}
    for variant in variants:
        pooled = roll_pooled(files, variant, say)
        results[variant.name], per_series[variant.name] = {}, {}
        for label, data in files.items():
            rows = scored_rows(data.product, pooled[label])
            missing = rows["pooled"].isna().sum()
            if missing:
                say(f"  {variant.name} {label}: {missing} product rows without a pooled forecast (not scored)")
            results[variant.name][label] = score_table(rows)
            per_series[variant.name][label] = per_series_ratios(rows)
        mean = mean_ratios(results[variant.name])
        say(
            f"  {variant.name}: mean ratio pooled "
            + ", ".join(f"{k} {v:.3f}" for k, v in mean["pooled"].items())
            + "; product "
            + ", ".join(f"{k} {v:.3f}" for k, v in mean["product"].items())
        )

    ranking = sorted(results, key=lambda name: mean_ratios(results[name])["pooled"]["overall"])
    chosen = ranking[0]
    window_words = {
        "earlier": "earlier windows (used to choose): Frontex 36 origins to 2022-04-30, IOM 36 origins to 2021-12-31",
        "report": "report windows (NOT used to choose): the last 24 monthly origins of each file",
    }[args.window]
    lines = [f"## Pooled monthly model: {window_words}", ""]
    if len(results) > 1:
        lines += [
            "Every pooled variant, mean ratio (MAE / better baseline's) over h=1..3:",
            "",
            "| variant | Frontex pooled | IOM pooled | overall pooled | Frontex combination | IOM combination | "
            "overall combination |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in ranking:
            m = mean_ratios(results[name])
            lines.append(
                f"| {name} | {m['pooled']['frontex']:.3f} | {m['pooled']['iom']:.3f} | {m['pooled']['overall']:.3f} "
                f"| {m['combination']['frontex']:.3f} | {m['combination']['iom']:.3f} | "
                f"{m['combination']['overall']:.3f} |"
            )
        lines += ["", f"Chosen (lowest overall pooled mean ratio): **{chosen}**", ""]
    lines += [f"Variant {chosen}, per file and horizon:", ""]
    for i, (label, table) in enumerate(results[chosen].items()):
        part = markdown_table(label, table)
        lines += part if i == 0 else part[2:]
    m = mean_ratios(results[chosen])
    lines += [
        "",
        "| mean ratio over h=1..3 | Frontex | IOM | overall |",
        "|---|---:|---:|---:|",
        *(f"| {k} | {v['frontex']:.3f} | {v['iom']:.3f} | {v['overall']:.3f} |" for k, v in m.items()),
        "",
        f"Per series, mean ratio over h=1..3 (variant {chosen}):",
        "",
        "| series | product | pooled | combination |",
        "|---|---:|---:|---:|",
    ]
    for label in files:
        for r in per_series[chosen][label].to_dict("records"):
            lines.append(f"| {r['series_id']} | {r['product']:.3f} | {r['pooled']:.3f} | {r['combination']:.3f} |")
    notes = [n for data in files.values() for n in data.notes]
    if notes:
        lines += ["", "Notes:", "", *(f"- {n}" for n in notes)]
    summary = "\n".join(lines) + "\n"
    sys.stdout.write("\n" + summary)
    if not args.no_mlflow:
        import importlib.metadata as md

        params = {
            "data_dir": str(args.data_dir),
            "mlforecast": md.version("mlforecast"),
            "lightgbm": md.version("lightgbm"),
            "calibration_origins": str(CALIBRATION_ORIGINS),
            "horizon": str(HORIZON),
        }
        log_mlflow(args.window, results, summary, chosen, params)
        say("logged to MLflow")
    say("done")


if __name__ == "__main__":
    main()
