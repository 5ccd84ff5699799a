"""The contracts every layer shares: series ids, the privacy floor, the forecast vocabulary, the table catalogue."""

from __future__ import annotations

import pytest

from contracts import published, tables
from contracts.privacy import MIN_DEVICES_FLOOR
from contracts.series import series_id


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (("all",), {}, "all"),
        (("route", "central_med"), {}, "route:central_med"),
        (("segment", "central_med", "s1"), {}, "segment:central_med/s1"),
        (("flow", "central_med", "s1"), {"to_segment": "s2"}, "flow:central_med/s1>s2"),
        (("route", "central_med"), {"source": "frontex"}, "frontex/route:central_med"),
    ],
)
def test_series_ids(args, kwargs, expected):
    assert series_id(*args, **kwargs) == expected


def test_a_series_id_of_an_unknown_level_or_a_flow_without_its_target_is_refused():
    with pytest.raises(ValueError, match="unknown level 'country'"):
        series_id("country", "x")
    with pytest.raises(ValueError, match="needs to_segment"):
        series_id("flow", "r", "s")


def test_jobs_and_serving_use_the_one_privacy_floor():
    from jobs.settings import JobSettings
    from serving import store

    assert MIN_DEVICES_FLOOR == 15
    assert store.MIN_DEVICES_FLOOR is MIN_DEVICES_FLOOR
    with pytest.raises(ValueError, match="below the privacy floor of 15"):
        JobSettings(min_devices=MIN_DEVICES_FLOOR - 1)


def test_the_published_forecast_carries_the_published_vocabulary_in_order():
    columns = tables.PUBLISHED_FORECAST.columns
    start = columns.index("yhat")
    assert columns[start : start + len(published.FORECAST_VALUES)] == published.FORECAST_VALUES


def test_the_catalogue_names_each_place_once():
    assert len({(t.layer, t.name) for t in tables.CATALOGUE.values()}) == len(tables.CATALOGUE)


def test_the_home_network_never_leaves_bronze():
    """The MCC is device-level: only raw input, bronze and quarantined pings may hold it (design.md)."""
    import pyarrow as pa

    from contracts import schemas

    def holds_mcc(names) -> bool:
        return any("mcc" in n.lower() for n in names)

    declared = {
        name for name, value in vars(schemas).items() if isinstance(value, pa.Schema) and holds_mcc(value.names)
    }
    assert declared == {"PINGS", "BRONZE_PINGS", "QUARANTINE_PINGS"}
    catalogued = {t.key for t in tables.CATALOGUE.values() if holds_mcc(t.columns)}
    assert catalogued == {"bronze/pings", "quarantine/pings"}
    # What is counted instead: the coarse group, at one resolution, per cell and day.
    assert tables.DENSITY_BY_GROUP.columns == ("cell", "res", "group", "devices", "date")
