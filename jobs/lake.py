"""Reading and writing the Parquet lake: always with the declared schema, replacing only the partitions written."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from jobs.schemas import QA_CHECKS


def read_table(spark: SparkSession, path: Path, schema: StructType) -> DataFrame:
    """Read a lake table with its declared schema; a table that does not exist yet reads as empty."""
    if not path.exists():
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(str(path))


def write_partitions(df: DataFrame, path: Path, partition_by: list[str]) -> None:
    """Write ``df`` replacing exactly the partitions it contains (dynamic overwrite, from spark-conf)."""
    df.write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy(*partition_by).parquet(str(path))


def write_checks(spark: SparkSession, qa_path: Path, run_date: dt.date, stage: str, checks: dict) -> None:
    """Store a stage's data-quality figures as rows (run_date, stage, check, value), replacing that run's."""
    rows = [(run_date, stage, name, float(value)) for name, value in checks.items()]
    write_partitions(spark.createDataFrame(rows, QA_CHECKS), qa_path, ["run_date", "stage"])


def read_checks(spark: SparkSession, qa_path: Path, run_date: dt.date, stage: str) -> dict[str, float]:
    """The figures one stage wrote for one run date."""
    df = read_table(spark, qa_path, QA_CHECKS).where((F.col("run_date") == F.lit(run_date)) & (F.col("stage") == stage))
    return {r["check"]: r["value"] for r in df.collect()}
