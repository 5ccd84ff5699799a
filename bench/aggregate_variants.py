"""Where the Spark aggregate job's time goes: variants of the job (bench/_job_variants.py) and Spark settings.

    .venv/bin/python bench/aggregate_variants.py --pings 2000000 \\
        --variant job --variant cache_reduced --variant cache_reduced+blocks \\
        --variant "cache_reduced+blocks;spark.sql.shuffle.partitions=4" [--repeat 2] [--bronze DIR]

A variant is ``flags;key=value;...``: flags from ``_job_variants.Variant`` joined by ``+`` (``job`` for none),
then runtime Spark SQL settings on top of spark-conf/local.conf. All variants run in one warmed-up session,
interleaved when repeated, each on a fresh silver lake over the same bronze; every variant's published rows
must equal the first variant's. Printed per run: wall seconds, CPU seconds of the whole process tree (driver,
JVM, Python workers), the machine's other load, and Spark's shuffle bytes and stage count (from its status API).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._gen import GenConfig, generate_bronze  # noqa: E402
from bench._procs import busy_cpu_seconds, tree_cpu_seconds  # noqa: E402
from bench.aggregate import compare_published  # noqa: E402
from contracts import tables  # noqa: E402


def parse_variant(spec: str):
    from bench._job_variants import Variant

    flags, *confs = spec.split(";")
    on = {} if flags in ("", "job") else {f: True for f in flags.split("+")}
    return Variant(**on), dict(c.split("=", 1) for c in confs)


def _stages(spark) -> list[dict]:
    port = spark.sparkContext.uiWebUrl.rsplit(":", 1)[1]
    app = spark.sparkContext.applicationId
    url = f"http://127.0.0.1:{port}/api/v1/applications/{app}/stages?status=complete"
    with urllib.request.urlopen(url) as response:
        return json.load(response)


def _stage_line(st: dict) -> str:
    mib = 2**20
    return (
        f"  stage {st['stageId']:4d} tasks {st['numTasks']:3d} run {st['executorRunTime'] / 1000:7.1f} s "
        f"cpu {st['executorCpuTime'] / 1e9:7.1f} s gc {st['jvmGcTime'] / 1000:6.1f} s "
        f"rows in {st['inputRecords']:>11,d} shuffled in {st['shuffleReadRecords']:>11,d} "
        f"out {st['shuffleWriteRecords']:>11,d} ({st['shuffleWriteBytes'] / mib:6.0f} MiB) "
        f"spilled {st['diskBytesSpilled'] / mib:6.0f} MiB peak mem {st.get('peakExecutionMemory', 0) / mib:6.0f} MiB"
        f"  {st['name'][:40]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=2_000_000)
    parser.add_argument("--bronze", type=Path, default=None, help="an existing bronze pings table to reuse")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stages", action="store_true", help="also print every stage's metrics")
    args = parser.parse_args()
    variants = args.variant or ["job", "cache_reduced", "cache_reduced+blocks"]

    from pyspark.sql import SparkSession

    from bench import _job_variants
    from jobs.settings import JobSettings
    from jobs.spark import read_spark_conf

    tmp = Path(tempfile.mkdtemp(prefix="routecast-variants-"))
    try:
        cfg = GenConfig(pings=args.pings)
        bronze = args.bronze
        if bronze is None:
            bronze = tmp / "bronze"
            for _ in generate_bronze(cfg, bronze):
                pass
        since, until = cfg.dates[0], cfg.dates[-1]
        base = JobSettings()
        conf = read_spark_conf(base.spark_conf_dir / f"{base.spark_profile}.conf")
        conf["spark.ui.enabled"] = "true"  # for the stage metrics; UI on 127.0.0.1 (spark.driver.bindAddress)
        for key in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):  # as jobs.spark.build_spark does
            os.environ.setdefault(key, sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = SparkSession.builder
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")

        def lake(name: str) -> JobSettings:
            settings = JobSettings(var_dir=tmp / name)
            settings.lake(tables.BRONZE_PINGS).parent.mkdir(parents=True, exist_ok=True)
            settings.lake(tables.BRONZE_PINGS).symlink_to(bronze.resolve(), target_is_directory=True)
            return settings

        warm = JobSettings(var_dir=tmp / "warm")
        for _ in generate_bronze(GenConfig(50_000, start=since), warm.lake(tables.BRONZE_PINGS)):
            pass
        _job_variants.run(spark, warm, until, since, parse_variant("job")[0])

        defaults = {k: spark.conf.get(k, None) for spec in variants for k in parse_variant(spec)[1]}
        times: dict[str, list[float]] = {spec: [] for spec in variants}
        reference = None
        for rep in range(args.repeat):
            for i, spec in enumerate(variants):
                variant, confs = parse_variant(spec)
                for key, value in defaults.items():
                    if value is None:
                        spark.conf.unset(key)
                    else:
                        spark.conf.set(key, value)
                for key, value in confs.items():
                    spark.conf.set(key, value)
                settings = lake(f"v{i}-r{rep}")
                seen = {s["stageId"] for s in _stages(spark)}
                cpu0, busy0, t0 = tree_cpu_seconds(), busy_cpu_seconds(), time.perf_counter()
                counts = _job_variants.run(spark, settings, until, since, variant)
                seconds = time.perf_counter() - t0
                cpu, busy = tree_cpu_seconds() - cpu0, busy_cpu_seconds() - busy0
                new = [s for s in _stages(spark) if s["stageId"] not in seen]
                shuffled = sum(s["shuffleWriteBytes"] for s in new) / 2**20
                others = max(busy - cpu, 0) / seconds / 2
                times[spec].append(seconds)
                print(
                    f"{spec:60s} {seconds:7.1f} s  CPU {cpu:6.1f} s  other load {others:4.0%}  stages {len(new):3d}  "
                    f"shuffle written {shuffled:7.0f} MiB  {args.pings / seconds:>10,.0f} pings/s",
                    flush=True,
                )
                if args.stages:
                    for st in sorted(new, key=lambda st: st["stageId"]):
                        print(_stage_line(st))
                silver = settings.lake_dir / "silver"
                if reference is None:
                    reference = (silver, counts)
                else:
                    compare_published(reference[0], silver, spec)
                    if counts != reference[1]:
                        raise SystemExit(f"{spec}: counts {counts} differ from {reference[1]}")
        if args.repeat > 1:
            for spec, ts in times.items():
                print(f"{spec:60s} median {statistics.median(ts):7.1f} s  min {min(ts):7.1f} s")
        spark.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
