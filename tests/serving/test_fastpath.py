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


def _cache(app) -> AnswerCache:
    layer = app.middleware_stack
    while not isinstance(layer, AnswerCache):
        layer = layer.app
    return layer


def test_a_repeated_read_is_answered_from_the_cache_and_still_audited(client, published):
    url = f"/v1/routes/{CHANNEL}/forecast?horizon=3"
    first = client.get(url)
    cache = _cache(client.app)
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
    assert all(key[0] == new.release_id for key in _cache(client.app).answers)
