"""Answering in JSON or, for analysts' tables, CSV (``Accept: text/csv``).

Whole answers are cached in one place only, in front of the app (``serving.fastpath``); handlers build their answer
every time they are called.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel
from starlette.types import Scope

from serving.audit import record_rows
from serving.models import ErrorOut

CSV = "text/csv"
JSON = "application/json"
GEOJSON = "application/geo+json"


def accepts_csv(scope: Scope) -> bool:
    """Whether the request asks for CSV: ``text/csv`` is among its media ranges with a quality above 0.

    Every ``Accept`` header counts, as if joined by commas (RFC 9110 §5.3), so a request with two of them is
    negotiated the same way wherever it is read: by the handlers and by the answer cache's key.
    """
    values = b",".join(v for k, v in scope.get("headers", ()) if k == b"accept")
    for media_range in values.decode("latin-1").split(","):
        media_type, *params = (part.strip() for part in media_range.split(";"))
        if media_type.lower() != CSV:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def wants_csv(request: Request) -> bool:
    return accepts_csv(request.scope)


def csv_bytes(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def table_responses(model: type[BaseModel], media_type: str = JSON) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for an endpoint that answers ``media_type`` (JSON or GeoJSON) or, on request, CSV."""
    content: dict[str, Any] = {CSV: {"schema": {"type": "string"}}}
    if media_type != JSON:
        content[media_type] = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    return {
        200: {
            "model": model,
            "content": content,
            "description": f"{media_type} by default; CSV (one row per table row) with `Accept: text/csv`.",
        }
    }


def send(request: Request, body: bytes, media_type: str, rows: int) -> Response:
    record_rows(request, rows)
    return Response(content=body, media_type=media_type)


def model_bytes(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Answers every token-guarded endpoint may give besides its own.
GUARDED: dict[int | str, dict[str, Any]] = {
    401: _error("Missing, malformed, expired or forged bearer token (WWW-Authenticate: Bearer)."),
    422: _error("A parameter is out of range or malformed; the detail says which."),
    400: _error("More than one Authorization header: send one."),
    429: _error("The token's rate limit (or, without a token, this address's) is exhausted; Retry-After says when."),
    503: _error("No release can be served (empty or corrupt store), or the audit log cannot be written."),
}
ROLE_GUARDED: dict[int | str, dict[str, Any]] = {
    **GUARDED,
    403: _error("The token's role is below the one this endpoint needs."),
}
