"""``routecast token`` and ``routecast audit``: issue and inspect API tokens, query and verify the audit log.

Registered in the ``routecast`` command by jobs/cli.py. Importing this module stays light: the auth and audit
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
    help="The API's audit log: query it (`routecast audit --since ...`) or check its hash chains (`audit verify`).",
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


def _when(text: str | None, option: str) -> dt.date | dt.datetime | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected YYYY-MM-DD or an ISO time", param_hint=option) from None


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


@audit_app.command("verify")
def audit_verify(directory: DirOpt = None) -> None:
    """Check the hash chains of every audit file; exit code 1 when a record was edited, removed or cut."""
    from serving.audit import verify

    audit_dir = directory or ServingSettings().audit_path
    problems = verify(audit_dir)
    files = sorted(audit_dir.glob("audit-*.jsonl")) if audit_dir.is_dir() else []
    for p in problems:
        typer.echo(p)
    if problems:
        raise _fail(f"{len(problems)} problem(s) in {audit_dir}", 1)
    err.print(f"[green]✓[/] {len(files)} audit file(s) in {audit_dir}: every chain is intact", highlight=False)
