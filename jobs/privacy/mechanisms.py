"""Differential privacy for the published counts of the aggregation job (off unless ``ROUTECAST_DP_MECHANISM`` is set).

The unit of privacy is the **person-day**: bronze device ids are pseudonyms that rotate daily, so one
``(device_id, date)`` is one person on one day. A **release** is the set of tables published for one data date.
Each release is (ε, δ)-differentially private for its noisy counts with respect to adding or removing one
person-day, and the ledger caps what a period (a calendar month) of releases may spend in total.

Order of operations in the aggregation job, per data date (see ``README`` "Differential privacy")::

    secret = require_dp(settings)                       # refuses DP off, a default or a weak secret
    bound = ContributionBound.from_settings(settings)
    rows = bound.apply(reduced, secret)                 # 1. bound each person-day (before any aggregation)
    tables = {...}                                      # 2. aggregate the bounded rows: daily tables and flows
                                                        #    from all rows, hourly tables from in_hourly rows
    tables = {n: suppress(t) ...}                       # 3. suppress on the unnoised counts; cache
    queries = {"density.devices": Query("density", "devices", count=len(resolutions)), ...}
    fp = fingerprint(tables, secret, params=fingerprint_params(bound, queries, min_devices=...))
    charge = PrivacyLedger(settings).charge(f"density/{date}", date, fp)  # 4. PrivacyBudgetExceeded: publish
                                                        #    nothing for that date (keep what was there)
    plan = plan_release(charge, bound, queries)         # 5. ε, δ split over the queries; sensitivities; salts
    noisy = add_noise(t, ["devices"], ["cell", "res", "date"], secret=secret,
                      floor=settings.min_devices + 1, **plan["density.devices"].kwargs())  # 6. per query
    write the noisy tables only                         # 7. publish

For a run that recomputes several dates, ``fingerprints_by(tables, secret, "date", ...)`` gives every date's
fingerprint in one pass, and ``add_noise(..., **params.kwargs(salt=salt_column("date", salts)))`` noises them
in one call (when their charges share ε, δ and mechanism, the usual case).

Everything that touches rows is a Spark column expression (no Python UDF). Randomness is not drawn from a
random generator but derived from a keyed hash (SHA-256 of a key derived from ``dp_secret``, the charge's salt,
the column and the row's key), so re-running a release on the same data reproduces it exactly, which is what
makes a re-run free in the ledger.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from jobs.lake import LOCK
from jobs.schemas import PRIVACY_LEDGER, arrow_schema
from jobs.settings import DEFAULT_DP_SECRET, JobSettings, dp_secret_problem

Mechanism = Literal["laplace", "gaussian"]
TableKind = Literal["density", "density_hourly", "flows"]

# The default of settings.dp_secret: DP refuses to run with it (anyone could recompute the noise).
DEFAULT_SECRET = DEFAULT_DP_SECRET
# Contribution bounds that have no setting yet (see ContributionBound).
DEFAULT_MAX_PINGS_PER_CELL = 4  # pings of one person-day in one finest cell (the simulator's phones: ~4 a day)
DEFAULT_MAX_CELL_HOURS = 24  # (cell, hour) slots of one person-day counted in the hourly tables
# Relative slack when comparing sums of epsilons to the budget (0.1 * 10 is not exactly 1.0).
_BUDGET_TOLERANCE = 1e-9
_UNIFORM_BITS = 52  # bits of each SHA-256 hex chunk (13 hex digits) turned into a uniform variate


class DPConfigError(ValueError):
    """Differential privacy is asked for but cannot run safely as configured."""


class PrivacyBudgetExceeded(RuntimeError):
    """A release would take its period's spent epsilon over the budget; nothing was charged."""

    def __init__(self, period: str, spent: float, requested: float, budget: float, release: str) -> None:
        self.period, self.spent, self.requested, self.budget, self.release = period, spent, requested, budget, release
        super().__init__(
            f"privacy budget exceeded for period {period}: spent ε={spent:g} + release {release} ε={requested:g} "
            f"= {spent + requested:g} > budget ε={budget:g}. Nothing was charged; do not publish this release. "
            f"To allow it, raise ROUTECAST_DP_BUDGET (a policy decision: it weakens the guarantee for the whole "
            f"period), lower ROUTECAST_DP_EPSILON for later releases, or wait for the next period."
        )


