"""The lake's write protocol: only the partitions written are replaced, and a crash never loses the previous data."""

import datetime as dt
import json
import shutil

import pytest
from pyspark.sql import functions as F

from contracts import tables
from jobs import lake, schemas
from jobs.schemas import QA_CHECKS
from jobs.settings import JobSettings

D1, D2, D3 = dt.date(2025, 3, 1), dt.date(2025, 3, 2), dt.date(2025, 3, 3)


def _rows(spark, date, values, stage="s"):
    return spark.createDataFrame([(date, stage, f"c{i}", float(v)) for i, v in enumerate(values)], QA_CHECKS)


def _read(spark, path):
    return sorted((r.run_date, r.check, r.value) for r in lake.read_table(spark, path, QA_CHECKS).collect())


def test_rewrite_replaces_only_the_partitions_written(spark, tmp_path):
    path = tmp_path / "t"
    lake.write_partitions(_rows(spark, D1, [1, 2]).unionByName(_rows(spark, D2, [3])), path, ["run_date"])
    written = lake.write_partitions(_rows(spark, D2, [9]), path, ["run_date"])
    assert written == ["run_date=2025-03-02"]
    assert _read(spark, path) == [(D1, "c0", 1.0), (D1, "c1", 2.0), (D2, "c0", 9.0)]


def test_one_file_per_partition_writes_each_partition_as_a_single_file(spark, tmp_path):
    rows = _rows(spark, D1, range(40)).unionByName(_rows(spark, D2, range(30))).repartition(8)
    lake.write_partitions(rows, tmp_path / "many", ["run_date"])
    lake.write_partitions(rows, tmp_path / "one", ["run_date"], one_file_per_partition=True)
    for date in ("2025-03-01", "2025-03-02"):
        assert len(list((tmp_path / "many" / f"run_date={date}").glob("*.parquet"))) > 1
        assert len(list((tmp_path / "one" / f"run_date={date}").glob("*.parquet"))) == 1
    assert _read(spark, tmp_path / "one") == _read(spark, tmp_path / "many")


def test_replace_drops_a_recomputed_partition_that_is_now_empty(spark, tmp_path):
    path = tmp_path / "t"
    lake.write_partitions(_rows(spark, D1, [1]).unionByName(_rows(spark, D2, [2])), path, ["run_date", "stage"])
    empty = _rows(spark, D1, [])
    lake.write_partitions(empty, path, ["run_date", "stage"], replace={"run_date": [D2]})
    assert _read(spark, path) == [(D1, "c0", 1.0)]
    assert not (path / "run_date=2025-03-02").exists()  # no empty folder left for readers to trip on


def test_a_crash_before_the_commit_leaves_the_previous_data(spark, tmp_path):
    path = tmp_path / "t"
    lake.write_partitions(_rows(spark, D1, [1]), path, ["run_date"])
    # A writer killed while Spark was still writing: staged files, no journal.
    _rows(spark, D1, [7, 7]).write.partitionBy("run_date").parquet(str(path / lake.STAGING / "dead"))
    assert _read(spark, path) == [(D1, "c0", 1.0)]
    assert not (path / lake.STAGING).exists()  # cleaned by the next access


def test_a_crash_in_the_middle_of_the_swap_is_rolled_forward(spark, tmp_path):
    path = tmp_path / "t"
    lake.write_partitions(_rows(spark, D1, [1]).unionByName(_rows(spark, D2, [2])), path, ["run_date"])
    staged = path / lake.STAGING / "half"
    new = _rows(spark, D1, [10]).unionByName(_rows(spark, D2, [20])).unionByName(_rows(spark, D3, [30]))
    new.write.partitionBy("run_date").parquet(str(staged))
    parts = ["run_date=2025-03-01", "run_date=2025-03-02", "run_date=2025-03-03"]
    (staged / lake.JOURNAL).write_text(json.dumps({"new": parts, "drop": []}))
    # Killed after the first partition was swapped and the second's old copy moved to the trash.
    trash = path / lake.TRASH / "half"
    trash.mkdir(parents=True)
    (path / parts[0]).rename(trash / parts[0])
    (staged / parts[0]).rename(path / parts[0])
    (path / parts[1]).rename(trash / parts[1])

    assert _read(spark, path) == [(D1, "c0", 10.0), (D2, "c0", 20.0), (D3, "c0", 30.0)]
    assert not (path / lake.STAGING).exists() and not (path / lake.TRASH).exists()


