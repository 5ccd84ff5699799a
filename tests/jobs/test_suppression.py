"""Complementary suppression: no published parent minus its published children may leave 1..min_devices.

The remainders are checked here by ``offenders``, a pandas re-implementation of the subtraction attack that
shares no code with ``jobs.privacy.suppression`` (H3 parents by geo's numpy bit masks, one loop per pair of levels).
"""

from __future__ import annotations

import datetime as dt
import itertools

import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError
from pyspark.sql import functions as F

from contracts import tables
from contracts.networks import GROUPS
from contracts.privacy import MIN_DEVICES_FLOOR
from geo.points import cells_to_parents
from jobs.lake import read_table
from jobs.privacy.suppression import (
    DAILY,
    SuppressionDidNotConverge,
    complementary_suppression,
    differencing_remainders,
    group_remainders,
    stack_levels,
    suppress_groups,
    suppress_small_counts,
)
from jobs.schemas import BRONZE_PINGS, DENSITY, DENSITY_BY_GROUP, DENSITY_HOURLY
from jobs.settings import JobSettings
from jobs.stages import aggregate
from tests.published import PUBLISHED

DAY = dt.date(2025, 3, 10)
T = dt.datetime(2025, 3, 10, 8, 0)
K = 15
SABHA = (27.0377, 14.4283)
AGADEZ = (16.9742, 7.9865)
RESOLUTIONS = (5, 6, 7, 8, 9)
SCHEMA = "cell long, res int, date date, hour int, devices long"


# ------------------------------------------------------------------------------------------------------------------
# The reference attack


def offenders(rows: pd.DataFrame, k: int, counts: tuple[str, ...] = ("devices",)) -> pd.DataFrame:
    """Every (published parent, covering published level) whose remainder — the parent's count minus the sum over
    its published children at that level — is in 1..k. ``rows``: cell (int), res, date, hour (DAILY for a day).

    A level covers a parent when every device of the parent is counted at that level in one of its children: the
    children's cells are the parent cell's descendants (same or finer resolution), and their time is the parent's
    (a day's hours, an hour's same hour) or contains it (an hour's day)."""
    rows = rows.assign(hourly=rows["hour"] != DAILY).reset_index(drop=True)
    levels = sorted(set(zip(rows["res"], rows["hourly"], strict=True)))
    found = []
    for p_res, p_hourly in levels:
        parents = rows[(rows["res"] == p_res) & (rows["hourly"] == p_hourly)]
        for c_res, c_hourly in levels:
            if c_res < p_res or (c_res, c_hourly) == (p_res, p_hourly):
                continue
            kids = rows[(rows["res"] == c_res) & (rows["hourly"] == c_hourly)]
            kids = kids.assign(cell=cells_to_parents(kids["cell"].to_numpy(np.int64), p_res))
            if p_hourly and not c_hourly:  # the days of an hour's descendants: the same sum for every hour
                keys = ["cell", "date"]
            else:
                keys = ["cell", "date", "hour"]
                kids = kids.assign(hour=kids["hour"] if p_hourly else DAILY)
            sums = kids.groupby(keys)[list(counts)].sum(min_count=1)
            joined = parents.set_index(keys)[[*counts, *(["hour"] if len(keys) == 2 else [])]].join(
                sums, rsuffix="_children", how="inner"
            )
            for c in counts:
                remainder = joined[c] - joined[f"{c}_children"]
                revealing = ((remainder >= 1) & (remainder <= k)).to_numpy()
                described = {"res": p_res, "count": c, "child_res": c_res, "child_hourly": c_hourly}
                found.append(joined[revealing].reset_index().assign(**described, remainder=remainder[revealing].values))
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["cell", "res", "remainder"])


def _rows(spark, hexes: list[tuple[str, int] | tuple[str, int, int]]):
    """A published frame of (H3 hex id, devices[, hour]) on DAY."""
    data = [(h3.str_to_int(c), h3.get_resolution(c), DAY, rest[0] if rest else DAILY, d) for c, d, *rest in hexes]
    return spark.createDataFrame(data, SCHEMA)


