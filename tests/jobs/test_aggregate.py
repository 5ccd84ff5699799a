import datetime as dt

import h3
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from jobs import aggregate
from jobs.lake import read_checks, read_table
from jobs.schemas import BRONZE_PINGS, DENSITY

DAY = dt.date(2025, 3, 10)
T = dt.datetime(2025, 3, 10, 8, 0)
# Two places far apart (Agadez and Sabha), so they never share a cell.
AGADEZ = (16.9742, 7.9865)
SABHA = (27.0377, 14.4283)


def _bronze(spark, devices_per_place: dict[tuple[float, float], int], extra_pings: int = 0):
    rows = []
    for (lat, lon), n in devices_per_place.items():
        for i in range(n):
            rows.append((f"{lat}-{i}", T, lat, lon, None, None, DAY))
        for j in range(extra_pings):  # the same device again: more pings, not more devices
            rows.append((f"{lat}-0", T + dt.timedelta(minutes=j + 1), lat, lon, None, None, DAY))
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
    with pytest.raises(ValueError, match="privacy floor"):
        aggregate.suppress_small_counts(counts, 9)


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=5),
    k=st.integers(min_value=10, max_value=30),
)
def test_nothing_at_or_below_the_threshold_is_ever_published(spark, sizes, k):
    # Places 1 degree apart along a meridian: distinct cells at res 7.
    places = {(10.0 + i, 20.0): n for i, n in enumerate(sizes)}
    published = aggregate.suppress_small_counts(aggregate.count_by_cell_day(_bronze(spark, places), 7), k)
    got = sorted(r.devices for r in published.collect())
    assert all(d > k for d in got)
    assert got == sorted(n for n in sizes if n > k)


def test_run_writes_only_suppressed_density_and_accounts(spark, settings):
    from jobs.lake import write_partitions

    write_partitions(_bronze(spark, {AGADEZ: 16, SABHA: 15}), settings.lake("bronze", "pings"), ["date"])
    result = aggregate.run(spark, settings, DAY)
    assert result == aggregate.AggregateCounts(pings_in=31, aggregates=2, published=1, suppressed=1)

    silver = read_table(spark, settings.lake("silver", "density"), DENSITY).collect()
    assert [(r.devices, r.res, r.date) for r in silver] == [(16, 7, DAY)]
    checks = read_checks(spark, settings.lake("qa", "checks"), DAY, "aggregate")
    assert checks["suppressed"] == 1 and checks["min_devices"] == 15
