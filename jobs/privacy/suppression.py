"""Suppression of small counts: primary (each aggregate on its own) and complementary (where published tables nest).

Primary
    An aggregate backed by ``min_devices`` distinct devices or fewer is never published (``suppress_small_counts``);
    the threshold may be raised, never set below ``MIN_DEVICES_FLOOR`` (design.md).

Nesting
    Published aggregates nest: every device counted in a parent is counted in one of its children at a level that
    *covers* it. A *level* is (res, day or hour). The children of a cell-day are its descendants' days at every
    finer published res, and its own and its descendants' hours; the children of a cell-hour are its descendants'
    same hour and their whole days (a device seen in the cell at 08:00 was in one of its children that day). For
    a published parent and one covering level, the *remainder* of a count is ``parent − Σ published children at
    that level``. Pings are additive, so their remainder is exactly what the suppressed children hold; distinct
    devices are sub-additive (a device in two children is one device of the parent), so a remainder <= 0 says
    nothing, while one in 1..min_devices bounds — often reveals — what was suppressed.

Complementary suppression
    ``complementary_suppression`` removes more published rows until, for every published parent, every covering
    level and every count checked, the remainder is <= 0 or > ``min_devices``. Each round finds every offending
    (parent, level) pair and removes the smallest published child of that level (by devices, then cell, then
    hour: deterministic); the parent itself only when every child is ``protected``. A removed child holds more
    than ``min_devices`` devices, so its pair's remainder leaves 1..min_devices at once, but the removal raises
    the remainders of the child's other parents: every pair is checked again in the next round, until a round
    finds nothing. Rows are only ever removed, so it terminates; ``max_rounds`` bounds it with a clear error.
    Rows are matched by ``KEYS`` (cell, res, date, hour); ``hour`` is ``DAILY`` for a daily row.

Scopes
    A reader who sees only part of a table (an API token scoped to some routes) subtracts within that part. With
    ``scopes`` (an array of scope names per row) the rule is enforced within every scope at once; a row removed
    in one scope is removed from all.

Totals by group
    A table that splits published totals by group (silver ``density_by_group``: a cell-day's devices by home-network
    group) nests in one way only: a total over its groups, which partition its devices. ``suppress_groups`` keeps
    the group rows above ``min_devices`` and removes the smallest published group of every total whose remainder
    (total − Σ published groups, exactly what its suppressed groups hold together) is in 1..min_devices, in one
    pass; ``group_remainders`` is the attack.

``differencing_remainders`` is the attack itself: the offending parents of a published table, for tests and for
``bench/differencing_attack.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from contracts.privacy import MIN_DEVICES_FLOOR
from geo.points import parent_bits

log = logging.getLogger(__name__)

KEYS = ("cell", "res", "date", "hour")
DAILY = -1  # the ``hour`` of a daily row when daily and hourly rows are checked together
_EVERY_HOUR = -2  # the parent hour of a day's row counted as a child of its ancestors' hours: each of them
# A generous bound: the tests' data took 0-5 rounds (tests/jobs/test_suppression.py); each round removes rows, and
# a removal only disturbs the parents of what it removed.
MAX_ROUNDS = 25
_ALL = "*"  # the one scope when none is given


class SuppressionDidNotConverge(RuntimeError):
    """Complementary suppression still found offending parents after ``max_rounds`` rounds."""


def check_min_devices(min_devices: int) -> int:
    """``min_devices`` if it is at or above the privacy floor (design.md); ValueError otherwise."""
    if min_devices < MIN_DEVICES_FLOOR:
        raise ValueError(
            f"min_devices={min_devices} is below the privacy floor of {MIN_DEVICES_FLOOR}; "
            f"the threshold may only be raised (set it to {MIN_DEVICES_FLOOR} or more)"
        )
    return min_devices


def suppress_small_counts(aggregates: DataFrame, min_devices: int) -> DataFrame:
    """Keep only aggregates backed by more than ``min_devices`` distinct devices (primary suppression).

    Refuses a threshold below the floor. This alone is not enough where published tables nest: see
    ``complementary_suppression``.
    """
    check_min_devices(min_devices)
    return aggregates.where(F.col("devices") > F.lit(min_devices))


def stack_levels(daily: DataFrame, hourly: DataFrame | None = None) -> DataFrame:
    """Daily rows (``hour`` = ``DAILY``) and hourly rows in one frame: the levels that are checked together.

    Both must have the same columns apart from ``hour``.
    """
    stacked = daily.withColumn("hour", F.lit(DAILY))
    return stacked if hourly is None else stacked.unionByName(hourly.withColumn("hour", F.col("hour").cast("int")))


def daily_part(levels: DataFrame) -> DataFrame:
    """The daily rows of a stacked frame, without ``hour``."""
    return levels.where(F.col("hour") == F.lit(DAILY)).drop("hour")


def hourly_part(levels: DataFrame) -> DataFrame:
    """The hourly rows of a stacked frame."""
    return levels.where(F.col("hour") != F.lit(DAILY))


def _parent_cell(cell: Column, res: int) -> Column:
    # The same bit operation as jobs.stages.aggregate.parent_cell (kept here so that aggregate can import this module).
    keep, set_bits = parent_bits(res)
    return cell.bitwiseAND(F.lit(keep)).bitwiseOR(F.lit(set_bits))


def parent_keys(resolutions: Sequence[int]) -> Column:
    """Per row, an array of struct(p_cell, p_res, p_hour): every parent the row is a child of, over the lattice of
    ``resolutions`` (null entries where there is none). An hourly row's parents are its ancestors' same hour and,
    at its own resolution or coarser, their days; a daily row's are its ancestors' days and their hours — the
    latter once, with ``p_hour`` = ``_EVERY_HOUR``, matched to every hour of the ancestor by ``remainders``."""
    hourly = F.col("hour") != F.lit(DAILY)
    entries = []
    for r in sorted(set(resolutions)):
        finer = F.col("res") > F.lit(r)
        entries.append(F.when(finer, _key(r, F.col("hour"))))  # an ancestor's same hour, or its day
        entries.append(F.when(hourly & (F.col("res") >= F.lit(r)), _key(r, F.lit(DAILY))))  # a day over its hours
        entries.append(F.when(~hourly & finer, _key(r, F.lit(_EVERY_HOUR))))  # an ancestor's hours over their days
    return F.array(*entries)


def _key(res: int, hour: Column) -> Column:
    return F.struct(_parent_cell(F.col("cell"), res).alias("p_cell"), F.lit(res).alias("p_res"), hour.alias("p_hour"))


def child_sums(lattice: DataFrame, resolutions: Sequence[int], counts: Sequence[str]) -> DataFrame:
    """Per (scope, parent key, child level): each count summed over the published children at that level
    (``<count>_children``) and ``smallest``, struct(devices, cell, hour) of the smallest child that is not
    ``_protected`` (null if none).

    ``lattice`` has ``scope``, ``KEYS``, ``_protected`` and the counts. Parents need not exist: the join with
    the parents is ``remainders``.
    """
    exploded = lattice.select(
        "scope",
        "date",
        "cell",
        "hour",
        "_protected",
        *counts,
        F.col("res").alias("child_res"),
        (F.col("hour") != F.lit(DAILY)).alias("child_hourly"),
        F.explode(parent_keys(resolutions)).alias("p"),
    ).where(F.col("p").isNotNull())
    # min() of a struct orders by its fields in turn: fewest devices first, then cell and hour for a stable choice.
    candidate = F.when(~F.col("_protected"), F.struct("devices", "cell", "hour"))
    return exploded.groupBy(
        "scope",
        F.col("p.p_cell").alias("cell"),
        F.col("p.p_res").alias("res"),
        "date",
        F.col("p.p_hour").alias("hour"),
        "child_res",
        "child_hourly",
    ).agg(*[F.sum(c).alias(f"{c}_children") for c in counts], F.min(candidate).alias("smallest"))


def remainders(lattice: DataFrame, resolutions: Sequence[int], counts: Sequence[str]) -> DataFrame:
    """Every (published parent, covering level with published children) of ``lattice`` with, per count,
    ``<count>_remainder`` = the parent's count − ``<count>_children`` (null where the count is not published)."""
    parents = lattice.select("scope", *KEYS, *counts, F.col("_protected").alias("parent_protected"))
    sums = child_sums(lattice, resolutions, counts)
    keyed = parents.join(sums.where(F.col("hour") != F.lit(_EVERY_HOUR)), ["scope", *KEYS])
    days_under_hours = parents.where(F.col("hour") != F.lit(DAILY)).join(
        sums.where(F.col("hour") == F.lit(_EVERY_HOUR)).drop("hour"), ["scope", "cell", "res", "date"]
    )
    joined = keyed.unionByName(days_under_hours)
    return joined.select("*", *[(F.col(c) - F.col(f"{c}_children")).alias(f"{c}_remainder") for c in counts])


