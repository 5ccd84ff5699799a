"""People and devices: every answer says its unit; forecasts and arrivals answer in people where the release holds
the measurement model's series, in devices (a diagnostic) where it does not; lineage names the model and the route's
parameters; a token scoped to one route learns nothing of another's people figures."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient

from jobs.stages.counts import SOURCES as OFFICIAL_SOURCES
from serving.app import create_app
from serving.store import PEOPLE_SOURCES, StoreError, list_releases, load_release, unit_of
from tests.serving.conftest import (
    CENTRAL_MED,
    CHANNEL,
    HORIZON,
    PEOPLE_HORIZON,
    PEOPLE_MODEL,
    PEOPLE_POINTS,
    PEOPLE_ROUTE_LEVEL,
    PEOPLE_SEGMENTS,
    bearer,
)
from tests.serving.test_fastpath import answer_cache

FORECAST = f"/v1/routes/{CENTRAL_MED}/forecast"
CSV_HEADERS = {"Accept": "text/csv"}


@pytest.fixture
def people(people_store):
    """A client (admin, every route) of a store whose release holds Central Mediterranean people series."""
    with TestClient(create_app(people_store)) as c:
        c.headers.update(bearer(people_store, "admin"))
        yield c


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


# ------------------------------------------------------------------------------------------------ the unit rule


@pytest.mark.parametrize(
    ("source", "unit"),
    [
        ("people", "people"),
        ("frontex", "people"),
        ("uk-channel", "people"),
        ("iom-dtm", "people"),
        ("generic", "people"),
        ("density", "devices"),
        ("flows", "devices"),
        ("some-new-phone-signal", "devices"),  # never people unless named
    ],
)
def test_unit_of_a_source(source, unit):
    assert unit_of(source) == unit


def test_every_official_counts_source_is_people():
    assert PEOPLE_SOURCES == {"people", *OFFICIAL_SOURCES}


# ------------------------------------------------------------------------------------------------ forecasts


def test_the_route_forecast_defaults_to_people_and_says_so(people):
    body = people.get(FORECAST).json()
    assert (body["source"], body["unit"], body["horizon"]) == ("people", "people", PEOPLE_HORIZON)
    [series] = body["series"]
    assert (series["series_id"], series["unit"]) == (f"people/route:{CENTRAL_MED}", "people")
    assert [p["yhat"] for p in series["forecast"][:3]] == [PEOPLE_ROUTE_LEVEL, PEOPLE_ROUTE_LEVEL + 1, 5002.0]
    assert series["model"] == "ets"


def test_density_asked_for_gives_the_device_diagnostics(people):
    body = people.get(FORECAST, params={"source": "density"}).json()
    assert (body["source"], body["unit"], body["horizon"]) == ("density", "devices", HORIZON)
    [series] = body["series"]
    assert (series["series_id"], series["unit"]) == (f"route:{CENTRAL_MED}", "devices")


def test_people_by_segment(people):
    body = people.get(FORECAST, params={"level": "segment", "horizon": 2}).json()
    assert (body["source"], body["unit"]) == ("people", "people")
    got = {s["segment_id"]: [p["yhat"] for p in s["forecast"]] for s in body["series"]}
    assert got == {seg: [level, level + 1] for seg, level in PEOPLE_SEGMENTS.items()}
    assert {s["unit"] for s in body["series"]} == {"people"}
    one = people.get(FORECAST, params={"segment": "zuwara_lampedusa", "horizon": 1}).json()
    assert [s["series_id"] for s in one["series"]] == [f"people/segment:{CENTRAL_MED}/zuwara_lampedusa"]
    # A segment the model has no series for answers its devices rather than nothing.
    other = people.get(FORECAST, params={"segment": "sfax_lampedusa", "horizon": 1}).json()
    assert (other["source"], other["unit"], other["series"][0]["series_id"]) == (
        "density",
        "devices",
        f"segment:{CENTRAL_MED}/sfax_lampedusa",
    )


def test_a_route_without_people_series_defaults_to_devices(people):
    body = people.get(f"/v1/routes/{CHANNEL}/forecast", params={"horizon": 1}).json()
    assert (body["source"], body["unit"], body["series"][0]["series_id"]) == ("density", "devices", f"route:{CHANNEL}")
    r = people.get(f"/v1/routes/{CHANNEL}/forecast", params={"source": "people"})
    assert r.status_code == 404
    assert r.json()["detail"].startswith(f"no route-level people forecast for route '{CHANNEL}'")


def test_an_official_count_is_people(people):
    body = people.get(FORECAST, params={"source": "frontex"}).json()
    assert (body["unit"], body["series"][0]["unit"]) == ("people", "people")


@pytest.mark.parametrize(("params", "unit"), [({}, "people"), ({"source": "density"}, "devices")])
def test_every_forecast_csv_row_says_its_unit(people, params, unit):
    rows = csv_rows(people.get(FORECAST, params={**params, "history": 2, "horizon": 2}, headers=CSV_HEADERS))
    assert len(rows) == 4 and {r["unit"] for r in rows} == {unit}


def test_routes_list_people_among_the_sources(people):
    sources = {r["id"]: r["sources"] for r in people.get("/v1/routes").json()["routes"]}
    assert (sources[CENTRAL_MED], sources[CHANNEL]) == (["density", "frontex", "people"], ["density"])


# ------------------------------------------------------------------------------------------------ arrivals


@pytest.mark.parametrize("point", sorted(PEOPLE_POINTS))
def test_arrivals_at_a_point_with_a_people_series_are_people(people, point):
    """Valletta and Pozzallo share a segment, yet each has its own figures: its own crossing series."""
    segment, first = PEOPLE_POINTS[point]
    body = people.get(f"/v1/crossing-points/{point}/arrivals", params={"days": 3}).json()
    assert (body["unit"], body["days"]) == ("people", 3)
    [cp] = body["crossing_points"]
    assert (cp["unit"], cp["segment_id"]) == ("people", segment)
    assert cp["series_id"] == f"people/point:{CENTRAL_MED}/{point}"
    assert [d["yhat"] for d in cp["days"]] == [first, first + 1, first + 2]
    assert [d["hi95"] for d in cp["days"]] == pytest.approx([1.2 * first, 1.2 * (first + 1), 1.2 * (first + 2)])
    assert cp["total"]["yhat"] == 3 * first + 3
    assert PEOPLE_MODEL["model_id"] in cp["basis"] and "people crossing at" in cp["basis"]


@pytest.mark.parametrize("point", sorted(PEOPLE_POINTS))
def test_a_weeks_arrivals_come_with_the_interval_of_the_total_where_the_release_has_one(people, point):
    """7 days at Valletta and Pozzallo: the published total of their series, whose interval is narrower than the sum
    of the daily bounds (the fixture's totals are ±5 % and ±10 %, the days' ±10 % and ±20 %). Lampedusa's series has
    no published total, nor does any point for 3 days: the sums of the daily bounds, saying so."""
    _, first = PEOPLE_POINTS[point]
    week = people.get(f"/v1/crossing-points/{point}/arrivals", params={"days": 7}).json()["crossing_points"][0]
    total = week["total"]
    expected = sum(first + i for i in range(7))
    assert (total["days"], total["yhat"]) == (7, pytest.approx(expected))
    if point == "lampedusa":
        assert total["interval"] == "sum_of_daily_bounds"
        assert total["hi80"] == pytest.approx(sum(d["hi80"] for d in week["days"]))
    else:
        assert total["interval"] == "total"
        assert (total["lo80"], total["hi80"]) == (pytest.approx(0.95 * expected), pytest.approx(1.05 * expected))
        assert (total["lo95"], total["hi95"]) == (pytest.approx(0.9 * expected), pytest.approx(1.1 * expected))
    three = people.get(f"/v1/crossing-points/{point}/arrivals", params={"days": 3}).json()["crossing_points"][0]
    assert three["total"]["interval"] == "sum_of_daily_bounds"
    assert three["total"]["hi95"] == pytest.approx(sum(d["hi95"] for d in three["days"]))


def test_days_of_people_arrivals_are_what_the_release_forecasts_of_people(people):
    body = people.get("/v1/crossing-points/valletta/arrivals", params={"days": 20}).json()
    assert body["days"] == PEOPLE_HORIZON and len(body["crossing_points"][0]["days"]) == PEOPLE_HORIZON


def test_a_route_with_people_for_some_points_only_says_the_unit_per_point(people, catalogue):
    body = people.get("/v1/arrivals", params={"route": CENTRAL_MED, "days": 2}).json()
    units = {cp["crossing_point_id"]: cp["unit"] for cp in body["crossing_points"]}
    landings = {cp.id for cp in catalogue.route(CENTRAL_MED).crossing_points if cp.role == "landing"}
    people_points = {p for p in PEOPLE_POINTS if p in landings}
    assert set(units) == landings and landings - people_points
    assert units == {p: "people" if p in people_points else "devices" for p in landings}
    assert body["unit"] is None  # mixed: each point says its own
    devices = next(cp for cp in body["crossing_points"] if cp["unit"] == "devices")
    assert devices["series_id"] == f"segment:{CENTRAL_MED}/{devices['segment_id']}"
    assert "distinct phones" in devices["basis"] and "not people" in devices["basis"]


def test_a_route_without_people_series_answers_arrivals_in_devices(people):
    body = people.get("/v1/arrivals", params={"route": CHANNEL, "days": 2}).json()
    assert body["unit"] == "devices" and body["crossing_points"]
    assert {cp["unit"] for cp in body["crossing_points"]} == {"devices"}
    assert all(cp["series_id"].startswith("segment:") for cp in body["crossing_points"])


def test_arrivals_csv_rows_say_their_unit(people):
    rows = csv_rows(people.get("/v1/arrivals", params={"route": CENTRAL_MED, "days": 1}, headers=CSV_HEADERS))
    units = {r["crossing_point_id"]: r["unit"] for r in rows}
    assert units["valletta"] == units["pozzallo"] == "people" and units["porto_empedocle"] == "devices"


# ------------------------------------------------------------------------------------------------ lineage


def test_lineage_of_a_people_series_names_the_model_and_its_parameters(people):
    body = people.get("/v1/lineage", params={"series_id": f"people/point:{CENTRAL_MED}/valletta"}).json()
    assert (body["source"], body["unit"], body["model"], body["run_id"]) == ("people", "people", "ets", "run-p")
    model = body["people_model"]
    assert (model["model_id"], model["unit"], model["route_id"]) == (PEOPLE_MODEL["model_id"], "people", CENTRAL_MED)
    assert model["fitted_on"] == PEOPLE_MODEL["fitted_on"]
    assert model["params"] == PEOPLE_MODEL["routes"][CENTRAL_MED]


def test_lineage_of_a_device_series_has_no_people_model(people):
    body = people.get("/v1/lineage", params={"series_id": f"route:{CENTRAL_MED}"}).json()
    assert (body["unit"], body["people_model"]) == ("devices", None)


# ------------------------------------------------------------------------------------------------ no people series


def test_a_release_without_people_series_answers_in_devices_as_before(client):
    forecast = client.get(FORECAST, params={"horizon": 1}).json()
    assert (forecast["source"], forecast["unit"], forecast["series"][0]["unit"]) == ("density", "devices", "devices")
    arrivals = client.get("/v1/crossing-points/valletta/arrivals", params={"days": 1}).json()
    assert (arrivals["unit"], arrivals["crossing_points"][0]["unit"]) == ("devices", "devices")
    assert arrivals["crossing_points"][0]["series_id"] == f"segment:{CENTRAL_MED}/tripoli_malta_sicily"
    lineage = client.get("/v1/lineage", params={"series_id": f"route:{CENTRAL_MED}"}).json()
    assert lineage["people_model"] is None
    assert client.get(FORECAST, params={"source": "people"}).status_code == 404


def test_a_malformed_people_model_is_refused(people_store):
    release = (people_store.store_dir / "CURRENT").read_text().strip()
    path = people_store.store_dir / "releases" / release / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["people_model"]["routes"][CENTRAL_MED]["scale"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=f"people_model is malformed \\(routes.{CENTRAL_MED}.scale: Field required"):
        load_release(people_store.store_dir)
    [entry] = list_releases(people_store.store_dir)
    assert "people_model is malformed" in entry["error"]


def test_the_people_model_as_the_nightly_people_stage_writes_it_is_served(people_store):
    """jobs.stages.people.model_document: fitted_on keyed by granularity (null without daily figures), null
    parameters where a fit gave none, and keys serving does not show (errors, priors, model)."""
    release = (people_store.store_dir / "CURRENT").read_text().strip()
    path = people_store.store_dir / "releases" / release / "manifest.json"
    manifest = json.loads(path.read_text())
    routes = {
        r: {**p, "errors": {"level:sub_saharan": 0.2, "excess:west_africa": None}}
        for r, p in PEOPLE_MODEL["routes"].items()
    }
    routes[CHANNEL] = {**routes[CHANNEL], "scale": None, "sigma_log": None}
    manifest["people_model"] = {
        "model_id": "people-0123456789ab",
        "unit": "people",
        "model": "forecasting.people (level or excess of the home-network groups × scale, Little's law)",
        "routes": routes,
        "priors": {"days_on_route": {CENTRAL_MED: 21}},
        "fitted_on": {"monthly": "2024-01-01..2025-02-01", "daily": None},
    }
    path.write_text(json.dumps(manifest))
    with TestClient(create_app(people_store)) as c:
        for routes_scope in (None, [CENTRAL_MED]):
            headers = bearer(people_store, "analyst", routes_scope)
            r = c.get("/v1/lineage", params={"series_id": f"people/route:{CENTRAL_MED}"}, headers=headers)
            assert r.status_code == 200, r.text
            model = r.json()["people_model"]
            assert (model["model_id"], model["fitted_on"]) == (
                "people-0123456789ab",
                {"monthly": "2024-01-01..2025-02-01", "daily": None},
            )
            assert model["params"] == PEOPLE_MODEL["routes"][CENTRAL_MED]  # errors not shown
            assert "priors" not in model and "errors" not in model["params"]
        arrivals = c.get("/v1/crossing-points/valletta/arrivals", headers=bearer(people_store, "planner")).json()
        assert "people-0123456789ab" in arrivals["crossing_points"][0]["basis"]


# ------------------------------------------------------------------------------------------------ scope


def test_a_token_for_the_channel_cannot_reach_the_central_mediterranean_people(people_store):
    """An attacker with a Channel planner token probes the other route's people figures: every probe answers exactly
    as the same probe of a route and crossing point that do not exist, and no answer carries the other route."""
    headers = bearer(people_store, "planner", [CHANNEL])
    probes = [
        (FORECAST, {"source": "people"}),
        (FORECAST, {"level": "segment"}),
        (FORECAST, {"segment": "tripoli_malta_sicily", "source": "people"}),
        ("/v1/crossing-points/valletta/arrivals", {}),
        ("/v1/crossing-points/pozzallo/arrivals", {"days": 3}),
        ("/v1/arrivals", {"route": CENTRAL_MED}),
        ("/v1/lineage", {"series_id": f"people/point:{CENTRAL_MED}/valletta"}),
        ("/v1/lineage", {"series_id": f"people/segment:{CENTRAL_MED}/tripoli_malta_sicily"}),
        ("/v1/lineage", {"series_id": f"people/route:{CENTRAL_MED}"}),
    ]

    def unknown(text: str) -> str:
        for real in (CENTRAL_MED, "valletta", "pozzallo", "tripoli_malta_sicily"):
            text = text.replace(real, "atlantis")
        return text

    with TestClient(create_app(people_store)) as c:
        for url, params in probes:
            probe = c.get(url, params=params, headers=headers)
            control = c.get(unknown(url), params={k: unknown(str(v)) for k, v in params.items()}, headers=headers)
            assert (probe.status_code, control.status_code) == (404, 404), url
            assert unknown(probe.json()["detail"]) == control.json()["detail"], url
        landings = c.get("/v1/arrivals", params={"days": 365}, headers=headers).json()
        assert {cp["route_id"] for cp in landings["crossing_points"]} == {CHANNEL} and landings["unit"] == "devices"
        text = c.get(f"/v1/routes/{CHANNEL}/forecast", headers=headers).text
        assert CENTRAL_MED not in text and PEOPLE_MODEL["model_id"] not in text


def test_lineage_shows_only_the_route_s_own_parameters(people_store):
    headers = bearer(people_store, "analyst", [CENTRAL_MED])
    with TestClient(create_app(people_store)) as c:
        r = c.get("/v1/lineage", params={"series_id": f"people/route:{CENTRAL_MED}"}, headers=headers)
    model = r.json()["people_model"]
    assert (model["route_id"], model["params"]["scale"]) == (CENTRAL_MED, 2.5)
    # Nor another route's parameters, nor the official figures only the Channel has (its source's name, uk-channel).
    assert PEOPLE_MODEL["routes"][CHANNEL]["reason"] not in r.text and CHANNEL not in r.text
    assert model["fitted_on"] == {"frontex": PEOPLE_MODEL["fitted_on"]["frontex"]}


# ------------------------------------------------------------------------------------------------ the answer cache


def test_the_answer_cache_keeps_people_and_devices_apart(people):
    cache = answer_cache(people.app)
    answers = {}
    for params in ({}, {"source": "density"}, {}, {"source": "density"}):
        r = people.get(FORECAST, params={**params, "horizon": 1})
        answers.setdefault(params.get("source", "default"), []).append(r.content)
    assert cache.hits == 2  # the repeats came from the cache...
    default, density = answers["default"], answers["density"]
    assert default[0] == default[1] and density[0] == density[1]  # ...each the same bytes as its first answer
    assert json.loads(default[1])["unit"] == "people" and json.loads(density[1])["unit"] == "devices"
    csv_default = csv_rows(people.get(FORECAST, params={"horizon": 1}, headers=CSV_HEADERS))
    assert [r["unit"] for r in csv_default] == ["people"]  # the JSON answer cached under the same path is not reused


# ------------------------------------------------------------------------------------------------ alerts


def test_alerts_say_their_unit(people):
    """The fixture's last observation jumps above every series' history: people and device series both alert."""
    alerts = people.get("/v1/alerts", params={"limit": 10_000, "route": CENTRAL_MED}).json()["alerts"]
    by_source = {(a["source"], a["unit"]) for a in alerts}
    assert (
        {("people", "people"), ("density", "devices"), ("frontex", "people")}
        >= by_source
        >= {
            ("people", "people"),
            ("density", "devices"),
        }
    )
    point = next(a for a in alerts if a["series_id"] == f"people/point:{CENTRAL_MED}/valletta")
    assert " people on " in point["message"]
    rows = csv_rows(people.get("/v1/alerts", params={"limit": 10_000, "route": CENTRAL_MED}, headers=CSV_HEADERS))
    assert {(r["source"], r["unit"]) for r in rows} == by_source


def test_cells_say_they_count_devices_even_beside_people_series(people, catalogue):
    segment = catalogue.route(CENTRAL_MED).segments[0].id
    body = people.get(f"/v1/routes/{CENTRAL_MED}/hexes", params={"date": "2025-03-02", "segment": segment}).json()
    assert body["unit"] == "devices" and body["observed"] is False
