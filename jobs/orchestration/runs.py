"""The run ledger and the per-date run lock of the nightly batch.

The ledger is a table (SQLite, ``var/runs/ledger.sqlite``): one row per stage attempt, with the run date, the
stage, its status (``running`` → ``done`` | ``failed`` | ``skipped``), input and output row counts, duration, the
MLflow run id (forecast) or release id (publish), and the process that ran it. A row still ``running`` whose
process is gone was killed: it reads as ``interrupted``, and the next run for that date does the stage again. A
``done`` stage is skipped by the next run for its date unless forced or unless a stage before it ran again (its
input may have changed: late data). SQLite commits each write atomically, so a kill never leaves a torn row.

The lock (``var/runs/locks/<date>.lock``) is an advisory ``flock``: the kernel releases it when its holder dies,
however it dies, so a killed run never blocks the next one; a second live run for the same date is refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STAGES = ("ingest", "aggregate", "flows", "retention", "series", "people", "forecast", "publish")

SCHEMA = """
CREATE TABLE IF NOT EXISTS stage_runs (
    run_id TEXT NOT NULL,          -- one nightly (or backfill day) invocation
    run_date TEXT NOT NULL,        -- the date the run is for (YYYY-MM-DD)
    stage TEXT NOT NULL,
    status TEXT NOT NULL,          -- running | done | failed | skipped
    started TEXT NOT NULL,         -- UTC ISO
    ended TEXT,
    seconds REAL,
    rows_in INTEGER,
    rows_out INTEGER,
    mlflow_run_id TEXT,
    release_id TEXT,
    detail TEXT,                   -- a one-line summary, or the error
    inputs TEXT,                   -- fingerprint of the files the stage read (jobs.orchestration.runs.fingerprint)
    outputs TEXT,                  -- fingerprint of the files it wrote, when it finished
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    PRIMARY KEY (run_id, stage)
);
CREATE INDEX IF NOT EXISTS stage_runs_by_date ON stage_runs (run_date, stage, started);
"""


class RunLocked(RuntimeError):
    """Another live run holds the lock for this date."""


@dataclass(frozen=True)
class StageRow:
    run_id: str
    run_date: dt.date
    stage: str
    status: str  # running | done | failed | skipped | interrupted (running, holder gone)
    started: str
    ended: str | None
    seconds: float | None
    rows_in: int | None
    rows_out: int | None
    mlflow_run_id: str | None
    release_id: str | None
    detail: str | None
    pid: int
    inputs: str | None = None
    outputs: str | None = None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # another machine's process: it cannot be checked from here, so it is not declared dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the ledger database for one transaction: committed on success, rolled back on error."""
    db = sqlite3.connect(path, timeout=30)
    try:
        with db:
            yield db
    finally:
        db.close()


