import datetime as dt
import os
import shutil
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr
from pyspark.sql import functions as F

from contracts import tables
from contracts.networks import GROUPS
from geo.points import cells_to_parents
from jobs.lake import read_checks, read_table, write_partitions
from jobs.privacy.ledger import Charge, PrivacyLedger
from jobs.privacy.mechanisms import ContributionBound, plan_release
from jobs.schemas import BRONZE_PINGS, BRONZE_TILES, DENSITY, DENSITY_BY_GROUP, DENSITY_HOURLY
from jobs.stages import aggregate

DAY = dt.date(2025, 3, 10)
T = dt.datetime(2025, 3, 10, 8, 0)
# Two places far apart (Agadez and Sabha), so they never share a cell.
AGADEZ = (16.9742, 7.9865)
SABHA = (27.0377, 14.4283)


def _bronze(spark, devices_per_place: dict[tuple[float, float], int], extra_pings: int = 0, day: dt.date = DAY):
    rows = []
    t = dt.datetime.combine(day, T.time())
    for (lat, lon), n in devices_per_place.items():
        for i in range(n):
            rows.append((f"{lat}-{i}", t, lat, lon, None, None, day))
        for j in range(extra_pings):  # the same device again: more pings, not more devices
            rows.append((f"{lat}-0", t + dt.timedelta(minutes=j + 1), lat, lon, None, None, day))
    return spark.createDataFrame(rows, BRONZE_PINGS)


@pytest.mark.parametrize("res", [5, 7, 9])
def test_sixteen_devices_are_published_fifteen_are_not(spark, res):
    pings = _bronze(spark, {AGADEZ: 16, SABHA: 15}, extra_pings=3)
    counts = aggregate.count_by_cell_day(pings, res)
    published = aggregate.suppress_small_counts(counts, 15).collect()
    assert len(published) == 1
    row = published[0]
    assert row.cell == h3.str_to_int(h3.latlng_to_cell(*AGADEZ, res))
    assert (row.devices, row.pings, row.res) == (16, 19, res)


def test_threshold_below_floor_is_refused(spark):
    counts = aggregate.count_by_cell_day(_bronze(spark, {AGADEZ: 20}), 7)
    with pytest.raises(ValueError, match="privacy floor of 15"):
        aggregate.suppress_small_counts(counts, 14)


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=5),
    k=st.integers(min_value=15, max_value=30),
)
def test_nothing_at_or_below_the_threshold_is_ever_published(spark, sizes, k):
    # Places 1 degree apart along a meridian: distinct cells at res 7.
    places = {(10.0 + i, 20.0): n for i, n in enumerate(sizes)}
    published = aggregate.suppress_small_counts(aggregate.count_by_cell_day(_bronze(spark, places), 7), k)
    got = sorted(r.devices for r in published.collect())
    assert all(d > k for d in got)
    assert got == sorted(n for n in sizes if n > k)


def test_the_transform_plans_the_publishable_density_without_the_lake(spark, settings):
    density = aggregate.transform(_bronze(spark, {AGADEZ: 16, SABHA: 15}, extra_pings=2), settings)
    everywhere = settings.resolutions
    assert sorted((r.res, r.devices, r.pings, r.date) for r in density.daily.collect()) == [
        (r, 16, None, DAY) for r in everywhere
    ]
    assert sorted((r.res, r.hour, r.devices, r.pings) for r in density.hourly.collect()) == [
        (r, 8, 16, None) for r in everywhere
    ]
    # The unsuppressed aggregates, for the accounting: both places at every resolution, with their pings.
    finest = density.aggregates.where(F.col("res") == max(everywhere)).collect()
    assert sorted((r.devices, r.pings) for r in finest) == [(15, 17), (16, 18)]
    assert density.hourly_aggregates.count() == 2 * len(everywhere) and density.complementary.rounds == 0
    density.unpersist()
    assert not settings.var_dir.exists()  # nothing read or written


