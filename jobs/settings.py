"""Settings of the batch deployable (the `routecast` CLI and its Spark jobs).

One typed object, overridable by environment variables prefixed ``ROUTECAST_`` (for example
``ROUTECAST_H3_RES=8`` or ``ROUTECAST_MIN_DEVICES=20``). Every path defaults under ``./var/``.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.privacy import MIN_DEVICES_FLOOR
from contracts.tables import Table

# The H3 resolutions silver density may hold (res 5 ≈ 250 km², res 9 ≈ 0.1 km²).
RES_MIN, RES_MAX = 5, 9
# The placeholder default of dp_secret, and what a secret that seeds the noise must at least have: differential
# privacy refuses weaker ones (here when the settings are made, and again in jobs.privacy.mechanisms before any noise).
DEFAULT_DP_SECRET = "change-me"
MIN_DP_SECRET_LENGTH = 16
MIN_DP_SECRET_DISTINCT = 8
# spark-conf/ sits beside the packages in the repository (the editable install used by `make`).
DEFAULT_SPARK_CONF_DIR = Path(__file__).resolve().parent.parent / "spark-conf"


class JobSettings(BaseSettings):
    # hide_input_in_errors: a validation error would otherwise print every input, ROUTECAST_DP_SECRET included.
    model_config = SettingsConfigDict(env_prefix="ROUTECAST_", frozen=True, hide_input_in_errors=True)

    var_dir: Path = Path("var")
    routes_dir: Path | None = None  # the route catalogue the nightly run uses; default: the one packaged with geo
    qa_config: Path | None = (
        None  # the QA checks and thresholds (jobs.orchestration.qa); default: the packaged jobs/orchestration/qa.toml
    )
    people_config: Path | None = (
        None  # the people model's priors and sources (jobs.stages.people); default: jobs/stages/people.toml
    )
    spark_conf_dir: Path = DEFAULT_SPARK_CONF_DIR
    spark_profile: str = "local"
    spark_master: str | None = None  # overrides the profile's spark.master when set

    h3_res: Annotated[int, Field(ge=0, le=15)] = 7  # the resolution the route series are built from
    resolutions: tuple[int, ...] = Field(
        default=(5, 6, 7, 8, 9),
        description="H3 resolutions of silver density (each 5..9); must include h3_res and flow_res.",
    )
    density_input: Literal["pings", "tiles"] = "pings"  # raw phone pings, or a provider's density tiles
    hourly: bool = True  # also aggregate per (cell, hour)
    flow_res: Annotated[int, Field(ge=0, le=15)] = 5  # the coarse resolution of cell -> cell flows
    bronze_retention_days: Annotated[int, Field(ge=1)] = 30  # bronze (and quarantined pings) older than this go
    min_devices: int = Field(
        default=15,
        description="Aggregates backed by this many distinct devices or fewer are suppressed (docs/design.md).",
    )
    # Resolutions of the per-cell density published with each release (cells.parquet); None: every resolution in
    # `resolutions` at or below h3_res (finer cells are many and small). Each must be in `resolutions`.
    publish_cell_resolutions: tuple[int, ...] | None = None

    # Differential privacy on published counts (off by default; see docs/privacy.md).
    dp_mechanism: Literal["none", "laplace", "gaussian"] = "none"
    dp_epsilon: Annotated[float, Field(gt=0)] = 1.0  # spent by each release (one data date's published tables)
    dp_delta: Annotated[float, Field(ge=0, lt=1)] = 1e-6  # gaussian only
    dp_budget: Annotated[float, Field(gt=0)] = 31.0  # total epsilon allowed per period
    dp_period: Literal["month"] = "month"  # budget period, by the data date of each release
    dp_max_cells_per_device_day: Annotated[int, Field(ge=1)] = 8  # contribution bound (sensitivity)
    # Seeds the noise; with DP on, the default and weak values are refused (dp_secret_problem).
    dp_secret: SecretStr = SecretStr(DEFAULT_DP_SECRET)

    # Holdout (model selection) and horizon, in periods of each series' frequency.
    holdout_days: Annotated[int, Field(ge=1)] = 14
    horizon_days: Annotated[int, Field(ge=1, le=365)] = 28
    holdout_weeks: Annotated[int, Field(ge=1)] = 8
    horizon_weeks: Annotated[int, Field(ge=1, le=104)] = 12
    holdout_months: Annotated[int, Field(ge=1)] = 6
    horizon_months: Annotated[int, Field(ge=1, le=36)] = 6

    # Model selection (forecasting.selection): the candidates every series' backtest compares, how many rolling
    # origins it uses, and how the density hierarchy (all > route > segment) is made to add up.
    forecast_candidates: tuple[str, ...] = ("seasonal_naive", "prophet")
    backtest_origins: Annotated[int, Field(ge=1, le=52)] = 1
    # Weekly and monthly series (official counts): the median of these candidates (last year's season smoothed over
    # ±1 month / ±4 weeks rather than seasonal naive's single period), backtested on 24 origins one period apart
    # (holdout 6 months / 8 weeks) to calibrate it (misses on log1p): 24 misses per step, enough for a 95 % interval
    # of its own. Chosen on the Frontex and IOM months before the last 24 (where the median of these four beat their
    # mean, the mean with seasonal naive, a median point, dropping the seasonal member and per-step 1/MAE weights)
    # and reported on the last 24 (docs/forecasting.md, "How good are the forecasts?").
    coarse_candidates: tuple[str, ...] = ("auto_ets", "auto_theta", "naive", "seasonal_window")
    coarse_champion: Literal["best", "ensemble"] = "ensemble"
    coarse_backtest_origins: Annotated[int, Field(ge=1, le=52)] = 24
    coarse_point: Literal["mean", "median"] = "mean"
    # How the candidates are combined: their median (robust to the one member that is far off after a turn), their
    # plain mean, or a mean weighted per step by 1 / backtest MAE.
    coarse_ensemble: Literal["median", "mean", "inverse_mae"] = "median"
    # Monthly official counts also take the pooled model (LightGBM on every monthly official series the run reads:
    # forecasting.models.pooled), weighing as much as the median of the candidates above: chosen on the same earlier
    # windows (experiments/pooled-monthly). Weekly counts keep the median alone.
    monthly_pooled: bool = True
    # Daily official counts (e.g. the UK's Channel arrivals; the device and people signals keep the candidates above):
    # the equal-weight mean of the recent level (the last 8 weeks) and the same weeks a year before (±4 weeks),
    # backtested and calibrated on weekly origins over the last year, 4 weeks each. Chosen on the two years before the
    # last 12 months of the Home Office file, and reported on those 12 months (docs/forecasting.md).
    counts_daily_candidates: tuple[str, ...] = ("window_mean", "seasonal_window")
    counts_daily_backtest_origins: Annotated[int, Field(ge=1, le=104)] = 52
    counts_daily_holdout_days: Annotated[int, Field(ge=1)] = 28
    # A day's published figure: the median outcome (a typical day: most days of a bursty count are below its mean)
    # or the mean. Totals of several days are always sums of means.
    counts_daily_point: Literal["mean", "median"] = "median"
    # People series (the measurement model's people present and crossing, daily): the best per series of last
    # week's same weekday, yesterday and their mean, on 21 daily origins of 28 days (misses on log1p), which also
    # calibrates the totals of their next days. Chosen on June origins of the medium simulated world (against Prophet
    # or seasonal naive on one origin, and picks or means among naive, seasonal naive, the 8-week mean and AutoETS):
    # the people series are smooth shares of a route's people, and nothing else beat the two baselines there
    # (docs/forecasting.md, "Forecasts and totals of people"; experiments/people-model/procedure.py).
    people_candidates: tuple[str, ...] = ("seasonal_naive", "naive")
    people_backtest_origins: Annotated[int, Field(ge=1, le=104)] = 21
    people_holdout_days: Annotated[int, Field(ge=1)] = 28
    # How far the people series are forecast: nine weeks, so that a planner's scenario (a four-week closure and the
    # four weeks after it reopens, forecasting.scenario) fits the horizon. Days beyond the holdout have no backtest of
    # their own: their intervals take the calibration pooled over the holdout's days, which may be too narrow there.
    people_horizon_days: Annotated[int, Field(ge=1, le=365)] = 63
    # Whether a crossing point's first days are the crossings the people already on its route imply (the leading
    # indicator: gold people, measure "ahead") instead of its procedure's forecast. Off: against the simulated
    # arrivals it was worse than the univariate forecast at most busy points (experiments/people-model, leading.py),
    # and a led forecast has no backtest to calibrate a total on.
    people_leading: bool = False
    # Forecast totals published per series: the next k days / weeks / months for each k (calibrated when the
    # procedure's backtest reaches that far: k <= its holdout, with enough origins).
    totals_days: tuple[int, ...] = (7, 28)
    totals_weeks: tuple[int, ...] = (1, 4)
    totals_months: tuple[int, ...] = (1, 3)
    reconciliation: Literal["none", "bottom_up", "ols", "mint_shrink"] = "mint_shrink"

    mlflow_tracking_uri: str | None = None  # default: SQLite under var/mlflow
    mlflow_experiment: str = "routecast-nightly"
    registered_model: str = "routecast-forecaster"

    @field_validator("min_devices")
    @classmethod
    def _not_below_floor(cls, v: int) -> int:
        if v < MIN_DEVICES_FLOOR:
            raise ValueError(
                f"min_devices={v} is below the privacy floor of {MIN_DEVICES_FLOOR}; it may only be raised"
            )
        return v

    @field_validator("forecast_candidates", "coarse_candidates", "counts_daily_candidates", "people_candidates")
    @classmethod
    def _known_candidates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from forecasting.selection import MODEL_FACTORIES  # light: no model library is imported by it

        unknown = [alias for alias in v if alias not in MODEL_FACTORIES]
        if unknown or not v:
            raise ValueError(
                f"forecast_candidates {list(unknown) or '(none)'}: name at least one of {', '.join(MODEL_FACTORIES)}"
            )
        return v

    @field_validator("resolutions")
    @classmethod
    def _valid_resolutions(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("resolutions must name at least one H3 resolution")
        bad = [r for r in v if not RES_MIN <= r <= RES_MAX]
        if bad:
            raise ValueError(f"resolutions {bad} are outside {RES_MIN}..{RES_MAX}")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _series_and_flow_res_are_aggregated(self) -> JobSettings:
        for name in ("h3_res", "flow_res"):
            if getattr(self, name) not in self.resolutions:
                raise ValueError(
                    f"{name}={getattr(self, name)} is not in resolutions={list(self.resolutions)}; add it there"
                )
        return self

    @model_validator(mode="after")
    def _dp_secret_is_strong(self) -> JobSettings:
        # Refused here, before any command reads data; jobs.privacy.mechanisms checks again for settings made without
        # validation (model_copy).
        if self.dp_mechanism != "none":
            problem = dp_secret_problem(self.dp_secret.get_secret_value())
            if problem:
                raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _published_cells_are_aggregated(self) -> JobSettings:
        if self.publish_cell_resolutions is not None:
            if not self.publish_cell_resolutions:
                raise ValueError("publish_cell_resolutions must name at least one resolution (or be unset)")
            missing = sorted(set(self.publish_cell_resolutions) - set(self.resolutions))
            if missing:
                raise ValueError(
                    f"publish_cell_resolutions {missing} are not in resolutions={list(self.resolutions)}; "
                    "add them there"
                )
        return self

    def cell_resolutions(self) -> tuple[int, ...]:
        """The resolutions of the published per-cell density: publish_cell_resolutions, sorted, or by default every
        resolution in ``resolutions`` at or below h3_res."""
        if self.publish_cell_resolutions is not None:
            return tuple(sorted(set(self.publish_cell_resolutions)))
        return tuple(r for r in self.resolutions if r <= self.h3_res)

    def periods(self, freq: str) -> tuple[int, int]:
        """(holdout, horizon) in periods of ``freq`` (D, W or M)."""
        table = {
            "D": (self.holdout_days, self.horizon_days),
            "W": (self.holdout_weeks, self.horizon_weeks),
            "M": (self.holdout_months, self.horizon_months),
        }
        if freq not in table:
            raise ValueError(f"unknown frequency {freq!r}; expected D, W or M")
        return table[freq]

    @cached_property
    def raw_dir(self) -> Path:
        return self.var_dir / "raw"

    @cached_property
    def truth_dir(self) -> Path:
        """Where the simulator writes its ground truth: ``var/truth/{segment_people, arrivals, journeys, departures,
        segment_phones}``."""
        return self.var_dir / "truth"

    @cached_property
    def lake_dir(self) -> Path:
        return self.var_dir / "lake"

    @cached_property
    def store_dir(self) -> Path:
        return self.var_dir / "store"

    @property
    def runs_dir(self) -> Path:
        """The run ledger, the per-date run locks and the forecast hand-off between stages (jobs.orchestration.runs)."""
        return self.var_dir / "runs"

    @cached_property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        db = (self.var_dir / "mlflow" / "mlflow.db").resolve()
        return f"sqlite:///{db}"

    def lake(self, table: Table) -> Path:
        """Where a catalogued table lives (``contracts.tables``): ``<var>/lake/<layer>/<name>``, the simulator's
        truth ``<var>/truth/<name>``. A release's files live in the store, not here."""
        if table.layer == "published":
            raise ValueError(f"{table.key} lives in a release of the store, not in the lake")
        return (self.truth_dir if table.layer == "truth" else self.lake_dir / table.layer) / table.name

    def window(self, run_date: dt.date, since: dt.date | None = None) -> tuple[dt.date, dt.date]:
        """The dates a nightly run for ``run_date`` (re)processes: ``since`` (default: the first day of the bronze
        retention period, run date − retention + 1) to ``run_date``, both included."""
        first = since or run_date - dt.timedelta(days=self.bronze_retention_days - 1)
        if first > run_date:
            raise ValueError(f"the window starts on {first}, after its run date {run_date}")
        return first, run_date


