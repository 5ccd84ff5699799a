"""Aggregate: bronze pings → silver H3 density per (cell, day) and per (cell, hour), suppressed before writing.

Resolutions
    Every ping gets its cell at the finest configured resolution (h3ronpy, vectorised per Arrow batch); the
    coarser cells are that cell's H3 parents (bit operations in Spark SQL). H3 children do not tile their
    parent exactly: for about 6 % of points, the cell that contains the point at res 7 is not the parent of the
    point's res-9 cell. Deriving every resolution from the finest cell makes the pyramid consistent: a
    parent's pings are the sum of its children's, and its distinct devices at most that sum.

Suppression
    Happens here, where the aggregate is made (``suppress_density``): only aggregates backed by more than
    ``min_devices`` distinct devices are kept (``jobs.privacy.suppression.suppress_small_counts``), then complementary
    suppression (``jobs.privacy.suppression.complementary_suppression``) removes more rows until no published parent —
    a coarser cell, a day over its hours, an hour over its finer cells' days — minus its published children
    leaves 1..``min_devices`` devices, at every pair of resolutions; days at ``h3_res`` are kept (their coarser
    parents go instead), so the series lose nothing to it. ``pings`` is not published
    (null): it is additive, so a parent's pings minus its children's would give the suppressed remainder
    exactly, and nothing downstream reads it. The unsuppressed counts are never written to the lake (Spark's own
    shuffle and spill files under ``spark.local.dir`` hold device-level rows while the job runs). Optional
    differential-privacy noise (``jobs.privacy.dp``) is added to what survives.

Baseline and anomaly (daily density)
    For each cell and day: the mean of the same weekday over the trailing 45 days (the six previous same
    weekdays), a day without a published row counting as 0, as the series do; ``excess`` = devices −
    baseline; ``zscore`` = excess / max(sample sd, √max(baseline, 1)) — the Poisson floor keeps a cell
    that was flat at a few devices from scoring huge z on ordinary noise. Days before the lake's first day do
    not count; with fewer than three same-weekday days of history the three columns are null.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from geo.points import latlng_to_cells, parent_bits
from jobs.lake import read_table, write_checks, write_partitions
from jobs.privacy import dp as privacy
from jobs.privacy.suppression import (
    DAILY,
    ComplementaryResult,
    complementary_suppression,
    daily_part,
    hourly_part,
    stack_levels,
    suppress_small_counts,  # also imported from here by flows, the tests and bench/
)
from jobs.schemas import BRONZE_PINGS, BRONZE_TILES, DENSITY, DENSITY_HOURLY
from jobs.settings import RES_MIN, JobSettings

# Same weekday over the trailing 45 days: the six previous same weekdays that fit in it (7..42 days back).
BASELINE_WEEKS = 6
BASELINE_MIN_WEEKS = 3
# The H3 resolution of the blocks the job partitions by (see device_cells): the coarsest it may aggregate at.
BLOCK_RES = RES_MIN


def h3_cell(lat: Column, lon: Column, res: int) -> Column:
    """H3 cell (int64) of each row, vectorised per Arrow batch (no per-row Python)."""

    @pandas_udf("long")
    def _cells(lat_s: pd.Series, lon_s: pd.Series) -> pd.Series:
        return pd.Series(latlng_to_cells(lat_s.to_numpy(), lon_s.to_numpy(), res))

    return _cells(lat, lon)


def parent_cell(cell: Column, res: int) -> Column:
    """The H3 parent at ``res`` of a cell column (int64) at ``res`` or finer, in Spark SQL."""
    keep, set_bits = parent_bits(res)
    return cell.bitwiseAND(F.lit(keep)).bitwiseOR(F.lit(set_bits))


def ping_cell(res: int, finest: int) -> Column:
    """A ping's cell at ``res`` as every table of the lake sees it: the parent of its cell at ``finest``."""
    cell = h3_cell(F.col("lat"), F.col("lon"), finest)
    return cell if res == finest else parent_cell(cell, res)