def test_the_tiles_transform_counts_each_tile_at_its_resolution_and_coarser(spark, settings):
    agadez, sabha = h3.str_to_int(h3.latlng_to_cell(*AGADEZ, 9)), h3.str_to_int(h3.latlng_to_cell(*SABHA, 7))
    tiles = spark.createDataFrame([(agadez, 9, 20, DAY), (sabha, 7, 10, DAY)], BRONZE_TILES)
    density = aggregate.transform_tiles(tiles, settings)
    assert sorted((r.res, r.devices, r.pings) for r in density.daily.collect()) == [
        (r, 20, None) for r in settings.resolutions
    ]
    assert density.hourly is None and density.aggregates.count() == len(settings.resolutions) + 3  # Sabha: 5, 6, 7
    density.unpersist()
    assert not settings.var_dir.exists()


def test_run_writes_every_resolution_daily_and_hourly_suppressed_and_accounts(spark, settings):
    write_partitions(_bronze(spark, {AGADEZ: 16, SABHA: 15}), settings.lake(tables.BRONZE_PINGS), ["date"])
    result = aggregate.run(spark, settings, DAY)
    n_res = len(settings.resolutions)
    assert result == aggregate.AggregateCounts(
        pings_in=31,
        aggregates=2 * n_res,
        published=n_res,
        suppressed=n_res,
        hourly_aggregates=2 * n_res,
        hourly_published=n_res,
        group_aggregates=2,  # no MCC: each place's devices are one "unknown" group at h3_res
        group_published=1,
    )
    silver = read_table(spark, settings.lake(tables.DENSITY), DENSITY).collect()
    # pings are counted (pings_in) but not published
    assert sorted((r.res, r.devices, r.pings, r.date) for r in silver) == [
        (r, 16, None, DAY) for r in settings.resolutions
    ]
    assert {r.cell for r in silver if r.res == 7} == {h3.str_to_int(h3.latlng_to_cell(*AGADEZ, 7))}
    hourly = read_table(spark, settings.lake(tables.DENSITY_HOURLY), DENSITY_HOURLY).collect()
    assert sorted((r.res, r.hour, r.devices) for r in hourly) == [(r, 8, 16) for r in settings.resolutions]
    checks = read_checks(spark, settings.lake(tables.QA_CHECKS), DAY, "aggregate")
    assert checks["suppressed"] == n_res and checks["min_devices"] == 15 and checks["dates"] == 1


def test_run_suppresses_every_view_that_would_reveal_a_suppressed_sibling(spark, settings):
    # One res-6 cell with 35 devices at 08:00: 25 of them in one res-7 cell, 10 in another (suppressed). Any
    # published view of the 35 (res 5 or 6, by day or at 08:00) minus the 25 (res 7, 8 or 9, by day or at 08:00: the
    # points are at the res-7 centres) would reveal the 10. The res-7 day is what the series count, so it is kept;
    # everything else above the threshold goes.
    parent = h3.latlng_to_cell(*SABHA, 6)
    big, small = (h3.cell_to_latlng(c) for c in sorted(h3.cell_to_children(parent, 7))[:2])
    write_partitions(_bronze(spark, {big: 25, small: 10}), settings.lake(tables.BRONZE_PINGS), ["date"])
    result = aggregate.run(spark, settings, DAY)
    silver = read_table(spark, settings.lake(tables.DENSITY), DENSITY).collect()
    assert [(r.res, r.devices, h3.cell_to_parent(h3.int_to_str(r.cell), 6)) for r in silver] == [(7, 25, parent)]
    assert read_table(spark, settings.lake(tables.DENSITY_HOURLY), DENSITY_HOURLY).count() == 0
    # Primary suppression kept 5 of the 8 daily aggregates (res 5, 6 and the 25 at 7, 8, 9), and as many hourly.
    assert (result.aggregates, result.published, result.suppressed) == (8, 1, 7)
    assert (result.complementary_suppressed, result.hourly_complementary_suppressed) == (4, 5)
    assert (result.hourly_published, result.complementary_rounds) == (0, 1)
    checks = read_checks(spark, settings.lake(tables.QA_CHECKS), DAY, "aggregate")
    assert (checks["complementary_suppressed"], checks["complementary_rounds"]) == (4, 1)