# --------------------------------------------------------------------------------------------------------------
# Secret and keys


def require_dp(settings: JobSettings) -> str:
    """The DP secret, after checking that DP is on and the secret is neither the default nor weak
    (:func:`jobs.settings.dp_secret_problem`); raises ``DPConfigError``."""
    if settings.dp_mechanism == "none":
        raise DPConfigError("differential privacy is off (ROUTECAST_DP_MECHANISM=none); set laplace or gaussian")
    secret = settings.dp_secret.get_secret_value()
    _check_secret(secret)
    return secret


def _check_secret(secret: str) -> None:
    # JobSettings refuses these when DP is on; settings made without validation (model_copy) are caught here.
    problem = dp_secret_problem(secret)
    if problem:
        raise DPConfigError(problem)


def _derive_key(secret: str, purpose: str) -> str:
    """A per-purpose key (hex) derived from the secret, so the secret itself never appears in Spark plans.

    The derived keys do appear there (as literals: ``explain()``, the Spark UI, event logs); whoever holds the
    noise key can recompute every release's noise, so protect those like the secret (or rotate the secret).
    """
    return hmac.new(secret.encode(), f"routecast/dp/{purpose}/v1".encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Contribution bound and sensitivities


class Sensitivity(NamedTuple):
    """How much one person-day can change a published table, as the L1 and L2 norm of the change."""

    l1: float
    l2: float


@dataclass(frozen=True)
class ContributionBound:
    """What one person-day may contribute to a release after ``bound_contributions``.

    - ``max_cells``: distinct finest-resolution cells (``settings.dp_max_cells_per_device_day``). Coarser cells are
      parents of these, so a person-day touches at most ``max_cells`` cells at every resolution.
    - ``max_pings``: pings per (person-day, finest cell), summed over the hours. A person-day's pings in any one
      table total at most ``max_cells * max_pings``.
    - ``max_cell_hours``: (cell, hour) slots per person-day that count in the hourly tables (rows flagged
      ``in_hourly``); without it a person-day could add 1 to ``24 * max_cells`` hourly counts.
    """

    max_cells: int
    max_pings: int = DEFAULT_MAX_PINGS_PER_CELL
    max_cell_hours: int = DEFAULT_MAX_CELL_HOURS

    def __post_init__(self) -> None:
        for name in ("max_cells", "max_pings", "max_cell_hours"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_settings(cls, settings: JobSettings) -> ContributionBound:
        return cls(max_cells=settings.dp_max_cells_per_device_day)

    def apply(self, reduced: DataFrame, secret: str) -> DataFrame:
        """``bound_contributions`` with this bound."""
        return bound_contributions(
            reduced, self.max_cells, secret, max_pings=self.max_pings, max_cell_hours=self.max_cell_hours
        )

    def as_params(self) -> dict[str, int]:
        """The bound as plain values, for ``fingerprint(params=...)``."""
        return asdict(self)

    def sensitivity(self, kind: TableKind, column: str, *, places: int | None = None) -> Sensitivity:
        """Sensitivity of one column of one table at one resolution, given rows bounded by this bound.

        ``density``: per (cell, res, date); ``density_hourly``: per (cell, res, date, hour), from ``in_hourly`` rows
        only; ``flows``: distinct devices per (from, to, date), from the bounded rows only. ``places`` (flows) is how
        many distinct places a person-day's bounded rows can map to (default ``max_cells``: cells at any
        resolution; pass more if a cell can belong to several route segments). ``devices`` is a distinct count, so
        a person-day adds at most 1 to each count it touches; ``pings`` can pile up in one coarse cell, so its L2
        is its L1.
        """
        k, p, m = self.max_cells, self.max_pings, self.max_cell_hours
        if kind == "density" and column == "devices":
            return Sensitivity(k, math.sqrt(k))
        if kind == "density_hourly" and column == "devices":
            return Sensitivity(m, math.sqrt(m))
        if kind in ("density", "density_hourly") and column == "pings":
            return Sensitivity(k * p, k * p)
        if kind == "flows" and column == "devices":
            n = places if places is not None else k
            pairs = n * (n - 1)  # distinct ordered (from, to) pairs among n places
            return Sensitivity(pairs, math.sqrt(pairs))
        raise ValueError(f"no sensitivity for column {column!r} of a {kind!r} table")


def bound_contributions(
    reduced: DataFrame,
    max_cells: int,
    secret: str,
    *,
    max_pings: int = DEFAULT_MAX_PINGS_PER_CELL,
    max_cell_hours: int = DEFAULT_MAX_CELL_HOURS,
) -> DataFrame:
    """Bound each person-day's contribution: the input to every DP table of a release.

    ``reduced`` has one row per ``(device_id, date, hour, cell)`` (``cell`` the finest-resolution cell, int64) with
    its ``pings``; other columns pass through. Per ``(device_id, date)``:

    1. keep the rows of at most ``max_cells`` distinct cells, the ones with the smallest keyed hash of
       (device, date, cell): a pseudo-random choice, deterministic given the secret and unbiased across cells
       (keeping "the first k" would favour some cells or hours);
    2. clip the pings of each kept cell to ``max_pings`` in total, consuming them hour by hour in a keyed
       pseudo-random hour order (so clipping does not favour early or late hours); a row can be left with 0
       pings and is kept (the device was there, which the device counts and flows need);
    3. flag ``in_hourly`` on at most ``max_cell_hours`` (cell, hour) rows: first one row of every kept cell, then
       the others in keyed pseudo-random order (so with ``max_cell_hours >= max_cells`` every kept cell appears in
       the hourly tables). Hourly tables must be built from the flagged rows only; daily tables from all rows.

    Returns the kept rows with the same columns (``pings`` clipped, as long) plus ``in_hourly``. Three window
    passes over one shuffle by (device_id, date).
    """
    _check_secret(secret)
    ContributionBound(max_cells, max_pings, max_cell_hours)  # validates the bounds
    missing = {"device_id", "date", "hour", "cell", "pings"} - set(reduced.columns)
    if missing:
        raise ValueError(f"bound_contributions needs columns {sorted(missing)}")
    key = F.lit(_derive_key(secret, "contribution-bound"))
    day = Window.partitionBy("device_id", "date")
    cell_day = Window.partitionBy("device_id", "date", "cell")
    tmp = ["_h_cell", "_cell_rank", "_h_slot", "_hour_rank", "_before", "_slot"]
    out = (
        reduced.withColumn("_h_cell", F.xxhash64(key, "device_id", "date", "cell"))
        .withColumn("_cell_rank", F.dense_rank().over(day.orderBy("_h_cell", "cell")))
        .where(F.col("_cell_rank") <= F.lit(max_cells))
        .withColumn("_h_slot", F.xxhash64(key, "device_id", "date", "cell", "hour"))
        .withColumn("_hour_rank", F.row_number().over(cell_day.orderBy("_h_slot", "hour")))
        .withColumn(
            "_before",
            F.coalesce(
                # the order of _hour_rank, written as its window's so that both share one sort
                F.sum("pings").over(cell_day.orderBy("_h_slot", "hour").rowsBetween(Window.unboundedPreceding, -1)),
                F.lit(0),
            ),
        )
        .withColumn("pings", F.greatest(F.lit(0), F.least("pings", F.lit(max_pings) - F.col("_before"))).cast("long"))
        .withColumn("_slot", F.row_number().over(day.orderBy("_hour_rank", "_h_slot", "cell", "hour")))
        .withColumn("in_hourly", F.col("_slot") <= F.lit(max_cell_hours))
    )
    return out.drop(*tmp)


# --------------------------------------------------------------------------------------------------------------
# Budget split and noise


def split_budget(epsilon: float, delta: float, weights: int | Sequence[float]) -> list[tuple[float, float]]:
    """Split a release's (ε, δ) over its queries by basic sequential composition.

    ``weights`` is the number of queries (equal shares) or one positive weight per query. Query i gets
    ``(ε·w_i/Σw, δ·w_i/Σw)``; the k queries together are (ε, δ)-DP. Every (table, column, resolution) a release
    publishes is one query: a person-day appears at every resolution, so resolutions do not compose in parallel.
    """
    ws = [1.0] * weights if isinstance(weights, int) else [float(w) for w in weights]
    if not ws or any(w <= 0 for w in ws):
        raise ValueError(f"split_budget needs at least one positive weight, got {weights!r}")
    total = math.fsum(ws)
    return [(epsilon * w / total, delta * w / total) for w in ws]


def _phi(x: float) -> float:
    """Standard normal CDF, accurate in the tails."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gaussian_delta(sigma: float, epsilon: float, l2_sensitivity: float) -> float:
    """The exact δ at which the Gaussian mechanism with ``sigma`` is ε-DP (Balle & Wang 2018, Theorem 8)."""
    a, b = l2_sensitivity / (2.0 * sigma), epsilon * sigma / l2_sensitivity
    tail = _phi(-a - b)
    return _phi(a - b) - (math.exp(min(epsilon + math.log(tail), 700.0)) if tail > 0.0 else 0.0)


def gaussian_sigma(epsilon: float, delta: float, l2_sensitivity: float, *, analytic: bool = True) -> float:
    """Noise standard deviation of the Gaussian mechanism for (ε, δ) and an L2 sensitivity.

    ``analytic`` (default): the analytic Gaussian mechanism of Balle & Wang (ICML 2018) — the smallest σ whose
    exact privacy profile (``gaussian_delta``) is at most δ, found by bisection; valid for every ε > 0 and never
    larger than the classic bound. Otherwise the classic σ = Δ₂·√(2 ln(1.25/δ))/ε (Dwork & Roth, Thm A.1), which is
    only valid for ε < 1.
    """
    if not (epsilon > 0 and 0 < delta < 1):
        raise ValueError(f"the Gaussian mechanism needs epsilon > 0 and 0 < delta < 1, got ({epsilon}, {delta})")
    if l2_sensitivity == 0:
        return 0.0
    classic = l2_sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon
    if not analytic:
        if epsilon >= 1:
            raise ValueError(f"the classic Gaussian bound needs epsilon < 1, got {epsilon}; use analytic=True")
        return classic
    hi = classic
    while gaussian_delta(hi, epsilon, l2_sensitivity) > delta:
        hi *= 2.0
    lo = hi
    while gaussian_delta(lo, epsilon, l2_sensitivity) <= delta:
        lo /= 2.0
    for _ in range(200):  # δ(σ) decreases in σ: keep lo failing and hi passing
        mid = math.sqrt(lo * hi)
        if gaussian_delta(mid, epsilon, l2_sensitivity) <= delta:
            hi = mid
        else:
            lo = mid
        if hi / lo < 1 + 1e-12:
            break
    return hi


def noise_scale(
    mechanism: Mechanism, epsilon: float, delta: float, l1_sensitivity: float, l2_sensitivity: float
) -> float:
    """The Laplace scale b = Δ₁/ε, or the Gaussian σ (analytic, ``gaussian_sigma``)."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if mechanism == "laplace":
        return l1_sensitivity / epsilon
    if mechanism == "gaussian":
        return gaussian_sigma(epsilon, delta, l2_sensitivity)
    raise ValueError(f"unknown DP mechanism {mechanism!r}; expected laplace or gaussian")


def _uniform(digest: Column, chunk: int) -> Column:
    """A uniform variate in the open interval (0, 1) from the ``chunk``-th 52 bits of a SHA-256 hex digest."""
    bits = F.conv(F.substring(digest, 1 + 13 * chunk, 13), 16, 10).cast("double")
    return (bits + F.lit(0.5)) / F.lit(float(2**_UNIFORM_BITS))


def add_noise(
    df: DataFrame,
    columns: Sequence[str],
    key_columns: Sequence[str],
    *,
    mechanism: Mechanism,
    epsilon: float,
    delta: float,
    l1_sensitivity: float,
    l2_sensitivity: float,
    secret: str,
    salt: str | Column,
    floor: int = 0,
) -> DataFrame:
    """Replace each of ``columns`` by ``max(floor, round(value + noise))`` (long).

    The call is (ε, δ)-DP for the vector of all ``columns`` over all rows when ``l1_sensitivity`` /
    ``l2_sensitivity`` are the sensitivities of that whole vector; to noise columns with different sensitivities
    (devices and pings), call once per column with a share of the budget (``plan_release`` does the split).
    Laplace: scale b = Δ₁/ε, by inverse CDF. Gaussian: σ of the analytic Gaussian mechanism (``gaussian_sigma``),
    by Box–Muller. Rounding and clamping are post-processing, so they keep the guarantee.

    The noise of a row and column is a function of (secret, ``salt``, column name, the row's ``key_columns``):
    the same inputs give the same output, bit for bit. ``salt`` is a string, or a string column (e.g. one salt
    per date, ``salt_column``); a row without a salt fails the job. The key columns must identify a row.
    """
    _check_secret(secret)
    if not columns:
        raise ValueError("add_noise needs at least one column to noise")
    overlap = set(columns) & set(key_columns)
    missing = (set(columns) | set(key_columns)) - set(df.columns)
    if overlap or missing or not key_columns:
        raise ValueError(
            f"add_noise: key columns {list(key_columns)} and noised columns {list(columns)} must be "
            f"disjoint, non-empty and in the frame (missing: {sorted(missing)})"
        )
    scale = noise_scale(mechanism, epsilon, delta, l1_sensitivity, l2_sensitivity)
    key = F.lit(_derive_key(secret, "noise"))
    salt_col = F.lit(salt) if isinstance(salt, str) else salt
    salt_col = F.when(salt_col.isNull(), F.raise_error(F.lit("add_noise: a row has no DP salt"))).otherwise(salt_col)
    row_key = F.struct(*[F.col(c) for c in key_columns])
    out = df
    u1, u2, tmp = F.col("_dp_u1"), F.col("_dp_u2"), ["_dp_digest", "_dp_u1", "_dp_u2"]
    # The scale is hashed too: should a caller change the noise parameters without a new charge (a fingerprint that
    # misses them), the noise is independent (an under-charge) instead of the old noise rescaled (which would
    # reveal the counts exactly, by solving two equations).
    params = F.lit(f"{mechanism}:{scale!r}")
    for column in columns:
        message = F.to_json(
            F.struct(
                salt_col.alias("salt"), params.alias("params"), F.lit(column).alias("column"), row_key.alias("key")
            )
        )
        out = (
            out.withColumn("_dp_digest", F.sha2(F.concat(key, message), 256))  # hashed once per row and column
            .withColumn("_dp_u1", _uniform(F.col("_dp_digest"), 0))
            .withColumn("_dp_u2", _uniform(F.col("_dp_digest"), 1))
        )
        if mechanism == "laplace":  # inverse CDF of Laplace(0, b)
            centred = u1 - F.lit(0.5)
            noise = F.lit(-scale) * F.signum(centred) * F.log(F.lit(1.0) - F.lit(2.0) * F.abs(centred))
        else:  # Box-Muller
            noise = F.lit(scale) * F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2.0 * math.pi) * u2)
        noisy = F.round(F.col(column).cast("double") + noise).cast("long")
        out = out.withColumn(column, F.greatest(F.lit(floor).cast("long"), noisy)).drop(*tmp)
    return out


