"""Reading the published store: ``store/CURRENT`` → ``store/releases/<id>/`` with ``manifest.json``,
``forecasts.parquet`` and, when the release has them, ``history.parquet`` (observed values of the published
series), ``cells.parquet`` (suppressed H3 cell density of the last 28 days, with each cell's share of its segment)
and ``totals.parquet`` (forecast totals of each series' next periods, with the quantiles of each total).

This is the only way the API reads data. It refuses any release whose manifest does not declare that it was made
from suppressed aggregates at or above the privacy floor, and any cell table holding a count at or below the
release's own threshold: serving cannot read unsuppressed data even from a store someone wrote by hand.
Anything unreadable (missing file, bad JSON, corrupt Parquet, wrong columns) becomes a :class:`StoreError` whose
message says what and where, so the API can stay up and say why it is not ready.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from contracts import tables
from contracts.privacy import MIN_DEVICES_FLOOR
from contracts.published import (
    CELLS,
    CURRENT,
    FORECAST_VALUES,
    FORECASTS,
    HISTORY,
    MANIFEST,
    RELEASES,
    TOTAL_QUANTILES,
    TOTALS,
)
from contracts.series import DENSITY_SOURCE, PEOPLE_SOURCE, series_id
from geo.cells import cell_to_int, int_to_cell
from geo.points import cells_to_parents
from serving.models import PeopleRouteParams, Unit

T = TypeVar("T")

# A release's files and their columns are declared in contracts/ (what publish writes, what this reads).
FORECAST_COLUMNS = tables.PUBLISHED_FORECAST.columns
HISTORY_COLUMNS = tables.PUBLISHED_HISTORY.columns
CELL_COLUMNS = tables.PUBLISHED_CELLS.columns
TOTAL_COLUMNS = tables.PUBLISHED_TOTALS.columns
BOUNDS = FORECAST_VALUES


class StoreError(RuntimeError):
    """The store is missing, incomplete or not publishable."""


class NoRelease(StoreError):
    """Nothing has been published yet."""


class UnsuppressedRelease(StoreError):
    """A release that does not prove it was suppressed; never served."""


class UnknownRelease(StoreError):
    """A release id that is not in the store."""


# Sources whose figures count people: the measurement model's estimate and every official count (the sources of
# jobs.stages.counts: detections and arrivals). Any other source is a phone signal (density, flows) and counts
# devices: a source not named here is never presented as people.
PEOPLE_SOURCES = frozenset({PEOPLE_SOURCE, "frontex", "uk-channel", "iom-dtm", "generic", "landings"})


def unit_of(source: str) -> Unit:
    """What the figures of a series of ``source`` count: ``people`` or ``devices`` (phones, a diagnostic)."""
    return "people" if source in PEOPLE_SOURCES else "devices"


class PeopleModel(BaseModel):
    """The manifest's ``people_model``: which measurement model made the release's people series, fitted on which
    official figures, with each route's parameters."""

    model_id: str
    unit: Literal["people"]
    # What the model was fitted on -> the days those figures covered, "YYYY-MM-DD..YYYY-MM-DD" (null: none): keyed by
    # granularity (monthly, daily) as the people stage writes it, or by official source.
    fitted_on: dict[str, str | None]
    routes: dict[str, PeopleRouteParams]


def read_people_model(manifest: dict, where: Path) -> PeopleModel | None:
    """The manifest's ``people_model`` (None when absent, as in releases before the people series); a block that
    does not say which model and parameters made the people figures is refused."""
    block = manifest.get("people_model")
    if block is None:
        return None
    try:
        return PeopleModel.model_validate(block)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise StoreError(f"{where}: people_model is malformed ({problems}); refusing to serve it") from None


@dataclass(frozen=True, eq=False)
class Series:
    """One published series, ready to slice: forecast bounds and history as plain lists, in date order."""

    series_id: str
    level: str
    route_id: str | None
    segment_id: str | None
    freq: str
    source: str
    model: str
    run_id: str
    model_version: str
    release_id: str
    ds: list[dt.date]
    bounds: dict[str, list[float]]  # yhat, lo80, hi80, lo95, hi95
    history_ds: list[dt.date]
    history_y: list[float]


@dataclass(frozen=True)
class Total:
    """One published forecast total: the sum of a series' ``window`` periods from ``start`` to ``end`` inclusive,
    with the intervals and quantiles (at TOTAL_QUANTILES) of the total itself."""

    window: int
    start: dt.date
    end: dt.date
    yhat: float
    lo80: float
    hi80: float
    lo95: float
    hi95: float
    quantiles: tuple[float, ...]
    n_scores: int
    model: str


