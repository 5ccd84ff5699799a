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
    differential-privacy noise (``jobs.privacy.noise``, charged to ``jobs.privacy.ledger``) is added to what
    survives.

Home-network groups
    ``count_by_group`` splits each cell-day's devices at the series' resolution (``h3_res``) by the coarse group of
    their home network (``geo.networks``: the MCC's country and region, seen from the cell's country). A device
    counts in one group per cell-day, so the groups partition the day's devices. ``suppress_groups`` publishes a
    group row only above ``min_devices`` and under a published total, and then removes the smallest published group
    of every cell-day whose total minus its published groups would leave 1..``min_devices`` devices. The MCC itself
    is read from bronze here and never written. Under differential privacy the table is not made (docs/privacy.md).

Baseline and anomaly (daily density)
    For each cell and day: the mean of the same weekday over the trailing 45 days (the six previous same
    weekdays), a day without a published row counting as 0, as the series do; ``excess`` = devices −
    baseline; ``zscore`` = excess / max(sample sd, √max(baseline, 1)) — the Poisson floor keeps a cell
    that was flat at a few devices from scoring huge z on ordinary noise. Days before the lake's first day do
    not count; with fewer than three same-weekday days of history the three columns are null.

Transform and run
    ``transform`` (pings) and ``transform_tiles`` (provider tiles) plan a window's publishable density from bronze
    rows: no reads, no writes, no ledger, no accounting; the only Spark actions they run are the suppressions'
    rounds (complementary, and by group), which their output depends on. Under differential privacy the output is
    not noised yet.
    ``run`` and ``run_tiles`` read the window, call the transform, then under differential privacy charge each
    date's release to the ledger (``charge_releases``: after the transform is planned, before anything is
    written) and noise what was charged (``add_dp_noise``), add the baseline from silver history
    (``with_history``), write silver and report (``AggregateCounts``, the QA checks).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from contracts import tables
from geo.networks import UNKNOWN, cell_countries, home_networks, local_groups
from geo.points import latlng_to_cells, parent_bits
from jobs import lake
from jobs.lake import read_table, write_checks
from jobs.privacy.ledger import PrivacyBudgetExceeded, PrivacyLedger
from jobs.privacy.mechanisms import ContributionBound, DPConfigError, NoiseParams, Query, plan_release, require_dp
from jobs.privacy.noise import add_noise, apply_bound, fingerprint_params, fingerprints_by, salt_column
from jobs.privacy.suppression import (
    DAILY,
    ComplementaryResult,
    GroupSuppression,
    complementary_suppression,
    daily_part,
    hourly_part,
    stack_levels,
    suppress_groups,
    suppress_small_counts,  # also imported from here by flows, the tests and bench/
)
from jobs.schemas import DENSITY, DENSITY_BY_GROUP
from jobs.settings import RES_MIN, JobSettings

# Same weekday over the trailing 45 days: the six previous same weekdays that fit in it (7..42 days back).
BASELINE_WEEKS = 6
BASELINE_MIN_WEEKS = 3
# The H3 resolution of the blocks the job partitions by (see device_cells): the coarsest it may aggregate at.
BLOCK_RES = RES_MIN
# The noised queries of a density release (one per resolution each; jobs.privacy.mechanisms.Query).
DAILY_QUERY, HOURLY_QUERY = "density.devices", "density_hourly.devices"


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
    """One row per (device_id, date, hour, cell at ``finest``) with its ping count and ``mcc`` (the smallest of its
    pings'; null when none has one): what every table is made from.

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
        "mcc",
    ).withColumn("block", parent_cell(F.col("cell"), BLOCK_RES))
    return (
        cells.repartition("date", "block")
        .groupBy("device_id", "date", "hour", "cell", "block")
        .agg(F.count(F.lit(1)).alias("pings"), F.min("mcc").alias("mcc"))
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


def cell_country(cell: Column) -> Column:
    """The country (Natural Earth ADM0_A3) of each H3 cell's centre (``geo.networks.cell_countries``), vectorised
    per Arrow batch; meant for a frame of distinct cells, not for every row."""

    @pandas_udf("string")
    def _countries(cells: pd.Series) -> pd.Series:
        return pd.Series(cell_countries(cells.to_numpy()), index=cells.index)

    return _countries(cell)


def network_groups(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    """``geo.networks`` as two small frames to join: (mcc, regional) the group of each listed MCC, and
    (country, mcc, local) where a place's country makes it ``domestic``, ``neighbouring`` or ``other``."""
    regional = spark.createDataFrame(
        [(n.mcc, n.group) for n in home_networks().values()], "mcc string, regional string"
    )
    local = spark.createDataFrame(local_groups(), "country string, mcc string, local string")
    return regional, local


