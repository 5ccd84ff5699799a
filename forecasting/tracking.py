"""MLflow tracking and registry for forecast runs.

One parent run per forecasting batch: its parameters; backtest aggregates overall, per level and per route;
the forecast and metrics tables as Parquet artifacts; PNG plots of the route-level forecasts under
``plots/``; and one nested run per model family with that family's backtest scores. The forecasts are
registered as a pyfunc model version, and the alias ``champion`` (``models:/<name>@champion``; only a promoted
version's forecasts are published to the store serving reads) moves to it only when its choices do at least as well
as the current champion's on this run's backtest. That rule is :mod:`forecasting.champion` (pure, no MLflow);
this module reads its inputs from the registry and records its decisions. :func:`champion_history` lists the
versions with those decisions.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from forecasting.champion import (
    ChampionComparison,
    compare_with_champion,
    no_champion,
    recorded_decision,
    serving_version,
    unreadable_champion,
)
from forecasting.plots import route_series_ids, write_forecast_plots
from forecasting.selection import (
    FORECAST_COLUMNS,
    METRICS_COLUMNS,
    as_arrow_table,
    forecast_schema,
    metrics_schema,
)
from forecasting.vocabulary import PUBLISHED_VALUES

__all__ = [
    "CHAMPION_HISTORY_COLUMNS",
    "ChampionComparison",
    "ForecastTableModel",
    "RunInfo",
    "UnknownSeriesError",
    "artifact_location_for",
    "experiment_id_for",
    "breakdown_metrics",
    "champion_history",
    "compare_with_champion",
    "load_champion",
    "log_forecast_run",
    "summarise_metrics",
]

MODEL_NAME_IN_RUN = "forecaster"
_PYFUNC_ENTRY = Path(__file__).with_name("_pyfunc_entry.py")
FORECASTS_ARTIFACT = "forecasts.parquet"
METRICS_ARTIFACT = "metrics.parquet"
TOTALS_ARTIFACT = "totals.parquet"
PLOTS_ARTIFACT_DIR = "plots"
DEFAULT_PLOTS = 40
# The columns of ``keys`` that place a series for the per-level and per-route breakdown (source is optional).
BREAKDOWN_KEY_COLUMNS = ("series_id", "level", "route_id")

# Scores without a unit: their means over series of different sizes, levels and sources still mean something.
UNIT_FREE_SCORES = ("mase", "coverage80", "coverage95")
# Per route (and source): one place, one unit, so MAE is meaningful too.
ROUTE_SCORES = ("mase", "mae", "coverage80", "coverage95")
FAMILY_SCORES = ("mase", "mae", "coverage80", "coverage95", "width80", "pinball")

# The champion decision, on the parent run and on the model version.
TAG_PROMOTED = "routecast.promoted"
TAG_REASON = "routecast.reason"
TAG_COMPARED_SERIES = "routecast.compared_series"
TAG_NOT_COMPARABLE = "routecast.not_comparable_series"
TAG_LOST_SERIES = "routecast.lost_series"
TAG_MASE_NEW = "routecast.champion_mase_new"
TAG_MASE_OLD = "routecast.champion_mase_old"
TAG_PREVIOUS_CHAMPION = "routecast.previous_champion_version"
TAG_CHAMPION_VERSION = "routecast.champion_version"
TAG_MODEL_VERSION = "routecast.model_version"
TAG_FAMILY = "routecast.family"
TAG_PLOTS = "routecast.plots"
NO_VERSION = "none"

# The columns of champion_history: one row per registered version and its champion decision.
CHAMPION_HISTORY_COLUMNS = [
    "version",
    "created",
    "run_id",
    "run_name",
    "promoted",
    "is_champion_now",
    "mase_mean_chosen",
    "n_series",
    "reason",
]


@dataclass(frozen=True)
class RunInfo:
    """Where a logged forecast run and its registered model version live, and which version is champion.

    ``champion_version`` and ``champion_run_id`` name what serving should use after the champion decision:
    this run's version when ``promoted``, else the previous champion (left empty, they default to this
    run's, as for every run before champion gating).
    """

    run_id: str
    model_version: str
    experiment_id: str
    tracking_uri: str
    promoted: bool = True
    champion_version: str = ""
    champion_run_id: str = ""

    def __post_init__(self) -> None:
        if not self.champion_version:
            object.__setattr__(self, "champion_version", self.model_version)  # frozen: resolved once, here
        if not self.champion_run_id:
            object.__setattr__(self, "champion_run_id", self.run_id)


class UnknownSeriesError(KeyError):
    """The published forecasts hold no rows for a requested series."""

    def __init__(self, series_ids: list[str]) -> None:
        super().__init__(series_ids)
        self.series_ids = series_ids

    def __str__(self) -> str:  # KeyError would repr-quote the whole message
        shown = ", ".join(repr(s) for s in self.series_ids[:10])
        more = f" and {len(self.series_ids) - 10} more" if len(self.series_ids) > 10 else ""
        return f"no published forecast for series {shown}{more}"


class ForecastTableModel(mlflow.pyfunc.PythonModel):
    """The published forecast table served as a pyfunc model.

    The table is read from the ``forecasts`` Parquet artifact with the declared forecast schema when the
    model is loaded; nothing is pickled (the model is logged from code, ``_pyfunc_entry.py``), so
    loading needs ``forecasting`` importable. ``predict`` takes a frame with ``series_id`` and
    an optional ``horizon`` (days, per row) and returns those series' forecast rows, in request order and
    by day, limited to the first ``horizon`` days (all published days when there is no horizon column).
    Unknown series raise UnknownSeriesError (a KeyError).
    """

    def load_context(self, context: Any) -> None:
        table = pq.read_table(context.artifacts["forecasts"], schema=forecast_schema())
        forecasts = _forecast_frame_from_arrow(table)
        self.by_series_ = {
            str(series_id): rows.reset_index(drop=True)
            for series_id, rows in forecasts.groupby("series_id", sort=False)
        }

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if "series_id" not in model_input.columns:
            raise ValueError("model input needs a 'series_id' column (and optionally 'horizon')")
        series_ids = [str(s) for s in model_input["series_id"]]
        unknown = [s for s in dict.fromkeys(series_ids) if s not in self.by_series_]
        if unknown:
            raise UnknownSeriesError(unknown)
        if "horizon" in model_input.columns:
            horizons = [_checked_horizon(h) for h in model_input["horizon"]]
        else:
            horizons = [None] * len(series_ids)
        pieces = [self.by_series_[s].iloc[:h] for s, h in zip(series_ids, horizons, strict=True)]
        if not pieces:
            return _forecast_frame_from_arrow(forecast_schema().empty_table())
        return pd.concat(pieces, ignore_index=True)


def log_forecast_run(
    *,
    tracking_uri: str,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    forecasts: pd.DataFrame,
    metrics: pd.DataFrame,
    keys: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    plots: int = DEFAULT_PLOTS,
    registered_model: str = "routecast-forecaster",
    alias: str = "champion",
    totals: pd.DataFrame | None = None,
) -> RunInfo:
    """Log one forecast run, register its forecasts as a new model version, and move ``alias`` to it if it wins.

    ``forecasts`` and ``metrics`` are the (concatenated) outputs of ``select_and_forecast``; they are checked
    against the declared schemas before anything is logged. ``keys`` (series_id, level, route_id, optionally
    source; other columns ignored) places the series in the hierarchy; ``history`` (series_id, ds, y) is the
    data the forecasts were made from, drawn in the plots. ``totals`` (forecasting.totals.TOTALS_COLUMNS), when
    given and not empty, is logged as the artifact totals.parquet with the metric n_totals.

    The parent run gets ``params``; the aggregates of :func:`summarise_metrics` and, with ``keys``, of
    :func:`breakdown_metrics`; the artifacts forecasts.parquet and metrics.parquet; and under ``plots/`` one PNG
    per route-level series with a forecast (:func:`forecasting.plots.route_series_ids`, in id order, at most
    ``plots`` of them; the tag ``routecast.plots`` says how many were drawn). Each model family of ``metrics``
    (every candidate alias, and "ensemble") gets a nested run (tag ``mlflow.parentRunId``) named after it, with
    params alias, n_series_scored (its backtest ran: finite MAE), n_failed (rows with an error, backtest or
    refit) and share_chosen, and metrics ``<score>_mean`` for mase, mae, coverage80, coverage95, width80 and
    pinball over the series where the score is finite, and with ``keys`` ``<score>_mean.level.<level>`` for
    the unit-free ones (mase, coverage80, coverage95).

    The forecasts are registered under ``registered_model`` as a pyfunc (:class:`ForecastTableModel`).
    ``alias`` moves to the new version only if :func:`compare_with_champion` says so against the version
    ``alias`` points at now (read from that version's run's metrics.parquet); with no current champion, or
    when its metrics cannot be read, the new version is promoted and the reason recorded. The decision is
    recorded as ``routecast.*`` tags (promoted, reason, compared_series, not_comparable_series, lost_series,
    champion_mase_new, champion_mase_old, previous_champion_version, champion_version) on the parent run and
    on the model version. A new experiment on a local SQLite store keeps its artifacts in a folder beside the
    database (see :func:`artifact_location_for`).

    Not safe against two runs deciding at once: each compares with the champion it read.
    """
    if isinstance(plots, bool) or not isinstance(plots, int) or plots < 0:
        raise ValueError(f"plots={plots!r} must be a whole number >= 0 (the most route plots to draw)")
    forecasts_table = as_arrow_table(forecasts, forecast_schema())
    metrics_table = as_arrow_table(metrics, metrics_schema())
    keys = _checked_keys(keys) if keys is not None else None
    summary = summarise_metrics(metrics)
    if keys is not None:
        summary |= breakdown_metrics(metrics, keys)
    families = _family_summaries(metrics, keys)
    route_ids = route_series_ids(forecasts["series_id"].unique(), keys)

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment_id = experiment_id_for(client, experiment, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="routecast-run-") as tmp, _mlflow_uris(tracking_uri):
        forecasts_path = Path(tmp) / FORECASTS_ARTIFACT
        metrics_path = Path(tmp) / METRICS_ARTIFACT
        pq.write_table(forecasts_table, forecasts_path)
        pq.write_table(metrics_table, metrics_path)
        plots_dir = Path(tmp) / PLOTS_ARTIFACT_DIR
        plot_files = write_forecast_plots(plots_dir, route_ids[:plots], forecasts, history)
        # MLflow copies the entry file with its mode bits; a copy by content takes the process's umask instead of
        # the checkout's (often world-readable) mode.
        entry = Path(tmp) / _PYFUNC_ENTRY.name
        shutil.copyfile(_PYFUNC_ENTRY, entry)

        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            parent_id = run.info.run_id
            mlflow.log_params(dict(params))
            mlflow.log_metrics(summary)
            for family, (family_params, family_metrics) in families.items():
                _log_family_run(client, experiment_id, parent_id, family, family_params, family_metrics)
            mlflow.log_artifact(str(forecasts_path))
            mlflow.log_artifact(str(metrics_path))
            if totals is not None and not totals.empty:
                totals_path = Path(tmp) / TOTALS_ARTIFACT
                totals.to_parquet(totals_path, index=False)
                mlflow.log_artifact(str(totals_path))
                mlflow.log_metric("n_totals", len(totals))
            if plot_files:
                mlflow.log_artifacts(str(plots_dir), PLOTS_ARTIFACT_DIR)
            mlflow.set_tag(TAG_PLOTS, f"{len(plot_files)} of {len(route_ids)} route-level series")
            model_info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                # Models-from-code: the entry file is stored and run on load, so no pickle is involved.
                python_model=str(entry),
                artifacts={"forecasts": str(forecasts_path)},
                signature=_SIGNATURE,
                input_example=_input_example(forecasts),
                # Explicit requirements: inferring them would load the model in a subprocess (seconds).
                pip_requirements=_pip_requirements(),
                registered_model_name=registered_model,
            )
            model_version = str(model_info.registered_model_version)

            # Inside the run so that a failure here marks the run FAILED rather than leaving it finished with
            # a version whose decision nobody recorded.
            previous = _current_champion(client, registered_model, alias)
            if previous is None:
                decision = no_champion(alias)
            else:
                decision = _compare_with_version(previous, metrics, tracking_uri, Path(tmp) / "champion")
            champion, champion_run_id = serving_version(
                decision,
                new_version=model_version,
                new_run_id=parent_id,
                previous_version=None if previous is None else str(previous.version),
                previous_run_id=None if previous is None else str(previous.run_id),
            )
            tags = _decision_tags(decision, previous, champion)
            mlflow.set_tags({**tags, TAG_MODEL_VERSION: model_version})
            for key, value in tags.items():
                client.set_model_version_tag(registered_model, model_version, key, value)
            if decision.promote:
                client.set_registered_model_alias(registered_model, alias, model_version)

    return RunInfo(
        run_id=parent_id,
        model_version=model_version,
        experiment_id=experiment_id,
        tracking_uri=tracking_uri,
        promoted=decision.promote,
        champion_version=champion,
        champion_run_id=champion_run_id,
    )


def champion_history(
    tracking_uri: str, registered_model: str = "routecast-forecaster", alias: str = "champion"
) -> pd.DataFrame:
    """Every version of ``registered_model`` with its champion decision, newest first (CHAMPION_HISTORY_COLUMNS).

    version (str), created (UTC timestamp of registration), run_id and run_name of the run that logged it,
    promoted (whether the alias moved to it when it was logged), is_champion_now (``alias`` points at it),
    mase_mean_chosen and n_series (that run's metrics; NaN / missing when the run is gone), reason (the
    recorded decision). Versions registered before champion gating have no decision tags: promoted is True
    (the alias then moved to every new version) and the reason says so (:func:`forecasting.champion.recorded_decision`).
    An unknown model gives no rows.
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        model = client.get_registered_model(registered_model)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        return _history_frame([])
    champion_now = model.aliases.get(alias)
    rows = []
    for version in _all_versions(client, registered_model):
        run = _run_or_none(client, version.run_id)
        run_metrics = run.data.metrics if run is not None else {}
        promoted, reason = recorded_decision(version.tags.get(TAG_PROMOTED), version.tags.get(TAG_REASON))
        n_series = run_metrics.get("n_series")
        rows.append(
            {
                "version": str(version.version),
                "created": pd.Timestamp(version.creation_timestamp, unit="ms", tz="UTC"),
                "run_id": version.run_id,
                "run_name": run.info.run_name if run is not None else None,
                "promoted": promoted,
                "is_champion_now": champion_now is not None and str(version.version) == str(champion_now),
                "mase_mean_chosen": run_metrics.get("mase_mean_chosen", math.nan),
                "n_series": int(n_series) if n_series is not None and math.isfinite(n_series) else None,
                "reason": reason,
            }
        )
    return _history_frame(rows)


