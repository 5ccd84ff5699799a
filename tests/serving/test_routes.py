import csv
import io

import pytest

from tests.serving.conftest import CENTRAL_MED, CHANNEL, HISTORY_DAYS, JUMP


def test_health_and_ready_need_no_token(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz").json()
    assert ready["ready"] is True and ready["release_id"]


def test_routes_lists_the_whole_catalogue(client, catalogue):
    body = client.get("/v1/routes").json()
    assert [r["id"] for r in body["routes"]] == catalogue.route_ids()
    served = {r["id"] for r in body["routes"] if r["has_forecast"]}
    assert served == {CENTRAL_MED, CHANNEL}
    sources = {r["id"]: r["sources"] for r in body["routes"]}
    last = catalogue.route_ids()[-1]
    assert (sources[CENTRAL_MED], sources[CHANNEL], sources[last]) == (["density", "frontex"], ["density"], [])
    first = body["routes"][0]
    assert first["segments"] and first["crossing_points"]


def test_routes_as_csv(client, catalogue):
    r = client.get("/v1/routes", headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["route_id"] for row in rows] == catalogue.route_ids()
    assert rows[0]["sources"] == "density;frontex"


def test_route_geojson_has_segments_and_crossing_points(client, catalogue):
    r = client.get(f"/v1/routes/{CHANNEL}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    body = r.json()
    route = catalogue.route(CHANNEL)
    assert body["type"] == "FeatureCollection" and body["route"]["id"] == CHANNEL
    kinds = [f["properties"]["kind"] for f in body["features"]]
    assert kinds.count("segment") == len(route.segments) and kinds.count("crossing_point") == len(route.crossing_points)
    assert {f["geometry"]["type"] for f in body["features"]} == {"LineString", "Point"}


def test_route_forecast_has_horizon_days_with_intervals_and_lineage(client):
    r = client.get(f"/v1/routes/{CENTRAL_MED}/forecast", params={"horizon": 14})
    assert r.status_code == 200
    body = r.json()
    assert body["horizon"] == 14 and body["level"] == "route" and body["intervals"] == [80, 95]
    [series] = body["series"]
    assert series["series_id"] == f"route:{CENTRAL_MED}"
    assert (series["model"], series["run_id"], series["release_id"]) == ("seasonal_naive", "run-2", body["release_id"])
    assert series["history"] == []
    points = series["forecast"]
    assert len(points) == 14
    assert points[0]["ds"] == "2025-03-02" and points[13]["ds"] == "2025-03-15"
    for p in points:
        assert p["lo95"] <= p["lo80"] <= p["yhat"] <= p["hi80"] <= p["hi95"]


def test_default_horizon_is_everything_the_release_holds(client):
    body = client.get(f"/v1/routes/{CENTRAL_MED}/forecast").json()
    assert body["horizon"] == 28 and len(body["series"][0]["forecast"]) == 28


def test_history_and_forecast_together_for_charts(client):
    body = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"history": 10, "horizon": 3}).json()
    [series] = body["series"]
    history = series["history"]
    assert len(history) == 10 and history[-1]["ds"] == body["as_of"]
    assert history[-1]["y"] == pytest.approx(JUMP * history[0]["y"])
    # Asking for more than the release holds gives what it holds.
    body = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"history": 400}).json()
    assert len(body["series"][0]["history"]) == HISTORY_DAYS


def test_interval_levels_can_be_chosen(client):
    body = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"intervals": 80, "horizon": 2}).json()
    point = body["series"][0]["forecast"][0]
    assert body["intervals"] == [80] and point["lo80"] is not None and point["lo95"] is None and point["hi95"] is None
    r = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"intervals": 90})
    assert r.status_code == 422


def test_forecast_as_csv_has_history_and_forecast_rows(client):
    r = client.get(
        f"/v1/routes/{CHANNEL}/forecast", params={"history": 5, "horizon": 7}, headers={"Accept": "text/csv"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["kind"] for row in rows] == ["history"] * 5 + ["forecast"] * 7
    assert rows[0]["y"] and not rows[0]["yhat"] and rows[-1]["yhat"] and rows[-1]["run_id"] == "run-2"


def test_segment_level_returns_one_series_per_segment(client, catalogue):
    route = catalogue.route(CENTRAL_MED)
    body = client.get(f"/v1/routes/{route.id}/forecast", params={"horizon": 3, "level": "segment"}).json()
    assert [s["segment_id"] for s in body["series"]] == sorted(s.id for s in route.segments)
    assert all(len(s["forecast"]) == 3 for s in body["series"])


def test_one_segment(client, catalogue):
    segment = catalogue.route(CHANNEL).segments[0].id
    body = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"segment": segment}).json()
    assert body["level"] == "segment" and [s["segment_id"] for s in body["series"]] == [segment]
    r = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"segment": "nowhere"})
    assert r.status_code == 404 and "segment 'nowhere'" in r.json()["detail"]