def test_rerunning_a_date_replaces_it_even_when_everything_is_now_suppressed(spark, settings):
    bronze = settings.lake(tables.BRONZE_PINGS)
    write_partitions(_bronze(spark, {AGADEZ: 20}), bronze, ["date"])
    aggregate.run(spark, settings, DAY)
    assert read_table(spark, settings.lake(tables.DENSITY), DENSITY).count() == len(settings.resolutions)
    # Late corrections removed devices: the day's aggregates are now all suppressed; the old rows must go.
    write_partitions(_bronze(spark, {AGADEZ: 12}), bronze, ["date"])
    aggregate.run(spark, settings, DAY)
    assert read_table(spark, settings.lake(tables.DENSITY), DENSITY).count() == 0
    assert read_table(spark, settings.lake(tables.DENSITY_HOURLY), DENSITY_HOURLY).count() == 0


def _random_pings(spark, n_devices: int, seed: int, days: int = 1):
    """Devices wandering around Sabha (a few km), several pings each, over ``days`` days."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(days):
        for i in range(n_devices):
            k = int(rng.integers(1, 6))
            lat = SABHA[0] + rng.normal(0, 0.03, k)
            lon = SABHA[1] + rng.normal(0, 0.03, k)
            hours = rng.integers(0, 24, k)
            for la, lo, h in zip(lat, lon, hours, strict=True):
                ts = T.replace(hour=int(h)) + dt.timedelta(days=d)
                rows.append((f"d{d}-{i}", ts, float(la), float(lo), None, None, ts.date()))
    return spark.createDataFrame(rows, BRONZE_PINGS)


def test_aggregating_coarser_than_the_partitioning_blocks_is_refused(spark):
    reduced = aggregate.device_cells(_random_pings(spark, 20, seed=4), 9)
    with pytest.raises(ValueError, match="block resolution 5"):
        aggregate.count_by_cell(reduced, (4, 9), hourly=False)


def test_parents_hold_exactly_their_childrens_pings(spark):
    counts = aggregate.count_by_cell(
        aggregate.device_cells(_random_pings(spark, 300, seed=3), 9), (5, 6, 7, 8, 9), hourly=False
    ).toPandas()
    for res in range(5, 9):
        children = counts[counts.res == res + 1].copy()
        children["parent"] = cells_to_parents(children.cell.to_numpy(), res)
        summed = children.groupby("parent").agg(
            pings=("pings", "sum"), dev_sum=("devices", "sum"), dev_max=("devices", "max")
        )
        parents = counts[counts.res == res].set_index("cell")
        assert set(parents.index) == set(summed.index)
        joined = parents.join(summed, rsuffix="_children")
        assert (joined.pings == joined.pings_children).all()
        # A device seen in two children is one device in the parent.
        assert ((joined.devices <= joined.dev_sum) & (joined.devices >= joined.dev_max)).all()
    assert counts.groupby("res").pings.sum().nunique() == 1  # every resolution holds every ping


def _density_rows(cell: int, values: dict[dt.date, int]):
    return [(cell, 7, v, v, None, None, None, d) for d, v in values.items()]


def test_baseline_is_the_same_weekday_mean_over_six_weeks_with_missing_days_as_zero(spark):
    cell = h3.str_to_int(h3.latlng_to_cell(*SABHA, 7))
    first = dt.date(2025, 1, 6)  # a Monday; the lake starts here
    mondays = [first + dt.timedelta(weeks=w) for w in range(8)]
    values = {mondays[0]: 99, mondays[1]: 20, mondays[2]: 30, mondays[4]: 40, mondays[5]: 20, mondays[6]: 26}
    values[mondays[7]] = 50  # the day scored: previous six Mondays are weeks 1..6 (week 3 suppressed → 0)
    values[mondays[7] + dt.timedelta(days=1)] = 77  # a Tuesday: other weekdays do not count
    df = spark.createDataFrame(_density_rows(cell, values), DENSITY).drop("baseline", "excess", "zscore")
    got = {r.date: r for r in aggregate.with_baseline(df, first).collect()}

    lagged = np.array([20, 30, 0, 40, 20, 26], dtype=float)
    scored = got[mondays[7]]
    assert scored.baseline == pytest.approx(lagged.mean())
    assert scored.excess == pytest.approx(50 - lagged.mean())
    assert scored.zscore == pytest.approx((50 - lagged.mean()) / lagged.std(ddof=1))
    # Week 3 has three Mondays of history before it (weeks 0..2): just enough.
    assert got[mondays[3 + 1]].baseline == pytest.approx((99 + 20 + 30 + 0) / 4)
    assert got[mondays[2]].baseline is None and got[mondays[2]].zscore is None  # two weeks: not enough
    # Never published on a Tuesday before: baseline 0, and the z-score's floor is sqrt(1).
    tuesday = got[mondays[7] + dt.timedelta(days=1)]
    assert (tuesday.baseline, tuesday.excess, tuesday.zscore) == (0.0, 77.0, 77.0)


def test_a_flat_cell_scores_against_the_poisson_floor(spark):
    cell = h3.str_to_int(h3.latlng_to_cell(*SABHA, 7))
    first = dt.date(2025, 1, 6)
    values = {first + dt.timedelta(weeks=w): 25 for w in range(7)}
    df = spark.createDataFrame(_density_rows(cell, values), DENSITY).drop("baseline", "excess", "zscore")
    last = max(aggregate.with_baseline(df, first).collect(), key=lambda r: r.date)
    assert last.excess == 0 and last.zscore == 0  # sd 0, floor sqrt(25) = 5: no division by zero


def test_run_uses_silver_history_for_the_baseline_after_bronze_is_gone(spark, settings):
    bronze = settings.lake(tables.BRONZE_PINGS)
    monday = dt.date(2025, 3, 3)
    for w in range(4):
        day = monday + dt.timedelta(weeks=w)
        rows = [(f"w{w}-{i}", dt.datetime.combine(day, dt.time(9)), *SABHA, None, None, day) for i in range(20 + w)]
        write_partitions(spark.createDataFrame(rows, BRONZE_PINGS), bronze, ["date"], replace={"date": [day]})
        aggregate.run(spark, settings, day, since=day)  # one day at a time, as nightly runs do
    shutil.rmtree(bronze)
    silver = read_table(spark, settings.lake(tables.DENSITY), DENSITY).where("res = 7").toPandas()
    last = silver.sort_values("date").iloc[-1]
    assert last.devices == 23 and last.baseline == pytest.approx(21.0) and last.excess == pytest.approx(2.0)


GOLDEN = Path(__file__).parent / "golden"


def test_aggregation_of_a_fixed_input_matches_the_approved_files(spark, settings):
    """Approved output for a small fixed input. After a deliberate change, regenerate with
    ROUTECAST_UPDATE_GOLDEN=1 pytest tests/jobs/test_aggregate.py and review the diff before committing."""
    write_partitions(_random_pings(spark, 120, seed=11, days=2), settings.lake(tables.BRONZE_PINGS), ["date"])
    aggregate.run(spark, settings, DAY + dt.timedelta(days=1))
    for table, schema in ((tables.DENSITY, DENSITY), (tables.DENSITY_HOURLY, DENSITY_HOURLY)):
        got = read_table(spark, settings.lake(table), schema).toPandas()
        got = got.assign(cell=got.cell.map(h3.int_to_str), date=got.date.astype(str))
        got = got.sort_values(list(got.columns)).reset_index(drop=True)
        path = GOLDEN / f"aggregate_{table.name}.csv"
        if os.environ.get("ROUTECAST_UPDATE_GOLDEN"):
            path.parent.mkdir(exist_ok=True)
            got.to_csv(path, index=False)
        approved = pd.read_csv(path, dtype={"cell": str, "date": str})
        assert len(got) > 0
        pd.testing.assert_frame_equal(got, approved, check_dtype=False)


@hsettings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=4),
    k=st.integers(min_value=15, max_value=30),
    seed=st.integers(0, 2**16),
)
def test_no_published_aggregate_at_any_resolution_or_hour_has_k_devices_or_fewer(
    spark, tmp_path_factory, sizes, k, seed
):
    from jobs.settings import JobSettings

    settings = JobSettings(var_dir=tmp_path_factory.mktemp("var"), min_devices=k)
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate(sizes):  # places 1 degree apart, devices spread over a few km and hours
        for j in range(n):
            ts = T.replace(hour=int(rng.integers(0, 3)))
            lat, lon = 10.0 + i + rng.normal(0, 0.01), 20.0 + rng.normal(0, 0.01)
            rows.append((f"{i}-{j}", ts, float(lat), float(lon), None, None, DAY))
    write_partitions(spark.createDataFrame(rows, BRONZE_PINGS), settings.lake(tables.BRONZE_PINGS), ["date"])
    result = aggregate.run(spark, settings, DAY)
    for table, schema in ((tables.DENSITY, DENSITY), (tables.DENSITY_HOURLY, DENSITY_HOURLY)):
        devices = [r.devices for r in read_table(spark, settings.lake(table), schema).collect()]
        assert all(d > k for d in devices)
    assert result.pings_in == len(rows)
    assert result.published + result.suppressed == result.aggregates


def test_differential_privacy_noises_published_devices_reproducibly_and_the_ledger_refuses_overspend(spark, settings):
    dp = _dp(settings, dp_budget=1.5)
    write_partitions(_bronze(spark, {AGADEZ: 60, SABHA: 12}), dp.lake(tables.BRONZE_PINGS), ["date"])
    first = aggregate.run(spark, dp, DAY)
    silver = read_table(spark, dp.lake(tables.DENSITY), DENSITY).orderBy("res").toPandas()
    assert first.dp_refused == () and len(silver) == len(dp.resolutions)  # Sabha's 12 devices: suppressed
    assert (silver.devices > dp.min_devices).all() and silver.pings.isna().all()
    assert not (silver.devices == 60).all()  # noised (ε = 1 over 10 queries: a scale of ~80 devices)

    again = aggregate.run(spark, dp, DAY)  # the same data again: the same release, charged once
    assert again.dp_refused == ()
    rerun = read_table(spark, dp.lake(tables.DENSITY), DENSITY).orderBy("res").toPandas()
    pd.testing.assert_frame_equal(silver, rerun)
    assert PrivacyLedger(dp).spent("2025-03") == 1.0

    write_partitions(_bronze(spark, {AGADEZ: 61}), dp.lake(tables.BRONZE_PINGS), ["date"])  # late data: a new release
    late = aggregate.run(spark, dp, DAY)
    assert late.dp_refused == (DAY,)  # 1.0 + 1.0 > 1.5: refused, and the published day is left as it was
    kept = read_table(spark, dp.lake(tables.DENSITY), DENSITY).orderBy("res").toPandas()
    pd.testing.assert_frame_equal(silver, kept)


DP_SECRET = SecretStr("a-long-test-secret-0123456789")


def _dp(settings, **kw):
    return settings.model_copy(update={"dp_mechanism": "laplace", "dp_secret": DP_SECRET} | kw)


def test_the_noise_is_a_function_of_the_charged_plans_alone(spark, settings):
    dp = _dp(settings)
    second = DAY + dt.timedelta(days=1)
    pings = _bronze(spark, {AGADEZ: 60}).unionByName(_bronze(spark, {AGADEZ: 40}, day=second))
    density = aggregate.transform(pings, dp)
    charge = Charge("2025-03", 1, f"density/{DAY}", DAY, "laplace", 1.0, 0.0, "fp", dt.datetime.now(dt.UTC), True)
    plans = {DAY: plan_release(charge, ContributionBound.from_settings(dp), aggregate.release_queries(dp))}

    def noised():
        daily, hourly = aggregate.add_dp_noise(density.daily, density.hourly, plans, dp)
        return daily.orderBy("res").toPandas(), hourly.orderBy("res").toPandas()

    (daily, hourly), again = noised(), noised()
    pd.testing.assert_frame_equal(daily, again[0])
    assert set(daily.date) == set(hourly.date) == {DAY}  # the date without a charge is left out
    assert len(daily) == len(dp.resolutions) and daily.pings.isna().all()
    assert (daily.devices > dp.min_devices).all() and not (daily.devices == 60).all()
    density.unpersist()
    assert not dp.var_dir.exists()  # no ledger, no lake


def test_a_date_the_ledger_refuses_is_not_written_and_the_others_are(spark, settings):
    dp = _dp(settings, dp_budget=1.5)  # one release of epsilon 1 per month
    second = DAY + dt.timedelta(days=1)
    pings = _bronze(spark, {AGADEZ: 60}).unionByName(_bronze(spark, {AGADEZ: 40}, day=second))
    write_partitions(pings, dp.lake(tables.BRONZE_PINGS), ["date"])
    result = aggregate.run(spark, dp, second, since=DAY)
    assert result.dp_refused == (second,)
    for table, schema in ((tables.DENSITY, DENSITY), (tables.DENSITY_HOURLY, DENSITY_HOURLY)):
        assert {r.date for r in read_table(spark, dp.lake(table), schema).collect()} == {DAY}
    assert PrivacyLedger(dp).spent("2025-03") == 1.0
    checks = read_checks(spark, dp.lake(tables.QA_CHECKS), second, "aggregate")
    assert (checks["dates"], checks["dp_refused_dates"]) == (1, 1)


def test_the_ledger_is_charged_before_anything_is_written(spark, settings, monkeypatch):
    dp = _dp(settings)
    write_partitions(_bronze(spark, {AGADEZ: 60}), dp.lake(tables.BRONZE_PINGS), ["date"])

    def unavailable(self, release, data_date, fingerprint):
        raise OSError("the ledger is unavailable")

    monkeypatch.setattr(PrivacyLedger, "charge", unavailable)
    with pytest.raises(OSError, match="unavailable"):
        aggregate.run(spark, dp, DAY)
    for table in (tables.DENSITY, tables.DENSITY_HOURLY, tables.QA_CHECKS):
        assert not dp.lake(table).exists()


# Places in Libya (Tripoli, Sabha, Kufra) and Niger (Agadez), far apart.
TRIPOLI, KUFRA = (32.8872, 13.1913), (24.1833, 23.2833)


def _bronze_networks(spark, places: dict[tuple[float, float], dict[str | None, int]], day: dt.date = DAY):
    """One ping at 08:00 per device; ``places`` maps (lat, lon) to devices per MCC (None: no MCC)."""
    t = dt.datetime.combine(day, T.time())
    rows = [
        (f"{lat}-{mcc}-{i}", t, lat, lon, None, mcc, day)
        for (lat, lon), split in places.items()
        for mcc, n in split.items()
        for i in range(n)
    ]
    return spark.createDataFrame(rows, BRONZE_PINGS)


NETWORK_PLACES = {
    # 60 in Tripoli: 25 Libyan, 20 German, 10 Ethiopian, 5 without MCC. The 10 and 5 go (primary); 60 - 45 = 15
    # would give them together, so the 20 goes too.
    TRIPOLI: {"606": 25, "262": 20, "636": 10, None: 5},
    # 40 in Sabha: 20 Libyan, 12 German, 8 Ethiopian: the 12 and the 8 go; 40 - 20 = 20 reveals nothing more.
    SABHA: {"606": 20, "262": 12, "636": 8},
    # 57 in Kufra: 25 Libyan, 16 Tunisian (a neighbour), 10 Ethiopian, 6 without: 57 - 41 = 16, both kept.
    KUFRA: {"606": 25, "605": 16, "636": 10, None: 6},
    # 38 in Agadez (Niger): 20 Libyan (a neighbour there), 18 Moroccan (North Africa seen from Niger).
    AGADEZ: {"606": 20, "604": 18},
}


def _cell(place: tuple[float, float], res: int = 7) -> int:
    """The place's cell at ``res`` as the lake has it: the parent of its cell at the finest resolution (9)."""
    return h3.str_to_int(h3.cell_to_parent(h3.latlng_to_cell(*place, 9), res))


