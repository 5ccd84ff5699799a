"""The differential-privacy budget ledger: what every release has spent, and the refusal to overspend.

The ledger (``lake/privacy/ledger``, the catalogue's ``PRIVACY_LEDGER``) holds one row per charge: a release
(e.g. ``density/2025-03-10``), its data date's budget period (a calendar month), the mechanism, ε and δ spent and
the fingerprint of the release's unnoised input (``jobs.privacy.noise.fingerprint``). ``PrivacyLedger.charge`` is
the only way to spend: it refuses a charge that would take the period over ``dp_budget``
(``PrivacyBudgetExceeded``, nothing written), returns the earlier charge for the same release and fingerprint (a
re-run: free, and its salt reproduces the same noise), and makes a new charge with a fresh salt for the same
release on other data. Charges are serialised by a file lock and written crash-safely; no Spark session is needed
to charge or to list the ledger.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contracts import schemas, tables
from jobs.lake import LOCK
from jobs.privacy.mechanisms import Mechanism, require_dp
from jobs.settings import JobSettings

# Relative slack when comparing sums of epsilons to the budget (0.1 * 10 is not exactly 1.0).
_BUDGET_TOLERANCE = 1e-9


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


_FILE_SCHEMA = schemas.PRIVACY_LEDGER.remove(schemas.PRIVACY_LEDGER.get_field_index("period"))  # period: the folder


class PrivacyLedger:
    """The table of privacy charges (``lake/privacy/ledger``), one Parquet file per charge under ``period=YYYY-MM``.

    Append-only and small, so written with pyarrow (no Spark session needed to charge or list); Spark reads it
    with ``jobs.lake.read(spark, settings, tables.PRIVACY_LEDGER)``. A charge holds the table's lock (the lake's
    ``_lock``) from reading the period to writing its file, so two jobs cannot both spend the last of a budget; the
    file is written under a hidden name, fsynced and renamed into place, so a crash leaves either no charge or the
    charge.
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
    """Where the ledger lives: the catalogue's ``PRIVACY_LEDGER`` in the lake."""
    return settings.lake(tables.PRIVACY_LEDGER)


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
    return pa.Table.from_pylist([], schema=schemas.PRIVACY_LEDGER).to_pandas()


def _read_period(path: Path, period: str) -> pd.DataFrame:
    folder = path / f"period={period}"
    files = sorted(f for f in folder.glob("*.parquet") if not f.name.startswith(("_", "."))) if folder.is_dir() else []
    if not files:
        return _empty_entries()
    table = pa.concat_tables([pq.read_table(f, schema=_FILE_SCHEMA) for f in files])
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
    record = {f.name: getattr(charge, f.name) for f in _FILE_SCHEMA}
    table = pa.Table.from_pylist([record], schema=_FILE_SCHEMA)
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
