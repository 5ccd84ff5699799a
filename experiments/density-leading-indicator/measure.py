"""Does upstream phone density lead the arrivals counted at a route's entry points? Measured on simulated data.

For each route: the target is the daily true arrivals at the route's entry points (``var/truth/arrivals``, the
analogue of official counts); the candidate leading indicator is the published density (gold series) of the
segments that feed those points, as a trailing 7-day mean (which removes the residents' weekly rhythm, so it moves
like the excess over a same-weekday baseline), lagged by L >= horizon days so that its values over the forecast
window are already observed at the origin. Rolling weekly origins over the last weeks; at each origin every model
sees only the days before it. Compared: Prophet without the regressor, Prophet with it (one fit per lag), and a
seasonal naive yardstick. Prints markdown tables.

    .venv/bin/python experiments/density-leading-indicator/measure.py --var-dir /tmp/lead/var

Reads Parquet with pandas; no Spark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.models.baselines import SeasonalNaive
from forecasting.models.prophet import ProphetForecaster
from geo.catalogue import Catalogue, Route, load_catalogue
from simulator.official import route_entry_points

SMOOTHING_DAYS = 7  # trailing mean of the density: removes the residents' weekday rhythm
SEASON = 7


@dataclass(frozen=True)
class RouteSetup:
    route_id: str
    entry_points: tuple[str, ...]
    upstream_segments: tuple[str, ...]  # the entry points' segments and the segments leading into them


def route_setup(route: Route) -> RouteSetup:
    """The route's entry points and the segments whose density may lead them."""
    points = route_entry_points(route)
    entry_segments = {p.segment_id for p in points}
    feeding = {a for a, b in route.successions() if b in entry_segments}
    return RouteSetup(route.id, tuple(p.id for p in points), tuple(sorted(entry_segments | feeding)))


def load_arrivals(var_dir: Path, setup: RouteSetup) -> pd.Series:
    """Daily true arrivals summed over the route's entry points, on a daily DatetimeIndex."""
    arrivals = pd.read_parquet(var_dir / "truth" / "arrivals", filters=[("route_id", "==", setup.route_id)])
    arrivals = arrivals[arrivals["crossing_point_id"].isin(setup.entry_points)]
    daily = arrivals.groupby(pd.to_datetime(arrivals["date"]))["arrivals"].sum().astype("float64")
    return daily.asfreq("D").rename("arrivals")


def load_segment_density(var_dir: Path) -> pd.DataFrame:
    """Published daily density per segment: a frame indexed by day, one column per 'route/segment'."""
    series = pd.read_parquet(
        var_dir / "lake" / "gold" / "series",
        columns=["series_id", "level", "route_id", "segment_id", "ds", "y"],
        filters=[("source", "==", "density"), ("level", "==", "segment")],
    )
    series["key"] = series["route_id"] + "/" + series["segment_id"]
    wide = series.pivot_table(index=pd.to_datetime(series["ds"]), columns="key", values="y", aggfunc="sum")
    return wide.asfreq("D").fillna(0.0)  # gold fills days without published density with 0 already


def load_segment_people(var_dir: Path) -> pd.DataFrame:
    """The control: true agents per segment and day (``var/truth/segment_people``), shaped as load_segment_density."""
    people = pd.read_parquet(var_dir / "truth" / "segment_people")
    people["key"] = people["route_id"] + "/" + people["segment_id"]
    wide = people.pivot_table(index=pd.to_datetime(people["date"]), columns="key", values="people", aggfunc="sum")
    return wide.asfreq("D").fillna(0.0).astype("float64")


def leading_indicator(density: pd.DataFrame, setup: RouteSetup) -> pd.Series:
    """Trailing 7-day mean of the published density summed over the upstream segments (not yet lagged)."""
    columns = [f"{setup.route_id}/{s}" for s in setup.upstream_segments if f"{setup.route_id}/{s}" in density]
    summed = density[columns].sum(axis=1)
    return summed.rolling(SMOOTHING_DAYS, min_periods=SMOOTHING_DAYS).mean().rename("density")