def revealing(remainder: Column, min_devices: int) -> Column:
    """True where a remainder bounds what was suppressed: 1 <= remainder <= min_devices (null: not published)."""
    return F.coalesce(remainder.between(F.lit(1), F.lit(min_devices)), F.lit(False))


def _offending(lattice: DataFrame, min_devices: int, resolutions: Sequence[int], counts: Sequence[str]) -> DataFrame:
    rem = remainders(lattice, resolutions, counts)
    bad = revealing(F.col(f"{counts[0]}_remainder"), min_devices)
    for c in counts[1:]:
        bad = bad | revealing(F.col(f"{c}_remainder"), min_devices)
    return rem.where(bad)


def _lattice(published: DataFrame, scopes: Column | None, protected: Column | None) -> DataFrame:
    frame = published if "hour" in published.columns else published.withColumn("hour", F.lit(DAILY))
    is_protected = F.lit(False) if protected is None else F.coalesce(protected, F.lit(False))
    frame = frame.withColumn("_protected", is_protected)
    return frame.withColumn("_scopes", scopes if scopes is not None else F.array(F.lit(_ALL)))


def _scoped(frame: DataFrame) -> DataFrame:
    return frame.withColumn("scope", F.explode("_scopes"))


def _resolutions(published: DataFrame, resolutions: Sequence[int] | None) -> list[int]:
    if resolutions is not None:
        return sorted(set(resolutions))
    return sorted(r["res"] for r in published.select("res").distinct().collect())


