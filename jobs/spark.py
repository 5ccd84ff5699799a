"""SparkSession construction from a profile in ``spark-conf/`` — Spark settings live there, not in code.

The exceptions are the two keys that keep Spark's files private (:func:`private_conf`): they are a privacy rule
(docs/design.md: files are not world-readable), not a tuning: a profile may set them, the umask only tighter.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import SparkSession

from jobs.settings import JobSettings

# What others may not do with the files Spark writes: group write and everything for others (files 0640, folders
# 0750 or tighter). The `routecast` CLI sets the same process umask before any Spark starts (routecast/cli.py).
PRIVATE_UMASK = 0o027
# Hadoop's local file system chmods every file it creates to 0666 minus this umask (its default, 022, makes them
# 0644 whatever the process umask is); folders it makes with a plain mkdir, which the process umask governs.
HADOOP_UMASK = "spark.hadoop.fs.permissions.umask-mode"
# Spark's scratch (shuffle and spill files, cached blocks: device rows included) in local mode, under var_dir.
SCRATCH_DIR = "spark-tmp"


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


def scratch_dir(settings: JobSettings) -> Path:
    """routecast's own Spark scratch folder, ``<var_dir>/spark-tmp`` (``spark.local.dir`` of local masters)."""
    return settings.var_dir / SCRATCH_DIR


def private_conf(
    settings: JobSettings, conf: Mapping[str, str], master: str, submitted: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``conf`` plus the keys that keep Spark's files private, where neither ``conf`` nor ``submitted`` (what
    spark-submit was given) sets them.

    - ``spark.hadoop.fs.permissions.umask-mode`` ``027``, so that the files Spark writes are 0640. A value that
      would let others read them (or the group write) is refused with :class:`SparkConfError`.
    - ``spark.local.dir`` ``<var_dir>/spark-tmp``, created (or chmod-ed) 0700, for a local master only and only when
      ``SPARK_LOCAL_DIRS`` is unset (Spark prefers it): a cluster's executors keep the scratch their cluster gives
      them, and a profile's own ``spark.local.dir`` is the operator's to protect.
    """
    given = {**conf, **(submitted or {})}
    out = dict(conf)
    umask = given.get(HADOOP_UMASK)
    if umask is None:
        out[HADOOP_UMASK] = f"{PRIVATE_UMASK:03o}"
    else:
        try:
            bits = int(umask, 8)
        except ValueError:
            raise SparkConfError(f"{HADOOP_UMASK} {umask!r}: give an octal umask, e.g. 027") from None
        if bits & PRIVATE_UMASK != PRIVATE_UMASK:
            raise SparkConfError(
                f"{HADOOP_UMASK} {umask} would let others read the files Spark writes (docs/design.md: files are not "
                f"world-readable); use {PRIVATE_UMASK:03o} or tighter, e.g. 077"
            )
    if master.startswith("local") and "spark.local.dir" not in given and not os.environ.get("SPARK_LOCAL_DIRS"):
        scratch = scratch_dir(settings).resolve()
        scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch.chmod(0o700)  # mkdir's mode passes through the umask, and an existing folder may be looser
        out["spark.local.dir"] = str(scratch)
    return out


def build_spark(settings: JobSettings, profile: str | None = None) -> SparkSession:
    """Get or create the SparkSession for a profile (``local``, ``cluster``, ``test``).

    ``ROUTECAST_SPARK_MASTER`` replaces the profile's ``spark.master``. Under spark-submit, what spark-submit was
    given wins: the profile only fills in the keys it did not set, and a ``ROUTECAST_SPARK_MASTER`` that
    disagrees with its ``--master`` is refused (the deploy was already prepared for that master). The keys of
    :func:`private_conf` are added where neither sets them.
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
    conf = private_conf(settings, conf, master, submitted)
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
