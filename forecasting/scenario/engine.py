"""The Monte Carlo flow model: baseline paths from the published forecasts, the interventions applied day by day.

Arrays are (draws, days) per point, people per day; every step is vectorised over the draws. See the package
docstring (``forecasting.scenario``) for the model in plain words and its limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
from scipy.special import gammainc

from forecasting.scenario.network import Link, Network, PointKey, point_label, topological_order
from forecasting.scenario.parameters import DEFAULT_PARAMETERS, ScenarioParameters
from forecasting.scenario.plan import PlannedIntervention, validate
from forecasting.scenario.spec import ScenarioError, ScenarioSpec, Surge

__all__ = [
    "FORECAST_COLUMNS",
    "BlockLedger",
    "RowKey",
    "ScenarioDraws",
    "delay_kernels",
    "draw_baseline",
    "point_series_id",
    "route_series_id",
    "simulate_scenario",
    "without_level",
]

# The published forecast's columns the engine reads (contracts.schemas.PUBLISHED_FORECAST has more; they are ignored).
FORECAST_COLUMNS = ["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95"]
# The people series ids (contracts.series.series_id with source "people"; forecasting imports nothing of routecast's,
# a test keeps the two equal).
_PEOPLE = "people"
_Z80 = 1.2815515655446004
_Z95 = 1.959963984540054
_KNOTS_Z = np.array([-_Z95, -_Z80, 0.0, _Z80, _Z95])
_KNOTS_COLUMNS = ["lo95", "lo80", "yhat", "hi80", "hi95"]  # in the order of _KNOTS_Z


def point_series_id(route_id: str, point_id: str) -> str:
    """The published series of people crossing at a point per day: ``people/point:<route>/<point>``."""
    return f"{_PEOPLE}/point:{route_id}/{point_id}"


def route_series_id(route_id: str) -> str:
    """The published series of people present on a route: ``people/route:<route>``."""
    return f"{_PEOPLE}/route:{route_id}"


@dataclass(frozen=True)
class RowKey:
    """One output series: ``kind`` is ``point`` (people crossing per day), ``route`` (people present on the route),
    ``waiting`` (people held back at a blocked point, present that day) or ``diverted`` (people leaving a blocked
    point for another destination that day); ``series_id`` is the published baseline's, if any."""

    kind: str
    route_id: str
    point_id: str | None
    series_id: str | None


@dataclass(frozen=True)
class BlockLedger:
    """Where the people blocked by one intervention at one point went, per draw (arrays of shape (draws,), people).

    ``blocked`` = ``released`` (left after reopening, within the horizon) + ``diverted`` (all destinations) +
    ``waiting_at_end`` (still held on the horizon's last day)."""

    intervention: int
    route_id: str
    point_id: str
    blocked: np.ndarray
    released: np.ndarray
    diverted: dict[str, np.ndarray]
    waiting_at_end: np.ndarray

    @property
    def diverted_total(self) -> np.ndarray:
        return sum(self.diverted.values(), np.zeros_like(self.blocked))


@dataclass(frozen=True)
class ScenarioDraws:
    """Every draw of a scenario: ``baseline`` and ``scenario`` of shape (rows, draws, days), people, the same
    baseline draw under both; ``ledgers`` per blocked point; what was assumed; notes on what was left out."""

    days: tuple[date, ...]
    rows: tuple[RowKey, ...]
    baseline: np.ndarray
    scenario: np.ndarray
    ledgers: tuple[BlockLedger, ...]
    plan: tuple[PlannedIntervention, ...]
    parameters: ScenarioParameters
    seed: int
    notes: tuple[str, ...] = ()

    @property
    def n_draws(self) -> int:
        return int(self.baseline.shape[1])

    def row(self, kind: str, route_id: str, point_id: str | None = None) -> int:
        """The index of a row; ``KeyError`` if the scenario has no such row."""
        for i, r in enumerate(self.rows):
            if (r.kind, r.route_id, r.point_id) == (kind, route_id, point_id):
                return i
        raise KeyError(f"no {kind} row for {route_id}/{point_id}")