def load_champion(
    tracking_uri: str, registered_model: str = "routecast-forecaster", alias: str = "champion"
) -> mlflow.pyfunc.PyFuncModel:
    """Load ``models:/<registered_model>@<alias>`` from the given tracking/registry store."""
    with _mlflow_uris(tracking_uri):
        return mlflow.pyfunc.load_model(f"models:/{registered_model}@{alias}")


def summarise_metrics(metrics: pd.DataFrame) -> dict[str, float]:
    """Run-level aggregates of a per-series metrics table (columns as METRICS_COLUMNS).

    - ``mase_mean.<model>``: mean MASE of each candidate over the series where it is finite (failed
      fits score inf and are counted in ``n_failed_fits`` instead of poisoning the mean);
    - ``mase_mean_chosen``, ``coverage80_mean_chosen``, ``coverage95_mean_chosen``, ``width80_mean_chosen``,
      ``pinball_mean_chosen``: the same for the models that produced the forecasts (backtest scores, before
      calibration);
    - ``champion_share.<model>``: share of series whose forecast comes from that model;
    - ``n_series``, ``n_failed_fits`` (candidate rows with an error), ``n_series_without_forecast``
      (no chosen model: every candidate failed, or the series was refused and has a row without model).
    A mean over no finite values is NaN.
    """
    missing = [name for name in METRICS_COLUMNS if name not in metrics.columns]
    if missing:
        raise ValueError(f"metrics frame is missing columns {missing}; expected {METRICS_COLUMNS}")
    n_series = int(metrics["series_id"].nunique())
    chosen = metrics[metrics["chosen"].astype(bool)]
    summary: dict[str, float] = {}
    for model, rows in metrics.groupby("model", sort=True):
        summary[f"mase_mean.{model}"] = _finite_mean(rows["mase"])
    summary["mase_mean_chosen"] = _finite_mean(chosen["mase"])
    summary["coverage80_mean_chosen"] = _finite_mean(chosen["coverage80"])
    summary["coverage95_mean_chosen"] = _finite_mean(chosen["coverage95"])
    summary["width80_mean_chosen"] = _finite_mean(chosen["width80"])
    summary["pinball_mean_chosen"] = _finite_mean(chosen["pinball"])
    for model in sorted(metrics["model"].dropna().unique()):
        share = (chosen["model"] == model).sum() / n_series if n_series else math.nan
        summary[f"champion_share.{model}"] = float(share)
    summary["n_series"] = float(n_series)
    summary["n_failed_fits"] = float((metrics["error"].notna() & metrics["model"].notna()).sum())
    summary["n_series_without_forecast"] = float(n_series - chosen["series_id"].nunique())
    return summary


