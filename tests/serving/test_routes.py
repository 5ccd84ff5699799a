import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import ServingSettings


@pytest.fixture
def client(published):
    with TestClient(create_app(published)) as c:
        yield c


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["release_id"]


def test_routes_lists_the_whole_catalogue(client, catalogue):
    body = client.get("/v1/routes").json()
    assert [r["id"] for r in body["routes"]] == catalogue.route_ids()
    served = {r["id"] for r in body["routes"] if r["has_forecast"]}
    assert served == set(catalogue.route_ids()[:2])
    sources = {r["id"]: r["sources"] for r in body["routes"]}
    first, second, last = catalogue.route_ids()[0], catalogue.route_ids()[1], catalogue.route_ids()[-1]
    assert (sources[first], sources[second], sources[last]) == (["density", "frontex"], ["density"], [])
    first = body["routes"][0]
    assert first["segments"] and first["crossing_points"]


def test_route_forecast_has_horizon_days_with_intervals_and_lineage(client, catalogue):
    route_id = catalogue.route_ids()[0]
    r = client.get(f"/v1/routes/{route_id}/forecast", params={"horizon": 14})
    assert r.status_code == 200
    body = r.json()
    assert body["horizon"] == 14 and body["level"] == "route"
    [series] = body["series"]
    assert series["series_id"] == f"route:{route_id}"
    assert (series["model"], series["run_id"], series["release_id"]) == ("seasonal_naive", "run-1", body["release_id"])
    points = series["forecast"]
    assert len(points) == 14
    assert points[0]["ds"] == "2025-03-02" and points[13]["ds"] == "2025-03-15"
    for p in points:
        assert p["lo95"] <= p["lo80"] <= p["yhat"] <= p["hi80"] <= p["hi95"]


def test_segment_level_returns_one_series_per_segment(client, catalogue):
    route = catalogue.route(catalogue.route_ids()[0])
    body = client.get(f"/v1/routes/{route.id}/forecast", params={"horizon": 3, "level": "segment"}).json()
    assert [s["segment_id"] for s in body["series"]] == sorted(s.id for s in route.segments)
    assert all(len(s["forecast"]) == 3 for s in body["series"])


def test_unknown_route_is_404_with_message(client):
    r = client.get("/v1/routes/atlantis/forecast")
    assert r.status_code == 404
    assert "unknown route 'atlantis'" in r.json()["detail"]


def test_route_without_forecast_is_404(client, catalogue):
    r = client.get(f"/v1/routes/{catalogue.route_ids()[-1]}/forecast")
    assert r.status_code == 404 and "no route-level density forecast" in r.json()["detail"]


@pytest.mark.parametrize("horizon", [0, -1, 29, 366, "x"])
def test_horizon_out_of_range_is_422(client, catalogue, horizon):
    r = client.get(f"/v1/routes/{catalogue.route_ids()[0]}/forecast", params={"horizon": horizon})
    assert r.status_code == 422


def test_bad_level_is_422(client, catalogue):
    r = client.get(f"/v1/routes/{catalogue.route_ids()[0]}/forecast", params={"level": "cell"})
    assert r.status_code == 422


def test_without_a_release_the_api_is_up_but_not_ready(tmp_path):
    with TestClient(create_app(ServingSettings(var_dir=tmp_path))) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        r = c.get("/v1/routes/channel/forecast")
        assert r.status_code == 503 and "no forecasts available" in r.json()["detail"]
        assert c.get("/v1/routes").json()["release_id"] is None


def test_official_source_forecast_is_monthly(client, catalogue):
    route_id = catalogue.route_ids()[0]
    r = client.get(f"/v1/routes/{route_id}/forecast", params={"source": "frontex", "horizon": 3})
    assert r.status_code == 200, r.text
    [series] = r.json()["series"]
    assert (series["series_id"], series["freq"], series["source"]) == (f"frontex/route:{route_id}", "M", "frontex")
    assert [p["ds"] for p in series["forecast"]] == ["2024-05-01", "2024-06-01", "2024-07-01"]
    # The Frontex forecast covers 6 months, the density one 28 days: each source has its own bound.
    assert client.get(f"/v1/routes/{route_id}/forecast", params={"source": "frontex", "horizon": 7}).status_code == 422
    assert client.get(f"/v1/routes/{route_id}/forecast", params={"horizon": 28}).status_code == 200


def test_source_without_forecast_for_route_is_404(client, catalogue):
    r = client.get(f"/v1/routes/{catalogue.route_ids()[1]}/forecast", params={"source": "frontex"})
    assert r.status_code == 404 and "no route-level frontex forecast" in r.json()["detail"]
