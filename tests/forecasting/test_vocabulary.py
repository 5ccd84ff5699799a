"""forecasting.vocabulary: the one mapping from a prediction's value names to the published ones."""

import numpy as np
import pandas as pd
import pyarrow as pa

from contracts.published import FORECAST_VALUES
from forecasting.protocol import LEVELS, forecast_frame, future_dates, interval_columns
from forecasting.selection import FORECAST_COLUMNS, forecast_schema
from forecasting.vocabulary import (
    PREDICTION_VALUES,
    PUBLISHED_INTERVALS,
    PUBLISHED_NAME,
    PUBLISHED_VALUES,
    from_published,
    to_published,
)


def test_the_published_names_are_the_contracts_and_do_not_change():
    assert tuple(PUBLISHED_NAME.values()) == PUBLISHED_VALUES == FORECAST_VALUES
    assert FORECAST_COLUMNS == ["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"]
    assert forecast_schema().names == FORECAST_COLUMNS
    assert all(forecast_schema().field(name).type == pa.float64() for name in PUBLISHED_VALUES)
    assert PUBLISHED_INTERVALS == (("lo80", "hi80"), ("lo95", "hi95"))


def test_the_prediction_names_are_the_protocols_at_the_published_levels():
    assert PREDICTION_VALUES == ("mean", *interval_columns(LEVELS))
    assert PUBLISHED_NAME == {"mean": "yhat", "lo-80": "lo80", "hi-80": "hi80", "lo-95": "lo95", "hi-95": "hi95"}


def test_a_prediction_is_published_and_read_back_unchanged():
    ds = future_dates(pd.Timestamp("2025-03-02"), 3)
    mean = np.array([10.0, 20.0, 30.0])
    prediction = forecast_frame(ds, mean, {80: (mean - 1, mean + 1), 95: (mean - 2, mean + 2)})
    published = to_published(prediction)
    assert list(published) == list(PUBLISHED_VALUES)
    assert published["yhat"].tolist() == [10.0, 20.0, 30.0]
    assert published["lo95"].tolist() == [8.0, 18.0, 28.0] and published["hi80"].tolist() == [11.0, 21.0, 31.0]
    back = from_published(pd.DataFrame({"ds": ds, **published}))
    pd.testing.assert_frame_equal(back, prediction)