def device_cells(pings: DataFrame, finest: int) -> DataFrame:
    """One row per (device_id, date, hour, cell at ``finest``) with its ping count: what every table is made from.

    Also carries ``block``, the cell's parent at ``BLOCK_RES``, and is shuffled once by (date, block): every
    aggregate key (a cell at ``BLOCK_RES`` or finer, a date) then lies in one partition, and ``count_by_cell``
    groups by ``block`` as well so that Spark aggregates there without shuffling the exploded rows again
    (measured in bench/README.md: this one shuffle instead of four is most of the job's speed-up).
    """
    cells = pings.select(
        "device_id",
        "date",
        F.hour("ts").alias("hour"),
        h3_cell(F.col("lat"), F.col("lon"), finest).alias("cell"),
    ).withColumn("block", parent_cell(F.col("cell"), BLOCK_RES))
    return (
        cells.repartition("date", "block")
        .groupBy("device_id", "date", "hour", "cell", "block")
        .agg(F.count(F.lit(1)).alias("pings"))
    )


def count_by_cell(reduced: DataFrame, resolutions: tuple[int, ...], *, hourly: bool) -> DataFrame:
    """All aggregates at every resolution, per (cell, res, date[, hour]) — unsuppressed, so never written.

    ``reduced`` comes from ``device_cells`` (with its ``block`` column).
    """
    if min(resolutions) < BLOCK_RES:
        raise ValueError(f"resolutions {list(resolutions)} go below the block resolution {BLOCK_RES}")
    finest = max(resolutions)
    per_res = reduced.select(
        "device_id",
        "date",
        "hour",
        "pings",
        "block",
        F.explode(
            F.array(
                *[
                    F.struct(
                        F.lit(r).alias("res"),
                        (F.col("cell") if r == finest else parent_cell(F.col("cell"), r)).alias("cell"),
                    )
                    for r in resolutions
                ]
            )
        ).alias("c"),
    ).select("device_id", "date", "hour", "pings", "block", "c.res", "c.cell")
    # ``block`` is implied by (cell, date) — redundant as a key, but it tells Spark the partitioning already fits.
    keys = ["cell", "res", "date", *(["hour"] if hourly else []), "block"]
    per_device = per_res.groupBy(*keys, "device_id").agg(F.sum("pings").alias("pings"))
    counts = per_device.groupBy(*keys).agg(F.count(F.lit(1)).alias("devices"), F.sum("pings").alias("pings"))
    return counts.drop("block")


def count_by_cell_day(pings: DataFrame, res: int) -> DataFrame:
    """Daily aggregates at one resolution (unsuppressed): the building block the tests look at directly."""
    return count_by_cell(device_cells(pings, res), (res,), hourly=False)


def suppress_density(
    daily: DataFrame,
    hourly: DataFrame | None,
    min_devices: int,
    resolutions: tuple[int, ...],
    keep_res: int | None = None,
) -> tuple[DataFrame, DataFrame | None, ComplementaryResult]:
    """The publishable daily and hourly density from unsuppressed aggregates (``count_by_cell``): primary, then
    complementary suppression over every resolution in ``resolutions`` and days against hours, checked together.

    Daily rows at ``keep_res`` (the series' resolution, ``h3_res``) are never removed by complementary suppression:
    where they would be the smallest child, their coarser parent goes instead, so the density series and the
    release's finest cells lose nothing to it. Returns the daily rows, the hourly rows (None without ``hourly``) —
    both with ``pings`` null, since it is not published — and the complementary result (rounds, rows removed).
    Refuses a threshold below the floor.
    """
    primary = stack_levels(
        suppress_small_counts(daily, min_devices).drop("pings"),
        None if hourly is None else suppress_small_counts(hourly, min_devices).drop("pings"),
    )
    kept = None if keep_res is None else (F.col("res") == F.lit(keep_res)) & (F.col("hour") == F.lit(DAILY))
    result = complementary_suppression(
        primary, min_devices, counts=("devices",), resolutions=resolutions, protected=kept
    )
    no_pings = F.lit(None).cast("long").alias("pings")
    daily_out = daily_part(result.published).select("*", no_pings)
    hourly_out = None if hourly is None else hourly_part(result.published).select("*", no_pings)
    return daily_out, hourly_out, result


