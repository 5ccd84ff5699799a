"""The answer cache in front of the API: same bytes for the same (role, scope, request), nothing it guards skipped."""

import datetime as dt
import time

import jwt
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.audit import read_records
from serving.auth import signing_key
from serving.fastpath import AnswerCache
from tests.serving.conftest import AS_OF, CENTRAL_MED, CHANNEL, bearer, publish_release


def answer_cache(app) -> AnswerCache:
    layer = app.middleware_stack
    while not isinstance(layer, AnswerCache):
        layer = layer.app
    return layer


def test_a_repeated_read_is_answered_from_the_cache_and_still_audited(client, published):
    url = f"/v1/routes/{CHANNEL}/forecast?horizon=3"
    first = client.get(url)
    cache = answer_cache(client.app)
    before = cache.hits
    second = client.get(url)
    assert cache.hits == before + 1
    assert (second.status_code, second.content) == (200, first.content)
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    one, two = list(read_records(published.audit_path))[-2:]
    for key in ("subject", "role", "endpoint", "status", "rows", "params"):
        assert one[key] == two[key], key
    assert two["endpoint"] == "/v1/routes/{route_id}/forecast" and two["rows"] == 3


def test_a_narrower_token_never_gets_an_answer_made_for_a_wider_one(api, published):
    wide = api.get("/v1/routes", headers=bearer(published, "admin")).json()
    narrow = api.get("/v1/routes", headers=bearer(published, "admin", [CHANNEL])).json()
    assert len(wide["routes"]) > 1 and [r["id"] for r in narrow["routes"]] == [CHANNEL]
    url = f"/v1/routes/{CENTRAL_MED}/forecast"
    assert api.get(url, headers=bearer(published, "planner")).status_code == 200
    assert api.get(url, headers=bearer(published, "planner", [CHANNEL])).status_code == 404
    # Same scope, lower role: the planner's cached answer is not the analyst's to take.
    assert api.get("/v1/alerts", headers=bearer(published, "planner")).status_code == 200
    assert api.get("/v1/alerts", headers=bearer(published, "analyst")).status_code == 403


