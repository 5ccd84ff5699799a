import csv
import io

from tests.serving.conftest import CHANNEL, bearer


def test_alerts_are_sorted_by_severity_and_name_what_broke(client):
    body = client.get("/v1/alerts", params={"limit": 10_000}).json()
    alerts = body["alerts"]
    assert alerts
    severities = [a["severity"] for a in alerts]
    assert severities == sorted(severities, reverse=True)
    kinds = {a["kind"] for a in alerts}
    # The fixture's last observation is 3x the usual level: above every threshold, and outside the interval the
    # previous release forecast for that day.
    assert {"observation_above_threshold", "observation_outside_interval"} <= kinds
    outside = next(a for a in alerts if a["kind"] == "observation_outside_interval")
    assert outside["value"] > outside["bound"] and "95 % interval" in outside["message"]
    assert outside["ds"] == body["as_of"]


def test_filters(client):
    only = client.get("/v1/alerts", params={"route": CHANNEL, "kind": "observation_outside_interval"}).json()
    assert only["alerts"] and all(
        a["route_id"] == CHANNEL and a["kind"] == "observation_outside_interval" for a in only["alerts"]
    )
    assert client.get("/v1/alerts", params={"min_severity": 1e5}).json()["alerts"] == []
    assert len(client.get("/v1/alerts", params={"limit": 2}).json()["alerts"]) == 2
    assert client.get("/v1/alerts", params={"kind": "panic"}).status_code == 422


def test_a_scoped_token_sees_only_its_routes_alerts(api, published):
    body = api.get("/v1/alerts", params={"limit": 10_000}, headers=bearer(published, "planner", [CHANNEL])).json()
    assert body["alerts"] and {a["route_id"] for a in body["alerts"]} == {CHANNEL}


def test_alerts_as_csv(client):
    r = client.get("/v1/alerts", params={"limit": 3}, headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 3 and rows[0]["kind"] and float(rows[0]["severity"]) >= float(rows[1]["severity"])
