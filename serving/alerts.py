"""Surge warnings, computed once per release from what it publishes.

A series alerts when
- its forecast goes above its threshold (``forecast_above_threshold``, on the day of its highest forecast),
- its latest observation is above its threshold (``observation_above_threshold``), or
- its latest observation falls outside the 95 % interval the previous release forecast for that day
  (``observation_outside_interval``: the model was surprised).

A series' threshold is the ``alert_quantile`` quantile of its published history times ``alert_factor`` (settings);
series with fewer than ``MIN_HISTORY`` observations or a zero threshold get no threshold alerts. Severity is how far
past the bound, relative to it: ``(value - bound) / max(|bound|, 1)`` (its absolute value below a lower bound).
"""

from __future__ import annotations

import numpy as np

from serving.models import Alert
from serving.store import Release, Series, unit_of

MIN_HISTORY = 8


def _severity(value: float, bound: float) -> float:
    return abs(value - bound) / max(abs(bound), 1.0)


def series_alerts(s: Series, quantile: float, factor: float, previous: dict | None) -> list[Alert]:
    if s.route_id is None:
        return []
    head = {
        "series_id": s.series_id,
        "route_id": s.route_id,
        "segment_id": s.segment_id,
        "source": s.source,
        "unit": unit_of(s.source),
        "level": s.level,
    }
    unit = head["unit"]
    out = []
    if len(s.history_y) >= MIN_HISTORY:
        threshold = float(np.quantile(s.history_y, quantile)) * factor
        if threshold > 0:
            yhat = s.bounds["yhat"]
            top = int(np.argmax(yhat))
            if yhat[top] > threshold:
                out.append(
                    Alert(
                        **head,
                        kind="forecast_above_threshold",
                        ds=s.ds[top],
                        value=yhat[top],
                        bound=threshold,
                        severity=_severity(yhat[top], threshold),
                        message=f"forecast {yhat[top]:,.0f} {unit} on {s.ds[top]} is above the threshold "
                        f"{threshold:,.0f}",
                    )
                )
            last = s.history_y[-1]
            if last > threshold:
                out.append(
                    Alert(
                        **head,
                        kind="observation_above_threshold",
                        ds=s.history_ds[-1],
                        value=last,
                        bound=threshold,
                        severity=_severity(last, threshold),
                        message=f"observed {last:,.0f} {unit} on {s.history_ds[-1]}, above the threshold "
                        f"{threshold:,.0f}",
                    )
                )
    if previous is not None and s.history_ds:
        last, lo, hi = s.history_y[-1], previous["lo95"], previous["hi95"]
        if last > hi or last < lo:
            bound = hi if last > hi else lo
            side = "above" if last > hi else "below"
            out.append(
                Alert(
                    **head,
                    kind="observation_outside_interval",
                    ds=s.history_ds[-1],
                    value=last,
                    bound=bound,
                    severity=_severity(last, bound),
                    message=f"observed {last:,.0f} {unit} on {s.history_ds[-1]}, {side} the 95 % interval "
                    f"[{lo:,.0f}, {hi:,.0f}] of release {previous['release_id']}",
                )
            )
    return out


def release_alerts(release: Release, quantile: float, factor: float) -> list[Alert]:
    """Every alert of the release, most severe first."""
    as_of = release.as_of
    previous = {r["series_id"]: r for r in release.previous.to_dict("records")}
    alerts = []
    for s in release.series.values():
        prev = previous.get(s.series_id) if s.history_ds and s.history_ds[-1] == as_of else None
        alerts.extend(series_alerts(s, quantile, factor, prev))
    return sorted(alerts, key=lambda a: (-a.severity, a.series_id, a.kind))
