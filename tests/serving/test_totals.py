"""Forecast totals (GET /v1/routes/{route_id}/totals): the sum of a series' next 7 and 28 days as published, with
the intervals of the total itself and how likely a total above a threshold is; a token scoped to one route learns
nothing of another's totals, and the answer cache never gives one question's answer to another.

The store is the real publish step's (tests/serving/conftest.py): totals for the Central Mediterranean's series,
none for the Channel; a total's quantiles are its yhat times TOTAL_FACTORS, so every probability is checkable by hand.
"""

from __future__ import annotations

import csv
import io
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from contracts.published import TOTAL_QUANTILES, TOTALS
from contracts.schemas import PUBLISHED_TOTALS
from geo.catalogue import DEFAULT_ROUTES_DIR
from jobs.stages import publish
from serving.app import create_app
from serving.store import StoreError, load_release
from tests.serving.conftest import (
    AS_OF,
    CENTRAL_MED,
    CHANNEL,
    MIN_DEVICES,
    PEOPLE_ROUTE_LEVEL,
    PEOPLE_SEGMENTS,
    SERVED,
    TOTAL_FACTORS,
    bearer,
    density_keys,
    forecast_rows,
    n_scores_of,
)
from tests.serving.test_fastpath import answer_cache

TOTALS_URL = f"/v1/routes/{CENTRAL_MED}/totals"
FORECAST_URL = f"/v1/routes/{CENTRAL_MED}/forecast"
SEGMENT = "zuwara_lampedusa"
UNKNOWN = "atlantis"
CSV_HEADERS = {"Accept": "text/csv"}


def windows(body: dict) -> dict[int, dict]:
    return {t["window"]: t for t in body["totals"]}


# ------------------------------------------------------------------------------------------------ what is answered


def test_the_route_totals_are_the_sums_of_its_next_days_with_the_intervals_of_the_total(client):
    body = client.get(TOTALS_URL).json()
    assert (body["route_id"], body["segment_id"], body["series_id"]) == (CENTRAL_MED, None, f"route:{CENTRAL_MED}")
    assert (body["source"], body["unit"], body["as_of"]) == ("density", "devices", str(AS_OF))
    assert body["release_id"] == client.get("/readyz").json()["release_id"]
    days = client.get(FORECAST_URL, params={"horizon": 28}).json()["series"][0]["forecast"]
    got = windows(body)
    assert sorted(got) == [7, 28]
    for window, total in got.items():
        assert total["yhat"] == sum(d["yhat"] for d in days[:window])  # 7 * 100 + 21 = 721 for the first week
        assert (total["start"], total["end"]) == (days[0]["ds"], days[window - 1]["ds"])
        assert (total["freq"], total["n_scores"], total["model"]) == ("D", n_scores_of(window), "seasonal_naive")
        assert total["lo80"] == pytest.approx(0.95 * total["yhat"]) and total["hi95"] == pytest.approx(
            1.1 * total["yhat"]
        )
        # The interval of the total, as published: narrower than the sum of the days' own bounds.
        assert total["lo95"] > sum(d["lo95"] for d in days[:window])
        assert total["exceedance"] is None
    assert got[7]["yhat"] == 721.0


@pytest.mark.parametrize(
    ("factor", "probability", "bound"),
    [
        (0.0, 0.975, "at least"),  # below the 2.5 % quantile (0.9 yhat): only a bound
        (0.9, 0.975, None),  # at the 2.5 % quantile
        (1.0, 0.5, None),  # the median
        (1.01, 0.45, None),  # halfway from the 50 % quantile (yhat) to the 60 % one (1.02 yhat)
        (1.09, 0.0375, None),  # halfway from the 95 % quantile (1.08 yhat) to the 97.5 % one (1.1 yhat)
        (1.1, 0.025, "at most"),  # at the 97.5 % quantile: only a bound
        (3.0, 0.025, "at most"),
    ],
)
def test_the_probability_of_exceeding_a_threshold_by_hand(client, factor, probability, bound):
    yhat = windows(client.get(TOTALS_URL).json())[28]["yhat"]  # 3178
    threshold = factor * yhat  # computed as the fixture's quantiles are, so "at the quantile" is exactly at it
    body = client.get(TOTALS_URL, params={"exceeds": threshold}).json()
    assert windows(body)[28]["exceedance"] == {"threshold": threshold, "probability": probability, "bound": bound}


