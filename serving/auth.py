"""Who may call the API: HS256-signed bearer tokens (JWT), roles, route scopes and a rate limit per token.

A token names a subject, a role (``analyst`` < ``planner`` < ``admin``, each including the one before), the routes
it may see (``["*"]``: all) and a unique id (``jti``). The API keeps no user database: anyone holding the signing
key can issue tokens (``routecast token create``), so the key is the trust root. It is ``ROUTECAST_JWT_SECRET``,
or else the key file (``<var_dir>/keys/jwt-hs256.key``, 32 random bytes created with mode 0600 on first use).
The key is read once per process and settings: rotating it means restarting the API.

Only HS256 is accepted (never ``alg: none`` nor an algorithm named by the token), and every claim is required:
``iss``, ``aud``, ``sub``, ``role``, ``routes``, ``iat``, ``exp``, ``jti``. A token whose lifetime is longer than
``token_max_ttl_hours`` is refused even when correctly signed, so lowering the maximum retires long-lived tokens.

A key that is short, made of a few distinct bytes or one repeated pattern, and a key file that group or others may
read, are refused with a message that says how to make a good one. A token id can be revoked
(``routecast token revoke``): every worker re-reads the revocation file within ``revocation_check_s`` seconds.

``authenticate(scope, ctx)`` is the one place a request is authenticated: it reads the request's single
``Authorization`` header (two are refused with 400), checks the token, its revocation and its rate limit, and
remembers the outcome on the request, so the answer cache (``serving.fastpath``) and ``require(role)`` — the FastAPI
dependency of every protected endpoint — see the same principal and charge the limit once. ``require`` turns the
outcome into 400, 401 (with ``WWW-Authenticate: Bearer``: missing, malformed, forged, expired or revoked token), 429
(with ``Retry-After``) or 403 (role too low). The principal is put in ``scope["routecast.principal"]`` for the audit
log, also when its token is revoked or over its limit.
"""

from __future__ import annotations

import json
import math
import os
import stat
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_args

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from serving.keys import KEY_BYTES, ExposedKeyFile, create_key_file, key_weakness, read_private_key_file
from serving.settings import ServingSettings, get_settings

Role = Literal["analyst", "planner", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ALGORITHM = "HS256"
ALL_ROUTES = "*"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "role", "routes", "iat", "exp", "jti")
LEEWAY_S = 10  # clock skew tolerated between the machine that issued a token and the API
PRINCIPAL_SCOPE_KEY = "routecast.principal"
AUTH_SCOPE_KEY = "routecast.auth"  # the outcome of authenticate() for this request: Principal or AuthFailure


@dataclass(frozen=True)
class Principal:
    """The caller a valid token names."""

    subject: str
    role: Role
    routes: frozenset[str] | None  # None: all routes
    token_id: str
    expires: datetime

    def can(self, role: Role) -> bool:
        """Whether this principal's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, route_id: str | None) -> bool:
        """Whether this principal may see ``route_id``; ``None`` (a series of no single route, e.g. the total over
        all routes) is seen only by principals of all routes, since it mixes in routes a scoped one may not see."""
        if self.routes is None:
            return True
        return route_id is not None and route_id in self.routes


class AuthError(Exception):
    """A token that is refused; the message is user-facing (it never contains the key or the token)."""


class SigningKeyError(ValueError):
    """The signing key is unusable (too short, unreadable): a deployment error, not a client's."""


# --------------------------------------------------------------------------------------------------- signing key


def signing_key(settings: ServingSettings) -> bytes:
    """The HS256 key: ``ROUTECAST_JWT_SECRET``, else the key file (created atomically, mode 0600, if missing).

    Cached per (secret, key file); raises ``SigningKeyError`` for a key shorter than 32 bytes.
    """
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else None
    return _signing_key(secret, settings.key_file)


@lru_cache(maxsize=16)
def _signing_key(secret: str | None, key_file: Path) -> bytes:
    if secret is not None:
        key = secret.encode()
        where = "ROUTECAST_JWT_SECRET"
    else:
        key = _read_or_create_key_file(key_file)
        where = str(key_file)
    check_key_strength(key, where)
    return key


