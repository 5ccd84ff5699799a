from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from contracts import tables
from contracts.privacy import MIN_DEVICES_FLOOR
from jobs.privacy import mechanisms
from jobs.settings import DEFAULT_DP_SECRET, JobSettings
from jobs.spark import HADOOP_UMASK, SparkConfError, private_conf, read_spark_conf


def test_privacy_threshold_cannot_go_below_floor():
    with pytest.raises(ValidationError, match="privacy floor"):
        JobSettings(min_devices=MIN_DEVICES_FLOOR - 1)
    assert JobSettings(min_devices=MIN_DEVICES_FLOOR).min_devices == MIN_DEVICES_FLOOR
    assert JobSettings(min_devices=50).min_devices == 50


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ROUTECAST_H3_RES", "8")
    monkeypatch.setenv("ROUTECAST_VAR_DIR", "/tmp/rc")
    s = JobSettings()
    assert s.h3_res == 8
    assert s.store_dir == Path("/tmp/rc/store")
    assert s.tracking_uri == "sqlite:////tmp/rc/mlflow/mlflow.db"


def test_defaults_live_under_var():
    s = JobSettings()
    assert s.lake(tables.DENSITY) == Path("var/lake/silver/density")
    assert s.h3_res == 7 and s.min_devices == 15


def test_published_cell_resolutions_default_to_those_up_to_h3_res_and_must_be_aggregated(monkeypatch):
    assert JobSettings().cell_resolutions() == (5, 6, 7)
    assert JobSettings(h3_res=8).cell_resolutions() == (5, 6, 7, 8)
    monkeypatch.setenv("ROUTECAST_PUBLISH_CELL_RESOLUTIONS", "[7,5,7]")
    assert JobSettings().cell_resolutions() == (5, 7)
    with pytest.raises(ValidationError, match=r"publish_cell_resolutions \[9\] are not in resolutions"):
        JobSettings(resolutions=(5, 7), publish_cell_resolutions=(7, 9))
    with pytest.raises(ValidationError, match="at least one"):
        JobSettings(publish_cell_resolutions=())


@pytest.mark.parametrize("profile", ["local", "cluster", "test"])
def test_every_profile_parses(profile: str):
    conf = read_spark_conf(JobSettings().spark_conf_dir / f"{profile}.conf")
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.sources.partitionOverwriteMode"] == "dynamic"


def test_malformed_profile_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.conf"
    bad.write_text("# comment\nspark.master local[2]\nlonely_key\n")
    with pytest.raises(SparkConfError, match=r"bad.conf:3"):
        read_spark_conf(bad)
    with pytest.raises(SparkConfError, match="not found"):
        read_spark_conf(tmp_path / "nope.conf")


# --------------------------------------------------------------------------------------------------------------
# The differential-privacy secret: refused when the settings are made, and again before any noise


STRONG = "9f86d081884c7d659a2feaa0c55ad015"  # what `openssl rand -hex 16` gives
WEAK = {
    "default": (DEFAULT_DP_SECRET, "default secret"),
    "short": ("k3#Vq9!xLm", "10 characters, under 16"),
    "one character repeated": ("x" * 40, "1 distinct characters, under 8"),
    "few distinct characters": ("ab12" * 8, "4 distinct characters, under 8"),
    "a repeated word": ("Tr0ub4dor&3" * 2, "one shorter string repeated"),
    "the placeholder inside": ("my-change-me-secret-2025", "contains the placeholder"),
}


@pytest.mark.parametrize("secret, problem", WEAK.values(), ids=WEAK.keys())
def test_with_dp_on_a_default_or_weak_secret_is_refused_when_the_settings_are_made(secret, problem):
    with pytest.raises(ValidationError, match=problem) as refused:
        JobSettings(dp_mechanism="laplace", dp_secret=secret)
    assert "ROUTECAST_DP_SECRET" in str(refused.value) and "openssl rand" in str(refused.value)
    if secret != DEFAULT_DP_SECRET:
        assert secret not in str(refused.value)  # the error names the rule, never the secret


