"""``routecast token create|inspect`` and ``routecast audit [verify]``, through the ``routecast`` command."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.cli import app
from serving.audit import AuditLog
from serving.auth import create_token, decode_token
from serving.cli import parse_ttl
from serving.settings import ServingSettings

runner = CliRunner()


@pytest.fixture
def var_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("ROUTECAST_JWT_SECRET", raising=False)
    monkeypatch.delenv("ROUTECAST_JWT_KEY_FILE", raising=False)
    monkeypatch.delenv("ROUTECAST_AUDIT_DIR", raising=False)
    monkeypatch.setenv("ROUTECAST_VAR_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_token_create_prints_only_the_token_and_a_summary_on_stderr(var_dir):
    r = invoke("token", "create", "--role", "planner", "--routes", "channel,central_mediterranean", "--ttl", "30m",
               "--subject", "alice")  # fmt: skip
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert "\n" not in token and token.count(".") == 2
    assert r.stdout == token + "\n"
    assert "role planner" in r.stderr
    assert "expires" in r.stderr

    p = decode_token(ServingSettings(var_dir=var_dir), token)  # the key file the command created
    assert (p.subject, p.role, p.routes) == ("alice", "planner", frozenset({"channel", "central_mediterranean"}))
    left = p.expires - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=29) < left <= dt.timedelta(minutes=30)

    everything = invoke("token", "create", "--role", "analyst", "--subject", "bob")
    assert everything.exit_code == 0
    assert decode_token(ServingSettings(var_dir=var_dir), everything.stdout.strip()).routes is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--routes", "channel,atlantis"], "unknown route(s) 'atlantis'"),
        (["--ttl", "91d"], "longer than the maximum"),
        (["--ttl", "8 hours"], "expected a number and a unit"),
        (["--role", "root"], "root"),
    ],
)
def test_token_create_refuses_bad_input_with_exit_code_2(var_dir, args, message):
    base = {"--role": "analyst", "--subject": "a"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    r = invoke("token", "create", *[x for kv in base.items() for x in kv])
    assert r.exit_code == 2
    assert message in " ".join(r.stderr.split())
    assert r.stdout == ""


def test_parse_ttl():
    assert parse_ttl("30m") == dt.timedelta(minutes=30)
    assert parse_ttl("8h") == dt.timedelta(hours=8)
    assert parse_ttl("7d") == dt.timedelta(days=7)
    assert parse_ttl("1.5H") == dt.timedelta(minutes=90)


def test_token_inspect_shows_verified_claims_and_refuses_a_forged_token(var_dir, tmp_path):
    settings = ServingSettings(var_dir=var_dir)
    token = create_token(settings, subject="carol", role="admin", routes=["channel"], ttl=dt.timedelta(hours=1))
    r = invoke("token", "inspect", token)
    assert r.exit_code == 0, r.output
    claims = json.loads(r.stdout)
    assert (claims["sub"], claims["role"], claims["routes"], claims["aud"]) == (
        "carol", "admin", ["channel"], "routecast-api",
    )  # fmt: skip
    assert claims["exp"] - claims["iat"] == 3600 and claims["exp_utc"].endswith("+00:00")

    forged = create_token(
        ServingSettings(var_dir=tmp_path / "elsewhere"), subject="m", role="admin", routes=None, ttl=dt.timedelta(1)
    )
    bad = invoke("token", "inspect", forged)
    assert bad.exit_code == 1
    assert "token signature is invalid" in bad.stderr


def audit_dir_with_records(var_dir: Path) -> Path:
    audit = ServingSettings(var_dir=var_dir).audit_path
    log = AuditLog(audit)
    now = dt.datetime.now(dt.UTC)
    for i, (subject, path, status) in enumerate(
        [("alice", "/v1/routes", 200), ("bob", "/v1/routes/channel/forecast", 200), ("alice", "/v1/x", 404)]
    ):
        log.append({
            "ts": (now - dt.timedelta(minutes=10 - i)).isoformat(timespec="microseconds"),
            "request_id": f"{i:032x}",
            "subject": subject,
            "role": "planner",
            "token_id": "t",
            "method": "GET",
            "path": path,
            "endpoint": path,
            "params": {"horizon": ["7"]},
            "status": status,
            "rows": 3,
            "ms": 1.25,
        })  # fmt: skip
    log.close()
    return audit


def test_audit_queries_the_log(var_dir):
    audit_dir_with_records(var_dir)
    r = invoke("audit", "--json", "--subject", "alice")
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["path"] for line in r.stdout.splitlines()] == ["/v1/routes", "/v1/x"]

    last = invoke("audit", "--json", "--limit", "1")
    assert [json.loads(line)["path"] for line in last.stdout.splitlines()] == ["/v1/x"]
    assert invoke("audit", "--json", "--status", "4xx").stdout.count("\n") == 1
    now = dt.datetime.now(dt.UTC)
    yesterday, today = f"{now - dt.timedelta(days=1):%Y-%m-%d}", f"{now:%Y-%m-%d}"
    assert invoke("audit", "--json", "--since", yesterday, "--until", today).stdout.count("\n") == 3
    assert invoke("audit", "--json", "--since", (now + dt.timedelta(minutes=1)).isoformat()).stdout == ""

    table = invoke("audit", "--path", "/v1/routes/")
    assert table.exit_code == 0
    assert "/v1/routes/channel/forecast" in table.stdout and "bob" in table.stdout and "alice" not in table.stdout
    assert "horizon=7" in table.stdout

    bad = invoke("audit", "--since", "yesterday")
    assert bad.exit_code == 2 and "yesterday" in bad.output


def test_audit_verify_exits_1_on_a_broken_chain(var_dir):
    audit = audit_dir_with_records(var_dir)
    ok = invoke("audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert "every chain is intact" in ok.stderr

    (path,) = audit.glob("audit-*.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])
    broken = invoke("audit", "verify")
    assert broken.exit_code == 1
    assert "line 2 does not follow line 1" in broken.stdout
    assert invoke("audit", "verify", "--dir", str(var_dir / "none")).exit_code == 0
