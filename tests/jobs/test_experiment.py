"""``routecast experiment run``: declared experiments rolled over a counts file, scored, logged to MLflow."""

import datetime as dt
import subprocess
import sys
from dataclasses import replace

import pandas as pd
import pytest
from mlflow import MlflowClient

from forecasting.evaluation import CHAMPION
from jobs.analysis.experiment import (
    DEFAULT_EXPERIMENTS_DIR,
    MAIN,
    MLFLOW_EXPERIMENT,
    ExperimentError,
    load_experiment,
    run_experiment,
)
from jobs.settings import JobSettings
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

WEEK = [10, 20, 30, 40, 50, 60, 70]

TOML = """
question = "Does the procedure find an exact weekly pattern?"

[data]
file = "counts.csv"
source = "generic"

[evaluation]
origins = 4
step = 7
horizon = 7
windows = [1, 7]
report = "{report}"
warmup = {warmup}

[selection]
candidates = ["naive", "seasonal_naive"]
holdout = 7
origins = 2
step = 7
ensemble_top = 0

[variants.mean_of_both]
ensemble_top = 2
ensemble_stat = "mean"
champion = "ensemble"
"""


def _declare(tmp_path, report="steps", warmup=0, days=84):
    experiments = tmp_path / "experiments"
    (experiments / "weekly").mkdir(parents=True)
    (experiments / "weekly" / "experiment.toml").write_text(TOML.format(report=report, warmup=warmup))
    data = tmp_path / "data"
    data.mkdir()
    first = dt.date(2025, 1, 6)
    rows = "".join(f"{first + dt.timedelta(days=i)},channel,{WEEK[i % 7]}\n" for i in range(days))
    (data / "counts.csv").write_text("date,route,count\n" + rows)
    return experiments, data


@pytest.fixture
def exp_settings(tmp_path):
    return JobSettings(var_dir=tmp_path / "var")


def test_an_exact_pattern_is_found_at_every_origin_and_logged(tmp_path, exp_settings):
    experiments, data = _declare(tmp_path)
    spec = load_experiment("weekly", experiments)
    result = run_experiment(spec, data, exp_settings)

    summary = result.summary.set_index(["variant", "window", "method"])
    # Main variant: seasonal naive is exact, the backtest finds it, the champion's MAE is 0 at steps 1 and 7.
    for window in (1, 7):
        assert summary.loc[(MAIN, window, CHAMPION), "mae"] == 0
        assert summary.loc[(MAIN, window, CHAMPION), "n"] == 4
    # Naive repeats Sunday's 70: wrong on Mondays (step 1), right on Sundays (step 7).
    assert summary.loc[(MAIN, 1, "naive"), "mae"] == 60
    assert summary.loc[(MAIN, 7, "naive"), "mae"] == 0
    # The mean of naive (last value: 70, Sunday) and seasonal naive: off by (70 - y) / 2 at each step.
    step1 = summary.loc[("mean_of_both", 1, CHAMPION), "mae"]
    assert step1 == pytest.approx((70 - 10) / 2)
    # Relative to a perfect baseline is undefined.
    assert all(v != v for v in result.headline(MAIN).values())
    assert (result.output_dir / "summary.md").read_text().startswith("## weekly: result")
    assert len(pd.read_parquet(result.output_dir / "evaluation.parquet")) == len(result.evaluation)

    client = MlflowClient(exp_settings.tracking_uri)
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["data.source"] == "generic"
    experiment = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert sorted(r.info.run_name for r in children) == ["weekly/main", "weekly/mean_of_both"]
    main = next(r for r in children if r.info.run_name == "weekly/main")
    assert main.data.metrics["mae.champion.w1"] == 0
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"summary.md", "evaluation.parquet", "per_series.parquet"} <= artifacts