def salt_column(column: str, salts: Mapping[Any, str]) -> Column:
    """A salt per value of ``column`` (e.g. per date, from each date's ``Charge.salt``) for ``add_noise``."""
    if not salts:
        raise ValueError("salt_column needs at least one salt")
    pairs = [F.lit(v) for item in salts.items() for v in item]
    return F.create_map(*pairs)[F.col(column)]


@dataclass(frozen=True)
class Query:
    """One kind of noised count a release publishes. ``count`` is how many such queries (e.g. one per resolution,
    all noised in one ``add_noise`` call); ``weight`` its relative share of the budget per query."""

    kind: TableKind
    column: str
    count: int = 1
    weight: float = 1.0
    places: int | None = None  # flows only; see ContributionBound.sensitivity


@dataclass(frozen=True)
class NoiseParams:
    """The keyword arguments of one ``add_noise`` call.

    ``add_noise(df, [column], keys, secret=secret, floor=min_devices + 1, **params.kwargs())``
    """

    mechanism: Mechanism
    epsilon: float
    delta: float
    l1_sensitivity: float
    l2_sensitivity: float
    salt: str

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The fields as keyword arguments, e.g. ``kwargs(salt=salt_column("date", salts))`` for several dates."""
        return asdict(self) | overrides

    @property
    def scale(self) -> float:
        """Laplace b or Gaussian σ of this query's noise (the noise std is √2·b, resp. σ)."""
        return noise_scale(self.mechanism, self.epsilon, self.delta, self.l1_sensitivity, self.l2_sensitivity)