def with_baseline(density: DataFrame, first_day: dt.date) -> DataFrame:
    """Add ``baseline``, ``excess`` and ``zscore`` (see the module docstring) to published daily density.

    ``density`` must hold the rows of the trailing 42 days before the earliest date that needs a baseline.
    """
    day = F.datediff("date", F.lit(first_day))
    lag = Window.partitionBy("cell", "res", (day % 7).alias("dow")).orderBy(day).rangeBetween(-7 * BASELINE_WEEKS, -7)
    weeks = F.least(F.lit(BASELINE_WEEKS), F.floor(day / 7))
    enough = weeks >= BASELINE_MIN_WEEKS
    # Guarded by `enough` so that ANSI mode never sees a division by zero.
    n = F.when(enough, weeks).cast("double")
    total = F.coalesce(F.sum("devices").over(lag), F.lit(0)).cast("double")
    squares = F.coalesce(F.sum(F.col("devices") * F.col("devices")).over(lag), F.lit(0)).cast("double")
    mean = total / n
    var = (squares - n * mean * mean) / (n - 1)
    scale = F.greatest(F.sqrt(F.greatest(var, F.lit(0.0))), F.sqrt(F.greatest(mean, F.lit(1.0))))
    return (
        density.withColumn("baseline", mean)
        .withColumn("excess", F.col("devices") - F.col("baseline"))
        .withColumn("zscore", F.col("excess") / scale)
    )


@dataclass(frozen=True)
class AggregateCounts:
    pings_in: int
    aggregates: int
    published: int  # daily aggregates kept by both suppressions
    suppressed: int  # aggregates - published: primary and complementary
    hourly_aggregates: int = 0
    hourly_published: int = 0
    dp_refused: tuple[dt.date, ...] = ()  # dates whose release the privacy ledger refused (left as they were)
    complementary_suppressed: int = 0  # daily aggregates above min_devices removed by complementary suppression
    hourly_complementary_suppressed: int = 0
    complementary_rounds: int = 0  # rounds complementary suppression took (0: primary alone was enough)


def run(spark: SparkSession, settings: JobSettings, run_date: dt.date, since: dt.date | None = None) -> AggregateCounts:
    """Aggregate the bronze dates from ``since`` to ``run_date`` into silver; idempotent (replaces those dates)."""
    since = since or run_date - dt.timedelta(days=settings.bronze_retention_days - 1)
    pings = read_table(spark, settings.lake("bronze", "pings"), BRONZE_PINGS).where(
        F.col("date").between(F.lit(since), F.lit(run_date))
    )
    resolutions = settings.resolutions
    # Persisted: the daily and the hourly tables both start from it (one bronze scan, one UDF pass, one shuffle).
    reduced = device_cells(pings, max(resolutions))
    dp_on = settings.dp_mechanism != "none"
    if dp_on:  # bound each person-day's contribution before anything is counted (jobs.privacy.dp)
        secret = privacy.require_dp(settings)
        bound = privacy.ContributionBound.from_settings(settings)
        reduced = bound.apply(reduced, secret).repartition("date", "block")  # back into blocks after the bound
    reduced = reduced.persist(StorageLevel.MEMORY_AND_DISK)
    hourly_rows = reduced.where(F.col("in_hourly")) if dp_on else reduced
    hourly = count_by_cell(hourly_rows, resolutions, hourly=True).cache() if settings.hourly else None
    # Daily from hourly would double-count a device seen in two hours, so days are counted from devices.
    daily = count_by_cell(reduced, resolutions, hourly=False).cache()
    dates = sorted(r["date"] for r in daily.select("date").distinct().collect())

    # Before any noise: which rows may be published is decided on the true (bounded) counts.
    daily_out, hourly_out, secondary = suppress_density(
        daily, hourly, settings.min_devices, resolutions, keep_res=settings.h3_res
    )
    refused: list[dt.date] = []
    if dp_on and dates:
        # Cached (fingerprinted, then noised) and unpersisted below: Spark's cache is keyed by plan, and a stale
        # entry would answer the next run over the same files.
        daily_out, hourly_out = daily_out.cache(), hourly_out.cache() if hourly_out is not None else None
        cached = [daily_out, hourly_out]
        daily_out, hourly_out, refused = _add_dp_noise(settings, secret, bound, daily_out, hourly_out, dates)
        dates = [d for d in dates if d not in refused]
    publish_daily(spark, settings, daily_out, dates)
    if hourly_out is not None:
        write_partitions(
            hourly_out.where(F.col("date").isin(dates)).select(*DENSITY_HOURLY.fieldNames()),
            settings.lake("silver", "density_hourly"),
            ["date", "res"],
            replace={"date": dates},
            one_file_per_partition=True,
        )

    reduced.unpersist()
    # Every ping is in exactly one finest cell, so their pings sum to the input (the bounded rows under DP
    # hold clipped pings: then the input itself is counted).
    by_res = _tally(daily, settings.min_devices, pings_at=None if dp_on else max(resolutions))
    pings_in = pings.count() if dp_on else by_res["pings"]
    hourly_totals = _tally(hourly, settings.min_devices) if hourly is not None else {"aggregates": 0, "published": 0}
    published = by_res["published"] - secondary.suppressed_daily
    result = AggregateCounts(
        pings_in=pings_in,
        aggregates=by_res["aggregates"],
        published=published,
        suppressed=by_res["aggregates"] - published,
        hourly_aggregates=hourly_totals["aggregates"],
        hourly_published=hourly_totals["published"] - secondary.suppressed_hourly,
        dp_refused=tuple(refused),
        complementary_suppressed=secondary.suppressed_daily,
        hourly_complementary_suppressed=secondary.suppressed_hourly,
        complementary_rounds=secondary.rounds,
    )
    for frame in (daily, hourly, *(cached if dp_on and dates else [])):
        if frame is not None:
            frame.unpersist()
    write_checks(
        spark,
        settings.lake("qa", "checks"),
        run_date,
        "aggregate",
        {
            **{k: v for k, v in asdict(result).items() if k != "dp_refused"},
            "dp_refused_dates": len(refused),
            "dp_epsilon": settings.dp_epsilon if dp_on else 0.0,
            "dates": len(dates),
            "h3_res": settings.h3_res,
            "resolutions": len(resolutions),
            "min_devices": settings.min_devices,
        },
    )
    return result


