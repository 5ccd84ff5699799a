"""The vocabulary of a published forecast: the point forecast and its two central intervals.

``yhat`` is the point forecast; ``lo80``/``hi80`` and ``lo95``/``hi95`` bound the central 80 % and 95 % prediction
intervals. Every model's own names are translated to these where the model is wrapped (``forecasting/``), so the
lake, the release files, the API and the map use only these.
"""

from __future__ import annotations

FORECAST_VALUES = ("yhat", "lo80", "hi80", "lo95", "hi95")

# A store's layout: ``<store>/CURRENT`` names the current release; ``<store>/releases/<id>/`` holds its files.
RELEASES, CURRENT, MANIFEST = "releases", "CURRENT", "manifest.json"
FORECASTS, HISTORY, CELLS = "forecasts.parquet", "history.parquet", "cells.parquet"
TOTALS = "totals.parquet"
# The manifest key of the route network a release's scenarios run on (forecasting.scenario.Network.to_dict()),
# present when the release has people series.
SCENARIO_NETWORK = "scenario_network"

# A forecast total (the sum of a series' next ``window`` periods) is published with its 80 % and 95 % intervals and
# these quantiles of its distribution, so that "how likely are more than N?" can be answered without the model.
TOTAL_QUANTILES = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975)


def exceedance(quantiles: list[float] | tuple[float, ...], threshold: float) -> tuple[float, str | None]:
    """P(total > ``threshold``) read off a published total's quantiles (at TOTAL_QUANTILES), and its bound.

    Between two quantiles the distribution is taken as linear. Outside the published range only a bound is known:
    below the 2.5 % quantile the probability is *at least* 0.975, at or above the 97.5 % one *at most* 0.025; the
    second value says which (``"at least"``, ``"at most"``) or is None for an interpolated value.
    """
    values = [float(v) for v in quantiles]
    if len(values) != len(TOTAL_QUANTILES) or any(b < a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"expected {len(TOTAL_QUANTILES)} non-decreasing quantiles, got {values}")
    if threshold < values[0]:
        return round(1.0 - TOTAL_QUANTILES[0], 4), "at least"
    if threshold >= values[-1]:
        return round(1.0 - TOTAL_QUANTILES[-1], 4), "at most"
    i = max(k for k, v in enumerate(values) if v <= threshold)  # values[i] <= threshold < values[i + 1]
    lo, hi = values[i], values[i + 1]
    cdf = TOTAL_QUANTILES[i] + (TOTAL_QUANTILES[i + 1] - TOTAL_QUANTILES[i]) * (threshold - lo) / (hi - lo)
    return round(1.0 - cdf, 4), None