def check_key_strength(key: bytes, where: str) -> None:
    """Refuse a key that is short, of few distinct bytes or one repeated pattern (``SigningKeyError``)."""
    if len(key) < KEY_BYTES:
        raise SigningKeyError(f"{where}: the signing key has {len(key)} bytes; HS256 needs at least {KEY_BYTES}")
    weakness = key_weakness(key, "signing key")
    if weakness:
        raise SigningKeyError(f"{where}: {weakness}")


def _read_or_create_key_file(path: Path) -> bytes:
    try:
        return read_private_key_file(path)
    except FileNotFoundError:
        create_key_file(path)
        return read_private_key_file(path)
    except ExposedKeyFile as exc:
        raise SigningKeyError(
            f"{path}: the key file may be read or written by group or others (mode {stat.S_IMODE(exc.mode):04o}); "
            f"anyone who reads it can issue tokens: `chmod 600 {path}`"
        ) from None


# --------------------------------------------------------------------------------------------- issue and decode


def create_token(
    settings: ServingSettings, *, subject: str, role: Role, routes: Sequence[str] | None, ttl: timedelta
) -> str:
    """A signed token for ``subject``; ``routes`` None (or containing ``*``) means all routes.

    Raises ValueError for an unknown role, an empty subject or route list, or a ttl not in (0, max].
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if not subject or not subject.strip():
        raise ValueError("the subject must not be empty")
    max_ttl = timedelta(hours=settings.token_max_ttl_hours)
    if ttl <= timedelta(0):
        raise ValueError("the token lifetime must be positive")
    if ttl > max_ttl:
        raise ValueError(
            f"the token lifetime ({ttl.total_seconds() / 3600:g} h) is longer than the maximum "
            f"({settings.token_max_ttl_hours:g} h, ROUTECAST_TOKEN_MAX_TTL_HOURS)"
        )
    if isinstance(routes, str):
        raise ValueError("routes must be a sequence of route ids, not one string")
    if routes is None or ALL_ROUTES in routes:
        route_claim = [ALL_ROUTES]
    else:
        route_claim = sorted(set(routes))
        if not route_claim:
            raise ValueError("the route list is empty; pass None for all routes")
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "role": role,
        "routes": route_claim,
        "iat": now,
        "exp": now + math.ceil(ttl.total_seconds()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, signing_key(settings), algorithm=ALGORITHM)


def decode_claims(settings: ServingSettings, token: str) -> dict[str, Any]:
    """The verified claims of ``token`` (signature, algorithm, issuer, audience, expiry, presence of every claim);
    raises AuthError with a user-facing message."""
    try:
        claims = jwt.decode(
            token,
            signing_key(settings),
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_S,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(f"token algorithm is not allowed (only {ALGORITHM})") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token has no {exc.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise AuthError(f"token audience is not {settings.jwt_audience!r}") from None
    except jwt.InvalidIssuerError:
        raise AuthError(f"token issuer is not {settings.jwt_issuer!r}") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("token is not valid yet (issued in the future)") from None
    except jwt.DecodeError:
        raise AuthError("token is malformed") from None
    except jwt.InvalidTokenError:
        raise AuthError("token is invalid") from None
    except (TypeError, ValueError):  # a claim of a type PyJWT does not check (e.g. a string 'iat' in some versions)
        raise AuthError("token is malformed") from None
    if not all(isinstance(claims[c], int | float) and not isinstance(claims[c], bool) for c in ("exp", "iat")):
        raise AuthError("token is malformed (exp and iat must be numbers)")
    if claims["exp"] - claims["iat"] > settings.token_max_ttl_hours * 3600 + 1:
        raise AuthError("token lifetime is longer than this API allows")
    return claims


def decode_token(settings: ServingSettings, token: str) -> Principal:
    """The principal a valid token names; raises AuthError ("token expired", "token signature is invalid" ...)."""
    claims = decode_claims(settings, token)
    sub, role, routes, jti = claims["sub"], claims["role"], claims["routes"], claims["jti"]
    if not isinstance(role, str) or role not in ROLES:
        raise AuthError(f"token role {role!r} is unknown")
    if not (isinstance(sub, str) and sub and isinstance(jti, str) and jti):
        raise AuthError("token is malformed")
    if not (isinstance(routes, list) and routes and all(isinstance(r, str) and r for r in routes)):
        raise AuthError("token is malformed")
    return Principal(
        subject=sub,
        role=cast(Role, role),
        routes=None if ALL_ROUTES in routes else frozenset(routes),
        token_id=jti,
        expires=datetime.fromtimestamp(claims["exp"], UTC),
    )


# ---------------------------------------------------------------------------------------------------- rate limit


class RateLimiter:
    """Token buckets keyed by token id: ``burst`` requests at once, refilled at ``per_minute`` / 60 per second.

    One lock, one dict lookup and a few float operations per request. Memory is bounded by the tokens active
    recently: buckets of expired tokens, and buckets full again (which a new bucket would equal), are dropped.
    """

    PRUNE_EVERY_S = 30.0

    def __init__(self, per_minute: float, burst: int) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.capacity = float(burst)
        self._buckets: dict[str, list[float]] = {}  # token id -> [tokens, last refill, token expiry]
        self._lock = threading.Lock()
        self._next_prune = time.monotonic() + self.PRUNE_EVERY_S

    def take(self, key: str, expires: float, now: float | None = None) -> float:
        """Take one request from ``key``'s bucket: 0.0 when allowed, else the seconds until one is available.

        ``expires`` is the token's expiry (epoch seconds), ``now`` a monotonic time (tests pass it).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            if now >= self._next_prune:
                self._prune(now)
            bucket = self._buckets.get(key)
            if bucket is None:
                self._buckets[key] = [self.capacity - 1.0, now, expires]
                return 0.0
            tokens = min(self.capacity, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        wall = time.time()
        full_after = self.capacity / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if b[2] > wall and now - b[1] < full_after}
        self._next_prune = now + self.PRUNE_EVERY_S


