"""Retention: every device-level table routecast owns is deleted once older than ``bronze_retention_days``.

docs/design.md: device ids and home networks never leave bronze, and every device-level table, raw input included, is
deleted after its retention period. The device-level data at rest, and how each goes (docs/privacy.md, "Device-level
data at rest"):

- bronze pings, by ``date`` partition, and quarantined pings, by ``run_date`` partition (they hold device ids);
- the raw pings routecast owns: ``<var_dir>/raw/pings`` (the simulator's output, and what an operator puts there)
  and a ``--raw`` folder or file inside ``<var_dir>/raw``. Raw files are not partitioned by date (the simulator
  writes a few files that each span every day), so rows go by their ``ts``: a file whose rows are all dated before
  the cut-off is deleted, one that straddles it is rewritten without those rows (atomically, keeping its Parquet
  types so that ingest reads it as before), and a file with no dated row (unreadable, or every ``ts`` null) goes
  when its modification time is before the cut-off. Raw input anywhere else (``--raw`` outside ``<var_dir>/raw``)
  is the operator's: routecast never deletes it, and the operator must delete it on the same clock;
- the simulator's ground truth of journeys (one row per simulated person and journey), by its ``ended`` time;
- Spark scratch left in ``<var_dir>/spark-tmp`` by a session that was killed (shuffle and spill files hold device
  rows; a session that stops removes its own), once nothing in it was written for the retention period.

The cut-off is the first day of the default window of a nightly run (run date − retention + 1), so that window is
kept; the stage runs after every stage that reads device-level data (ingest, aggregate, flows), so a longer first
run (``--since``) is aggregated first. Not device-level, so not purged here: quarantined files (names and reasons),
density tiles and their quarantine (counts from providers), the simulator's per-segment and per-crossing counts, and
silver (``density_by_group`` included: suppressed counts per coarse home-network group; the MCC stays in bronze and
goes with it).

What is due is decided apart from the deleting: :func:`cutoff_date` (the window's first day), :func:`file_fate` (what
happens to one file, given the dates of its rows) and :func:`stale_folders` (which scratch folders are idle) read
nothing and delete nothing; :func:`run` and the ``purge_*`` functions look at the files and delete (the lake's
partitions dated before the cut-off with :func:`jobs.lake.purge_partitions`, under the table's write lock).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import tables
from jobs.lake import purge_partitions
from jobs.orchestration.runs import fingerprint
from jobs.settings import JobSettings
from jobs.spark import scratch_dir


@dataclass(frozen=True)
class PurgedFiles:
    """What retention did to one folder (or file) of Parquet files dated by a timestamp column."""

    path: Path
    deleted: tuple[str, ...] = ()  # files deleted whole (relative to ``path``)
    rewritten: tuple[str, ...] = ()  # files rewritten without their rows dated before the cut-off
    rows_deleted: int = 0  # rows of readable files (an unreadable file's rows cannot be counted)

    def describe(self, what: str) -> str:
        return f"{what}: {len(self.deleted)} files deleted, {len(self.rewritten)} rewritten, {self.rows_deleted:,} rows"


@dataclass(frozen=True)
class RetentionReport:
    cutoff: dt.date  # device-level data dated before this day was deleted
    bronze_days: tuple[str, ...]
    quarantine_days: tuple[str, ...]
    raw: tuple[PurgedFiles, ...] = ()  # the raw pings routecast owns (<var_dir>/raw/pings, a --raw inside it)
    truth_journeys: PurgedFiles | None = None  # None: no simulated truth
    scratch: tuple[str, ...] = ()  # Spark scratch folders left by killed sessions
    operator_raw: Path | None = None  # the run's --raw outside <var_dir>/raw: the operator's, never deleted here

    def describe(self) -> str:
        """One line for the run ledger and the console."""
        parts = [f"{len(self.bronze_days)} bronze days", f"{len(self.quarantine_days)} quarantine days"]
        parts += [p.describe(f"raw {p.path}") for p in self.raw]
        if self.truth_journeys is not None:
            parts.append(self.truth_journeys.describe("simulated journeys"))
        if self.scratch:
            parts.append(f"{len(self.scratch)} stale Spark scratch folders")
        line = f"deleted before {self.cutoff}: " + "; ".join(parts)
        if self.operator_raw is not None:
            line += f"; raw input {self.operator_raw} is the operator's: not deleted by routecast"
        return line


def cutoff_date(settings: JobSettings, run_date: dt.date) -> dt.date:
    """The first day retention keeps for ``run_date``: the first day of the default window of a nightly run,
    run date − ``bronze_retention_days`` + 1."""
    first, _ = settings.window(run_date)
    return first


Fate = Literal["keep", "delete", "rewrite"]


def file_fate(dated: tuple[dt.datetime, dt.datetime] | None, modified: dt.date, cutoff: dt.date) -> Fate:
    """What retention does to one Parquet file whose dated rows span ``dated`` (earliest, latest; naive UTC) or
    that has no dated row (None), last modified on ``modified`` (UTC): ``delete`` it when every dated row is before
    ``cutoff`` (an undated file: when it was modified before), ``rewrite`` it without its rows before ``cutoff``
    when only some are, else ``keep`` it."""
    cut = dt.datetime.combine(cutoff, dt.time())
    if dated is None:
        return "delete" if modified < cutoff else "keep"
    if dated[1] < cut:
        return "delete"
    return "rewrite" if dated[0] < cut else "keep"


def stale_folders(last_written: Mapping[str, float], idle_since: dt.datetime) -> tuple[str, ...]:
    """The folders, of ``last_written`` (name → the latest modification time, POSIX seconds, of the folder and all
    it holds), in which nothing was written since ``idle_since`` (aware), in name order."""
    return tuple(name for name, stamp in sorted(last_written.items()) if stamp < idle_since.timestamp())


def owned_raw(settings: JobSettings, raw_path: Path | None = None) -> tuple[list[Path], Path | None]:
    """(the raw ping folders or files routecast owns and purges, the operator's raw input it never touches).

    routecast owns ``<var_dir>/raw/pings`` always, and ``raw_path`` (a run's ``--raw``) when it lies inside
    ``<var_dir>/raw``; a ``raw_path`` elsewhere is returned second. Density tiles are not device-level: with
    ``density_input=tiles`` the run's ``--raw`` (a tiles file) is neither purged nor reported.
    """
    owned = [settings.raw_dir / "pings"]
    if raw_path is None or settings.density_input == "tiles":
        return owned, None
    inside = raw_path.resolve().is_relative_to(settings.raw_dir.resolve())
    if not inside:
        return owned, raw_path
    if raw_path.resolve() != owned[0].resolve():
        owned.append(raw_path)
    return owned, None


def run(settings: JobSettings, run_date: dt.date, raw_path: Path | None = None) -> RetentionReport:
    """Delete the device-level data dated before :func:`cutoff_date` (see the module docstring for what and how).

    ``raw_path`` is the run's ``--raw``: purged when inside ``<var_dir>/raw``, else reported as the operator's.
    """
    cutoff = cutoff_date(settings, run_date)
    bronze = purge_partitions(settings.lake(tables.BRONZE_PINGS), "date", cutoff)
    quarantine = purge_partitions(settings.lake(tables.QUARANTINE_PINGS), "run_date", cutoff)
    owned, operator = owned_raw(settings, raw_path)
    raw = tuple(purge_rows_before(path, "ts", cutoff) for path in owned if path.exists())
    journeys_path = settings.truth_dir / "journeys"
    journeys = purge_rows_before(journeys_path, "ended", cutoff) if journeys_path.exists() else None
    # Scratch is not dated by its data: its age is what it shows (and a live session keeps writing to its own).
    idle = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.bronze_retention_days)
    scratch = purge_stale_scratch(scratch_dir(settings), idle)
    return RetentionReport(cutoff, tuple(bronze), tuple(quarantine), raw, journeys, scratch, operator)


# --------------------------------------------------------------------------------------------------------------
# Row-level retention of Parquet files that are not partitioned by date


def purge_rows_before(path: Path, column: str, cutoff: dt.date) -> PurgedFiles:
    """Delete the rows of the Parquet files under ``path`` (a folder, any layout, or one file) whose timestamp
    ``column`` (UTC) is before ``cutoff``: whole files when every dated row is, else by rewriting the file.

    Rows with a null ``column`` go with their file. A file with no dated row — unreadable, without ``column``, or
    every value null — is deleted when its modification time is before ``cutoff``. Hidden entries (``_…``, ``.…``;
    ingest and Spark skip them) are left alone, except a deleted or rewritten file's Hadoop checksum
    (``.name.crc``, which would no longer match). Folders left empty are removed (``path`` itself is kept).
    """
    deleted: list[str] = []
    rewritten: list[str] = []
    rows = 0
    for file in data_files(path):
        rel = file.relative_to(path).as_posix() if file != path else file.name
        dated = _dated_range(file, column, read_rows=True)
        fate = file_fate(dated, dt.datetime.fromtimestamp(file.stat().st_mtime, dt.UTC).date(), cutoff)
        if fate == "delete":
            rows += pq.ParquetFile(file).metadata.num_rows if dated is not None else 0
            _remove(file)
            deleted.append(rel)
        elif fate == "rewrite":
            rows += _rewrite_from(file, column, dt.datetime.combine(cutoff, dt.time()))
            rewritten.append(rel)
    if path.is_dir():
        _remove_empty_folders(path)
    return PurgedFiles(path, tuple(deleted), tuple(rewritten), rows)


def raw_fingerprint(raw: Path, since: dt.date) -> str:
    """:func:`jobs.orchestration.runs.fingerprint` of the raw ping files that may hold rows dated ``since`` or later.

    A file whose Parquet statistics show every ``ts`` before ``since`` is left out: ingest only counts its rows as
    *earlier*, so retention deleting it must not make the next run for the date ingest again. Files without such
    statistics (unreadable ones, Spark's INT96 timestamps) count, as every file did before.
    """
    start = dt.datetime.combine(since, dt.time())
    ranges = {f: _dated_range(f, "ts", read_rows=False) for f in data_files(raw)}
    return fingerprint(*(f for f, dated in ranges.items() if dated is None or dated[1] >= start))


def data_files(path: Path) -> Iterator[Path]:
    """The files under ``path`` that ingest would read (``path`` itself when it is a file), in name order."""
    if path.is_file():
        yield path
    elif path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file() and not any(p.startswith(("_", ".")) for p in file.relative_to(path).parts):
                yield file


def _dated_range(file: Path, column: str, *, read_rows: bool) -> tuple[dt.datetime, dt.datetime] | None:
    """(earliest, latest) non-null ``column`` of a Parquet file, naive UTC; None when the file is unreadable, has
    no such column or no non-null value, or (``read_rows`` off) when its statistics do not tell."""
    try:
        parquet = pq.ParquetFile(file)
        index = parquet.schema_arrow.get_field_index(column)
        if index < 0 or not pa.types.is_timestamp(parquet.schema_arrow.field(index).type):
            return None
        stats = [parquet.metadata.row_group(i).column(index).statistics for i in range(parquet.num_row_groups)]
        if stats and all(s is not None and s.has_min_max for s in stats):
            return _naive(min(s.min for s in stats)), _naive(max(s.max for s in stats))
        if not read_rows:
            return None
        values = parquet.read(columns=[column]).column(0)
    except Exception:  # noqa: BLE001 - whatever pyarrow raises, the file cannot be dated
        return None
    lo, hi = pc.min_max(values).values()
    return None if not lo.is_valid else (_naive(lo.as_py()), _naive(hi.as_py()))


def _naive(ts: dt.datetime) -> dt.datetime:
    return ts.astimezone(dt.UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def _rewrite_from(file: Path, column: str, cut: dt.datetime) -> int:
    """Rewrite ``file`` without its rows dated before ``cut`` (nulls stay), one row group at a time, with the same
    Arrow schema and timestamp encoding; swapped in with one rename. Returns the rows removed."""
    parquet = pq.ParquetFile(file)
    schema = parquet.schema_arrow
    kind = schema.field(column).type
    bound = pa.scalar(cut.replace(tzinfo=dt.UTC) if kind.tz else cut, type=kind)
    # Spark writes INT96 timestamps: keep them INT96 so the file reads exactly as before.
    int96 = any(parquet.schema.column(i).physical_type == "INT96" for i in range(len(parquet.schema)))
    tmp = file.with_name(f".{file.name}.retention")
    removed = 0
    with pq.ParquetWriter(tmp, schema, use_deprecated_int96_timestamps=int96) as writer:
        for i in range(parquet.num_row_groups):
            group = parquet.read_row_group(i)
            keep = pc.or_kleene(pc.greater_equal(group[column], bound), pc.is_null(group[column]))
            kept = group.filter(keep)
            removed += group.num_rows - kept.num_rows
            writer.write_table(kept)
    _crc(file).unlink(missing_ok=True)
    os.replace(tmp, file)
    return removed


def _crc(file: Path) -> Path:
    return file.with_name(f".{file.name}.crc")


def _remove(file: Path) -> None:
    file.unlink()
    _crc(file).unlink(missing_ok=True)


def _remove_empty_folders(root: Path) -> None:
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def purge_stale_scratch(scratch: Path, idle_since: dt.datetime) -> tuple[str, ...]:
    """Delete the folders in Spark's scratch ``scratch`` in which nothing was written since ``idle_since`` (aware,
    UTC). A session that stops removes its own folders, so what stays idle that long was left by a killed one."""
    if not scratch.is_dir():
        return ()
    last_written = {
        child.name: max([child.lstat().st_mtime] + [p.lstat().st_mtime for p in child.rglob("*")])
        for child in scratch.iterdir()
        if child.is_dir()
    }
    removed = stale_folders(last_written, idle_since)
    for name in removed:
        shutil.rmtree(scratch / name)
    return removed
