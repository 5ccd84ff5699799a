"""How good are routecast's forecasts of a counts file? ``routecast evaluate FILE --source ...``.

Rolls the product's own forecasting procedure (jobs.stages.forecast.selection_configs, the one the nightly run, the
API and ``routecast forecast`` use) over the last ``origins`` origins of a counts file: at each origin the procedure
sees only the periods before it, backtests and combines its candidates, calibrates its intervals and totals, and
forecasts ``horizon`` periods, which are scored on what the file says came next. Beside it, at the same origins,
the forecasts an analyst would make by hand:

- per period: naive (the last period again) and seasonal naive (the same period a season back: for daily series
  both last week's same weekday and the same day a year before, 364 days, are scored);
- per total of the next k periods: naive (the last k periods' total) and seasonal naive (the same k periods a year
  before).

The headline is the champion's MAE divided by the better baseline's (below 1: better), on exactly the same rows,
with the coverage of its 80 % and 95 % intervals, per horizon and per total. Every origin's forecast window is
complete (the last origin is ``horizon`` periods before the end), so every horizon is scored on the same origins.
``until`` evaluates an earlier window (origins whose windows end by then): choosing settings there and reporting on
the last window keeps the reported score off the data used to choose.

Results are printed, written under ``var/evaluate/<file stem>-<freq>/`` and logged to MLflow (experiment
``routecast-evaluate``: parameters, one metric per table cell, the scored rows as an artifact).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from forecasting.evaluation import CHAMPION, MemoFactories, roll_procedure, skill
from forecasting.protocol import LEVELS, PERIOD_NAMES
from forecasting.selection import MODEL_FACTORIES, YEAR_PERIODS, SelectionConfig
from forecasting.tracking import experiment_id_for
from jobs.analysis.adhoc import period_end, to_coarser
from jobs.settings import JobSettings
from jobs.stages.counts import read_counts
from jobs.stages.forecast import pooled_factories, procedure_key, selection_configs

__all__ = [
    "DEFAULT_HORIZON",
    "DEFAULT_ORIGINS",
    "MLFLOW_EXPERIMENT",
    "pooled_panel",
    "Evaluation",
    "EvaluationError",
    "evaluate_file",
    "file_series",
]

MLFLOW_EXPERIMENT = "routecast-evaluate"
# Per freq: (origins, periods between them) and the horizon. Daily: weekly origins over the last year, 28 days
# ahead; weekly: every week of the last year, 4 weeks; monthly: every month of the last two years, 3 months.
DEFAULT_ORIGINS: dict[str, tuple[int, int]] = {"D": (52, 7), "W": (52, 1), "M": (24, 1)}
DEFAULT_HORIZON: dict[str, int] = {"D": 28, "W": 4, "M": 3}
_BASELINES: dict[str, tuple[str, ...]] = {
    "D": ("naive", "seasonal_naive", "seasonal_naive_year"),
    "W": ("naive", "seasonal_naive"),
    "M": ("naive", "seasonal_naive"),
}
TOTAL_BASELINES = ("naive_total", "seasonal_naive_total")


class EvaluationError(ValueError):
    """An evaluation that cannot run as asked (file, source, window); the message says what to change."""


@dataclass(frozen=True)
class Evaluation:
    source: str
    freq: str
    procedure: str  # the key of selection_configs the forecasts came from
    config: SelectionConfig
    origins: list[str]  # the origins' dates (the last period each one saw), per series pooled, sorted
    # horizon (label), first and last step, n, mae.<method>, ratio (champion / better baseline), coverage80/95
    steps: pd.DataFrame
    # window (periods), n, mae.<method>, ratio, coverage80/95 of the champion's own intervals of the total
    totals: pd.DataFrame
    per_series: pd.DataFrame  # series_id, horizon or total, ratio
    rows: pd.DataFrame  # every scored forecast (EVALUATION_COLUMNS + series_id) and total
    notes: list[str] = field(default_factory=list)
    output_dir: Path | None = None
    run_id: str | None = None

    def ratios(self) -> dict[str, float]:
        """Every headline ratio by name (``step <label>``, ``total <k>``): what the CI's regression test pins."""
        out = {f"step {r.horizon}": float(r.ratio) for r in self.steps.itertuples()}
        out |= {f"total {r.window}": float(r.ratio) for r in self.totals.itertuples()}
        return out