def _tally(aggregates: DataFrame, min_devices: int, pings_at: int | None = None) -> dict[str, int]:
    """Aggregates, how many pass primary suppression and (with ``pings_at``) the pings at that resolution: one Spark
    action."""
    columns = [
        F.count(F.lit(1)).alias("aggregates"),
        F.coalesce(F.sum((F.col("devices") > min_devices).cast("int")), F.lit(0)).alias("published"),
    ]
    if pings_at is not None:
        at_res = F.when(F.col("res") == pings_at, F.col("pings"))
        columns.append(F.coalesce(F.sum(at_res), F.lit(0)).alias("pings"))
    return aggregates.agg(*columns).first().asDict()


def _add_dp_noise(
    settings: JobSettings,
    secret: str,
    bound: privacy.ContributionBound,
    daily: DataFrame,
    hourly: DataFrame | None,
    dates: list[dt.date],
) -> tuple[DataFrame, DataFrame | None, list[dt.date]]:
    """Charge each date's release to the privacy ledger and noise its device counts (pings are not published).

    Suppression already ran on the true (bounded) counts; noisy counts are clamped to min_devices + 1, so
    nothing published looks like it breaks the threshold. A date the ledger refuses is left out (its previous
    silver data, if any, stays).
    """
    n_res = len(settings.resolutions)
    queries = {"density.devices": privacy.Query("density", "devices", count=n_res)}
    tables = {"density": daily}
    if hourly is not None:
        queries["density_hourly.devices"] = privacy.Query("density_hourly", "devices", count=n_res)
        tables["density_hourly"] = hourly
    params = privacy.fingerprint_params(
        bound, queries, min_devices=settings.min_devices, resolutions=list(settings.resolutions)
    )
    prints = privacy.fingerprints_by(tables, secret, "date", params=params)
    ledger = privacy.PrivacyLedger(settings)
    charges: dict[dt.date, privacy.Charge] = {}
    refused = []
    for d in dates:
        try:
            charges[d] = ledger.charge(f"density/{d}", d, prints[d])
        except privacy.PrivacyBudgetExceeded:
            refused.append(d)
    plans = {d: privacy.plan_release(c, bound, queries) for d, c in charges.items()}

    def noised(table: DataFrame, name: str, keys: list[str]) -> DataFrame:
        out = table.where(F.lit(False)).withColumn("pings", F.lit(None).cast("long"))
        # One add_noise call per group of dates charged alike (normally one group), each date with its own salt.
        groups: dict[tuple, list[dt.date]] = {}
        for d, plan in plans.items():
            p = plan[name]
            groups.setdefault((p.mechanism, p.epsilon, p.delta), []).append(d)
        for group in groups.values():
            salts = {d: plans[d][name].salt for d in group}
            part = privacy.add_noise(
                table.where(F.col("date").isin(group)),
                ["devices"],
                keys,
                secret=secret,
                floor=settings.min_devices + 1,
                **plans[group[0]][name].kwargs(salt=privacy.salt_column("date", salts)),
            )
            out = out.unionByName(part.withColumn("pings", F.lit(None).cast("long")))
        return out

    noisy_daily = noised(daily, "density.devices", ["cell", "res", "date"])
    noisy_hourly = (
        noised(hourly, "density_hourly.devices", ["cell", "res", "date", "hour"]) if hourly is not None else None
    )
    return noisy_daily, noisy_hourly, refused