def test_every_window_answers_its_own_probability(client):
    got = windows(client.get(TOTALS_URL, params={"exceeds": 800}).json())
    # 800 is above the week's 97.5 % quantile (1.1 x 721 = 793.1) and below the four weeks' 2.5 % one (0.9 x 3178).
    assert (got[7]["exceedance"]["probability"], got[7]["exceedance"]["bound"]) == (0.025, "at most")
    assert (got[28]["exceedance"]["probability"], got[28]["exceedance"]["bound"]) == (0.975, "at least")


def test_the_totals_of_a_segment(client, catalogue):
    body = client.get(TOTALS_URL, params={"segment_id": SEGMENT}).json()
    assert (body["segment_id"], body["series_id"]) == (SEGMENT, f"segment:{CENTRAL_MED}/{SEGMENT}")
    days = client.get(FORECAST_URL, params={"segment": SEGMENT, "horizon": 7}).json()["series"][0]["forecast"]
    assert windows(body)[7]["yhat"] == sum(d["yhat"] for d in days)
    missing = client.get(TOTALS_URL, params={"segment_id": UNKNOWN})
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith(f"no segment-level density totals for segment '{UNKNOWN}' of route")


def test_a_route_without_totals_answers_as_the_forecast_does_for_a_route_without_forecast(client, catalogue):
    unserved = next(r for r in catalogue.route_ids() if r not in SERVED)
    for route in (unserved, CHANNEL):
        totals = client.get(f"/v1/routes/{route}/totals")
        assert totals.status_code == 404
        assert totals.json()["detail"].startswith(f"no route-level density totals for route '{route}' in release")
    forecast = client.get(f"/v1/routes/{unserved}/forecast")
    totals = client.get(f"/v1/routes/{unserved}/totals")
    assert totals.status_code == forecast.status_code == 404
    assert totals.json() == {"detail": forecast.json()["detail"].replace(" forecast ", " totals ")}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "query exceeds: Input should be greater than or equal to 0 (got '-1')"),
        ("-0.5", "query exceeds: Input should be greater than or equal to 0 (got '-0.5')"),
        ("many", "query exceeds: Input should be a valid number, unable to parse string as a number (got 'many')"),
        ("nan", "query exceeds: Input should be a finite number (got 'nan')"),
        ("inf", "query exceeds: Input should be a finite number (got 'inf')"),
    ],
)
def test_a_threshold_that_is_negative_or_not_a_number_is_422_with_a_sentence(client, value, message):
    r = client.get(TOTALS_URL, params={"exceeds": value})
    assert r.status_code == 422
    assert r.json()["detail"] == message
    assert r.json()["errors"][0]["loc"] == ["query", "exceeds"]


def test_totals_as_csv_one_row_per_window(client):
    r = client.get(TOTALS_URL, params={"exceeds": 800}, headers=CSV_HEADERS)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(r["window"], r["yhat"], r["unit"], r["probability"], r["bound"]) for r in rows] == [
        ("7", "721.0", "devices", "0.025", "at most"),
        ("28", "3178.0", "devices", "0.975", "at least"),
    ]


# ------------------------------------------------------------------------------------------------ people and devices


@pytest.fixture
def people(people_store):
    with TestClient(create_app(people_store)) as c:
        c.headers.update(bearer(people_store, "admin"))
        yield c


def test_the_default_source_is_people_where_the_release_holds_people_series(people):
    body = people.get(TOTALS_URL).json()
    assert (body["source"], body["unit"], body["series_id"]) == ("people", "people", f"people/route:{CENTRAL_MED}")
    # 14 days of people forecasts: a week's total only, 7 x 5000 + 21.
    assert [(t["window"], t["yhat"]) for t in body["totals"]] == [(7, 7 * PEOPLE_ROUTE_LEVEL + 21)]
    density = people.get(TOTALS_URL, params={"source": "density"}).json()
    assert (density["source"], density["unit"], sorted(windows(density))) == ("density", "devices", [7, 28])


def test_a_segment_without_people_series_defaults_to_its_devices_as_the_forecast_does(people):
    segment = people.get(TOTALS_URL, params={"segment_id": SEGMENT}).json()
    assert (segment["source"], windows(segment)[7]["yhat"]) == ("people", 7 * PEOPLE_SEGMENTS[SEGMENT] + 21)
    other = people.get(TOTALS_URL, params={"segment_id": "sfax_lampedusa"}).json()
    forecast = people.get(FORECAST_URL, params={"segment": "sfax_lampedusa", "horizon": 1}).json()
    assert other["source"] == forecast["source"] == "density" and other["unit"] == "devices"