def breakdown_metrics(metrics: pd.DataFrame, keys: pd.DataFrame) -> dict[str, float]:
    """Backtest aggregates of the chosen models per level and per route (``metrics`` as METRICS_COLUMNS).

    ``keys`` has series_id, level, route_id and optionally source. Per level: ``<score>_mean_chosen.level.<level>``
    for the unit-free scores mase, coverage80 and coverage95, ``n_series.level.<level>`` and
    ``n_series_without_forecast.level.<level>``. Per route, over its route-level series (level "route"):
    ``<score>_mean_chosen.route.<route_id>`` for mase, mae, coverage80 and coverage95 -- per route and source,
    ``...route.<route_id>.<source>``, when ``keys`` has a source column, because MAE is in the series' own unit
    (devices for density, people for official counts) and a mean across sources would add the two.
    Means are over finite values (NaN when there are none), as in :func:`summarise_metrics`. Series that
    ``keys`` does not list are left out; name parts keep letters, digits, ``_`` and ``-`` (others become ``_``).
    """
    keys = _checked_keys(keys)
    in_keys = metrics.merge(keys, on="series_id", how="inner")
    chosen = in_keys[in_keys["chosen"].astype(bool)]
    out: dict[str, float] = {}
    for level, rows in in_keys.groupby("level", sort=True):
        name = _name_part(level)
        level_chosen = chosen[chosen["level"] == level]
        for score in UNIT_FREE_SCORES:
            out[f"{score}_mean_chosen.level.{name}"] = _finite_mean(level_chosen[score])
        n_series = rows["series_id"].nunique()
        out[f"n_series.level.{name}"] = float(n_series)
        out[f"n_series_without_forecast.level.{name}"] = float(n_series - level_chosen["series_id"].nunique())
    by = ["route_id", "source"] if "source" in keys.columns else ["route_id"]
    route_rows = in_keys[(in_keys["level"] == "route") & in_keys["route_id"].notna()]
    # Over every route series listed, so a route whose forecasts all failed shows as NaN rather than vanishing.
    for group, rows in route_rows.groupby(by, sort=True):
        suffix = ".".join(_name_part(part) for part in (group if isinstance(group, tuple) else (group,)))
        route_chosen = rows[rows["chosen"].astype(bool)]
        for score in ROUTE_SCORES:
            out[f"{score}_mean_chosen.route.{suffix}"] = _finite_mean(route_chosen[score])
    return out