@dataclass(frozen=True, eq=False)
class SeriesTotals:
    """The published totals of one series, shortest window first."""

    series_id: str
    level: str
    route_id: str | None
    segment_id: str | None
    freq: str
    source: str
    release_id: str
    totals: list[Total]


@dataclass(frozen=True, eq=False)
class Release:
    release_id: str
    manifest: dict
    forecasts: pd.DataFrame  # FORECAST_COLUMNS, ds as datetime.date
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(HISTORY_COLUMNS)))
    cells: pd.DataFrame | None = None  # CELL_COLUMNS; None when the release was published without cells
    # TOTAL_COLUMNS, start/end as datetime.date; empty when the release was published without totals.
    totals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TOTAL_COLUMNS)))
    # What the previous release forecast for this release's as_of day (series_id, release_id, yhat, lo95, hi95):
    # the latest observation is checked against it for alerts. Empty when there is no earlier release.
    previous: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["series_id", "release_id", "yhat", "lo95", "hi95"])
    )
    # Tables derived from the release (e.g. its alerts), computed once: a release never changes, so neither do they.
    # Not answers: those are cached, per caller's role and scope, in front of the app (serving.fastpath).
    _derived: dict[Any, Any] = field(default_factory=dict, repr=False)

    def derived(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()`` memoised on this release under ``key`` (a few keys per release: settings, not requests)."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    @cached_property
    def people_model(self) -> PeopleModel | None:
        """Which measurement model made the people series (checked when the release was loaded); None if absent."""
        return read_people_model(self.manifest, Path(self.release_id) / MANIFEST)

    @property
    def as_of(self) -> dt.date | None:
        value = self.manifest.get("as_of")
        return dt.date.fromisoformat(value) if value else None

    def horizon(self, source: str) -> int:
        """Periods ahead that every series of ``source`` covers (0 when the source is absent)."""
        lengths = [len(s.ds) for s in self.series.values() if s.source == source]
        return min(lengths) if lengths else 0

    def sources_by_route(self) -> dict[str, list[str]]:
        """Route id → the sources with forecasts for it, sorted."""
        return self._sources_by_route

    @cached_property
    def _sources_by_route(self) -> dict[str, list[str]]:
        pairs = self.forecasts[["route_id", "source"]].dropna().drop_duplicates()
        return {r: sorted(g["source"]) for r, g in pairs.groupby("route_id")}

    @cached_property
    def series(self) -> dict[str, Series]:
        """Every published series by id."""
        history = {
            sid: (list(g["ds"]), [float(v) for v in g["y"]])
            for sid, g in self.history.sort_values(["series_id", "ds"]).groupby("series_id", sort=False)
        }
        out = {}
        for sid, g in self.forecasts.sort_values(["series_id", "ds"]).groupby("series_id", sort=False):
            first = g.iloc[0]
            hist_ds, hist_y = history.get(sid, ([], []))
            out[str(sid)] = Series(
                series_id=str(sid),
                level=str(first["level"]),
                route_id=_str_or_none(first["route_id"]),
                segment_id=_str_or_none(first["segment_id"]),
                freq=str(first["freq"]),
                source=str(first["source"]),
                model=str(first["model"]),
                run_id=str(first["run_id"]),
                model_version=str(first["model_version"]),
                release_id=str(first["release_id"]),
                ds=list(g["ds"]),
                bounds={b: [float(v) for v in g[b]] for b in BOUNDS},
                history_ds=hist_ds,
                history_y=hist_y,
            )
        return out

    @cached_property
    def by_route(self) -> dict[tuple[str, str, str], list[Series]]:
        """(route_id, level, source) → its series, sorted by id."""
        out: dict[tuple[str, str, str], list[Series]] = {}
        for s in sorted(self.series.values(), key=lambda s: s.series_id):
            if s.route_id is not None:
                out.setdefault((s.route_id, s.level, s.source), []).append(s)
        return out

    def point_of(self, source: str, freq: str) -> str:
        """What the forecasts of ``source`` at ``freq`` give as yhat: "mean" or "median" (the manifest's ``points``,
        written by the forecast procedure that made them; a release without it published means)."""
        return str(self.manifest.get("points", {}).get(f"{source}/{freq}", "mean"))

    def default_source(self, route_id: str, level: str, segment_id: str | None = None) -> str:
        """The source a route's forecast answers in unless asked for another: people when the release holds people
        series of that route at that level (of that segment, if given), else density (devices)."""
        held = self.by_route.get((route_id, level, PEOPLE_SOURCE), [])
        if any(segment_id is None or s.segment_id == segment_id for s in held):
            return PEOPLE_SOURCE
        return DENSITY_SOURCE

    @cached_property
    def totals_by_series(self) -> dict[str, SeriesTotals]:
        """series_id → its published totals, shortest window first."""
        out: dict[str, SeriesTotals] = {}
        for sid, g in self.totals.sort_values(["series_id", "window"]).groupby("series_id", sort=True):
            first = g.iloc[0]
            out[str(sid)] = SeriesTotals(
                series_id=str(sid),
                level=str(first["level"]),
                route_id=_str_or_none(first["route_id"]),
                segment_id=_str_or_none(first["segment_id"]),
                freq=str(first["freq"]),
                source=str(first["source"]),
                release_id=str(first["release_id"]),
                totals=[
                    Total(
                        window=int(r.window),
                        start=r.start,
                        end=r.end,
                        **{b: float(getattr(r, b)) for b in BOUNDS},
                        quantiles=tuple(float(v) for v in r.quantiles),
                        n_scores=int(r.n_scores),
                        model=str(r.model),
                    )
                    for r in g.itertuples(index=False)
                ],
            )
        return out

    @cached_property
    def totals_by_route(self) -> dict[tuple[str, str, str], list[SeriesTotals]]:
        """(route_id, level, source) → the totals of its series, sorted by series id."""
        out: dict[tuple[str, str, str], list[SeriesTotals]] = {}
        for found in self.totals_by_series.values():
            if found.route_id is None:
                continue  # a total of no route (the whole system) is not served by route
            out.setdefault((found.route_id, found.level, found.source), []).append(found)
        return out

    def series_total(self, sid: str, window: int, start: dt.date) -> Total | None:
        """The published total of series ``sid`` over ``window`` periods from ``start``, if there is one."""
        found = self.totals_by_series.get(sid)
        return next((t for t in found.totals if t.window == window and t.start == start), None) if found else None

    def route_totals(self, route_id: str, source: str, segment_id: str | None = None) -> SeriesTotals | None:
        """The totals of a route's route-level series of ``source`` or, given ``segment_id``, of that segment's."""
        level = "route" if segment_id is None else "segment"
        for found in self.totals_by_route.get((route_id, level, source), []):
            if found.segment_id == segment_id:
                return found
        return None

    def point_series(self, route_id: str, crossing_point_id: str, source: str = PEOPLE_SOURCE) -> Series | None:
        """The series of what crosses at one crossing point (``people/point:<route>/<point>``), if published."""
        found = self.series.get(series_id("point", route_id, source=source, crossing_point=crossing_point_id))
        return found if found is not None and found.route_id == route_id else None

    def segment_series(self, route_id: str, segment_id: str, source: str = "density") -> Series | None:
        """The segment-level series of ``source`` for one segment, if published."""
        for s in self.by_route.get((route_id, "segment", source), []):
            if s.segment_id == segment_id:
                return s
        return None

    @property
    def cell_resolutions(self) -> list[int]:
        return [] if self.cells is None else sorted(int(r) for r in self.cells["res"].unique())

    @cached_property
    def cell_days(self) -> dict[str, tuple[dt.date, dt.date]]:
        """Route id → (first, last) day the hexes endpoint answers for: the first observed cell day, and as_of plus
        the density horizon (the forecast spread over cells). Routes without published cells are absent."""
        as_of = self.as_of
        if self.cells is None or self.cells.empty or as_of is None:
            return {}
        last = as_of + dt.timedelta(days=self.horizon("density"))
        return {str(r): (min(g["date"]), last) for r, g in self.cells.groupby("route_id")}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def current_release_id(store_dir: Path) -> str:
    pointer = store_dir / CURRENT
    if not pointer.is_file():
        raise NoRelease(f"no release published in {store_dir} (no CURRENT); run `routecast nightly` first")
    release_id = pointer.read_text().strip()
    _check_id(release_id, str(pointer))
    return release_id


def _check_id(release_id: str, where: str, error: type[StoreError] = StoreError) -> None:
    if not release_id or "/" in release_id or "\\" in release_id or release_id.startswith("."):
        raise error(f"{where} holds an invalid release id {release_id!r}")


def check_privacy(manifest: dict, where: Path) -> int:
    """Refuse a manifest that does not declare suppression at or above the floor; return its threshold."""
    privacy = manifest.get("privacy") or {}
    k = privacy.get("min_devices")
    if privacy.get("suppressed") is not True or not isinstance(k, int) or k < MIN_DEVICES_FLOOR:
        raise UnsuppressedRelease(
            f"{where}: release does not declare suppression with min_devices >= {MIN_DEVICES_FLOOR} "
            f"(privacy={privacy!r}); refusing to serve it"
        )
    return k


def check_cells(cells: pd.DataFrame, min_devices: int, where: Path) -> None:
    """Refuse a cell table holding any count at or below the release's suppression threshold, or one from which
    such a count can be recovered by subtraction (``differencing_remainders``)."""
    low = cells["devices"].isna() | (cells["devices"] <= min_devices)
    if low.any():
        raise UnsuppressedRelease(
            f"{where}: {int(low.sum())} cell rows have {min_devices} or fewer devices (or none); refusing to serve"
        )
    exposed = differencing_remainders(cells, min_devices)
    if not exposed.empty:
        first = exposed.iloc[0]
        raise UnsuppressedRelease(
            f"{where}: {len(exposed)} parent cells minus their published children leave 1..{min_devices} devices "
            f"(e.g. cell {first['cell']} at res {first['res']} on {first['date']} vs res {first['child_res']}: "
            f"{first['remainder']}); refusing to serve"
        )


def differencing_remainders(cells: pd.DataFrame, min_devices: int) -> pd.DataFrame:
    """The (cell, res, date, child_res, remainder) of every published parent whose devices minus the sum of its
    published descendants at a finer published resolution is between 1 and ``min_devices``: a suppressed count
    anyone could recover by subtraction. Empty for a table made with complementary suppression.

    Distinct devices are sub-additive (a parent's are at most the sum of its children's), so a remainder of 0 or
    less reveals nothing; one above the threshold reveals no count that was suppressed.
    """
    unique = cells.drop_duplicates(["cell", "res", "date"])[["cell", "res", "date", "devices"]]
    unique = unique.assign(cell=np.array([cell_to_int(c) for c in unique["cell"]], dtype=np.int64))
    resolutions = sorted(int(r) for r in unique["res"].unique())
    found = []
    for i, parent_res in enumerate(resolutions):
        parents = unique[unique["res"] == parent_res]
        for child_res in resolutions[i + 1 :]:
            children = unique[unique["res"] == child_res]
            summed = (
                children.assign(cell=cells_to_parents(children["cell"].to_numpy(np.int64), parent_res))
                .groupby(["cell", "date"], as_index=False)["devices"]
                .sum()
            )
            joined = parents.merge(summed, on=["cell", "date"], how="left", suffixes=("", "_children"))
            remainder = joined["devices"] - joined["devices_children"].fillna(0)
            bad = joined[(remainder >= 1) & (remainder <= min_devices)]
            if not bad.empty:
                found.append(bad.assign(child_res=child_res, remainder=remainder[bad.index].astype("int64")))
    columns = ["cell", "res", "date", "child_res", "remainder"]
    if not found:
        return pd.DataFrame(columns=columns)
    out = pd.concat(found)[columns].reset_index(drop=True)
    return out.assign(cell=[int_to_cell(int(c)) for c in out["cell"]])


def check_totals(totals: pd.DataFrame, where: Path) -> None:
    """Refuse a totals table whose quantiles could not be read (not one per TOTAL_QUANTILES, not finite, or
    decreasing) or whose bounds are not nested: publish refuses them, so such a file was not written by it."""
    for row in totals[["series_id", "window", *BOUNDS, "quantiles"]].itertuples(index=False):
        values = np.asarray(row.quantiles if row.quantiles is not None else [], dtype="float64")
        bounds = [row.lo95, row.lo80, row.yhat, row.hi80, row.hi95]
        readable = len(values) == len(TOTAL_QUANTILES) and np.isfinite(values).all() and (np.diff(values) >= 0).all()
        nested = all(a <= b for a, b in zip(bounds, bounds[1:], strict=False))
        if not (readable and nested):
            raise StoreError(
                f"{where}: the total of {row.series_id} over {row.window} periods has "
                f"{'bounds that are not nested' if readable else 'quantiles that cannot be read'}; refusing to serve"
            )


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise StoreError(f"release {folder.name}: {path} missing")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"release {folder.name}: {path} is unreadable: {exc}") from None
    if not isinstance(manifest, dict):
        raise StoreError(f"release {folder.name}: {path} is not a JSON object")
    return manifest


