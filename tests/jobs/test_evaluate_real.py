"""`routecast evaluate` on the real files: the product's forecasts must not get worse than the figures reported.

Each ratio is the champion's MAE over the better of naive and seasonal naive on the same forecasts (below 1:
better), per horizon and per total, at the default origins (UK: 52 weekly origins over the file's last year; Frontex
and IOM: the last 24 months, each pooled with the other). The ceilings are the values the docs report
(docs/forecasting.md, "How good are the forecasts?"); the procedure is deterministic, so a change that makes any of
them worse fails here and has to be argued for, with the new figures. Skips when ../shared/data/real is absent.
"""

from __future__ import annotations

import pytest

from jobs.analysis.evaluate import evaluate_file
from tests.conftest import SHARED_DATA

# file, source -> {ratio name: the reported value}; a ratio may not exceed its value (+ rounding).
REPORTED = {
    ("uk_small_boats_daily.csv", "uk-channel"): {
        "step 1": 0.780,
        "step 1-7": 0.808,
        "step 8-28": 0.820,
        "step 1-28": 0.817,
        "total 7": 0.841,
        "total 28": 0.773,
    },
    ("frontex_ibc_monthly_by_route.csv", "frontex"): {
        "step 1": 0.845,
        "step 2": 0.826,
        "step 3": 0.827,
        "total 1": 0.845,
        "total 3": 0.679,
    },
    ("iom_dtm_med_arrivals.csv", "iom-dtm"): {
        "step 1": 0.883,
        "step 2": 0.856,
        "step 3": 0.876,
        "total 1": 0.883,
        "total 3": 0.779,
    },
}
# The monthly files pool with each other, as the nightly run's pooled model learns from every monthly source it reads
# (`routecast evaluate FILE --pool SOURCE=OTHER`).
POOL = {
    "frontex_ibc_monthly_by_route.csv": ("iom_dtm_med_arrivals.csv", "iom-dtm"),
    "iom_dtm_med_arrivals.csv": ("frontex_ibc_monthly_by_route.csv", "frontex"),
}
# The coverage of the 80 % and 95 % intervals must stay within these (per horizon and total).
COVERAGE = {80: (0.70, 0.90), 95: (0.85, 0.99)}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "source"), list(REPORTED))
def test_forecasts_of_the_real_files_are_no_worse_than_reported(name, source, settings):
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"real data absent: {path} (the shared folder beside the repository)")
    pool = [(SHARED_DATA / other, src) for other, src in [POOL[name]]] if name in POOL else []
    result = evaluate_file(path, source, settings=settings, log=False, pool=pool)
    ratios = result.ratios()
    assert set(ratios) == set(REPORTED[(name, source)])
    worse = {k: round(v, 3) for k, v in ratios.items() if v > REPORTED[(name, source)][k] + 0.0005}
    assert not worse, f"worse than reported: {worse} (reported {REPORTED[(name, source)]})"
    for table in (result.steps, result.totals):
        for level, (low, high) in COVERAGE.items():
            assert table[f"coverage{level}"].between(low, high).all(), table
