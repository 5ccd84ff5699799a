import struct

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from forecasting.plots import (
    figure_png,
    forecast_figure,
    plot_file_name,
    route_series_ids,
    write_forecast_plots,
)
from forecasting.selection import FORECAST_COLUMNS
from tests.forecasting.fakes import series_frame

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _forecast(series_id: str, start: str = "2025-01-11", days: int = 3) -> pd.DataFrame:
    """``days`` forecast rows: yhat 10, 11, 12...; 80 % band yhat ± 1, 95 % band yhat ± 3."""
    yhat = 10.0 + np.arange(days)
    return pd.DataFrame(
        {
            "series_id": series_id,
            "ds": pd.date_range(start, periods=days),
            "yhat": yhat,
            "lo80": yhat - 1,
            "hi80": yhat + 1,
            "lo95": yhat - 3,
            "hi95": yhat + 3,
            "model": "seasonal_naive",
        }
    )[FORECAST_COLUMNS]


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk that follows the signature."""
    return struct.unpack(">II", png[16:24])


def test_a_small_series_renders_to_a_png():
    history = series_frame("route:a", [1.0, 2.0, 3.0, 4.0, 5.0])  # 2025-01-06 .. 2025-01-10
    png = figure_png(forecast_figure("route:a", _forecast("route:a"), history))
    assert png[:8] == PNG_SIGNATURE
    assert _png_size(png) == (800, 320)  # 8 x 3.2 inches at 100 dpi


def test_the_bands_history_and_forecast_are_drawn():
    history = series_frame("route:a", [1.0, 2.0, 3.0, 4.0, 5.0])
    figure = forecast_figure("route:a", _forecast("route:a"), history, history_periods=2)
    (ax,) = figure.axes
    band95, band80 = ax.collections
    assert isinstance(band95, PolyCollection) and isinstance(band80, PolyCollection)
    # Each band's outline runs along its lower and upper bounds.
    y95 = band95.get_paths()[0].vertices[:, 1]
    y80 = band80.get_paths()[0].vertices[:, 1]
    assert (y95.min(), y95.max()) == (7.0, 15.0)  # 10 - 3, 12 + 3
    assert (y80.min(), y80.max()) == (9.0, 13.0)
    history_line, forecast_line = ax.lines
    assert list(history_line.get_ydata()) == [4.0, 5.0]  # only the last 2 periods
    assert list(forecast_line.get_ydata()) == [10.0, 11.0, 12.0]
    assert ax.get_title(loc="left") == "route:a"
    assert "seasonal_naive" in ax.get_title(loc="right")


@pytest.mark.parametrize("history", [None, series_frame("route:a", [1.0]).iloc[:0]], ids=["none", "empty"])
def test_a_series_without_history_draws_the_forecast_alone(history):
    figure = forecast_figure("route:a", _forecast("route:a", days=1), history)
    (ax,) = figure.axes
    assert len(ax.collections) == 2 and len(ax.lines) == 1
    assert figure_png(figure)[:8] == PNG_SIGNATURE


def test_route_level_series_by_level_or_by_id():
    keys = pd.DataFrame(
        {"series_id": ["route:a", "custom-total", "segment:a/1"], "level": ["route", "route", "segment"]}
    )
    ids = ["segment:a/1", "route:a", "all", "frontex/route:b", "custom-total", "flow:a/1>2", "route:a", "route:c"]
    # custom-total by its level; frontex/route:b and route:c by their ids although keys do not list them.
    assert route_series_ids(ids, keys) == ["custom-total", "frontex/route:b", "route:a", "route:c"]
    assert route_series_ids(ids) == ["frontex/route:b", "route:a", "route:c"]


@pytest.mark.parametrize(
    ("series_id", "expected"),
    [
        ("route:central_mediterranean", "route_central_mediterranean.png"),
        ("frontex/route:central_mediterranean", "frontex__route_central_mediterranean.png"),
        ("../route:x", "__route_x.png"),  # never a path outside the plots folder
    ],
)
def test_plot_file_names_are_flat(series_id, expected):
    assert plot_file_name(series_id) == expected


def test_write_forecast_plots_writes_one_png_per_series_with_a_forecast(tmp_path):
    forecasts = pd.concat([_forecast("a/b"), _forecast("a__b"), _forecast("route:z")], ignore_index=True)
    history = series_frame("a/b", [1.0, 2.0, 3.0])
    written = write_forecast_plots(tmp_path / "plots", ["a/b", "a__b", "route:nothing"], forecasts, history)
    # "a/b" and "a__b" would share a file name; route:nothing has no forecast; route:z was not asked for.
    assert [p.name for p in written] == ["a__b.png", "a__b-2.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["a__b-2.png", "a__b.png"]
    assert all(p.read_bytes()[:8] == PNG_SIGNATURE for p in written)
