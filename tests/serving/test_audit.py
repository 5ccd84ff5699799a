"""serving.audit: the middleware's records, the hash chain and what verify catches, the query filters."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from serving.audit import GENESIS, AuditLog, AuditMiddleware, _hash, read_records, record_rows, verify
from serving.auth import Principal, create_token, require
from serving.settings import ServingSettings

TODAY = dt.datetime.now(dt.UTC)


def make_app(settings: ServingSettings, log: AuditLog) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    app.add_middleware(AuditMiddleware, log=log)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/routes/{route_id}/forecast")
    async def forecast(
        route_id: str, request: Request, p: Annotated[Principal, Depends(require("analyst"))], horizon: int = 28
    ) -> dict:
        record_rows(request, horizon)
        return {"route_id": route_id}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("boom")

    return app


@pytest.fixture
def settings(tmp_path) -> ServingSettings:
    return ServingSettings(var_dir=tmp_path / "var", jwt_secret="k" * 32)


def the_file(directory: Path) -> Path:
    (path,) = directory.glob("audit-*.jsonl")
    return path


def test_the_middleware_records_every_request(settings):
    log = AuditLog(settings.audit_path)
    token = create_token(settings, subject="alice", role="planner", routes=["channel"], ttl=dt.timedelta(hours=1))
    with TestClient(make_app(settings, log), raise_server_exceptions=False) as client:
        ok = client.get("/v1/routes/channel/forecast?horizon=7&q=a&q=b", headers={"Authorization": f"Bearer {token}"})
        anonymous = client.get("/healthz")
        refused = client.get("/v1/routes/channel/forecast")
        unknown = client.get("/nope")
        failed = client.get("/boom")
    assert [r.status_code for r in (ok, anonymous, refused, unknown, failed)] == [200, 200, 401, 404, 500]

    path = the_file(settings.audit_path)
    assert path.name == f"audit-{TODAY:%Y%m%d}-{os.getpid()}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 5
    first = records[0]
    assert set(first) == {
        "prev", "ts", "request_id", "subject", "role", "token_id", "method", "path", "endpoint", "params",
        "status", "rows", "ms",
    }  # fmt: skip
    assert first["prev"] == GENESIS
    assert first["request_id"] == ok.headers["X-Request-ID"] and len(first["request_id"]) == 32
    assert (first["subject"], first["role"], first["method"], first["status"], first["rows"]) == (
        "alice", "planner", "GET", 200, 7,
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
    assert verify(settings.audit_path) == []
    assert log.head == (path.name, _hash(path.read_bytes().splitlines()[-1]))


def write(directory: Path, n: int) -> AuditLog:
    log = AuditLog(directory)
    for i in range(n):
        log.append({"ts": TODAY.isoformat(), "i": i})
    log.close()
    return log


def test_a_reopened_log_continues_the_chain(tmp_path):
    write(tmp_path, 3)
    write(tmp_path, 2)  # a restart with the same pid on the same day: the same file
    assert len(the_file(tmp_path).read_text().splitlines()) == 5
    assert verify(tmp_path) == []


def test_a_line_cut_by_a_crash_is_reported_and_the_chain_goes_on(tmp_path):
    write(tmp_path, 3)
    path = the_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    assert verify(tmp_path) == [
        f"{path.name}: line 3 has no newline (the file was cut)",
        f"{path.name}: line 3 is not JSON",
    ]
    write(tmp_path, 2)
    assert verify(tmp_path) == [f"{path.name}: line 3 is not JSON"]


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda lines: [lines[0], lines[1].replace(b'"i":1', b'"i":7'), *lines[2:]], "line 3 does not follow line 2"),
        (lambda lines: [lines[0], *lines[2:]], "line 2 does not follow line 1"),
        (lambda lines: lines[1:], "line 1 does not start a chain"),
        (lambda lines: [lines[0], b"{not json", *lines[1:]], "line 2 is not JSON"),
        (lambda lines: [*lines[:2], b'{"i":9}', *lines[2:]], "line 3 has no 'prev' hash"),
    ],
    ids=["edited", "deleted", "head-removed", "bad-json", "inserted"],
)
def test_verify_reports_tampering(tmp_path, tamper, problem):
    write(tmp_path, 4)
    path = the_file(tmp_path)
    path.write_bytes(b"\n".join(tamper(path.read_bytes().splitlines())) + b"\n")
    problems = verify(tmp_path)
    assert any(problem in p for p in problems), problems


def test_truncation_is_reported_mid_line_and_at_a_line_boundary_against_an_anchor(tmp_path):
    log = write(tmp_path, 4)
    path = the_file(tmp_path)
    assert log.head == (path.name, _hash(path.read_bytes().splitlines()[-1]))
    anchors = dict([log.head])
    data = path.read_bytes()
    assert verify(tmp_path, anchors) == []

    path.write_bytes(data[: len(data) // 2 + 3])
    assert any("has no newline (the file was cut)" in p for p in verify(tmp_path))

    path.write_bytes(b"".join(data.splitlines(keepends=True)[:3]))
    assert verify(tmp_path) == []  # a shorter chain is a valid chain ...
    assert verify(tmp_path, anchors) == [
        f"{path.name}: the anchored line {anchors[path.name][:12]}… is gone (the file was cut or rewritten)"
    ]

    path.unlink()
    assert verify(tmp_path, anchors) == [f"{path.name}: the file is missing"]


def test_the_log_has_no_way_to_rewrite_records():
    public = {name for name in vars(AuditLog) if not name.startswith("_")}
    assert public == {"append", "close", "path", "head"}
    with pytest.raises(ValueError, match="prev"):
        AuditLog("unused").append({"prev": "0"})


def test_read_records_filters(tmp_path):
    log = AuditLog(tmp_path)
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
        lines, prev = [], GENESIS
        for s in seconds:
            line = json.dumps({"prev": prev, "ts": (TODAY + dt.timedelta(seconds=s)).isoformat(), "n": s}).encode()
            lines.append(line)
            prev = _hash(line)
        (tmp_path / f"audit-{TODAY:%Y%m%d}-{pid}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert [r["n"] for r in read_records(tmp_path)] == [0, 1, 2, 3, 4]
    assert verify(tmp_path) == []


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
        log = AuditLog(d)
        for r in records:
            log.append(r)
        log.close()
        files = list(Path(d).glob("audit-*.jsonl"))
        lines = files[0].read_bytes().splitlines() if files else []
        back = [json.loads(line) for line in lines]
        assert [{k: v for k, v in b.items() if k != "prev"} for b in back] == records
        assert all(b"\n" not in line and line.isascii() for line in lines)
        assert verify(d) == []


@given(records=RECORDS.filter(bool), data=st.data())
@hyp_settings(max_examples=60, deadline=None)
def test_with_an_anchor_any_edit_or_deletion_is_reported(records, data):
    with tempfile.TemporaryDirectory() as d:
        log = AuditLog(d)
        for r in records:
            log.append(r)
        assert log.head is not None
        anchors = dict([log.head])
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
        assert verify(d, anchors) != []
