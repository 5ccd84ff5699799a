"""How well does the measurement model (forecasting.people) turn the group split of the density into people?

Measured on simulated data. Builds the signal a deployment has: per (route, segment, day) the published devices of
each home-network group (silver ``density_by_group``) and the published total (silver ``density``, above the
threshold) on the segment's cells at the series' resolution. Builds the coarse figures a deployment has from the
truth's ``arrivals`` at each route's entry points: monthly sums per route (as Frontex publishes) and, for the
Channel, daily arrivals at Dover and Dungeness (as the UK publishes). The prior days on route (W of Little's law) is
what a survey of arrivals would say: the mean duration of the journeys completed in the fit period
(``truth/journeys``), one number per route, times ``--w-factor`` to see what a wrong survey costs. The model is fitted
on these only; ``truth/segment_people`` is read to score, never to fit.

Two fits: on every coarse figure (in-sample), and on the coarse figures and signal before ``--fit-until`` only,
scored on the days from it on (held-out). Prints per route: Pearson r of the daily people with the true people on
the route, the median absolute percentage error of weekly totals (complete Monday-Sunday weeks), the coverage of
the 80 % interval, and the feature and scale the fit chose.

    .venv/bin/python experiments/people-model/measure.py --var-dir /tmp/people/var [--fit-until 2025-07-01]

Reads Parquet with pandas; no Spark.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from contracts.networks import ROAMING_GROUPS
from forecasting.people import PeopleModel, PeopleModelConfig, feature_names, segment_features
from geo.catalogue import Catalogue, load_catalogue
from geo.cells import cell_segment_table
from geo.countries import country_codes
from geo.networks import classify
from jobs.analysis.truth import pearson_r, score_days
from simulator.official import entry_arrivals

SIMULATOR_CONFIG = Path(__file__).resolve().parents[2] / "simulator" / "simulator.toml"
# The UK publishes daily small-boat arrivals (at the Channel's entry points, Dover and Dungeness); Frontex publishes
# no Channel figure.
DAILY_ROUTES = ("channel",)
# The printed names of jobs.analysis.truth's figures.
SCORE_LABELS = {
    "days": "days",
    "true_per_day": "true/day",
    "est_per_day": "est/day",
    "r": "r",
    "weeks": "weeks",
    "weekly_ape": "weekly APE (median)",
    "coverage80": "80% coverage",
}


def nationality_groups(catalogue: Catalogue, share: float) -> dict[str, tuple[str, ...]]:
    """Per route, the roaming groups that hold at least ``share`` of the arrivals' home networks where they wait.

    The analogue of the nationalities Frontex publishes per route: in the simulated world they are the route's
    ``origin_mcc`` weights. Each network is classified (``geo.networks.classify``) in the country of every place
    of every segment of the route, equally weighted; groups that are not roaming groups (a phone from a
    neighbouring origin seen at home) are left out.
    """
    config = tomllib.loads(SIMULATOR_CONFIG.read_text())
    out = {}
    for route in catalogue:
        origin = config["routes"][route.id]["origin_mcc"]
        places = [xy for segment in route.segments for xy in segment.line.coords]
        weights: dict[str, float] = {}
        for country in country_codes(places):
            for mcc, weight in origin.items():
                group = classify(mcc, country)
                weights[group] = weights.get(group, 0.0) + weight / len(places)
        total = sum(weights.values())
        out[route.id] = tuple(g for g in ROAMING_GROUPS if weights.get(g, 0.0) >= share * total)
    return out


def _dates(frame: pd.DataFrame, column: str = "date") -> pd.DataFrame:
    return frame.assign(**{column: pd.to_datetime(frame[column].astype(str))})


def load_signal(var_dir: Path, res: int, min_devices: int) -> pd.DataFrame:
    """``date, route_id, segment_id, group, devices``: published groups and the published total per segment-day."""
    lake = var_dir / "lake" / "silver"
    for path in (lake / "density_by_group", lake / "density"):
        if not path.exists():
            sys.exit(f"{path} is missing: simulate, then run ingest and aggregate into {var_dir} (README.md)")
    cells = cell_segment_table(load_catalogue(), res)
    cells = pd.DataFrame(
        {"cell": cells["cell"].astype("int64"), "route_id": cells["route_id"], "segment_id": cells["segment_id"]}
    )
    groups = _dates(pd.read_parquet(lake / "density_by_group"))
    groups = groups[groups["res"] == res].merge(cells, on="cell")
    density = _dates(pd.read_parquet(lake / "density", columns=["cell", "res", "devices", "date"]))
    density = density[(density["res"] == res) & (density["devices"] > min_devices)].merge(cells, on="cell")
    keys = ["date", "route_id", "segment_id", "group"]
    return pd.concat(
        [
            groups.groupby(keys[:3] + ["group"], as_index=False)["devices"].sum(),
            density.assign(group="total").groupby(keys, as_index=False)["devices"].sum(),
        ],
        ignore_index=True,
    )


def coarse_figures(var_dir: Path, catalogue: Catalogue, until: pd.Timestamp | None) -> tuple[pd.DataFrame, ...]:
    """Monthly arrivals per route (with the days each figure covers) and the Channel's daily arrivals."""
    arrivals = _dates(pd.read_parquet(var_dir / "truth" / "arrivals"))
    if until is not None:
        arrivals = arrivals[arrivals["date"] < until]
    daily = entry_arrivals(arrivals, catalogue)
    monthly_rows = daily[~daily["route_id"].isin(DAILY_ROUTES)]
    monthly = (
        monthly_rows.assign(month=monthly_rows["date"].dt.to_period("M").dt.to_timestamp())
        .groupby(["route_id", "month"], as_index=False)
        .agg(arrivals=("arrivals", "sum"), days=("date", "nunique"))
    )
    return monthly, daily[daily["route_id"].isin(DAILY_ROUTES)].reset_index(drop=True)