def test_a_chosen_release(client, published):
    releases = client.get("/v1/releases").json()["releases"]
    older = releases[1]["release_id"]
    body = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"release": older, "horizon": 1}).json()
    assert body["release_id"] == older and body["series"][0]["run_id"] == "run-1"
    assert body["series"][0]["forecast"][0]["ds"] == "2025-03-01"
    r = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"release": "20990101-000000000000"})
    assert r.status_code == 404 and "unknown release" in r.json()["detail"]
    assert client.get(f"/v1/routes/{CHANNEL}/forecast", params={"release": "../etc"}).status_code == 422


def test_unknown_route_is_404_with_message(client):
    for path in ("/v1/routes/atlantis", "/v1/routes/atlantis/forecast"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.json()["detail"] == "unknown route 'atlantis'; see GET /v1/routes"


def test_route_without_forecast_is_404(client, catalogue):
    r = client.get(f"/v1/routes/{catalogue.route_ids()[-1]}/forecast")
    assert r.status_code == 404 and "no route-level density forecast" in r.json()["detail"]


@pytest.mark.parametrize("horizon", [0, -1, 366, "x"])
def test_horizon_out_of_range_is_422(client, horizon):
    r = client.get(f"/v1/routes/{CENTRAL_MED}/forecast", params={"horizon": horizon})
    assert r.status_code == 422 and "horizon" in r.json()["detail"]  # says which parameter, in one sentence


def test_bad_level_is_422(client):
    r = client.get(f"/v1/routes/{CENTRAL_MED}/forecast", params={"level": "cell"})
    assert r.status_code == 422


def test_official_source_forecast_is_monthly(client):
    r = client.get(f"/v1/routes/{CENTRAL_MED}/forecast", params={"source": "frontex", "horizon": 3})
    assert r.status_code == 200, r.text
    [series] = r.json()["series"]
    assert (series["series_id"], series["freq"], series["source"]) == (f"frontex/route:{CENTRAL_MED}", "M", "frontex")
    assert [p["ds"] for p in series["forecast"]] == ["2024-05-01", "2024-06-01", "2024-07-01"]
    # The Frontex forecast covers 6 months, the density one 28 days: each source has its own bound, and a horizon
    # valid by the schema (<= 365) but beyond it answers what the release holds, saying how many periods.
    for source, asked, held in (("frontex", 7, 6), ("density", 28, 28), ("density", 29, 28), ("density", 365, 28)):
        r = client.get(f"/v1/routes/{CENTRAL_MED}/forecast", params={"source": source, "horizon": asked})
        assert r.status_code == 200, (source, asked)
        assert r.json()["horizon"] == held and len(r.json()["series"][0]["forecast"]) == held


def test_source_without_forecast_for_route_is_404(client):
    r = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"source": "frontex"})
    assert r.status_code == 404 and "no route-level frontex forecast" in r.json()["detail"]


def test_repeated_requests_get_the_same_answer_from_the_cache(client):
    first = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"horizon": 5}).content
    assert client.get(f"/v1/routes/{CHANNEL}/forecast", params={"horizon": 5}).content == first
    assert client.get(f"/v1/routes/{CHANNEL}/forecast", params={"horizon": 6}).content != first


def test_every_read_is_audited_with_who_what_and_how_many_rows(client, published, catalogue):
    from serving.audit import read_records

    client.get(f"/v1/routes/{CHANNEL}/forecast", params={"horizon": 5, "history": 2, "level": "segment"})
    client.get("/v1/routes/atlantis/forecast")
    records = list(read_records(published.audit_path))
    ok, missing = records[-2], records[-1]
    assert (ok["subject"], ok["role"], ok["endpoint"], ok["status"]) == (
        "tester",
        "admin",
        "/v1/routes/{route_id}/forecast",
        200,
    )
    assert ok["params"]["route_id"] == [CHANNEL] and ok["params"]["horizon"] == ["5"]
    assert ok["rows"] == len(catalogue.route(CHANNEL).segments) * (5 + 2)  # forecast and history points
    assert (missing["status"], missing["rows"]) == (404, None)
