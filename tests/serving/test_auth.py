"""serving.auth through real HTTP: a tiny FastAPI app whose endpoints are guarded by ``require``."""

from __future__ import annotations

import stat
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
import pytest
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from serving.auth import (
    ROLES,
    AuthError,
    Principal,
    RateLimiter,
    SigningKeyError,
    create_token,
    decode_token,
    require,
    signing_key,
)
from serving.cli import RoleChoice
from serving.settings import ServingSettings

SECRET = "7c1e5a9f3b2d8e4c6a0f1b3d5e7c9a2b4d6f8e0a"  # 40 characters of hex: a key the API accepts


@pytest.fixture
def settings(tmp_path) -> ServingSettings:
    return ServingSettings(var_dir=tmp_path / "var", jwt_secret=SECRET, rate_limit_burst=1000)


def make_app(settings: ServingSettings) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings

    @app.get("/open")
    async def open_() -> dict:
        return {"ok": True}

    @app.get("/analyst")
    async def analyst(p: Annotated[Principal, Depends(require("analyst"))]) -> dict:
        return {"subject": p.subject, "role": p.role, "routes": sorted(p.routes) if p.routes is not None else None}

    @app.get("/planner")
    async def planner(p: Annotated[Principal, Depends(require("planner"))]) -> dict:
        return {"subject": p.subject}

    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(settings: ServingSettings, **override) -> dict:
    now = int(time.time())
    c = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "alice",
        "role": "planner",
        "routes": ["*"],
        "iat": now,
        "exp": now + 3600,
        "jti": "j-1",
    }
    c.update(override)
    return {k: v for k, v in c.items() if v is not None}