def _kept(result) -> set[tuple]:
    return {
        (h3.int_to_str(r.cell), r.devices) if r.hour == DAILY else (h3.int_to_str(r.cell), r.devices, r.hour)
        for r in result.published.collect()
    }


# A res-5 cell around Sabha, two of its res-6 children and res-7 children of the first.
G = h3.latlng_to_cell(*SABHA, 5)
A, B = sorted(h3.cell_to_children(G, 6))[:2]
A1, A2, A3 = sorted(h3.cell_to_children(A, 7))[:3]


# ------------------------------------------------------------------------------------------------------------------
# Hand-checkable cases


@pytest.mark.parametrize(
    ("children", "kept_children", "rounds"),
    [
        # 40 - 20 = 20 > 15: the 12 and the 8 go (primary), nothing more is needed.
        ((20, 12, 8), {20}, 0),
        # 40 - 25 = 15 would reveal that the suppressed 10 and 5 hold 15 devices: the 25 goes too.
        ((25, 10, 5), set(), 1),
        # 40 - (18 + 17) = 5: the smallest published child (17) goes, then 40 - 18 = 22.
        ((18, 17, 5), {18}, 1),
        # A device seen in two children is one device of the parent: 40 - (24 + 22) = -6 reveals nothing.
        ((24, 22, 0), {24, 22}, 0),
    ],
)
def test_a_parent_of_40_devices_and_its_three_children(spark, children, kept_children, rounds):
    rows = [(A, 40), *((c, n) for c, n in zip((A1, A2, A3), children, strict=True))]
    result = complementary_suppression(suppress_small_counts(_rows(spark, rows), K), K)
    assert _kept(result) == {(A, 40)} | {
        (c, n) for c, n in zip((A1, A2, A3), children, strict=True) if n in kept_children
    }
    assert result.rounds == rounds
    assert result.suppressed == len([n for n in children if n > K]) - len(kept_children)


def test_a_day_minus_its_published_hours(spark):
    # 30 devices that day, 16 at 08:00, 9 at 09:00 and 5 at 10:00: 30 - 16 = 14 would bound the other hours.
    rows = [(A, 30), (A, 16, 8), (A, 9, 9), (A, 5, 10)]
    result = complementary_suppression(suppress_small_counts(_rows(spark, rows), K), K)
    assert _kept(result) == {(A, 30)}
    assert (result.rounds, result.suppressed_daily, result.suppressed_hourly) == (1, 0, 1)


def test_an_hour_minus_the_published_days_of_its_finer_cells(spark):
    # 30 devices in A at 08:00, each of them in one of A's res-7 children that day: 30 - 18 = 12 of them were in
    # suppressed children.
    result = complementary_suppression(_rows(spark, [(A, 30, 8), (A1, 18)]), K)
    assert _kept(result) == {(A, 30, 8)}
    assert (result.rounds, result.suppressed_daily, result.suppressed_hourly) == (1, 1, 0)


def test_a_pair_of_resolutions_that_are_not_adjacent_and_the_cascade_it_starts(spark):
    # res 5 vs 6: 45 - (30 + 20) = -5; A (res 6) vs its res-7 children: 30 - (18 + 17) = -5; B has none published.
    # Only res 5 vs res 7 offends: 45 - (18 + 17) = 10. Round 1 removes the smallest res-7 child (17); then
    # A - 18 = 12 offends, and round 2 removes the 18.
    rows = [(G, 45), (A, 30), (B, 20), (A1, 18), (A2, 17)]
    published = _rows(spark, rows)
    attack = differencing_remainders(published, K).toPandas()
    assert attack[["res", "child_res", "devices", "devices_children", "devices_remainder"]].values.tolist() == [
        [5, 7, 45, 35, 10]
    ]
    result = complementary_suppression(published, K)
    assert _kept(result) == {(G, 45), (A, 30), (B, 20)}
    assert result.rounds == 2 and result.suppressed == 2
    with pytest.raises(SuppressionDidNotConverge, match="did not converge in 1 rounds: 1 rows still to remove"):
        complementary_suppression(published, K, max_rounds=1)