# ---------------------------------------------------------------------------------------------------- revocation


def revoke_token(settings: ServingSettings, token_id: str, *, by: str, reason: str = "") -> dict[str, str]:
    """Add ``token_id`` to the revocation file (created 0600; one JSON object per line, appended); the entry."""
    token_id = token_id.strip()
    if not token_id or len(token_id) > 128 or any(c.isspace() for c in token_id):
        raise ValueError(f"{token_id!r} is not a token id (the 'jti' claim: `routecast token inspect TOKEN`)")
    entry = {
        "jti": token_id,
        "revoked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "by": by,
        "reason": reason,
    }
    path = settings.revoked_file
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as f:
        f.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


def read_revocations(path: Path) -> dict[str, dict[str, Any]]:
    """Token id → its revocation entry; a missing file is none. A line that is not a JSON object with a 'jti' is
    refused (``SigningKeyError``): an unreadable revocation list must not silently revoke nothing."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or not isinstance(entry.get("jti"), str):
            raise SigningKeyError(f"{path}: line {n} is not a revocation entry; fix or remove it")
        out[entry["jti"]] = entry
    return out


class Revocations:
    """The revoked token ids of one process, re-read when the file changes, looked at every ``check_s`` seconds."""

    def __init__(self, path: Path, check_s: float) -> None:
        self.path = path
        self.check_s = check_s
        self._ids: frozenset[str] = frozenset()
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime ns) of the file last read
        self._next = 0.0
        self._lock = threading.Lock()
        self.refresh(force=True)

    def refresh(self, *, force: bool = False, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if not force and now < self._next:
            return
        with self._lock:
            self._next = now + self.check_s
            try:
                st = self.path.stat()
                seen = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                seen = None
            if seen != self._seen or force:
                self._ids = frozenset(read_revocations(self.path))
                self._seen = seen

    def __contains__(self, token_id: object) -> bool:
        self.refresh()
        return token_id in self._ids


# ---------------------------------------------------------------------------------------------------- dependency

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="A token from `routecast token create` (HS256 JWT).",
)


DECODED_KEPT = 4096  # verified tokens remembered per app (checking a signature costs ~50 µs, a lookup ~0.1 µs)


@dataclass(frozen=True)
class _AuthContext:
    settings: ServingSettings
    limiter: RateLimiter
    revoked: Revocations
    decoded: dict[str, tuple[Principal, float]] = field(default_factory=dict)  # token -> (principal, exp)

    def principal(self, token: str) -> tuple[Principal, float]:
        """``decode_token`` remembered: a token seen before is only checked for expiry again."""
        hit = self.decoded.get(token)
        if hit is None:
            principal = decode_token(self.settings, token)
            hit = (principal, principal.expires.timestamp())
            if len(self.decoded) >= DECODED_KEPT:
                self.decoded.clear()
            self.decoded[token] = hit
        elif hit[1] <= time.time() - LEEWAY_S:  # as PyJWT decides
            raise AuthError("token expired")
        return hit


_contexts_lock = threading.Lock()


def auth_context(request: Request) -> _AuthContext:
    """The settings, rate limiter and revocations of the app serving ``request``."""
    return app_auth_context(request.app)


def app_auth_context(app: Any) -> _AuthContext:
    """The settings, rate limiter and revocations of ``app`` (kept on app.state: one lookup per request)."""
    state = app.state
    settings = getattr(state, "settings", None) or get_settings()
    ctx: _AuthContext | None = getattr(state, "routecast_auth", None)
    if ctx is not None and ctx.settings is settings:
        return ctx
    with _contexts_lock:
        ctx = getattr(state, "routecast_auth", None)
        if ctx is None or ctx.settings is not settings:
            signing_key(settings)  # a bad key fails here, once, rather than as a 401 on every request
            ctx = _AuthContext(
                settings,
                RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
                Revocations(settings.revoked_file, settings.revocation_check_s),
            )
            state.routecast_auth = ctx
    return ctx


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was not authenticated: the status (400, 401 or 429), a user-facing detail and headers."""

    status: int
    detail: str
    headers: dict[str, str]

    def exception(self) -> HTTPException:
        return HTTPException(status_code=self.status, detail=self.detail, headers=self.headers)