def assert_401(response, detail: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": detail}


def test_the_cli_role_choices_are_the_roles():
    assert tuple(r.value for r in RoleChoice) == ROLES == ("analyst", "planner", "admin")


def test_a_token_round_trips(settings):
    token = create_token(settings, subject="alice", role="planner", routes=["channel"], ttl=timedelta(hours=2))
    p = decode_token(settings, token)
    assert (p.subject, p.role, p.routes) == ("alice", "planner", frozenset({"channel"}))
    assert timedelta(hours=2) - timedelta(seconds=5) < p.expires - datetime.now(UTC) <= timedelta(hours=2)
    everywhere = decode_token(
        settings, create_token(settings, subject="b", role="admin", routes=None, ttl=timedelta(1))
    )
    assert everywhere.routes is None and everywhere.token_id != p.token_id

    with TestClient(make_app(settings)) as client:
        r = client.get("/analyst", headers=bearer(token))
    assert r.status_code == 200
    assert r.json() == {"subject": "alice", "role": "planner", "routes": ["channel"]}


def test_roles_include_the_previous_and_scopes_hide_other_routes():
    expires = datetime.now(UTC)
    planner = Principal("a", "planner", frozenset({"channel"}), "j", expires)
    assert planner.can("analyst") and planner.can("planner") and not planner.can("admin")
    assert planner.sees("channel") and not planner.sees("central_mediterranean")
    assert not planner.sees(None)  # a total over all routes mixes in routes it may not see
    everything = Principal("b", "analyst", None, "j", expires)
    assert everything.sees("channel") and everything.sees(None)


def test_an_expired_token_is_refused(settings):
    past = int(time.time()) - 3600
    token = jwt.encode(claims(settings, iat=past - 60, exp=past), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="token expired"):
        decode_token(settings, token)
    with TestClient(make_app(settings)) as client:
        assert_401(client.get("/analyst", headers=bearer(token)), "token expired")


def test_a_token_signed_with_another_key_is_refused(settings):
    forger = settings.model_copy(update={"jwt_secret": None, "jwt_key_file": settings.var_dir / "other.key"})
    token = create_token(forger, subject="mallory", role="admin", routes=None, ttl=timedelta(hours=1))
    with TestClient(make_app(settings)) as client:
        assert_401(client.get("/analyst", headers=bearer(token)), "token signature is invalid")


@pytest.mark.parametrize("alg", ["none", "HS512", "HS384"])
def test_only_hs256_is_accepted(settings, alg):
    token = jwt.encode(claims(settings), None if alg == "none" else SECRET * 2, algorithm=alg)
    with TestClient(make_app(settings)) as client:
        assert_401(client.get("/analyst", headers=bearer(token)), "token algorithm is not allowed (only HS256)")


def test_a_missing_or_malformed_header_is_refused(settings):
    with TestClient(make_app(settings)) as client:
        assert client.get("/open").status_code == 200
        assert_401(client.get("/analyst"), "missing bearer token")
        assert_401(
            client.get("/analyst", headers={"Authorization": "Basic YTpi"}),
            "authorization header is not 'Bearer <token>'",
        )
        assert_401(client.get("/analyst", headers=bearer("not.a.jwt")), "token is malformed")
        assert_401(client.get("/analyst", headers=bearer("garbage")), "token is malformed")


@pytest.mark.parametrize(
    ("override", "detail"),
    [
        ({"aud": "someone-else"}, "token audience is not 'routecast-api'"),
        ({"iss": "someone-else"}, "token issuer is not 'routecast'"),
        ({"jti": None}, "token has no 'jti' claim"),
        ({"routes": None}, "token has no 'routes' claim"),
        ({"role": "root"}, "token role 'root' is unknown"),
        ({"routes": []}, "token is malformed"),
        ({"routes": "channel"}, "token is malformed"),
        ({"sub": ""}, "token is malformed"),
        (
            {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},
            "token is not valid yet (issued in the future)",
        ),
    ],
)
def test_claims_are_checked(settings, override, detail):
    token = jwt.encode(claims(settings, **override), SECRET, algorithm="HS256")
    with TestClient(make_app(settings)) as client:
        assert_401(client.get("/analyst", headers=bearer(token)), detail)


def test_a_token_longer_lived_than_the_maximum_is_refused_even_when_signed(settings):
    now = int(time.time())
    token = jwt.encode(claims(settings, iat=now, exp=now + 91 * 86400), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="lifetime"):
        decode_token(settings, token)


def test_a_role_too_low_is_forbidden(settings):
    token = create_token(settings, subject="ann", role="analyst", routes=None, ttl=timedelta(hours=1))
    with TestClient(make_app(settings)) as client:
        r = client.get("/planner", headers=bearer(token))
        assert r.status_code == 403
        assert r.json() == {"detail": "this endpoint needs the planner role (token has analyst)"}
        assert client.get("/analyst", headers=bearer(token)).status_code == 200


def test_the_rate_limit_answers_429_with_retry_after_then_recovers(tmp_path):
    settings = ServingSettings(
        var_dir=tmp_path / "var", jwt_secret=SECRET, rate_limit_burst=3, rate_limit_per_minute=600
    )  # 10 requests a second
    token = create_token(settings, subject="ann", role="analyst", routes=None, ttl=timedelta(hours=1))
    other = create_token(settings, subject="bob", role="analyst", routes=None, ttl=timedelta(hours=1))
    with TestClient(make_app(settings)) as client:
        assert [client.get("/analyst", headers=bearer(token)).status_code for _ in range(3)] == [200] * 3
        r = client.get("/analyst", headers=bearer(token))
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
        assert r.json()["detail"].startswith("rate limit exceeded (600 requests per minute, burst 3)")
        assert client.get("/analyst", headers=bearer(other)).status_code == 200  # buckets are per token
        time.sleep(0.25)
        assert client.get("/analyst", headers=bearer(token)).status_code == 200


def test_the_rate_limiter_refills_and_forgets_expired_and_full_buckets():
    limiter = RateLimiter(per_minute=60, burst=2)  # one a second
    far = time.time() + 3600
    assert [limiter.take("a", far, now=100.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("a", far, now=100.0) == pytest.approx(1.0)
    assert limiter.take("a", far, now=100.5) == pytest.approx(0.5)
    assert limiter.take("a", far, now=101.0) == 0.0
    limiter.take("expired", time.time() - 1, now=101.0)
    limiter.take("busy", far, now=101.0)
    limiter.take("busy", far, now=101.0)
    assert len(limiter) == 3
    limiter._prune(now=102.5)  # "a" and "busy" are not full again yet; "expired" is gone
    assert len(limiter) == 2
    limiter._prune(now=200.0)  # full again: a new bucket would be the same
    assert len(limiter) == 0


def test_issuing_checks_role_ttl_subject_and_routes(settings):
    ok = {"subject": "a", "role": "analyst", "routes": None, "ttl": timedelta(hours=1)}
    with pytest.raises(ValueError, match="longer than the maximum"):
        create_token(settings, **{**ok, "ttl": timedelta(hours=settings.token_max_ttl_hours + 1)})
    with pytest.raises(ValueError, match="positive"):
        create_token(settings, **{**ok, "ttl": timedelta(0)})
    with pytest.raises(ValueError, match="unknown role 'root'"):
        create_token(settings, **{**ok, "role": "root"})
    with pytest.raises(ValueError, match="subject"):
        create_token(settings, **{**ok, "subject": " "})
    with pytest.raises(ValueError, match="empty"):
        create_token(settings, **{**ok, "routes": []})
    with pytest.raises(ValueError, match="unknown role"):
        require("root")  # type: ignore[arg-type]
    assert decode_token(settings, create_token(settings, **{**ok, "routes": ["channel", "*"]})).routes is None


def test_the_key_file_is_created_0600_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("ROUTECAST_JWT_SECRET", raising=False)
    settings = ServingSettings(var_dir=tmp_path / "var")
    assert not settings.key_file.exists()
    key = signing_key(settings)
    assert len(key) == 32
    assert stat.S_IMODE(settings.key_file.stat().st_mode) == 0o600
    assert settings.key_file.read_bytes() == key
    assert not [p for p in settings.key_file.parent.iterdir() if p != settings.key_file]  # no temporary left

    token = create_token(settings, subject="a", role="admin", routes=None, ttl=timedelta(hours=1))
    again = ServingSettings(var_dir=tmp_path / "var")  # another process: same file, same key
    assert signing_key(again) == key
    assert decode_token(again, token).subject == "a"


def test_a_short_key_is_refused(tmp_path):
    with pytest.raises(SigningKeyError, match="at least 32"):
        signing_key(ServingSettings(var_dir=tmp_path, jwt_secret="short"))
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 16)
    short.chmod(0o600)
    with pytest.raises(SigningKeyError, match="16 bytes"):
        signing_key(ServingSettings(var_dir=tmp_path, jwt_key_file=short))


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("a" * 40, "1 distinct bytes"),
        ("abcd" * 10, "4 distinct bytes"),
        ("0123456789" * 4, "10-byte pattern repeated"),
        ("passwordpassword" * 2 + "pass", "distinct bytes"),
    ],
)
def test_a_weak_secret_is_refused_with_advice(tmp_path, secret, reason):
    with pytest.raises(SigningKeyError, match=reason) as err:
        signing_key(ServingSettings(var_dir=tmp_path, jwt_secret=secret))
    assert "openssl rand -hex 32" in str(err.value)


