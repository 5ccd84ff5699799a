"""Declared experiments: ``routecast experiment run <name>`` (experiments/<name>/experiment.toml).

An experiment asks how well the pipeline's forecasting procedure would have done on a real counts file: at each of
the last ``origins`` periods of the file it sees only the data before that origin, runs the model selection as the
pipeline does (forecasting.evaluation), and is scored on what the file says came next, beside the naive and
seasonal-naive baselines. Results are printed, written under ``var/experiments/<name>/`` and logged to MLflow (a
parent run per invocation, a nested run per variant, the evaluation rows as an artifact).

The TOML (see experiments/README.md for every key)::

    question = "..."
    [data]        file, source (frontex | uk-channel | iom-dtm | generic), freq (optional: coarser than the file's)
    [evaluation]  origins, step, horizon, baselines, report = "steps" | "totals", windows, warmup
    [selection]   forecasting.selection.SelectionConfig fields (candidates, holdout, origins, ensemble_top, ...);
                  absent: the product's own procedure for the source and freq (selection_configs)
    [variants.<name>]  SelectionConfig fields overriding [selection], each evaluated beside the main one
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forecasting.evaluation import (
    CHAMPION,
    MemoFactories,
    conformal_totals,
    evaluate_procedure,
    skill,
    window_totals,
)
from forecasting.protocol import LEVELS
from forecasting.selection import MODEL_FACTORIES, SelectionConfig
from forecasting.tracking import experiment_id_for
from jobs.analysis.evaluate import EvaluationError, file_series, pooled_panel
from jobs.settings import JobSettings
from jobs.stages.counts import SOURCES
from jobs.stages.forecast import pooled_factories, procedure_key, selection_configs

# The experiments declared in the repository: experiments/<name>/experiment.toml beside the packages.
DEFAULT_EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"
MLFLOW_EXPERIMENT = "routecast-experiments"
MAIN = "main"  # the variant declared by [selection] itself


class ExperimentError(ValueError):
    """An experiment that cannot be run as declared (missing file, bad key); the message says what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    file: str = Field(description="counts file name, looked up under --data-dir")
    source: str
    freq: Literal["D", "W", "M"] | None = None  # default: the source's own; W or M from daily sums whole periods

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        if v not in SOURCES:
            raise ValueError(f"source {v!r} is not one of {', '.join(SOURCES)}")
        return v


class EvaluationSpec(_Strict):
    origins: int = Field(ge=1, description="forecast origins: the last `origins` periods of the file, `step` apart")
    step: int = Field(default=1, ge=1)
    horizon: int = Field(ge=1, le=104)
    baselines: tuple[str, ...] = ("naive", "seasonal_naive")
    report: Literal["steps", "totals"] = "steps"
    # steps: MAE per forecast step in `windows` (and over all steps); totals: MAE of the sum of the first k steps.
    windows: tuple[int, ...] = (1,)
    # totals only: earlier origins evaluated only to calibrate the totals' intervals (split conformal needs past
    # errors); they are not scored.
    warmup: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _windows_within_horizon(self) -> EvaluationSpec:
        bad = [k for k in self.windows if not 1 <= k <= self.horizon]
        if bad or not self.windows:
            raise ValueError(f"windows {list(bad) or '(none)'} must be steps between 1 and horizon={self.horizon}")
        return self


