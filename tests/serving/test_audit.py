"""serving.audit: the middleware's records, the keyed chain and the anchor, and what verify catches; failing closed,
bounded records, the anonymous limit, the audit key; the query filters."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from serving import audit
from serving.app import create_app
from serving.audit import (
    MAX_LINE_BYTES,
    MAX_PATH_BYTES,
    NOT_AUDITED_DETAIL,
    AnchorError,
    AnonymousLimiter,
    AuditKeyError,
    AuditLog,
    AuditMiddleware,
    _clip,
    _genesis,
    _mac,
    audit_key,
    read_anchor,
    read_records,
    record_rows,
    verify,
    verify_log,
)
from serving.auth import Principal, create_token, require
from serving.settings import ServingSettings
from tests.serving.conftest import CHANNEL, bearer

TODAY = dt.datetime.now(dt.UTC)


class _Clock:
    """The audit module's view of ``time``, its wall clock pinned: the day a log file is named after stays TODAY
    even when the suite runs across midnight."""

    def __init__(self, at: float) -> None:
        self.at = at

    def time(self) -> float:
        return self.at

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture(autouse=True)
def _pinned_day(monkeypatch):
    monkeypatch.setattr(audit, "time", _Clock(TODAY.timestamp()))


# Keys that look random enough for the checks: 64 hex characters each, none equal to the other.
JWT_SECRET = hashlib.sha256(b"routecast tests: token key").hexdigest()
AUDIT_KEY = hashlib.sha256(b"routecast tests: audit key").hexdigest()
KEY = AUDIT_KEY.encode()
OTHER_KEY = hashlib.sha256(b"someone else's key").hexdigest().encode()
DATA = "the forecast itself"  # what the test endpoint answers: must never leave when its record is not written


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_app(settings: ServingSettings, log: AuditLog, **options) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    app.add_middleware(AuditMiddleware, log=log, **options)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/routes/{route_id}/forecast")
    async def forecast(
        route_id: str, request: Request, p: Annotated[Principal, Depends(require("analyst"))], horizon: int = 28
    ) -> dict:
        record_rows(request, horizon)
        return {"route_id": route_id, "data": DATA}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("boom")

    return app


@pytest.fixture
def settings(tmp_path) -> ServingSettings:
    return ServingSettings(var_dir=tmp_path / "var", jwt_secret=JWT_SECRET, audit_key=AUDIT_KEY)


def auth(settings: ServingSettings) -> dict[str, str]:
    token = create_token(settings, subject="alice", role="planner", routes=["channel"], ttl=dt.timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}


def the_file(directory: Path) -> Path:
    (path,) = directory.glob("audit-*.jsonl")
    return path


def records_in(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_middleware_records_every_request(settings):
    log = AuditLog.from_settings(settings)
    app = make_app(settings, log)
    with TestClient(app, raise_server_exceptions=False, client=("203.0.113.7", 50000)) as client:
        ok = client.get("/v1/routes/channel/forecast?horizon=7&q=a&q=b", headers=auth(settings))
        anonymous = client.get("/healthz")
        refused = client.get("/v1/routes/channel/forecast")
        unknown = client.get("/nope")
        failed = client.get("/boom")
    assert [r.status_code for r in (ok, anonymous, refused, unknown, failed)] == [200, 200, 401, 404, 500]

    path = the_file(settings.audit_path)
    assert path.name == f"audit-{TODAY:%Y%m%d}-{os.getpid()}.jsonl"
    records = records_in(path)
    assert len(records) == 5
    first = records[0]
    assert list(first) == [
        "prev", "ts", "request_id", "client", "subject", "role", "token_id", "method", "path", "endpoint", "params",
        "status", "rows", "ms",
    ]  # fmt: skip
    assert first["prev"] == _genesis(KEY, path.name)
    assert first["request_id"] == ok.headers["X-Request-ID"] and len(first["request_id"]) == 32
    assert (first["client"], first["subject"], first["role"], first["method"], first["status"], first["rows"]) == (
        "203.0.113.7", "alice", "planner", "GET", 200, 7,
    )  # fmt: skip
    assert first["token_id"] and first["ms"] >= 0
    assert first["path"] == "/v1/routes/channel/forecast"
    assert first["endpoint"] == "/v1/routes/{route_id}/forecast"
    assert first["params"] == {"horizon": ["7"], "q": ["a", "b"], "route_id": ["channel"]}
    assert dt.datetime.fromisoformat(first["ts"]).tzinfo == dt.UTC

    health, refused_rec, unknown_rec, failed_rec = records[1:]
    assert (health["subject"], health["role"], health["token_id"], health["endpoint"]) == (None, None, None, "/healthz")
    assert health["request_id"] == anonymous.headers["X-Request-ID"]
    assert (refused_rec["status"], refused_rec["subject"], refused_rec["rows"]) == (401, None, None)
    assert (unknown_rec["status"], unknown_rec["endpoint"]) == (404, None)
    assert failed_rec["status"] == 500
    assert len({r["request_id"] for r in records}) == 5
    assert {r["client"] for r in records} == {"203.0.113.7"}
    lines = path.read_bytes().splitlines()
    assert log.head == (path.name, _mac(KEY, lines[-1]))
    assert [r["prev"] for r in records[1:]] == [_mac(KEY, line) for line in lines[:-1]]
    log.close()
    assert verify_log(settings.audit_path, KEY).problems == []


def test_a_request_without_a_client_address_records_null(settings):
    log = AuditLog.from_settings(settings)
    app = make_app(settings, log)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/healthz", "raw_path": b"/healthz", "query_string": b"", "root_path": "", "headers": [],
        "server": ("testserver", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    (record,) = records_in(the_file(settings.audit_path))
    assert record["client"] is None and record["path"] == "/healthz"


# ------------------------------------------------------------------------------------------------ chain and anchor


def write(directory: Path, n: int, key: bytes = KEY, start: int = 0) -> AuditLog:
    log = AuditLog(directory, key)
    for i in range(start, start + n):
        log.append({"ts": TODAY.isoformat(), "i": i})
    log.close()
    return log


def rechain(lines: list[bytes], mac, first: int = 1) -> list[bytes]:
    """What an attacker without the key can do: recompute every ``prev`` from line ``first`` on with ``mac``."""
    out = list(lines)
    for i in range(first, len(out)):
        record = json.loads(out[i])
        record["prev"] = mac(out[i - 1]) if i else "0" * 64
        out[i] = json.dumps(record, separators=(",", ":")).encode()
    return out


def test_a_reopened_log_continues_the_chain(tmp_path):
    write(tmp_path, 3)
    write(tmp_path, 2, start=3)  # a restart with the same pid on the same day: the same file
    path = the_file(tmp_path)
    assert [r["i"] for r in records_in(path)] == [0, 1, 2, 3, 4]
    assert verify_log(tmp_path, KEY).problems == []
    assert read_anchor(tmp_path / "anchor.json", KEY).files[path.name].lines == 5


def test_a_line_cut_by_a_crash_is_reported_and_the_chain_goes_on(tmp_path):
    write(tmp_path, 2)
    path = the_file(tmp_path)
    with open(path, "ab") as f:  # the process died in the middle of its third line, before the anchor saw it
        f.write(b'{"prev":"' + _mac(KEY, path.read_bytes().splitlines()[-1]).encode() + b'","ts":"20')
    assert verify_log(tmp_path, KEY).problems == [
        f"{path.name}: line 3 has no newline (the file was cut)",
        f"{path.name}: line 3 is not JSON",
    ]
    write(tmp_path, 2, start=2)
    assert verify_log(tmp_path, KEY).problems == [f"{path.name}: line 3 is not JSON"]
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["i"] for n, line in enumerate(lines) if n != 2] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda lines: [lines[0], lines[1].replace(b'"i":1', b'"i":7'), *lines[2:]], "line 3 does not follow line 2"),
        (lambda lines: [lines[0], *lines[2:]], "line 2 does not follow line 1"),
        (lambda lines: lines[1:], "line 1 does not start this file's chain"),
        (lambda lines: [lines[0], b"{not json", *lines[1:]], "line 2 is not JSON"),
        (lambda lines: [*lines[:2], b'{"i":9}', *lines[2:]], "line 3 has no 'prev' hash"),
        (lambda lines: [lines[0], lines[2], lines[1], lines[3]], "line 2 does not follow line 1"),
    ],
    ids=["edited", "deleted", "head-removed", "bad-json", "inserted", "swapped"],
)
def test_verify_reports_tampering(tmp_path, tamper, problem):
    write(tmp_path, 4)
    path = the_file(tmp_path)
    path.write_bytes(b"\n".join(tamper(path.read_bytes().splitlines())) + b"\n")
    problems = verify(tmp_path, KEY)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "mac",
    [lambda line: hashlib.sha256(line).hexdigest(), lambda line: _mac(OTHER_KEY, line)],
    ids=["plain-sha256", "another-key"],
)
def test_a_line_edited_and_re_chained_without_the_key_is_reported(tmp_path, mac):
    write(tmp_path, 4)
    path = the_file(tmp_path)
    lines = path.read_bytes().splitlines()
    lines[1] = lines[1].replace(b'"i":1', b'"i":7')
    path.write_bytes(b"\n".join(rechain(lines, mac, first=2)) + b"\n")
    problems = verify(tmp_path, KEY)
    assert [p.split(":")[1].split(" (")[0].strip() for p in problems] == [
        "line 3 does not follow line 2",
        "line 4 does not follow line 3",
    ]
    assert (
        verify_log(tmp_path, KEY).problems[-1]
        == f"{path.name}: line 4 is not the line anchored (the file was rewritten)"
    )


def test_a_whole_file_re_chained_from_its_first_line_is_reported(tmp_path):
    write(tmp_path, 3)
    path = the_file(tmp_path)
    lines = [line.replace(b'"i":', b'"i":1') for line in path.read_bytes().splitlines()]
    path.write_bytes(b"\n".join(rechain(lines, lambda line: hashlib.sha256(line).hexdigest(), first=0)) + b"\n")
    problems = verify(tmp_path, KEY)
    assert problems[0] == (
        f"{path.name}: line 1 does not start this file's chain (lines before it were removed, or the file was renamed "
        "or forged)"
    )
    assert "plain SHA-256" in problems[1] and len(problems) == 3


@pytest.mark.parametrize("removed", [1, 3])
def test_lines_removed_from_the_end_are_reported_against_the_anchor(tmp_path, removed):
    write(tmp_path, 4)
    path = the_file(tmp_path)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[: 4 - removed]))
    assert verify(tmp_path, KEY) == []  # a shorter chain is a valid chain: only the anchor can tell
    assert verify_log(tmp_path, KEY).problems == [
        f"{path.name}: {4 - removed} lines where the anchor holds 4: lines were removed from its end"
    ]


def test_an_edited_last_line_is_reported_against_the_anchor(tmp_path):
    write(tmp_path, 4)
    path = the_file(tmp_path)
    lines = path.read_bytes().splitlines()
    lines[-1] = lines[-1].replace(b'"i":3', b'"i":8')
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert verify(tmp_path, KEY) == []  # nothing follows the last line: only the anchor can tell
    assert verify_log(tmp_path, KEY).problems == [
        f"{path.name}: line 4 is not the line anchored (the file was rewritten)"
    ]


def as_process(monkeypatch, pid: int) -> None:
    """What follows runs as if in the worker with this pid (each worker writes its own file)."""
    monkeypatch.setattr(audit.os, "getpid", lambda: pid)


def test_every_file_is_anchored_and_a_deleted_file_is_reported(tmp_path, monkeypatch):
    for pid in (111, 222):  # two workers of one API: one anchor file, each merging its entries under a lock
        with monkeypatch.context() as m:
            as_process(m, pid)
            write(tmp_path, 2 + pid // 111)
    first, second = (tmp_path / f"audit-{TODAY:%Y%m%d}-{pid}.jsonl" for pid in (111, 222))
    anchor = read_anchor(tmp_path / "anchor.json", KEY)
    assert {n: a.lines for n, a in anchor.files.items()} == {first.name: 3, second.name: 4}
    assert verify_log(tmp_path, KEY).problems == []

    first.unlink()
    assert verify_log(tmp_path, KEY).problems == [f"{first.name}: the file is missing (the anchor holds 3 lines of it)"]
    second.unlink()
    assert len(verify_log(tmp_path, KEY).problems) == 2


def test_verify_can_leave_out_the_days_retired_or_not_archived(tmp_path, monkeypatch):
    yesterday = TODAY - dt.timedelta(days=1)
    with monkeypatch.context() as m:
        m.setattr(audit.time, "time", lambda: yesterday.timestamp())  # the day the log files its records under
        write(tmp_path, 2)
    write(tmp_path, 3)
    old, new = (tmp_path / f"audit-{day:%Y%m%d}-{os.getpid()}.jsonl" for day in (yesterday, TODAY))
    assert verify_log(tmp_path, KEY).problems == []

    archive = tmp_path / "archive"
    archive.mkdir()
    old.rename(archive / old.name)  # retention: yesterday's file leaves, the anchor keeps its entry
    missing = f"{old.name}: the file is missing (the anchor holds 2 lines of it)"
    assert verify_log(tmp_path, KEY).problems == [missing]
    assert verify_log(tmp_path, KEY, since=TODAY.date()).problems == []
    assert verify_log(archive, KEY, tmp_path / "anchor.json", until=yesterday.date()).problems == []
    new.unlink()
    assert verify_log(tmp_path, KEY, since=TODAY.date()).problems == [
        f"{new.name}: the file is missing (the anchor holds 3 lines of it)"
    ]


def test_a_forged_or_renamed_file_is_reported(tmp_path):
    write(tmp_path, 2)
    path = the_file(tmp_path)
    forged = tmp_path / f"audit-{TODAY:%Y%m%d}-999.jsonl"
    forged.write_bytes(json.dumps({"prev": "0" * 64, "ts": TODAY.isoformat(), "subject": "nobody"}).encode() + b"\n")
    renamed = tmp_path / f"audit-{TODAY:%Y%m%d}-998.jsonl"
    path.rename(renamed)
    problems = verify_log(tmp_path, KEY).problems
    assert problems == [
        f"{path.name}: the file is missing (the anchor holds 2 lines of it)",
        f"{renamed.name}: line 1 does not start this file's chain (lines before it were removed, or the file was "
        "renamed or forged)",
        f"{forged.name}: line 1 does not start this file's chain (lines before it were removed, or the file was "
        "renamed or forged)",
    ]


def test_an_altered_anchor_is_refused_and_never_overwritten(tmp_path, caplog):
    write(tmp_path, 3)
    anchor_file = tmp_path / "anchor.json"
    document = json.loads(anchor_file.read_text())
    (entry,) = document["files"].values()
    entry["lines"] = 2  # to hide that the third line is about to be removed
    anchor_file.write_text(json.dumps(document))
    altered = anchor_file.read_bytes()
    with pytest.raises(AnchorError, match="signature does not verify"):
        read_anchor(anchor_file, KEY)
    assert verify_log(tmp_path, KEY).problems == [
        f"{anchor_file}: the anchor's signature does not verify (it was altered, or made with another key)"
    ]
    with caplog.at_level(logging.ERROR, logger="routecast.audit"):
        write(tmp_path, 1, start=3)
    assert anchor_file.read_bytes() == altered  # the evidence stays as it was
    assert "audit anchor not updated" in caplog.text
    with pytest.raises(AnchorError, match="signature"):
        read_anchor(anchor_file, OTHER_KEY)  # an anchor made with another key proves nothing either


def test_a_file_cut_while_the_api_was_down_is_not_continued(tmp_path, caplog):
    write(tmp_path, 4)
    path = the_file(tmp_path)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    with caplog.at_level(logging.ERROR, logger="routecast.audit"):
        write(tmp_path, 1, start=4)  # the API restarts with the same pid on the same day
    assert "no longer holds its anchored line" in caplog.text
    assert len(path.read_bytes().splitlines()) == 2  # not written to: its anchor entry would have to go back
    follow_up = path.with_name(path.name.replace(".jsonl", "-1.jsonl"))
    assert [r["i"] for r in records_in(follow_up)] == [4]
    assert verify_log(tmp_path, KEY).problems == [
        f"{path.name}: 2 lines where the anchor holds 4: lines were removed from its end"
    ]


def test_the_anchor_is_written_on_a_new_file_then_after_the_interval_and_at_close(tmp_path):
    clock = Clock()
    log = AuditLog(tmp_path, KEY, anchor_interval_s=60, clock=clock)
    anchor_file = tmp_path / "anchor.json"

    def anchored() -> int:
        (entry,) = read_anchor(anchor_file, KEY).files.values()
        return entry.lines

    log.append({"i": 0})
    assert anchored() == 1  # a file is anchored from its first line, so that its removal shows at once
    clock.t += 59
    log.append({"i": 1})
    assert anchored() == 1
    clock.t += 1
    log.append({"i": 2})
    assert anchored() == 3
    log.append({"i": 3})
    assert anchored() == 3
    log.flush_anchor()
    assert anchored() == 4
    log.append({"i": 4})
    log.close()
    assert anchored() == 5
    entry = read_anchor(anchor_file, KEY).files[the_file(tmp_path).name]
    assert entry.size == the_file(tmp_path).stat().st_size
    assert entry.head == _mac(KEY, the_file(tmp_path).read_bytes().splitlines()[-1])
    assert stat.S_IMODE(anchor_file.stat().st_mode) == 0o640
    assert stat.S_IMODE(the_file(tmp_path).stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []  # renamed into place


def test_the_api_anchors_its_records_at_shutdown(published):
    settings = published.model_copy(update={"audit_anchor_interval_s": 3600})
    with TestClient(create_app(settings)) as c:
        for _ in range(3):
            assert c.get(f"/v1/routes/{CHANNEL}", headers=bearer(settings, "analyst")).status_code == 200
    path = the_file(settings.audit_path)
    (entry,) = read_anchor(settings.audit_anchor_path, audit_key(settings)).files.values()
    assert entry.lines == len(path.read_bytes().splitlines()) == 3  # the interval never came: close() anchored
    assert verify_log(settings.audit_path, audit_key(settings)).problems == []


def test_the_log_has_no_way_to_rewrite_records():
    public = {name for name in vars(AuditLog) if not name.startswith("_")}
    assert public == {"append", "close", "flush_anchor", "from_settings", "path", "head"}
    with pytest.raises(ValueError, match="prev"):
        AuditLog("unused", KEY).append({"prev": "0"})


# ---------------------------------------------------------------------------------------------------- fail closed


def unwritable(settings: ServingSettings, tmp_path: Path) -> ServingSettings:
    """Settings whose audit directory cannot be made: its parent is a regular file (chmod does not stop root)."""
    (tmp_path / "not-a-dir").write_text("")
    return settings.model_copy(update={"audit_dir": tmp_path / "not-a-dir" / "audit"})


def test_when_the_record_cannot_be_written_the_answer_is_503_and_no_data_leaves(settings, tmp_path, caplog):
    broken = unwritable(settings, tmp_path)
    with caplog.at_level(logging.ERROR, logger="routecast.audit"):
        with TestClient(make_app(broken, AuditLog.from_settings(broken))) as client:
            r = client.get("/v1/routes/channel/forecast?horizon=3", headers=auth(settings))
            anonymous = client.get("/healthz")
    assert (r.status_code, r.json()) == (503, {"detail": NOT_AUDITED_DETAIL})
    assert DATA.encode() not in r.content and len(r.headers.get_list("x-request-id")) == 1
    assert anonymous.status_code == 503
    assert f"audit record of request {r.headers['x-request-id']} not written; answered 503" in caplog.text


def test_a_write_that_fails_mid_run_refuses_that_request_and_the_log_recovers(settings, monkeypatch):
    log = AuditLog.from_settings(settings)
    with TestClient(make_app(settings, log)) as client:
        assert client.get("/v1/routes/channel/forecast", headers=auth(settings)).status_code == 200

        def disk_full(fd: int, data: bytes) -> None:
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as m:
            m.setattr(audit, "_write_all", disk_full)
            full = client.get("/v1/routes/channel/forecast", headers=auth(settings))
        assert (full.status_code, full.json()) == (503, {"detail": NOT_AUDITED_DETAIL})
        assert client.get("/v1/routes/channel/forecast", headers=auth(settings)).status_code == 200
    log.close()
    assert [r["status"] for r in records_in(the_file(settings.audit_path))] == [200, 200]
    assert verify_log(settings.audit_path, KEY).problems == []


def test_fail_open_serves_and_logs_the_error(settings, tmp_path, caplog):
    broken = unwritable(settings, tmp_path)
    with caplog.at_level(logging.ERROR, logger="routecast.audit"):
        with TestClient(make_app(broken, AuditLog.from_settings(broken), fail_open=True)) as client:
            r = client.get("/v1/routes/channel/forecast?horizon=3", headers=auth(settings))
    assert r.status_code == 200 and r.json()["data"] == DATA
    assert f"audit record of request {r.headers['x-request-id']} not written; served (audit_fail_open)" in caplog.text


def test_the_api_fails_closed_by_default_and_reads_the_fail_open_setting(settings, monkeypatch):
    assert settings.audit_fail_open is False
    monkeypatch.setenv("ROUTECAST_AUDIT_FAIL_OPEN", "true")
    assert ServingSettings().audit_fail_open is True


# ------------------------------------------------------------------------------------------------- bounded records


def test_clip_counts_bytes_as_written():
    assert _clip("abc", 5) == "abc"
    assert _clip("abcdefghij", 8) == "ab…"  # 2 + 6 bytes (the mark is written \u2026)
    assert _clip('""""""', 8) == '"…'  # a quote is written \"
    assert _clip("é" * 10, 18) == "éé…"
    assert _clip("x" * 10_000_000, 64) == "x" * 58 + "…"


def test_a_huge_request_writes_a_bounded_record(settings):
    log = AuditLog.from_settings(settings)
    # As long as a client library sends (httpx: 64 KiB of URL); far longer than one record may be.
    long_id = "r" * 8000
    query = "&".join([f"p{i}={'v' * 300}" for i in range(100)] + ["big=" + "w" * 10_000, "e=" + "é" * 1000])
    with TestClient(make_app(settings, log)) as client:
        authed = client.get(f"/v1/routes/{long_id}/forecast?{query}", headers=auth(settings))
        anonymous = client.get(f"/v1/routes/{long_id}/forecast?{query}")
        many = client.get("/healthz?" + "&".join(f"n{i}=" for i in range(5000)))
    assert (authed.status_code, anonymous.status_code, many.status_code) == (200, 401, 200)
    lines = the_file(settings.audit_path).read_bytes().splitlines()
    assert len(lines) == 3
    assert max(len(line) for line in lines) <= MAX_LINE_BYTES
    first, second, third = (json.loads(line) for line in lines)
    for record in (first, second):
        assert record["path"].startswith("/v1/routes/rrr") and record["path"].endswith("…")
        assert len(json.dumps(record["path"])) - 2 <= MAX_PATH_BYTES
        assert record["params"]["…"][0].endswith("more not recorded")
    assert first["params"]["route_id"][0].endswith("…") and first["params"]["p0"] == ["v" * 122 + "…"]
    assert third["params"]["…"] == [f"{5000 - 32} more not recorded"]  # 32 names kept


# ------------------------------------------------------------------------------------------------ anonymous limit


def test_an_anonymous_flood_gets_429_after_the_burst_and_is_still_audited(settings):
    clock = Clock()
    limiter = AnonymousLimiter(per_minute=60, burst=3, clock=clock)
    log = AuditLog.from_settings(settings)
    url = "/v1/routes/channel/forecast"
    with TestClient(make_app(settings, log, anonymous_limit=limiter), client=("198.51.100.1", 1)) as client:
        codes = [client.get(url).status_code for _ in range(5)]
        over = client.get(url)
        assert codes == [401, 401, 401, 429, 429]
        assert over.headers["retry-after"] == "1" and "without a token from this address" in over.json()["detail"]
        assert len(over.headers.get_list("x-request-id")) == 1  # one, as on every answer
        assert client.get("/healthz").status_code == 200  # not /v1/: not limited
        assert client.get(url, headers=auth(settings)).status_code == 200  # a token: limited per token elsewhere
        assert client.get(url, headers={"Authorization": "Bearer nonsense"}).status_code == 401
        clock.t += 1.0  # one request's worth refilled
        assert [client.get(url).status_code for _ in range(2)] == [401, 429]
    with TestClient(make_app(settings, log, anonymous_limit=limiter), client=("198.51.100.2", 1)) as other:
        assert other.get(url).status_code == 401  # another address has its own bucket
    statuses = [(r["client"], r["status"]) for r in records_in(the_file(settings.audit_path)) if r["path"] == url]
    assert statuses.count(("198.51.100.1", 429)) == 4


def test_the_anonymous_limiter_keys_ipv6_by_its_64_and_bounds_its_memory():
    clock = Clock()
    limiter = AnonymousLimiter(per_minute=60, burst=1, clock=clock, max_clients=3)
    assert limiter.take("2001:db8:1:2::1") == 0.0
    assert limiter.take("2001:db8:1:2:ffff::9") == 1.0  # the same /64: the same subscriber
    assert limiter.take("2001:db8:1:3::1") == 0.0
    assert limiter.take("::ffff:192.0.2.1") == 0.0
    assert limiter.take("192.0.2.1") == 1.0  # an IPv4-mapped address is that IPv4 address
    assert len(limiter) == 3
    assert limiter.take("192.0.2.99") == 1.0  # full: a new address waits until buckets fill up again
    clock.t += 60
    assert limiter.take("192.0.2.99") == 0.0 and len(limiter) == 1


def test_the_anonymous_limit_settings():
    assert (ServingSettings().anon_rate_limit_per_minute, ServingSettings().anon_rate_limit_burst) == (120, 30)
    limiter = AnonymousLimiter.from_settings(ServingSettings(anon_rate_limit_per_minute=30, anon_rate_limit_burst=2))
    assert (limiter.per_minute, limiter.burst) == (30, 2)


# ------------------------------------------------------------------------------------------------------- the key


def test_the_audit_key_file_is_made_once_with_mode_0600_and_is_not_the_token_key(tmp_path):
    settings = ServingSettings(var_dir=tmp_path)
    with pytest.raises(AuditKeyError, match="no audit key file"):
        audit_key(settings, create=False)  # verify never makes a key
    assert not settings.audit_key_path.exists()
    key = audit_key(settings)
    assert settings.audit_key_path == tmp_path / "keys" / "audit-hmac.key"
    assert stat.S_IMODE(settings.audit_key_path.stat().st_mode) == 0o600
    assert len(key) == 32 and audit_key(settings) == key == audit_key(settings, create=False)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("0123456789abcdef0123456789abcde", "has 31 bytes"),
        ("k" * 32, "1 distinct bytes"),
        ("abcd" * 16, "4 distinct bytes"),
        ("0123456789abcdef" * 4, "one 16-byte pattern repeated"),
        (JWT_SECRET, "the audit key is the token signing key"),
    ],
    ids=["short", "one-char", "few-distinct", "pattern", "token-key"],
)
@pytest.mark.parametrize("where", ["env", "file"])
def test_a_weak_audit_key_is_refused_and_the_api_does_not_start(tmp_path, monkeypatch, key, message, where):
    if where == "env":
        monkeypatch.setenv("ROUTECAST_AUDIT_KEY", key)
        settings = ServingSettings(var_dir=tmp_path, jwt_secret=JWT_SECRET)
    else:
        settings = ServingSettings(var_dir=tmp_path, jwt_secret=JWT_SECRET)
        settings.audit_key_path.parent.mkdir(parents=True)
        settings.audit_key_path.write_text(key)
        settings.audit_key_path.chmod(0o600)
    with pytest.raises(AuditKeyError, match=message):
        audit_key(settings)
    with pytest.raises(AuditKeyError, match=message):
        create_app(settings)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_an_audit_key_file_others_may_read_or_write_is_refused(tmp_path, mode):
    settings = ServingSettings(var_dir=tmp_path, jwt_secret=JWT_SECRET)
    audit_key(settings)
    settings.audit_key_path.chmod(mode)
    with pytest.raises(AuditKeyError, match=rf"group or others \(mode 0{mode:o}\).*chmod 600"):
        audit_key(settings)
    with pytest.raises(AuditKeyError, match="group or others"):
        create_app(settings)


def test_a_log_is_never_made_with_a_weak_key(tmp_path):
    with pytest.raises(AuditKeyError, match="distinct"):
        AuditLog(tmp_path, b"x" * 32)


# ----------------------------------------------------------------------------------------------------- read back


def test_read_records_filters(tmp_path):
    log = AuditLog(tmp_path, KEY)
    base = TODAY.replace(microsecond=0)
    rows = [
        (base - dt.timedelta(hours=30), "alice", "/v1/routes", 200),
        (base - dt.timedelta(hours=2), "bob", "/v1/routes/channel/forecast", 200),
        (base - dt.timedelta(hours=1), "alice", "/v1/routes/channel/cells", 404),
        (base, None, "/healthz", 200),
        (base + dt.timedelta(minutes=1), "alice", "/v1/admin/reload", 403),
    ]
    for ts, subject, path, status in rows:
        log.append({"ts": ts.isoformat(timespec="microseconds"), "subject": subject, "path": path, "status": status})
    log.close()

    def paths(**filters) -> list[str]:
        return [r["path"] for r in read_records(tmp_path, **filters)]

    assert len(paths()) == 5
    assert paths(subject="alice") == ["/v1/routes", "/v1/routes/channel/cells", "/v1/admin/reload"]
    assert paths(path_prefix="/v1/routes/") == ["/v1/routes/channel/forecast", "/v1/routes/channel/cells"]
    assert paths(status=404) == ["/v1/routes/channel/cells"]
    assert paths(status="4xx") == ["/v1/routes/channel/cells", "/v1/admin/reload"]
    assert paths(since=base - dt.timedelta(hours=2), until=base) == [
        "/v1/routes/channel/forecast", "/v1/routes/channel/cells", "/healthz",
    ]  # fmt: skip
    naive = (base - dt.timedelta(hours=1)).replace(tzinfo=None)  # naive times are UTC
    assert paths(until=naive) == ["/v1/routes", "/v1/routes/channel/forecast", "/v1/routes/channel/cells"]
    assert paths(since=base.date() + dt.timedelta(days=1)) == []
    assert paths(until=base.date() - dt.timedelta(days=2)) == []
    with pytest.raises(ValueError, match="4xx"):
        list(read_records(tmp_path, status="teapot"))
    assert list(read_records(tmp_path / "missing")) == []


def test_records_of_several_processes_are_merged_in_time_order(tmp_path):
    for pid, seconds in ((111, (0, 2, 4)), (222, (1, 3))):
        name = f"audit-{TODAY:%Y%m%d}-{pid}.jsonl"
        lines, prev = [], _genesis(KEY, name)
        for s in seconds:
            line = json.dumps({"prev": prev, "ts": (TODAY + dt.timedelta(seconds=s)).isoformat(), "n": s}).encode()
            lines.append(line)
            prev = _mac(KEY, line)
        (tmp_path / name).write_bytes(b"\n".join(lines) + b"\n")
    assert [r["n"] for r in read_records(tmp_path)] == [0, 1, 2, 3, 4]
    assert verify(tmp_path, KEY) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
RECORDS = st.lists(st.dictionaries(st.text(max_size=8).filter(lambda k: k != "prev"), JSON, max_size=5), max_size=8)


@given(records=RECORDS)
@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_records_round_trip_and_verify(records):
    with tempfile.TemporaryDirectory() as d:
        log = AuditLog(d, KEY)
        for r in records:
            log.append(r)
        log.close()
        files = list(Path(d).glob("audit-*.jsonl"))
        lines = files[0].read_bytes().splitlines() if files else []
        back = [json.loads(line) for line in lines]
        assert [{k: v for k, v in b.items() if k != "prev"} for b in back] == records
        assert all(b"\n" not in line and line.isascii() for line in lines)
        assert verify_log(d, KEY).problems == []


@given(records=RECORDS.filter(bool), data=st.data())
@hyp_settings(max_examples=60, deadline=None)
def test_with_the_anchor_any_edit_or_deletion_is_reported(records, data):
    with tempfile.TemporaryDirectory() as d:
        log = AuditLog(d, KEY)
        for r in records:
            log.append(r)
        log.close()
        path = the_file(Path(d))
        lines = path.read_bytes().splitlines(keepends=True)
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        if data.draw(st.booleans(), label="delete"):
            del lines[i]
        else:
            line = bytearray(lines[i])
            j = data.draw(st.integers(0, len(line) - 2), label="byte")  # not the newline
            line[j] = data.draw(st.integers(0, 255).filter(lambda b: b != line[j]), label="value")
            lines[i] = bytes(line)
        path.write_bytes(b"".join(lines))
        assert verify_log(d, KEY).problems != []


@hyp_settings(max_examples=300, deadline=None)
@given(
    query=st.lists(
        st.sampled_from([*'ab=&+%2Fé"\\ x', "%20", "%C3%A9", "=" * 3, "y" * 70, "z" * 130]), max_size=60
    ).map("".join),
    path_value=st.text(max_size=40),
)
def test_the_cheap_parameter_path_records_exactly_what_the_bounded_one_does(query, path_value):
    from serving.audit import _bounded_params, _plain_params

    scope = {"query_string": query.encode("utf-8"), "path_params": {"route_id": path_value}}
    plain = _plain_params(scope)
    if plain is not None:
        assert plain == _bounded_params(scope)
