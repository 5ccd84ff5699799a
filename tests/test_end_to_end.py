"""The whole path on a very small data set: generate → nightly → publish → API over real HTTP."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from rich.console import Console

from jobs.orchestration.pipeline import nightly
from jobs.orchestration.runs import STAGES, Ledger
from serving.app import create_app
from serving.auth import create_token
from serving.settings import ServingSettings
from tests.published import END, PUBLISHED


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api_server():
    servers = []

    def start(settings: ServingSettings) -> str:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("API server did not start")
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@PUBLISHED
def test_pipeline_end_to_end_and_api_over_http(spark, published_run, api_server):
    run = published_run
    settings, routes, raw, report = run.settings, run.routes, run.raw, run.report
    quiet = Console(quiet=True)
    assert report.ingest.rows_in == run.rows and report.ingest.balanced()
    assert report.ingest.quarantined > 0 and report.ingest.duplicates > 0  # the generator's injected faults
    assert report.aggregate.published > 0 and report.aggregate.suppressed > 0
    assert report.forecast.failed == {}

    # Resumable: the same date again skips every stage the ledger records as done, without starting Spark.
    def no_spark():
        raise AssertionError("a run whose stages are all done started Spark")

    skipped = nightly(no_spark, settings, END, raw_path=raw, catalogue=routes, console=quiet)
    assert list(skipped.skipped) == list(STAGES) and skipped.release is None and skipped.seconds == {}
    # Idempotent: forced, the same date again publishes the same forecasts (same release).
    again = nightly(spark, settings, END, raw_path=raw, catalogue=routes, console=quiet, force=True)
    assert again.release.release_id == report.release.release_id and not again.release.created
    # Every stage but people, which has no official counts to be fitted on here (tests/jobs/test_people.py runs it).
    statuses = {r.stage: r.status for r in Ledger(settings.runs_dir).rows(run_date=END) if r.run_id == again.run_id}
    assert statuses == {s: "skipped" if s == "people" else "done" for s in STAGES}

    serving = ServingSettings(var_dir=settings.var_dir)
    base = api_server(serving)
    token = create_token(serving, subject="e2e", role="planner", routes=None, ttl=dt.timedelta(minutes=10))
    with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        listed = {r["id"]: r["has_forecast"] for r in http.get("/v1/routes").json()["routes"]}
        for route_id in routes.route_ids():
            assert listed[route_id] is True
            r = http.get(f"/v1/routes/{route_id}/forecast", params={"horizon": 14})
            assert r.status_code == 200, r.text
            [s] = r.json()["series"]
            assert len(s["forecast"]) == 14
            assert s["forecast"][0]["ds"] == str(END + dt.timedelta(days=1))
            assert s["run_id"] == report.forecast.run.run_id
            assert all(0 <= p["lo95"] <= p["lo80"] <= p["yhat"] <= p["hi80"] <= p["hi95"] for p in s["forecast"])
        assert http.get("/v1/routes/atlantis/forecast").status_code == 404
        assert http.get(f"/v1/routes/{routes.route_ids()[0]}/forecast", params={"horizon": 500}).status_code == 422
        first = routes.route_ids()[0]
        r = http.get(f"/v1/routes/{first}/forecast", params={"horizon": 1, "history": 7})
        assert [p["ds"] for p in r.json()["series"][0]["history"]][-1] == str(END)
        lineage = http.get("/v1/lineage", params={"series_id": f"route:{first}"}).json()
        assert (lineage["run_id"], lineage["inputs"]["last"]) == (report.forecast.run.run_id, str(END))
        hexes = http.get(f"/v1/routes/{first}/hexes").json()
        assert hexes["features"] and all(f["properties"]["devices"] > settings.min_devices for f in hexes["features"])
        assert (
            http.get(f"/v1/routes/{first}/hexes", params={"date": str(END + dt.timedelta(days=3))}).status_code == 200
        )
        landing = next(cp.id for cp in routes.route(first).crossing_points if cp.role == "landing")
        arrivals = http.get(f"/v1/crossing-points/{landing}/arrivals", params={"days": 7}).json()
        assert arrivals["crossing_points"][0]["days"][0]["ds"] == str(END + dt.timedelta(days=1))
        assert http.get("/v1/alerts").status_code == 200
        assert httpx.get(f"{base}/v1/routes").status_code == 401  # no token