def plan_release(charge: Charge, bound: ContributionBound, queries: Mapping[str, Query]) -> dict[str, NoiseParams]:
    """Noise parameters per named query of a release: the charge's (ε, δ) split by ``split_budget`` over
    Σ count queries (by weight), the sensitivities from ``bound``, and a salt per name from the charge.

    Uses the charge's mechanism, ε and δ (not the settings'): a free re-charge must reproduce the original noise.
    """
    if not queries:
        raise ValueError("plan_release needs at least one query")
    if any(q.count < 1 for q in queries.values()):
        raise ValueError("every query needs count >= 1")
    # split_budget over every single query; queries of one name share its weight, hence one share each.
    shares = split_budget(charge.epsilon, charge.delta, [q.weight for q in queries.values() for _ in range(q.count)])
    plan = {}
    position = 0
    for name, q in queries.items():
        eps, delta = shares[position]
        position += q.count
        s = bound.sensitivity(q.kind, q.column, places=q.places)
        plan[name] = NoiseParams(charge.mechanism, eps, delta, s.l1, s.l2, f"{charge.salt}/{name}")
    return plan


# --------------------------------------------------------------------------------------------------------------
# Fingerprint of the unnoised input


def fingerprint(tables: Mapping[str, DataFrame], secret: str, *, params: Mapping[str, Any]) -> str:
    """A keyed hash of a release's unnoised (suppressed) tables and of everything else that shapes its output.

    Order-independent (a multiset hash of the rows), so re-running on the same data gives the same value.
    ``params`` must hold whatever changes the output besides the data and the charge's ε/δ/mechanism — the bound,
    the queries and their weights, min_devices, the resolutions: ``fingerprint_params`` — because a re-run that is
    free in the ledger must reproduce the release exactly. Keyed with the secret, so the ledger cannot confirm a
    guess of the counts.
    """
    return _fingerprints(tables, secret, None, params)[None]