def best_correlated_lag(y: pd.Series, x: pd.Series, end: pd.Timestamp, max_lag: int) -> tuple[int, float]:
    """The lag L in 0..max_lag maximising corr(y_t, x_{t-L}) over days before ``end`` (the pre-scoring data)."""
    best = (0, -np.inf)
    for lag in range(max_lag + 1):
        pair = pd.concat([y, x.shift(lag)], axis=1).loc[: end - pd.Timedelta(days=1)].dropna()
        r = float(pair.iloc[:, 0].corr(pair.iloc[:, 1])) if len(pair) > 10 else np.nan
        if np.isfinite(r) and r > best[1]:
            best = (lag, r)
    return best


def backtest_route(
    y: pd.Series, x: pd.Series, origins: list[pd.Timestamp], horizon: int, lags: list[int], train_start: pd.Timestamp
) -> pd.DataFrame:
    """Errors (forecast - truth) per (origin, step, model): seasonal naive, Prophet, Prophet + x lagged by each L."""
    rows = []
    for origin in origins:
        train = y.loc[train_start : origin - pd.Timedelta(days=1)]
        truth = y.loc[origin : origin + pd.Timedelta(days=horizon - 1)].to_numpy()
        forecasts = {
            "seasonal_naive": SeasonalNaive(SEASON).fit(train).predict(horizon),
            "prophet": ProphetForecaster(uncertainty_samples=50).fit(train).predict(horizon),
        }
        for lag in lags:
            lagged = x.shift(lag).rename("density")
            X = lagged.loc[train.index].to_frame()
            future = pd.date_range(origin, periods=horizon)
            X_future = lagged.loc[future].to_frame()
            model = ProphetForecaster(uncertainty_samples=50, regressors=["density"]).fit(train, X)
            forecasts[f"prophet+x(L={lag})"] = model.predict(horizon, X_future=X_future)
        for name, frame in forecasts.items():
            errors = frame["mean"].to_numpy() - truth
            rows.extend(
                {"origin": origin.date(), "step": i + 1, "model": name, "error": e} for i, e in enumerate(errors)
            )
    return pd.DataFrame(rows)


def week_total_mae(errors: pd.DataFrame) -> pd.Series:
    """Per model: mean absolute error of each origin's 7-day total, divided by 7 (arrivals per day)."""
    totals = errors.groupby(["route", "origin", "model"])["error"].sum().abs() / errors["step"].max()
    return totals.groupby("model").mean()


def week_total_row(label: str, errors: pd.DataFrame, lags: list[int]) -> dict:
    mae = week_total_mae(errors)
    row = {"route": label, "snaive": mae["seasonal_naive"], "prophet": mae["prophet"]}
    row.update({f"+x L={lag}": mae[f"prophet+x(L={lag})"] for lag in lags})
    row.update({f"ratio L={lag}": mae[f"prophet+x(L={lag})"] / mae["prophet"] for lag in lags})
    return row


def emit(text: str = "", stream=sys.stdout) -> None:
    """This script's output: the tables on stdout, progress on stderr."""
    stream.write(text + "\n")