def test_the_api_does_not_start_on_a_weak_secret(tmp_path):
    from serving.app import create_app

    with (
        pytest.raises(SigningKeyError, match="weak"),
        TestClient(create_app(ServingSettings(var_dir=tmp_path, jwt_secret="x" * 64))),
    ):
        pass


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_or_the_group_may_read_is_refused(tmp_path, mode):
    key = tmp_path / "jwt.key"
    key.write_bytes(bytes(range(32)))
    key.chmod(mode)
    with pytest.raises(SigningKeyError, match=f"mode {mode:04o}.*chmod 600"):
        signing_key(ServingSettings(var_dir=tmp_path, jwt_key_file=key))
    key.chmod(0o600)
    assert signing_key(ServingSettings(var_dir=tmp_path, jwt_key_file=key)) == bytes(range(32))


@pytest.mark.parametrize("claim", ["exp", "iat"])
@pytest.mark.parametrize("value", ["now as text", "9999999999", "soon", None, True, [1]])
def test_a_signed_token_with_a_non_numeric_time_claim_is_a_401_not_a_500(settings, claim, value):
    now = int(time.time())
    if value == "now as text":  # valid for PyJWT, then a TypeError in the lifetime check: the 500 once seen
        value = str(now + 600 if claim == "exp" else now)
    token = jwt.encode(claims(settings, **{"iat": now, "exp": now + 600, claim: value}), SECRET, algorithm="HS256")
    with pytest.raises(AuthError):  # PyJWT reads some (a numeric string, True) as numbers: expired, not yet valid
        decode_token(settings, token)
    with TestClient(make_app(settings), raise_server_exceptions=False) as client:
        r = client.get("/analyst", headers=bearer(token))
        assert r.status_code == 401, r.text