def fingerprint_params(bound: ContributionBound, queries: Mapping[str, Query], **extra: Any) -> dict[str, Any]:
    """The ``params`` of ``fingerprint``: the bound, the queries, and ``extra`` (e.g. min_devices, resolutions)."""
    return {"bound": bound.as_params(), "queries": {n: asdict(q) for n, q in queries.items()}, **extra}


def fingerprints_by(
    tables: Mapping[str, DataFrame], secret: str, by: str, *, params: Mapping[str, Any]
) -> dict[Any, str]:
    """``fingerprint`` per value of ``by`` (e.g. per date when a run recomputes several releases), one Spark job
    per table; values absent from every table are absent from the result."""
    return _fingerprints(tables, secret, by, params)


def _fingerprints(
    tables: Mapping[str, DataFrame], secret: str, by: str | None, params: Mapping[str, Any]
) -> dict[Any, str]:
    _check_secret(secret)
    entries: dict[Any, dict[str, list[Any]]] = {} if by else {None: {}}
    for name in sorted(tables):
        df = tables[name]
        if by and by not in df.columns:
            raise ValueError(f"fingerprints_by: table {name!r} has no column {by!r}")
        cols = [F.col(c) for c in sorted(df.columns)]
        h1 = F.xxhash64(*cols).cast("decimal(38,0)")
        h2 = F.xxhash64(F.lit("routecast-fingerprint-2"), *cols).cast("decimal(38,0)")
        grouped = df.groupBy(by) if by else df.groupBy()
        for r in grouped.agg(F.count(F.lit(1)).alias("n"), F.sum(h1).alias("s1"), F.sum(h2).alias("s2")).collect():
            entries.setdefault(r[by] if by else None, {})[name] = [r["n"], str(r["s1"]), str(r["s2"])]
    key = _derive_key(secret, "fingerprint").encode()
    out = {}
    for value, found in entries.items():
        payload = {"tables": {n: found.get(n) for n in sorted(tables)}, "params": dict(params), "by": str(value)}
        message = json.dumps(payload, sort_keys=True, default=str).encode()
        out[value] = hmac.new(key, message, hashlib.sha256).hexdigest()
    return out