class Ledger:
    """The run ledger under ``runs_dir`` (created on first use)."""

    def __init__(self, runs_dir: Path) -> None:
        self.path = runs_dir / "ledger.sqlite"
        runs_dir.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(stage_runs)")}
            for column in ("inputs", "outputs"):  # a ledger written before fingerprints were recorded
                if column not in columns:
                    db.execute(f"ALTER TABLE stage_runs ADD COLUMN {column} TEXT")

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)

    def start(self, run_id: str, run_date: dt.date, stage: str, inputs: str | None = None) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO stage_runs (run_id, run_date, stage, status, started, pid, host, inputs) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, str(run_date), stage, _now(), os.getpid(), socket.gethostname(), inputs),
            )

    def finish(
        self,
        run_id: str,
        stage: str,
        status: str,
        *,
        seconds: float,
        rows_in: int | None = None,
        rows_out: int | None = None,
        mlflow_run_id: str | None = None,
        release_id: str | None = None,
        detail: str | None = None,
        outputs: str | None = None,
    ) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE stage_runs SET status = ?, ended = ?, seconds = ?, rows_in = ?, rows_out = ?, "
                "mlflow_run_id = ?, release_id = ?, detail = ?, outputs = ? WHERE run_id = ? AND stage = ?",
                (status, _now(), seconds, rows_in, rows_out, mlflow_run_id, release_id, detail, outputs, run_id, stage),
            )

    def skip(self, run_id: str, run_date: dt.date, stage: str, why: str) -> None:
        with self._connect() as db:
            now = _now()
            db.execute(
                "INSERT OR REPLACE INTO stage_runs (run_id, run_date, stage, status, started, ended, seconds, "
                "detail, pid, host) VALUES (?, ?, ?, 'skipped', ?, ?, 0, ?, ?, ?)",
                (run_id, str(run_date), stage, now, now, why, os.getpid(), socket.gethostname()),
            )

    def done(self, run_date: dt.date, stage: str) -> StageRow | None:
        """The latest completed attempt of ``stage`` for ``run_date``, if its latest attempt completed."""
        rows = [r for r in self.rows(run_date=run_date) if r.stage == stage and r.status != "skipped"]
        return rows[0] if rows and rows[0].status == "done" else None

    def up_to_date(
        self, run_date: dt.date, stage: str, inputs: str | None = None, outputs: str | None = None
    ) -> StageRow | None:
        """The completed attempt of ``stage`` that makes running it again unnecessary: its latest attempt for
        ``run_date`` completed, read the same input files (``inputs``, a :func:`fingerprint`, when given), left the
        output files as they are now (``outputs``: no other run has rewritten them since), and started after every
        earlier stage last completed. Else None."""
        done = self.done(run_date, stage)
        if done is None or (inputs is not None and done.inputs != inputs):
            return None
        if outputs is not None and done.outputs != outputs:
            return None
        for earlier in STAGES[: STAGES.index(stage)]:
            before = self.done(run_date, earlier)
            if before is not None and before.ended is not None and before.ended > done.started:
                return None
        return done

    def rows(self, *, run_date: dt.date | None = None, limit: int | None = None) -> list[StageRow]:
        """Stage attempts, newest first; a ``running`` one whose process is gone reads as ``interrupted``."""
        query = "SELECT * FROM stage_runs" + (" WHERE run_date = ?" if run_date else "")
        query += " ORDER BY started DESC, rowid DESC" + (f" LIMIT {int(limit)}" if limit else "")
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            raw = db.execute(query, (str(run_date),) if run_date else ()).fetchall()
        out = []
        for r in raw:
            status = r["status"]
            if status == "running" and not _alive(r["pid"], r["host"]):
                status = "interrupted"
            out.append(
                StageRow(
                    run_id=r["run_id"],
                    run_date=dt.date.fromisoformat(r["run_date"]),
                    stage=r["stage"],
                    status=status,
                    started=r["started"],
                    ended=r["ended"],
                    seconds=r["seconds"],
                    rows_in=r["rows_in"],
                    rows_out=r["rows_out"],
                    mlflow_run_id=r["mlflow_run_id"],
                    release_id=r["release_id"],
                    detail=r["detail"],
                    pid=r["pid"],
                    inputs=r["inputs"],
                    outputs=r["outputs"],
                )
            )
        return out


def fingerprint(*paths: Path, since: dt.date | None = None, until: dt.date | None = None) -> str:
    """A short hash of the files under ``paths`` (name, size, modification time): it changes when a file arrives,
    changes or goes. Hidden and ``_``-prefixed entries (staging, locks, journals) are left out, and so are
    ``date=YYYY-MM-DD`` partitions outside ``since`` .. ``until`` (what a stage does not read)."""
    digest = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in files:
            parts = path.relative_to(root).parts if path != root else ()
            if not path.is_file() or any(p.startswith((".", "_")) for p in parts):
                continue
            day = next((p[5:] for p in parts if p.startswith("date=")), None)
            if day is not None and (since or until):
                try:
                    date = dt.date.fromisoformat(day)
                except ValueError:
                    date = None
                if date is not None and ((since and date < since) or (until and date > until)):
                    continue
            stat = path.stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def new_run_id(run_date: dt.date) -> str:
    return f"{run_date:%Y%m%d}-{uuid.uuid4().hex[:8]}"


@contextmanager
def date_lock(runs_dir: Path, run_date: dt.date) -> Iterator[None]:
    """Hold the run lock of ``run_date`` for the block; raise RunLocked when a live run holds it."""
    folder = runs_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_date}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunLocked(
                f"another run for {run_date} is in progress ({holder}); it holds {path}. Wait for it, or stop it: "
                "the lock is released as soon as its process ends, however it ends"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
