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


def build_spark(settings: JobSettings, profile: str | None = None) -> SparkSession:
    """Get or create the SparkSession for a profile (``local``, ``cluster``, ``test``)."""
    profile = profile or settings.spark_profile
    conf = read_spark_conf(settings.spark_conf_dir / f"{profile}.conf")
    if settings.spark_master:
        conf["spark.master"] = settings.spark_master
    # Python workers must run the same interpreter (and venv) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
