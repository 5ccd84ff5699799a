"""``routecast token`` and ``routecast audit``: issue and inspect API tokens, query and verify the audit log.

Registered in the ``routecast`` command by routecast/cli.py. Importing this module stays light: the auth and audit
modules (FastAPI, PyJWT) are imported by the commands that use them.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from serving.settings import ServingSettings

err = Console(stderr=True, soft_wrap=True)

token_app = typer.Typer(help="API bearer tokens (signed with the key the API uses).", no_args_is_help=True)
audit_app = typer.Typer(
    help="The API's audit log: query it (`routecast audit --since ...`) or check it (`audit verify`).",
    invoke_without_command=True,
)


class RoleChoice(StrEnum):
    """serving.auth.ROLES, each including the previous."""

    analyst = "analyst"
    planner = "planner"
    admin = "admin"


_TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_ttl(text: str) -> dt.timedelta:
    """``30m``, ``8h``, ``7d``, ``2w`` (also ``s``, and decimals like ``1.5h``) → timedelta."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not m:
        raise typer.BadParameter(f"{text!r}: expected a number and a unit, e.g. 30m, 8h, 7d")
    return dt.timedelta(**{_TTL_UNITS[m.group(2)]: float(m.group(1))})


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(code=code)


@token_app.command("create")
def token_create(
    role: Annotated[RoleChoice, typer.Option(help="analyst < planner < admin (each includes the previous).")],
    subject: Annotated[str, typer.Option(help="Who the token is for (recorded in the audit log).")],
    routes: Annotated[str, typer.Option(help="Comma-separated route ids the token may see, or '*' for all.")] = "*",
    ttl: Annotated[str, typer.Option(help="Lifetime: 30m, 8h, 7d ... (at most token_max_ttl_hours).")] = "8h",
) -> None:
    """Issue a token: printed alone on stdout (TOKEN=$(routecast token create ...)), a summary on stderr."""
    from geo.catalogue import load_catalogue
    from serving.auth import SigningKeyError, create_token

    settings = ServingSettings()
    lifetime = parse_ttl(ttl)
    ids = [r.strip() for r in routes.split(",") if r.strip()]
    if not ids:
        raise _fail("--routes is empty; pass '*' for all routes", 2)
    scope: list[str] | None = None
    if "*" not in ids:
        known = load_catalogue(settings.routes_dir).route_ids()
        unknown = [r for r in ids if r not in known]
        if unknown:
            raise _fail(f"unknown route(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}", 2)
        scope = ids
    try:
        token = create_token(settings, subject=subject, role=role.value, routes=scope, ttl=lifetime)
    except (ValueError, SigningKeyError) as exc:
        raise _fail(str(exc), 2) from None
    typer.echo(token)
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + lifetime
    err.print(
        f"token for [bold]{subject}[/]: role {role.value}, routes {', '.join(scope) if scope else 'all'}, "
        f"expires {expires:%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )


@token_app.command("inspect")
def token_inspect(token: Annotated[str, typer.Argument(help="The token (its signature is verified).")]) -> None:
    """Print a token's claims as JSON, once its signature, issuer, audience and expiry are verified."""
    from serving.auth import AuthError, SigningKeyError, decode_claims, decode_token

    settings = ServingSettings()
    try:
        decode_token(settings, token)
        claims = decode_claims(settings, token)
    except (AuthError, SigningKeyError) as exc:
        raise _fail(str(exc), 1) from None
    for claim in ("iat", "exp"):
        claims[f"{claim}_utc"] = dt.datetime.fromtimestamp(claims[claim], dt.UTC).isoformat()
    typer.echo(json.dumps(claims, indent=2))


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id: its 'jti' claim (`routecast token inspect`).")],
    by: Annotated[str, typer.Option(help="Who revokes it (recorded in the revocation file and the audit log).")],
    reason: Annotated[str, typer.Option(help="Why (recorded with it).")] = "",
) -> None:
    """Revoke a token: every API worker refuses it (401) within ROUTECAST_REVOCATION_CHECK_S seconds. Recorded in
    the revocation file and in the audit log."""
    import uuid

    from serving.audit import AuditKeyError, AuditLog
    from serving.auth import revoke_token

    settings = ServingSettings()
    try:
        log = AuditLog.from_settings(settings)
    except AuditKeyError as exc:
        raise _fail(str(exc), 2) from None
    try:
        entry = revoke_token(settings, token_id, by=by, reason=reason)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    try:
        log.append(
            {
                "ts": entry["revoked_at"],
                "request_id": uuid.uuid4().hex,
                "subject": by,
                "role": None,
                "token_id": None,
                "method": "CLI",
                "path": "routecast token revoke",
                "endpoint": None,
                "params": {"token_id": [entry["jti"]], "reason": [reason]},
                "status": 200,
                "rows": 1,
                "ms": 0,
                "client": None,
            }
        )
    finally:
        log.close()
    err.print(
        f"revoked token {entry['jti']} ({settings.revoked_file}); the API refuses it within "
        f"{settings.revocation_check_s:g} s",
        highlight=False,
    )