def publish_daily(spark: SparkSession, settings: JobSettings, daily: DataFrame, dates: list[dt.date]) -> None:
    """Add the baseline from silver history to suppressed daily aggregates and replace ``dates`` in silver."""
    density_path = settings.lake("silver", "density")
    published = spark.createDataFrame([], DENSITY)
    if dates:
        history_start = dates[0] - dt.timedelta(days=7 * BASELINE_WEEKS)
        history = (
            read_table(spark, density_path, DENSITY)
            .where((F.col("date") >= F.lit(history_start)) & (F.col("date") < F.lit(dates[0])))
            .select(*daily.columns)
        )
        first_day = _first_day(spark, density_path, dates[0])
        published = (
            with_baseline(history.unionByName(daily), first_day)
            .where(F.col("date") >= F.lit(dates[0]))
            .select(*DENSITY.fieldNames())
        )
    write_partitions(published, density_path, ["date", "res"], replace={"date": dates}, one_file_per_partition=True)


def run_tiles(
    spark: SparkSession, settings: JobSettings, run_date: dt.date, since: dt.date | None = None
) -> AggregateCounts:
    """Aggregate bronze provider tiles (``jobs.stages.tiles``) from ``since`` to ``run_date`` into silver density.

    Each tile counts toward every configured resolution not finer than its own; ``pings`` is null. Suppressed as
    density from pings is (``suppress_density``), by day only.
    """
    if settings.dp_mechanism != "none":
        raise privacy.DPConfigError(
            "differential privacy covers pings only: tiles carry no device ids, so one person's contribution "
            "cannot be bounded; set ROUTECAST_DP_MECHANISM=none for tiles input (or ask the provider for DP tiles)"
        )
    since = since or run_date - dt.timedelta(days=settings.bronze_retention_days - 1)
    tiles = read_table(spark, settings.lake("bronze", "tiles"), BRONZE_TILES).where(
        F.col("date").between(F.lit(since), F.lit(run_date))
    )
    per_res = [
        tiles.where(F.col("cell_res") >= r).select(
            parent_cell(F.col("cell"), r).alias("cell"), F.lit(r).alias("res"), "date", "count"
        )
        for r in settings.resolutions
    ]
    stacked = per_res[0]
    for part in per_res[1:]:
        stacked = stacked.unionByName(part)
    daily = (
        stacked.groupBy("cell", "res", "date")
        .agg(F.sum("count").alias("devices"))
        .withColumn("pings", F.lit(None).cast("long"))
        .cache()
    )
    dates = sorted(r["date"] for r in daily.select("date").distinct().collect())
    daily_out, _, secondary = suppress_density(
        daily, None, settings.min_devices, settings.resolutions, keep_res=settings.h3_res
    )
    publish_daily(spark, settings, daily_out, dates)
    totals = _tally(daily, settings.min_devices)
    daily.unpersist()
    published = totals["published"] - secondary.suppressed_daily
    result = AggregateCounts(
        pings_in=0,
        aggregates=totals["aggregates"],
        published=published,
        suppressed=totals["aggregates"] - published,
        complementary_suppressed=secondary.suppressed_daily,
        complementary_rounds=secondary.rounds,
    )
    write_checks(
        spark,
        settings.lake("qa", "checks"),
        run_date,
        "aggregate",
        {
            **{k: v for k, v in asdict(result).items() if k != "dp_refused"},
            "dates": len(dates),
            "input_tiles": 1,
            "min_devices": settings.min_devices,
        },
    )
    return result


def _first_day(spark: SparkSession, density_path, new_first: dt.date) -> dt.date:
    """The lake's first day of density: the baseline never counts days before it as zeros."""
    existing = read_table(spark, density_path, DENSITY).agg(F.min("date")).first()[0]
    return min(existing, new_first) if existing else new_first