# --------------------------------------------------------------------------------------------------------------
# The ledger


def period_of(data_date: dt.date) -> str:
    """The budget period of a data date: its calendar month, ``YYYY-MM``."""
    return f"{data_date.year:04d}-{data_date.month:02d}"


@dataclass(frozen=True)
class Charge:
    """One row of the ledger: a release's spend. ``new`` is False when an earlier identical charge was reused."""

    period: str
    seq: int
    release: str
    data_date: dt.date
    mechanism: Mechanism
    epsilon: float
    delta: float
    fingerprint: str
    charged_at: dt.datetime
    new: bool

    @property
    def salt(self) -> str:
        """The noise salt of this charge. It changes with every charge of a release (seq) and with its data
        (fingerprint): see ``PrivacyLedger.charge`` for why noise must never be reused on other data."""
        return f"{self.release}#{self.period}.{self.seq}#{self.fingerprint}"


_FILE_SCHEMA = StructType([f for f in PRIVACY_LEDGER.fields if f.name != "period"])  # period is the folder


class PrivacyLedger:
    """The table of privacy charges (``lake/privacy/ledger``), one Parquet file per charge under ``period=YYYY-MM``.

    Append-only and small, so written with pyarrow (no Spark needed to charge or list); Spark reads it with
    ``read_table(spark, path, PRIVACY_LEDGER)``. A charge holds the table's lock (the lake's ``_lock``) from
    reading the period to writing its file, so two jobs cannot both spend the last of a budget; the file is
    written under a hidden name, fsynced and renamed into place, so a crash leaves either no charge or the charge.
    """

    def __init__(self, settings: JobSettings) -> None:
        require_dp(settings)
        self.settings = settings
        self.path = ledger_path(settings)

    def charge(self, release: str, data_date: dt.date, fingerprint: str) -> Charge:
        """Spend ``settings.dp_epsilon`` (and ``dp_delta`` for gaussian) on ``release`` in its data date's period.

        - Over budget (the period's spent ε + this ε > ``dp_budget``): raises ``PrivacyBudgetExceeded`` and writes
          nothing; the caller must not publish.
        - The same release key with the same fingerprint as an earlier charge: returns that charge (``new`` is
          False) and writes nothing. This is free only because the output is identical: the same data, the same
          salt and the charge's own ε/δ/mechanism reproduce the same noise, so nothing new is learnt. (Publishing
          the same data twice with *independent* noise would cost ε twice: averaging them halves the noise.)
        - The same key with another fingerprint (late data changed the counts, or the bound changed): a new charge
          with a new ``seq``, hence a new salt and fresh noise. The noise must be fresh: two releases of different
          data x and x' with the same noise n publish x + n and x' + n, whose difference is x' − x exactly — the
          late-arriving people's contribution, without any noise at all.
        """
        if not fingerprint:
            raise ValueError("charge needs the fingerprint of the release's unnoised input")
        s = self.settings
        mechanism = cast(Mechanism, s.dp_mechanism)  # not "none": require_dp checked it
        epsilon = float(s.dp_epsilon)
        delta = float(s.dp_delta) if mechanism == "gaussian" else 0.0
        period = period_of(data_date)
        with _locked(self.path):
            rows = _read_period(self.path, period)
            same = rows[(rows["release"] == release) & (rows["fingerprint"] == fingerprint)]
            if len(same):
                return _charge_of(same.iloc[0], new=False)
            spent = math.fsum(rows["epsilon"])
            if spent + epsilon > s.dp_budget * (1 + _BUDGET_TOLERANCE):
                raise PrivacyBudgetExceeded(period, spent, epsilon, s.dp_budget, release)
            charge = Charge(
                period=period,
                seq=int(rows["seq"].max()) + 1 if len(rows) else 1,
                release=release,
                data_date=data_date,
                mechanism=mechanism,
                epsilon=epsilon,
                delta=delta,
                fingerprint=fingerprint,
                charged_at=dt.datetime.now(dt.UTC),
                new=True,
            )
            _append(self.path, charge)
        return charge

    def spent(self, period: str) -> float:
        """Epsilon spent in ``period`` (``YYYY-MM``)."""
        return math.fsum(_read_period(self.path, period)["epsilon"])

    def entries(self, period: str | None = None) -> pd.DataFrame:
        return ledger_entries(self.settings, period)