class ExperimentSpec(_Strict):
    name: str
    question: str
    data: DataSpec
    evaluation: EvaluationSpec
    selection: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def selection_config(self, freq: str, variant: str = MAIN, settings: JobSettings | None = None) -> SelectionConfig:
        """The procedure a variant evaluates. Without ``[selection]`` keys it starts from the product's own
        procedure for the file's source and freq (jobs.stages.forecast.selection_configs, what the nightly run and
        ``routecast forecast`` use), which a variant's keys override; with them, from SelectionConfig's defaults."""
        fields = {**self.selection, **(self.variants.get(variant, {}) if variant != MAIN else {})}
        if "candidates" in fields:
            fields["candidates"] = tuple(fields["candidates"])
        if "totals" in fields:
            fields["totals"] = tuple(fields["totals"])
        try:
            if not self.selection:
                base = selection_configs(settings or JobSettings())[procedure_key(self.data.source, freq)]
                return replace(base, **fields)
            return SelectionConfig(freq=freq, **fields)
        except (TypeError, ValueError) as exc:
            raise ExperimentError(f"experiment {self.name!r}, variant {variant!r}: [selection] {exc}") from None

    @property
    def variant_names(self) -> list[str]:
        return [MAIN, *self.variants]


def load_experiment(name: str, experiments_dir: Path = DEFAULT_EXPERIMENTS_DIR) -> ExperimentSpec:
    """experiments/<name>/experiment.toml, checked; ExperimentError names the file and the problem."""
    path = experiments_dir / name / "experiment.toml"
    if not path.is_file():
        known = sorted(p.parent.name for p in experiments_dir.glob("*/experiment.toml"))
        raise ExperimentError(f"no experiment {name!r} ({path} not found); declared: {', '.join(known) or 'none'}")
    try:
        raw = tomllib.loads(path.read_text())
        return ExperimentSpec(name=name, **raw)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ExperimentError(f"{path}: {problems}") from None


@dataclass(frozen=True)
class ExperimentResult:
    name: str
    summary: pd.DataFrame  # variant, window, method, n, mae, relative, coverage80, coverage95
    per_series: pd.DataFrame  # variant, series_id, window, method, mae
    evaluation: pd.DataFrame  # every scored row (variant, series_id and EVALUATION_COLUMNS or totals)
    output_dir: Path
    run_id: str
    notes: list[str]

    def headline(self, variant: str = MAIN) -> dict[int, float]:
        """Per window: the champion's MAE relative to the better baseline (< 1: champion better)."""
        rows = self.summary[(self.summary["variant"] == variant) & (self.summary["method"] == CHAMPION)]
        return {int(r.window): float(r.relative) for r in rows.itertuples()}


def load_series(spec: ExperimentSpec, data_dir: Path) -> tuple[dict[str, pd.Series], str, list[str]]:
    """The file's series as {series_id: y on its grid}, its freq, and notes (routes left out, periods dropped)."""
    path = data_dir / spec.data.file
    if not path.is_file():
        raise ExperimentError(
            f"data file {path} not found; pass the folder holding {spec.data.file} with --data-dir "
            "(e.g. ../shared/data/real)"
        )
    try:
        return file_series(path, spec.data.source, spec.data.freq)
    except EvaluationError as exc:
        raise ExperimentError(str(exc)) from None