def _counts(published: DataFrame, counts: Sequence[str] | None) -> list[str]:
    if counts is not None:
        if "devices" not in counts:
            raise ValueError(f"counts {list(counts)} must include 'devices' (the smallest child is chosen by it)")
        return list(counts)
    return [c for c in ("devices", "pings") if c in published.columns]


def differencing_remainders(
    published: DataFrame,
    min_devices: int,
    *,
    counts: Sequence[str] | None = None,
    resolutions: Sequence[int] | None = None,
    scopes: Column | None = None,
) -> DataFrame:
    """The subtraction attack on a published table: every published parent whose remainder against its published
    children at some covering level is in 1..``min_devices`` for some count. Should be empty after suppression.

    ``published`` has ``cell`` (int64), ``res``, ``date``, optionally ``hour`` (a row without it is daily; a
    stacked frame uses ``DAILY``) and the counts (default: ``devices``, and ``pings`` when present; a null count
    is not published and never offends). Returns one row per offending (scope, parent, child level): ``scope``,
    ``KEYS``, ``child_res``, ``child_hourly`` and per count the parent's value, ``<count>_children`` and
    ``<count>_remainder``.
    """
    counts = _counts(published, counts)
    levels = _resolutions(published, resolutions)
    lattice = _scoped(_lattice(published, scopes, None))
    return _offending(lattice, min_devices, levels, counts).select(
        "scope",
        *KEYS,
        "child_res",
        "child_hourly",
        *[x for c in counts for x in (c, f"{c}_children", f"{c}_remainder")],
    )