def _unauthorized(detail: str) -> AuthFailure:
    return AuthFailure(401, detail, {"WWW-Authenticate": "Bearer"})


def authenticate(scope: Scope, ctx: _AuthContext) -> Principal | AuthFailure:
    """The principal of this request, or why there is none — decided once per request and remembered in its scope.

    Exactly one ``Authorization: Bearer <token>`` header is accepted: with two, which token is meant depends on
    who reads the headers, so the request is refused (400). The rate limit is charged here, once.
    """
    outcome = scope.get(AUTH_SCOPE_KEY)
    if outcome is None:
        outcome = _authenticate(scope, ctx)
        scope[AUTH_SCOPE_KEY] = outcome
    return outcome


def _authenticate(scope: Scope, ctx: _AuthContext) -> Principal | AuthFailure:
    values = [v for k, v in scope.get("headers", ()) if k == b"authorization"]
    if not values:
        return _unauthorized("missing bearer token")
    if len(values) > 1:
        return AuthFailure(400, f"send one Authorization header, not {len(values)}", {})
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _unauthorized("authorization header is not 'Bearer <token>'")
    try:
        principal, expires = ctx.principal(token)
    except AuthError as exc:
        return _unauthorized(str(exc))
    scope[PRINCIPAL_SCOPE_KEY] = principal  # the audit log records who, whatever happens next
    if principal.token_id in ctx.revoked:
        return _unauthorized("token has been revoked")
    wait = ctx.limiter.take(principal.token_id, expires)
    if wait > 0:
        return AuthFailure(
            429,
            f"rate limit exceeded ({ctx.settings.rate_limit_per_minute:g} requests per minute, "
            f"burst {ctx.settings.rate_limit_burst}); retry in {math.ceil(wait)} s",
            {"Retry-After": str(math.ceil(wait))},
        )
    return principal


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """The dependency of an endpoint open to ``role`` and above:
    ``principal: Annotated[Principal, Depends(require("planner"))]``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")

    async def dependency(
        request: Request,
        # Declares the bearer scheme in the OpenAPI document; the header itself is read by authenticate().
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        outcome = authenticate(request.scope, auth_context(request))
        if isinstance(outcome, AuthFailure):
            raise outcome.exception()
        if not outcome.can(role):
            raise HTTPException(
                status_code=403, detail=f"this endpoint needs the {role} role (token has {outcome.role})"
            )
        return outcome

    dependency.__name__ = f"require_{role}"
    return dependency