def artifact_location_for(tracking_uri: str) -> str | None:
    """Artifact root for a new experiment: ``mlartifacts/`` beside a local SQLite database, else None.

    None lets the tracking server decide (its own default artifact root).
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    db_path = unquote(tracking_uri[len(prefix) :].split("?", 1)[0])
    if not db_path or db_path == ":memory:":
        return None
    # sqlite:////abs/path.db leaves "/abs/path.db"; sqlite:///rel.db is relative to the working dir.
    return (Path(db_path).resolve().parent / "mlartifacts").as_uri()


def experiment_id_for(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of the active MLflow experiment ``name``, created (artifacts beside a SQLite store) if missing;
    ValueError if it was deleted."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location_for(tracking_uri))
        except MlflowException as exc:
            # Another job created it between our lookup and create; use theirs.
            if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise ValueError(
            f"MLflow experiment {name!r} at {tracking_uri} is deleted; restore it "
            "(mlflow experiments restore) or log to another experiment name"
        )
    return experiment.experiment_id


def _checked_keys(keys: pd.DataFrame) -> pd.DataFrame:
    missing = [name for name in BREAKDOWN_KEY_COLUMNS if name not in keys.columns]
    if missing:
        raise ValueError(
            f"keys frame: columns {missing} missing; expected {', '.join(BREAKDOWN_KEY_COLUMNS)} (source optional), "
            "one row per series"
        )
    repeated = keys["series_id"][keys["series_id"].duplicated()].unique()
    if len(repeated):
        raise ValueError(f"keys frame: series {list(repeated[:5])} appear more than once; expected one row per series")
    return keys[[*BREAKDOWN_KEY_COLUMNS, *(["source"] if "source" in keys.columns else [])]]


def _name_part(value: object) -> str:
    """``value`` as one part of an MLflow metric name (letters, digits, ``_``, ``-``; on every platform)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(value)) or "_"


