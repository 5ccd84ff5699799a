from tests.serving.conftest import CHANNEL, MIN_DEVICES


def test_lineage_of_a_forecast(client):
    body = client.get("/v1/lineage", params={"series_id": f"route:{CHANNEL}"}).json()
    assert (body["run_id"], body["model_version"], body["model"]) == ("run-2", "2", "seasonal_naive")
    assert body["release_id"] == client.get("/readyz").json()["release_id"]
    assert body["as_of"] == "2025-03-01" and body["last_observed"] == "2025-03-01"
    assert (body["forecast_first"], body["forecast_last"]) == ("2025-03-02", "2025-03-29")
    assert body["min_devices"] == MIN_DEVICES
    assert body["inputs"]["last"] == "2025-03-01"


def test_lineage_of_an_older_release(client):
    older = client.get("/v1/releases").json()["releases"][1]["release_id"]
    body = client.get("/v1/lineage", params={"series_id": f"route:{CHANNEL}", "release": older}).json()
    assert (body["release_id"], body["run_id"]) == (older, "run-1")


def test_unknown_series_is_404(client):
    r = client.get("/v1/lineage", params={"series_id": "route:atlantis"})
    assert r.status_code == 404 and "unknown series 'route:atlantis'" in r.json()["detail"]
