"""Airflow DAG ``routecast_nightly``: the nightly stages as one task each, in order, at 02:30 UTC.

Each task runs ``routecast stage NAME --date {{ ds }}``: a run of the DAG for logical date D builds day D (the data
interval is D 02:30 .. D+1 02:30, so the run starts at 02:30 UTC on D+1). Stages are idempotent and recorded in the
run ledger, so a retried or re-run task redoes only its own stage. The Spark stages are spark-submits of
``routecast/cli.py`` (SparkSubmitOperator from apache-airflow-providers-apache-spark, else a BashOperator running
the same spark-submit line); forecast and publish run ``routecast stage`` on the worker, with a local Spark session (the
forecast fans series out over it; publish reads the cells from silver), since they also log to MLflow and write the
store from the driver.

Deploy:

1. On the Airflow workers: routecast at ROUTECAST_HOME with its ``.venv`` (``make install``), and Airflow with the
   Spark provider in Airflow's environment. This file imports nothing from routecast; in a checkout
   ``pip install -e '.[airflow]'`` installs both, without ``-c constraints.txt``, since Airflow 3.3 needs
   fastapi<0.137. spark-submit must be on the workers' PATH (the venv's own, from pip's pyspark, or
   ``$SPARK_HOME/bin``).
2. Copy or symlink this file into the dags folder:
   ``ln -s /opt/routecast/jobs/orchestration/scheduling/airflow_dag.py $AIRFLOW_HOME/dags/routecast_nightly.py``.
3. Set the Airflow Variables (``airflow variables set NAME VALUE``, or ``AIRFLOW_VAR_NAME=VALUE`` in the workers'
   environment); they are read when a task runs, not when the file is parsed:

   - ``ROUTECAST_HOME``: the checkout with its ``.venv`` (default ``/opt/routecast``);
   - ``ROUTECAST_VAR_DIR``: the lake, seen alike by the driver and every executor (default ``ROUTECAST_HOME/var``);
   - ``ROUTECAST_SPARK_PROPERTIES``: the spark-submit properties file (default ``spark-conf/cluster.conf``);
   - ``SPARK_MASTER``: the master for the BashOperator fallback (default ``local[*]``). With the Spark provider the
     master comes from the Airflow connection ``spark_default`` instead, e.g.
     ``AIRFLOW_CONN_SPARK_DEFAULT=spark://spark-master:7077``.

   Other job settings (``ROUTECAST_MLFLOW_TRACKING_URI``, …) come from the workers' environment, as in
   "Running on a cluster" in docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
from itertools import pairwise

try:  # Airflow 3
    from airflow.sdk import DAG, CronDataIntervalTimetable
except ImportError:  # Airflow 2.9+
    from airflow import DAG
    from airflow.timetables.interval import CronDataIntervalTimetable

try:
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2 without the standard provider
    from airflow.operators.bash import BashOperator

try:
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
except ImportError:
    SparkSubmitOperator = None

# jobs/orchestration/pipeline.py runs these in this order; forecast and publish run on the worker
# (local Spark, MLflow, the store).
STAGES = ("ingest", "aggregate", "flows", "retention", "series", "people", "forecast", "publish")
PYTHON_STAGES = {"forecast", "publish"}
SCHEDULE = "30 2 * * *"


def _var(name: str, default: str) -> str:
    """Jinja for an Airflow Variable, read when the task runs; ``default`` is a Jinja expression."""
    return f"var.value.get('{name}', {default})"


def _j(expression: str) -> str:
    return "{{ " + expression + " }}"


_HOME = _var("ROUTECAST_HOME", "'/opt/routecast'")
HOME = _j(_HOME)
VAR_DIR = _j(_var("ROUTECAST_VAR_DIR", f"{_HOME} ~ '/var'"))
PROPERTIES = _j(_var("ROUTECAST_SPARK_PROPERTIES", f"{_HOME} ~ '/spark-conf/cluster.conf'"))
MASTER = _j(_var("SPARK_MASTER", "'local[*]'"))
DRIVER_ENV = {
    "ROUTECAST_SPARK_PROFILE": "cluster",
    "ROUTECAST_VAR_DIR": VAR_DIR,
    "PYSPARK_PYTHON": f"{HOME}/.venv/bin/python",
}


def _task(stage: str):
    args = ["stage", stage, "--date", "{{ ds }}"]
    if stage in PYTHON_STAGES:
        return BashOperator(
            task_id=stage, bash_command=f"cd {HOME} && ROUTECAST_VAR_DIR={VAR_DIR} .venv/bin/routecast {' '.join(args)}"
        )
    if SparkSubmitOperator is not None:
        return SparkSubmitOperator(
            task_id=stage,
            name=f"routecast-{stage}",
            application=f"{HOME}/routecast/cli.py",
            application_args=args,
            properties_file=PROPERTIES,
            env_vars=DRIVER_ENV,
        )
    env = " ".join(f"{k}={v}" for k, v in DRIVER_ENV.items())
    return BashOperator(
        task_id=stage,
        bash_command=f"cd {HOME} && {env} spark-submit --master '{MASTER}' --properties-file {PROPERTIES}"
        f" --name routecast-{stage} routecast/cli.py {' '.join(args)}",
    )


with DAG(
    dag_id="routecast_nightly",
    description="routecast nightly: " + " → ".join(STAGES),
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=10)},
    tags=["routecast"],
    doc_md=__doc__,
) as dag:
    tasks = [_task(stage) for stage in STAGES]
    for upstream, downstream in pairwise(tasks):
        upstream >> downstream
