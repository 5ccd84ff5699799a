"""The champion rule of forecasting.champion, on plain values: no MLflow, no registry."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from forecasting.champion import (
    NO_RECORDED_DECISION,
    TIE_REL_TOL,
    ChampionComparison,
    SeriesScores,
    compare_with_champion,
    decide,
    no_champion,
    paired_scores,
    recorded_decision,
    serving_version,
    unreadable_champion,
)
from forecasting.selection import METRICS_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
NAN, INF = math.nan, math.inf
NOT_COMPARABLE = "series not comparable"
LOST = "series the champion forecast have no forecast in this run"


def pairs(*rows: tuple[str, float, float]) -> list[SeriesScores]:
    return [SeriesScores(*row) for row in rows]


# (case, pairs, lost series, promote, compared, mase_new, mase_old, not comparable)
DECISIONS = [
    ("better", pairs(("a", 0.5, 1.0)), (), True, 1, 0.5, 1.0, 0),
    ("worse", pairs(("a", 1.0, 0.5)), (), False, 1, 1.0, 0.5, 0),
    ("exact tie promotes", pairs(("a", 0.8, 0.8), ("b", 1.2, 1.2)), (), True, 2, 1.0, 1.0, 0),
    ("both perfect is a tie", pairs(("a", 0.0, 0.0)), (), True, 1, 0.0, 0.0, 0),
    ("worse by rounding only", pairs(("a", 1.0 + 1e-13, 1.0)), (), True, 1, 1.0 + 1e-13, 1.0, 0),
    ("worse beyond rounding", pairs(("a", 1.0 + 1e-9, 1.0)), (), False, 1, 1.0 + 1e-9, 1.0, 0),
    # Mean MASE decides, not the number of series won: the new choices win a and c but lose b by more.
    (
        "means, not series won",
        pairs(("a", 0.1, 0.5), ("b", 2.0, 1.0), ("c", 0.2, 0.5)),
        (),
        False,
        3,
        2.3 / 3,
        2.0 / 3,
        0,
    ),
    # The champion's model is not a candidate of the new run: its MASE here is missing, the series is left out.
    ("champion's model missing here", pairs(("a", 0.5, NAN), ("b", 1.0, 0.9)), (), False, 1, 1.0, 0.9, 1),
    ("new MASE missing", pairs(("a", NAN, 0.5), ("b", 0.7, 0.9)), (), True, 1, 0.7, 0.9, 1),
    # A failed fit or a series with MASE scale 0 scores inf: not comparable either.
    ("infinite MASE left out", pairs(("a", INF, 0.5), ("b", 0.5, 0.6)), (), True, 1, 0.5, 0.6, 1),
    ("nothing comparable promotes", pairs(("a", NAN, 0.5), ("b", INF, INF)), (), True, 0, NAN, NAN, 2),
    ("nothing at all promotes", [], (), True, 0, NAN, NAN, 0),
    # Lost series never block, whichever way the comparison goes.
    ("lost series do not block", pairs(("a", 0.5, 0.6)), ("z", "y"), True, 1, 0.5, 0.6, 0),
    ("lost series do not promote either", pairs(("a", 0.9, 0.6)), ("z",), False, 1, 0.9, 0.6, 0),
    ("only lost series", [], ("c",), True, 0, NAN, NAN, 0),
]


@pytest.mark.parametrize(
    ("pairs_", "lost", "promote", "compared", "mase_new", "mase_old", "not_comparable"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_decide(pairs_, lost, promote, compared, mase_new, mase_old, not_comparable):
    decision = decide(pairs_, lost)
    assert decision.promote is promote
    assert decision.compared_series == compared and decision.not_comparable == not_comparable
    assert decision.mase_new == pytest.approx(mase_new, rel=1e-15, nan_ok=True)
    assert decision.mase_old == pytest.approx(mase_old, rel=1e-15, nan_ok=True)
    assert decision.lost_series == tuple(sorted(lost))
    assert decision.reason.startswith("promoted: " if promote else "not promoted: ")
    assert (f"{not_comparable} {NOT_COMPARABLE}" in decision.reason) == (not_comparable > 0)
    assert (f"{len(set(lost))} {LOST}" in decision.reason) == bool(lost)


@pytest.mark.parametrize(
    ("pairs_", "lost", "reason"),
    [
        (
            pairs(("a", 0.5, 1.0)),
            (),
            "promoted: mean MASE 0.5 <= 1 of the champion's choices on this backtest, over 1 series",
        ),
        (
            pairs(("a", 1.25, 0.75), ("b", NAN, 0.5)),
            ("c",),
            "not promoted: mean MASE 1.25 > 0.75 of the champion's choices on this backtest, over 1 series "
            f"(1 {NOT_COMPARABLE}; 1 {LOST})",
        ),
        (
            pairs(("a", 1.0 + 1e-13, 1.0)),
            (),
            "promoted: mean MASE 1 <= 1 of the champion's choices on this backtest, over 1 series",
        ),
        ([], (), "promoted: no series comparable with the champion on this backtest"),
        (
            pairs(("a", INF, 0.5)),
            ("b", "c"),
            f"promoted: no series comparable with the champion on this backtest (1 {NOT_COMPARABLE}; 2 {LOST})",
        ),
    ],
)
def test_the_reason_says_what_was_compared(pairs_, lost, reason):
    assert decide(pairs_, lost).reason == reason


def test_lost_series_are_sorted_and_counted_once():
    decision = decide(pairs(("a", 0.5, 0.5)), ["b", "a2", "b"])
    assert decision.lost_series == ("a2", "b")
    assert f"(2 {LOST})" in decision.reason


def test_the_tie_tolerance_is_relative():
    # The same absolute gap is a tie for large means and a loss for small ones.
    gap = 1e-10
    assert decide(pairs(("a", 1000.0 + gap, 1000.0))).promote
    assert not decide(pairs(("a", 1e-3 + gap, 1e-3))).promote
    assert TIE_REL_TOL == 1e-12


def _metrics(rows: list[tuple[str, str | None, float, bool]]) -> pd.DataFrame:
    """A metrics table from (series_id, model, mase, chosen); the other scores do not matter to the rule."""
    frame = pd.DataFrame(rows, columns=["series_id", "model", "mase", "chosen"])
    return frame.assign(
        mae=1.0, rmse=1.0, coverage80=0.8, coverage95=0.95, width80=1.0, width95=2.0, pinball=0.1, error=None
    )[METRICS_COLUMNS]


# (case, new run's metrics, champion's metrics, expected pairs, expected lost series)
PAIRINGS = [
    (
        # The champion's choice is scored on the NEW run's backtest (0.7 here), not with its own old score (0.1).
        "champion's choice scored on this backtest",
        [("a", "snaive", 0.7, False), ("a", "ets", 0.6, True)],
        [("a", "snaive", 0.1, True), ("a", "ets", 0.2, False)],
        [("a", 0.6, 0.7)],
        (),
    ),
    (
        "champion's model not a candidate here",
        [("a", "ets", 0.6, True)],
        [("a", "prophet", 0.4, True)],
        [("a", 0.6, NAN)],
        (),
    ),
    (
        "new series are not compared",
        [("a", "ets", 0.6, True), ("d", "ets", 0.1, True)],
        [("a", "ets", 0.5, True)],
        [("a", 0.6, 0.6)],
        (),
    ),
    (
        # c: every candidate failed (none chosen); e: refused before any model ran (a row without model).
        "series without a forecast here are lost",
        [("a", "ets", 0.6, True), ("c", "ets", INF, False), ("e", None, NAN, False)],
        [("a", "ets", 0.5, True), ("e", "ets", 0.3, True), ("c", "ets", 0.2, True)],
        [("a", 0.6, 0.6)],
        ("c", "e"),
    ),
    (
        "a series the champion did not forecast is neither compared nor lost",
        [("a", "ets", 0.6, True)],
        [("a", "ets", INF, False)],
        [],
        (),
    ),
    (
        "pairs follow the new run's order",
        [("b", "ets", 0.2, True), ("a", "ets", 0.1, True)],
        [("a", "ets", 0.9, True), ("b", "ets", 0.8, True)],
        [("b", 0.2, 0.2), ("a", 0.1, 0.1)],
        (),
    ),
]


@pytest.mark.parametrize(
    ("new", "champion", "expected", "lost"), [case[1:] for case in PAIRINGS], ids=[case[0] for case in PAIRINGS]
)
def test_paired_scores(new, champion, expected, lost):
    got_pairs, got_lost = paired_scores(_metrics(new), _metrics(champion))
    assert [(p.series_id, p.mase_new) for p in got_pairs] == [(s, n) for s, n, _ in expected]
    assert [p.mase_old for p in got_pairs] == pytest.approx([o for *_, o in expected], nan_ok=True)
    assert got_lost == lost


def test_compare_with_champion_is_the_pairing_then_the_decision():
    new = _metrics([("a", "snaive", 0.9, False), ("a", "ets", 0.6, True), ("b", "ets", 1.5, True)])
    champion = _metrics([("a", "snaive", 0.1, True), ("b", "ets", 0.2, True), ("c", "ets", 0.3, True)])
    decision = compare_with_champion(new, champion)
    assert decision == decide(*paired_scores(new, champion))
    # a: 0.6 against snaive's 0.9 here; b: the same choice on both sides.
    assert decision.promote and (decision.mase_new, decision.mase_old) == pytest.approx((1.05, 1.2))
    assert decision.lost_series == ("c",)


def test_without_a_champion_the_new_version_is_promoted():
    assert no_champion("champion") == ChampionComparison(
        promote=True, reason="promoted: no version had the alias 'champion'"
    )


def test_an_unreadable_champion_does_not_block_and_the_reason_is_bounded():
    decision = unreadable_champion("7", "run-7", "metrics.parquet", OSError("gone"))
    assert decision.promote and decision.compared_series == 0 and math.isnan(decision.mase_old)
    assert decision.reason == (
        "promoted: the backtest of champion version 7 (run run-7, metrics.parquet) could not be read: gone"
    )
    assert len(unreadable_champion("7", "run-7", "metrics.parquet", "x" * 5000).reason) == 1000


PROMOTED = ChampionComparison(promote=True, reason="promoted")
KEPT = ChampionComparison(promote=False, reason="not promoted")


@pytest.mark.parametrize(
    ("decision", "previous", "expected"),
    [
        (PROMOTED, ("1", "run-1"), ("2", "run-2")),
        (KEPT, ("1", "run-1"), ("1", "run-1")),
        (PROMOTED, (None, None), ("2", "run-2")),
        # Without a previous champion there is nothing to keep.
        (KEPT, (None, None), ("2", "run-2")),
    ],
    ids=["promoted", "kept", "first version", "nothing to keep"],
)
def test_serving_version(decision, previous, expected):
    assert serving_version(decision, "2", "run-2", *previous) == expected


@pytest.mark.parametrize(
    ("promoted", "reason", "expected"),
    [
        ("true", "promoted: ...", (True, "promoted: ...")),
        ("false", "not promoted: ...", (False, "not promoted: ...")),
        # Registered before champion gating, when the alias moved to every new version.
        (None, None, (True, NO_RECORDED_DECISION)),
        ("false", None, (False, NO_RECORDED_DECISION)),
    ],
)
def test_recorded_decision(promoted, reason, expected):
    assert recorded_decision(promoted, reason) == expected


def test_the_rule_imports_no_mlflow():
    code = "import sys, forecasting.champion; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
