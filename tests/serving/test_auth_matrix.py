"""Role × endpoint × route scope: who gets what, and that a route outside the scope looks like no route at all."""

from __future__ import annotations

import pytest

from tests.serving.conftest import CENTRAL_MED, CHANNEL, bearer

ROLES = ("analyst", "planner", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
CROSSING = {CENTRAL_MED: "lampedusa", CHANNEL: "dover"}
UNKNOWN = "atlantis"

# (method, path template, minimal role); {route} and {crossing} are filled per target.
ENDPOINTS = [
    ("GET", "/v1/me", "analyst"),
    ("GET", "/v1/routes", "analyst"),
    ("GET", "/v1/routes/{route}", "analyst"),
    ("GET", "/v1/routes/{route}/forecast", "analyst"),
    ("GET", "/v1/routes/{route}/forecast?level=segment&history=3", "analyst"),
    ("GET", "/v1/routes/{route}/totals", "analyst"),
    ("GET", "/v1/routes/{route}/totals?exceeds=800&source=density", "analyst"),
    ("GET", "/v1/lineage?series_id=route:{route}", "analyst"),
    ("GET", "/v1/routes/{route}/hexes", "planner"),
    ("GET", "/v1/arrivals?route={route}", "planner"),
    ("GET", "/v1/crossing-points/{crossing}/arrivals", "planner"),
    ("GET", "/v1/alerts?route={route}", "planner"),
    ("GET", "/v1/scenarios", "planner"),
    ("GET", "/v1/scenarios/" + "0" * 32, "planner"),  # no such scenario: 404 from the planner role up
    ("POST", "/v1/scenarios", "planner"),  # an empty body: 422 from the planner role up
    ("GET", "/v1/releases", "admin"),
    ("POST", "/v1/admin/reload", "admin"),
]
# The map page and its own code are open: they hold no data (the page asks for a token, then for /v1).
MAP_PAGE = ("/map", "/map/static/map.js", "/map/static/map.css")
SCOPES = {"all": None, "channel": [CHANNEL], "central_med": [CENTRAL_MED]}


def _url(template: str, route: str) -> str:
    return template.format(route=route, crossing=CROSSING.get(route, UNKNOWN))


@pytest.fixture
def baseline(client):
    """What an unscoped admin gets for every endpoint and target: the answer when access is not the question."""
    return {
        (method, template, route): client.request(method, _url(template, route))
        for method, template, _ in ENDPOINTS
        for route in (CENTRAL_MED, CHANNEL, UNKNOWN)
    }


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("role", ROLES)
def test_auth_matrix(api, published, baseline, role, scope):
    headers = bearer(published, role, SCOPES[scope])
    for method, template, needed in ENDPOINTS:
        for route in (CENTRAL_MED, CHANNEL):
            url = _url(template, route)
            r = api.request(method, url, headers=headers)
            if RANK[role] < RANK[needed]:
                assert r.status_code == 403, (role, url)
                assert f"needs the {needed} role" in r.json()["detail"]
                continue
            in_scope = SCOPES[scope] is None or route in SCOPES[scope]
            if in_scope or "{" not in template:
                expected = baseline[(method, template, route)]
                assert r.status_code == expected.status_code, (role, scope, url, r.text)
                continue
            # Out of scope: exactly what a route that does not exist gets, with its name in place of the other.
            unknown = api.request(method, _url(template, UNKNOWN), headers=headers)
            assert r.status_code == unknown.status_code, (role, scope, url, r.text)
            assert r.text.replace(route, UNKNOWN).replace(CROSSING[route], UNKNOWN) == unknown.text, url


@pytest.mark.parametrize(("method", "template", "needed"), ENDPOINTS)
def test_no_token_is_401_with_a_clear_message(api, method, template, needed):
    r = api.request(method, _url(template, CHANNEL))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in r.json()["detail"]


def test_health_readiness_and_the_openapi_document_stay_open(api):
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", *MAP_PAGE):
        assert api.get(path).status_code == 200, path


def test_a_channel_analyst_cannot_learn_that_the_central_mediterranean_exists(api, published, catalogue):
    """The issue's second question: nothing a Channel-scoped analyst can ask names the other route or its places."""
    headers = bearer(published, "analyst", [CHANNEL])
    central = catalogue.route(CENTRAL_MED)
    secrets = {CENTRAL_MED, central.name, *(cp.id for cp in central.crossing_points)}
    secrets |= {cp.name for cp in central.crossing_points} | {s.id for s in central.segments}
    secrets -= {cp.id for cp in catalogue.route(CHANNEL).crossing_points}  # names both routes share, if any
    answers = [api.get(path) for path in ("/openapi.json", "/docs", "/readyz", "/healthz", *MAP_PAGE)]
    for method, template, _ in ENDPOINTS:
        for route in (CHANNEL, CENTRAL_MED, UNKNOWN):
            answers.append(api.request(method, _url(template, route), headers=headers))
    answers += [
        api.get("/v1/routes", headers={**headers, "Accept": "text/csv"}),
        api.get(f"/v1/routes/{CHANNEL}/forecast?source=frontex", headers=headers),
        api.get("/v1/lineage?series_id=all", headers=headers),
        api.get(f"/v1/routes/{CHANNEL}/forecast?horizon=999", headers=headers),
    ]
    for r in answers:
        # What the analyst asked for is echoed in a 404 for a route that does not exist: that is all it learns.
        text = r.text.replace(f"'{CENTRAL_MED}'", "'…'").replace(f"route:{CENTRAL_MED}", "…")
        leaked = sorted(s for s in secrets if s in text)
        assert leaked == [], (r.request.url, leaked)
    routes = api.get("/v1/routes", headers=headers).json()["routes"]
    assert [r["id"] for r in routes] == [CHANNEL]


def test_the_whole_matrix_answers_the_same_from_the_cache(published):
    """Every role × scope × endpoint × route × format, cold and then again in the same app (cached where it can
    be): the same status and the same bytes, so the cache can never answer what the app would not."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from tests.serving.test_fastpath import answer_cache

    settings = published.model_copy(update={"rate_limit_burst": 10_000})
    tokens = {(role, scope): bearer(settings, role, SCOPES[scope]) for role in ROLES for scope in SCOPES}
    requests = [
        (headers, method, _url(template, route), accept)
        for headers in tokens.values()
        for method, template, _ in ENDPOINTS
        for route in (CENTRAL_MED, CHANNEL, UNKNOWN)
        for accept in ("application/json", "text/csv")
    ]
    with TestClient(create_app(settings)) as c:
        cache = answer_cache(c.app)

        def answers() -> list[tuple[int, bytes]]:
            out = []
            for headers, method, url, accept in requests:
                r = c.request(method, url, headers={**headers, "Accept": accept})
                out.append((r.status_code, r.content if method == "GET" else b""))
            return out

        cold = answers()
        hits = cache.hits
        warm = answers()
    assert warm == cold
    assert sum(status == 200 for status, _ in cold) > 100
    assert cache.hits - hits >= sum(  # every cacheable 200 of the second pass came from the cache
        1
        for (_, method, url, _), (status, _) in zip(requests, cold, strict=True)
        if status == 200
        and method == "GET"
        and not url.startswith(("/v1/releases", "/v1/me"))
        and url != "/v1/scenarios"  # the list grows with every POST: never cached
    )