def test_protected_children_make_the_parent_go_instead(spark):
    rows = [(A, 40), (A1, 25)]
    result = complementary_suppression(_rows(spark, rows), K, protected=F.col("res") == 7)
    assert _kept(result) == {(A1, 25)}
    with pytest.raises(ValueError, match="and all its children at res 7 are protected"):
        complementary_suppression(_rows(spark, rows), K, protected=F.lit(True))


def test_each_scope_is_checked_on_its_own_rows(spark):
    # Everyone sees A (40) and both children: 40 - (30 + 16) = -6. A reader of route "a" sees A and A1 only:
    # 40 - 30 = 10. A1 goes; then "a" sees A alone, and everyone 40 - 16 = 24.
    rows = [(A, 40, "a"), (A1, 30, "a"), (A2, 16, "b")]
    frame = spark.createDataFrame(
        [(h3.str_to_int(c), h3.get_resolution(c), DAY, d, r) for c, d, r in rows],
        "cell long, res int, date date, devices long, route string",
    )
    assert differencing_remainders(frame, K).count() == 0
    scopes = F.array(F.lit("*"), F.col("route"))
    assert differencing_remainders(frame, K, scopes=scopes).select("scope", "devices_remainder").collect() == [
        ("a", 10)
    ]
    result = complementary_suppression(frame, K, scopes=scopes)
    assert {(h3.int_to_str(r.cell), r.devices, r.route) for r in result.published.collect()} == {
        (A, 40, "a"),
        (A2, 16, "b"),
    }


def test_the_attack_reads_pings_exactly_where_devices_say_nothing(spark):
    frame = spark.createDataFrame(
        [(h3.str_to_int(A), 6, DAY, 40, 90), (h3.str_to_int(A1), 7, DAY, 24, 60), (h3.str_to_int(A2), 7, DAY, 22, 28)],
        "cell long, res int, date date, devices long, pings long",
    )
    got = differencing_remainders(frame, K).collect()
    # devices: 40 - 46 = -6; pings: 90 - 88 = 2 — exactly the pings of the suppressed children.
    assert [(r.devices_remainder, r.pings_remainder) for r in got] == [(-6, 2)]
    assert differencing_remainders(frame.withColumn("pings", F.lit(None).cast("long")), K).count() == 0


@pytest.mark.parametrize("k", [14, 10])
def test_a_threshold_below_15_is_refused(spark, k):
    with pytest.raises(ValidationError, match=f"min_devices={k} is below the privacy floor of 15"):
        JobSettings(min_devices=k)
    for refuse in (
        lambda: suppress_small_counts(_rows(spark, [(A, 40)]), k),
        lambda: complementary_suppression(_rows(spark, [(A, 40)]), k),
    ):
        with pytest.raises(ValueError, match=f"min_devices={k} is below the privacy floor of 15; the threshold"):
            refuse()


@pytest.mark.parametrize("k", [15, 20])
def test_a_threshold_of_15_or_more_is_accepted(spark, k):
    assert MIN_DEVICES_FLOOR == 15
    assert JobSettings(min_devices=k).min_devices == k
    kept = suppress_small_counts(_rows(spark, [(A, 40), (A1, 16), (A2, 21)]), k)
    assert sorted(r.devices for r in kept.collect()) == sorted(n for n in (40, 16, 21) if n > k)


# ------------------------------------------------------------------------------------------------------------------
# The property, through the real aggregation


def _points(devices: list[int], spread_km: float, hours: int, seed: int) -> list[tuple]:
    """Devices around a few anchors inside the res-5 cells of Sabha and Agadez, 1-3 pings each in ``hours`` hours."""
    rng = np.random.default_rng(seed)
    rows = []
    centres = [h3.cell_to_latlng(h3.latlng_to_cell(*p, 5)) for p in (SABHA, AGADEZ)]
    for (lat0, lon0), n in zip(centres[: len(devices)], devices, strict=True):
        anchors = np.array([lat0, lon0]) + rng.normal(0, spread_km / 111.0, size=(3, 2))
        for i in range(n):
            home = anchors[rng.integers(0, len(anchors))]
            for _ in range(int(rng.integers(1, 4))):
                lat, lon = home + rng.normal(0, spread_km / 3 / 111.0, 2)
                ts = T.replace(hour=int(rng.integers(0, hours)), minute=int(rng.integers(0, 60)))
                rows.append((f"{lat0:.1f}-{i}", ts, float(lat), float(lon), None, None, DAY))
    return rows