def test_an_official_source_without_totals_is_404(people):
    r = people.get(TOTALS_URL, params={"source": "frontex"})
    assert r.status_code == 404
    assert r.json()["detail"].startswith(f"no route-level frontex totals for route '{CENTRAL_MED}'")


# ------------------------------------------------------------------------------------------------ the store


def test_a_release_published_before_totals_is_served_without_them(tmp_path, published, catalogue):
    """A release without totals.parquet (as every release before totals): its forecasts are served, its totals are
    404, and loading it is no error."""
    forecasts = forecast_rows(catalogue, SERVED)
    settings = published.model_copy(update={"var_dir": tmp_path / "var"})
    release = publish.publish(
        settings.store_dir,
        forecasts,
        density_keys(catalogue),
        as_of=AS_OF,
        run=published_run(),
        min_devices=MIN_DEVICES,
    )
    assert not (release.path / TOTALS).exists()
    assert load_release(settings.store_dir).totals.empty
    with TestClient(create_app(settings)) as c:
        c.headers.update(bearer(settings, "admin"))
        assert c.get(FORECAST_URL).status_code == 200
        r = c.get(TOTALS_URL)
        assert r.status_code == 404
        assert r.json()["detail"] == (
            f"no route-level density totals for route '{CENTRAL_MED}' in release {release.release_id}"
        )


def published_run():
    from forecasting.tracking import RunInfo

    return RunInfo(run_id="run-old", model_version="1", experiment_id="1", tracking_uri="sqlite:///m.db")


def _current_totals(settings) -> tuple[pa.Table, object]:
    release = (settings.store_dir / "CURRENT").read_text().strip()
    path = settings.store_dir / "releases" / release / TOTALS
    return pq.read_table(path), path


@pytest.mark.parametrize(
    ("column", "change", "message"),
    [
        ("quantiles", lambda q: q[::-1], "quantiles that cannot be read"),
        ("quantiles", lambda q: q[:-1], "quantiles that cannot be read"),
        ("hi80", lambda v: 0.0, "bounds that are not nested"),
    ],
)
def test_a_totals_file_publish_would_have_refused_is_not_served(published, column, change, message):
    table, path = _current_totals(published)
    rows = table.to_pylist()
    rows[0][column] = change(rows[0][column])
    pq.write_table(pa.Table.from_pylist(rows, schema=PUBLISHED_TOTALS), path)
    with pytest.raises(StoreError, match=f"the total of {rows[0]['series_id']} over 7 periods has {message}"):
        load_release(published.store_dir)


def test_the_published_quantiles_are_one_per_total_quantile(published):
    table, _ = _current_totals(published)
    assert table.schema.remove_metadata() == PUBLISHED_TOTALS
    first = table.to_pylist()[0]
    assert first["quantiles"] == pytest.approx([first["yhat"] * f for f in TOTAL_FACTORS])
    assert len(first["quantiles"]) == len(TOTAL_QUANTILES)


# ------------------------------------------------------------------------------------------------ scope


@pytest.fixture
def without_central_med(tmp_path, published):
    """The same store served with a catalogue that has no Central Mediterranean: there it is an unknown route."""
    routes = tmp_path / "routes"
    shutil.copytree(DEFAULT_ROUTES_DIR, routes, ignore=shutil.ignore_patterns(f"{CENTRAL_MED}.*"))
    assert not list(routes.glob(f"{CENTRAL_MED}*")) and list(routes.glob(f"{CHANNEL}*"))
    return published.model_copy(update={"routes_dir": routes})


PROBES = [
    {},
    {"exceeds": 800},
    {"exceeds": 0},
    {"source": "density"},
    {"source": "people"},
    {"segment_id": SEGMENT},
    {"segment_id": SEGMENT, "exceeds": 3000},
    {"exceeds": -1},  # refused before the route is looked at, alike for every route
]


def test_a_channel_token_gets_for_the_central_mediterranean_exactly_what_an_unknown_route_gets(
    published, without_central_med
):
    """An attacker with a Channel token probes the Central Mediterranean's totals with every parameter: each answer
    is byte for byte what the same request gets from a server where that route does not exist, and what a made-up
    route gets with its name in place."""
    attacker = bearer(published, "planner", [CHANNEL])
    current = (published.store_dir / "CURRENT").read_text().strip()
    probes = [*PROBES, {"release": current, "exceeds": 800}, {"release": "20990101-0123456789ab"}]
    with TestClient(create_app(published)) as c, TestClient(create_app(without_central_med)) as unaware:
        for params in probes:
            probe = c.get(TOTALS_URL, params=params, headers=attacker)
            for headers in (attacker, bearer(published, "admin")):
                control = unaware.get(TOTALS_URL, params=params, headers=headers)
                assert (probe.status_code, probe.content) == (control.status_code, control.content), params
            made_up = c.get(f"/v1/routes/{UNKNOWN}/totals", params=params, headers=attacker)
            assert made_up.status_code == probe.status_code, params
            assert probe.content.replace(CENTRAL_MED.encode(), UNKNOWN.encode()) == made_up.content, params
            assert probe.status_code in (404, 422), params
            assert b"3178" not in probe.content and b"721" not in probe.content