def test_two_authorization_headers_are_refused_whichever_comes_first(settings):
    wide = create_token(settings, subject="boss", role="admin", routes=None, ttl=timedelta(hours=1))
    narrow = create_token(settings, subject="ann", role="analyst", routes=["channel"], ttl=timedelta(hours=1))
    with TestClient(make_app(settings)) as client:
        for first, second in ((wide, narrow), (narrow, wide), (wide, wide)):
            two = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
            r = client.get("/analyst", headers=two)
            assert r.status_code == 400
            assert r.json() == {"detail": "send one Authorization header, not 2"}


def test_a_revoked_token_is_refused_within_the_check_interval(settings):
    from serving.auth import revoke_token

    settings = settings.model_copy(update={"revocation_check_s": 0.05})
    token = create_token(settings, subject="eve", role="planner", routes=None, ttl=timedelta(hours=1))
    other = create_token(settings, subject="ann", role="planner", routes=None, ttl=timedelta(hours=1))
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    with TestClient(make_app(settings)) as client:
        assert client.get("/analyst", headers=bearer(token)).status_code == 200  # remembered as valid
        entry = revoke_token(settings, jti, by="admin", reason="laptop stolen")
        assert entry["jti"] == jti
        time.sleep(0.1)
        assert_401(client.get("/analyst", headers=bearer(token)), "token has been revoked")
        assert client.get("/analyst", headers=bearer(other)).status_code == 200
    assert stat.S_IMODE(settings.revoked_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", ["", "two words", "x" * 129])
def test_revoking_something_that_is_not_a_token_id_is_refused(settings, bad):
    from serving.auth import revoke_token

    with pytest.raises(ValueError, match="not a token id"):
        revoke_token(settings, bad, by="admin")


def test_a_corrupt_revocation_file_is_an_error_not_an_empty_list(settings):
    from serving.auth import read_revocations

    settings.revoked_file.parent.mkdir(parents=True)
    settings.revoked_file.write_text('{"jti":"a"}\nnot json\n')
    with pytest.raises(SigningKeyError, match="line 2"):
        read_revocations(settings.revoked_file)


def test_openapi_shows_the_bearer_scheme_on_protected_endpoints(settings):
    doc = make_app(settings).openapi()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A token from `routecast token create` (HS256 JWT).",
    }
    assert doc["paths"]["/analyst"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/open"]["get"]


def test_a_remembered_token_still_expires(settings, monkeypatch):
    monkeypatch.setattr("serving.auth.LEEWAY_S", 0)
    with TestClient(make_app(settings)) as client:
        # Warm the app up with a long-lived token first, so that the short one's seconds are not spent starting it
        # (on a loaded machine the start alone can outlast them).
        warm = jwt.encode(claims(settings, jti="j-warm"), SECRET, algorithm="HS256")
        assert client.get("/analyst", headers=bearer(warm)).status_code == 200
        now = int(time.time())
        token = jwt.encode(claims(settings, iat=now, exp=now + 3), SECRET, algorithm="HS256")
        assert client.get("/analyst", headers=bearer(token)).status_code == 200
        time.sleep(max(0.0, now + 3.05 - time.time()))
        assert_401(client.get("/analyst", headers=bearer(token)), "token expired")