def test_run_writes_devices_by_home_network_group_suppressed_against_the_day_totals(spark, settings):
    write_partitions(_bronze_networks(spark, NETWORK_PLACES), settings.lake(tables.BRONZE_PINGS), ["date"])
    result = aggregate.run(spark, settings, DAY)
    got = read_table(spark, settings.lake(tables.DENSITY_BY_GROUP), DENSITY_BY_GROUP).collect()
    assert sorted((r.cell, r.res, r.group, r.devices, r.date) for r in got) == sorted(
        [
            (_cell(TRIPOLI), 7, "domestic", 25, DAY),
            (_cell(SABHA), 7, "domestic", 20, DAY),
            (_cell(KUFRA), 7, "domestic", 25, DAY),
            (_cell(KUFRA), 7, "neighbouring", 16, DAY),
            (_cell(AGADEZ), 7, "neighbouring", 20, DAY),
            (_cell(AGADEZ), 7, "north_africa", 18, DAY),
        ]
    )
    # Before suppression: Tripoli 4 groups, Sabha 3, Kufra 4, Agadez 2; published 6; one row (Tripoli's 20 German
    # phones) removed by complementary suppression.
    assert (result.group_aggregates, result.group_published) == (13, 6)
    assert result.group_complementary_suppressed == 1
    assert result.group_devices_unassigned == 0  # each day total is exactly the sum of its groups
    density = {r.cell: r.devices for r in read_table(spark, settings.lake(tables.DENSITY), DENSITY).collect()}
    assert [density[_cell(p)] for p in NETWORK_PLACES] == [60, 40, 57, 38]
    checks = read_checks(spark, settings.lake(tables.QA_CHECKS), DAY, "aggregate")
    assert (checks["group_aggregates"], checks["group_published"], checks["groups_written"]) == (13, 6, 1)
    # The MCC stays in bronze: no silver table has the column, and no group value is a code.
    for table in (tables.DENSITY, tables.DENSITY_HOURLY, tables.DENSITY_BY_GROUP):
        files = list(settings.lake(table).rglob("*.parquet"))
        assert files and all("mcc" not in pq.read_schema(f).names for f in files)
    assert {r.group for r in got} <= set(GROUPS)


def test_under_differential_privacy_the_groups_are_not_written_and_earlier_ones_go(spark, settings):
    write_partitions(_bronze_networks(spark, NETWORK_PLACES), settings.lake(tables.BRONZE_PINGS), ["date"])
    aggregate.run(spark, settings, DAY)
    assert read_table(spark, settings.lake(tables.DENSITY_BY_GROUP), DENSITY_BY_GROUP).count() == 6
    dp = _dp(settings)
    result = aggregate.run(spark, dp, DAY)
    assert result.dp_refused == () and result.group_aggregates == 0
    assert read_table(spark, dp.lake(tables.DENSITY_BY_GROUP), DENSITY_BY_GROUP).count() == 0
    assert read_checks(spark, dp.lake(tables.QA_CHECKS), DAY, "aggregate")["groups_written"] == 0
