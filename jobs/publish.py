"""Publish: forecasts → ``store/releases/<release_id>/`` (immutable) and ``store/CURRENT`` (atomic pointer).

The release id is the run date plus a hash of the forecast values, so re-running a date that produces the
same forecasts re-points CURRENT at the existing release instead of writing a second copy. A release is
written to a temporary folder and renamed into place, so a crash never leaves a half-written release, and
CURRENT is replaced with ``os.replace``, so readers see the old or the new release, never neither.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from forecasting.selection import FORECAST_COLUMNS
from forecasting.tracking import RunInfo
from jobs.schemas import PUBLISHED_FORECAST, arrow_schema

MANIFEST = "manifest.json"
FORECASTS = "forecasts.parquet"
CURRENT = "CURRENT"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Release:
    release_id: str
    path: Path
    created: bool  # False when an identical release already existed


def release_id_for(as_of: dt.date, forecasts: pd.DataFrame) -> str:
    """``YYYYMMDD-<hash>`` of the forecast values (independent of run ids and row order)."""
    values = forecasts[FORECAST_COLUMNS].sort_values(["series_id", "ds"]).reset_index(drop=True)
    digest = hashlib.sha256(pd.util.hash_pandas_object(values, index=False).values.tobytes()).hexdigest()
    return f"{as_of:%Y%m%d}-{digest[:12]}"


def published_table(forecasts: pd.DataFrame, keys: pd.DataFrame, run: RunInfo, release_id: str) -> pa.Table:
    """The published forecast table: forecasts with their place in the hierarchy and their lineage."""
    missing = set(forecasts["series_id"]) - set(keys["series_id"])
    if missing:
        raise ValueError(f"forecasts for series outside the hierarchy: {sorted(missing)[:5]}")
    table = forecasts.merge(keys, on="series_id", how="left").assign(
        ds=lambda d: pd.to_datetime(d["ds"]).dt.date,
        run_id=run.run_id,
        model_version=str(run.model_version),
        release_id=release_id,
    )
    schema = arrow_schema(PUBLISHED_FORECAST)
    return pa.Table.from_pandas(table[schema.names], schema=schema, preserve_index=False)


def publish(
    store_dir: Path,
    forecasts: pd.DataFrame,
    keys: pd.DataFrame,
    *,
    as_of: dt.date,
    run: RunInfo,
    min_devices: int,
    manifest_extra: dict | None = None,
) -> Release:
    """Write a release (unless an identical one exists) and point CURRENT at it.

    The manifest records the suppression threshold the data was made with; serving refuses a release
    whose manifest does not declare suppression at or above the privacy floor.
    """
    release_id = release_id_for(as_of, forecasts)
    releases = store_dir / "releases"
    final = releases / release_id
    created = not final.exists()
    if created:
        releases.mkdir(parents=True, exist_ok=True)
        tmp = releases / f".tmp-{release_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        table = published_table(forecasts, keys, run, release_id)
        pq.write_table(table, tmp / FORECASTS)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "release_id": release_id,
            "as_of": str(as_of),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_id": run.run_id,
            "model_version": str(run.model_version),
            "rows": table.num_rows,
            "series": int(forecasts["series_id"].nunique()),
            "privacy": {"suppressed": True, "min_devices": min_devices},
            **(manifest_extra or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.rename(tmp, final)
    point_current(store_dir, release_id)
    return Release(release_id=release_id, path=final, created=created)


def point_current(store_dir: Path, release_id: str) -> None:
    """Atomically make ``release_id`` the current release."""
    if not (store_dir / "releases" / release_id / MANIFEST).is_file():
        raise FileNotFoundError(f"release {release_id} is not in {store_dir / 'releases'}")
    tmp = store_dir / f".{CURRENT}.tmp-{os.getpid()}"
    tmp.write_text(release_id + "\n")
    os.replace(tmp, store_dir / CURRENT)