def _read_table(path: Path, columns: tuple[str, ...], release_id: str) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"release {release_id}: {path.name} is unreadable: {exc}") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise StoreError(f"release {release_id}: {path.name} lacks columns {missing}")
    return table.select(list(columns)).to_pandas()


def load_release(store_dir: Path, release_id: str | None = None, *, with_previous: bool = True) -> Release:
    """Load a release (the current one by default), checking its manifest, privacy and columns.

    ``with_previous`` also reads what the latest earlier release forecast for this release's as_of day.
    """
    if release_id is None:
        release_id = current_release_id(store_dir)
    _check_id(release_id, "the request", UnknownRelease)
    folder = store_dir / RELEASES / release_id
    if not folder.is_dir():
        raise UnknownRelease(f"release {release_id!r} is not in the store")
    manifest = read_manifest(folder)
    min_devices = check_privacy(manifest, folder / MANIFEST)
    read_people_model(manifest, folder / MANIFEST)
    forecasts = _read_table(folder / FORECASTS, FORECAST_COLUMNS, release_id)
    if forecasts.empty:
        raise StoreError(f"release {release_id}: forecasts.parquet has no rows")
    history_path = folder / HISTORY
    history = (
        _read_table(history_path, HISTORY_COLUMNS, release_id)
        if history_path.is_file()
        else pd.DataFrame(columns=list(HISTORY_COLUMNS))
    )
    cells_path = folder / CELLS
    cells = None
    if cells_path.is_file():
        cells = _read_table(cells_path, CELL_COLUMNS, release_id)
        check_cells(cells, min_devices, cells_path)
    totals_path = folder / TOTALS
    totals = pd.DataFrame(columns=list(TOTAL_COLUMNS))
    if totals_path.is_file():  # releases published before totals have none: an empty table, not an error
        totals = _read_table(totals_path, TOTAL_COLUMNS, release_id)
        check_totals(totals, totals_path)
    as_of = manifest.get("as_of")
    extra = {"previous": _previous_forecasts(store_dir, release_id, as_of)} if with_previous and as_of else {}
    return Release(
        release_id=release_id,
        manifest=manifest,
        forecasts=forecasts,
        history=history,
        cells=cells,
        totals=totals,
        **extra,
    )