def count_by_group(reduced: DataFrame, res: int) -> DataFrame:
    """Distinct devices per (cell, res, date, group) at ``res`` — unsuppressed, so never written; the columns of
    ``DENSITY_BY_GROUP``.

    ``reduced`` comes from ``device_cells`` (with ``block`` and ``mcc``). A device counts once per cell-day, in the
    group of its smallest MCC there (``geo.networks.classify`` seen from the cell's country), so a cell-day's groups
    add up to its devices. The MCC is counted per cell-day first and grouped after, so countries are looked up per
    distinct cell and groups per distinct (cell, MCC); it does not leave this function.
    """
    per_device = (
        # At the cells' own resolution parent_cell is the identity.
        reduced.select("device_id", "date", "block", parent_cell(F.col("cell"), res).alias("cell"), "mcc")
        .groupBy("cell", "date", "block", "device_id")
        .agg(F.min("mcc").alias("mcc"))
    )
    per_mcc = per_device.groupBy("cell", "date", "block", "mcc").agg(F.count(F.lit(1)).alias("devices")).drop("block")
    # One partition: the country outlines are read once per Arrow batch of distinct cells, not once per partition.
    countries = (
        per_mcc.select("cell").distinct().coalesce(1).select("cell", cell_country(F.col("cell")).alias("country"))
    )
    regional, local = network_groups(reduced.sparkSession)
    group = F.coalesce(F.col("local"), F.col("regional"), F.lit(UNKNOWN))
    return (
        per_mcc.join(F.broadcast(countries), "cell")
        .join(F.broadcast(local), ["country", "mcc"], "left")
        .join(F.broadcast(regional), "mcc", "left")
        .groupBy("cell", "date", group.alias("group"))
        .agg(F.sum("devices").alias("devices"))
        .select("cell", F.lit(res).alias("res"), "group", "devices", "date")
    )


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