def dp_secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot seed differential-privacy noise, or None when it can.

    Refused: the default, fewer than ``MIN_DP_SECRET_LENGTH`` characters, fewer than ``MIN_DP_SECRET_DISTINCT``
    distinct characters (``aaaa…``, ``1212…``), a shorter string repeated (``abcdefghabcdefgh``) and anything
    containing the placeholder. These catch typed-in and placeholder secrets; they cannot prove a secret random.
    """
    fix = "set ROUTECAST_DP_SECRET to a long random value (e.g. `openssl rand -hex 32`) and keep it secret"
    if secret == DEFAULT_DP_SECRET:
        return (
            f"differential privacy refuses the default secret {DEFAULT_DP_SECRET!r}: anyone could recompute the "
            f"noise; {fix}"
        )
    if len(secret) < MIN_DP_SECRET_LENGTH:
        return f"ROUTECAST_DP_SECRET is {len(secret)} characters, under {MIN_DP_SECRET_LENGTH}: easy to guess; {fix}"
    if len(set(secret)) < MIN_DP_SECRET_DISTINCT:
        return (
            f"ROUTECAST_DP_SECRET has {len(set(secret))} distinct characters, under {MIN_DP_SECRET_DISTINCT}: "
            f"too easy to guess; {fix}"
        )
    if secret in (secret + secret)[1:-1]:  # s occurs inside s+s (not at 0 or len) only if s is a repeated unit
        return f"ROUTECAST_DP_SECRET is one shorter string repeated: too easy to guess; {fix}"
    if DEFAULT_DP_SECRET in secret.lower():
        return f"ROUTECAST_DP_SECRET contains the placeholder {DEFAULT_DP_SECRET!r}; {fix}"
    return None
