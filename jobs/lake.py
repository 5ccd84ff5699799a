"""Reading and writing the Parquet lake: always with the declared schema, replacing only the partitions written.

Writes are crash-safe. Spark writes the new partitions into a staging folder inside the table
(``<table>/_staging/<token>/``, hidden from readers by its leading underscore); only when that write has
finished does the driver record a journal (``_COMMITTED``) and swap the partitions in one by one, each swap a
pair of directory renames. A crash before the journal leaves the previous data untouched (the staging folder
is removed by the next access); a crash during the swap is rolled forward from the journal by the next
access (``recover``), which every read and write runs first. A table is written by one process at a time
(an advisory lock that dies with its holder); readers never wait for a writer.

The lake is a local folder or a mount every executor and the driver can reach (the swap is done by the
driver with POSIX renames).

Job code reads and writes catalogued tables (``contracts.tables``) with :func:`read` and :func:`write`, which
know each table's place, schema and partitioning; :func:`write` refuses a DataFrame whose columns or types are
not the declared ones. :func:`read_table` and :func:`write_partitions` work on a path and are what those use.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from contracts.tables import Table
from jobs.schemas import QA_CHECKS, spark_schema
from jobs.settings import JobSettings

STAGING = "_staging"
TRASH = "_trash"
LOCK = "_lock"
JOURNAL = "_COMMITTED"


@contextmanager
def _table_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the table's write lock (yields False when ``wait`` is off and another process holds it)."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_table(spark: SparkSession, path: Path, schema: StructType) -> DataFrame:
    """Read a lake table with its declared schema; a table that does not exist yet reads as empty."""
    if path.exists():
        with _table_lock(path, wait=False) as free:
            if free:  # a writer that holds the lock finishes its own commit
                _recover_locked(path)
    if not path.exists() or not any(_leaf_partitions(path, _depth(path))):
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(str(path))


def write_partitions(
    df: DataFrame,
    path: Path,
    partition_by: list[str],
    *,
    replace: Mapping[str, Iterable[object]] | None = None,
    one_file_per_partition: bool = False,
) -> list[str]:
    """Write ``df`` into the table at ``path``, replacing exactly the partitions it contains.

    ``replace`` names partitions to replace even when ``df`` has no rows for them, e.g.
    ``{"date": dates}`` for a job that recomputed those dates (a date whose rows are now all suppressed
    must not keep its old rows). ``one_file_per_partition`` shuffles the rows by the partition columns first,
    for tables small enough per partition: one file each instead of one per task and partition (at 32
    shuffle partitions, 5 resolutions and 7 dates that is 35 files, not 1,120; see bench/README.md).
    Returns the partitions written, as relative paths (``date=…/res=…``).
    """
    with _table_lock(path):
        _recover_locked(path)
        token = uuid.uuid4().hex
        staged = path / STAGING / token
        if one_file_per_partition:
            df = df.repartition(*partition_by)
        df.write.mode("errorifexists").partitionBy(*partition_by).parquet(str(staged))
        new = sorted(_leaf_partitions(staged, len(partition_by)))
        drop = sorted(set(_matching(path, len(partition_by), replace or {})) - set(new))
        (staged / JOURNAL).write_text(json.dumps({"new": new, "drop": drop}))
        _apply(path, staged)
    return new


def purge_partitions(path: Path, column: str, before: dt.date) -> list[str]:
    """Delete the top-level partitions ``column=value`` with value before ``before`` (retention)."""
    if not path.exists():
        return []
    removed = []
    with _table_lock(path):
        _recover_locked(path)
        for child in sorted(path.iterdir()):
            key, _, value = child.name.partition("=")
            if key == column and child.is_dir() and dt.date.fromisoformat(value) < before:
                shutil.rmtree(child)
                removed.append(child.name)
    return removed


def drop_partitions(path: Path, column: str, values: Iterable[object]) -> list[str]:
    """Delete the top-level partitions ``column=value`` for ``values`` (what a stage no longer makes)."""
    if not path.exists():
        return []
    wanted = {f"{column}={v}" for v in values}
    removed = []
    with _table_lock(path):
        _recover_locked(path)
        for child in sorted(path.iterdir()):
            if child.name in wanted and child.is_dir():
                shutil.rmtree(child)
                removed.append(child.name)
    return removed


def recover(path: Path) -> None:
    """Finish (or discard) an interrupted write of the table at ``path``."""
    if path.exists():
        with _table_lock(path):
            _recover_locked(path)


def _recover_locked(path: Path) -> None:
    staging = path / STAGING
    if staging.is_dir():
        for staged in sorted(staging.iterdir()):
            if (staged / JOURNAL).is_file():
                _apply(path, staged)  # the write had finished: roll the swap forward
            else:
                shutil.rmtree(staged)  # it had not: the previous data is still in place
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(path / TRASH, ignore_errors=True)


def _apply(path: Path, staged: Path) -> None:
    """Swap the staged partitions in, following the journal; safe to repeat after a crash."""
    journal = json.loads((staged / JOURNAL).read_text())
    trash = path / TRASH / staged.name
    for rel in journal["new"]:
        src, dst = staged / rel, path / rel
        if not src.exists():
            continue  # moved in before a crash
        if dst.exists():
            (trash / rel).parent.mkdir(parents=True, exist_ok=True)
            dst.rename(trash / rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)
    for rel in journal["drop"]:
        if (path / rel).exists():
            (trash / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).rename(trash / rel)
            _remove_empty_parents(path / rel, path)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(staged)


def _remove_empty_parents(leaf: Path, root: Path) -> None:
    parent = leaf.parent
    while parent != root and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def _visible(p: Path) -> bool:
    return not p.name.startswith(("_", "."))


def _depth(path: Path) -> int:
    """Partition depth of an existing table (0 for an unpartitioned one)."""
    depth, here = 0, path
    while True:
        subdirs = [c for c in here.iterdir() if c.is_dir() and _visible(c) and "=" in c.name] if here.is_dir() else []
        if not subdirs:
            return depth
        depth, here = depth + 1, subdirs[0]


def _leaf_partitions(root: Path, depth: int) -> Iterator[str]:
    """Relative paths of the partition folders ``depth`` levels down that hold data files."""
    if not root.is_dir():
        return
    level = [root]
    for _ in range(depth):
        level = [c for d in level for c in d.iterdir() if c.is_dir() and _visible(c) and "=" in c.name]
    for leaf in level:
        if any(f.is_file() and _visible(f) for f in leaf.iterdir()):
            yield leaf.relative_to(root).as_posix()


def _matching(path: Path, depth: int, replace: Mapping[str, Iterable[object]]) -> Iterator[str]:
    wanted = {f"{key}={value}" for key, values in replace.items() for value in values}
    for rel in _leaf_partitions(path, depth):
        if wanted & set(rel.split("/")):
            yield rel


class SchemaMismatch(ValueError):
    """A DataFrame written to a catalogued table does not have the table's declared columns and types."""