def _published(spark, rows: list[tuple], k: int, keep_res: int | None = None):
    reduced = aggregate.device_cells(spark.createDataFrame(rows, BRONZE_PINGS), max(RESOLUTIONS))
    daily = aggregate.count_by_cell(reduced, RESOLUTIONS, hourly=False)
    hourly = aggregate.count_by_cell(reduced, RESOLUTIONS, hourly=True)
    daily_out, hourly_out, result = aggregate.suppress_density(daily, hourly, k, RESOLUTIONS, keep_res=keep_res)
    unsuppressed = stack_levels(daily, hourly).toPandas()
    published = pd.concat([daily_out.toPandas().assign(hour=DAILY), hourly_out.toPandas()], ignore_index=True)
    return unsuppressed, published, result


@hsettings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    devices=st.lists(st.integers(min_value=5, max_value=110), min_size=1, max_size=2),
    spread_km=st.sampled_from([0.3, 1.0, 3.0]),
    hours=st.integers(min_value=1, max_value=3),
    k=st.integers(min_value=15, max_value=25),
    keep_res=st.sampled_from([None, 7]),  # 7: as the job runs it (h3_res)
    seed=st.integers(0, 2**16),
)
def test_no_published_parent_minus_its_published_children_leaves_1_to_k_devices(
    spark, devices, spread_km, hours, k, keep_res, seed
):
    unsuppressed, published, result = _published(spark, _points(devices, spread_km, hours, seed), k, keep_res)
    keys = ["cell", "res", "date", "hour"]
    assert offenders(published, k).empty
    assert (published["devices"] > k).all()
    assert published["pings"].isna().all()  # not published: pings would give the remainder exactly
    # Only rows are removed, never a count changed; primary and complementary account for every removal.
    same = published[[*keys, "devices"]].merge(unsuppressed[[*keys, "devices"]], on=keys, suffixes=("", "_in"))
    assert len(same) == len(published) and (same["devices"] == same["devices_in"]).all()
    assert len(published) == (unsuppressed["devices"] > k).sum() - result.suppressed
    if keep_res is not None:  # every day above the threshold at keep_res is published
        kept = unsuppressed[(unsuppressed["res"] == keep_res) & (unsuppressed["hour"] == DAILY)]
        assert (kept["devices"] > k).sum() == ((published["res"] == keep_res) & (published["hour"] == DAILY)).sum()


def test_primary_suppression_alone_leaves_remainders_that_the_attack_finds(spark):
    """The property above is not vacuous: on such data primary suppression alone publishes revealing remainders,
    and ``differencing_remainders`` finds exactly the ones the reference finds."""
    reduced = aggregate.device_cells(spark.createDataFrame(_points([90, 60], 1.0, 3, 7), BRONZE_PINGS), 9)
    stacked = stack_levels(
        *(suppress_small_counts(aggregate.count_by_cell(reduced, RESOLUTIONS, hourly=h), K) for h in (False, True))
    )
    expected = offenders(stacked.toPandas(), K, ("devices", "pings"))
    assert len(expected) > 0
    got = differencing_remainders(stacked, K).toPandas()
    as_set = {
        (r.cell, r.res, r.hour, r.child_res, r.child_hourly, c)
        for r in got.itertuples()
        for c in ("devices", "pings")
        if 1 <= getattr(r, f"{c}_remainder") <= K
    }
    assert as_set == {(r.cell, r.res, r.hour, r.child_res, r.child_hourly, r.count) for r in expected.itertuples()}


# ------------------------------------------------------------------------------------------------------------------
# The attack on a published release


def at_h3_cells(cells: pd.DataFrame, res: int):
    """((route, segment, date), [its cells at ``res``]) of a release's cells."""
    at_res = cells[cells["res"] == res]
    for key, part in at_res.groupby(["route_id", "segment_id", "date"]):
        yield key, list(part["cell"])