def test_a_channel_token_cannot_reach_another_route_s_segment_through_its_own_route(published):
    """The Central Mediterranean's segment asked on the Channel's route answers as a segment that does not exist."""
    attacker = bearer(published, "analyst", [CHANNEL])
    with TestClient(create_app(published)) as c:
        for params in ({}, {"exceeds": 100}):
            probe = c.get(f"/v1/routes/{CHANNEL}/totals", params={**params, "segment_id": SEGMENT}, headers=attacker)
            control = c.get(f"/v1/routes/{CHANNEL}/totals", params={**params, "segment_id": UNKNOWN}, headers=attacker)
            assert (probe.status_code, control.status_code) == (404, 404)
            assert probe.content.replace(SEGMENT.encode(), UNKNOWN.encode()) == control.content


# ------------------------------------------------------------------------------------------------ the answer cache


def _twice(c, url: str, params: list[dict], headers: dict | None = None) -> dict[str, list]:
    """Each of ``params`` asked, then each again: the answers (status, bytes) by params."""
    answers: dict[str, list] = {}
    for p in params * 2:
        r = c.get(url, params=p, headers=headers or {})
        answers.setdefault(repr(sorted(p.items())), []).append((r.status_code, r.content))
    return answers


def _uncached(settings, url: str, params: dict, headers: dict) -> tuple[int, bytes]:
    """The answer of a fresh app, which has cached nothing."""
    with TestClient(create_app(settings)) as fresh:
        r = fresh.get(url, params=params, headers=headers)
        return r.status_code, r.content


@pytest.mark.parametrize(
    "params",
    [
        [{"exceeds": 700}, {"exceeds": 800}, {}, {"exceeds": 3178}],
        [{}, {"source": "density"}, {"source": "frontex"}],
        [{}, {"segment_id": SEGMENT}, {"segment_id": "tripoli_malta_sicily"}, {"segment_id": SEGMENT, "exceeds": 1}],
    ],
    ids=["exceeds", "source", "segment_id"],
)
def test_the_answer_cache_keeps_every_question_apart(people_store, params):
    headers = bearer(people_store, "analyst")
    with TestClient(create_app(people_store)) as c:
        cache = answer_cache(c.app)
        answers = _twice(c, TOTALS_URL, params, headers)
        cached = sum(1 for first, _ in answers.values() if first[0] == 200)
        assert cache.hits == cached  # every 200 was answered again from the cache...
    bodies = {first[1] for first, _ in answers.values()}
    assert len(bodies) == len(params)  # ...and no two questions got one answer
    for p in params:
        first, again = answers[repr(sorted(p.items()))]
        assert first == again == _uncached(people_store, TOTALS_URL, p, headers), p


def test_the_answer_cache_never_gives_a_scoped_token_what_another_scope_was_answered(published):
    everyone, central, channel = (bearer(published, "analyst", s) for s in (None, [CENTRAL_MED], [CHANNEL]))
    with TestClient(create_app(published)) as c:
        cache = answer_cache(c.app)
        wide = c.get(TOTALS_URL, params={"exceeds": 800}, headers=everyone)
        assert wide.status_code == 200
        for _ in range(2):
            refused = c.get(TOTALS_URL, params={"exceeds": 800}, headers=channel)
            assert refused.status_code == 404 and refused.json()["detail"].startswith(f"unknown route '{CENTRAL_MED}'")
        assert cache.hits == 0
        narrow = [c.get(TOTALS_URL, params={"exceeds": 800}, headers=central) for _ in range(2)]
        assert cache.hits == 1  # the Central Mediterranean scope has its own entry, not the unscoped one
        assert narrow[0].content == narrow[1].content == wide.content
        as_csv = c.get(TOTALS_URL, params={"exceeds": 800}, headers={**everyone, **CSV_HEADERS})
        assert as_csv.headers["content-type"].startswith("text/csv") and as_csv.content != wide.content
