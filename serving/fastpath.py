"""A cache of whole answers in front of the API, keyed by who may see what: the hot path of repeated reads.

A release never changes, and every cacheable ``/v1`` answer is a function of the release, the caller's role and
route scope, and the request (path, query, CSV or not). So once an answer has been made for a (role, scope,
request), the same request from any token with that role and scope gets the same bytes again without going through
FastAPI's routing, validation and dependencies — which cost most of a cached answer's time (``bench/api.py``).

Nothing is skipped that guards the data: the token is checked (a remembered signature, its expiry), the rate limit
is charged, the audit log writes its record (with the endpoint, rows and the principal), and the key holds the role
and the scope, so a token never gets an answer made for a wider one. Anything else — no token, a refused token, an
exhausted limit, a miss, an error, a non-GET — goes to the app, which answers as always; only its 200s are kept.
Answers are dropped when the served release changes (the key holds its id) and when the cache is full.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.audit import ROWS_SCOPE_KEY
from serving.auth import CHARGED_SCOPE_KEY, PRINCIPAL_SCOPE_KEY, AuthError, auth_context

# Paths whose answers do not depend on the release alone (the store listing, the caller) or that change state.
UNCACHED_PREFIXES = ("/v1/releases", "/v1/admin", "/v1/me")
MAX_ANSWERS = 10_000


class AnswerCache:
    """Pure ASGI middleware: ``app.add_middleware(AnswerCache)``, inside the audit middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # key -> (headers, body, route, path params, rows): what the app sent, and what the audit record needs
        self.answers: dict[tuple, tuple[list[tuple[bytes, bytes]], bytes, Any, dict, int | None]] = {}
        self.hits = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope.get("method") != "GET" or not path.startswith("/v1/") or path.startswith(UNCACHED_PREFIXES):
            await self.app(scope, receive, send)
            return
        key = self._key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        hit = self.answers.get(key)
        if hit is not None:
            headers, body, route, path_params, rows = hit
            scope["route"], scope["path_params"], scope[ROWS_SCOPE_KEY] = route, path_params, rows  # for the audit
            self.hits += 1
            # A copy: the audit middleware appends this request's X-Request-ID to the list it is given.
            await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
            await send({"type": "http.response.body", "body": body})
            return
        await self._fill(key, scope, receive, send)

    def _key(self, scope: Scope) -> tuple | None:
        """(release, role, scope, path, query, csv) when the caller is admitted now; else None (the app decides)."""
        token = None
        accept = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = value
            elif name == b"accept":
                accept = value
        if token is None or not token[:7].lower() == b"bearer ":
            return None
        request = Request(scope)
        state = getattr(request.app.state, "routecast", None)
        release = state.release if state is not None else None
        if release is None:
            return None
        ctx = auth_context(request)
        try:
            principal, expires = ctx.principal(token[7:].strip().decode("latin-1"))
        except AuthError:
            return None
        if ctx.limiter.take(principal.token_id, expires) > 0:
            return None  # the app's own check answers 429 with Retry-After (it does not charge again)
        scope[PRINCIPAL_SCOPE_KEY] = principal
        return (
            release.release_id,
            principal.role,
            principal.routes,
            scope["path"],
            scope.get("query_string", b""),
            b"text/csv" in accept,
        )

    async def _fill(self, key: tuple, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        scope[CHARGED_SCOPE_KEY] = True  # the rate limit was charged in _key: require() must not charge again
        await self.app(scope, receive, keep)
        if start is None or start["status"] != 200:
            return
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"x-request-id", b"date")]
        if len(self.answers) >= MAX_ANSWERS or (self.answers and next(iter(self.answers))[0] != key[0]):
            self.answers.clear()  # full, or made from a release no longer served
        self.answers[key] = (
            headers,
            b"".join(chunks),
            scope.get("route"),
            dict(scope.get("path_params") or {}),
            scope.get(ROWS_SCOPE_KEY),
        )