def file_series(
    path: Path, source: str, freq: str | None = None, file_freq: str | None = None
) -> tuple[dict[str, pd.Series], str, list[str]]:
    """A counts file's series as {series_id: y on its grid} (read as ``ingest-counts`` reads it), its freq and notes.

    ``file_freq``: the grid of a ``generic`` file (default D; the other sources have their own). ``freq`` coarser
    than the file's sums complete periods of a daily file; a series with gaps is refused.
    """
    if not Path(path).is_file():
        raise EvaluationError(f"counts file {path} not found")
    batch = read_counts(Path(path), source, freq=file_freq if source == "generic" else None)
    native = batch.report.freq
    target = freq or native
    notes = [f"{route}: not in the route catalogue, left out" for route in batch.report.unknown_routes]
    series = batch.series[["series_id", "ds", "y"]]
    if target != native:
        if native != "D" or target == "D":
            raise EvaluationError(f"{source} counts are per {PERIOD_NAMES[native]}; freq {target} is not coarser")
        series = to_coarser(series, target)
    out = {}
    for sid, rows in series.groupby("series_id", sort=True):
        y = rows.set_index(pd.DatetimeIndex(rows["ds"]))["y"].astype("float64").sort_index().rename(str(sid))
        out[str(sid)] = y.asfreq({"D": "D", "W": "W-MON", "M": "MS"}[target])
        if out[str(sid)].isna().any():
            raise EvaluationError(f"{sid}: the file has gaps at {target}; a complete series is needed")
    return out, target, notes


def pooled_panel(
    series: dict[str, pd.Series], freq: str, pool: Sequence[tuple[Path, str]] = ()
) -> dict[str, pd.Series]:
    """The monthly series a pooled model learns from: ``series`` (a file's) and those of the ``pool`` files (path,
    source), summed into months where they are daily; none unless ``freq`` is monthly."""
    if freq != "M":
        return {}
    panel = dict(series)
    for path, source in pool:
        # A generic file's grid is what it says it is (here months); another source's is its own, summed up.
        extra, _, _ = file_series(path, source, None, "M") if source == "generic" else file_series(path, source, "M")
        for sid, y in extra.items():  # the file's own series stay its own, whatever a pooled file calls its
            panel.setdefault(sid, y)
    return panel


def horizon_groups(freq: str, horizon: int) -> list[tuple[str, int, int]]:
    """(label, first step, last step) reported: each step for weeks and months; for days the first day, the first
    week, the rest and all of them pooled (the daily MAE)."""
    if freq != "D":
        return [(str(h), h, h) for h in range(1, horizon + 1)]
    groups = [("1", 1, 1), (f"1-{min(7, horizon)}", 1, min(7, horizon))]
    if horizon > 7:
        groups += [(f"8-{horizon}", 8, horizon), (f"1-{horizon}", 1, horizon)]
    return list(dict.fromkeys(groups))