def check_schema(df: DataFrame, table: Table) -> None:
    """Raise :class:`SchemaMismatch` unless ``df`` has exactly ``table``'s columns, each of its declared type.

    Column order and nullability are not compared: Parquet stores partition columns apart, and Spark marks
    computed columns nullable; a reader always applies the declared schema (:func:`read`).
    """
    declared = {f.name: f.dataType for f in spark_schema(table.schema).fields}
    got = {f.name: f.dataType for f in df.schema.fields}
    problems = []
    if missing := [c for c in declared if c not in got]:
        problems.append(f"missing {', '.join(missing)}")
    if extra := [c for c in got if c not in declared]:
        problems.append(f"not in the table: {', '.join(extra)}")
    problems += [
        f"{c} is {got[c].simpleString()}, declared {t.simpleString()}"
        for c, t in declared.items()
        if c in got and got[c] != t
    ]
    if problems:
        raise SchemaMismatch(f"refusing to write {table.key}: {'; '.join(problems)} (contracts/schemas.py)")


def read(spark: SparkSession, settings: JobSettings, table: Table) -> DataFrame:
    """A catalogued lake table, read with its declared schema, columns in the declared order (partition columns
    included; empty if it does not exist yet)."""
    return read_table(spark, settings.lake(table), spark_schema(table.schema)).select(*table.columns)


def write(
    settings: JobSettings,
    table: Table,
    df: DataFrame,
    *,
    replace: Mapping[str, Iterable[object]] | None = None,
    one_file_per_partition: bool = False,
) -> list[str]:
    """Check ``df`` against ``table``'s schema, then :func:`write_partitions` it into the table's partitions
    (its columns in the declared order)."""
    check_schema(df, table)
    return write_partitions(
        df.select(*table.columns),
        settings.lake(table),
        list(table.partition_by),
        replace=replace,
        one_file_per_partition=one_file_per_partition,
    )


def write_checks(spark: SparkSession, qa_path: Path, run_date: dt.date, stage: str, checks: dict) -> None:
    """Store a stage's data-quality figures as rows (run_date, stage, check, value), replacing that run's."""
    rows = [(run_date, stage, name, float(value)) for name, value in checks.items()]
    write_partitions(spark.createDataFrame(rows, QA_CHECKS), qa_path, ["run_date", "stage"])


def read_checks(spark: SparkSession, qa_path: Path, run_date: dt.date, stage: str) -> dict[str, float]:
    """The figures one stage wrote for one run date."""
    df = read_table(spark, qa_path, QA_CHECKS).where((F.col("run_date") == F.lit(run_date)) & (F.col("stage") == stage))
    return {r["check"]: r["value"] for r in df.collect()}
