import csv
import io

import h3
import pytest

from tests.serving.conftest import AS_OF, CELL_RES, CENTRAL_MED, CHANNEL, MIN_DEVICES


def _hexes(client, **params):
    return client.get(f"/v1/routes/{CENTRAL_MED}/hexes", params=params)


def test_observed_day_is_a_feature_collection_of_suppressed_cells(client):
    r = _hexes(client)
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    body = r.json()
    assert body["type"] == "FeatureCollection" and body["observed"] is True
    assert body["date"] == str(AS_OF) and body["res"] == max(CELL_RES)
    assert len(body["features"]) == 8  # 4 cells in each of two segments
    for f in body["features"]:
        p = f["properties"]
        assert h3.get_resolution(p["cell"]) == body["res"]
        assert p["devices"] > MIN_DEVICES and p["excess"] is not None and p["forecast"] is None
        ring = f["geometry"]["coordinates"][0]
        assert f["geometry"]["type"] == "Polygon" and ring[0] == ring[-1]


def test_forecast_day_spreads_the_segment_forecast_over_its_cells(client, catalogue):
    day = "2025-03-05"
    body = _hexes(client, date=day).json()
    assert body["observed"] is False
    by_segment = {}
    for f in body["features"]:
        p = f["properties"]
        assert p["devices"] is None and p["forecast"] > 0
        [segment] = p["segment_ids"]
        by_segment[segment] = by_segment.get(segment, 0.0) + p["forecast"]
    # The cells of a segment carry its whole forecast: their shares add up to 1.
    for segment, total in by_segment.items():
        series = client.get(f"/v1/routes/{CENTRAL_MED}/forecast", params={"segment": segment, "horizon": 4}).json()[
            "series"
        ][0]
        assert total == pytest.approx(series["forecast"][3]["yhat"])


def test_resolution_and_segment_filters(client, catalogue):
    segment = catalogue.route(CENTRAL_MED).segments[0].id
    body = _hexes(client, res=min(CELL_RES), segment=segment).json()
    assert body["res"] == min(CELL_RES) and len(body["features"]) == 4
    assert all(f["properties"]["segment_ids"] == [segment] for f in body["features"])
    r = _hexes(client, res=9)
    assert r.status_code == 422 and "res 9 is not published" in r.json()["detail"]


def test_days_outside_the_release_are_404(client):
    for day in ("2025-01-01", "2025-04-30"):
        r = _hexes(client, date=day)
        assert r.status_code == 404 and "outside release" in r.json()["detail"]


def test_route_without_cells_is_404(client):
    r = client.get(f"/v1/routes/{CHANNEL}/hexes")
    assert r.status_code == 404 and "no published cells" in r.json()["detail"]


def test_hexes_as_csv(client):
    r = client.get(f"/v1/routes/{CENTRAL_MED}/hexes", headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 8 and {"cell", "devices", "excess", "forecast"} <= set(rows[0])