def _family_summaries(
    metrics: pd.DataFrame, keys: pd.DataFrame | None
) -> dict[str, tuple[dict[str, Any], dict[str, float]]]:
    """Per model family (alias in metrics["model"]): (params, metrics) of its nested run."""
    n_series = metrics["series_id"].nunique()
    levels = None
    if keys is not None:  # one level per metrics row, NaN for series keys does not list
        levels = metrics[["series_id"]].merge(keys[["series_id", "level"]], on="series_id", how="left")["level"]
    out: dict[str, tuple[dict[str, Any], dict[str, float]]] = {}
    for family in sorted(metrics["model"].dropna().unique()):
        is_family = (metrics["model"] == family).to_numpy()
        rows = metrics[is_family]
        params = {
            "alias": family,
            "n_series_scored": int(np.isfinite(rows["mae"].to_numpy(dtype="float64")).sum()),
            "n_failed": int(rows["error"].notna().sum()),
            "share_chosen": round(float(rows["chosen"].astype(bool).sum()) / n_series, 6) if n_series else math.nan,
        }
        scores = {f"{score}_mean": _finite_mean(rows[score]) for score in FAMILY_SCORES}
        if levels is not None:
            family_levels = levels[is_family].to_numpy()
            for level in sorted(pd.unique(family_levels[pd.notna(family_levels)])):
                at_level = rows[family_levels == level]
                for score in UNIT_FREE_SCORES:
                    scores[f"{score}_mean.level.{_name_part(level)}"] = _finite_mean(at_level[score])
        out[str(family)] = (params, scores)
    return out


