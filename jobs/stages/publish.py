"""Publish: forecasts → ``store/releases/<release_id>/`` (immutable) and ``store/CURRENT`` (atomic pointer).

A release holds ``forecasts.parquet`` and, when given, ``history.parquet`` (the observed values of every published
series) and ``cells.parquet`` (the suppressed silver density of the last 28 days in each segment's cells, suppressed
again where the release's subset of cells would let a reader subtract its way to a suppressed count, with each
cell's share of its segment) and ``totals.parquet`` (forecast totals of each series' next periods, with the
intervals and quantiles of the total itself), described by ``manifest.json``.

The release id is the run date plus a hash of the forecast, history, cell and total values, so re-running a date that
produces the same tables re-points CURRENT at the existing release instead of writing a second copy. A release is
written to a temporary folder and renamed into place, so a crash never leaves a half-written release, and
CURRENT is replaced with ``os.replace``, so readers see the old or the new release, never neither.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from contracts import tables
from contracts.published import (
    CELLS,
    CURRENT,
    FORECAST_VALUES,
    FORECASTS,
    HISTORY,
    MANIFEST,
    RELEASES,
    SCENARIO_NETWORK,
    TOTAL_QUANTILES,
    TOTALS,
)
from contracts.schemas import PUBLISHED_TOTALS as TOTALS_SCHEMA
from forecasting.selection import FORECAST_COLUMNS
from forecasting.totals import TOTALS_COLUMNS
from forecasting.tracking import RunInfo
from geo.catalogue import Catalogue
from jobs import lake
from jobs.privacy.suppression import check_min_devices, complementary_suppression
from jobs.schemas import PUBLISHED_CELLS, PUBLISHED_FORECAST, PUBLISHED_HISTORY, arrow_schema
from jobs.settings import JobSettings
from jobs.stages.aggregate import BASELINE_WEEKS, with_baseline
from jobs.stages.flows import cell_segment_table_for

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# How far back the published history of a series goes, by frequency: rows with ds > as_of - this many days.
HISTORY_DAYS = {"D": 365, "W": 5 * 365, "M": 5 * 365}
# The published cells cover the days as_of - CELL_DAYS + 1 .. as_of; shares are over those days.
CELL_DAYS = 28
_HISTORY_ORDER = ["series_id", "ds"]
_CELLS_ORDER = ["route_id", "segment_id", "res", "cell", "date"]
_TOTALS_ORDER = ["series_id", "window"]
# A total's bounds from the lowest up, as every published forecast's are (forecasting.protocol.forecast_frame keeps
# each interval around the point forecast, the calibration keeps the 95 % interval around the 80 % one).
NESTED_BOUNDS = ("lo95", "lo80", "yhat", "hi80", "hi95")


@dataclass(frozen=True)
class PublishedRelease:
    """What :func:`publish` wrote: the release's id and folder in the store."""

    release_id: str
    path: Path
    created: bool  # False when an identical release already existed


def history_start(as_of: dt.date, freq: str) -> dt.date:
    """The published history of a series of frequency ``freq`` (D, W or M) has the rows with ds after this day."""
    if freq not in HISTORY_DAYS:
        raise ValueError(f"unknown frequency {freq!r}; expected one of {', '.join(HISTORY_DAYS)}")
    return as_of - dt.timedelta(days=HISTORY_DAYS[freq])


def release_id_for(
    as_of: dt.date,
    forecasts: pd.DataFrame,
    history: pd.DataFrame | None = None,
    cells: pd.DataFrame | None = None,
    totals: pd.DataFrame | None = None,
    network: dict | None = None,
) -> str:
    """``YYYYMMDD-<hash>`` of the forecast values and, when given, of the history, cell and total values and the
    scenarios' route network (independent of run ids and row order). Without history, cells, totals and network the
    id is what it was before they were published, so releases made before keep their ids; with them, two releases
    that differ in any of them never share an id (the second would otherwise re-point CURRENT at the first and drop
    its tables)."""
    values = forecasts[FORECAST_COLUMNS].sort_values(["series_id", "ds"]).reset_index(drop=True)
    digest = hashlib.sha256(_hashed(values))
    for name, frame in (("history", history), ("cells", cells), ("totals", _total_values(totals))):
        if frame is not None:
            digest.update(name.encode())
            digest.update(_hashed(frame))
    if network is not None:
        digest.update(SCENARIO_NETWORK.encode())
        digest.update(json.dumps(network, sort_keys=True).encode())
    return f"{as_of:%Y%m%d}-{digest.hexdigest()[:12]}"