def list_releases(store_dir: Path, routes: frozenset[str] | None = None) -> list[dict]:
    """Every release folder with its manifest summary, newest first; unreadable ones say why.

    ``routes`` (a token's route scope; None: all) limits ``rows`` to the forecast rows of those routes, so that a
    scoped caller learns nothing of the size of the others.
    """
    folder = store_dir / RELEASES
    if not folder.is_dir():
        return []
    try:
        current = current_release_id(store_dir)
    except StoreError:
        current = None
    out = []
    for path in folder.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue  # a release being written, or anything else that is not a release
        entry: dict[str, Any] = {"release_id": path.name, "current": path.name == current, "error": None}
        try:
            manifest = read_manifest(path)
            check_privacy(manifest, path / MANIFEST)
            read_people_model(manifest, path / MANIFEST)
            entry.update({k: manifest.get(k) for k in ("as_of", "created_at", "run_id", "model_version", "rows")})
            if routes is not None:
                entry["rows"] = _rows_of_routes(path, routes)
        except StoreError as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return sorted(out, key=lambda e: (e.get("as_of") or "", e.get("created_at") or "", e["release_id"]), reverse=True)


def _rows_of_routes(folder: Path, routes: frozenset[str]) -> int:
    try:
        route_ids = pq.read_table(folder / FORECASTS, columns=["route_id"]).column("route_id")
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise StoreError(f"release {folder.name}: forecasts.parquet is unreadable: {exc}") from None
    return sum(1 for r in route_ids.to_pylist() if r in routes)


def _previous_forecasts(store_dir: Path, release_id: str, as_of_text: str) -> pd.DataFrame:
    """What the latest earlier, servable release forecast for the day ``as_of_text`` (empty if none did)."""
    as_of = dt.date.fromisoformat(as_of_text)
    earlier = [
        e
        for e in list_releases(store_dir)
        if e["error"] is None and e["release_id"] != release_id and (e.get("as_of") or "") < as_of_text
    ]
    columns = ["series_id", "release_id", "yhat", "lo95", "hi95"]
    for entry in earlier:  # newest first
        try:
            table = pq.read_table(
                store_dir / RELEASES / entry["release_id"] / FORECASTS,
                columns=["series_id", "ds", "yhat", "lo95", "hi95"],
                filters=[("ds", "=", as_of)],
            ).to_pandas()
        except (OSError, pa.ArrowException):
            continue
        if len(table):
            return table.assign(release_id=entry["release_id"])[columns]
    return pd.DataFrame(columns=columns)
