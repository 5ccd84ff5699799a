"""The champion rule: when a newly registered forecast selection replaces the one serving uses.

Pure policy, no MLflow: :mod:`forecasting.tracking` reads the current champion from the registry, asks this module
and records the answer (a :class:`ChampionComparison`: promote or not, and why). The rule:

1. No version holds the alias yet: the new version is promoted (:func:`no_champion`).
2. The champion's backtest cannot be read: the new version is promoted, the error is the reason
   (:func:`unreadable_champion`).
3. Otherwise both selections are scored on the new run's backtest, series by series (:func:`paired_scores`), and
   :func:`decide` promotes the new one when its mean MASE over the comparable series is at most the champion's
   choices' mean MASE there. Ties promote (same skill on fresher data); means within a relative
   :data:`TIE_REL_TOL` count as equal. A series is comparable when both MASEs are finite; with none comparable
   the new version is promoted. Series the champion forecast and the new run does not are reported, never
   blocking.

:func:`serving_version` says which version serves after a decision, and :func:`recorded_decision` reads a
decision back from what was recorded (versions registered before this rule existed have no record).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "NO_RECORDED_DECISION",
    "TIE_REL_TOL",
    "ChampionComparison",
    "SeriesScores",
    "compare_with_champion",
    "decide",
    "no_champion",
    "paired_scores",
    "recorded_decision",
    "serving_version",
    "unreadable_champion",
]

# Two mean MASEs this close (relative) are a tie. The means are over the same series in the same order, so
# identical choices give identical means; the tolerance only absorbs rounding.
TIE_REL_TOL = 1e-12
# Longest reason recorded when the champion's backtest cannot be read (the error message can be long).
_MAX_REASON = 1000
NO_RECORDED_DECISION = "no recorded decision: registered before champion gating, which promoted every version"


@dataclass(frozen=True)
class ChampionComparison:
    """A run's per-series choices against the current champion's, both scored on the run's own backtest.

    ``compared_series``: series where both choices have a finite MASE here; ``mase_new`` / ``mase_old``: the
    mean MASE over them of this run's choices / the champion's choices (NaN when nothing was compared);
    ``not_comparable``: series both forecast where either MASE is not finite here (the champion's family is
    not a candidate of this run, or failed, or the series' MASE scale is 0); ``lost_series``: series the
    champion forecast that this run does not.
    """

    promote: bool
    reason: str
    compared_series: int = 0
    mase_new: float = math.nan
    mase_old: float = math.nan
    not_comparable: int = 0
    lost_series: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesScores:
    """One series both selections forecast, scored on the new run's backtest.

    ``mase_new``: the MASE of the new run's choice; ``mase_old``: the MASE of the champion's choice for the series
    (NaN when that model is not among the new run's candidates, inf when it failed).
    """

    series_id: str
    mase_new: float
    mase_old: float

    @property
    def comparable(self) -> bool:
        """Both MASEs finite: the series counts in the comparison."""
        return math.isfinite(self.mase_new) and math.isfinite(self.mase_old)


def decide(pairs: Sequence[SeriesScores], lost_series: Iterable[str] = ()) -> ChampionComparison:
    """The champion decision from the series both selections forecast (``pairs``) and those the new one lost.

    Promoted when no pair is comparable, or when the mean ``mase_new`` over the comparable pairs is <= their mean
    ``mase_old`` (or equal within :data:`TIE_REL_TOL`). ``lost_series`` never blocks promotion (one series refused
    as too short should not keep every other series on older forecasts); it is sorted into the result and counted
    in the reason, as are the pairs that are not comparable.
    """
    compared = [pair for pair in pairs if pair.comparable]
    not_comparable = len(pairs) - len(compared)
    lost = tuple(sorted(set(lost_series)))
    notes = f"{not_comparable} series not comparable" if not_comparable else ""
    if lost:
        notes += ("; " if notes else "") + f"{len(lost)} series the champion forecast have no forecast in this run"
    notes = f" ({notes})" if notes else ""
    if not compared:
        return ChampionComparison(
            promote=True,
            reason=f"promoted: no series comparable with the champion on this backtest{notes}",
            not_comparable=not_comparable,
            lost_series=lost,
        )
    mase_new = float(np.mean(np.array([pair.mase_new for pair in compared], dtype="float64")))
    mase_old = float(np.mean(np.array([pair.mase_old for pair in compared], dtype="float64")))
    promote = mase_new <= mase_old or math.isclose(mase_new, mase_old, rel_tol=TIE_REL_TOL)
    verdict = "promoted" if promote else "not promoted"
    relation = "<=" if promote else ">"
    return ChampionComparison(
        promote=promote,
        reason=(
            f"{verdict}: mean MASE {mase_new:.4g} {relation} {mase_old:.4g} of the champion's choices on this "
            f"backtest, over {len(compared)} series{notes}"
        ),
        compared_series=len(compared),
        mase_new=mase_new,
        mase_old=mase_old,
        not_comparable=not_comparable,
        lost_series=lost,
    )


def paired_scores(metrics: pd.DataFrame, champion_metrics: pd.DataFrame) -> tuple[list[SeriesScores], tuple[str, ...]]:
    """The two selections side by side on the new run's backtest: (pairs, lost series).

    ``metrics`` (the new run's) and ``champion_metrics`` are METRICS_COLUMNS tables (series_id, model, mase, chosen
    are read). For each series both chose a model for (its ``chosen`` row), in the order of ``metrics``: the MASE
    of the new choice and the MASE the champion's choice scored in ``metrics`` (NaN when ``metrics`` has no row
    for that model). Lost series: those the champion chose a model for and the new run did not, sorted.
    """
    new = _chosen_rows(metrics)[["series_id", "mase"]]
    old = _chosen_rows(champion_metrics)[["series_id", "model"]]
    scored_here = metrics.loc[metrics["model"].notna(), ["series_id", "model", "mase"]].drop_duplicates(
        ["series_id", "model"]
    )
    old_here = old.merge(scored_here, on=["series_id", "model"], how="left")  # NaN: family not a candidate here
    both = new.merge(old_here[["series_id", "mase"]], on="series_id", suffixes=("_new", "_old"))
    pairs = [
        SeriesScores(str(series_id), float(mase_new), float(mase_old))
        for series_id, mase_new, mase_old in zip(
            both["series_id"],
            both["mase_new"].to_numpy(dtype="float64"),
            both["mase_old"].to_numpy(dtype="float64"),
            strict=True,
        )
    ]
    lost = tuple(sorted(set(old["series_id"]) - set(new["series_id"])))
    return pairs, lost


def compare_with_champion(metrics: pd.DataFrame, champion_metrics: pd.DataFrame) -> ChampionComparison:
    """Should the selection in ``metrics`` replace the one in ``champion_metrics`` (both METRICS_COLUMNS)?

    The registered model is a per-series selection, so the two are compared series by series on THIS run's
    backtest, where every candidate of a series was scored on the same origins: for each series the champion
    chose a model for (its ``chosen`` row) and this run forecasts, the champion's choice is looked up among
    this run's rows for that series and model. Over the series where both this run's choice and the
    champion's choice have a finite MASE here, the new selection is promoted when its mean MASE is <= the
    champion's choices' (ties promote: same skill on fresher data). If no series is comparable (e.g. the
    champion's families are no longer candidates) it is promoted and the reason says so.

    Mean MASE rather than total MAE: MASE is unit-free, so each series weighs the same, whereas total MAE would
    be decided by the largest series and would add devices to official arrivals. Series whose MASE is not
    finite here (scale 0, failed fits) are left out of both means and counted as not comparable.

    Series the champion forecast and this run does not are recorded in ``lost_series`` and the reason, but do
    not block promotion: one series refused (too short, a gap) should not keep every other series on older
    forecasts. :func:`paired_scores` then :func:`decide`.
    """
    pairs, lost = paired_scores(metrics, champion_metrics)
    return decide(pairs, lost)


def no_champion(alias: str) -> ChampionComparison:
    """The decision when no version holds ``alias``: promote."""
    return ChampionComparison(promote=True, reason=f"promoted: no version had the alias {alias!r}")


def unreadable_champion(version: str, run_id: str, artifact: str, error: BaseException | str) -> ChampionComparison:
    """The decision when the champion's backtest (``artifact`` of run ``run_id``) cannot be read: promote.

    A champion that cannot be compared with must not keep every later run out; the reason names what failed.
    """
    return ChampionComparison(
        promote=True,
        reason=(
            f"promoted: the backtest of champion version {version} (run {run_id}, {artifact}) could not be read: "
            f"{error}"
        )[:_MAX_REASON],
    )


def serving_version(
    decision: ChampionComparison,
    new_version: str,
    new_run_id: str,
    previous_version: str | None,
    previous_run_id: str | None,
) -> tuple[str, str]:
    """(version, run id) serving uses after ``decision``: the new one if promoted or if there was no champion
    (``previous_version`` None), else the previous champion."""
    if decision.promote or previous_version is None:
        return new_version, new_run_id
    return previous_version, str(previous_run_id)


def recorded_decision(promoted: str | None, reason: str | None) -> tuple[bool, str]:
    """(promoted, reason) from a version's recorded decision (its tag values; None when absent).

    Versions registered before champion gating have no record: the alias then moved to every new version, so
    they count as promoted, with :data:`NO_RECORDED_DECISION` as the reason.
    """
    was_promoted = promoted == "true" if promoted is not None else True
    return was_promoted, NO_RECORDED_DECISION if reason is None else reason


def _chosen_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The chosen row of each series (select_and_forecast marks at most one)."""
    return metrics[metrics["chosen"].astype(bool) & metrics["model"].notna()].drop_duplicates("series_id")