def _log_family_run(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    family: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
) -> None:
    """One nested run under ``parent_run_id``, logged in one batch (the client, not the fluent run stack)."""
    child = client.create_run(
        experiment_id, run_name=family, tags={MLFLOW_PARENT_RUN_ID: parent_run_id, TAG_FAMILY: family}
    )
    now = int(time.time() * 1000)
    try:
        client.log_batch(
            child.info.run_id,
            metrics=[Metric(name, float(value), now, 0) for name, value in metrics.items()],
            params=[Param(name, str(value)) for name, value in params.items()],
        )
    except Exception:
        client.set_terminated(child.info.run_id, "FAILED")
        raise
    client.set_terminated(child.info.run_id, "FINISHED")


def _current_champion(client: MlflowClient, registered_model: str, alias: str) -> ModelVersion | None:
    version = client.get_registered_model(registered_model).aliases.get(alias)
    return None if version is None else client.get_model_version(registered_model, str(version))


def _compare_with_version(
    champion: ModelVersion, metrics: pd.DataFrame, tracking_uri: str, scratch: Path
) -> ChampionComparison:
    """:func:`compare_with_champion` against the metrics.parquet of ``champion``'s run."""
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=champion.run_id, artifact_path=METRICS_ARTIFACT, dst_path=str(scratch), tracking_uri=tracking_uri
        )
        champion_metrics = pq.read_table(path, schema=metrics_schema()).to_pandas()
    except (MlflowException, OSError, ValueError) as exc:  # missing, unreadable or not our schema
        return unreadable_champion(str(champion.version), str(champion.run_id), METRICS_ARTIFACT, exc)
    return compare_with_champion(metrics, champion_metrics)