def survey_days_on_route(var_dir: Path, until: pd.Timestamp | None, first: pd.Timestamp) -> dict[str, float]:
    """Mean days from departure to the end of the journey, over the journeys completed in [first, until)."""
    journeys = pd.read_parquet(var_dir / "truth" / "journeys", columns=["route_id", "departed", "ended", "outcome"])
    journeys = journeys[journeys["outcome"] == "completed"]
    ended = journeys["ended"].dt.tz_localize(None)
    keep = ended >= first
    if until is not None:
        keep &= ended < until
    journeys = journeys[keep]
    duration = (journeys["ended"] - journeys["departed"]).dt.total_seconds() / 86400.0
    return duration.groupby(journeys["route_id"]).mean().to_dict()


def truth_people(var_dir: Path) -> pd.Series:
    people = _dates(pd.read_parquet(var_dir / "truth" / "segment_people"))
    return people.groupby(["route_id", "date"])["people"].sum().astype("float64")


def segment_scores(estimate: pd.DataFrame, var_dir: Path, days: pd.DatetimeIndex, busy: float) -> pd.DataFrame:
    """Per route: the segments with at least ``busy`` true people a day, the median r over them, and the share of
    the route's true people on segments the model gives anyone."""
    people = _dates(pd.read_parquet(var_dir / "truth" / "segment_people"))
    people = people[people["date"].isin(days)].set_index(["route_id", "segment_id", "date"])["people"]
    est = estimate[estimate["date"].isin(days)].set_index(["route_id", "segment_id", "date"])["people"]
    both = pd.concat([est.rename("est"), people.rename("true").astype("float64")], axis=1).dropna(subset=["true"])
    rows = []
    for route_id, d in both.groupby(level="route_id"):
        per_segment = d.groupby(level="segment_id")
        means = per_segment["true"].mean()
        seen = per_segment["est"].sum() > 0
        r = [pearson_r(g["est"].dropna(), g["true"][g["est"].notna()]) for s, g in per_segment if means[s] >= busy]
        rows.append(
            {
                "route_id": route_id,
                f"segments ≥ {busy:g}/day": int((means >= busy).sum()),
                "median segment r": float(np.nanmedian(r)) if r and not np.all(np.isnan(r)) else float("nan"),
                "share of people on seen segments": float(means[seen.reindex(means.index, fill_value=False)].sum())
                / max(float(means.sum()), 1.0),
            }
        )
    return pd.DataFrame(rows).set_index("route_id")


