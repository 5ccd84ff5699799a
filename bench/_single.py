"""The aggregation of ``jobs.stages.aggregate.run`` in one process, without Spark: Polars or DuckDB, plus h3ronpy.

Same input, same output, same rules as the job (see its module docstring):

- each ping's cell at the finest resolution (``geo.points.latlng_to_cells``, run on all cores in threads: h3ronpy
  releases the GIL); the coarser cells are its H3 parents (``geo.points.cells_to_parents`` bit masks);
- per (cell, res, date) and per (cell, res, date, hour UTC): distinct devices and pings;
- only aggregates with more than ``min_devices`` devices are written;
- the daily table gets the same-weekday ``baseline``/``excess``/``zscore`` of ``jobs.stages.aggregate.with_baseline``,
  computed over the published rows of the run (the benchmark's silver lake starts empty, so there is no history);
- both tables are written as Parquet partitioned by ``date`` and ``res``, in the DENSITY / DENSITY_HOURLY
  column types.

Every key holds the date and device ids rotate daily, so each date is aggregated on its own: memory follows the
largest day, not N. Only the (small) published daily table is held across dates, for the baseline.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geo.points import latlng_to_cells, parent_bits
from jobs.schemas import DENSITY, DENSITY_HOURLY, arrow_schema
from jobs.stages.aggregate import BASELINE_MIN_WEEKS, BASELINE_WEEKS

US_PER_HOUR = 3_600_000_000
# An H3 cell index (int64) has bit 63 and bits 56-58 at 0 and the mode (bits 59-62) at 1: those seven bits always
# read 0b0001000. The single-process versions keep the hour there, so that (cell, hour) is one int64 key and the
# resolution is read back from the cell's own bits 52-55.
HOUR_SHIFT = 56
RES_SHIFT = 52
H3_MODE_CELL = 1 << 59
CELL_BITS = (1 << 56) - 1  # the cell without its mode: resolution, base cell, digits


@dataclass(frozen=True)
class Counts:
    """What ``jobs.stages.aggregate.AggregateCounts`` reports, for the same checks."""

    pings_in: int
    aggregates: int
    published: int
    hourly_aggregates: int
    hourly_published: int


def bronze_dates(table: Path, since: dt.date, until: dt.date) -> list[tuple[dt.date, list[Path]]]:
    """The date partitions of a bronze table between ``since`` and ``until``, with their data files."""
    out = []
    for folder in sorted(table.glob("date=*")):
        date = dt.date.fromisoformat(folder.name.partition("=")[2])
        files = sorted(f for f in folder.glob("*.parquet") if not f.name.startswith(("_", ".")))
        if since <= date <= until and files:
            out.append((date, files))
    return out


class CellIndexer:
    """Finest-resolution cells of a day's points, on all cores (h3ronpy releases the GIL)."""

    def __init__(self, res: int, threads: int | None = None) -> None:
        self.res = res
        self.threads = threads or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.threads)

    def __call__(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        bounds = np.linspace(0, lat.size, 4 * self.threads + 1).astype(np.int64)
        parts = self.pool.map(
            lambda i: latlng_to_cells(lat[bounds[i] : bounds[i + 1]], lon[bounds[i] : bounds[i + 1]], self.res),
            range(bounds.size - 1),
        )
        return np.concatenate(list(parts)) if lat.size else np.zeros(0, np.int64)

    def close(self) -> None:
        self.pool.shutdown()


# ----------------------------------------------------------------------------------------------------------------
# Polars


def run_polars(
    bronze: Path,
    out: Path,
    since: dt.date,
    until: dt.date,
    resolutions: tuple[int, ...],
    min_devices: int,
    *,
    hourly: bool = True,
    on_date: Callable[[dt.date], None] | None = None,
) -> Counts:
    import polars as pl

    finest = max(resolutions)
    cells = CellIndexer(finest)
    published_daily, counts = [], np.zeros(5, np.int64)
    try:
        for date, files in bronze_dates(bronze, since, until):
            pings = pl.read_parquet(files, columns=["device_id", "ts", "lat", "lon"], hive_partitioning=False)
            cell = cells(pings["lat"].to_numpy(), pings["lon"].to_numpy())
            hour = (pings["ts"].dt.epoch("us").to_numpy() // US_PER_HOUR) % 24
            # One row per (device, finest cell + hour): the job's device_cells. Device ids as u32 codes from here.
            reduced = (
                pl.DataFrame(
                    {
                        "device": pings["device_id"].cast(pl.Categorical(pl.Categories.random())).to_physical(),
                        "spot": (cell & CELL_BITS) | (hour << HOUR_SHIFT),
                    }
                )
                .lazy()
                .group_by("device", "spot")
                .agg(pl.len().alias("pings"))
            )
            del pings, cell, hour
            # Parent masks keep bits 56..62, so the parent of a packed key is the packed key of the parent.
            per_res = pl.concat(
                [reduced.with_columns(_pl_parent(pl.col("spot"), r).alias("spot")) for r in resolutions]
            )
            aggs = [pl.col("device").n_unique().cast(pl.Int64).alias("devices"), pl.col("pings").sum().cast(pl.Int64)]
            daily_lf = per_res.group_by(pl.col("spot") & CELL_BITS).agg(aggs)
            hourly_lf = per_res.group_by("spot").agg(aggs) if hourly else daily_lf.head(0)
            daily, hourly_df = (_pl_unpack(df) for df in pl.collect_all([daily_lf, hourly_lf]))
            counts += [
                daily.filter(pl.col("res") == finest)["pings"].sum(),
                len(daily),
                (daily["devices"] > min_devices).sum(),
                len(hourly_df) if hourly else 0,
                (hourly_df["devices"] > min_devices).sum() if hourly else 0,
            ]
            lit_date = pl.lit(date, pl.Date).alias("date")
            published_daily.append(daily.filter(pl.col("devices") > min_devices).with_columns(lit_date))
            if hourly:
                _pl_write(
                    hourly_df.filter(pl.col("devices") > min_devices).with_columns(lit_date),
                    out / "density_hourly",
                    DENSITY_HOURLY.fieldNames(),
                )
            if on_date:
                on_date(date)
    finally:
        cells.close()
    daily = pl.concat(published_daily) if published_daily else None
    if daily is not None:
        _pl_write(_pl_with_baseline(daily, min(daily["date"])), out / "density", DENSITY.fieldNames())
    return Counts(*(int(c) for c in counts))


def _pl_parent(cell, res: int):
    import polars as pl

    keep, set_bits = parent_bits(res)
    return (cell & pl.lit(keep, pl.Int64)) | pl.lit(set_bits, pl.Int64)


def _pl_unpack(df):
    """cell, res and hour from the packed key ``spot``."""
    import polars as pl

    spot = pl.col("spot")
    return df.select(
        ((spot & CELL_BITS) | H3_MODE_CELL).alias("cell"),
        ((spot // (1 << RES_SHIFT)) % 16).cast(pl.Int32).alias("res"),
        (spot // (1 << HOUR_SHIFT)).cast(pl.Int32).alias("hour"),
        "devices",
        "pings",
    )


def _pl_with_baseline(density, first_day: dt.date):
    """``jobs.stages.aggregate.with_baseline`` in Polars: the same-weekday rows 7..42 days back, a missing day as 0."""
    import polars as pl

    day = (pl.col("date") - pl.lit(first_day, pl.Date)).dt.total_days()
    rows = density.with_columns(day.alias("_day"))
    keys = ["cell", "res", "_day"]
    total = pl.lit(0, pl.Int64)
    squares = pl.lit(0, pl.Int64)
    for k in range(1, BASELINE_WEEKS + 1):
        lagged = rows.select("cell", "res", (pl.col("_day") + 7 * k).alias("_day"), pl.col("devices").alias(f"_d{k}"))
        rows = rows.join(lagged, on=keys, how="left")
        total = total + pl.col(f"_d{k}").fill_null(0)
        squares = squares + pl.col(f"_d{k}").fill_null(0) ** 2
    weeks = pl.min_horizontal(pl.lit(BASELINE_WEEKS), (pl.col("_day") // 7))
    n = pl.when(weeks >= BASELINE_MIN_WEEKS).then(weeks).cast(pl.Float64)
    mean = total.cast(pl.Float64) / n
    var = (squares.cast(pl.Float64) - n * mean * mean) / (n - 1)
    # Spark's greatest() skips nulls, like max_horizontal.
    scale = pl.max_horizontal(pl.max_horizontal(var, 0.0).sqrt(), pl.max_horizontal(mean, 1.0).sqrt())
    return (
        rows.with_columns(mean.alias("baseline"))
        .with_columns((pl.col("devices") - pl.col("baseline")).alias("excess"))
        .with_columns((pl.col("excess") / scale).alias("zscore"))
        .drop([c for c in rows.columns if c.startswith("_")])
    )


def _pl_write(df, table: Path, columns: list[str]) -> None:
    """Write ``df`` under ``table/date=…/res=…/`` in the declared column types (partition columns in the path)."""
    schema = arrow_schema(DENSITY if "baseline" in columns else DENSITY_HOURLY)
    arrow = df.select(columns).to_arrow().cast(schema)
    _write_partitioned(arrow, table)


def _write_partitioned(arrow: pa.Table, table: Path) -> None:
    import pyarrow.compute as pc

    dates = arrow.column("date")
    res = arrow.column("res")
    data = arrow.drop_columns(["date", "res"])
    for date in pc.unique(dates).to_pylist():
        on_date = pc.equal(dates, pa.scalar(date, dates.type))
        for r in pc.unique(pc.filter(res, on_date)).to_pylist():
            mask = pc.and_(on_date, pc.equal(res, pa.scalar(r, res.type)))
            folder = table / f"date={date.isoformat()}" / f"res={r}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(data.filter(mask), folder / "part-00000.parquet", compression="snappy")


# ----------------------------------------------------------------------------------------------------------------
# DuckDB


def run_duckdb(
    bronze: Path,
    out: Path,
    since: dt.date,
    until: dt.date,
    resolutions: tuple[int, ...],
    min_devices: int,
    *,
    hourly: bool = True,
    on_date: Callable[[dt.date], None] | None = None,
) -> Counts:
    import duckdb

    finest = max(resolutions)
    cells = CellIndexer(finest)
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 1}")
    masks = ", ".join(
        f"({r}, {-1 if r == finest else parent_bits(r)[0]}, {0 if r == finest else parent_bits(r)[1]})"
        for r in resolutions
    )
    con.execute(f"CREATE TEMP TABLE masks AS SELECT * FROM (VALUES {masks}) m(res, keep, set_bits)")
    con.execute(
        "CREATE TEMP TABLE daily (cell BIGINT, res INTEGER, devices BIGINT, pings BIGINT, date DATE, published BOOLEAN)"
    )
    hourly_out = out / "density_hourly"
    out.mkdir(parents=True, exist_ok=True)
    hourly_counts = np.zeros(2, np.int64)
    try:
        for date, files in bronze_dates(bronze, since, until):
            pings = pq.read_table(files, columns=["device_id", "ts", "lat", "lon"])
            cell = cells(pings["lat"].to_numpy(), pings["lon"].to_numpy())
            ts_us = pings["ts"].cast(pa.int64()).to_numpy()
            day_pings = pa.table(  # noqa: F841 - DuckDB reads it by its name
                {
                    "device_id": pings["device_id"],
                    "hour": pa.array(((ts_us // US_PER_HOUR) % 24).astype(np.int32)),
                    "cell": pa.array(cell),
                }
            )
            del pings, cell, ts_us
            # One row per (device, hour, finest cell), then one per resolution with the parent cell.
            con.execute(
                """
                CREATE OR REPLACE TEMP TABLE per_res AS
                WITH reduced AS (SELECT device_id, hour, cell, count(*) AS pings FROM day_pings GROUP BY ALL)
                SELECT device_id, hour, pings, m.res, (cell & m.keep) | m.set_bits AS cell
                FROM reduced CROSS JOIN masks m
                """
            )
            del day_pings
            con.execute(
                f"""
                INSERT INTO daily
                SELECT cell, res, count(*) AS devices, sum(pings)::BIGINT AS pings, DATE '{date}' AS date,
                       count(*) > {min_devices} AS published
                FROM (SELECT cell, res, device_id, sum(pings) AS pings FROM per_res GROUP BY ALL)
                GROUP BY ALL
                """
            )
            if hourly:
                con.execute(
                    """
                    CREATE OR REPLACE TEMP TABLE hourly AS
                    SELECT cell, res, hour, count(*) AS devices, sum(pings)::BIGINT AS pings
                    FROM (SELECT cell, res, hour, device_id, sum(pings) AS pings FROM per_res GROUP BY ALL)
                    GROUP BY ALL
                    """
                )
                con.execute(
                    f"""
                    COPY (
                        SELECT cell, res, hour, devices, pings, DATE '{date}' AS date
                        FROM hourly WHERE devices > {min_devices}
                    ) TO '{hourly_out}' (FORMAT parquet, PARTITION_BY (date, res), OVERWRITE_OR_IGNORE)
                    """
                )
                n, published = con.execute(
                    f"SELECT count(*), count(*) FILTER (WHERE devices > {min_devices}) FROM hourly"
                ).fetchone()
                hourly_counts += [n, published]
            if on_date:
                on_date(date)
        con.execute("DROP TABLE IF EXISTS per_res; DROP TABLE IF EXISTS hourly")
        (first,) = con.execute("SELECT min(date) FROM daily WHERE published").fetchone()
        if first is not None:
            _duck_write_baseline(con, out / "density", first)
        pings_in, n, published = con.execute(
            f"SELECT coalesce(sum(pings) FILTER (WHERE res = {finest}), 0), count(*), count(*) FILTER (WHERE published)"
            " FROM daily"
        ).fetchone()
    finally:
        cells.close()
        con.close()
    return Counts(int(pings_in), int(n), int(published), int(hourly_counts[0]), int(hourly_counts[1]))


def _duck_write_baseline(con, table: Path, first_day: dt.date) -> None:
    """``jobs.stages.aggregate.with_baseline`` as a DuckDB window over the published daily rows."""
    lag_from, lag_to = 7 * BASELINE_WEEKS, 7
    con.execute(
        f"""
        COPY (
            WITH d AS (
                SELECT *, date_diff('day', DATE '{first_day}', date) AS day FROM daily WHERE published
            ), w AS (
                SELECT *,
                    coalesce(sum(devices) OVER lag, 0)::DOUBLE AS total,
                    coalesce(sum(devices * devices) OVER lag, 0)::DOUBLE AS squares,
                    CASE WHEN least({BASELINE_WEEKS}, floor(day / 7)) >= {BASELINE_MIN_WEEKS}
                         THEN least({BASELINE_WEEKS}, floor(day / 7)) END::DOUBLE AS n
                FROM d
                WINDOW lag AS (PARTITION BY cell, res, day % 7 ORDER BY day
                               RANGE BETWEEN {lag_from} PRECEDING AND {lag_to} PRECEDING)
            ), b AS (
                SELECT *, total / n AS baseline, (squares - n * (total / n) * (total / n)) / (n - 1) AS var FROM w
            )
            SELECT cell, res, devices, pings, baseline, devices - baseline AS excess,
                   (devices - baseline) / greatest(sqrt(greatest(var, 0.0)), sqrt(greatest(baseline, 1.0))) AS zscore,
                   date
            FROM b
        ) TO '{table}' (FORMAT parquet, PARTITION_BY (date, res), OVERWRITE_OR_IGNORE)
        """
    )
