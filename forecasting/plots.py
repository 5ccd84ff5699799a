"""Forecast plots as PNG: a series' recent history, the forecast mean and its 80 % and 95 % intervals.

Drawn with matplotlib's object API on an Agg canvas (``Figure`` + ``FigureCanvasAgg``): nothing here touches
pyplot or the process-wide backend, and matplotlib is imported on first use, not when this module is (the
published model imports ``forecasting.tracking``, which imports this module). A figure takes a few tens of
milliseconds to draw and encode.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "HISTORY_PERIODS",
    "figure_png",
    "forecast_figure",
    "plot_file_name",
    "route_series_ids",
    "write_forecast_plots",
]

# Periods of history drawn before the forecast: about three months of days, or enough weeks or months to
# show a season or more.
HISTORY_PERIODS = 90
# Density route totals are ``route:<route>``; official counts are ``<source>/route:<route>``.
_ROUTE_SERIES_ID = re.compile(r"(?:^|/)route:")
_SIZE_IN = (8.0, 3.2)
_DPI = 100
_HISTORY_COLOUR, _FORECAST_COLOUR = "#333333", "#1f5fa8"


def route_series_ids(series_ids: Iterable[str], keys: pd.DataFrame | None = None) -> list[str]:
    """The route-level series among ``series_ids``, sorted and without duplicates.

    Route-level: ``keys`` (columns series_id, level) gives the series level "route", or the id has the form
    ``route:<route>`` or ``<source>/route:<route>`` (so series that ``keys`` does not list still count).
    """
    by_level: set[str] = set()
    if keys is not None:
        by_level = {str(s) for s in keys.loc[keys["level"] == "route", "series_id"]}
    return sorted({str(s) for s in series_ids if str(s) in by_level or _ROUTE_SERIES_ID.search(str(s))})


def forecast_figure(
    series_id: str,
    forecast: pd.DataFrame,
    history: pd.DataFrame | None = None,
    *,
    history_periods: int = HISTORY_PERIODS,
) -> Figure:
    """One series' forecast as a matplotlib Figure with an Agg canvas attached.

    ``forecast``: that series' rows with ds, yhat, lo80, hi80, lo95, hi95 (and optionally model, named in the
    key above the plot). ``history``: its observed rows with ds and y; None or empty draws the forecast alone,
    otherwise its last ``history_periods`` rows by ds are drawn. The one Axes holds, in this order, the 95 %
    and the 80 % bands (two PolyCollections), the history line (when there is history) and the forecast line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=_SIZE_IN, dpi=_DPI)
    FigureCanvasAgg(figure)
    # Fixed margins: tight or constrained layout would draw the figure once more just to measure it.
    figure.subplots_adjust(left=0.08, right=0.98, top=0.89, bottom=0.12)
    ax = figure.add_subplot()

    forecast = forecast.sort_values("ds")
    ds = pd.to_datetime(forecast["ds"]).to_numpy()
    ax.fill_between(ds, forecast["lo95"], forecast["hi95"], color=_FORECAST_COLOUR, alpha=0.15, lw=0)
    ax.fill_between(ds, forecast["lo80"], forecast["hi80"], color=_FORECAST_COLOUR, alpha=0.3, lw=0)
    if history is not None and len(history):
        recent = history.sort_values("ds").tail(history_periods)
        ax.plot(pd.to_datetime(recent["ds"]).to_numpy(), recent["y"], color=_HISTORY_COLOUR, lw=1.2)
    ax.plot(ds, forecast["yhat"], color=_FORECAST_COLOUR, lw=1.6)

    # A key in words rather than a legend: a legend is a third of the drawing time.
    models = forecast["model"].dropna().unique() if "model" in forecast.columns else []
    model = f" ({', '.join(map(str, models))})" if len(models) else ""
    ax.set_title(series_id, loc="left", fontsize=10)
    ax.set_title(f"black: history; blue: forecast{model}, 80 % and 95 % intervals", loc="right", fontsize=8)
    # Few ticks: building and laying out tick labels is most of the rest.
    locator = AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, lw=0.5)
    return figure


def figure_png(figure: Figure) -> bytes:
    """``figure`` encoded as PNG (no "Software" entry, so bytes do not change with the matplotlib version)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def plot_file_name(series_id: str) -> str:
    """A flat file name for a series' plot: ``frontex/route:central_med`` -> ``frontex__route_central_med.png``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", series_id.replace("/", "__")).lstrip(".")
    return f"{stem or '_'}.png"


def write_forecast_plots(
    directory: Path,
    series_ids: Iterable[str],
    forecasts: pd.DataFrame,
    history: pd.DataFrame | None = None,
    *,
    history_periods: int = HISTORY_PERIODS,
) -> list[Path]:
    """Write one PNG per series of ``series_ids`` that has forecast rows into ``directory``; returns the files.

    ``forecasts`` has FORECAST_COLUMNS, ``history`` (optional) series_id, ds, y; both may hold other series.
    Files are named by :func:`plot_file_name`; two ids that would share a name get ``-2``, ``-3``... suffixes.
    """
    wanted = list(dict.fromkeys(str(s) for s in series_ids))
    forecast_by_id = {
        str(sid): rows for sid, rows in forecasts[forecasts["series_id"].isin(wanted)].groupby("series_id", sort=False)
    }
    history_by_id: dict[str, pd.DataFrame] = {}
    if history is not None:
        history_by_id = {
            str(sid): rows for sid, rows in history[history["series_id"].isin(wanted)].groupby("series_id", sort=False)
        }
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for series_id in wanted:
        if series_id not in forecast_by_id:
            continue
        name = plot_file_name(series_id)
        stem, n = name.removesuffix(".png"), 2
        while name in taken:
            name, n = f"{stem}-{n}.png", n + 1
        taken.add(name)
        figure = forecast_figure(
            series_id, forecast_by_id[series_id], history_by_id.get(series_id), history_periods=history_periods
        )
        path = directory / name
        path.write_bytes(figure_png(figure))
        written.append(path)
    return written
