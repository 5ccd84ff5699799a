"""Public response models of the API (separate from the store's tables)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

Level = Literal["route", "segment"]


class SegmentOut(BaseModel):
    id: str
    name: str
    order: int
    mode: str


class CrossingPointOut(BaseModel):
    id: str
    name: str
    role: str
    segment_id: str
    lat: float
    lon: float


class RouteOut(BaseModel):
    id: str = Field(examples=["central_mediterranean"])
    name: str
    segments: list[SegmentOut]
    crossing_points: list[CrossingPointOut]
    has_forecast: bool = Field(description="Whether the current release has density forecasts for this route.")
    sources: list[str] = Field(
        description="Sources with forecasts for this route: density, and official counts such as frontex."
    )


class RoutesOut(BaseModel):
    release_id: str | None
    routes: list[RouteOut]


class ForecastPoint(BaseModel):
    ds: dt.date
    yhat: float
    lo80: float
    hi80: float
    lo95: float
    hi95: float


class SeriesForecast(BaseModel):
    series_id: str = Field(examples=["route:central_mediterranean"])
    level: Level
    source: str
    freq: Literal["D", "W", "M"] = Field(description="D: daily, W: weekly (Mondays), M: monthly (1st).")
    route_id: str
    segment_id: str | None
    model: str = Field(description="The model chosen for this series on the holdout.")
    run_id: str = Field(description="MLflow run that produced the forecast.")
    model_version: str = Field(description="Registered model version of that run.")
    release_id: str
    forecast: list[ForecastPoint]


class RouteForecastOut(BaseModel):
    route_id: str
    level: Level
    source: str
    horizon: int = Field(description="Periods ahead, in the series' frequency.")
    release_id: str
    as_of: str | None = Field(description="Last day of data the forecasts were made from.")
    series: list[SeriesForecast]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    release_id: str | None
    detail: str | None = None
