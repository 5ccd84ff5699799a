"""Cluster mode, for real: ``routecast aggregate`` submitted to a Spark standalone master and worker on 127.0.0.1
writes the same silver tables and QA checks as the same command in local mode.

The master and worker are started from the pyspark installation (``bin/spark-class``; pip's pyspark has no
``sbin/``), on loopback only, with their logs and the worker's folder under ``tmp_path``, and are always stopped.
Run only this test with ``.venv/bin/pytest -m cluster``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pyspark
import pytest

from jobs.schemas import BRONZE_PINGS, arrow_schema
from tests.cli_env import short_lived_jvm

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).resolve().parent
MASTER_PORT = 7077
MASTER_URL = f"spark://127.0.0.1:{MASTER_PORT}"
START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 300

# Distinct devices per place and day. Threshold: published only with MORE than 15 (settings.min_devices).
DAYS = [dt.date(2024, 5, 1), dt.date(2024, 5, 2), dt.date(2024, 5, 3)]
PLACES = {  # name: (lat, lon, resident devices)
    "agadez": (16.9742, 7.9865, 30),  # published
    "sabha": (27.0377, 14.4283, 3),  # suppressed
    "tripoli": (32.8872, 13.1913, 16),  # published: just over the threshold
    "lampedusa": (35.5012, 12.6045, 15),  # suppressed: exactly the threshold
    "calais": (50.9513, 1.8587, 5),  # + the movers below: 23, published
    "dunkirk": (51.0343, 2.3768, 0),  # the movers only: 18, published
}
MOVERS = 18  # devices a day seen at calais at 09:xx then at dunkirk at 15:xx (a cell -> cell flow)
PUBLISHED_DEVICES = [16, 18, 23, 30]  # per day, at any one resolution where each place is one cell
SERIES_RES = 7  # JobSettings.h3_res by default


def _bronze_pings() -> pa.Table:
    """A few hundred pings, fixed by a seed: every device within ~25 m of its place, one to four pings a day."""
    rng = random.Random(20240501)
    rows = []

    def ping(device: str, day: dt.date, place: str, hour: int) -> None:
        lat, lon, _ = PLACES[place]
        rows.append(
            {
                "device_id": device,
                "ts": dt.datetime.combine(day, dt.time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=dt.UTC),
                "lat": lat + rng.uniform(-2e-4, 2e-4),
                "lon": lon + rng.uniform(-2e-4, 2e-4),
                "accuracy_m": rng.choice([None, 8.0, 30.0]),
                "mcc": rng.choice([None, "608", "620"]),
                "date": day,
            }
        )

    for day in DAYS:
        for place, (_, _, residents) in PLACES.items():
            for i in range(residents):
                device = f"{place}-{day:%m%d}-{i:02d}"
                ping(device, day, place, 10)  # everyone at 10:xx, so some (cell, hour) aggregates pass too
                for _ in range(rng.randrange(4)):
                    ping(device, day, place, rng.randrange(24))
        for i in range(MOVERS):
            device = f"mover-{day:%m%d}-{i:02d}"
            ping(device, day, "calais", 9)
            ping(device, day, "dunkirk", 15)
    return pa.Table.from_pylist(rows, schema=arrow_schema(BRONZE_PINGS))


def _write_bronze(var_dir: Path, pings: pa.Table) -> None:
    pq.write_to_dataset(pings, var_dir / "lake" / "bronze" / "pings", partition_cols=["date"])


# --- the standalone cluster -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Standalone:
    master_ui: str  # http://127.0.0.1:<port>
    work_dir: Path  # the worker's folder: <app-id>/<executor-id>/{stdout,stderr}
    logs: tuple[Path, ...]

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.master_ui}/json/", timeout=5) as response:
            return json.load(response)

    def log_tails(self) -> str:
        return "\n".join(_tail(p) for p in self.logs)


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else ["(no file)"]
    return f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT left by a previous run is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            pytest.fail(
                f"port {port} on 127.0.0.1 is taken ({exc}); the cluster test starts its own Spark master there. "
                f"Stop whatever holds it (`ss -ltnp | grep {port}`; a Spark master left over: "
                "`pgrep -af deploy.master`) and run again."
            )


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without routecast settings or a parent's Spark gateway, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTECAST_", "PYSPARK_GATEWAY_"))}
    # Everything on loopback: the daemons, the driver and the address the executors connect back to.
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    # Every JVM here (daemons, drivers, the executor) lives for seconds on a tiny input (tests/cli_env.py).
    env["JDK_JAVA_OPTIONS"] = short_lived_jvm(env)
    return {**env, **extra}


def _start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "wb") as out:
        # Its own process group, so that stopping it also stops the executors and Python workers it started.
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    """A Spark standalone master (port 7077) and one worker (2 cores, 2 GiB), stopped whatever happens."""
    _require_free(MASTER_PORT)
    master_ui, worker_ui = _free_port(), _free_port()
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    work_dir = tmp_path / "worker-work"
    cluster = Standalone(f"http://127.0.0.1:{master_ui}", work_dir, (logs / "master.log", logs / "worker.log"))
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    env = _clean_env(SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false")  # no REST submission port (6066)

    procs = []
    try:
        master_cmd = [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
        master_cmd += ["--port", str(MASTER_PORT), "--webui-port", str(master_ui)]
        procs.append(_start(master_cmd, cluster.logs[0], env))
        worker_cmd = [spark_class, "org.apache.spark.deploy.worker.Worker", MASTER_URL, "--host", "127.0.0.1"]
        worker_cmd += ["--cores", "2", "--memory", "2g", "--webui-port", str(worker_ui), "--work-dir", str(work_dir)]
        procs.append(_start(worker_cmd, cluster.logs[1], env))

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            exited = [p.args[1] for p in procs if p.poll() is not None]
            if exited:
                pytest.fail(f"{', '.join(exited)} exited while starting\n{cluster.log_tails()}")
            try:
                if cluster.state().get("aliveworkers", 0) >= 1:
                    break
            except OSError:
                pass  # the master's UI is not up yet
            if time.monotonic() > deadline:
                pytest.fail(f"no worker registered with {MASTER_URL} within {START_TIMEOUT_S} s\n{cluster.log_tails()}")
            time.sleep(0.5)
        yield cluster
    finally:
        for proc in reversed(procs):  # the worker (and its executors) first, then the master
            _stop(proc)


# --- running the job ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    cmd: list[str]
    env: dict[str, str]
    log: Path


def _run_together(jobs: list[Job], context: Callable[[], str] = lambda: "") -> None:
    """Run the jobs at the same time (two cores: the JVMs start faster side by side); fail on any that fails."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    procs: list[subprocess.Popen] = []
    failed = []
    try:
        for job in jobs:
            with open(job.log, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        job.cmd, cwd=REPO, env=job.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        for job, proc in zip(jobs, procs, strict=True):
            try:
                rc = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                rc = None
            if rc != 0:
                why = f"timed out after {RUN_TIMEOUT_S} s" if rc is None else f"exited with {rc}"
                failed.append(f"{' '.join(job.cmd)} {why}\n{_tail(job.log, 60)}")
    finally:
        for proc in procs:
            _stop(proc)
    if failed:
        pytest.fail("\n".join([*failed, context()]))


def _aggregate_args(first: dt.date, last: dt.date) -> list[str]:
    return ["aggregate", "--date", last.isoformat(), "--since", first.isoformat()]


def _read(table: Path) -> pd.DataFrame:
    """A lake table as a frame, partition columns included, rows in a canonical order (by every column)."""
    df = pads.dataset(table, format="parquet", partitioning="hive").to_table().to_pandas()
    if df.columns.empty:
        return df
    # Floats last, so that rounding in the last bits (summation order differs with partitioning) cannot reorder rows.
    keys = sorted(df.columns, key=lambda c: pd.api.types.is_float_dtype(df[c]))
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def _tables(layer: Path) -> list[str]:
    return sorted(p.name for p in layer.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def test_aggregate_on_a_standalone_cluster_matches_local_mode(standalone: Standalone, tmp_path: Path):
    on_cluster, local = tmp_path / "var-cluster", tmp_path / "var-local"
    pings = _bronze_pings()
    for var in (on_cluster, local):
        _write_bronze(var, pings)
    args = _aggregate_args(DAYS[0], DAYS[-1])
    python = sys.executable  # the venv's: the driver and every Python worker must import jobs/ and geo/

    submit = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", MASTER_URL]
    submit += ["--properties-file", str(REPO / "spark-conf" / "cluster.conf")]
    submit += ["--conf", "spark.sql.shuffle.partitions=4", "--conf", "spark.ui.enabled=false"]
    submit += [str(REPO / "routecast" / "cli.py"), *args]
    _run_together(
        [
            Job(
                submit,
                _clean_env(
                    ROUTECAST_VAR_DIR=str(on_cluster),
                    ROUTECAST_SPARK_PROFILE="cluster",
                    ROUTECAST_SPARK_MASTER=MASTER_URL,
                    PYSPARK_PYTHON=python,
                    PYSPARK_DRIVER_PYTHON=python,
                ),
                tmp_path / "submit.log",
            ),
            Job(
                [python, "-m", "routecast.cli", *args],
                _clean_env(ROUTECAST_VAR_DIR=str(local), ROUTECAST_SPARK_PROFILE="test", PYSPARK_PYTHON=python),
                tmp_path / "local.log",
            ),
        ],
        context=standalone.log_tails,
    )

    # It really ran on the cluster: the master saw the application finish, and its executor on the worker ran tasks.
    state = standalone.state()
    apps = [a for a in state["completedapps"] if a["name"] == "routecast"]
    assert len(apps) == 1 and apps[0]["state"] == "FINISHED", (
        f"expected one finished application 'routecast' on the master, got {state['completedapps']}"
    )
    executor_logs = sorted((standalone.work_dir / apps[0]["id"]).glob("*/stderr"))
    assert executor_logs, f"no executor of {apps[0]['id']} under {standalone.work_dir}\n{standalone.log_tails()}"
    assert any("Running task" in p.read_text(errors="replace") for p in executor_logs), _tail(executor_logs[0])

    silver = _tables(on_cluster / "lake" / "silver")
    assert silver == _tables(local / "lake" / "silver") and "density" in silver
    for table in silver:
        pd.testing.assert_frame_equal(
            _read(on_cluster / "lake" / "silver" / table), _read(local / "lake" / "silver" / table), obj=table
        )

    checks = [_read(var / "lake" / "qa" / "checks").query("stage == 'aggregate'") for var in (on_cluster, local)]
    assert len(checks[0]) > 0
    pd.testing.assert_frame_equal(*(c.reset_index(drop=True) for c in checks), obj="qa/checks (aggregate)")

    # Not vacuous: at the series resolution each place is one cell; only the places with more than 15 devices remain.
    density = _read(local / "lake" / "silver" / "density").query(f"res == {SERIES_RES}")
    assert density.groupby("date")["devices"].agg(sorted).map(list).tolist() == [PUBLISHED_DEVICES] * len(DAYS)
