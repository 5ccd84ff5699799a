"""The audit log: who asked the API for what, one JSON line per HTTP request, hash-chained.

Files live under ``settings.audit_path``, one per UTC day and per process: ``audit-YYYYMMDD-<pid>.jsonl`` (several
workers never write to the same file). They are only ever opened for appending, and this module has no function
that rewrites or deletes a record. Each line carries ``prev``, the SHA-256 (hex) of the previous line of the same
file (without its newline; ``"0" * 64`` for the first line), so ``verify`` reports a line edited, deleted or
inserted, a file whose first lines were removed, and a file cut in the middle of a line.

What the chain cannot prove on its own: that the *last* lines of a file were not removed or edited (a file cut
at a line boundary is a valid shorter chain), that a whole file was not removed, or that someone able to write the
file did not rewrite it and recompute every hash after the edit. A process that owns a file can always truncate or
rewrite it, so in production make the log append-only at the OS level (Linux: ``chattr +a`` on each file as it
appears, and on the directory so that no file can be removed; this needs CAP_LINUX_IMMUTABLE, i.e. a root helper,
never the API itself), or ship the lines as they are written to write-once (WORM) storage or a log collector.
Keeping ``AuditLog.head`` (a file and the hash of its latest line) somewhere else, e.g. in the service's own
logs, anchors the chain: ``verify(dir, anchors={name: hash})`` then also reports a file cut or rewritten before
that line.

``AuditMiddleware`` is a pure ASGI middleware (not ``BaseHTTPMiddleware``, which is slow) recording: ts (UTC,
ISO 8601, when the request arrived), request_id (uuid4 hex, also sent back as ``X-Request-ID``), subject, role and
token_id (from ``scope["routecast.principal"]``, set by ``serving.auth.require``; None when anonymous), method,
path, endpoint (the route template, e.g. ``/v1/routes/{route_id}/forecast``), params (query and path parameters,
each a list of strings), status, rows (set by a handler with ``record_rows``), ms.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("routecast.audit")

GENESIS = "0" * 64
EPOCH = dt.date(1970, 1, 1)
FILE_RE = re.compile(r"^audit-(\d{8})-(\d+)\.jsonl$")
PRINCIPAL_SCOPE_KEY = "routecast.principal"  # = serving.auth.PRINCIPAL_SCOPE_KEY (no import: audit needs no auth)
ROWS_SCOPE_KEY = "routecast.rows"
REQUEST_ID_SCOPE_KEY = "routecast.request_id"

# Bounds on what a request can make us write (a query string is the client's to choose).
MAX_PARAMS = 32
MAX_VALUES = 16
MAX_VALUE_CHARS = 256
MAX_PATH_CHARS = 1024
MAX_TS = "\uffff"  # sorts after any ISO timestamp


def _hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _file_name(day: dt.date, pid: int) -> str:
    return f"audit-{day:%Y%m%d}-{pid}.jsonl"


class AuditLog:
    """Appends records to today's file of this process under ``directory`` (created on the first record)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._key: tuple[int, int] | None = None  # (day number, pid) of the open file
        self._name = ""
        self._prev = GENESIS
        self._head: tuple[str, str] | None = None

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line chained to the previous one (thread-safe; flushed, not fsynced).

        Values JSON cannot hold are written as ``str``; the key ``prev`` is the chain's own.
        """
        if "prev" in record:
            raise ValueError("'prev' is set by the audit log itself")
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str)
        with self._lock:
            f = self._current_file()
            line = f'{{"prev":"{self._prev}",{body[1:]}' if body != "{}" else f'{{"prev":"{self._prev}"}}'
            data = line.encode("ascii")
            f.write(data + b"\n")
            f.flush()
            self._prev = _hash(data)
            self._head = (self._name, self._prev)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file, self._key = None, None

    @property
    def path(self) -> Path | None:
        """The file being written, if any."""
        return None if self._file is None else Path(self._file.name)

    @property
    def head(self) -> tuple[str, str] | None:
        """(file name, SHA-256 of its latest line) to keep elsewhere as an anchor for ``verify``; None before the
        first record."""
        with self._lock:
            return self._head

    def _current_file(self) -> IO[bytes]:
        key = (int(time.time() // 86400), os.getpid())  # a new UTC day, or a forked child, starts a new file
        if self._file is not None and key == self._key:
            return self._file
        if self._file is not None:
            self._file.close()
            self._file = None
        day = EPOCH + dt.timedelta(days=key[0])
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / _file_name(day, key[1])
        # A restarted process with the same pid (pid 1 in a container) continues the file and its chain.
        last, complete = _last_line(path)
        # Append only (O_APPEND: every write goes to the end, whatever else has the file open), never readable by all.
        f = open(path, "ab", opener=lambda p, flags: os.open(p, flags, 0o640))  # closed by close() or the next day
        if last is not None and not complete:
            f.write(b"\n")  # a line cut by a crash stays there, reported by verify; the chain goes on after it
        self._file, self._key, self._name = f, key, path.name
        self._prev = GENESIS if last is None else _hash(last)
        return f


def _last_line(path: Path) -> tuple[bytes | None, bool]:
    """The last line of ``path`` without its newline (None if empty or missing) and whether it ended in one."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None, True
    with f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return None, True
        chunk, pos = b"", end
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + chunk
            body = chunk[:-1] if chunk.endswith(b"\n") else chunk
            cut = body.rfind(b"\n")
            if cut >= 0:
                return body[cut + 1 :], chunk.endswith(b"\n")
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        return body, chunk.endswith(b"\n")


