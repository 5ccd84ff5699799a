"""jobs/orchestration/scheduling: the systemd units and the crontab line (always), the Airflow DAG (when Airflow is
installed)."""

from __future__ import annotations

import importlib.util
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCHEDULING = Path(__file__).resolve().parents[2] / "jobs" / "orchestration" / "scheduling"
DAG_FILE = SCHEDULING / "airflow_dag.py"
STAGES = ["ingest", "aggregate", "flows", "retention", "series", "people", "forecast", "publish"]


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values]}} (keys may repeat, e.g. Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None and sep, f"{path.name}: not 'Key=value' inside a section: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_systemd_service_runs_the_nightly_for_yesterday_once():
    unit = _unit(SCHEDULING / "routecast-nightly.service")
    assert set(unit) == {"Unit", "Service"}  # no [Install]: the timer starts it
    service = unit["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["WorkingDirectory"][0].startswith("/")
    env = dict(e.split("=", 1) for e in service["Environment"])
    assert {"ROUTECAST_VAR_DIR", "SPARK_LOCAL_IP", "MLFLOW_DISABLE_TELEMETRY"} <= set(env)
    (exec_start,) = service["ExecStart"]
    assert exec_start.startswith("/bin/sh -c ")
    assert "/.venv/bin/routecast nightly --date" in exec_start
    # systemd expands $ and % itself: the shell must receive $(date …) and +%F.
    assert "$$(date -u -d yesterday +%%F)" in exec_start


def test_the_systemd_timer_fires_at_0230_utc_and_catches_up():
    unit = _unit(SCHEDULING / "routecast-nightly.timer")
    assert {"Unit", "Timer", "Install"} <= set(unit)
    timer = unit["Timer"]
    assert timer["OnCalendar"] == ["*-*-* 02:30:00 UTC"]
    assert timer["Persistent"] == ["true"]
    assert timer["Unit"] == ["routecast-nightly.service"]
    assert unit["Install"]["WantedBy"] == ["timers.target"]
    if shutil.which("systemd-analyze"):
        subprocess.run(["systemd-analyze", "calendar", timer["OnCalendar"][0]], check=True, capture_output=True)


def test_the_crontab_line_runs_the_nightly_at_0230():
    entries = [
        line for line in (SCHEDULING / "crontab.example").read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    assert len(entries) == 1
    *schedule, command = entries[0].split(None, 5)
    assert schedule == ["30", "2", "*", "*", "*"]
    assert all(re.fullmatch(r"[\d*/,-]+", field) for field in schedule)
    assert "routecast nightly --date" in command
    assert "date -u -d yesterday" in command
    assert re.search(r"(?<!\\)%", command) is None, "an unescaped % ends the command in a crontab"
    assert ">>" in command and "2>&1" in command


# --- the Airflow DAG --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """Airflow writes its logs under AIRFLOW_HOME (default ~/airflow): keep them in a temporary folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        pytest.importorskip("airflow", reason="Airflow is optional: pip install -e '.[airflow]'")
        yield


@pytest.fixture(scope="module")
def dag(airflow_home):
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:
        from airflow.models import DagBag  # Airflow 2
    kwargs = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
    bag = DagBag(dag_folder=str(DAG_FILE), **kwargs)
    assert bag.import_errors == {}
    assert list(bag.dags) == ["routecast_nightly"]
    return bag.dags["routecast_nightly"]


def _render(template, variables: dict[str, str]):
    """Render a task's templated field as Airflow does, with ``var.value`` backed by ``variables``."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined)
    context = {"ds": "2025-05-03", "var": SimpleNamespace(value=SimpleNamespace(get=variables.get))}
    if isinstance(template, str):
        return env.from_string(template).render(context)
    if isinstance(template, list):
        return [_render(t, variables) for t in template]
    return {k: _render(v, variables) for k, v in template.items()}


def test_the_dag_runs_one_task_per_stage_in_order_at_0230_utc(dag):
    assert [t.task_id for t in dag.tasks] == STAGES
    for upstream, task in zip([None, *STAGES], STAGES, strict=False):
        assert dag.get_task(task).upstream_task_ids == ({upstream} if upstream else set())
    timetable = dag.timetable
    assert (getattr(timetable, "expression", None) or timetable.summary) == "30 2 * * *"
    assert type(timetable).__name__ == "CronDataIntervalTimetable"  # {{ ds }} is the day the run builds
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert all(t.retries == 2 and t.retry_delay.total_seconds() > 0 for t in dag.tasks)


def test_spark_stages_are_spark_submits_and_python_stages_run_routecast(dag):
    home = {"ROUTECAST_HOME": "/srv/rc"}
    for name in ("forecast", "publish"):
        command = _render(dag.get_task(name).bash_command, home)
        expected = f"cd /srv/rc && ROUTECAST_VAR_DIR=/srv/rc/var .venv/bin/routecast stage {name} --date 2025-05-03"
        assert command == expected
    task = dag.get_task("aggregate")
    if type(task).__name__ != "SparkSubmitOperator":
        pytest.skip("apache-airflow-providers-apache-spark is not installed (the BashOperator path is tested below)")
    assert _render(task.application, home) == "/srv/rc/routecast/cli.py"
    assert _render(task.application_args, home) == ["stage", "aggregate", "--date", "2025-05-03"]
    assert _render(task.properties_file, {}) == "/opt/routecast/spark-conf/cluster.conf"
    assert _render(task.properties_file, {**home, "ROUTECAST_SPARK_PROPERTIES": "/etc/rc.conf"}) == "/etc/rc.conf"
    assert _render(task.env_vars, home) == {
        "ROUTECAST_SPARK_PROFILE": "cluster",
        "ROUTECAST_VAR_DIR": "/srv/rc/var",
        "PYSPARK_PYTHON": "/srv/rc/.venv/bin/python",
    }


def test_without_the_spark_provider_the_spark_stages_run_spark_submit_in_bash(airflow_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "airflow.providers.apache.spark.operators.spark_submit", None)
    spec = importlib.util.spec_from_file_location("routecast_dag_without_provider", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.SparkSubmitOperator is None
    variables = {"ROUTECAST_HOME": "/srv/rc", "SPARK_MASTER": "spark://m:7077", "ROUTECAST_VAR_DIR": "/mnt/lake"}
    command = _render(module.dag.get_task("flows").bash_command, variables)
    assert command == (
        "cd /srv/rc && ROUTECAST_SPARK_PROFILE=cluster ROUTECAST_VAR_DIR=/mnt/lake"
        " PYSPARK_PYTHON=/srv/rc/.venv/bin/python"
        " spark-submit --master 'spark://m:7077' --properties-file /srv/rc/spark-conf/cluster.conf"
        " --name routecast-flows routecast/cli.py stage flows --date 2025-05-03"
    )