def _decision_tags(decision: ChampionComparison, previous: ModelVersion | None, champion: str) -> dict[str, str]:
    lost = ",".join(decision.lost_series)
    return {
        TAG_PROMOTED: str(decision.promote).lower(),
        TAG_REASON: decision.reason,
        TAG_COMPARED_SERIES: str(decision.compared_series),
        TAG_NOT_COMPARABLE: str(decision.not_comparable),
        # Tag values are capped (8000 characters); the full list is in the two runs' metrics tables.
        TAG_LOST_SERIES: lost if len(lost) <= 2000 else lost[:2000] + f"... ({len(decision.lost_series)} series)",
        TAG_MASE_NEW: repr(decision.mase_new),
        TAG_MASE_OLD: repr(decision.mase_old),
        TAG_PREVIOUS_CHAMPION: str(previous.version) if previous is not None else NO_VERSION,
        TAG_CHAMPION_VERSION: champion,
    }


def _all_versions(client: MlflowClient, registered_model: str) -> list[ModelVersion]:
    versions: list[ModelVersion] = []
    token = None
    quoted = registered_model.replace("'", "\\'")
    while True:
        page = client.search_model_versions(f"name = '{quoted}'", page_token=token)
        versions.extend(page)
        token = page.token
        if not token:
            return versions


def _run_or_none(client: MlflowClient, run_id: str | None) -> Any:
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException as exc:  # the run was deleted for good; its version can outlive it
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        return None


def _history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=CHAMPION_HISTORY_COLUMNS).astype(
        {
            "created": "datetime64[ns, UTC]",
            "promoted": "bool",
            "is_champion_now": "bool",
            "mase_mean_chosen": "float64",
            "n_series": "Int64",
        }
    )
    order = frame["version"].astype("int64").sort_values(ascending=False).index
    return frame.loc[order].reset_index(drop=True)


_URI_ENV_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextmanager
def _mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-global tracking and registry URIs at ``uri``, then restore them exactly.

    MLflow's fluent API (start_run, pyfunc.log_model, pyfunc.load_model of models:/) only reads these
    globals, and setting them also writes environment variables. Restoring keeps the caller's own
    MLflow configuration (and other tests) untouched. The previous values are read from MLflow's module
    state because the public getters resolve defaults, which would pin them. Not thread-safe, like the
    globals themselves.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_tracking = getattr(tracking_utils, "_tracking_uri", None)
    saved_registry = getattr(registry_utils, "_registry_uri", None)
    saved_env = {name: os.environ.get(name) for name in _URI_ENV_VARS}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        mlflow.set_registry_uri(saved_registry)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _forecast_frame_from_arrow(table: Any) -> pd.DataFrame:
    """The pandas shape select_and_forecast produces: ds as datetime64[ns], FORECAST_COLUMNS order."""
    frame = table.to_pandas(date_as_object=False)
    frame["ds"] = frame["ds"].astype("datetime64[ns]")
    return frame[FORECAST_COLUMNS]


def _finite_mean(values: pd.Series) -> float:
    finite = values[np.isfinite(values.to_numpy(dtype="float64"))]
    return float(finite.mean()) if len(finite) else math.nan


def _checked_horizon(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not float(value).is_integer() or value < 1:
        raise ValueError(f"horizon {value!r} must be a positive whole number of days")
    return int(value)


def _input_example(forecasts: pd.DataFrame) -> pd.DataFrame | None:
    """One real request (first series, one day); MLflow stores it and checks the model answers it."""
    if forecasts.empty:
        return None
    return pd.DataFrame({"series_id": [str(forecasts["series_id"].iloc[0])], "horizon": [1]})


def _pip_requirements() -> list[str]:
    return [f"{package}=={installed_version(package)}" for package in ("mlflow", "pandas", "pyarrow")]


_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "series_id"), ColSpec("long", "horizon", required=False)]),
    outputs=Schema(
        [
            ColSpec("string", "series_id"),
            ColSpec("datetime", "ds"),
            *(ColSpec("double", name) for name in PUBLISHED_VALUES),
            ColSpec("string", "model"),
        ]
    ),
)