def with_history(daily: DataFrame, silver: DataFrame, start: dt.date, first_day: dt.date) -> DataFrame:
    """The ``DENSITY`` rows of publishable daily density from ``start`` on, with their baseline (``with_baseline``)
    over silver's rows of the 42 days before ``start`` and ``daily`` itself.

    ``silver`` is the silver density table as read (only the history is taken from it); ``first_day`` the lake's
    first day of density (``_first_day``).
    """
    history = silver.where(
        (F.col("date") >= F.lit(start - dt.timedelta(days=7 * BASELINE_WEEKS))) & (F.col("date") < F.lit(start))
    ).select(*daily.columns)
    return (
        with_baseline(history.unionByName(daily), first_day)
        .where(F.col("date") >= F.lit(start))
        .select(*DENSITY.fieldNames())
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
    # density_by_group, at h3_res (all 0 when it is not made: tiles input, differential privacy)
    group_aggregates: int = 0  # (cell, day, group) rows before suppression
    group_published: int = 0  # of which published (both suppressions)
    group_complementary_suppressed: int = 0  # rows above min_devices removed so that no total reveals its remainder
    group_devices_unassigned: int = 0  # the day totals' devices at h3_res minus their groups': 0 when groups add up


@dataclass(frozen=True)
class Density:
    """A window's density as ``transform`` plans it: nothing of it is written.

    ``daily`` and ``hourly`` are the publishable rows (both suppressions, ``pings`` null, no baseline yet; ``hourly``
    is None without ``settings.hourly``); under differential privacy they are not noised yet. ``aggregates`` and
    ``hourly_aggregates`` are every aggregate before suppression, for the row accounting only: never written.
    ``complementary`` is what complementary suppression removed; ``cached`` the frames held in Spark's cache.
    ``groups`` (``DENSITY_BY_GROUP`` rows, publishable), ``group_aggregates`` (before suppression, never written)
    and ``group_suppression`` are None when the table is not made (tiles input, differential privacy).
    """

    daily: DataFrame
    hourly: DataFrame | None
    aggregates: DataFrame
    hourly_aggregates: DataFrame | None
    complementary: ComplementaryResult
    cached: tuple[DataFrame, ...] = ()
    group_aggregates: DataFrame | None = None
    group_suppression: GroupSuppression | None = None

    @property
    def groups(self) -> DataFrame | None:
        """The publishable rows of silver ``density_by_group`` (None when it is not made)."""
        return None if self.group_suppression is None else self.group_suppression.published

    def unpersist(self) -> None:
        """Free what the transform cached (once the output is written and counted)."""
        for frame in self.cached:
            frame.unpersist()


def transform(pings: DataFrame, settings: JobSettings) -> Density:
    """Bronze pings of a window (``BRONZE_PINGS`` rows) → its publishable daily and hourly density at every
    resolution of ``settings``, and (without differential privacy) the day's devices by home-network group at
    ``h3_res``, suppressed against the published day totals (``suppress_groups``).

    Under differential privacy each person-day's rows are bounded first (``jobs.privacy.noise.bound_contributions``)
    and everything is counted from the bounded rows; which rows may be published is decided on these true (bounded)
    counts, before any noise (``add_dp_noise``, once ``charge_releases`` has charged the release).
    """
    resolutions = settings.resolutions
    # Persisted: the daily and the hourly tables both start from it (one bronze scan, one UDF pass, one shuffle).
    reduced = device_cells(pings, max(resolutions))
    dp_on = settings.dp_mechanism != "none"
    if dp_on:  # bound each person-day's contribution before anything is counted (jobs.privacy.noise)
        bound = ContributionBound.from_settings(settings)
        reduced = apply_bound(reduced, bound, require_dp(settings)).repartition("date", "block")  # back into blocks
    reduced = reduced.persist(StorageLevel.MEMORY_AND_DISK)
    hourly_rows = reduced.where(F.col("in_hourly")) if dp_on else reduced
    hourly = count_by_cell(hourly_rows, resolutions, hourly=True).cache() if settings.hourly else None
    # Daily from hourly would double-count a device seen in two hours, so days are counted from devices.
    daily = count_by_cell(reduced, resolutions, hourly=False).cache()
    daily_out, hourly_out, secondary = suppress_density(
        daily, hourly, settings.min_devices, resolutions, keep_res=settings.h3_res
    )
    cached = (reduced, daily) if hourly is None else (reduced, daily, hourly)
    if dp_on:
        # No share of the release's epsilon is planned for the groups, and noising them would spread the budget
        # thinner over every table: not made under DP (docs/privacy.md).
        return Density(daily_out, hourly_out, daily, hourly, secondary, cached)
    groups = count_by_group(reduced, settings.h3_res).cache()
    totals = daily_out.where(F.col("res") == F.lit(settings.h3_res))
    by_group = suppress_groups(groups, totals, settings.min_devices)
    # Small (a row per cell-day and group above the threshold), read by the write and then by the accounting.
    marked = by_group.marked.cache()
    return Density(
        daily_out, hourly_out, daily, hourly, secondary, (*cached, groups, marked), groups, GroupSuppression(marked)
    )


def release_queries(settings: JobSettings) -> dict[str, Query]:
    """The noised queries of one date's density release: devices per resolution, daily and (if on) hourly."""
    n_res = len(settings.resolutions)
    queries = {DAILY_QUERY: Query("density", "devices", count=n_res)}
    if settings.hourly:
        queries[HOURLY_QUERY] = Query("density_hourly", "devices", count=n_res)
    return queries


def charge_releases(
    settings: JobSettings, daily: DataFrame, hourly: DataFrame | None, dates: list[dt.date]
) -> tuple[dict[dt.date, dict[str, NoiseParams]], list[dt.date]]:
    """Charge each date's release to the privacy ledger: a step of ``run``, after the transform is planned and
    before anything is written.

    ``daily`` and ``hourly`` are the transform's publishable, unnoised rows (cached: they are fingerprinted here and
    noised from the same rows). Returns the noise plan of every date charged, and the dates the ledger refused
    (over budget: nothing of them may be written). A date whose fingerprint the ledger already holds (a re-run on
    the same input) costs nothing and gets its first charge's plan back, hence the same noise.
    """
    secret = require_dp(settings)
    bound = ContributionBound.from_settings(settings)
    queries = release_queries(settings)
    frames = {"density": daily} if hourly is None else {"density": daily, "density_hourly": hourly}
    params = fingerprint_params(
        bound, queries, min_devices=settings.min_devices, resolutions=list(settings.resolutions)
    )
    prints = fingerprints_by(frames, secret, "date", params=params)
    ledger = PrivacyLedger(settings)
    plans: dict[dt.date, dict[str, NoiseParams]] = {}
    refused = []
    for d in dates:
        try:
            charge = ledger.charge(f"density/{d}", d, prints[d])
        except PrivacyBudgetExceeded:
            refused.append(d)
            continue
        plans[d] = plan_release(charge, bound, queries)
    return plans, refused


def add_dp_noise(
    daily: DataFrame,
    hourly: DataFrame | None,
    plans: Mapping[dt.date, Mapping[str, NoiseParams]],
    settings: JobSettings,
) -> tuple[DataFrame, DataFrame | None]:
    """The noised device counts of the dates in ``plans`` (``charge_releases``); other dates' rows are left out.

    Suppression already ran on the true (bounded) counts; noisy counts are clamped to min_devices + 1, so nothing
    published looks like it breaks the threshold. ``pings`` stays null (it is not published).
    """
    secret = require_dp(settings)
    no_pings = F.lit(None).cast("long")

    def noised(table: DataFrame, name: str, keys: list[str]) -> DataFrame:
        out = table.where(F.lit(False)).withColumn("pings", no_pings)
        # One add_noise call per group of dates charged alike (normally one group), each date with its own salt.
        groups: dict[tuple, list[dt.date]] = {}
        for d, plan in plans.items():
            p = plan[name]
            groups.setdefault((p.mechanism, p.epsilon, p.delta), []).append(d)
        for group in groups.values():
            salts = {d: plans[d][name].salt for d in group}
            part = add_noise(
                table.where(F.col("date").isin(group)),
                ["devices"],
                keys,
                secret=secret,
                floor=settings.min_devices + 1,
                **plans[group[0]][name].kwargs(salt=salt_column("date", salts)),
            )
            out = out.unionByName(part.withColumn("pings", no_pings))
        return out

    noisy_daily = noised(daily, DAILY_QUERY, ["cell", "res", "date"])
    noisy_hourly = noised(hourly, HOURLY_QUERY, ["cell", "res", "date", "hour"]) if hourly is not None else None
    return noisy_daily, noisy_hourly


def run(spark: SparkSession, settings: JobSettings, run_date: dt.date, since: dt.date | None = None) -> AggregateCounts:
    """Aggregate the bronze dates from ``since`` (default: the retention window) to ``run_date`` into silver;
    idempotent (replaces those dates)."""
    first, last = settings.window(run_date, since)
    pings = lake.read(spark, settings, tables.BRONZE_PINGS).where(F.col("date").between(F.lit(first), F.lit(last)))
    density = transform(pings, settings)
    dp_on = settings.dp_mechanism != "none"
    refused: list[dt.date] = []
    held: list[DataFrame] = []
    try:
        dates = _dates(density.aggregates)
        daily_out, hourly_out = density.daily, density.hourly
        if dp_on and dates:
            # Cached: fingerprinted, then noised, from the same rows.
            held = [frame.cache() for frame in (daily_out, hourly_out) if frame is not None]
            daily_out, hourly_out = held[0], held[1] if hourly_out is not None else None
            plans, refused = charge_releases(settings, daily_out, hourly_out, dates)
            daily_out, hourly_out = add_dp_noise(daily_out, hourly_out, plans, settings)
            dates = [d for d in dates if d not in refused]
        publish_daily(spark, settings, daily_out, dates)
        if hourly_out is not None:
            _replace_dates(settings, tables.DENSITY_HOURLY, hourly_out, dates)
        # Under DP there are no groups: the dates' partitions are emptied, so no unnoised split of a noised total
        # stays from an earlier run without DP.
        groups_out = density.groups if density.groups is not None else spark.createDataFrame([], DENSITY_BY_GROUP)
        _replace_dates(settings, tables.DENSITY_BY_GROUP, groups_out, dates)
        result = _counts(density, settings, pings_in=pings.count() if dp_on else None, refused=refused)
    finally:
        # Also when the run fails: Spark's cache is keyed by plan, and a stale entry would answer the next run over
        # the same files.
        density.unpersist()
        for frame in held:
            frame.unpersist()
    write_checks(
        spark,
        settings.lake(tables.QA_CHECKS),
        run_date,
        "aggregate",
        {
            **{k: v for k, v in asdict(result).items() if k != "dp_refused"},
            "dp_refused_dates": len(refused),
            "dp_epsilon": settings.dp_epsilon if dp_on else 0.0,
            "groups_written": float(density.groups is not None),
            "dates": len(dates),
            "h3_res": settings.h3_res,
            "resolutions": len(settings.resolutions),
            "min_devices": settings.min_devices,
        },
    )
    return result


def _replace_dates(settings: JobSettings, table: tables.Table, frame: DataFrame, dates: list[dt.date]) -> None:
    """Replace ``dates`` of a silver table with the rows of ``frame`` on those dates."""
    lake.write(
        settings, table, frame.where(F.col("date").isin(dates)), replace={"date": dates}, one_file_per_partition=True
    )


def _dates(aggregates: DataFrame) -> list[dt.date]:
    """The dates a window has data for, sorted: the ones a run replaces."""
    return sorted(r["date"] for r in aggregates.select("date").distinct().collect())


def _counts(
    density: Density, settings: JobSettings, *, pings_in: int | None = None, refused: list[dt.date] | None = None
) -> AggregateCounts:
    """The row accounting of a window's density (two Spark actions on the cached aggregates, two more on the
    groups). ``pings_in``: the pings read, when they are not the sum of the aggregates' (under DP the bounded rows
    hold clipped pings)."""
    # Every ping is in exactly one finest cell, so their pings sum to the input.
    by_res = _tally(
        density.aggregates,
        settings.min_devices,
        pings_at=None if pings_in is not None else max(settings.resolutions),
        devices_at=settings.h3_res,
    )
    hourly = (
        _tally(density.hourly_aggregates, settings.min_devices)
        if density.hourly_aggregates is not None
        else {"aggregates": 0, "published": 0}
    )
    secondary = density.complementary
    published = by_res["published"] - secondary.suppressed_daily
    groups = _group_counts(density, by_res["devices"])
    return AggregateCounts(
        pings_in=by_res["pings"] if pings_in is None else pings_in,
        aggregates=by_res["aggregates"],
        published=published,
        suppressed=by_res["aggregates"] - published,
        hourly_aggregates=hourly["aggregates"],
        hourly_published=hourly["published"] - secondary.suppressed_hourly,
        dp_refused=tuple(refused or ()),
        complementary_suppressed=secondary.suppressed_daily,
        hourly_complementary_suppressed=secondary.suppressed_hourly,
        complementary_rounds=secondary.rounds,
        **groups,
    )


def _group_counts(density: Density, totals: int) -> dict[str, int]:
    """The row accounting of the groups (two Spark actions), as ``AggregateCounts`` fields; {} without groups.
    ``totals``: the day totals' devices at ``h3_res``, before suppression."""
    if density.group_aggregates is None or density.group_suppression is None:
        return {}
    published, removed = density.group_suppression.tally()
    rows = density.group_aggregates.agg(
        F.count(F.lit(1)).alias("n"), F.coalesce(F.sum("devices"), F.lit(0)).alias("devices")
    ).first()
    return {
        "group_aggregates": rows["n"],
        "group_published": published,
        "group_complementary_suppressed": removed,
        "group_devices_unassigned": totals - rows["devices"],
    }


def _tally(
    aggregates: DataFrame, min_devices: int, pings_at: int | None = None, devices_at: int | None = None
) -> dict[str, int]:
    """Aggregates, how many pass primary suppression, and (with ``pings_at``, ``devices_at``) the pings and the
    devices at those resolutions: one Spark action."""
    columns = [
        F.count(F.lit(1)).alias("aggregates"),
        F.coalesce(F.sum((F.col("devices") > min_devices).cast("int")), F.lit(0)).alias("published"),
    ]
    if pings_at is not None:
        at_res = F.when(F.col("res") == pings_at, F.col("pings"))
        columns.append(F.coalesce(F.sum(at_res), F.lit(0)).alias("pings"))
    if devices_at is not None:
        at_res = F.when(F.col("res") == devices_at, F.col("devices"))
        columns.append(F.coalesce(F.sum(at_res), F.lit(0)).alias("devices"))
    return aggregates.agg(*columns).first().asDict()


def publish_daily(spark: SparkSession, settings: JobSettings, daily: DataFrame, dates: list[dt.date]) -> None:
    """Add the baseline from silver history to publishable daily rows (``with_history``) and replace ``dates`` in
    silver."""
    published = spark.createDataFrame([], DENSITY)
    if dates:
        silver = lake.read(spark, settings, tables.DENSITY)
        published = with_history(daily, silver, dates[0], _first_day(spark, settings.lake(tables.DENSITY), dates[0]))
    lake.write(settings, tables.DENSITY, published, replace={"date": dates}, one_file_per_partition=True)


def _refuse_dp_for_tiles(settings: JobSettings) -> None:
    if settings.dp_mechanism != "none":
        raise DPConfigError(
            "differential privacy covers pings only: tiles carry no device ids, so one person's contribution "
            "cannot be bounded; set ROUTECAST_DP_MECHANISM=none for tiles input (or ask the provider for DP tiles)"
        )


def transform_tiles(tiles: DataFrame, settings: JobSettings) -> Density:
    """Bronze provider tiles of a window (``BRONZE_TILES`` rows) → its publishable daily density.

    Each tile counts toward every configured resolution not finer than its own; ``pings`` is null. Suppressed as
    density from pings is (``suppress_density``), by day only. Refused under differential privacy.
    """
    _refuse_dp_for_tiles(settings)
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
    daily_out, _, secondary = suppress_density(
        daily, None, settings.min_devices, settings.resolutions, keep_res=settings.h3_res
    )
    return Density(daily_out, None, daily, None, secondary, (daily,))


def run_tiles(
    spark: SparkSession, settings: JobSettings, run_date: dt.date, since: dt.date | None = None
) -> AggregateCounts:
    """Aggregate bronze provider tiles (``jobs.stages.tiles``) from ``since`` (default: the retention window) to
    ``run_date`` into silver density (``transform_tiles``); idempotent (replaces those dates)."""
    _refuse_dp_for_tiles(settings)  # before anything is read
    first, last = settings.window(run_date, since)
    tiles = lake.read(spark, settings, tables.BRONZE_TILES).where(F.col("date").between(F.lit(first), F.lit(last)))
    density = transform_tiles(tiles, settings)
    try:
        dates = _dates(density.aggregates)
        publish_daily(spark, settings, density.daily, dates)
        result = _counts(density, settings, pings_in=0)
    finally:
        density.unpersist()
    write_checks(
        spark,
        settings.lake(tables.QA_CHECKS),
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


def _first_day(spark: SparkSession, density_path: Path, new_first: dt.date) -> dt.date:
    """The lake's first day of density: the baseline never counts days before it as zeros."""
    existing = read_table(spark, density_path, DENSITY).agg(F.min("date")).first()[0]
    return min(existing, new_first) if existing else new_first