def _when(text: str | None, option: str) -> dt.date | dt.datetime | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected YYYY-MM-DD or an ISO time", param_hint=option) from None


def _day(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected a day, YYYY-MM-DD", param_hint=option) from None


DirOpt = Annotated[Path | None, typer.Option("--dir", help="Audit directory (default: settings.audit_path).")]


@audit_app.callback()
def audit_query(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="From this day or time (UTC), e.g. 2025-03-01.")] = None,
    until: Annotated[str | None, typer.Option(help="To this day (inclusive) or time (UTC).")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this token subject.")] = None,
    path: Annotated[str | None, typer.Option(help="Only request paths starting with this, e.g. /v1/routes.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status (404) or class (4xx).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show the last N matching records.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    directory: DirOpt = None,
) -> None:
    """Who asked the API for what: the last matching audit records, oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    from serving.audit import read_records

    audit_dir = directory or ServingSettings().audit_path
    if status is not None and not re.fullmatch(r"\d{3}|[1-5]xx", status.lower()):
        raise typer.BadParameter(f"{status!r}: expected a code like 404 or a class like 4xx", param_hint="--status")
    records = collections.deque(
        read_records(
            audit_dir,
            since=_when(since, "--since"),
            until=_when(until, "--until"),
            subject=subject,
            path_prefix=path,
            status=status,
        ),
        maxlen=limit,
    )
    if as_json:
        for r in records:
            typer.echo(json.dumps(r, ensure_ascii=False))
        return
    _print_table(records, audit_dir)


def _print_table(records: collections.deque[dict[str, Any]], audit_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=f"audit log {audit_dir} ({len(records)} records)")
    for column in ("time (UTC)", "subject", "role", "method", "path", "params", "status", "rows", "ms", "request"):
        table.add_column(column, justify="right" if column in ("status", "rows", "ms") else "left")
    for r in records:
        params = r.get("params") or {}
        table.add_row(
            str(r.get("ts", ""))[:19].replace("T", " "),
            str(r.get("subject") or "–"),
            str(r.get("role") or "–"),
            str(r.get("method", "")),
            str(r.get("path", "")),
            " ".join(f"{k}={','.join(map(str, v))}" for k, v in params.items()) if isinstance(params, dict) else "",
            str(r.get("status", "")),
            "–" if r.get("rows") is None else str(r["rows"]),
            f"{r['ms']:.1f}" if isinstance(r.get("ms"), int | float) else "",
            str(r.get("request_id", ""))[:8],
        )
    out = Console()
    # Piped (a file, a log): do not squeeze paths and parameters into 80 columns.
    (out if out.is_terminal else Console(width=220)).print(table)


AnchorOpt = Annotated[
    Path | None,
    typer.Option(
        "--anchor",
        exists=True,
        dir_okay=False,
        help="Anchor file to check against, e.g. a copy kept elsewhere (default: the API's anchor file, or the "
        "one in --dir).",
    ),
]


@audit_app.command("verify")
def audit_verify(
    directory: DirOpt = None,
    anchor: AnchorOpt = None,
    since: Annotated[
        str | None, typer.Option(help="Only the files of this day (YYYY-MM-DD) and later: older ones were retired.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only the files of this day and earlier, e.g. an archive.")] = None,
) -> None:
    """Check every audit file's HMAC chain with the audit key, and the files against the anchor (none removed, none
    cut at its end, no anchored line rewritten); exit code 1 when a problem is found, 2 when the key is unusable."""
    from serving.audit import ANCHOR_NAME, AuditKeyError, audit_key, verify_log

    days = [_day(text, option) for text, option in ((since, "--since"), (until, "--until"))]
    settings = ServingSettings()
    audit_dir = directory or settings.audit_path
    anchor_file = anchor or (audit_dir / ANCHOR_NAME if directory is not None else settings.audit_anchor_path)
    try:
        key = audit_key(settings, create=False)  # a new key would only make every old line look forged
    except AuditKeyError as exc:
        raise _fail(str(exc), 2) from None
    result = verify_log(audit_dir, key, anchor_file, since=days[0], until=days[1])
    for p in result.problems:
        typer.echo(p)
    if result.problems:
        raise _fail(f"{len(result.problems)} problem(s) in {audit_dir}", 1)
    if result.unanchored:
        err.print(
            f"note: {len(result.unanchored)} file(s) written after the anchor was last updated, their last lines "
            f"unchecked: {', '.join(result.unanchored)}",
            highlight=False,
        )
    against = f"; anchor {anchor_file} of {result.anchor.updated}" if result.anchor else ""
    err.print(
        f"[green]✓[/] {len(result.files)} audit file(s) in {audit_dir}: every chain is intact{against}",
        highlight=False,
    )


scenario_app = typer.Typer(help="What-if scenarios on the served release (docs/scenarios.md).", no_args_is_help=True)


def _spec_body(path: Path) -> bytes:
    """The scenario file as the JSON body the API takes: a .toml file is read and written as JSON (dates as
    YYYY-MM-DD), anything else is sent as it is."""
    import tomllib

    if not path.is_file():
        raise _fail(f"{path}: no such file", 2)
    if path.suffix.lower() != ".toml":
        return path.read_bytes()
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"{path}: not valid TOML: {exc}", 2) from None
    return json.dumps(data, default=lambda v: v.isoformat() if isinstance(v, dt.date) else str(v)).encode()


@scenario_app.command("run")
def scenario_run(
    file: Annotated[Path, typer.Argument(help="The scenario: TOML or JSON (format: forecasting/scenario/spec.py).")],
    release: Annotated[str | None, typer.Option(help="Release id (default: the current one).")] = None,
    draws: Annotated[int | None, typer.Option(help="Monte Carlo draws (default: ROUTECAST_SCENARIO_DRAWS).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the draws (default: the scenario's, else 0).")] = None,
    by: Annotated[
        str | None, typer.Option(help="Who asks (kept with the scenario and audited; default: cli:$USER).")
    ] = None,
    parameters: Annotated[
        Path | None,
        typer.Option(
            help="Behaviour parameters (JSON, from `routecast scenario estimate`; default: "
            "ROUTECAST_SCENARIO_PARAMETERS, else the engine's defaults)."
        ),
    ] = None,
) -> None:
    """Run a scenario on a release's people forecasts and route network, print its summary and keep it (like
    POST /v1/scenarios, readable with GET /v1/scenarios/{id}); the summary is people."""
    import getpass
    import time
    import uuid

    from rich.table import Table

    from forecasting.scenario import ScenarioError
    from serving.audit import AuditKeyError, AuditLog
    from serving.scenarios import (
        BadParameters,
        NoScenarioNetwork,
        ScenarioStore,
        configured_parameters,
        new_scenario_id,
        run_on_release,
        scenario_meta,
    )
    from serving.store import StoreError, load_release

    settings = ServingSettings()
    try:
        behaviour = configured_parameters(parameters or settings.scenario_parameters)
    except BadParameters as exc:
        raise _fail(str(exc), 2) from None
    n_draws = draws or settings.scenario_draws
    if n_draws < 1:
        raise _fail(f"--draws must be at least 1, got {n_draws}", 2)
    subject = by or f"cli:{getpass.getuser()}"
    body = _spec_body(file)
    try:
        chosen = load_release(settings.store_dir, release, with_previous=False)
    except StoreError as exc:
        raise _fail(str(exc), 1) from None
    began = time.perf_counter()
    try:
        run = run_on_release(body, chosen, None, n_draws=n_draws, seed=seed, parameters=behaviour)
    except ScenarioError as exc:
        raise _fail(f"{file}: {exc}", 2) from None
    except (NoScenarioNetwork, StoreError) as exc:
        raise _fail(str(exc), 1) from None
    seconds = time.perf_counter() - began
    try:
        log = AuditLog.from_settings(settings)
    except AuditKeyError as exc:
        raise _fail(f"the scenario ran but cannot be audited, so it is not kept: {exc}", 2) from None
    scenario_id = new_scenario_id()
    now = dt.datetime.now(dt.UTC)
    meta = scenario_meta(scenario_id, run, chosen, subject, now)
    try:
        folder = ScenarioStore(settings.scenarios_path).save(scenario_id, body, meta, run.result)
        log.append(
            {
                "ts": now.isoformat(timespec="seconds"),
                "request_id": uuid.uuid4().hex,
                "subject": subject,
                "role": None,
                "token_id": None,
                "method": "CLI",
                "path": "routecast scenario run",
                "endpoint": None,
                "params": {"scenario_id": [scenario_id], "file": [str(file)]},
                "status": 201,
                "rows": len(run.result.summary),
                "ms": round(seconds * 1000),
                "client": None,
            }
        )
    finally:
        log.close()
    _print_summary(run.result.summary, Table)
    for note in run.result.notes:
        err.print(f"[yellow]![/] {note}", highlight=False)
    err.print(
        f"scenario {scenario_id} on release {chosen.release_id}: {n_draws} draws in {seconds:.1f} s; kept in {folder}",
        highlight=False,
    )


def _print_summary(summary: Any, table_type: Any) -> None:
    """The summary as a table: per row the baseline, the scenario and the difference (median [80 % interval])."""
    table = table_type(title="people over the scenario's window (median [80 % interval])")
    for column in ("kind", "where", "measure", "baseline", "scenario", "difference"):
        table.add_column(column, justify="right" if column in ("baseline", "scenario", "difference") else "left")

    def cell(row: Any, part: str) -> str:
        mid, lo, hi = (getattr(row, f"{part}_{v}") for v in ("yhat", "lo80", "hi80"))
        return f"{mid:,.0f} [{lo:,.0f}, {hi:,.0f}]"

    for row in summary.itertuples(index=False):
        where = row.route_id if row.point_id is None else f"{row.route_id}/{row.point_id}"
        table.add_row(
            row.kind, where, row.measure, cell(row, "baseline"), cell(row, "scenario"), cell(row, "difference")
        )
    Console(soft_wrap=False, width=200).print(table)
