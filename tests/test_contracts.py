"""The contracts every layer shares: series ids, the privacy floor, the forecast vocabulary, the table catalogue, and
how an exceedance probability is read off a published total's quantiles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ------------------------------------------------------------------------------------------------ exceedance

QUANTILE_VALUES = st.lists(
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=len(published.TOTAL_QUANTILES),
    max_size=len(published.TOTAL_QUANTILES),
).map(sorted)
THRESHOLDS = st.floats(min_value=0, max_value=2e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(quantiles=QUANTILE_VALUES, thresholds=st.lists(THRESHOLDS, min_size=2, max_size=8))
def test_the_probability_of_exceeding_never_rises_with_the_threshold(quantiles, thresholds):
    """P(total > t) read off any published quantiles (ties included) is non-increasing in t and stays within what
    the published quantiles can say: [0.025, 0.975]."""
    answers = [published.exceedance(quantiles, t) for t in sorted(thresholds)]
    probabilities = [p for p, _ in answers]
    assert all(later <= earlier for earlier, later in zip(probabilities, probabilities[1:], strict=False))
    assert all(0.025 <= p <= 0.975 for p in probabilities)


@settings(max_examples=200, deadline=None)
@given(quantiles=QUANTILE_VALUES, threshold=THRESHOLDS)
def test_only_a_bound_is_given_outside_the_published_quantiles(quantiles, threshold):
    probability, bound = published.exceedance(quantiles, threshold)
    if threshold < quantiles[0]:
        assert (probability, bound) == (0.975, "at least")
    elif threshold >= quantiles[-1]:
        assert (probability, bound) == (0.025, "at most")
    else:
        assert bound is None


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (5.0, (0.975, "at least")),  # below the 2.5 % quantile
        (10.0, (0.975, None)),  # at it
        (15.0, (0.9625, None)),  # halfway to the 5 % quantile: cdf 0.0375
        (70.0, (0.5, None)),  # the median
        (125.0, (0.0375, None)),  # halfway from the 95 % to the 97.5 % quantile
        (130.0, (0.025, "at most")),  # at the 97.5 % quantile
        (1e9, (0.025, "at most")),
    ],
)
def test_exceedance_by_hand(threshold, expected):
    quantiles = [float(v) for v in range(10, 140, 10)]  # 10 at 2.5 %, 20 at 5 %, ..., 70 at 50 %, 130 at 97.5 %
    assert published.exceedance(quantiles, threshold) == expected


@pytest.mark.parametrize("quantiles", [[1.0] * 12, [2.0, 1.0, *[3.0] * 11]])
def test_exceedance_refuses_quantiles_it_cannot_read(quantiles):
    with pytest.raises(ValueError, match="expected 13 non-decreasing quantiles"):
        published.exceedance(quantiles, 1.0)