def _hashed(frame: pd.DataFrame) -> bytes:
    return pd.util.hash_pandas_object(frame, index=False).values.tobytes()


def _total_values(totals: pd.DataFrame | None) -> pd.DataFrame | None:
    """Totals (TOTALS_COLUMNS) in a hashable, ordered form: one column per quantile instead of the list column."""
    if totals is None:
        return None
    ordered = totals[TOTALS_COLUMNS].sort_values(_TOTALS_ORDER, ignore_index=True)
    quantiles = pd.DataFrame(
        [[float(v) for v in q] for q in ordered["quantiles"]],
        columns=[f"q{q}" for q in TOTAL_QUANTILES],
        index=ordered.index,
        dtype="float64",
    )
    return pd.concat([ordered.drop(columns="quantiles"), quantiles], axis=1)


def history_frame(history: pd.DataFrame, forecasts: pd.DataFrame) -> pd.DataFrame:
    """``history`` in the columns of PUBLISHED_HISTORY, typed and sorted; refuses series without a forecast."""
    frame = _columns(history, PUBLISHED_HISTORY, "history")
    unknown = set(frame["series_id"]) - set(forecasts["series_id"])
    if unknown:
        raise ValueError(f"history for series that have no published forecast: {sorted(unknown)[:5]}")
    frame = frame.assign(
        series_id=frame["series_id"].astype(str),
        ds=pd.to_datetime(frame["ds"]).dt.normalize().astype("datetime64[ns]"),
        y=frame["y"].astype("float64"),
    )
    return frame.sort_values(_HISTORY_ORDER, ignore_index=True)


def cells_frame(cells: pd.DataFrame, min_devices: int) -> pd.DataFrame:
    """``cells`` in the columns of PUBLISHED_CELLS, typed and sorted; refuses cells backed by ``min_devices``
    devices or fewer (they should never have left silver: defence in depth)."""
    frame = _columns(cells, PUBLISHED_CELLS, "cells")
    small = frame[frame["devices"] <= min_devices]
    if not small.empty:
        example = small.iloc[0]
        raise ValueError(
            f"{len(small)} cell rows are backed by {min_devices} devices or fewer (e.g. cell {example['cell']} on "
            f"{example['date']}: {example['devices']}); only suppressed density may be published"
        )
    frame = frame.assign(
        **{c: frame[c].astype(str) for c in ("route_id", "segment_id", "cell")},
        res=frame["res"].astype("int32"),
        date=pd.to_datetime(frame["date"]).dt.normalize().astype("datetime64[ns]"),
        devices=frame["devices"].astype("int64"),
        **{c: frame[c].astype("float64") for c in ("excess", "zscore", "share")},
    )
    return frame.sort_values(_CELLS_ORDER, ignore_index=True)


