"""Answering in JSON or, for analysts' tables, CSV (``Accept: text/csv``); and caching answers per release."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from serving.audit import record_rows
from serving.models import ErrorOut
from serving.store import Release

CSV = "text/csv"
JSON = "application/json"
GEOJSON = "application/geo+json"
# Cached answers per release; a release is immutable, so an answer never goes stale, only out of memory.
MAX_CACHED = 4096


def wants_csv(request: Request) -> bool:
    return CSV in request.headers.get("accept", "")


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


def cached(release: Release, key: tuple, build: Callable[[], tuple[bytes, str, int]]) -> tuple[bytes, str, int]:
    """``build()`` → (body, media type, rows), memoised on the release for ``key``."""
    hit = release.responses.get(key)
    if hit is None:
        hit = build()
        if len(release.responses) >= MAX_CACHED:
            release.responses.clear()
        release.responses[key] = hit
    return hit


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
    429: _error("The token's rate limit is exhausted; Retry-After says when to try again."),
    503: _error("No release can be served (empty or corrupt store); the detail says why."),
}
ROLE_GUARDED: dict[int | str, dict[str, Any]] = {
    **GUARDED,
    403: _error("The token's role is below the one this endpoint needs."),
}
