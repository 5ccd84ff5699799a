"""The one cache of whole answers, in front of the API: the hot path of repeated reads.

A release never changes, and every cacheable ``/v1`` answer is a function of the release, the caller's role and
route scope, and the request (path, query, CSV or not). So once an answer has been made for a (role, scope,
request), the same request from any token with that role and scope gets the same bytes again without going through
FastAPI's routing, validation and dependencies — which cost most of a cached answer's time (``bench/api.py``).

Safe by construction rather than by care:
- The caller is authenticated by ``serving.auth.authenticate``, the same function (and, per request, the same
  remembered outcome) that the endpoints' ``require()`` uses: the cache and the app cannot disagree about who asks.
  A request with two ``Authorization`` headers is refused there (400) before anything is looked up.
- CSV or JSON is decided by ``serving.respond.accepts_csv`` from every ``Accept`` header, as the handlers decide it.
- An answer is stored under the key of the principal the app actually authorized for it (the one in the request's
  scope after the app ran), for the release the app actually served, and only when it is a 200.

Nothing that guards the data is skipped on a hit: the token is checked (a remembered signature, its expiry and
revocation), the rate limit is charged, and the audit log writes its record. Memory is bounded by a byte budget
(``ROUTECAST_ANSWER_CACHE_MB``), least recently used answers out first; answers of a release no longer served are
dropped. The same request arriving while its answer is being made waits for that answer (up to ``MAKING_WAIT_S``)
instead of making it again: many clients asking one new question at once cost one answer, not one each. Every
``/v1`` answer, cached or not, says ``Cache-Control: no-store``: it is for its caller only.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.audit import ROWS_SCOPE_KEY
from serving.auth import PRINCIPAL_SCOPE_KEY, Principal, app_auth_context, authenticate
from serving.respond import accepts_csv

# Paths whose answers do not depend on the release alone (the store listing, the caller) or that change state.
UNCACHED_PREFIXES = ("/v1/releases", "/v1/admin", "/v1/me")
# Paths whose answers change while a release is served: the list of scenarios grows with every POST (a scenario
# itself, /v1/scenarios/{id}, never changes and is cached).
UNCACHED_PATHS = frozenset({"/v1/scenarios", "/v1/scenarios/"})
# What one stored answer costs besides its body and headers (key tuple, entry object, dict slot), measured with
# tracemalloc in tests/serving/test_fastpath.py; counted so that many small answers respect the budget too.
ENTRY_OVERHEAD_BYTES = 1024
NO_STORE = (b"cache-control", b"no-store")
DROPPED_HEADERS = (b"x-request-id", b"date", b"cache-control")
# How long a request waits for the same answer being made by another one before making it itself (a slow reader of
# the first answer holds the others up no longer than this).
MAKING_WAIT_S = 2.0


@dataclass(frozen=True)
class _Answer:
    headers: list[tuple[bytes, bytes]]
    body: bytes
    route: Any  # for the audit record: the endpoint template and path parameters
    path_params: dict[str, Any]
    rows: int | None
    size: int


class AnswerCache:
    """Pure ASGI middleware: ``app.add_middleware(AnswerCache)``, inside the audit middleware.

    ``max_bytes`` defaults to the app's ``answer_cache_mb`` setting (read on the first request).
    """

    def __init__(self, app: ASGIApp, max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.answers: OrderedDict[tuple, _Answer] = OrderedDict()
        self.bytes = 0  # what the stored answers cost, by the accounting above; never above max_bytes
        self.making: dict[tuple, asyncio.Event] = {}  # key -> set when the request making that answer is done
        self.hits = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        raw_send, send = send, _no_store(send)
        path = scope["path"]
        if scope.get("method") != "GET" or path.startswith(UNCACHED_PREFIXES) or path in UNCACHED_PATHS:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        release = getattr(getattr(state, "routecast", None), "release", None)
        if release is None:
            await self.app(scope, receive, send)
            return
        ctx = app_auth_context(scope["app"])
        principal = authenticate(scope, ctx)
        if not isinstance(principal, Principal):
            await self.app(scope, receive, send)  # require() answers 400/401/429 from the same remembered outcome
            return
        if self.max_bytes is None:
            self.max_bytes = int(ctx.settings.answer_cache_mb * 1024 * 1024)
        key = _key(release.release_id, principal, scope)
        # The same request arriving while its answer is being made waits for that answer instead of making it too.
        while (hit := self.answers.get(key)) is None and (making := self.making.get(key)) is not None:
            try:
                await asyncio.wait_for(making.wait(), MAKING_WAIT_S)
            except TimeoutError:
                break
        if hit is not None:
            self.answers.move_to_end(key)
            self.hits += 1
            scope["route"], scope["path_params"], scope[ROWS_SCOPE_KEY] = hit.route, hit.path_params, hit.rows
            # A copy: the audit middleware appends this request's X-Request-ID to the list it is given. The stored
            # headers already say no-store (no wrapper on the hot path).
            await raw_send({"type": "http.response.start", "status": 200, "headers": list(hit.headers)})
            await raw_send({"type": "http.response.body", "body": hit.body})
            return
        await self._fill(key, scope, receive, send)

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

        self.making[key] = made = asyncio.Event()
        try:
            await self.app(scope, receive, keep)
            self._keep(key, scope, start, chunks)
        finally:
            if self.making.get(key) is made:
                del self.making[key]
            made.set()

    def _keep(self, key: tuple, scope: Scope, start: Message | None, chunks: list[bytes]) -> None:
        if start is None or start["status"] != 200:
            return
        served = getattr(scope["app"].state.routecast, "release", None)
        authorized = scope.get(PRINCIPAL_SCOPE_KEY)
        if not isinstance(authorized, Principal) or served is None:
            return
        # The key of what the app actually did: its principal and the release it served (it may have swapped).
        actual = _key(served.release_id, authorized, scope)
        if actual != key:
            return
        headers = [*((k, v) for k, v in start.get("headers", []) if k.lower() not in DROPPED_HEADERS), NO_STORE]
        body = b"".join(chunks)
        size = ENTRY_OVERHEAD_BYTES + len(body) + sum(len(k) + len(v) for k, v in headers) + _key_size(key)
        path_params = dict(scope.get("path_params") or {})
        self.store(key, _Answer(headers, body, scope.get("route"), path_params, scope.get(ROWS_SCOPE_KEY), size))

    def store(self, key: tuple, answer: _Answer) -> None:
        """Keep ``answer`` under ``key``, dropping answers of other releases and the least recently used ones
        until the budget holds; an answer larger than a quarter of the budget is not kept."""
        budget = self.max_bytes or 0
        if answer.size > budget // 4:
            return
        if self.answers and next(iter(self.answers))[0] != key[0]:
            self.answers.clear()  # made from a release no longer served
            self.bytes = 0
        old = self.answers.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        while self.answers and self.bytes + answer.size > budget:
            _, dropped = self.answers.popitem(last=False)
            self.bytes -= dropped.size
        self.answers[key] = answer
        self.bytes += answer.size


def _key(release_id: str, principal: Principal, scope: Scope) -> tuple:
    """(release, role, route scope, path, query, csv): everything a cacheable answer depends on."""
    return (
        release_id,
        principal.role,
        principal.routes,
        scope["path"],
        scope.get("query_string", b""),
        accepts_csv(scope),
    )


def _key_size(key: tuple) -> int:
    return len(key[3]) + len(key[4]) + sum(len(r) for r in key[2] or ())


def _no_store(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0].lower() != b"cache-control"]
            message = {**message, "headers": [*headers, NO_STORE]}
        await send(message)

    return wrapped
