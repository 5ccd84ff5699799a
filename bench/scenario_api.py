"""Benchmark: latency of ``POST /v1/scenarios`` at the default draws, beside the scenario engine alone.

    .venv/bin/python bench/scenario_api.py [--runs 10] [--draws 1000] [--days 60]

What runs, all in this process:

- a store: one release written by the real publish step (``jobs.stages.publish.publish``) with ``--days`` days of
  people forecasts (80 and 95 % intervals) for every point and route of a route network of about 40 crossing points
  on five routes of the catalogue (each route's departure points lead to its landings, its land points one to the
  next, with shares and lags of a realistic size), and that network in the manifest (``scenario_network``);
- the API: ``serving.app.create_app`` with its lifespan, middleware (audit log, answer cache, token check) and a real
  HTTP client (``fastapi.testclient.TestClient``), with a planner token of all routes;
- the scenario: the package docstring's example, a four-week closure of one departure point whose people divert to
  another route (30 %) and another point (20 %) or wait, plus a two-week surge (x 2) on a third route.

Each of ``--runs`` POSTs is timed from sending the request to reading the answer (the scenario runs, is written to
``<var>/scenarios/<id>/`` and audited; a warm-up POST first, not timed). The engine alone is
``forecasting.scenario.run_scenario`` on the same network, forecasts, spec, draws and seed, timed ``--runs`` times
the same way. Printed: median and max of each, and the API's median over the engine's (the ratio: what the API adds
— reading the body, scoping the network, writing the tables and the audit record, serialising the summary).

Target: a POST answers in under 2 s at the default draws.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from contracts.published import SCENARIO_NETWORK
from contracts.series import PEOPLE_SOURCE, series_id
from forecasting.scenario import Link, Network, NetworkPoint, parse_spec, run_scenario
from forecasting.tracking import RunInfo
from geo.catalogue import load_catalogue
from jobs.stages import publish
from serving.app import create_app
from serving.auth import create_token
from serving.settings import ServingSettings

AS_OF = dt.date(2026, 11, 30)
ROUTES = ("central_mediterranean", "eastern_mediterranean", "western_african", "western_mediterranean", "channel")
POINTS_PER_ROUTE = 8
KEY_COLUMNS = ["series_id", "level", "route_id", "segment_id", "freq", "source"]


def bench_network(catalogue) -> Network:
    """About 40 points: per route, up to 4 departures, each split over up to 3 landings (90 % of its people in all,
    1-3 days), and up to 8 points in all with the route's land points, one to the next (90 %, 2 days)."""
    points, links = [], []
    for route_id in ROUTES:
        cps = catalogue.route(route_id).crossing_points
        departures = [c for c in cps if c.role == "departure"][:4]
        landings = [c for c in cps if c.role == "landing"][:3]
        land = [c for c in cps if c.role in ("hub", "border")]
        land = land[: max(0, POINTS_PER_ROUTE - len(departures) - len(landings))]
        for c in [*departures, *landings, *land]:
            points.append(NetworkPoint(route_id, c.id, c.role, c.segment_id))
        for i, d in enumerate(departures):
            for j, landing in enumerate(landings):
                links.append(Link(route_id, d.id, landing.id, 0.9 / len(landings), 1.0 + (i + j) % 3))
        for a, b in zip(land, land[1:], strict=False):
            links.append(Link(route_id, a.id, b.id, 0.9, 2.0))
    return Network(points=tuple(points), links=tuple(links), notes=("made up for the benchmark",))