def score(estimate: pd.DataFrame, truth: pd.Series, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Per route over ``days``: r, weekly-total median APE, 80 % coverage, mean people estimated and true (the
    figures of jobs.analysis.truth, which ``routecast truth`` prints)."""
    rows = []
    for route_id, est in estimate.groupby("route_id"):
        figures = score_days(est.set_index("date").reindex(days), truth.loc[route_id].reindex(days))
        rows.append({"route_id": route_id, **{label: figures[name] for name, label in SCORE_LABELS.items()}})
    return pd.DataFrame(rows).set_index("route_id")


def best_features(signal: pd.DataFrame, truth: pd.Series, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Per route, the candidate feature whose route sum correlates best with the true people over ``days``.

    Read against the truth, so never used to fit: it tells a feature chosen badly on the coarse figures from a
    route whose signal does not follow the people at all.
    """
    features = segment_features(signal).groupby(level=["route_id", "date"]).sum(min_count=1)
    rows = []
    for route_id, x in features.groupby(level="route_id"):
        x = x.droplevel("route_id").reindex(days)
        true = truth.loc[route_id].reindex(days)
        r = {f: pearson_r(x[f][x[f].notna()], true[x[f].notna()]) for f in feature_names() if f in x}
        r = {f: v for f, v in r.items() if np.isfinite(v)}
        best = max(r, key=r.get) if r else "none"
        # The ceiling of any non-negative mix of the features plus a constant of either sign, fitted on the truth
        # itself over the days every feature has (never a model).
        names = [f for f in feature_names() if f in x]
        both = pd.concat([x[names], true.rename("people")], axis=1).dropna()
        design = np.column_stack([both[names].to_numpy(), np.ones(len(both)), -np.ones(len(both))])
        weights, _ = nnls(design, both["people"].to_numpy())
        mix = design @ weights
        rows.append(
            {
                "route_id": route_id,
                "best feature (by truth)": best,
                "its r": r.get(best, float("nan")),
                "r of the best mix (by truth)": pearson_r(pd.Series(mix), both["people"].reset_index(drop=True)),
            }
        )
    return pd.DataFrame(rows).set_index("route_id")


def run(
    var_dir: Path,
    res: int,
    min_devices: int,
    fit_until: pd.Timestamp | None,
    w_factor: float,
    groups: dict[str, tuple[str, ...]] | None,
    estimate_daily_w: bool = False,
    excess_as_fallback: bool = True,
    unseen: str = "excess",
) -> pd.DataFrame:
    catalogue = load_catalogue()
    signal = load_signal(var_dir, res, min_devices)
    truth = truth_people(var_dir)
    days = pd.date_range(signal["date"].min(), signal["date"].max(), freq="D")
    fit_signal = signal if fit_until is None else signal[signal["date"] < fit_until]
    monthly, daily = coarse_figures(var_dir, catalogue, fit_until)
    prior = {r: w * w_factor for r, w in survey_days_on_route(var_dir, fit_until, days[0]).items()}
    # With estimate_daily_w the Channel's W comes from its daily arrivals; its survey figure is printed beside it.
    model = PeopleModel(PeopleModelConfig(excess_as_fallback=excess_as_fallback, unseen=unseen)).fit(
        fit_signal,
        monthly,
        {r: w for r, w in prior.items() if not (estimate_daily_w and r in DAILY_ROUTES)},
        daily,
        unfittable="blind",
        groups=groups,
    )
    scored_days = days if fit_until is None else days[days >= fit_until]
    table = score(model.estimate(signal, by="route"), truth, scored_days)
    params = pd.DataFrame(
        [
            {
                "route_id": p.route_id,
                "feature": p.feature or "blind",
                "people per device": p.scale,
                "W (days)": p.days_on_route,
                "survey W": prior.get(p.route_id, float("nan")),
                "fitted on": f"{p.periods} {'months' if p.fitted_on == 'monthly' else 'days'}",
                "sigma_log": p.sigma_log,
                "groups (nationalities)": "+".join(groups.get(p.route_id, ())) if groups else "any",
                "how chosen": p.reason,
            }
            for p in model.params_.values()
        ]
    ).set_index("route_id")
    segments = segment_scores(model.estimate(signal), var_dir, scored_days, busy=20.0)
    return table.join(params).join(best_features(signal, truth, scored_days)).join(segments)


SCORE_COLUMNS = ("days", "true/day", "est/day", "r", "weeks", "weekly APE (median)", "80% coverage", "feature")


def markdown(table: pd.DataFrame) -> str:
    table = table.reset_index()
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.values:
        lines.append("| " + " | ".join(f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var-dir", type=Path, required=True, help="the var folder the pipeline ran into")
    parser.add_argument("--res", type=int, default=7, help="the series' H3 resolution (settings h3_res)")
    parser.add_argument("--min-devices", type=int, default=15, help="the suppression threshold of the run")
    parser.add_argument("--fit-until", help="held-out split: fit before this date, score from it (default: mid-run)")
    parser.add_argument("--w-factor", type=float, default=1.0, help="multiply the survey's W (a wrong survey)")
    parser.add_argument(
        "--channel-w",
        choices=("estimate", "survey"),
        default="survey",
        help="the Channel's W: the survey's like the other routes, or estimated from its daily arrivals",
    )
    parser.add_argument(
        "--nationality-share",
        type=float,
        default=0.0,
        help="narrow each route's candidates to the groups holding this share of its arrivals' networks (0: any)",
    )
    parser.add_argument(
        "--excess-everywhere",
        action="store_true",
        help="excess features are candidates on every route, not only where no roaming group's level is seen",
    )
    parser.add_argument(
        "--unseen",
        choices=("excess", "blind"),
        default="excess",
        help="where no roaming group is seen: read people from the excess, or say the route is not measured",
    )
    args = parser.parse_args(argv)
    signal_days = pd.to_datetime(
        pd.read_parquet(args.var_dir / "lake" / "silver" / "density", columns=["date"])["date"].astype(str)
    )
    first, last = signal_days.min(), signal_days.max()
    # Default split: the start of the month holding the middle of the run, so both parts hold whole months.
    middle = first + (last - first) / 2
    until = pd.Timestamp(args.fit_until) if args.fit_until else middle.to_period("M").to_timestamp()
    if not first < until <= last:
        sys.exit(f"--fit-until {until:%Y-%m-%d} must fall after {first:%Y-%m-%d} and on or before {last:%Y-%m-%d}")
    estimate_w = args.channel_w == "estimate"
    groups = nationality_groups(load_catalogue(), args.nationality_share) if args.nationality_share > 0 else None
    out = sys.stdout
    for title, fit_until in (
        (f"In-sample: fitted on every coarse figure, {first:%Y-%m-%d}..{last:%Y-%m-%d}", None),
        (f"Held-out: fitted before {until:%Y-%m-%d}, scored from it to {last:%Y-%m-%d}", until),
    ):
        table = run(
            args.var_dir,
            args.res,
            args.min_devices,
            fit_until,
            args.w_factor,
            groups,
            estimate_w,
            not args.excess_everywhere,
            args.unseen,
        ).round(2)
        out.write(f"## {title}\n\n")
        out.write(markdown(table[[c for c in table.columns if c in SCORE_COLUMNS]]))
        out.write("\nThe fit, and what the truth says the signal could give (read, never fitted on):\n\n")
        out.write(markdown(table[[c for c in table.columns if c not in SCORE_COLUMNS]]))
        out.write("\n")


if __name__ == "__main__":
    main()