# ---------------------------------------------------------------------------------------------------- middleware


def record_rows(request: Request, n: int) -> None:
    """Record in the audit log how many rows (or features) the response holds."""
    request.scope[ROWS_SCOPE_KEY] = int(n)


def _clip(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def _params(scope: Scope) -> dict[str, list[str]]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    params: dict[str, list[str]] = {}
    for name, values in query.items():
        if len(params) >= MAX_PARAMS:
            break
        params[_clip(name, 64)] = [_clip(v) for v in values[:MAX_VALUES]]
    for name, value in (scope.get("path_params") or {}).items():
        params[name] = [_clip(str(value))]
    return params


class AuditMiddleware:
    """Pure ASGI middleware writing one audit record per HTTP request: ``app.add_middleware(AuditMiddleware,
    log=AuditLog(settings.audit_path))``."""

    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        ts = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        request_id = uuid.uuid4().hex
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            principal = scope.get(PRINCIPAL_SCOPE_KEY)
            route = scope.get("route")
            record = {
                "ts": ts,
                "request_id": request_id,
                "subject": getattr(principal, "subject", None),
                "role": getattr(principal, "role", None),
                "token_id": getattr(principal, "token_id", None),
                "method": scope.get("method"),
                "path": _clip(scope.get("path", ""), MAX_PATH_CHARS),
                "endpoint": getattr(route, "path", None),
                "params": _params(scope),
                "status": status if status is not None else 500,  # an exception escaped: the server answers 500
                "rows": scope.get(ROWS_SCOPE_KEY),
                "ms": round((time.perf_counter() - start) * 1000, 3),
            }
            try:
                self.log.append(record)
            except OSError:
                log.exception("audit record of request %s not written", request_id)


# ----------------------------------------------------------------------------------------------- read and verify


def _files(directory: Path) -> list[tuple[str, Path]]:
    """(YYYYMMDD, path) of every audit file, in day order."""
    if not directory.is_dir():
        return []
    found = [(m.group(1), int(m.group(2)), p) for p in directory.iterdir() if (m := FILE_RE.match(p.name))]
    return [(day, p) for day, _, p in sorted(found, key=lambda t: (t[0], t[1]))]


def _as_utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _bounds(since: dt.date | dt.datetime | None, until: dt.date | dt.datetime | None) -> tuple[str, str]:
    """ISO-string bounds, both inclusive; a date ``until`` includes that whole day."""
    lo, hi = "", MAX_TS
    if isinstance(since, dt.datetime):
        lo = _as_utc(since).isoformat(timespec="microseconds")
    elif isinstance(since, dt.date):
        lo = dt.datetime.combine(since, dt.time(), dt.UTC).isoformat(timespec="microseconds")
    if isinstance(until, dt.datetime):
        hi = _as_utc(until).isoformat(timespec="microseconds")
    elif isinstance(until, dt.date):
        hi = dt.datetime.combine(until, dt.time.max, dt.UTC).isoformat(timespec="microseconds")
    return lo, hi


def _status_matches(status: int | str | None) -> Callable[[Any], bool]:
    if status is None:
        return lambda s: True
    text = str(status).lower()
    if re.fullmatch(r"[1-5]xx", text):
        return lambda s: isinstance(s, int) and s // 100 == int(text[0])
    if re.fullmatch(r"\d{3}", text):
        return lambda s: s == int(text)
    raise ValueError(f"status {status!r}: expected a code like 404 or a class like 4xx")


def _read_file(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # verify reports it
            if isinstance(record, dict):
                yield record


def read_records(
    directory: Path | str,
    since: dt.date | dt.datetime | None = None,
    until: dt.date | dt.datetime | None = None,
    subject: str | None = None,
    path_prefix: str | None = None,
    status: int | str | None = None,
) -> Iterator[dict[str, Any]]:
    """The records matching every filter given, in time order (the files of one day are merged by ``ts``).

    ``since`` and ``until`` are inclusive (a date ``until``: to the end of that day; naive times are UTC);
    ``status`` is a code (404) or a class ("4xx"). Lines that are not JSON are skipped (``verify`` reports them).
    """
    lo, hi = _bounds(since, until)
    # A file holds the records appended on its day; one that started just before midnight is in the next day's.
    day_lo = f"{dt.date.fromisoformat(lo[:10]):%Y%m%d}" if lo else ""
    day_hi = f"{dt.date.fromisoformat(hi[:10]) + dt.timedelta(days=1):%Y%m%d}" if hi != MAX_TS else "99999999"
    status_ok = _status_matches(status)

    def keep(r: dict[str, Any]) -> bool:
        ts = r.get("ts")
        return (
            isinstance(ts, str)
            and lo <= ts <= hi
            and (subject is None or r.get("subject") == subject)
            and (path_prefix is None or str(r.get("path", "")).startswith(path_prefix))
            and status_ok(r.get("status"))
        )

    by_day: dict[str, list[Path]] = {}
    for day, path in _files(Path(directory)):
        if day_lo <= day <= day_hi:
            by_day.setdefault(day, []).append(path)
    for day in sorted(by_day):
        streams: Iterable[dict[str, Any]] = heapq.merge(
            *(_read_file(p) for p in by_day[day]), key=lambda r: str(r.get("ts", ""))
        )
        yield from (r for r in streams if keep(r))


def verify(directory: Path | str, anchors: Mapping[str, str] | None = None) -> list[str]:
    """Problems found in the hash chains of the audit files under ``directory`` (empty: every chain is intact).

    Reports lines that are not JSON objects, a ``prev`` that is not the hash of the line before (a line edited,
    deleted or inserted), a file whose first line does not start a chain (its head was removed), and a last
    line without its newline (the file was cut). ``anchors`` ({file name: hash of a line}, from ``AuditLog.head``
    kept elsewhere) also catches a file removed, or cut or rewritten before its anchored line; without them, lines
    removed from the end at a line boundary go unseen (see the module docstring).
    """
    problems: list[str] = []
    files = _files(Path(directory))
    for name in sorted(set(anchors or {}) - {p.name for _, p in files}):
        problems.append(f"{name}: the file is missing")
    for _, path in files:
        expected = GENESIS
        data = path.read_bytes()
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        elif data:
            problems.append(f"{path.name}: line {len(lines)} has no newline (the file was cut)")
        anchor = (anchors or {}).get(path.name)
        anchored = anchor is None
        for n, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                problems.append(f"{path.name}: line {n} is not JSON")
            else:
                prev = record.get("prev") if isinstance(record, dict) else None
                if not isinstance(prev, str):
                    problems.append(f"{path.name}: line {n} has no 'prev' hash")
                elif prev != expected and n == 1:
                    problems.append(f"{path.name}: line 1 does not start a chain (lines before it were removed)")
                elif prev != expected:
                    problems.append(
                        f"{path.name}: line {n} does not follow line {n - 1} (a line was edited, removed or inserted)"
                    )
            expected = _hash(line)
            anchored = anchored or expected == anchor
        if not anchored:
            problems.append(f"{path.name}: the anchored line {anchor[:12]}… is gone (the file was cut or rewritten)")
    return problems
