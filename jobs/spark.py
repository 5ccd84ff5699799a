"""SparkSession construction from a profile in ``spark-conf/`` — Spark settings live there, not in code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from jobs.settings import JobSettings


class SparkConfError(ValueError):
    """A Spark profile that is missing or malformed."""


def read_spark_conf(path: Path) -> dict[str, str]:
    """Parse a ``spark-defaults.conf``-style file: ``key value`` per line, ``#`` comments."""
    if not path.is_file():
        raise SparkConfError(f"Spark profile {path} not found; expected one of spark-conf/*.conf")
    conf: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise SparkConfError(f"{path}:{n}: expected 'key value', got {raw!r}")
        conf[parts[0]] = parts[1].strip()
    return conf


def submitted_conf() -> dict[str, str] | None:
    """The Spark settings spark-submit started this driver with, or None when it was not started by spark-submit.

    spark-submit launches the JVM first and hands the Python driver its gateway (``PYSPARK_GATEWAY_PORT``); what
    it was given (``--master``, ``--conf``, ``--properties-file``) is then in the JVM's ``spark.*`` properties.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return None
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connect to spark-submit's JVM (what getOrCreate does first anyway)
    return dict(SparkConf().getAll())


def build_spark(settings: JobSettings, profile: str | None = None) -> SparkSession:
    """Get or create the SparkSession for a profile (``local``, ``cluster``, ``test``).

    ``ROUTECAST_SPARK_MASTER`` replaces the profile's ``spark.master``. Under spark-submit, what spark-submit was
    given wins: the profile only fills in the keys it did not set, and a ``ROUTECAST_SPARK_MASTER`` that
    disagrees with its ``--master`` is refused (the deploy was already prepared for that master).
    """
    profile = profile or settings.spark_profile
    conf = read_spark_conf(settings.spark_conf_dir / f"{profile}.conf")
    if settings.spark_master:
        conf["spark.master"] = settings.spark_master
    submitted = submitted_conf()
    if submitted is not None:
        master = submitted.get("spark.master")
        if settings.spark_master and master and settings.spark_master != master:
            raise SparkConfError(
                f"spark-submit started this driver for master {master} (its --master; local[*] when not given) "
                f"but ROUTECAST_SPARK_MASTER={settings.spark_master}; give spark-submit the same --master"
            )
        conf = {key: value for key, value in conf.items() if key not in submitted}
        master = master or "local[*]"
    else:
        master = conf.get("spark.master", "local[*]")
    # Python workers must run the same interpreter (and venv) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):
        # Only a driver that runs its own executors may stay on loopback (and it silences Spark's loopback
        # warning); a cluster's executors must be able to connect back to the driver.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
