"""Data-quality checks of the nightly run, as data: named values per stage, thresholds in config, every value
stored in the run ledger's SQLite file (table ``qa_checks``), a failing blocking check stops the release.

After a stage, :func:`evaluate` computes its values (:func:`stage_values`), compares them with the thresholds of
``jobs/orchestration/qa.toml`` (or ``ROUTECAST_QA_CONFIG``), records them as rows ``(run_date, run_id, dataset, check,
value, min, max, passed, blocking)`` and returns them. The dataset is the stage. A value with no threshold in the
config is informational: stored with ``passed`` true, so it can be charted and later thresholded. A value that cannot
be computed (a share of nothing, a comparison with no earlier run date) is neither evaluated nor stored.

The values, per stage (all counts are over the stage's whole processing window, as its counts objects are):

ingest (``IngestCounts`` or ``TileCounts``)
    ``rows_in``, ``rows_accepted`` (written to bronze), ``files_rejected`` (pings only: unreadable input files);
    ``share_quarantined`` = quarantined / rows_in; ``share_duplicates`` = duplicates / rows_in.
aggregate (``AggregateCounts``)
    ``cell_days`` (daily aggregates at every resolution), ``rows_published`` (of which published),
    ``dp_refused_dates``; ``share_suppressed`` = suppressed / cell_days; ``share_hourly_suppressed`` =
    1 − hourly_published / hourly_aggregates; where density by home-network group was made,
    ``share_group_suppressed`` = 1 − group_published / group_aggregates and ``group_devices_unassigned`` (the day
    totals' devices at h3_res minus their groups': 0 when every device is in exactly one group).
flows (``FlowCounts``)
    ``device_days``, ``series_rows``, ``rows_published`` = segment + cell flows published; ``share_suppressed`` =
    (segment + cell suppressed) / (segment + cell transitions found).
series (the number of gold density series rows)
    ``rows``.
forecast (``ForecastResult``)
    ``series`` (series read); ``failed_share`` = share of the series read (``keys``) with no forecast row — failed
    or missing; ``share_jumping`` = share of the series with a forecast and an observed value whose first forecast
    *jumps* from the last actual (below); ``max_jump`` = the largest jump; ``jumping`` = how many jump.

A jump (:func:`jumps`): with y = the last observed value of a series (``history``, up to the run date) and f = the
first finite ``yhat`` of its forecast, ``jump = |f − y| / max(min(f, y), jump_floor)``, and the series jumps when
``jump > jump_factor``. Relative to the smaller of the two, the measure is symmetric — for factor 3, a forecast
over 4× or under ¼ of the last actual jumps — where relative to y alone a collapse to zero would score 1 and
never count. Values under ``jump_floor`` count as the floor, so small counts do not jump. Series without an
observed value in ``history`` (official files that ended long ago) are not compared.

``rows_vs_previous`` (ingest, aggregate, flows, series) = the stage's row value (``ROWS_VALUE``) / the median of
that value over the ``window`` (default 7) latest earlier run dates in the store, the latest attempt of each date;
not computed when there is no earlier date or their median is 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import sqlite3
import statistics
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.table import Table

from jobs.orchestration.runs import STAGES, Ledger, connect

if TYPE_CHECKING:
    from jobs.stages.aggregate import AggregateCounts
    from jobs.stages.flows import FlowCounts
    from jobs.stages.forecast import ForecastResult
    from jobs.stages.ingest import IngestCounts
    from jobs.stages.tiles import TileCounts

DEFAULT_CONFIG_PATH = Path(__file__).resolve().with_name("qa.toml")
DEFAULT_WINDOW = 7
DEFAULT_JUMP_FACTOR = 3.0
DEFAULT_JUMP_FLOOR = 10.0

VS_PREVIOUS = "rows_vs_previous"
# The value rows_vs_previous compares with earlier run dates, per stage.
ROWS_VALUE = {"ingest": "rows_accepted", "aggregate": "rows_published", "flows": "rows_published", "series": "rows"}

# Every value each stage yields, with the description shown when the config gives none: the checks the config may
# name (see the module docstring for the definitions).
VALUES: dict[str, dict[str, str]] = {
    "ingest": {
        "rows_in": "rows read (every status)",
        "rows_accepted": "rows written to bronze",
        "share_quarantined": "quarantined / rows in",
        "share_duplicates": "duplicates / rows in",
        "files_rejected": "input files that could not be read",
        VS_PREVIOUS: "accepted rows / median of the previous run dates'",
    },
    "aggregate": {
        "cell_days": "daily aggregates, every resolution",
        "rows_published": "cell-days published",
        "share_suppressed": "cell-days suppressed / cell-days",
        "share_hourly_suppressed": "cell-hours suppressed / cell-hours",
        "dp_refused_dates": "dates the privacy budget refused",
        "share_group_suppressed": "cell-day groups suppressed / cell-day groups",
        "group_devices_unassigned": "day totals' devices minus their groups' (0: the groups add up)",
        VS_PREVIOUS: "published cell-days / median of the previous run dates'",
    },
    "flows": {
        "device_days": "device-days read",
        "rows_published": "flows published (segment and cell)",
        "share_suppressed": "flows suppressed / flows found",
        "series_rows": "gold flow series rows",
        VS_PREVIOUS: "published flows / median of the previous run dates'",
    },
    "series": {
        "rows": "gold density series rows",
        VS_PREVIOUS: "series rows / median of the previous run dates'",
    },
    "forecast": {
        "series": "series read",
        "failed_share": "series read with no forecast",
        "share_jumping": "series whose first forecast jumps from the last actual",
        "max_jump": "largest jump |f − y| / max(min(f, y), floor)",
        "jumping": "series whose first forecast jumps",
    },
}
QA_STAGES = tuple(VALUES)

SCHEMA = """
CREATE TABLE IF NOT EXISTS qa_checks (
    run_date TEXT NOT NULL,        -- YYYY-MM-DD
    run_id TEXT NOT NULL,          -- as in stage_runs
    dataset TEXT NOT NULL,         -- the stage
    "check" TEXT NOT NULL,
    value REAL,                    -- NULL: NaN (evaluate stores none); may be Inf
    "min" REAL,                    -- NULL: no bound
    "max" REAL,
    passed INTEGER NOT NULL,
    blocking INTEGER NOT NULL,
    description TEXT NOT NULL,
    recorded TEXT NOT NULL,        -- UTC ISO
    PRIMARY KEY (run_id, dataset, "check")
);
CREATE INDEX IF NOT EXISTS qa_checks_by_check ON qa_checks (dataset, "check", run_date);
"""


class QAConfigError(ValueError):
    """The QA config is malformed; the message names the file and the check."""


class QAFailed(RuntimeError):
    """Blocking checks failed: the release must not go out. ``failures`` holds them; the message lists one a line."""

    def __init__(self, failures: Sequence[CheckResult]) -> None:
        self.failures = tuple(failures)
        first = self.failures[0] if self.failures else None
        where = f" for {first.run_date} (run {first.run_id})" if first else ""
        lines = [f"{len(self.failures)} blocking QA check(s) failed{where}:"]
        lines += [
            f"  {r.name} = {format_value(r.check, r.value)}, expected {r.threshold}: {r.description}"
            for r in self.failures
        ]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Check:
    """One configured check: the accepted range of one of a stage's values, and whether failing blocks the release.

    ``window`` is used by rows_vs_previous, ``jump_factor`` and ``jump_floor`` by forecast.share_jumping (and the
    jump values computed with it)."""

    dataset: str
    check: str
    min: float | None = None
    max: float | None = None
    blocking: bool = False
    description: str = ""
    window: int = DEFAULT_WINDOW
    jump_factor: float = DEFAULT_JUMP_FACTOR
    jump_floor: float = DEFAULT_JUMP_FLOOR


@dataclass(frozen=True)
class QAConfig:
    """The checks of one config file."""

    path: Path
    checks: tuple[Check, ...] = ()

    def stage(self, stage: str) -> dict[str, Check]:
        return {c.check: c for c in self.checks if c.dataset == stage}

    def get(self, dataset: str, check: str) -> Check | None:
        return self.stage(dataset).get(check)


@dataclass(frozen=True)
class CheckResult:
    run_date: dt.date
    run_id: str
    dataset: str
    check: str
    value: float
    min: float | None
    max: float | None
    passed: bool
    blocking: bool
    description: str

    @property
    def name(self) -> str:
        return f"{self.dataset}.{self.check}"

    @property
    def threshold(self) -> str:
        """The accepted range as text (``≤ 5.0%``, ``0.50× – 2.00×``), empty when informational."""
        return format_threshold(self.check, self.min, self.max)


# --- config -------------------------------------------------------------------------------------------------

_COMMON_KEYS = {"min", "max", "blocking", "description"}


def _allowed_keys(dataset: str, check: str) -> set[str]:
    if check == VS_PREVIOUS:
        return _COMMON_KEYS | {"window"}
    if (dataset, check) == ("forecast", "share_jumping"):
        return _COMMON_KEYS | {"jump_factor", "jump_floor"}
    return _COMMON_KEYS


def load_config(path: Path | None = None) -> QAConfig:
    """Read and check a QA config (default: the packaged ``jobs/orchestration/qa.toml``).

    Raises QAConfigError naming the file and the check for unknown stages, checks or keys, values of the wrong
    type, min > max, or a blocking check with no bound (it could never fail)."""
    path = path or DEFAULT_CONFIG_PATH
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QAConfigError(f"QA config {path} not found; set ROUTECAST_QA_CONFIG to an existing file") from None
    except tomllib.TOMLDecodeError as exc:
        raise QAConfigError(f"QA config {path}: not valid TOML ({exc})") from None

    def error(where: str, problem: str) -> QAConfigError:
        return QAConfigError(f"QA config {path}: [{where}] {problem}")

    checks = []
    for dataset, table in raw.items():
        if dataset not in VALUES:
            raise error(dataset, f"not a stage with checks; expected one of {', '.join(QA_STAGES)}")
        if not isinstance(table, dict):
            raise error(dataset, f"must be tables [{dataset}.<check>], got {table!r}")
        for name, spec in table.items():
            where = f"{dataset}.{name}"
            if name not in VALUES[dataset]:
                raise error(where, f"not a check of {dataset}; expected one of {', '.join(VALUES[dataset])}")
            if not isinstance(spec, dict):
                raise error(where, f"must be a table of {', '.join(sorted(_allowed_keys(dataset, name)))}")
            unknown = sorted(set(spec) - _allowed_keys(dataset, name))
            if unknown:
                allowed = ", ".join(sorted(_allowed_keys(dataset, name)))
                raise error(where, f"{unknown[0]!r} is not a known key; allowed: {allowed}")
            checks.append(_check(dataset, name, spec, lambda problem, w=where: error(w, problem)))
    return QAConfig(path=path, checks=tuple(checks))


def _check(dataset: str, name: str, spec: dict[str, Any], error: Any) -> Check:
    def number(key: str, positive: bool = False) -> float | None:
        value = spec.get(key)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise error(f"{key} must be a number, got {value!r}")
        if positive and value <= 0:
            raise error(f"{key} must be > 0, got {value!r}")
        return float(value)

    lo, hi = number("min"), number("max")
    if lo is not None and hi is not None and lo > hi:
        raise error(f"min = {lo:g} is above max = {hi:g}")
    blocking = spec.get("blocking", False)
    if not isinstance(blocking, bool):
        raise error(f"blocking must be true or false, got {blocking!r}")
    if blocking and lo is None and hi is None:
        raise error("blocking, but has neither min nor max: it could never fail")
    description = spec.get("description", VALUES[dataset][name])
    if not isinstance(description, str):
        raise error(f"description must be text, got {description!r}")
    window = spec.get("window", DEFAULT_WINDOW)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise error(f"window must be a whole number >= 1, got {window!r}")
    factor, floor = number("jump_factor", positive=True), number("jump_floor", positive=True)
    return Check(
        dataset=dataset,
        check=name,
        min=lo,
        max=hi,
        blocking=blocking,
        description=description,
        window=window,
        jump_factor=DEFAULT_JUMP_FACTOR if factor is None else factor,
        jump_floor=DEFAULT_JUMP_FLOOR if floor is None else floor,
    )


# --- values -------------------------------------------------------------------------------------------------


def _with_shares(values: dict[str, float], shares: dict[str, tuple[float, float]]) -> dict[str, float]:
    """``values`` plus each share part / whole whose whole is positive (a share of nothing is not a value)."""
    for name, (part, whole) in shares.items():
        if whole > 0:
            values[name] = part / whole
    return values


def ingest_values(counts: IngestCounts | TileCounts) -> dict[str, float]:
    values = {"rows_in": float(counts.rows_in), "rows_accepted": float(counts.accepted)}
    if hasattr(counts, "rejected_files"):  # tiles come as one file, read or refused as a whole
        values["files_rejected"] = float(len(counts.rejected_files))
    return _with_shares(
        values,
        {
            "share_quarantined": (counts.quarantined, counts.rows_in),
            "share_duplicates": (counts.duplicates, counts.rows_in),
        },
    )


def aggregate_values(counts: AggregateCounts) -> dict[str, float]:
    values = {
        "cell_days": float(counts.aggregates),
        "rows_published": float(counts.published),
        "dp_refused_dates": float(len(counts.dp_refused)),
    }
    if counts.group_aggregates:
        values["group_devices_unassigned"] = float(counts.group_devices_unassigned)
    return _with_shares(
        values,
        {
            "share_suppressed": (counts.suppressed, counts.aggregates),
            "share_hourly_suppressed": (counts.hourly_aggregates - counts.hourly_published, counts.hourly_aggregates),
            "share_group_suppressed": (counts.group_aggregates - counts.group_published, counts.group_aggregates),
        },
    )


def flow_values(counts: FlowCounts) -> dict[str, float]:
    found = counts.segment_transitions + counts.cell_transitions
    values = {
        "device_days": float(counts.device_days),
        "rows_published": float(counts.segment_published + counts.cell_published),
        "series_rows": float(counts.series_rows),
    }
    return _with_shares(values, {"share_suppressed": (counts.segment_suppressed + counts.cell_suppressed, found)})


def jumps(
    result: ForecastResult, *, jump_factor: float = DEFAULT_JUMP_FACTOR, jump_floor: float = DEFAULT_JUMP_FLOOR
) -> pd.DataFrame:
    """One row per series with both a finite forecast and an observed value: ``series_id, last_ds, y_last,
    first_ds, yhat1, jump, jumping`` (definitions in the module docstring), largest jump first."""
    fc = result.forecasts[["series_id", "ds", "yhat"]].assign(
        ds=lambda f: pd.to_datetime(f["ds"]), yhat=lambda f: pd.to_numeric(f["yhat"], errors="coerce")
    )
    fc = fc[np.isfinite(fc["yhat"])].sort_values(["series_id", "ds"], kind="stable")
    first = fc.drop_duplicates("series_id", keep="first").rename(columns={"ds": "first_ds", "yhat": "yhat1"})
    hist = result.history[["series_id", "ds", "y"]].assign(
        ds=lambda h: pd.to_datetime(h["ds"]), y=lambda h: pd.to_numeric(h["y"], errors="coerce")
    )
    hist = hist[np.isfinite(hist["y"])].sort_values(["series_id", "ds"], kind="stable")
    last = hist.drop_duplicates("series_id", keep="last").rename(columns={"ds": "last_ds", "y": "y_last"})
    both = last.merge(first, on="series_id", how="inner")
    base = np.maximum(np.minimum(both["y_last"], both["yhat1"]), jump_floor)
    both["jump"] = (both["yhat1"] - both["y_last"]).abs() / base
    both["jumping"] = both["jump"] > jump_factor
    columns = ["series_id", "last_ds", "y_last", "first_ds", "yhat1", "jump", "jumping"]
    return both[columns].sort_values(["jump", "series_id"], ascending=[False, True], ignore_index=True)


def forecast_values(
    result: ForecastResult, *, jump_factor: float = DEFAULT_JUMP_FACTOR, jump_floor: float = DEFAULT_JUMP_FLOOR
) -> dict[str, float]:
    read = set(result.keys["series_id"])
    with_forecast = set(result.forecasts["series_id"])
    values = {"series": float(len(read))}
    if read:
        values["failed_share"] = len(read - with_forecast) / len(read)
    compared = jumps(result, jump_factor=jump_factor, jump_floor=jump_floor)
    if len(compared):
        values["share_jumping"] = float(compared["jumping"].mean())
        values["max_jump"] = float(compared["jump"].max())
        values["jumping"] = float(compared["jumping"].sum())
    return values


def stage_values(stage: str, result: Any, config: QAConfig | None = None) -> dict[str, float]:
    """The QA values of one stage's result (its counts object; for series, its row count); ``config`` supplies the
    jump parameters of the forecast (default: DEFAULT_JUMP_FACTOR, DEFAULT_JUMP_FLOOR). ``rows_vs_previous`` needs
    the store: :func:`evaluate` adds it. ValueError for a stage without checks (retention, publish)."""
    if stage == "ingest":
        return ingest_values(result)
    if stage == "aggregate":
        return aggregate_values(result)
    if stage == "flows":
        return flow_values(result)
    if stage == "series":
        return {"rows": float(result)}
    if stage == "forecast":
        jump = (config.get("forecast", "share_jumping") if config else None) or Check("forecast", "share_jumping")
        return forecast_values(result, jump_factor=jump.jump_factor, jump_floor=jump.jump_floor)
    raise ValueError(f"no QA values for stage {stage!r}; the stages with checks are {', '.join(QA_STAGES)}")


def within(value: float, lo: float | None, hi: float | None) -> bool:
    """Whether ``value`` is in [lo, hi] (a missing bound does not limit; NaN is never within)."""
    if math.isnan(value):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


# --- store --------------------------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


class QAStore:
    """The ``qa_checks`` table in the SQLite file at ``path`` (the run ledger's: :meth:`in_runs_dir`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @classmethod
    def in_runs_dir(cls, runs_dir: Path) -> QAStore:
        """The store beside the run ledger of ``runs_dir`` (``settings.runs_dir``)."""
        return cls(Ledger(runs_dir).path)

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)  # the ledger's: the same database, the same transaction rules

    def record(self, results: Iterable[CheckResult]) -> None:
        """Store ``results``, replacing the same run's earlier rows of the same checks (a stage done again)."""
        recorded = _now()
        rows = [
            (
                str(r.run_date),
                r.run_id,
                r.dataset,
                r.check,
                None if math.isnan(r.value) else r.value,
                r.min,
                r.max,
                int(r.passed),
                int(r.blocking),
                r.description,
                recorded,
            )
            for r in results
        ]
        with self._connect() as db:
            db.executemany(
                'INSERT OR REPLACE INTO qa_checks (run_date, run_id, dataset, "check", value, "min", "max", passed, '
                "blocking, description, recorded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def previous(self, dataset: str, check: str, before: dt.date, n: int = DEFAULT_WINDOW) -> list[float]:
        """The values of ``dataset.check`` on the ``n`` latest run dates before ``before``, the latest attempt of
        each date, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                'SELECT run_date, value FROM qa_checks WHERE dataset = ? AND "check" = ? AND run_date < ? '
                "AND value IS NOT NULL ORDER BY run_date, recorded, rowid",
                (dataset, check, str(before)),
            ).fetchall()
        latest = dict(rows)  # ordered by date then attempt: the last attempt of each date wins
        return [float(latest[d]) for d in sorted(latest)[-n:]] if n > 0 else []

    def results(self, run_date: dt.date, run_id: str | None = None) -> list[CheckResult]:
        """The results stored for ``run_date``: of run ``run_id``, or (None) the latest of each check over all
        runs for the date (a resumed run's stages come from several runs). In stage order."""
        query = "SELECT rowid AS n, * FROM qa_checks WHERE run_date = ?" + (" AND run_id = ?" if run_id else "")
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            raw = db.execute(query, (str(run_date), run_id) if run_id else (str(run_date),)).fetchall()
        raw = sorted(raw, key=lambda r: (r["recorded"], r["n"]))
        latest = {(r["dataset"], r["check"]): r for r in raw}  # one run holds each check once; over runs, the last
        order = {s: i for i, s in enumerate(STAGES)}
        rows = sorted(latest.values(), key=lambda r: (order.get(r["dataset"], len(order)), r["recorded"], r["n"]))
        return [
            CheckResult(
                run_date=dt.date.fromisoformat(r["run_date"]),
                run_id=r["run_id"],
                dataset=r["dataset"],
                check=r["check"],
                value=_float(r["value"]),
                min=r["min"],
                max=r["max"],
                passed=bool(r["passed"]),
                blocking=bool(r["blocking"]),
                description=r["description"],
            )
            for r in rows
        ]


# --- evaluation ---------------------------------------------------------------------------------------------


def evaluate(
    stage: str,
    result: Any,
    *,
    run_date: dt.date,
    run_id: str,
    checks: QAConfig,
    store: QAStore | None,
) -> list[CheckResult]:
    """Compute the values of ``stage``'s ``result``, add rows_vs_previous from ``store``'s earlier run dates, compare
    each with its configured range (none: informational, passed), record them in ``store`` and return them.

    ``store`` None evaluates without history (no rows_vs_previous) and records nothing."""
    configured = checks.stage(stage)
    values = stage_values(stage, result, checks)
    rows = ROWS_VALUE.get(stage)
    if store is not None and rows in values:
        window = configured[VS_PREVIOUS].window if VS_PREVIOUS in configured else DEFAULT_WINDOW
        earlier = store.previous(stage, rows, before=run_date, n=window)
        base = statistics.median(earlier) if earlier else 0.0
        if base > 0:
            values[VS_PREVIOUS] = values[rows] / base
    results = []
    for name, value in values.items():
        check = configured.get(name) or Check(stage, name, description=VALUES[stage][name])
        results.append(
            CheckResult(
                run_date=run_date,
                run_id=run_id,
                dataset=stage,
                check=name,
                value=value,
                min=check.min,
                max=check.max,
                passed=within(value, check.min, check.max),
                blocking=check.blocking,
                description=check.description,
            )
        )
    if store is not None:
        store.record(results)
    return results


def rejudge(result: CheckResult, config: QAConfig) -> CheckResult:
    """``result``'s value judged by ``config``'s thresholds (a value the config no longer checks passes)."""
    check = config.get(result.dataset, result.check)
    if check is None:
        return dataclasses.replace(result, min=None, max=None, passed=True, blocking=False)
    return dataclasses.replace(
        result,
        min=check.min,
        max=check.max,
        blocking=check.blocking,
        passed=within(result.value, check.min, check.max),
    )


def blocking_failures(results: Iterable[CheckResult]) -> list[CheckResult]:
    """The results that failed a blocking check: any of them stops the release."""
    return [r for r in results if r.blocking and not r.passed]


def raise_for_blocking(results: Iterable[CheckResult]) -> None:
    """Raise QAFailed when a blocking check failed."""
    failures = blocking_failures(results)
    if failures:
        raise QAFailed(failures)


# --- display ------------------------------------------------------------------------------------------------


def format_value(check: str, value: float | None) -> str:
    """Shares as percentages, ratios with ×, counts with thousands separators."""
    if value is None or math.isnan(value):
        return "–"
    if check.startswith("share_") or check.endswith("_share"):
        return f"{value:.2%}" if 0 < abs(value) < 0.01 else f"{value:.1%}"
    if check.endswith("_vs_previous"):
        return f"{value:.2f}×"
    if math.isfinite(value) and value == int(value) and check != "max_jump":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def format_threshold(check: str, lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{format_value(check, lo)} – {format_value(check, hi)}"
    if hi is not None:
        return f"≤ {format_value(check, hi)}"
    if lo is not None:
        return f"≥ {format_value(check, lo)}"
    return ""


def summary(results: Sequence[CheckResult], *, title: str | None = None, everything: bool = False) -> Table:
    """One screen: each thresholded check (``everything``: every value) with its value, range, ✓/✗ and whether
    it blocks; failures first, blocking ones at the top. The caption counts the informational values left out.
    (The descriptions are in the results and in QAFailed's message.)"""
    shown = [r for r in results if everything or r.min is not None or r.max is not None or not r.passed]
    shown = sorted(shown, key=lambda r: (r.passed, not r.blocking))  # stable: stage order within each group
    if title is None and results:
        title = f"QA checks for {results[0].run_date}"
    table = Table(title=title, title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("expected", justify="right", no_wrap=True)
    table.add_column("ok", justify="center", no_wrap=True)
    table.add_column("blocking", justify="center", no_wrap=True)
    for r in shown:
        mark = "[green]✓[/]" if r.passed else ("[bold red]✗[/]" if r.blocking else "[yellow]✗[/]")
        table.add_row(r.name, format_value(r.check, r.value), r.threshold, mark, "yes" if r.blocking else "")
    hidden = len(results) - len(shown)
    if hidden:
        table.caption = f"+ {hidden} informational values (stored in qa_checks)"
    return table