@pytest.mark.parametrize("secret, problem", WEAK.values(), ids=WEAK.keys())
def test_a_weak_secret_that_skipped_validation_is_refused_before_any_noise(secret, problem):
    unchecked = JobSettings().model_copy(update={"dp_mechanism": "gaussian", "dp_secret": SecretStr(secret)})
    with pytest.raises(mechanisms.DPConfigError, match=problem):
        mechanisms.require_dp(unchecked)


def test_a_strong_secret_passes_and_dp_off_needs_none(monkeypatch: pytest.MonkeyPatch):
    assert mechanisms.require_dp(JobSettings(dp_mechanism="laplace", dp_secret=STRONG)) == STRONG
    assert JobSettings(dp_secret="weak").dp_mechanism == "none"  # the secret is not used with DP off
    monkeypatch.setenv("ROUTECAST_DP_MECHANISM", "laplace")
    with pytest.raises(ValidationError, match="default secret"):
        JobSettings()  # from the environment alike


# --------------------------------------------------------------------------------------------------------------
# The Spark keys that keep files private


def test_a_local_master_gets_a_private_scratch_under_var_and_a_private_hadoop_umask(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARK_LOCAL_DIRS", raising=False)
    settings = JobSettings(var_dir=tmp_path / "var")
    scratch = tmp_path / "var" / "spark-tmp"
    scratch.mkdir(parents=True, mode=0o755)
    scratch.chmod(0o755)  # left by an older version: made private too

    conf = private_conf(settings, {"spark.app.name": "x"}, "local[2]")

    assert conf == {"spark.app.name": "x", HADOOP_UMASK: "027", "spark.local.dir": str(scratch.resolve())}
    assert scratch.stat().st_mode & 0o777 == 0o700


def test_what_the_profile_or_spark_submit_sets_is_kept_and_a_cluster_keeps_its_own_scratch(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARK_LOCAL_DIRS", raising=False)
    settings = JobSettings(var_dir=tmp_path / "var")
    mine = {"spark.local.dir": "/fast/scratch", HADOOP_UMASK: "077"}
    assert private_conf(settings, mine, "local[*]") == mine
    assert private_conf(settings, {}, "local[*]", submitted=mine) == {}  # already in the JVM
    assert private_conf(settings, {}, "spark://h:7077") == {HADOOP_UMASK: "027"}
    monkeypatch.setenv("SPARK_LOCAL_DIRS", "/ssd")  # Spark prefers it to spark.local.dir
    assert private_conf(settings, {}, "local[*]") == {HADOOP_UMASK: "027"}
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("umask", ["022", "002", "007", "u=rwx"])
def test_a_hadoop_umask_that_leaves_files_readable_by_others_is_refused(tmp_path, umask):
    with pytest.raises(SparkConfError, match=HADOOP_UMASK):
        private_conf(JobSettings(var_dir=tmp_path / "var"), {HADOOP_UMASK: umask}, "spark://h:7077")


def test_the_session_writes_files_0640_and_keeps_its_scratch_private(spark, tmp_path):
    # The test session was built by build_spark (tests/conftest.py) like every job's.
    scratch = Path(spark.sparkContext.getConf().get("spark.local.dir"))
    assert scratch.name == "spark-tmp" and scratch.stat().st_mode & 0o777 == 0o700
    out = tmp_path / "out"
    spark.range(3).write.parquet(str(out))
    # Files are chmod-ed by Hadoop, which would make them 0644 without its umask setting. Folders follow the JVM's
    # process umask, here pytest's: the CLI sets it (tests/jobs/test_file_modes.py checks both).
    assert {oct(f.stat().st_mode & 0o777) for f in out.iterdir() if f.is_file()} == {"0o640"}