def totals_frame(totals: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """``totals`` in TOTALS_COLUMNS, typed (quantiles as lists of floats) and sorted by series and window.

    Refuses, naming an example: missing columns or nulls; series outside ``keys`` (the hierarchy); a (series,
    window) given twice; a window below 1 or an end before its start; values or quantiles that are not finite or
    are negative (totals of counts; forecasts are clipped at 0 where they are made); bounds that are not nested
    (NESTED_BOUNDS: lo95 <= lo80 <= yhat <= hi80 <= hi95); quantiles that are not one per TOTAL_QUANTILES or that
    decrease (contracts.published.exceedance could not read them); a negative n_scores.
    """
    missing = [c for c in TOTALS_COLUMNS if c not in totals.columns]
    if missing:
        raise ValueError(f"totals lack the columns {missing}")
    frame = totals[TOTALS_COLUMNS].reset_index(drop=True)
    nulls = [c for c in TOTALS_COLUMNS if frame[c].isna().any()]
    if nulls:
        raise ValueError(f"totals have nulls in {nulls}")
    unknown = set(frame["series_id"].astype(str)) - set(keys["series_id"].astype(str))
    if unknown:
        raise ValueError(f"totals for series outside the hierarchy: {sorted(unknown)[:5]}")
    window = pd.to_numeric(frame["window"], errors="coerce")
    quantiles = [np.asarray(q, dtype="float64").ravel() for q in frame["quantiles"]]
    frame = frame.assign(
        series_id=frame["series_id"].astype(str),
        start=pd.to_datetime(frame["start"]).dt.normalize().astype("datetime64[ns]"),
        end=pd.to_datetime(frame["end"]).dt.normalize().astype("datetime64[ns]"),
        **{c: frame[c].astype("float64") for c in FORECAST_VALUES},
        model=frame["model"].astype(str),
    )

    def refuse(bad: pd.Series | np.ndarray, what: str) -> None:
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            first = frame.iloc[int(np.flatnonzero(bad)[0])]
            raise ValueError(
                f"{int(bad.sum())} totals {what} (e.g. {first['series_id']} over {first['window']} periods from "
                f"{first['start']:%Y-%m-%d}); fix them in the forecast stage"
            )

    refuse(window.isna() | (window < 1) | (window != window.round()), "have a window that is not a whole number >= 1")
    refuse(frame.duplicated(_TOTALS_ORDER, keep=False), "are given twice for the same series and window")
    refuse(frame["end"] < frame["start"], "end before they start")
    values = frame[list(FORECAST_VALUES)].to_numpy(dtype="float64")
    refuse(~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1), "have a value that is not finite or is < 0")
    nested = np.ones(len(frame), dtype=bool)
    for low, high in zip(NESTED_BOUNDS, NESTED_BOUNDS[1:], strict=False):
        nested &= (frame[low] <= frame[high]).to_numpy()
    refuse(~nested, "have bounds that are not nested (lo95 <= lo80 <= yhat <= hi80 <= hi95)")
    refuse(
        [len(q) != len(TOTAL_QUANTILES) for q in quantiles],
        f"do not have {len(TOTAL_QUANTILES)} quantiles (one per contracts.published.TOTAL_QUANTILES)",
    )
    refuse([not (np.isfinite(q).all() and (q >= 0).all()) for q in quantiles], "have quantiles not finite or < 0")
    refuse([bool((np.diff(q) < 0).any()) for q in quantiles], "have decreasing quantiles")
    n_scores = pd.to_numeric(frame["n_scores"], errors="coerce")
    refuse(n_scores.isna() | (n_scores < 0) | (n_scores != n_scores.round()), "have n_scores not a whole number >= 0")
    frame = frame.assign(
        window=window.astype("int32"),
        quantiles=[[float(v) for v in q] for q in quantiles],
        n_scores=n_scores.astype("int32"),
    )
    return frame.sort_values(_TOTALS_ORDER, ignore_index=True)


def _columns(frame: pd.DataFrame, schema: StructType, name: str) -> pd.DataFrame:
    """The schema's columns of ``frame``; refuses missing columns and nulls where the schema has none."""
    missing = [f.name for f in schema.fields if f.name not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}")
    out = frame[schema.fieldNames()].reset_index(drop=True)
    nulls = [f.name for f in schema.fields if not f.nullable and out[f.name].isna().any()]
    if nulls:
        raise ValueError(f"{name} has nulls in {nulls}")
    return out


def _arrow(frame: pd.DataFrame, schema: StructType, date_column: str) -> pa.Table:
    table = frame.assign(**{date_column: frame[date_column].dt.date})
    return pa.Table.from_pandas(table, schema=arrow_schema(schema), preserve_index=False)


def published_table(forecasts: pd.DataFrame, keys: pd.DataFrame, run: RunInfo, release_id: str) -> pa.Table:
    """The published forecast table: forecasts with their place in the hierarchy and their lineage."""
    missing = set(forecasts["series_id"]) - set(keys["series_id"])
    if missing:
        raise ValueError(f"forecasts for series outside the hierarchy: {sorted(missing)[:5]}")
    table = forecasts.merge(keys, on="series_id", how="left").assign(
        ds=lambda d: pd.to_datetime(d["ds"]).dt.date,
        run_id=run.run_id,
        model_version=str(run.model_version),
        release_id=release_id,
    )
    schema = arrow_schema(PUBLISHED_FORECAST)
    return pa.Table.from_pandas(table[schema.names], schema=schema, preserve_index=False)


