import csv
import io

import pytest

from tests.serving.conftest import CENTRAL_MED, CHANNEL, bearer


def test_a_planner_asks_how_many_are_expected_at_lampedusa_in_the_next_7_days(api, published, catalogue):
    """The question of the issue, in one request."""
    r = api.get("/v1/crossing-points/lampedusa/arrivals", params={"days": 7}, headers=bearer(published, "planner"))
    assert r.status_code == 200, r.text
    body = r.json()
    [point] = body["crossing_points"]
    assert (point["crossing_point_id"], point["route_id"], body["unit"]) == ("lampedusa", CENTRAL_MED, "devices")
    segment = next(cp.segment_id for cp in catalogue.route(CENTRAL_MED).crossing_points if cp.id == "lampedusa")
    assert point["segment_id"] == segment and point["series_id"] == f"segment:{CENTRAL_MED}/{segment}"
    days = point["days"]
    assert [d["ds"] for d in days] == [f"2025-03-0{i}" for i in range(2, 9)]
    total = point["total"]
    assert total["days"] == 7 and total["yhat"] == pytest.approx(sum(d["yhat"] for d in days))
    assert total["lo95"] <= total["lo80"] <= total["yhat"] <= total["hi80"] <= total["hi95"]
    # The same numbers as the segment's forecast.
    forecast = api.get(
        f"/v1/routes/{CENTRAL_MED}/forecast",
        params={"segment": segment, "horizon": 7},
        headers=bearer(published, "analyst"),
    ).json()
    assert [d["yhat"] for d in days] == [p["yhat"] for p in forecast["series"][0]["forecast"]]


def test_all_landings_of_the_visible_routes(client, catalogue):
    body = client.get("/v1/arrivals", params={"days": 3}).json()
    assert body["days"] == 3
    routes = {p["route_id"] for p in body["crossing_points"]}
    assert routes == {CENTRAL_MED, CHANNEL}  # the other routes have no forecast in this release
    assert all(p["role"] == "landing" and len(p["days"]) == 3 for p in body["crossing_points"])
    only = client.get("/v1/arrivals", params={"route": CHANNEL, "role": "border"}).json()["crossing_points"]
    assert {p["role"] for p in only} <= {"border"} and {p["route_id"] for p in only} <= {CHANNEL}


def test_arrivals_as_csv_one_row_per_point_and_day(client):
    r = client.get("/v1/arrivals", params={"days": 2, "route": CHANNEL}, headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    landings = [
        cp
        for cp in client.get(f"/v1/routes/{CHANNEL}").json()["features"]
        if cp["properties"]["kind"] == "crossing_point" and cp["properties"]["role"] == "landing"
    ]
    assert len(rows) == 2 * len(landings) and rows[0]["ds"] == "2025-03-02"


def test_errors(client):
    assert client.get("/v1/crossing-points/atlantis/arrivals").status_code == 404
    assert client.get("/v1/arrivals", params={"role": "ferry"}).status_code == 422
    assert client.get("/v1/arrivals", params={"days": 366}).status_code == 422
    r = client.get("/v1/arrivals", params={"route": "atlantis"})
    assert r.status_code == 404 and r.json()["detail"] == "unknown route 'atlantis'; see GET /v1/routes"


def test_days_valid_by_the_schema_but_beyond_the_release_answer_the_days_it_has(client):
    """The schema allows up to 365 days; a release forecasting 28 answers 28 and says so (it used to answer 422)."""
    for days in (29, 174, 365):
        r = client.get("/v1/crossing-points/lampedusa/arrivals", params={"days": days})
        assert r.status_code == 200, days
        body = r.json()
        assert body["days"] == 28
        assert [len(cp["days"]) for cp in body["crossing_points"]] == [28]
        assert body["crossing_points"][0]["total"]["days"] == 28


def test_a_crossing_point_without_forecast_is_404(client, catalogue):
    last = catalogue.route(catalogue.route_ids()[-1])
    r = client.get(f"/v1/crossing-points/{last.crossing_points[0].id}/arrivals")
    assert r.status_code == 404 and "no forecast for crossing point" in r.json()["detail"]