def without_level(knots: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Published quantile knots less a level error they include: ``knots`` (series, days, 5) as lo95, lo80, yhat,
    hi80, hi95 (people), ``sigma`` (series,) the log-scale level error each includes (0: none).

    The inverse of ``forecasting.measured.widen_forecasts``: there each bound's distance from yhat in log1p space is z
    times sqrt(spread² + sigma²); here the spread comes back as sqrt(distance² / z² - sigma²). A bound narrower than
    the level error alone comes back as the median."""
    sigma = np.asarray(sigma, dtype="float64")
    if not (sigma > 0).any():
        return knots
    out = knots.copy()
    median = np.log1p(np.clip(knots[..., 2], 0.0, None))
    outer = [0, 1, 3, 4]
    z = _KNOTS_Z[outer]
    logs = np.log1p(np.clip(knots[..., outer], 0.0, None))
    spread = np.sqrt(np.clip(((logs - median[..., None]) / z) ** 2 - sigma[:, None, None] ** 2, 0.0, None))
    out[..., outer] = np.expm1(median[..., None] + z * spread)
    return out


def draw_baseline(quantiles: np.ndarray, n_draws: int, day_correlation: float, rng: np.random.Generator) -> np.ndarray:
    """Paths of people per series and day, shape (series, draws, days), from published quantiles.

    ``quantiles`` (series, days, 5) holds lo95, lo80, yhat, hi80, hi95 (people). In log1p space each day's
    quantile function runs linearly in the normal score between them (yhat the median; beyond the 95 % bounds the
    outer slope goes on), so the draws reproduce the published intervals. The normal scores of a series follow an
    AR(1) over the days with ``day_correlation``: a forecast's misses on nearby days go together. Series are
    drawn independently of each other.
    """
    n_series, n_days, _ = quantiles.shape
    knots = np.sort(np.log1p(np.clip(quantiles, 0.0, None)), axis=-1)
    # Drawn as (series, days, draws) so that each day's step of the AR(1) is contiguous.
    z = np.empty((n_series, n_days, n_draws))
    z[:, 0] = rng.standard_normal((n_series, n_draws))
    innovation = np.sqrt(1.0 - day_correlation**2)
    for t in range(1, n_days):
        z[:, t] = day_correlation * z[:, t - 1] + innovation * rng.standard_normal((n_series, n_draws))
    segment = (z > _KNOTS_Z[1]).astype(np.intp) + (z > _KNOTS_Z[2]) + (z > _KNOTS_Z[3])  # 0..3
    slopes = np.diff(knots, axis=-1) / np.diff(_KNOTS_Z)  # (series, days, 4)
    # Index the knots of each (series, day) flat: fancy indexing on two flat arrays is far cheaper than 4-d gathers.
    cell = np.arange(n_series * n_days).reshape(n_series, n_days, 1)
    lower = knots[..., :-1].reshape(-1, 4)[cell, segment]
    slope = slopes.reshape(-1, 4)[cell, segment]
    paths = np.clip(np.expm1(lower + slope * (z - _KNOTS_Z[segment])), 0.0, None)
    return np.ascontiguousarray(paths.transpose(0, 2, 1))


def delay_kernels(means: np.ndarray, shape: float, n_days: int, *, within_day: bool = True) -> np.ndarray:
    """Share of people delayed by 0, 1, … ``n_days - 1`` whole days, per draw: shape (draws, n_days).

    ``means`` (draws,): mean delay in days; people's delays are Gamma with ``shape`` around it (0: all exactly the
    mean). ``within_day``: the people start at a uniform time of their day, so a delay of 2.5 days puts half on
    day +2 and half on day +3 (the kernel's mean is the mean delay); otherwise they all start at the beginning of
    the day (a reopening) and leave on day +floor(delay). Rows add up to the share delayed by less than
    ``n_days`` (at most 1); the rest fall beyond the horizon.
    """
    mu = np.asarray(means, dtype="float64")[:, None]
    k = np.arange(n_days, dtype="float64")[None, :]
    if shape == 0.0:
        if within_day:
            return np.clip(1.0 - np.abs(k - mu), 0.0, None)
        return (k == np.floor(mu)).astype("float64")
    positive = mu > 1e-9  # shorter delays are no delay
    scale = np.where(positive, mu / shape, 1.0)
    if within_day:
        # The probability of day k is the second difference of H(x) = E[(x - delay)+], the integral of the CDF,
        # taken on the grid x = -1, 0, …, n_days (H is 0 for x <= 0).
        x = np.arange(1.0, n_days + 1.0)[None, :]
        h = x * gammainc(shape, x / scale) - shape * scale * gammainc(shape + 1.0, x / scale)
        h = np.concatenate([np.zeros((len(mu), 2)), h], axis=1)
        kernel = h[:, 2:] - 2.0 * h[:, 1:-1] + h[:, :-2]
    else:
        cdf = np.concatenate(
            [np.zeros((len(mu), 1)), gammainc(shape, np.arange(1.0, n_days + 1.0)[None, :] / scale)], 1
        )
        kernel = np.diff(cdf, axis=1)
    kernel = np.clip(kernel, 0.0, None)
    return np.where(positive, kernel, (k == 0).astype("float64"))


def _delayed(flow: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``flow`` (draws, days) with each day's people spread over the following days by ``kernel`` (draws, days)."""
    out = np.zeros_like(flow)
    n_days = flow.shape[1]
    for k in np.flatnonzero(kernel.max(axis=0) > 1e-15):  # no day of the kernel with less than that
        out[:, k:] += flow[:, : n_days - k] * kernel[:, k, None]
    return out


def _forecast_arrays(forecasts: pd.DataFrame, days: list[date], wanted: set[str]) -> dict[str, np.ndarray]:
    """Series id -> (days, 5) quantiles (lo95, lo80, yhat, hi80, hi95), for the ``wanted`` series covering every
    day."""
    missing = [c for c in FORECAST_COLUMNS if c not in forecasts.columns]
    if missing:
        raise ValueError(f"forecasts: column {missing[0]!r} missing; expected {', '.join(FORECAST_COLUMNS)}")
    frame = forecasts.loc[forecasts["series_id"].isin(wanted), FORECAST_COLUMNS].copy()
    frame["ds"] = pd.to_datetime(frame["ds"]).dt.date
    frame = frame[frame["ds"].isin(set(days))]
    if frame.duplicated(["series_id", "ds"]).any():
        dup = frame[frame.duplicated(["series_id", "ds"])].iloc[0]
        raise ValueError(f"forecasts: two rows for {dup['series_id']} on {dup['ds']}")
    out = {}
    for sid, rows in frame.groupby("series_id", sort=True):
        values = rows.set_index("ds").reindex(days)[_KNOTS_COLUMNS].to_numpy("float64")
        if not np.isnan(values).any():
            out[str(sid)] = values
    return out


def _horizon(forecasts: pd.DataFrame, network: Network) -> tuple[date, date]:
    ids = {point_series_id(*k) for k in network.keys} | {route_series_id(r) for r in network.routes}
    rows = forecasts.loc[forecasts["series_id"].isin(ids), ["series_id", "ds"]]
    if rows.empty:
        raise ValueError("forecasts: no people series of the network's points or routes")
    span = pd.to_datetime(rows["ds"]).groupby(rows["series_id"]).agg(["min", "max"])
    # A series whose data ended early (stale) starts its forecast early too: the horizon starts where the latest
    # series starts (the release's first forecast day), so every current series covers it.
    return span["min"].max().date(), span["max"].max().date()


@dataclass
class _Flows:
    """The running state of the flow model, one (draws, days) array per point and quantity."""

    n_draws: int
    n_days: int
    inflow: dict[PointKey, np.ndarray] = field(default_factory=dict)  # from upstream links and diversions
    diverted_in: dict[PointKey, np.ndarray] = field(default_factory=dict)
    diverted_away: dict[PointKey, np.ndarray] = field(default_factory=dict)
    surge_extra: dict[PointKey, np.ndarray] = field(default_factory=dict)
    waiting: dict[PointKey, np.ndarray] = field(default_factory=dict)
    passing: dict[PointKey, np.ndarray] = field(default_factory=dict)  # people crossing in the scenario
    delta: dict[PointKey, np.ndarray] = field(default_factory=dict)  # scenario minus baseline crossings
    exits: dict[PointKey, float] = field(default_factory=dict)  # share of a changed crossing that leaves the route

    def zeros(self) -> np.ndarray:
        return np.zeros((self.n_draws, self.n_days))

    def add(self, table: dict[PointKey, np.ndarray], key: PointKey, values: np.ndarray) -> None:
        if key in table:
            table[key] += values
        else:
            table[key] = values.copy()


def simulate_scenario(
    spec: ScenarioSpec,
    network: Network,
    forecasts: pd.DataFrame,
    *,
    parameters: ScenarioParameters | None = None,
    n_draws: int = 1000,
    seed: int | None = None,
    first_day: date | None = None,
    last_day: date | None = None,
) -> ScenarioDraws:
    """Every Monte Carlo draw of ``spec`` on ``network`` over the published people forecasts.

    ``forecasts``: rows ``series_id, ds, yhat, lo80, hi80, lo95, hi95`` (people; other columns ignored) of the
    series ``people/point:<route>/<point>`` (people crossing per day) and ``people/route:<route>`` (people present).
    The horizon is [``first_day``, ``last_day``], by default from the latest first day of those series (a stale
    series starts early) to the latest last day; a series missing a day
    of it counts as missing. ``parameters``: the defaults and estimates the spec's assumptions override. ``seed``
    (else the spec's, else 0) makes the draws reproducible. ``ScenarioError`` for a scenario that cannot run.
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")
    if first_day is None or last_day is None:
        lo, hi = _horizon(forecasts, network)
        first_day, last_day = first_day or lo, last_day or hi
    parameters = (parameters or DEFAULT_PARAMETERS).with_spec(spec)
    plan = validate(spec, network, first_day, last_day, parameters)
    seed = seed if seed is not None else spec.seed if spec.seed is not None else 0
    days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    rng_baseline, rng_block, rng_transit, rng_level = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )

    targets = {k for p in plan for k in p.points}
    sources = targets | {k for p in plan for d in p.destinations for k in d.points}
    affected = network.downstream(sources)
    wanted = {point_series_id(*k) for k in affected} | {route_series_id(k[0]) for k in affected}
    published = _forecast_arrays(forecasts, days, wanted)
    # A point target needs its forecast; a segment or route target acts on its points that have one (a departure
    # point whose people are not estimated is left alone, and the notes say so), and needs at least one.
    acting, notes = [], []
    for p in plan:
        missing = [key for key in p.points if point_series_id(*key) not in published]
        if missing and (p.intervention.target.level == "point" or len(missing) == len(p.points)):
            key = missing[0]
            raise ScenarioError(
                f"{p.field}.target: no published forecast of people at {point_label(key)} "
                f"({point_series_id(*key)}) covers {first_day} to {last_day}"
            )
        if missing:
            names = ", ".join(k[1] for k in missing)
            notes.append(f"{p.field} ({p.label}): no published forecast of people at {names}; left alone there")
            p = replace(p, points=tuple(k for k in p.points if k not in missing))
        acting.append(p)
    plan = tuple(acting)
    unshown: dict[str, list[str]] = {}
    for k in sorted(affected):
        if point_series_id(*k) not in published:
            unshown.setdefault(k[0], []).append(k[1])
    notes += [
        f"route:{r}: no published forecast of people crossing at {', '.join(points)} covers the horizon; changes "
        "flow through these points but they are not shown"
        for r, points in unshown.items()
    ]
    point_rows = sorted(k for k in affected if point_series_id(*k) in published)
    routes = sorted({k[0] for k in affected})
    route_rows = [r for r in routes if route_series_id(r) in published]
    notes += [f"route:{r}: no published forecast of people present; not shown" for r in routes if r not in route_rows]

    series_ids = [point_series_id(*k) for k in point_rows] + [route_series_id(r) for r in route_rows]
    quantiles = np.stack([published[s] for s in series_ids])
    # A point's level error (its share of the route is a guess, the route's scale is fitted) is the same on every day
    # of a draw; the published intervals include it, so it is taken out before the day-to-day draws and put back
    # as one factor per draw. The factor's mean is 1: the published level is read as right on average (an equal
    # part of a route's landings is their expected share), so that what many points add up to is not inflated by
    # the skew of their independent errors (their median would be: each factor's mean is exp(sigma² / 2)).
    sigma = np.array([network.point(k).level_sigma or 0.0 for k in point_rows] + [0.0] * len(route_rows))
    paths = draw_baseline(without_level(quantiles, sigma), n_draws, parameters.day_correlation, rng_baseline)
    if (sigma > 0).any():
        z = rng_level.standard_normal((len(series_ids), n_draws, 1))
        paths = np.clip(np.expm1(np.log1p(paths) + sigma[:, None, None] * z - sigma[:, None, None] ** 2 / 2), 0, None)
    baseline = {k: paths[i] for i, k in enumerate(point_rows)}
    route_baseline = {r: paths[len(point_rows) + i] for i, r in enumerate(route_rows)}

    flows = _Flows(n_draws, len(days))
    ledgers = _run_flows(plan, network, affected, baseline, published, flows, parameters, rng_block, rng_transit, days)

    rows: list[RowKey] = []
    base_out: list[np.ndarray] = []
    scen_out: list[np.ndarray] = []
    for r in route_rows:
        change = _route_change(flows, network, [k for k in affected if k[0] == r])
        rows.append(RowKey("route", r, None, route_series_id(r)))
        base_out.append(route_baseline[r])
        scen_out.append(np.clip(route_baseline[r] + change, 0.0, None))
    for k in point_rows:
        rows.append(RowKey("point", k[0], k[1], point_series_id(*k)))
        base_out.append(baseline[k])
        scen_out.append(np.clip(flows.passing[k], 0.0, None))
    for kind, table in (("waiting", flows.waiting), ("diverted", flows.diverted_away)):
        for k in sorted(table):
            rows.append(RowKey(kind, k[0], k[1], None))
            base_out.append(flows.zeros())
            scen_out.append(table[k])
    return ScenarioDraws(
        days=tuple(days),
        rows=tuple(rows),
        baseline=np.stack(base_out),
        scenario=np.stack(scen_out),
        ledgers=tuple(ledgers),
        plan=plan,
        parameters=parameters,
        seed=seed,
        notes=tuple(notes),
    )


def _route_change(flows: _Flows, network: Network, points: list[PointKey]) -> np.ndarray:
    """The change in people present on a route, per draw and day, from what happened at its ``points``: the extra
    people of a surge enter, diverted people leave where blocked and enter where they show up, and at each point the
    share its links out do not carry on leaves the route."""
    entering = flows.zeros()
    for k in points:
        entering += flows.surge_extra.get(k, 0.0) + flows.diverted_in.get(k, 0.0) - flows.diverted_away.get(k, 0.0)
        entering -= flows.exits.get(k, network.exit_share(k)) * flows.delta[k]
    return np.cumsum(entering, axis=1)


def _window(p: PlannedIntervention, first_day: date) -> tuple[int, int]:
    """The intervention's first and last day as indices into the horizon."""
    return (p.intervention.start - first_day).days, (p.intervention.end - first_day).days


def _destination_weights(points: tuple[PointKey, ...], published: dict[str, np.ndarray]) -> np.ndarray:
    """How diverted people split over a destination's points: by their published yhat over the horizon."""
    totals = np.array(
        [published[point_series_id(*k)][:, 2].sum() if point_series_id(*k) in published else 0.0 for k in points]
    )
    if not points:
        return np.zeros(0)
    return totals / totals.sum() if totals.sum() > 0 else np.full(len(points), 1.0 / len(points))


def _run_flows(
    plan: tuple[PlannedIntervention, ...],
    network: Network,
    affected: set[PointKey],
    baseline: dict[PointKey, np.ndarray],
    published: dict[str, np.ndarray],
    flows: _Flows,
    parameters: ScenarioParameters,
    rng_block: np.random.Generator,
    rng_transit: np.random.Generator,
    days: list[date],
) -> list[BlockLedger]:
    """Apply the interventions point by point, upstream first; fills ``flows``, returns the blocked people's ledgers."""
    n_draws, n_days = flows.n_draws, flows.n_days
    # Parameter draws in a fixed order (interventions as written, links as given), so a seed always means the same.
    block_draws = {}
    for p in plan:
        if p.parameters is None:
            continue
        block = p.parameters
        shares = block.diversion.draw_shares(rng_block, n_draws)
        lag = delay_kernels(block.divert_lag.draw_means(rng_block, n_draws), block.divert_lag.shape, n_days)
        release = delay_kernels(
            block.release.draw_means(rng_block, n_draws), block.release.shape, n_days, within_day=False
        )
        block_draws[p.index] = (shares, lag, release)
    link_kernels: dict[Link, np.ndarray] = {}
    for link in network.links:
        factors = parameters.transit.draw_factors(rng_transit, n_draws)
        if link.source in affected:
            link_kernels[link] = delay_kernels(link.lag_days * factors, parameters.transit.shape, n_days)

    edges = [(link.source, link.target) for link in network.links]
    edges += [(a, b) for p in plan for d in p.destinations for a in p.points for b in d.points]
    order = topological_order(sorted(affected), edges)
    through = _through_flows(network, order, baseline, flows)
    by_point: dict[PointKey, list[PlannedIntervention]] = {}
    for p in sorted(plan, key=lambda p: p.intervention.start):
        for key in p.points:
            by_point.setdefault(key, []).append(p)

    ledgers = []
    for key in order:
        own = baseline[key] if key in baseline else flows.zeros()
        split = through.get(key)
        passing = own if split is None else split.passing
        demand = passing + flows.inflow.get(key, 0.0)
        extra = flows.zeros()
        for p in by_point.get(key, []):
            lo, hi = _window(p, days[0])
            if isinstance(p.intervention, Surge):
                # A surge of departures: those who set sail here (all who pass, at a point nobody passes on from).
                sail = 1.0 if split is None else split.sail[:, None]
                added = np.clip(demand[:, lo : hi + 1], 0.0, None) * sail * (p.intervention.factor - 1.0)
                demand[:, lo : hi + 1] += added
                extra[:, lo : hi + 1] += added
            else:
                ledgers.append(_block(p, key, demand, lo, hi, block_draws[p.index], flows, published))
        if extra.any():
            flows.add(flows.surge_extra, key, extra)
        if key in baseline or split is not None:
            demand = _owed_forward(demand)
        change = demand - passing
        if split is None:
            flows.passing[key] = demand
            flows.delta[key] = change
            for link in network.links_from(key):
                flows.add(flows.inflow, link.target, link.share * _delayed(change, link_kernels[link]))
            continue
        # A departure point others pass on from: its people change as a whole (a closure holds everyone passing);
        # the change splits between those who set sail (its crossings and sea links) and those passing on, in the
        # shares of its baseline; a surge's extra people all set sail.
        rest = change - extra
        sailing = split.sail[:, None] * rest + extra
        flows.passing[key] = _owed_forward(own + sailing)
        flows.delta[key] = flows.passing[key] - own
        onward = {link.target: link for link in split.onward}
        sea = [link for link in network.links_from(key) if link.target not in onward]
        sea_total = sum(link.share for link in sea)
        flows.exits[key] = 0.0 if sea else 1.0
        for link in sea:
            share = link.share / sea_total if sea_total > 0 else 1.0 / len(sea)
            flows.add(flows.inflow, link.target, share * _delayed(flows.delta[key], link_kernels[link]))
        for target, link in onward.items():
            moving = split.onward_share[target][:, None] * rest
            flows.add(flows.inflow, target, _delayed(moving, link_kernels[link]))
    return ledgers


@dataclass(frozen=True)
class _Through:
    """A departure point's people in the baseline: ``passing`` (draws, days) = its own crossings (those who set sail
    there) + those passing on along its onward links; ``sail`` (draws,) and ``onward_share`` (per next point,
    (draws,)) split them, over the horizon."""

    passing: np.ndarray
    sail: np.ndarray
    onward: tuple[Link, ...]
    onward_share: dict[PointKey, np.ndarray]


def _through_flows(
    network: Network, order: list[PointKey], baseline: dict[PointKey, np.ndarray], flows: _Flows
) -> dict[PointKey, _Through]:
    """The people passing each affected departure point that has onward links, per draw and day.

    Downstream first: a point's passing people are its own crossings plus, along each onward link, the people
    passing the next point ``lag_days`` later, of whom the link's part is 1 / (the number of links into that point)
    (who comes in which way is not published). The next point's passing people are its crossings, or its own
    ``_Through`` if it is a departure point with onward links too (the road goes on); at a point without a published
    figure (a border post nobody estimates), those passing the points it leads to, the same way. Beyond the horizon
    a point's people stay at their last week's mean."""
    into: dict[PointKey, int] = {}
    for link in network.links:
        into[link.target] = into.get(link.target, 0) + 1
    passing: dict[PointKey, np.ndarray] = {}
    out: dict[PointKey, _Through] = {}

    def next_people(link: Link) -> np.ndarray:
        return _ahead(passing.get(link.target, flows.zeros()), link.lag_days) / into[link.target]

    for key in reversed(order):
        onward = network.onward_links(key)
        if not onward:
            # Its crossings; where nobody's figure is published, those it passes on (none if it leads nowhere).
            passing[key] = baseline.get(key)
            if passing[key] is None:
                passing[key] = sum((next_people(link) for link in network.links_from(key)), flows.zeros())
            continue
        own = baseline[key] if key in baseline else flows.zeros()
        parts = {link.target: next_people(link) for link in onward}
        total = own + sum(parts.values())
        passing[key] = total
        people = total.sum(axis=1)
        seen = people > 0
        per = np.where(seen, people, 1.0)
        out[key] = _Through(
            passing=total,
            sail=np.where(seen, own.sum(axis=1) / per, 1.0),
            onward=onward,
            onward_share={k: np.where(seen, v.sum(axis=1) / per, 0.0) for k, v in parts.items()},
        )
    return out


def _ahead(flow: np.ndarray, lag_days: float) -> np.ndarray:
    """``flow`` (draws, days) as seen ``lag_days`` earlier: day t takes day t + lag (linear between whole days);
    past the last day, the last 7 days' mean."""
    n_days = flow.shape[1]
    tail = flow[:, -7:].mean(axis=1, keepdims=True)
    whole = int(np.floor(lag_days))
    longer = np.concatenate([flow, np.repeat(tail, whole + 2, axis=1)], axis=1)
    frac = lag_days - whole
    return (1.0 - frac) * longer[:, whole : whole + n_days] + frac * longer[:, whole + 1 : whole + 1 + n_days]


def _owed_forward(demand: np.ndarray) -> np.ndarray:
    """People crossing a point per day, never below 0: a day's reduction larger than the point's people (the
    published points are not a consistent flow) is owed, and comes off the next days' people first, so that what
    passes the point over the days changes by what reached it (draws, days)."""
    out = np.empty_like(demand)
    owed = np.zeros(demand.shape[0])
    for t in range(demand.shape[1]):
        x = demand[:, t] - owed
        out[:, t] = np.maximum(x, 0.0)
        owed = np.maximum(-x, 0.0)
    return out


def _block(
    p: PlannedIntervention,
    key: PointKey,
    demand: np.ndarray,
    lo: int,
    hi: int,
    draws: tuple[np.ndarray, np.ndarray, np.ndarray],
    flows: _Flows,
    published: dict[str, np.ndarray],
) -> BlockLedger:
    """Hold back people at ``key`` from day ``lo`` to ``hi`` (``demand`` is changed in place): some divert, the rest
    wait and leave after reopening."""
    shares, lag_kernel, release_kernel = draws
    passing_share = p.intervention.passing_share  # type: ignore[union-attr]
    blocked = flows.zeros()
    blocked[:, lo : hi + 1] = (1.0 - passing_share) * np.clip(demand[:, lo : hi + 1], 0.0, None)
    demand -= blocked
    diverted = {}
    held = blocked.copy()
    for dest in p.destinations:
        going = blocked * shares[:, list(dest.columns)].sum(axis=1)[:, None]
        held -= going
        diverted[dest.label] = going.sum(axis=1)
        flows.add(flows.diverted_away, key, going)
        arriving = _delayed(going, lag_kernel)
        for q, w in zip(dest.points, _destination_weights(dest.points, published), strict=True):
            flows.add(flows.inflow, q, arriving * w)
            flows.add(flows.diverted_in, q, arriving * w)
    held = np.clip(held, 0.0, None)  # rounding: shares add up to at most 1
    release = flows.zeros()
    reopen = hi + 1
    if reopen < flows.n_days:
        release[:, reopen:] = held.sum(axis=1)[:, None] * release_kernel[:, : flows.n_days - reopen]
    demand += release
    waiting = np.cumsum(held - release, axis=1)
    flows.add(flows.waiting, key, waiting)
    if not p.destinations:
        flows.add(flows.diverted_away, key, flows.zeros())
    return BlockLedger(
        intervention=p.index,
        route_id=key[0],
        point_id=key[1],
        blocked=blocked.sum(axis=1),
        released=release.sum(axis=1),
        diverted=diverted,
        waiting_at_end=waiting[:, -1],
    )
