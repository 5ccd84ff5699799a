"""``routecast token create|inspect`` and ``routecast audit [verify]``, through the ``routecast`` command."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from routecast.cli import app
from serving.audit import AuditLog
from serving.auth import create_token, decode_token
from serving.cli import parse_ttl
from serving.settings import ServingSettings

runner = CliRunner()


@pytest.fixture
def var_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("ROUTECAST_JWT_SECRET", raising=False)
    monkeypatch.delenv("ROUTECAST_JWT_KEY_FILE", raising=False)
    for name in ("AUDIT_DIR", "AUDIT_KEY", "AUDIT_KEY_FILE", "AUDIT_ANCHOR_FILE"):
        monkeypatch.delenv(f"ROUTECAST_{name}", raising=False)
    monkeypatch.setenv("ROUTECAST_VAR_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


def invoke(*args: str):
    # A fixed width: messages (with their tmp paths) must not depend on the terminal's.
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


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
    log = AuditLog.from_settings(ServingSettings(var_dir=var_dir))  # makes the audit key file
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
    assert "every chain is intact" in ok.stderr and "anchor" in ok.stderr

    (path,) = audit.glob("audit-*.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])
    broken = invoke("audit", "verify")
    assert broken.exit_code == 1
    assert f"{path.name}: line 2 does not follow line 1" in broken.stdout
    assert "problem(s) in" in broken.stderr


def test_audit_verify_against_an_anchor_copy_reports_truncation_an_edited_last_line_and_a_removed_file(
    var_dir, tmp_path
):
    audit = audit_dir_with_records(var_dir)
    (path,) = audit.glob("audit-*.jsonl")
    copy = tmp_path / "elsewhere" / "anchor.json"  # what an operator keeps out of the API's reach
    copy.parent.mkdir()
    shutil.copy(audit / "anchor.json", copy)
    original = path.read_bytes()

    path.write_bytes(b"".join(original.splitlines(keepends=True)[:2]))  # the last record removed
    (audit / "anchor.json").unlink()  # and the anchor next to it
    alone = invoke("audit", "verify")
    assert alone.exit_code == 1
    assert "no anchor file" in alone.stdout
    cut = invoke("audit", "verify", "--anchor", str(copy))
    assert cut.exit_code == 1
    assert cut.stdout == f"{path.name}: 2 lines where the anchor holds 3: lines were removed from its end\n"

    path.write_bytes(original.replace(b'"status":404', b'"status":200'))  # the last record edited
    edited = invoke("audit", "verify", "--anchor", str(copy))
    assert edited.exit_code == 1
    assert edited.stdout == f"{path.name}: line 3 is not the line anchored (the file was rewritten)\n"

    path.unlink()
    gone = invoke("audit", "verify", "--anchor", str(copy))
    assert gone.exit_code == 1
    assert gone.stdout == f"{path.name}: the file is missing (the anchor holds 3 lines of it)\n"


def test_audit_verify_needs_the_key_and_never_makes_one(var_dir, tmp_path):
    audit = audit_dir_with_records(var_dir)
    key_file = ServingSettings(var_dir=var_dir).audit_key_path
    assert invoke("audit", "verify").exit_code == 0
    assert invoke("audit", "verify", "--dir", str(var_dir / "none")).exit_code == 0  # nothing to check

    key_file.chmod(0o644)
    exposed = invoke("audit", "verify")
    assert exposed.exit_code == 2 and "group or others" in exposed.stderr
    key_file.unlink()
    missing = invoke("audit", "verify", "--dir", str(audit))
    assert missing.exit_code == 2 and "no audit key file" in missing.stderr
    assert not key_file.exists()
    bad_anchor = invoke("audit", "verify", "--anchor", str(tmp_path / "nowhere.json"))
    assert bad_anchor.exit_code == 2


def test_audit_verify_since_leaves_out_retired_files(var_dir, monkeypatch):
    from serving import audit

    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with monkeypatch.context() as m:
        m.setattr(audit.time, "time", lambda: yesterday.timestamp())  # the day the log files its records under
        old_dir = audit_dir_with_records(var_dir)
    (old,) = old_dir.glob(f"audit-{yesterday:%Y%m%d}-*.jsonl")
    audit_dir_with_records(var_dir)
    old.unlink()
    assert invoke("audit", "verify").exit_code == 1
    today = invoke("audit", "verify", "--since", f"{yesterday + dt.timedelta(days=1):%Y-%m-%d}")
    assert today.exit_code == 0, today.output
    assert "1 audit file(s)" in today.stderr
    bad = invoke("audit", "verify", "--since", "yesterday")
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output


def test_token_revoke_records_the_revocation_and_audits_it(var_dir):
    from serving.audit import read_records
    from serving.auth import read_revocations

    token = invoke("token", "create", "--role", "analyst", "--subject", "eve").stdout.strip()
    settings = ServingSettings()
    jti = decode_token(settings, token).token_id
    r = invoke("token", "revoke", jti, "--by", "admin-ann", "--reason", "laptop stolen")
    assert r.exit_code == 0, r.output
    assert read_revocations(settings.revoked_file)[jti]["reason"] == "laptop stolen"
    [record] = [x for x in read_records(settings.audit_path) if x["path"] == "routecast token revoke"]
    assert (record["subject"], record["params"]["token_id"]) == ("admin-ann", [jti])
    assert invoke("audit", "verify").exit_code == 0
    bad = invoke("token", "revoke", "not a token id", "--by", "admin-ann")
    assert bad.exit_code == 2 and "is not a token id" in bad.output