@dataclass(frozen=True)
class ComplementaryResult:
    """What complementary suppression kept and how much it removed."""

    published: DataFrame  # the input rows that survive, with the input's columns (materialised)
    rounds: int  # rounds that removed rows (0: the input already satisfied the rule)
    suppressed_daily: int  # rows removed with hour = DAILY (or without an hour column)
    suppressed_hourly: int

    @property
    def suppressed(self) -> int:
        return self.suppressed_daily + self.suppressed_hourly


def complementary_suppression(
    published: DataFrame,
    min_devices: int,
    *,
    counts: Sequence[str] = ("devices",),
    resolutions: Sequence[int] | None = None,
    protected: Column | None = None,
    scopes: Column | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> ComplementaryResult:
    """Remove published rows until no parent's remainder against its published children at any covering level is
    in 1..``min_devices``, for each of ``counts`` (see the module docstring for the rule and the algorithm).

    ``published`` must already be primary-suppressed (every row above ``min_devices``) and hold ``cell`` (int64),
    ``res``, ``date``, optionally ``hour`` (``DAILY`` for daily rows; without it every row is daily) and the
    counts; ``KEYS`` must identify a row. ``resolutions`` (default: those present) are the lattice's levels.
    ``protected`` (a boolean column) marks rows never removed as the smallest child: their parent goes instead.
    ``scopes`` (an array-of-strings column) enforces the rule within each scope (see the module docstring).
    Refuses a threshold below the floor; raises ``SuppressionDidNotConverge`` after ``max_rounds`` rounds, and
    ValueError when a parent and all its children at the offending level are protected.
    """
    check_min_devices(min_devices)
    counts = _counts(published, counts)
    levels = _resolutions(published, resolutions)
    had_hour = "hour" in published.columns
    frame = _lattice(published, scopes, protected).localCheckpoint()
    removed = {True: 0, False: 0}
    for done in range(max_rounds + 1):
        offending = _offending(_scoped(frame), min_devices, levels, counts)
        child = F.struct(
            F.col("smallest.cell").alias("cell"),
            F.col("child_res").alias("res"),
            F.col("date"),
            F.col("smallest.hour").alias("hour"),
        )
        parent = F.struct(*[F.col(k) for k in KEYS])
        victim = F.when(F.col("smallest").isNotNull(), child).when(~F.col("parent_protected"), parent)
        victims = offending.select(victim.alias("v")).select("v.*").distinct().localCheckpoint()
        by_grain = victims.groupBy((F.col("hour") != F.lit(DAILY)).alias("hourly")).agg(F.count(F.lit(1)).alias("n"))
        tally = {r["hourly"]: r["n"] for r in by_grain.collect()}
        if None in tally:  # a null victim: neither a child nor the parent may go
            stuck = offending.where(F.col("smallest").isNull() & F.col("parent_protected")).first()
            raise ValueError(
                f"complementary suppression: parent cell {stuck['cell']} (res {stuck['res']}, {stuck['date']}) and all "
                f"its children at res {stuck['child_res']} are protected; unprotect one of the two levels"
            )
        if not tally:
            log.info(
                "complementary suppression: %d round(s), %d daily and %d hourly rows removed",
                done,
                removed[False],
                removed[True],
            )
            break
        if done == max_rounds:
            raise SuppressionDidNotConverge(
                f"complementary suppression did not converge in {max_rounds} rounds: {sum(tally.values())} rows "
                f"still to remove (min_devices={min_devices}, resolutions {levels}); raise max_rounds or look for "
                "a cycle"
            )
        log.info(
            "complementary suppression round %d: removing %d daily and %d hourly rows",
            done + 1,
            tally.get(False, 0),
            tally.get(True, 0),
        )
        for hourly, n in tally.items():
            removed[hourly] += n
        frame = frame.join(victims, list(KEYS), "left_anti").localCheckpoint()
    kept = frame.drop("_protected", "_scopes")
    return ComplementaryResult(
        published=kept if had_hour else kept.drop("hour"),
        rounds=done,
        suppressed_daily=removed[False],
        suppressed_hourly=removed[True],
    )


# ------------------------------------------------------------------------------------------------------------------
# Totals split by group (silver density_by_group)

GROUP_KEYS = ("cell", "res", "date")


def group_remainders(groups: DataFrame, totals: DataFrame, min_devices: int) -> DataFrame:
    """The subtraction attack on a table that splits published totals by group: every published total whose
    remainder — its devices minus the sum of its published group rows — is in 1..``min_devices``.

    ``groups`` has ``GROUP_KEYS``, ``group`` and ``devices``; ``totals`` ``GROUP_KEYS`` and ``devices`` (one row per
    key). The groups of a total partition its devices (each device in one group), so the remainder is exactly what
    its suppressed groups hold together. Returns ``GROUP_KEYS``, ``devices`` (the total), ``groups_devices``,
    ``remainder`` and ``smallest``, struct(devices, group) of the smallest published group row (null if none).
    Should be empty after ``suppress_groups``.
    """
    keys = list(GROUP_KEYS)
    # min() of a struct orders by its fields in turn: fewest devices first, then the group's name (reproducible).
    sums = groups.groupBy(*keys).agg(
        F.sum("devices").alias("groups_devices"), F.min(F.struct("devices", "group")).alias("smallest")
    )
    joined = totals.select(*keys, "devices").join(sums, keys, "left")
    remainder = (F.col("devices") - F.coalesce(F.col("groups_devices"), F.lit(0))).alias("remainder")
    return joined.select(*keys, "devices", "groups_devices", remainder, "smallest").where(
        revealing(F.col("remainder"), min_devices)
    )


@dataclass(frozen=True)
class GroupSuppression:
    """Suppression by group as a plan: every group row above ``min_devices`` under a published total, ``_removed``
    where complementary suppression takes it out. ``published`` and ``removed`` are views of it."""

    marked: DataFrame

    @property
    def published(self) -> DataFrame:
        """The group rows that survive, with the input's columns."""
        return self.marked.where(~F.col("_removed")).drop("_removed")

    @property
    def removed(self) -> DataFrame:
        """The rows above ``min_devices`` that complementary suppression removed, with the input's columns."""
        return self.marked.where(F.col("_removed")).drop("_removed")

    def tally(self) -> tuple[int, int]:
        """(published, removed by complementary suppression): one Spark action."""
        row = self.marked.agg(
            F.count(F.when(~F.col("_removed"), F.lit(1))).alias("published"),
            F.count(F.when(F.col("_removed"), F.lit(1))).alias("removed"),
        ).first()
        return row["published"], row["removed"]

    @property
    def suppressed(self) -> int:
        """How many rows above ``min_devices`` complementary suppression removed (one Spark action)."""
        return self.tally()[1]


def suppress_groups(groups: DataFrame, totals: DataFrame, min_devices: int) -> GroupSuppression:
    """The publishable rows of a table that splits published totals by group: a plan, no Spark action.

    ``groups`` (``GROUP_KEYS``, ``group``, ``devices``, unsuppressed) holds, per key, a partition of the devices of
    ``totals`` (``GROUP_KEYS``, ``devices``: the totals as published, each above ``min_devices``). Primary
    suppression keeps the rows above ``min_devices`` whose total is published; then, where a total's remainder
    (total − Σ kept groups, exactly what its suppressed groups hold together) is in 1..``min_devices``, its smallest
    kept group goes (fewest devices, then the group's name). One pass settles every total: the group removed holds
    more than ``min_devices`` devices, so the new remainder is above ``min_devices``, and no other total changes.
    ``group_remainders`` is the attack that checks it. Refuses a threshold below the floor.
    """
    check_min_devices(min_devices)
    keys = list(GROUP_KEYS)
    kept = suppress_small_counts(groups, min_devices).join(totals.select(*keys, F.col("devices").alias("_total")), keys)
    total = Window.partitionBy(*keys)
    smallest_first = Window.partitionBy(*keys).orderBy("devices", "group")
    remainder = F.col("_total") - F.sum("devices").over(total)
    marked = kept.withColumn("_removed", (F.row_number().over(smallest_first) == 1) & revealing(remainder, min_devices))
    return GroupSuppression(marked.select(*groups.columns, "_removed"))