def evaluate_file(
    path: Path,
    source: str,
    *,
    freq: str | None = None,
    origins: int | None = None,
    step: int | None = None,
    horizon: int | None = None,
    until: dt.date | None = None,
    settings: JobSettings | None = None,
    progress: Callable[[str], None] | None = None,
    log: bool = True,
    pool: Sequence[tuple[Path, str]] = (),
) -> Evaluation:
    """Roll the product's procedure for ``source`` over the last ``origins`` origins of ``path`` (see the module).

    Defaults per freq: DEFAULT_ORIGINS and DEFAULT_HORIZON. ``until``: only periods ended by then are used, so an
    earlier window can be evaluated. ``pool``: other counts files (path, source) whose series the pooled model of a
    monthly procedure learns from too, beside the file's own (as the nightly run's learns from every monthly source
    it reads); each origin sees none of their later months either. Writes var/evaluate/ and logs to MLflow unless
    ``log`` is False.
    """
    settings = settings or JobSettings()
    say = progress or (lambda _msg: None)
    # As for `routecast forecast`: a generic file's --freq is its own grid; another source's, a coarser one.
    generic = source == "generic"
    series, freq, notes = file_series(path, source, None if generic else freq, freq if generic else None)
    n_origins, default_step = DEFAULT_ORIGINS[freq]
    origins = n_origins if origins is None else origins
    step = default_step if step is None else step
    horizon = DEFAULT_HORIZON[freq] if horizon is None else horizon
    if min(origins, step, horizon) < 1:
        raise EvaluationError("origins, step and horizon must be positive")
    key = procedure_key(source, freq)
    cfg = selection_configs(settings)[key]
    baselines = _BASELINES[freq]
    memo = MemoFactories(pooled_factories(cfg, pooled_panel(series, freq, pool), MODEL_FACTORIES))
    frames, totals = [], []
    for sid, y in series.items():
        if until is not None:
            y = y[period_end(pd.Series(y.index), freq).to_numpy() <= pd.Timestamp(until)]
        last = len(y) - horizon
        cutoffs = [c for c in (last - i * step for i in reversed(range(origins))) if c >= cfg.min_length]
        if not cutoffs:
            notes.append(f"{sid}: too short for any origin (the procedure needs {cfg.min_length} periods)")
            continue
        if len(cutoffs) < origins:
            notes.append(f"{sid}: {len(cutoffs)} of {origins} origins (the earlier ones are too short to forecast)")
        say(f"{sid}: {len(cutoffs)} origins, {horizon} {PERIOD_NAMES[freq]}s ahead")
        rolled = roll_procedure(y, cutoffs, horizon, cfg, baselines, memo)
        frames.append(rolled.evaluation.assign(series_id=sid))
        totals.append(_total_rows(y, cutoffs, rolled.totals, freq).assign(series_id=sid))
    if not frames:
        raise EvaluationError(f"no series of {Path(path).name} is long enough to evaluate: " + "; ".join(notes))
    evaluation = pd.concat(frames, ignore_index=True)
    failed = evaluation[evaluation["error"].notna()]
    if len(failed):
        notes.append(
            f"{failed.groupby(['series_id', 'method', 'cutoff']).ngroups} forecasts failed and are not scored, "
            f"e.g. {failed['method'].iloc[0]}: {failed['error'].iloc[0]}"
        )
    total_rows = pd.concat(totals, ignore_index=True)
    steps, per_series = _step_table(evaluation, freq, horizon, baselines)
    totals_table, per_series_totals = _totals_table(total_rows)
    result = Evaluation(
        source=source,
        freq=freq,
        procedure=key,
        config=cfg,
        origins=sorted({str(pd.Timestamp(c).date()) for c in evaluation["cutoff"]}),
        steps=steps,
        totals=totals_table,
        per_series=pd.concat([per_series, per_series_totals], ignore_index=True),
        rows=pd.concat([evaluation.assign(kind="step"), total_rows.assign(kind="total")], ignore_index=True),
        notes=notes,
    )
    if not log:
        return result
    out_dir = settings.var_dir / "evaluate" / f"{Path(path).stem}-{freq}"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = result.rows.copy()
    for name in ("cutoff", "ds"):
        rows[name] = pd.to_datetime(rows[name])
    rows.to_parquet(out_dir / "rows.parquet", index=False)
    (out_dir / "summary.md").write_text(summary_markdown(result, Path(path).name))
    (out_dir / "notes.json").write_text(json.dumps(notes, indent=2))
    run_id = _log_to_mlflow(result, Path(path).name, settings, out_dir, until)
    return Evaluation(**{**result.__dict__, "output_dir": out_dir, "run_id": run_id})


