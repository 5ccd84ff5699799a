"""Differential privacy applied to Spark DataFrames: the contribution bound, the noise and the fingerprint of a
release's unnoised input (the maths is in ``jobs.privacy.mechanisms``, the budget in ``jobs.privacy.ledger``).

Everything that touches rows is a Spark column expression (no Python UDF); ``add_noise`` computes, for every row
and column, what ``mechanisms.seeded_noise`` and ``mechanisms.noisy_count`` compute for one value.

Order of operations in the aggregation job (``jobs.stages.aggregate``; see docs/privacy.md)::

    secret = require_dp(settings)                       # refuses DP off, a default or a weak secret
    bound = ContributionBound.from_settings(settings)
    rows = apply_bound(reduced, bound, secret)          # 1. bound each person-day (before any aggregation)
    tables = {...}                                      # 2. aggregate the bounded rows: daily tables from all rows,
                                                        #    hourly tables from in_hourly rows
    tables = {n: suppress(t) ...}                       # 3. suppress on the unnoised counts; cache
    queries = {"density.devices": Query("density", "devices", count=len(resolutions)), ...}
    fp = fingerprint(tables, secret, params=fingerprint_params(bound, queries, min_devices=...))
    charge = PrivacyLedger(settings).charge(f"density/{date}", date, fp)  # 4. PrivacyBudgetExceeded: publish
                                                        #    nothing for that date (keep what was there)
    plan = plan_release(charge, bound, queries)         # 5. ε, δ split over the queries; sensitivities; salts
    noisy = add_noise(t, ["devices"], ["cell", "res", "date"], secret=secret,
                      floor=settings.min_devices + 1, **plan["density.devices"].kwargs())  # 6. per query
    write the noisy tables only                         # 7. publish

Steps 1 to 3 are the job's transform; 4 is a step of its run, after the transform is planned and before anything
is written; 6 is a pure function of the transform's output and the plans. For a run that recomputes several
dates, ``fingerprints_by(tables, secret, "date", ...)`` gives every date's fingerprint in one pass, and
``add_noise(..., **params.kwargs(salt=salt_column("date", salts)))`` noises them in one call (when their charges
share ε, δ and mechanism, the usual case).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.privacy.mechanisms import (
    BOUND_KEY,
    DEFAULT_MAX_CELL_HOURS,
    DEFAULT_MAX_PINGS_PER_CELL,
    FINGERPRINT_KEY,
    NOISE_KEY,
    UNIFORM_BITS,
    UNIFORM_HEX_DIGITS,
    ContributionBound,
    Mechanism,
    Query,
    check_secret,
    derive_key,
    noise_scale,
    noise_tag,
)

# --------------------------------------------------------------------------------------------------------------
# Contribution bound


def apply_bound(reduced: DataFrame, bound: ContributionBound, secret: str) -> DataFrame:
    """``bound_contributions`` with ``bound``."""
    return bound_contributions(
        reduced, bound.max_cells, secret, max_pings=bound.max_pings, max_cell_hours=bound.max_cell_hours
    )


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
    check_secret(secret)
    ContributionBound(max_cells, max_pings, max_cell_hours)  # validates the bounds
    missing = {"device_id", "date", "hour", "cell", "pings"} - set(reduced.columns)
    if missing:
        raise ValueError(f"bound_contributions needs columns {sorted(missing)}")
    key = F.lit(derive_key(secret, BOUND_KEY))
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
# Noise


def _uniform(digest: Column, chunk: int) -> Column:
    """A uniform variate in the open interval (0, 1) from the ``chunk``-th 52 bits of a SHA-256 hex digest."""
    bits = F.conv(F.substring(digest, 1 + UNIFORM_HEX_DIGITS * chunk, UNIFORM_HEX_DIGITS), 16, 10).cast("double")
    return (bits + F.lit(0.5)) / F.lit(float(2**UNIFORM_BITS))


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
    the same inputs give the same output, bit for bit: the value ``mechanisms.seeded_noise`` gives for that row.
    ``salt`` is a string, or a string column (e.g. one salt per date, ``salt_column``); a row without a salt fails
    the job. The key columns must identify a row.
    """
    check_secret(secret)
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
    key = F.lit(derive_key(secret, NOISE_KEY))
    salt_col = F.lit(salt) if isinstance(salt, str) else salt
    salt_col = F.when(salt_col.isNull(), F.raise_error(F.lit("add_noise: a row has no DP salt"))).otherwise(salt_col)
    row_key = F.struct(*[F.col(c) for c in key_columns])
    out = df
    u1, u2, tmp = F.col("_dp_u1"), F.col("_dp_u2"), ["_dp_digest", "_dp_u1", "_dp_u2"]
    # The scale is hashed too: should a caller change the noise parameters without a new charge (a fingerprint that
    # misses them), the noise is independent (an under-charge) instead of the old noise rescaled (which would
    # reveal the counts exactly, by solving two equations).
    params = F.lit(noise_tag(mechanism, scale))
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
    check_secret(secret)
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
    key = derive_key(secret, FINGERPRINT_KEY).encode()
    out = {}
    for value, found in entries.items():
        payload = {"tables": {n: found.get(n) for n in sorted(tables)}, "params": dict(params), "by": str(value)}
        message = json.dumps(payload, sort_keys=True, default=str).encode()
        out[value] = hmac.new(key, message, hashlib.sha256).hexdigest()
    return out