def published_totals(totals: pd.DataFrame, keys: pd.DataFrame, run: RunInfo, release_id: str) -> pa.Table:
    """The published totals table (exactly PUBLISHED_TOTALS): ``totals_frame`` rows with their place in the
    hierarchy and their lineage, as :func:`published_table` does for the forecasts."""
    hierarchy = keys[["series_id", "level", "route_id", "segment_id", "freq", "source"]].drop_duplicates("series_id")
    table = totals.merge(hierarchy, on="series_id", how="left").assign(
        start=lambda d: d["start"].dt.date,
        end=lambda d: d["end"].dt.date,
        run_id=run.run_id,
        model_version=str(run.model_version),
        release_id=release_id,
    )
    return pa.Table.from_pandas(table[TOTALS_SCHEMA.names], schema=TOTALS_SCHEMA, preserve_index=False)


def publish(
    store_dir: Path,
    forecasts: pd.DataFrame,
    keys: pd.DataFrame,
    *,
    as_of: dt.date,
    run: RunInfo,
    min_devices: int,
    manifest_extra: dict | None = None,
    history: pd.DataFrame | None = None,
    cells: pd.DataFrame | None = None,
    totals: pd.DataFrame | None = None,
) -> PublishedRelease:
    """Write a release (unless an identical one exists) and point CURRENT at it.

    The manifest records the suppression threshold the data was made with; a threshold below the privacy floor
    is refused here, as serving refuses a release whose manifest does not declare one at or above it. ``history``
    (PUBLISHED_HISTORY columns, series with a forecast only) and ``cells`` (PUBLISHED_CELLS columns, every row
    above ``min_devices``; ``cells_table`` makes them) and ``totals`` (forecasting.totals.TOTALS_COLUMNS as the
    forecast stage makes them, series of ``keys`` only, with nested bounds and ordered quantiles: ``totals_frame``;
    publish adds the hierarchy keys and the lineage) are written when given; anything else is refused with a
    ValueError before a file is written.
    """
    check_min_devices(min_devices)
    history = None if history is None else history_frame(history, forecasts)
    cells = None if cells is None else cells_frame(cells, min_devices)
    totals = None if totals is None else totals_frame(totals, keys)
    release_id = release_id_for(as_of, forecasts, history, cells, totals, (manifest_extra or {}).get(SCENARIO_NETWORK))
    releases = store_dir / RELEASES
    final = releases / release_id
    created = not final.exists()
    if created:
        releases.mkdir(parents=True, exist_ok=True)
        tmp = releases / f".tmp-{release_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        table = published_table(forecasts, keys, run, release_id)
        pq.write_table(table, tmp / FORECASTS)
        tables = {"forecasts": table.num_rows}
        if history is not None:
            pq.write_table(_arrow(history, PUBLISHED_HISTORY, "ds"), tmp / HISTORY)
            tables["history"] = len(history)
        if cells is not None:
            pq.write_table(_arrow(cells, PUBLISHED_CELLS, "date"), tmp / CELLS)
            tables["cells"] = len(cells)
        if totals is not None:
            pq.write_table(published_totals(totals, keys, run, release_id), tmp / TOTALS)
            tables["totals"] = len(totals)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "release_id": release_id,
            "as_of": str(as_of),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_id": run.run_id,
            "model_version": str(run.model_version),
            "rows": table.num_rows,
            "series": int(forecasts["series_id"].nunique()),
            "privacy": {"suppressed": True, "min_devices": min_devices},
            "tables": tables,
            **({} if cells is None else {"cell_resolutions": sorted(int(r) for r in cells["res"].unique())}),
            **(manifest_extra or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.rename(tmp, final)
    point_current(store_dir, release_id)
    return PublishedRelease(release_id=release_id, path=final, created=created)


def point_current(store_dir: Path, release_id: str) -> None:
    """Atomically make ``release_id`` the current release."""
    if not (store_dir / RELEASES / release_id / MANIFEST).is_file():
        raise FileNotFoundError(f"release {release_id} is not in {store_dir / 'releases'}")
    tmp = store_dir / f".{CURRENT}.tmp-{os.getpid()}"
    tmp.write_text(release_id + "\n")
    os.replace(tmp, store_dir / CURRENT)


def cells_table(
    spark: SparkSession, settings: JobSettings, as_of: dt.date, catalogue: Catalogue | None = None
) -> pd.DataFrame:
    """The published cells (PUBLISHED_CELLS columns) of ``as_of``: ``release_cells`` of the CELL_DAYS days up to
    ``as_of``, with each cell's share of its segment's devices over those days at that resolution (computed from
    the published rows only)."""
    start = as_of - dt.timedelta(days=CELL_DAYS - 1)
    cells = release_cells(spark, settings, start, as_of, catalogue)
    cell_days = Window.partitionBy("route_id", "segment_id", "res", "cell")
    segment_days = Window.partitionBy("route_id", "segment_id", "res")
    out = (
        cells.withColumn("share", F.sum("devices").over(cell_days) / F.sum("devices").over(segment_days))
        .select(*PUBLISHED_CELLS.fieldNames())
        .toPandas()
    )
    out["cell"] = [h3.int_to_str(int(c)) for c in out["cell"]]
    out["date"] = pd.to_datetime(out["date"])
    return out.sort_values(_CELLS_ORDER, ignore_index=True)


def release_cells(
    spark: SparkSession, settings: JobSettings, start: dt.date, end: dt.date, catalogue: Catalogue | None = None
) -> DataFrame:
    """The cell rows a release publishes for ``start`` .. ``end`` (Spark; columns route_id, segment_id, cell (int64),
    res, date, devices, excess, zscore).

    Silver density at ``settings.cell_resolutions()`` in the cells of each route segment (geo's cell → segment
    table at each resolution; ``catalogue`` defaults to the packaged routes), above ``settings.min_devices``
    (silver written under a lower threshold is left out), then complementary suppression again: silver satisfies
    the rule over all its cells, but the release holds only corridor cells, and an API token may see only some
    routes, so a parent's published children can be fewer here than in silver. The rule is enforced within the
    whole release and within each route (``jobs.privacy.suppression``, scopes). A cell at ``h3_res`` is never removed —
    the series are sums of those cells, so removing one would let a reader recover it from its segment's series
    — its coarser parent is removed instead. ``excess`` and ``zscore`` are recomputed from the release's own
    rows of the 42 days before (``with_baseline``), so that a baseline never averages in a value the release
    removed. Every date is suppressed on its own rows only, so a date is published alike by every release.
    """
    resolutions = settings.cell_resolutions()
    silver = lake.read(spark, settings, tables.DENSITY)
    first_day = silver.agg(F.min("date")).first()[0]
    segments = spark.createDataFrame(
        corridor_cell_table(resolutions, catalogue), "cell long, res int, route_id string, segment_id string"
    )
    return corridor_cells(silver, segments, settings, start, end, first_day)


def corridor_cell_table(resolutions: tuple[int, ...], catalogue: Catalogue | None = None) -> pd.DataFrame:
    """(cell, res, route_id, segment_id) of every cell of every route segment at each of ``resolutions``."""
    parts = []
    for res in resolutions:
        table = cell_segment_table_for(res, catalogue)
        parts.append(
            pd.DataFrame(
                {
                    "cell": table["cell"].astype("int64"),
                    "res": res,
                    "route_id": table["route_id"].astype(str),
                    "segment_id": table["segment_id"].astype(str),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def corridor_cells(
    silver: DataFrame,
    segments: DataFrame,
    settings: JobSettings,
    start: dt.date,
    end: dt.date,
    first_day: dt.date | None,
) -> DataFrame:
    """The transform of :func:`release_cells`: silver density rows, the corridor cells (``corridor_cell_table``) and
    silver's first date in, the release's cell rows out. It reads and writes nothing; complementary suppression
    counts what each of its rounds removes."""
    resolutions = settings.cell_resolutions()
    history_start = start - dt.timedelta(days=7 * BASELINE_WEEKS)
    density = silver.where(
        F.col("date").between(F.lit(history_start), F.lit(end))
        & F.col("res").isin(list(resolutions))
        & (F.col("devices") > F.lit(settings.min_devices))
    ).select("cell", "res", "date", "devices")
    in_segments = density.join(F.broadcast(segments), ["cell", "res"])
    kept = complementary_suppression(
        in_segments,
        settings.min_devices,
        resolutions=resolutions,
        protected=F.col("res") == F.lit(settings.h3_res),
        scopes=F.array(F.lit("*"), F.col("route_id")),
    )
    log.info(
        "release cells %s..%s: complementary suppression removed %d rows in %d rounds",
        start,
        end,
        kept.suppressed,
        kept.rounds,
    )
    return (
        with_baseline(kept.published, first_day or history_start)
        .where(F.col("date") >= F.lit(start))
        .select("route_id", "segment_id", "cell", "res", "date", "devices", "excess", "zscore")
    )