def _total_rows(y: pd.Series, cutoffs: list[int], procedure: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Per cutoff and window the procedure made a total for: the actual total, the procedure's (with its intervals)
    and the two hand-made totals (the last k periods; the same k periods a year before)."""
    rows = []
    year = YEAR_PERIODS[freq]
    values = y.to_numpy(dtype="float64")
    positions = {y.index[c - 1]: c for c in cutoffs}
    for total in procedure.itertuples():
        c, k = positions[pd.Timestamp(total.cutoff)], int(total.window)
        if c + k > len(values):
            continue
        actual = float(values[c : c + k].sum())
        base = {"cutoff": y.index[c - 1], "window": k, "y": actual}
        rows.append(
            {
                **base,
                "method": CHAMPION,
                "model": total.model,
                "mean": total.yhat,
                **{f"{side}-{lvl}": getattr(total, f"{side}{lvl}") for lvl in LEVELS for side in ("lo", "hi")},
            }
        )
        rows.append({**base, "method": "naive_total", "model": "naive_total", "mean": float(values[c - k : c].sum())})
        if c - year >= 0:
            rows.append(
                {
                    **base,
                    "method": "seasonal_naive_total",
                    "model": "seasonal_naive_total",
                    "mean": float(values[c - year : c - year + k].sum()),
                }
            )
    return pd.DataFrame(
        rows, columns=["cutoff", "window", "y", "method", "model", "mean", "lo-80", "hi-80", "lo-95", "hi-95"]
    )


def _compare(rows: pd.DataFrame, baselines: tuple[str, ...], keys: list[str]) -> dict[str, float] | None:
    """MAE per method on the rows (``keys``) every method scored (forecasting.evaluation.skill), the champion's
    ratio to the better baseline and its coverage; None when the champion or every baseline is missing."""
    methods = [CHAMPION, *baselines]
    rows = rows[rows["method"].isin(methods) & rows["mean"].notna() & rows["y"].notna()]
    present = [m for m in methods if m in set(rows["method"])]
    if CHAMPION not in present or len(present) < 2:
        return None
    found = skill(rows, [m for m in present if m != CHAMPION], by=keys)
    table = found.table.set_index("method")
    if table.empty or table.loc[CHAMPION, "n"] == 0:
        return None
    out: dict[str, float] = {"n": float(table.loc[CHAMPION, "n"])}
    out |= {f"mae.{m}": float(table.loc[m, "mae"]) for m in present}
    out["ratio"] = found.champion_vs_best_baseline
    out |= {f"coverage{lvl}": float(table.loc[CHAMPION, f"coverage{lvl}"]) for lvl in LEVELS}
    return out


def _step_table(
    evaluation: pd.DataFrame, freq: str, horizon: int, baselines: tuple[str, ...]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    ok = evaluation[evaluation["error"].isna()]
    keys = ["series_id", "cutoff", "step"]
    table, per_series = [], []
    for label, first, last in horizon_groups(freq, horizon):
        part = ok[ok["step"].between(first, last)]
        found = _compare(part, baselines, keys)
        if found:
            table.append({"horizon": label, "first": first, "last": last, **found})
        for sid, rows in part.groupby("series_id"):
            one = _compare(rows, baselines, keys)
            if one:
                per_series.append({"series_id": sid, "what": f"step {label}", "ratio": one["ratio"], "n": one["n"]})
    return pd.DataFrame(table), pd.DataFrame(per_series, columns=["series_id", "what", "ratio", "n"])


def _totals_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = ["series_id", "cutoff"]
    table, per_series = [], []
    for window, part in rows.groupby("window", sort=True):
        found = _compare(part, TOTAL_BASELINES, keys)
        if found:
            table.append({"window": int(window), **found})
        for sid, one_rows in part.groupby("series_id"):
            one = _compare(one_rows, TOTAL_BASELINES, keys)
            if one:
                per_series.append({"series_id": sid, "what": f"total {window}", "ratio": one["ratio"], "n": one["n"]})
    return pd.DataFrame(table), pd.DataFrame(per_series, columns=["series_id", "what", "ratio", "n"])


def _pct(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f} %"


def _score_table(table: pd.DataFrame, key: str, heading: str) -> list[str]:
    """One markdown row per row of a steps or totals table: its key, n, each method's MAE, ratio and coverage."""
    methods = [c.removeprefix("mae.") for c in table.columns if c.startswith("mae.")]
    lines = [
        f"| {heading} | n | " + " | ".join(f"MAE {m}" for m in methods) + " | ratio | 80 % cover | 95 % cover |",
        "|---|---:|" + "---:|" * len(methods) + "---:|---:|---:|",
    ]
    for r in table.to_dict("records"):
        lines.append(
            f"| {r[key]} | {int(r['n'])} | "
            + " | ".join(f"{r[f'mae.{m}']:,.1f}" for m in methods)
            + f" | {r['ratio']:.3f} | {_pct(r['coverage80'])} | {_pct(r['coverage95'])} |"
        )
    return lines


def summary_markdown(result: Evaluation, name: str) -> str:
    """The evaluation's tables as markdown (what ``routecast evaluate`` prints)."""
    period = PERIOD_NAMES[result.freq]
    first, last = result.origins[0], result.origins[-1]
    lines = [
        f"## {name} ({result.source}), per {period}: procedure {result.procedure}",
        "",
        f"{len(result.origins)} origins from {first} to {last} (the last {period} each forecast saw); candidates "
        f"{', '.join(result.config.candidates)}, champion {result.config.champion}. `ratio` = champion MAE / the "
        "better baseline's, on the same forecasts (below 1: better); coverage of the champion's calibrated intervals.",
        "",
    ]
    if not result.steps.empty:
        lines += _score_table(result.steps, "horizon", f"{period}s ahead")
    if not result.totals.empty:
        lines += [
            "",
            f"Totals of the next k {period}s (naive_total: the last k {period}s; seasonal_naive_total: the same "
            f"{period}s a year before; intervals: the procedure's own intervals of the total):",
            "",
            *_score_table(result.totals, "window", "k"),
        ]
    if not result.per_series.empty:
        table = result.per_series.pivot_table(index="series_id", columns="what", values="ratio", sort=False)
        lines += [
            "",
            "Ratio per series:",
            "",
            "| series | " + " | ".join(table.columns) + " |",
            "|---|" + "---:|" * len(table.columns),
        ]
        for sid, values in table.iterrows():
            lines.append(f"| {sid} | " + " | ".join("–" if np.isnan(v) else f"{v:.3f}" for v in values) + " |")
    if result.notes:
        lines += ["", "Notes:", "", *(f"- {n}" for n in result.notes)]
    return "\n".join(lines) + "\n"


def _metric_name(text: str) -> str:
    return text.replace(" ", "_")


def _log_to_mlflow(result: Evaluation, name: str, settings: JobSettings, out_dir: Path, until: dt.date | None) -> str:
    """One run in MLFLOW_EXPERIMENT: what was evaluated, every table cell as a metric, the files as artifacts."""
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment_id = experiment_id_for(client, MLFLOW_EXPERIMENT, settings.tracking_uri)
    run = client.create_run(experiment_id, run_name=f"{name} {result.freq}", tags={"routecast.file": name})
    rid = run.info.run_id
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    try:
        cfg = result.config
        params = {
            "file": name,
            "source": result.source,
            "freq": result.freq,
            "procedure": result.procedure,
            "origins": len(result.origins),
            "first_origin": result.origins[0],
            "last_origin": result.origins[-1],
            "until": str(until) if until else "",
            "candidates": ",".join(cfg.candidates),
            "champion": cfg.champion,
            "backtest_origins": cfg.origins,
            "backtest_step": cfg.step,
            "holdout": cfg.holdout,
            "calibration_space": cfg.calibration_space,
        }
        metrics = []
        for table, label in ((result.steps, "horizon"), (result.totals, "window")):
            for r in table.to_dict("records"):
                prefix = f"step{r[label]}" if label == "horizon" else f"total{r[label]}"
                for column, value in r.items():
                    if column in (label, "first", "last") or value is None or math.isnan(float(value)):
                        continue
                    metrics.append(Metric(_metric_name(f"{column}.{prefix}"), float(value), now, 0))
        client.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        client.log_artifacts(rid, str(out_dir))
    except Exception:
        client.set_terminated(rid, status="FAILED")
        raise
    client.set_terminated(rid)
    return rid