def people_frames(network: Network, days: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily people forecasts of every point (20-200 a day, weekly wave) and route (10 x its points' sum) of the
    network, intervals about ±15 % and ±30 %, and their keys."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range(AS_OF + dt.timedelta(days=1), periods=days)
    wave = 1.0 + 0.1 * np.sin(np.arange(days) * 2 * np.pi / 7)
    keys, rows = [], []
    levels: dict[str, float] = {}
    for p in network.points:
        sid = series_id("point", p.route_id, p.segment_id, source=PEOPLE_SOURCE, crossing_point=p.point_id)
        keys.append((sid, "point", p.route_id, p.segment_id, "D", PEOPLE_SOURCE))
        levels[sid] = float(rng.uniform(20, 200))
        levels[f"route:{p.route_id}"] = levels.get(f"route:{p.route_id}", 0.0) + 10 * levels[sid]
    for route_id in network.routes:
        sid = series_id("route", route_id, source=PEOPLE_SOURCE)
        keys.append((sid, "route", route_id, None, "D", PEOPLE_SOURCE))
        levels[sid] = levels.pop(f"route:{route_id}")
    for sid, *_ in keys:
        y = levels[sid] * wave
        rows.append(
            pd.DataFrame(
                {
                    "series_id": sid,
                    "ds": ds,
                    "yhat": y,
                    "lo80": y * 0.85,
                    "hi80": y * 1.15,
                    "lo95": y * 0.7,
                    "hi95": y * 1.3,
                    "model": "ets",
                }
            )
        )
    return pd.concat(rows, ignore_index=True), pd.DataFrame(keys, columns=KEY_COLUMNS)


def scenario(network: Network) -> dict:
    central = [p.point_id for p in network.points if p.route_id == ROUTES[0] and p.role == "departure"]
    start = AS_OF + dt.timedelta(days=5)
    return {
        "name": "A departure point closed four weeks, a surge on another route",
        "seed": 7,
        "interventions": [
            {
                "kind": "closure",
                "target": f"point:{ROUTES[0]}/{central[0]}",
                "start": str(start),
                "end": str(start + dt.timedelta(days=27)),
                "assumptions": {
                    "divert": [
                        {"to": f"route:{ROUTES[1]}", "share": 0.3},
                        {"to": f"point:{ROUTES[0]}/{central[1]}", "share": 0.2},
                    ],
                    "divert_sd": 0.1,
                    "divert_lag_days": {"mean": 10, "sd": 3},
                    "release_days": {"mean": 3},
                },
            },
            {
                "kind": "surge",
                "target": f"route:{ROUTES[2]}",
                "factor": 2.0,
                "start": str(start + dt.timedelta(days=4)),
                "end": str(start + dt.timedelta(days=17)),
            },
        ],
    }


def summary(name: str, seconds: list[float]) -> str:
    return f"{name:<24} median {statistics.median(seconds):7.3f} s   max {max(seconds):7.3f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--draws", type=int, default=ServingSettings.model_fields["scenario_draws"].default)
    parser.add_argument("--days", type=int, default=60, help="days of people forecasts (default 60)")
    args = parser.parse_args(argv)

    catalogue = load_catalogue()
    network = bench_network(catalogue)
    people, keys = people_frames(network, args.days)
    spec = scenario(network)
    with tempfile.TemporaryDirectory(prefix="routecast-bench-scenario-") as tmp:
        settings = ServingSettings(var_dir=Path(tmp) / "var", reload_interval_s=0, scenario_draws=args.draws)
        publish.publish(
            settings.store_dir,
            people,
            keys,
            as_of=AS_OF,
            run=RunInfo(run_id="bench", model_version="1", experiment_id="1", tracking_uri="sqlite:///m.db"),
            min_devices=15,
            manifest_extra={SCENARIO_NETWORK: network.to_dict()},
        )
        print(
            f"network: {len(network.points)} points, {len(network.links)} links on {len(network.routes)} routes; "
            f"{args.days} days of people forecasts; {args.draws} draws; {args.runs} runs"
        )
        token = create_token(settings, subject="bench", role="planner", routes=None, ttl=dt.timedelta(hours=1))
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        body = json.dumps(spec)
        api_s: list[float] = []
        with TestClient(create_app(settings)) as client:
            for i in range(args.runs + 1):
                t0 = time.perf_counter()
                r = client.post("/v1/scenarios", content=body, headers=headers)
                elapsed = time.perf_counter() - t0
                if r.status_code != 201:
                    raise SystemExit(f"POST /v1/scenarios answered {r.status_code}: {r.text[:300]}")
                if i:
                    api_s.append(elapsed)
            kept = len(list(settings.scenarios_path.iterdir()))
        forecasts = people.assign(ds=pd.to_datetime(people["ds"]).dt.date)
        parsed = parse_spec(spec)
        engine_s: list[float] = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            run_scenario(parsed, network, forecasts, n_draws=args.draws, seed=7)
            engine_s.append(time.perf_counter() - t0)
    print(summary("POST /v1/scenarios", api_s))
    print(summary("engine alone", engine_s))
    ratio = statistics.median(api_s) / statistics.median(engine_s)
    verdict = "met" if statistics.median(api_s) < 2.0 and max(api_s) < 2.0 else "NOT met"
    print(f"API / engine (medians): {ratio:.2f}; scenarios kept: {kept}; target under 2 s: {verdict}")


if __name__ == "__main__":
    main()