def markdown(frame: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A small markdown table without the tabulate dependency."""
    cells = [[f"{v:{floatfmt}}" if isinstance(v, float) else str(v) for v in row] for row in frame.to_numpy()]
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    return "\n".join([header, rule] + ["| " + " | ".join(row) + " |" for row in cells])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var-dir", type=Path, required=True, help="the var folder of a simulated pipeline run")
    parser.add_argument("--routes-dir", type=Path, default=None, help="route catalogue (default: geo/routes)")
    parser.add_argument("--horizon", type=int, default=7, help="days forecast at each origin")
    parser.add_argument(
        "--origins", type=int, default=6, help="weekly origins, the last one `horizon` days from the end"
    )
    parser.add_argument(
        "--lags", type=int, nargs="+", default=[7, 14, 21], help="lags L (days) of the density, >= horizon"
    )
    parser.add_argument("--max-lag", type=int, default=35, help="largest lag tried by the pre-window correlation")
    parser.add_argument(
        "--indicator",
        choices=["density", "people"],
        default="density",
        help="density: the published gold series (the measurement); people: the true agents per segment (control)",
    )
    parser.add_argument("--routes", nargs="*", default=None, help="route ids (default: every route)")
    args = parser.parse_args(argv)
    if min(args.lags) < args.horizon:
        parser.error(f"every lag must be >= the horizon ({args.horizon}): the regressor must be observed at the origin")

    started = time.monotonic()
    catalogue: Catalogue = load_catalogue(args.routes_dir)
    if args.indicator == "density":
        density = load_segment_density(args.var_dir)
    else:
        density = load_segment_people(args.var_dir)
    route_ids = args.routes or catalogue.route_ids()

    per_route, errors_all, notes = [], [], []
    for route_id in route_ids:
        setup = route_setup(catalogue.route(route_id))
        if not setup.entry_points:
            notes.append(f"{route_id}: no entry points, skipped")
            continue
        y = load_arrivals(args.var_dir, setup)
        x = leading_indicator(density, setup).reindex(y.index)
        last = y.index[-1]
        origins = [last - pd.Timedelta(days=args.horizon * k - 1) for k in range(args.origins, 0, -1)]
        # Every model trains from the same first day: the first with the most-lagged smoothed density.
        train_start = y.index[0] + pd.Timedelta(days=SMOOTHING_DAYS - 1 + max(args.lags))
        best_lag, best_r = best_correlated_lag(y, x, origins[0], args.max_lag)
        errors = backtest_route(y, x, origins, args.horizon, args.lags, train_start)
        errors["route"] = route_id
        errors_all.append(errors)
        mae = errors["error"].abs().groupby(errors["model"]).mean()
        row = {
            "route": route_id,
            "arrivals/day": float(y.loc[origins[0] :].mean()),
            "upstream segments": len(setup.upstream_segments),
            "train days (1st origin)": int((origins[0] - train_start).days),
            "MAE snaive": mae["seasonal_naive"],
            "MAE prophet": mae["prophet"],
        }
        for lag in args.lags:
            row[f"MAE +x L={lag}"] = mae[f"prophet+x(L={lag})"]
        for lag in args.lags:
            row[f"ratio L={lag}"] = mae[f"prophet+x(L={lag})"] / mae["prophet"]
        row["pre-window best lag (r)"] = f"{best_lag} ({best_r:.2f})"
        per_route.append(row)
        emit(f"# {route_id} done after {time.monotonic() - started:.0f} s", sys.stderr)

    table = pd.DataFrame(per_route)
    errors = pd.concat(errors_all, ignore_index=True)
    pooled_mae = errors["error"].abs().groupby(errors["model"]).mean()
    pooled = {"route": "pooled (all routes' errors)", "arrivals/day": float(table["arrivals/day"].mean())}
    pooled.update({"upstream segments": "", "train days (1st origin)": ""})
    pooled.update({"MAE snaive": pooled_mae["seasonal_naive"], "MAE prophet": pooled_mae["prophet"]})
    for lag in args.lags:
        pooled[f"MAE +x L={lag}"] = pooled_mae[f"prophet+x(L={lag})"]
    for lag in args.lags:
        pooled[f"ratio L={lag}"] = pooled_mae[f"prophet+x(L={lag})"] / pooled_mae["prophet"]
    pooled["pre-window best lag (r)"] = ""
    geo_mean = {f"ratio L={lag}": float(np.exp(np.log(table[f"ratio L={lag}"]).mean())) for lag in args.lags}
    table = pd.concat([table, pd.DataFrame([pooled])], ignore_index=True)

    first, last = errors["origin"].min(), errors["origin"].max()
    emit(
        f"Simulated data under {args.var_dir}; indicator: {args.indicator}; {args.origins} weekly origins "
        f"{first} .. {last}, horizon {args.horizon} days; MAE in arrivals per day; "
        f"ratio = MAE(prophet + lagged indicator) / MAE(prophet). Run {dt.date.today()}.\n"
    )
    emit(markdown(table))
    emit()
    weekly = [week_total_row(r, e, args.lags) for r, e in errors.groupby("route")]
    weekly.append(week_total_row("pooled", errors, args.lags))
    emit("Geometric mean over routes of the daily ratio: " + ", ".join(f"{k}: {v:.2f}" for k, v in geo_mean.items()))
    emit()
    emit(f"The same forecasts scored on each origin's {args.horizon}-day total (absolute error / {args.horizon}):\n")
    emit(markdown(pd.DataFrame(weekly)))
    emit()
    for note in notes:
        emit(f"- {note}")
    emit(f"\n({time.monotonic() - started:.0f} s)", sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