def run_experiment(
    spec: ExperimentSpec,
    data_dir: Path,
    settings: JobSettings | None = None,
    *,
    factories: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Evaluate every variant of ``spec`` on every series of its file, log to MLflow, write var/experiments/<name>."""
    settings = settings or JobSettings()
    say = progress or (lambda _msg: None)
    series, freq, notes = load_series(spec, data_dir)
    ev = spec.evaluation
    scored, per_series, summaries = [], [], []
    # routecast's model factories read only the freq and the season length of a config, so variants that share
    # both share the fits.
    memos: dict[tuple[str, int], MemoFactories] = {}
    for variant in spec.variant_names:
        cfg = spec.selection_config(freq, variant, settings)
        # A pooled model learns from the file's series (its panel), which every variant that names it shares.
        base = pooled_factories(cfg, pooled_panel(series, freq), factories or MODEL_FACTORIES)
        memo = memos.setdefault((cfg.freq, cfg.season_length), MemoFactories(base))
        frames = []
        for sid, y in series.items():
            n_origins = ev.origins + (ev.warmup if ev.report == "totals" else 0)
            cutoffs = [len(y) - i * ev.step for i in range(n_origins, 0, -1)]
            cutoffs = [c for c in cutoffs if c >= cfg.min_length]
            if not cutoffs:
                notes.append(f"{variant}/{sid}: too short for any origin (needs {cfg.min_length} periods)")
                continue
            say(f"{spec.name} [{variant}] {sid}: {len(cutoffs)} origins, {len(cfg.candidates)} candidates")
            frame = evaluate_procedure(y, cutoffs, ev.horizon, cfg, ev.baselines, memo)
            frames.append(frame.assign(series_id=sid, variant=variant))
        if not frames:
            raise ExperimentError(f"experiment {spec.name!r}: no series long enough to evaluate")
        evaluation = pd.concat(frames, ignore_index=True)
        failed = evaluation[evaluation["error"].notna()]
        if len(failed):
            notes.append(
                f"{variant}: {failed.groupby(['series_id', 'cutoff']).ngroups} (series, origin) forecasts failed, "
                f"e.g. {failed['error'].iloc[0]}"
            )
        rows = _scored_rows(evaluation, spec, freq).assign(variant=variant)
        scored.append(rows)
        for window, part in rows.groupby("window", sort=True):
            result = skill(part, ev.baselines, by=("series_id", "cutoff"))
            summaries.append(result.table.assign(variant=variant, window=window))
            for (sid, method), g in part.groupby(["series_id", "method"]):
                per_series.append(
                    {
                        "variant": variant,
                        "series_id": sid,
                        "window": window,
                        "method": method,
                        "mae": float((g["y"] - g["mean"]).abs().mean()),
                    }
                )
    summary = pd.concat(summaries, ignore_index=True)[
        ["variant", "window", "method", "n", "mae", "relative", "coverage80", "coverage95"]
    ]
    per_series_frame = pd.DataFrame(per_series)
    evaluation_rows = pd.concat(scored, ignore_index=True)
    out_dir = settings.var_dir / "experiments" / spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    evaluation_rows.to_parquet(out_dir / "evaluation.parquet", index=False)
    (out_dir / "summary.md").write_text(summary_markdown(spec, summary, per_series_frame, notes))
    per_series_frame.to_parquet(out_dir / "per_series.parquet", index=False)
    (out_dir / "notes.json").write_text(json.dumps(notes, indent=2))
    run_id = _log_to_mlflow(spec, settings, summary, out_dir)
    return ExperimentResult(spec.name, summary, per_series_frame, evaluation_rows, out_dir, run_id, notes)


def _scored_rows(evaluation: pd.DataFrame, spec: ExperimentSpec, freq: str) -> pd.DataFrame:
    """Rows to score with columns series_id, window, cutoff, method, y, mean, lo/hi-80/95 (steps or totals)."""
    ev = spec.evaluation
    keep = evaluation["error"].isna()
    if ev.report == "steps":
        rows = evaluation[keep & evaluation["step"].isin(ev.windows)].rename(columns={"step": "window"})
        return rows.drop(columns=["ds", "error"])
    pieces = []
    for sid, part in evaluation[keep].groupby("series_id"):
        totals = window_totals(part, ev.windows)
        calibrated = conformal_totals(totals, LEVELS, freq=freq)
        # Warm-up origins only calibrate: score the last `origins` cutoffs of the series.
        last = sorted(calibrated["cutoff"].unique())[-ev.origins :]
        pieces.append(calibrated[calibrated["cutoff"].isin(last)].assign(series_id=sid))
    rows = pd.concat(pieces, ignore_index=True)
    # Baselines get no interval in totals (coverage is reported for the champion only).
    baseline = rows["method"] != CHAMPION
    rows.loc[baseline, [f"{s}-{lvl}" for lvl in LEVELS for s in ("lo", "hi")]] = math.nan
    return rows


def summary_markdown(spec: ExperimentSpec, summary: pd.DataFrame, per_series: pd.DataFrame, notes: list[str]) -> str:
    """The result tables as markdown, for the experiment's README."""
    unit = "step" if spec.evaluation.report == "steps" else "total of the first k periods"
    lines = [
        f"## {spec.name}: result",
        "",
        f"Windows are per {unit}. `relative` = MAE / the better baseline's MAE.",
        "",
        "| variant | window | method | n | MAE | relative | 80 % cover | 95 % cover |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.variant} | {r.window} | {r.method} | {r.n} | {r.mae:,.1f} | {r.relative:.3f} | "
            f"{_pct(r.coverage80)} | {_pct(r.coverage95)} |"
        )
    main = per_series[per_series["variant"] == MAIN]
    if not main.empty:
        table = main.pivot_table(index=["series_id", "window"], columns="method", values="mae")
        lines += [
            "",
            "Per series (main variant), MAE:",
            "",
            "| series | window | " + " | ".join(table.columns) + " |",
            "|---|---:|" + "---:|" * len(table.columns),
        ]
        for (sid, window), values in table.iterrows():
            lines.append(f"| {sid} | {window} | " + " | ".join(f"{v:,.1f}" for v in values) + " |")
    if notes:
        lines += ["", "Notes:", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f} %"


def _log_to_mlflow(
    spec: ExperimentSpec,
    settings: JobSettings,
    summary: pd.DataFrame,
    out_dir: Path,
) -> str:
    """One parent run (parameters, headline metrics, the files of ``out_dir`` as artifacts) and a nested run per
    variant with all its metrics; returns the parent's run id."""
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment_id = experiment_id_for(client, MLFLOW_EXPERIMENT, settings.tracking_uri)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    parent = client.create_run(experiment_id, run_name=f"{spec.name} {stamp}", tags={"routecast.experiment": spec.name})
    pid = parent.info.run_id
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    try:
        params = {
            "question": spec.question[:500],
            **_flat("data", spec.data.model_dump()),
            **_flat("evaluation", spec.evaluation.model_dump()),
        }
        client.log_batch(pid, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        for variant in spec.variant_names:
            child = client.create_run(
                experiment_id, run_name=f"{spec.name}/{variant}", tags={"mlflow.parentRunId": pid}
            )
            rows = summary[summary["variant"] == variant]
            metrics = []
            for r in rows.itertuples():
                for name in ("mae", "relative", "coverage80", "coverage95"):
                    value = getattr(r, name)
                    if value is not None and not (isinstance(value, float) and math.isnan(value)):
                        metrics.append(Metric(f"{name}.{r.method}.w{r.window}", float(value), now, 0))
            selection = spec.variants.get(variant, {}) if variant != MAIN else {}
            client.log_batch(
                child.info.run_id,
                metrics=metrics,
                params=[Param(k, str(v)) for k, v in _flat("selection", {**spec.selection, **selection}).items()],
            )
            client.set_terminated(child.info.run_id)
        headline = summary[(summary["variant"] == MAIN) & (summary["method"] == CHAMPION)]
        client.log_batch(
            pid,
            metrics=[Metric(f"relative.w{r.window}", float(r.relative), now, 0) for r in headline.itertuples()]
            + [
                Metric(f"coverage80.w{r.window}", float(r.coverage80), now, 0)
                for r in headline.itertuples()
                if not math.isnan(r.coverage80)
            ],
        )
        client.log_artifacts(pid, str(out_dir))
    except Exception:
        client.set_terminated(pid, status="FAILED")
        raise
    client.set_terminated(pid)
    return pid


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": (",".join(map(str, v)) if isinstance(v, list | tuple) else v) for k, v in values.items()}


__all__ = [
    "DEFAULT_EXPERIMENTS_DIR",
    "ExperimentError",
    "ExperimentResult",
    "ExperimentSpec",
    "load_experiment",
    "load_series",
    "run_experiment",
    "summary_markdown",
]