def test_an_expired_or_forged_token_is_refused_even_for_a_cached_answer(api, published):
    url = f"/v1/routes/{CHANNEL}/forecast"
    assert api.get(url, headers=bearer(published)).status_code == 200
    now = int(time.time())
    claims = {"iss": "routecast", "aud": "routecast-api", "sub": "x", "role": "admin", "routes": ["*"], "jti": "j"}
    expired = jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, signing_key(published), algorithm="HS256")
    forged = jwt.encode({**claims, "iat": now, "exp": now + 600}, b"k" * 32, algorithm="HS256")
    for token in (expired, forged):
        r = api.get(url, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
    assert api.get(url).status_code == 401


def test_the_rate_limit_counts_cached_answers(published):
    settings = published.model_copy(update={"rate_limit_burst": 3, "rate_limit_per_minute": 1})
    with TestClient(create_app(settings)) as c:
        c.headers.update(bearer(settings))
        codes = [c.get(f"/v1/routes/{CHANNEL}/forecast").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]


def test_a_new_release_empties_the_cache(client, published, catalogue):
    url = f"/v1/routes/{CHANNEL}/forecast?horizon=1"
    old = client.get(url).json()["release_id"]
    client.get(url)
    new = publish_release(published, catalogue, AS_OF + dt.timedelta(days=1), "run-3")
    client.post("/v1/admin/reload")
    assert client.get(url).json()["release_id"] == new.release_id != old
    assert all(key[0] == new.release_id for key in answer_cache(client.app).answers)


# ------------------------------------------------------------------------------------------ attacks on the cache


def test_two_bearer_tokens_never_plant_a_wide_answer_under_a_narrow_key(api, published):
    """The attack: a wide token first and a Channel analyst's last, so that an app reading the first header and a
    cache keyed on the last would store every route under the Channel analyst's key."""
    wide = bearer(published, "admin")["Authorization"]
    narrow = bearer(published, "analyst", [CHANNEL])
    for first, last in ((wide, narrow["Authorization"]), (narrow["Authorization"], wide)):
        for url in ("/v1/routes", f"/v1/routes/{CENTRAL_MED}/forecast", "/v1/alerts"):
            r = api.get(url, headers=[("Authorization", first), ("Authorization", last)])
            assert r.status_code == 400 and r.json()["detail"] == "send one Authorization header, not 2", url
    assert answer_cache(api.app).answers == {}
    routes = api.get("/v1/routes", headers=narrow).json()["routes"]
    assert [r["id"] for r in routes] == [CHANNEL]
    assert api.get(f"/v1/routes/{CENTRAL_MED}/forecast", headers=narrow).status_code == 404
    assert api.get("/v1/alerts", headers=narrow).status_code == 403


def test_two_accept_headers_are_negotiated_once_for_the_answer_and_its_key(api, published):
    """The attack: CSV asked in one Accept header and JSON in another, so that every later JSON client of the
    role and scope would be served CSV from the cache."""
    headers = bearer(published, "analyst")
    url = "/v1/routes"
    both = api.get(url, headers=[*headers.items(), ("Accept", "text/csv"), ("Accept", "application/json")])
    assert both.status_code == 200 and both.headers["content-type"].startswith("text/csv")
    flipped = api.get(url, headers=[*headers.items(), ("Accept", "application/json"), ("Accept", "text/csv")])
    assert flipped.content == both.content
    plain = api.get(url, headers=headers)
    assert plain.headers["content-type"] == "application/json" and plain.json()["routes"]
    refused = api.get(url, headers={**headers, "Accept": "text/csv;q=0, application/json"})
    assert refused.headers["content-type"] == "application/json"


def test_every_v1_answer_says_no_store(api, published):
    headers = bearer(published, "admin")
    for url in ("/v1/routes", "/v1/routes", "/v1/me", "/v1/releases", f"/v1/routes/{CHANNEL}/forecast"):
        assert api.get(url, headers=headers).headers["cache-control"] == "no-store", url
    assert api.get("/v1/routes").headers["cache-control"] == "no-store"  # the 401 too
    assert api.post("/v1/admin/reload", headers=headers).headers["cache-control"] == "no-store"


def test_memory_is_bounded_by_the_byte_budget(published):
    budget = 64 * 1024
    settings = published.model_copy(update={"answer_cache_mb": budget / 2**20, "rate_limit_burst": 10_000})
    with TestClient(create_app(settings)) as c:
        c.headers.update(bearer(settings))
        cache = answer_cache(c.app)
        for horizon in range(1, 60):
            assert c.get(f"/v1/routes/{CHANNEL}/forecast?horizon={horizon}&history=30").status_code == 200
            assert cache.bytes <= budget
        assert 0 < len(cache.answers) < 59  # the oldest were dropped to keep the budget
        assert cache.bytes == sum(a.size for a in cache.answers.values())
        newest = next(reversed(cache.answers))
        assert newest[4] == b"horizon=59&history=30"


def test_an_answer_is_kept_only_under_the_principal_the_app_authorized(published):
    """By construction: the key is recomputed from what the app actually did; a principal swapped in between
    (as a wrong header read would) stores nothing."""
    from serving.auth import AUTH_SCOPE_KEY, PRINCIPAL_SCOPE_KEY, decode_token

    app = create_app(published)
    narrow = decode_token(published, bearer(published, "analyst", [CHANNEL])["Authorization"][7:])

    @app.middleware("http")
    async def swap(request, call_next):  # runs inside the cache: what a confused app would do
        response = await call_next(request)
        request.scope[PRINCIPAL_SCOPE_KEY] = narrow
        request.scope[AUTH_SCOPE_KEY] = narrow
        return response

    with TestClient(app) as c:
        assert c.get("/v1/routes", headers=bearer(published, "admin")).status_code == 200
        assert answer_cache(c.app).answers == {}


def test_a_revoked_token_gets_no_cached_answer_and_is_audited(published):
    from serving.auth import revoke_token

    settings = published.model_copy(update={"revocation_check_s": 0.01})
    headers = bearer(settings, "planner")
    jti = jwt.decode(headers["Authorization"][7:], options={"verify_signature": False})["jti"]
    with TestClient(create_app(settings)) as c:
        url = f"/v1/routes/{CHANNEL}/forecast"
        assert c.get(url, headers=headers).status_code == 200
        assert c.get(url, headers=headers).status_code == 200  # now cached
        revoke_token(settings, jti, by="test", reason="left the team")
        time.sleep(0.05)
        r = c.get(url, headers=headers)
        assert r.status_code == 401 and r.json()["detail"] == "token has been revoked"
    last = list(read_records(settings.audit_path))[-1]
    assert (last["status"], last["token_id"], last["subject"]) == (401, jti, "tester")


def test_the_same_new_request_from_many_clients_at_once_is_made_once(published, monkeypatch):
    """A crowd asking one new question together waits for one answer instead of each making it (the herd that made
    the bench's 'cold' mix 4x slower once the handlers stopped memoising answers)."""
    import asyncio

    import httpx

    from serving.routers import routes

    made = []
    real = routes._forecast

    def counted(*args, **kwargs):
        made.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(routes, "_forecast", counted)
    settings = published.model_copy(update={"rate_limit_burst": 10_000})
    app = create_app(settings)
    headers = bearer(settings, "analyst")

    async def crowd() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as c:
                url = f"/v1/routes/{CHANNEL}/forecast?horizon=5"
                return await asyncio.gather(*(c.get(url) for _ in range(20)))

    answers = asyncio.run(crowd())
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert len(made) == 1