def test_purge_deletes_partitions_older_than_the_cutoff(spark, tmp_path):
    path = tmp_path / "t"
    lake.write_partitions(
        _rows(spark, D1, [1]).unionByName(_rows(spark, D2, [2])).unionByName(_rows(spark, D3, [3])), path, ["run_date"]
    )
    assert lake.purge_partitions(path, "run_date", D2) == ["run_date=2025-03-01"]
    assert [d for d, *_ in _read(spark, path)] == [D2, D3]
    assert lake.purge_partitions(tmp_path / "missing", "run_date", D2) == []


def test_a_table_never_written_reads_empty_and_a_failed_write_leaves_no_trace(spark, tmp_path):
    path = tmp_path / "t"
    assert lake.read_table(spark, path, QA_CHECKS).count() == 0
    lake.write_partitions(_rows(spark, D1, [1]), path, ["run_date"])
    bad = spark.createDataFrame([(D2, "s", "c0", 1.0)], QA_CHECKS).selectExpr(
        "run_date", "stage", "check", "raise_error('disk full') AS value"
    )
    try:
        lake.write_partitions(bad, path, ["run_date"])
    except Exception:  # noqa: BLE001 - any Spark failure will do
        pass
    else:  # pragma: no cover
        raise AssertionError("the failing write should have raised")
    assert _read(spark, path) == [(D1, "c0", 1.0)]
    shutil.rmtree(path)
    assert lake.read_table(spark, path, QA_CHECKS).count() == 0


def test_a_catalogued_table_is_written_and_read_with_its_declared_schema(spark, tmp_path):
    settings = JobSettings(var_dir=tmp_path)
    rows = _rows(spark, D1, [1, 2]).select("value", "check", "stage", "run_date")  # any column order
    assert lake.write(settings, tables.QA_CHECKS, rows) == ["run_date=2025-03-01/stage=s"]
    assert settings.lake(tables.QA_CHECKS) == tmp_path / "lake" / "qa" / "checks"
    back = lake.read(spark, settings, tables.QA_CHECKS)
    assert back.columns == list(tables.QA_CHECKS.columns)
    assert sorted(r.value for r in back.collect()) == [1.0, 2.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop("value"), "missing value"),
        (lambda df: df.withColumn("note", F.lit("x")), "not in the table: note"),
        (lambda df: df.withColumn("value", F.col("value").cast("int")), "value is int, declared double"),
        (lambda df: df.withColumn("run_date", F.col("run_date").cast("string")), "run_date is string, declared date"),
    ],
)
def test_a_write_whose_columns_are_not_the_declared_ones_is_refused(spark, tmp_path, change, message):
    settings = JobSettings(var_dir=tmp_path)
    with pytest.raises(lake.SchemaMismatch, match=message):
        lake.write(settings, tables.QA_CHECKS, change(_rows(spark, D1, [1])))
    assert not settings.lake(tables.QA_CHECKS).exists() or not list(settings.lake(tables.QA_CHECKS).rglob("*.parquet"))


@pytest.mark.parametrize("table", list(tables.CATALOGUE.values()), ids=list(tables.CATALOGUE))
def test_every_catalogued_table_has_a_spark_twin_and_partitions_by_its_own_columns(table):
    spark_schema = schemas.spark_schema(table.schema)
    assert schemas.arrow_schema(spark_schema) == table.schema
    assert set(table.partition_by) <= set(table.columns)
