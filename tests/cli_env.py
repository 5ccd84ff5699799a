"""The environment of a `routecast` command that a test runs in a subprocess (fault, file-mode and cluster tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Every JVM a test starts in a subprocess lives for seconds on a tiny input: the C1 compiler alone and the serial GC
# start it in about half the time and cut its CPU time by about a third on a 2-core machine (a nightly run of
# tests/jobs/test_faults.py: 114 s -> 69 s), with the same results. The session's own JVM (spark-conf/test.conf)
# lives for the whole suite and keeps the optimising compiler: C1 alone made the simulator's density test 2x slower.
SHORT_LIVED_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def short_lived_jvm(env: dict[str, str]) -> str:
    """``JDK_JAVA_OPTIONS`` for a short-lived JVM started with ``env``."""
    return f"{env.get('JDK_JAVA_OPTIONS', '')} {SHORT_LIVED_JVM}".strip()


def routecast_env(world: Path, var: Path, **extra: str) -> dict[str, str]:
    """This environment plus the settings of a small `routecast` run on ``world`` (its routes/) into ``var``."""
    return {
        **os.environ,
        "ROUTECAST_VAR_DIR": str(var),
        "ROUTECAST_ROUTES_DIR": str(world / "routes"),
        "ROUTECAST_RESOLUTIONS": "[5,7]",
        "ROUTECAST_HOURLY": "false",
        "ROUTECAST_FORECAST_CANDIDATES": '["seasonal_naive"]',
        "ROUTECAST_SPARK_PROFILE": "test",
        "JDK_JAVA_OPTIONS": short_lived_jvm(dict(os.environ)),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "COLUMNS": "200",
        **extra,
    }