def ledger_path(settings: JobSettings) -> Path:
    return settings.lake("privacy", "ledger")


def ledger_entries(settings: JobSettings, period: str | None = None) -> pd.DataFrame:
    """The ledger's charges (columns of ``PRIVACY_LEDGER``), optionally of one period, by period and seq.
    Needs neither Spark nor the secret (for a CLI listing)."""
    path = ledger_path(settings)
    periods = [period] if period else sorted(_periods(path))
    frames = [_read_period(path, p) for p in periods]
    return pd.concat(frames, ignore_index=True) if frames else _empty_entries()


def ledger_summary(settings: JobSettings) -> pd.DataFrame:
    """One row per period: releases, charges, ε and δ spent, the configured budget and what remains of it."""
    rows = ledger_entries(settings)
    summary = (
        rows.groupby("period", sort=True)
        .agg(
            releases=("release", "nunique"),
            charges=("seq", "count"),
            epsilon_spent=("epsilon", "sum"),
            delta_spent=("delta", "sum"),
        )
        .reset_index()
    )
    summary["budget"] = float(settings.dp_budget)
    summary["remaining"] = (summary["budget"] - summary["epsilon_spent"]).clip(lower=0.0)
    return summary


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _periods(path: Path) -> Iterator[str]:
    if path.is_dir():
        for child in path.iterdir():
            if child.is_dir() and child.name.startswith("period="):
                yield child.name.partition("=")[2]