def _release_cells(release) -> pd.DataFrame:
    cells = pd.read_parquet(release / "cells.parquet")
    return cells.assign(
        cell=[h3.str_to_int(c) for c in cells["cell"]], date=pd.to_datetime(cells["date"]).dt.date, hour=DAILY
    )


@PUBLISHED
def test_the_subtraction_attack_finds_nothing_in_a_release_or_in_silver(spark, published_run):
    settings, routes, report = published_run.settings, published_run.routes, published_run.report
    k = settings.min_devices
    assert report.aggregate.complementary_suppressed > 0  # the data needed it
    cells = _release_cells(report.release.path)
    assert set(cells["res"]) == {5, 6, 7}

    # cells.parquet, as a reader of every route and as a reader of each route sees it.
    for scope, part in [("*", cells), *cells.groupby("route_id")]:
        assert offenders(part, k).empty, scope
    spark_cells = spark.createDataFrame(cells[["cell", "res", "date", "devices", "route_id"]])
    scopes = F.array(F.lit("*"), F.col("route_id"))
    assert differencing_remainders(spark_cells, k, scopes=scopes).count() == 0

    # Silver: every resolution, days and hours.
    daily = read_table(spark, settings.lake(tables.DENSITY), DENSITY)
    hourly = read_table(spark, settings.lake(tables.DENSITY_HOURLY), DENSITY_HOURLY)
    columns = ["cell", "res", "date", "devices", "pings"]
    silver = stack_levels(daily.select(*columns), hourly.select(*columns, "hour"))
    assert daily.where(F.col("pings").isNotNull()).count() == hourly.where(F.col("pings").isNotNull()).count() == 0
    assert differencing_remainders(silver, k).count() == 0
    assert offenders(silver.toPandas(), k).empty

    # Silver by home-network group: no published day total at h3_res minus its published groups leaves 1..k, and
    # over each segment's cells neither (the series are sums of those cells).
    groups = read_table(spark, settings.lake(tables.DENSITY_BY_GROUP), DENSITY_BY_GROUP).toPandas()
    totals = daily.where(F.col("res") == settings.h3_res).select("cell", "date", "devices").toPandas()
    assert report.aggregate.group_published == len(groups) > 0 and (groups["devices"] > k).all()
    assert report.aggregate.group_devices_unassigned == 0
    by_cell = totals.set_index(["cell", "date"])["devices"] - groups.groupby(["cell", "date"])["devices"].sum()
    remainders = by_cell.fillna(totals.set_index(["cell", "date"])["devices"])
    assert not remainders.between(1, k).any()
    for (_route, segment_id, day), part in at_h3_cells(cells, settings.h3_res):
        assert recovered(totals[totals.date == day], groups[groups.date == day], k, part) is None, (segment_id, day)

    # The series: a segment is the sum of its published cells at h3_res, a route of its segments, all of the routes.
    history = pd.read_parquet(report.release.path / "history.parquet")
    history["ds"] = pd.to_datetime(history["ds"]).dt.date
    y = history.set_index(["series_id", "ds"])["y"]
    at_h3 = cells[cells["res"] == settings.h3_res]
    per_segment = at_h3.groupby(["route_id", "segment_id", "date"])["devices"].sum()
    for (route_id, segment_id, day), total in per_segment.items():
        assert y[(f"segment:{route_id}/{segment_id}", day)] == total  # remainder 0: nothing hidden
    for route in routes:
        for day in sorted(set(at_h3["date"])):
            segments = sum(y.get((f"segment:{route.id}/{s.id}", day), 0.0) for s in route.segments)
            assert y[(f"route:{route.id}", day)] == segments


# ------------------------------------------------------------------------------------------------------------------
# Totals by home-network group (silver density_by_group)

GROUP_SCHEMA = "cell long, res int, `group` string, devices long, date date"
TOTAL_SCHEMA = "cell long, res int, date date, devices long"


