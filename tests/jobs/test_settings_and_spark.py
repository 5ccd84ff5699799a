from pathlib import Path

import pytest
from pydantic import ValidationError

from jobs.settings import MIN_DEVICES_FLOOR, JobSettings
from jobs.spark import SparkConfError, read_spark_conf


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
    assert s.lake("silver", "density") == Path("var/lake/silver/density")
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