def _empty_entries() -> pd.DataFrame:
    return pa.Table.from_pylist([], schema=arrow_schema(PRIVACY_LEDGER)).to_pandas()


def _read_period(path: Path, period: str) -> pd.DataFrame:
    folder = path / f"period={period}"
    files = sorted(f for f in folder.glob("*.parquet") if not f.name.startswith(("_", "."))) if folder.is_dir() else []
    if not files:
        return _empty_entries()
    table = pa.concat_tables([pq.read_table(f, schema=arrow_schema(_FILE_SCHEMA)) for f in files])
    frame = table.to_pandas()
    frame.insert(0, "period", period)
    return frame.sort_values("seq", ignore_index=True)


def _charge_of(row: pd.Series, *, new: bool) -> Charge:
    return Charge(
        period=str(row["period"]),
        seq=int(row["seq"]),
        release=str(row["release"]),
        data_date=row["data_date"],
        mechanism=row["mechanism"],
        epsilon=float(row["epsilon"]),
        delta=float(row["delta"]),
        fingerprint=str(row["fingerprint"]),
        charged_at=row["charged_at"].to_pydatetime(),
        new=new,
    )


def _append(path: Path, charge: Charge) -> None:
    folder = path / f"period={charge.period}"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("_tmp-*"):  # a crash mid-write left it; we hold the lock
        stale.unlink(missing_ok=True)
    record = {f.name: getattr(charge, f.name) for f in _FILE_SCHEMA.fields}
    table = pa.Table.from_pylist([record], schema=arrow_schema(_FILE_SCHEMA))
    token = uuid.uuid4().hex
    tmp = folder / f"_tmp-{token}.parquet"
    with open(tmp, "wb") as handle:
        pq.write_table(table, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, folder / f"{charge.seq:06d}-{token}.parquet")
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