def _groups(spark, cells: dict[int, dict[str, int]], k: int = K):
    """(groups, totals) frames: per cell, its groups' devices; the total (their sum) published when above k, as
    suppress_density publishes a day at h3_res."""
    groups = [(c, 7, g, n, DAY) for c, split in cells.items() for g, n in split.items() if n > 0]
    totals = [(c, 7, DAY, sum(split.values())) for c, split in cells.items() if sum(split.values()) > k]
    return spark.createDataFrame(groups, GROUP_SCHEMA), spark.createDataFrame(totals, TOTAL_SCHEMA)


def expected_groups(cells: dict[int, dict[str, int]], k: int) -> set[tuple[int, str, int]]:
    """The reference: keep groups above k under a total above k; where the total minus them is in 1..k, drop the
    smallest kept group (fewest devices, then name). One drop settles it: every kept group holds more than k."""
    out = set()
    for cell, split in cells.items():
        total = sum(split.values())
        if total <= k:
            continue
        kept = sorted((n, g) for g, n in split.items() if n > k)
        if kept and 1 <= total - sum(n for n, _ in kept) <= k:
            kept = kept[1:]
        out |= {(cell, g, n) for n, g in kept}
    return out


def _published_groups(result) -> set[tuple[int, str, int]]:
    return {(r.cell, r.group, r.devices) for r in result.published.collect()}


@pytest.mark.parametrize(
    ("split", "kept"),
    [
        # 40 = 20 + 12 + 8: the 12 and the 8 go (primary); 40 - 20 = 20 > 15 reveals nothing more.
        ({"domestic": 20, "visitor": 12, "east_africa": 8}, {("domestic", 20)}),
        # 60 = 25 + 20 + 10 + 5: 60 - (25 + 20) = 15 would give the 10 and the 5 together; the 20 goes, then 35.
        ({"domestic": 25, "visitor": 20, "east_africa": 10, "unknown": 5}, {("domestic", 25)}),
        # 57 = 25 + 16 + 10 + 6: 57 - 41 = 16 > 15, both kept.
        (
            {"domestic": 25, "neighbouring": 16, "east_africa": 10, "unknown": 6},
            {("domestic", 25), ("neighbouring", 16)},
        ),
        # 40 = 20 + 20: ties go by name; 40 - 40 = 0.
        ({"visitor": 20, "other": 20}, {("visitor", 20), ("other", 20)}),
        # 35 = 20 + 15: 35 - 20 = 15, and the only published group goes: nothing of the split is published.
        ({"visitor": 20, "other": 15}, set()),
        # 30 = 16 + 14 with the total at 30: 30 - 16 = 14; the 16 goes.
        ({"domestic": 16, "north_africa": 14}, set()),
    ],
)
def test_a_total_and_its_groups(spark, split, kept):
    cell = h3.str_to_int(A1)
    result = suppress_groups(*_groups(spark, {cell: split}), K)
    assert _published_groups(result) == {(cell, g, n) for g, n in kept}
    assert result.suppressed == len([n for n in split.values() if n > K]) - len(kept)


def test_groups_of_an_unpublished_total_are_not_published(spark):
    cell = h3.str_to_int(A1)
    groups = spark.createDataFrame([(cell, 7, "domestic", 20, DAY)], GROUP_SCHEMA)
    no_totals = spark.createDataFrame([], TOTAL_SCHEMA)
    assert suppress_groups(groups, no_totals, K).published.count() == 0


def test_the_groups_of_a_total_at_or_below_the_threshold_are_never_published(spark):
    cell, small = h3.str_to_int(A1), h3.str_to_int(A2)
    groups = spark.createDataFrame([(cell, 7, "domestic", 20, DAY), (small, 7, "visitor", 12, DAY)], GROUP_SCHEMA)
    totals = spark.createDataFrame([(cell, 7, DAY, 30), (small, 7, DAY, 12)], TOTAL_SCHEMA)
    # 30 - 20 = 10 would reveal the rest, so the 20 goes; the 12 is below the threshold like its total.
    assert suppress_groups(groups, totals, K).published.count() == 0


def test_group_suppression_refuses_a_threshold_below_the_floor(spark):
    groups, totals = _groups(spark, {h3.str_to_int(A1): {"visitor": 20, "other": 15}})
    with pytest.raises(ValueError, match="privacy floor"):
        suppress_groups(groups, totals, 14)


