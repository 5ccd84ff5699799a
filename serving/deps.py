"""What every router needs to guard and name things: the role dependencies, the route scope check, and the path
and query parameters several routers share. Routers import these from here, never from each other."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query

from geo.catalogue import Route, RouteNotFound
from serving.auth import Principal, require
from serving.models import ROUTE_EXAMPLE, ErrorOut
from serving.state import AppState

# The caller, once its token is valid, within its rate limit and of at least this role (serving.auth.require).
Analyst = Annotated[Principal, Depends(require("analyst"))]
Planner = Annotated[Principal, Depends(require("planner"))]
Admin = Annotated[Principal, Depends(require("admin"))]

RouteId = Annotated[str, Path(max_length=100, examples=[ROUTE_EXAMPLE], description="A route id from GET /v1/routes.")]
ReleaseId = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{8}-[0-9a-f]{12}$",
        description="A release id (see lineage); default: the release being served.",
        examples=["20250301-0123456789ab"],
    ),
]
NOT_FOUND = {404: {"model": ErrorOut, "description": "Unknown route, or one outside the token's scope."}}


def visible_route(state: AppState, principal: Principal, route_id: str) -> Route:
    """The route, if it exists and the token may see it; otherwise the same 404 either way."""
    if principal.sees(route_id):
        try:
            return state.catalogue.route(route_id)
        except RouteNotFound:
            pass
    raise HTTPException(status_code=404, detail=f"unknown route {route_id!r}; see GET /v1/routes")