def test_totals_are_scored_on_the_last_origins_with_intervals_from_the_warmup(tmp_path, exp_settings):
    experiments, data = _declare(tmp_path, report="totals", warmup=8, days=140)
    result = run_experiment(load_experiment("weekly", experiments), data, exp_settings)
    summary = result.summary.set_index(["variant", "window", "method"])
    # Week totals of an exact pattern: 280 every week; seasonal naive and the champion are exact.
    assert summary.loc[(MAIN, 7, CHAMPION), "mae"] == 0
    assert summary.loc[(MAIN, 7, CHAMPION), "n"] == 4  # the warm-up origins are not scored
    # Zero errors before each scored origin: the conformal interval is the forecast itself.
    scored = result.evaluation[(result.evaluation["method"] == CHAMPION) & (result.evaluation["variant"] == MAIN)]
    assert scored["lo-80"].notna().all()
    assert scored["lo-80"].to_numpy() == pytest.approx(scored["mean"].to_numpy())
    assert scored["hi-95"].to_numpy() == pytest.approx(scored["mean"].to_numpy())


def test_declaration_mistakes_are_named(tmp_path, exp_settings):
    experiments, data = _declare(tmp_path)
    with pytest.raises(ExperimentError, match="no experiment 'nope'.*declared: weekly"):
        load_experiment("nope", experiments)
    toml = experiments / "weekly" / "experiment.toml"
    toml.write_text(toml.read_text().replace("horizon = 7", "horizon = 7\nhorizn = 3"))
    with pytest.raises(ExperimentError, match="evaluation.horizn"):
        load_experiment("weekly", experiments)
    toml.write_text(TOML.format(report="steps", warmup=0).replace('"seasonal_naive"]', '"oracle"]'))
    spec = load_experiment("weekly", experiments)
    with pytest.raises(KeyError, match="oracle"):
        run_experiment(spec, data, exp_settings)
    toml.write_text(TOML.format(report="steps", warmup=0))
    with pytest.raises(ExperimentError, match="--data-dir"):
        run_experiment(load_experiment("weekly", experiments), tmp_path, exp_settings)


def test_the_declared_experiments_load_and_build_their_configs():
    names = sorted(p.parent.name for p in DEFAULT_EXPERIMENTS_DIR.glob("*/experiment.toml"))
    assert {"frontex-monthly", "uk-channel-totals"} <= set(names)
    for name in names:
        spec = load_experiment(name)
        for variant in spec.variant_names:
            spec.selection_config("W" if spec.data.freq == "W" else "M", variant)
        assert (DEFAULT_EXPERIMENTS_DIR / name / "README.md").is_file(), f"{name} has no README"


def test_the_cli_refuses_an_unknown_experiment_and_variant(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "routecast.cli", "experiment", "run", "nope", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "no experiment 'nope'" in out.stderr
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "routecast.cli",
            "experiment",
            "run",
            "frontex-monthly",
            "--data-dir",
            str(tmp_path),
            "--variant",
            "worst",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "unknown variant" in out.stderr


@pytest.mark.slow
def test_the_frontex_experiment_runs_on_the_real_file(tmp_path):
    if not (SHARED_DATA / "frontex_ibc_monthly_by_route.csv").exists():
        pytest.skip(f"real data absent: {SHARED_DATA} (the shared folder beside the repository)")
    spec = load_experiment("frontex-monthly")
    # Two origins and cheap candidates: this checks the plumbing on the real file, not the skill (see the README).
    spec = spec.model_copy(
        update={
            "evaluation": spec.evaluation.model_copy(update={"origins": 2}),
            "selection": {**spec.selection, "candidates": ["naive", "seasonal_naive"], "ensemble_top": 2},
            "variants": {},
        }
    )
    result = run_experiment(spec, SHARED_DATA, JobSettings(var_dir=tmp_path / "var"))
    champion = result.summary[(result.summary["method"] == CHAMPION) & (result.summary["window"] == 1)]
    assert champion["n"].iloc[0] == 2 * 6  # six catalogue routes, two origins
    assert any("Black Sea" in note for note in result.notes)


def test_an_experiment_without_selection_evaluates_the_products_own_procedure(exp_settings):
    from jobs.analysis.experiment import ExperimentSpec
    from jobs.stages.forecast import selection_configs

    spec = ExperimentSpec(
        name="product",
        question="?",
        data={"file": "frontex.csv", "source": "frontex"},
        evaluation={"origins": 3, "horizon": 3},
        variants={"more_origins": {"origins": 30}},
    )
    product = selection_configs(exp_settings)["counts:M"]
    assert spec.selection_config("M", settings=exp_settings) == product
    assert spec.selection_config("M", "more_origins", exp_settings) == replace(product, origins=30)