@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    splits=st.lists(
        st.dictionaries(st.sampled_from(sorted(GROUPS)), st.integers(min_value=1, max_value=45), max_size=5),
        min_size=1,
        max_size=6,
    ),
    k=st.integers(min_value=15, max_value=25),
)
def test_no_published_total_minus_its_published_groups_leaves_1_to_k_devices(spark, splits, k):
    cells = {h3.str_to_int(c): split for c, split in zip(sorted(h3.cell_to_children(A, 7)), splits, strict=False)}
    groups, totals = _groups(spark, cells, k)
    result = suppress_groups(groups, totals, k)
    published = _published_groups(result)
    assert published == expected_groups(cells, k)
    for cell, split in cells.items():
        total = sum(split.values())
        mine = [n for c, _, n in published if c == cell]
        assert all(n > k for n in mine)
        if total > k:  # a published total
            assert not 1 <= total - sum(mine) <= k
        else:
            assert mine == []
    assert group_remainders(result.published, totals, k).count() == 0


def _pings_by_network(places: dict[tuple[float, float], dict[str | None, int]]) -> list[tuple]:
    """One ping at 08:00 per device; ``places`` maps (lat, lon) to devices per MCC (None: no MCC)."""
    rows = []
    for p, (place, split) in enumerate(places.items()):
        for mcc, n in split.items():
            for i in range(n):
                rows.append((f"{p}-{mcc}-{i}", T, *place, None, mcc, DAY))
    return rows


def recovered(totals: pd.DataFrame, groups: pd.DataFrame, k: int, cells: list[int] | None = None) -> int | None:
    """The attack: the devices of ``cells`` (default: all) minus their published groups, if it is 1..k — a
    suppressed group's count, or a bound on it — else None. ``totals``: cell, devices; ``groups``: cell, devices."""
    cells = list(totals["cell"]) if cells is None else cells
    remainder = int(totals[totals.cell.isin(cells)].devices.sum() - groups[groups.cell.isin(cells)].devices.sum())
    return remainder if 1 <= remainder <= k else None


def test_subtracting_published_groups_recovers_nothing_by_cell_or_over_a_segment(spark, settings):
    # Three res-7 cells near Sabha (Libya), the cells of a segment. In the first, 25 Libyan phones and 15 German
    # ones: under primary suppression alone its total minus the 25 gives the 15 exactly, and so does the segment's
    # total minus every published group. The other cells split without anything to hide.
    a1, a2, a3 = (h3.cell_to_latlng(c) for c in (A1, A2, A3))
    places = {a1: {"606": 25, "262": 15}, a2: {"606": 30, "605": 20}, a3: {"606": 30}}
    density = aggregate.transform(spark.createDataFrame(_pings_by_network(places), BRONZE_PINGS), settings)
    try:
        totals = density.daily.where(F.col("res") == settings.h3_res).select("cell", "devices").toPandas()
        primary = suppress_small_counts(density.group_aggregates, K).toPandas()
        published = density.groups.toPandas()
        aggregates = density.group_aggregates.toPandas()
    finally:
        density.unpersist()
    cells = [h3.str_to_int(c) for c in (A1, A2, A3)]
    assert sorted(totals.devices) == [30, 40, 50]
    assert sorted(zip(aggregates.group, aggregates.devices, strict=True)) == [
        ("domestic", 25),
        ("domestic", 30),
        ("domestic", 30),
        ("neighbouring", 20),
        ("visitor", 15),
    ]
    # The attack works on what primary suppression alone would publish: by cell and over the segment.
    assert recovered(totals, primary, K, cells[:1]) == 15
    assert recovered(totals, primary, K) == 15
    # Published: the first cell's 25 went too; every subset of the segment's cells leaves 0 or more than 15.
    assert sorted(zip(published.group, published.devices, strict=True)) == [
        ("domestic", 30),
        ("domestic", 30),
        ("neighbouring", 20),
    ]
    for n in range(1, len(cells) + 1):
        for subset in itertools.combinations(cells, n):
            assert recovered(totals, published, K, list(subset)) is None, subset
