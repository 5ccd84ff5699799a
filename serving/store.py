"""Reading the published store: ``store/CURRENT`` → ``store/releases/<id>/{manifest.json, forecasts.parquet}``.

This is the only way the API reads data, and it refuses any release whose manifest does not declare that it
was made from suppressed aggregates at or above the privacy floor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from serving.settings import MIN_DEVICES_FLOOR

REQUIRED_COLUMNS = (
    "series_id",
    "level",
    "route_id",
    "segment_id",
    "freq",
    "source",
    "ds",
    "yhat",
    "lo80",
    "hi80",
    "lo95",
    "hi95",
    "model",
    "run_id",
    "model_version",
    "release_id",
)


class StoreError(RuntimeError):
    """The store is missing, incomplete or not publishable."""


class NoRelease(StoreError):
    """Nothing has been published yet."""


class UnsuppressedRelease(StoreError):
    """A release that does not prove it was suppressed; never served."""


@dataclass(frozen=True)
class Release:
    release_id: str
    manifest: dict
    forecasts: pd.DataFrame  # REQUIRED_COLUMNS, ds as datetime.date

    def horizon(self, source: str) -> int:
        """Periods ahead that every series of ``source`` covers (0 when the source is absent)."""
        rows = self.forecasts[self.forecasts["source"] == source]
        return int(rows.groupby("series_id").size().min()) if len(rows) else 0

    def sources_by_route(self) -> dict[str, list[str]]:
        """Route id → the sources with forecasts for it, sorted."""
        pairs = self.forecasts[["route_id", "source"]].dropna().drop_duplicates()
        return {r: sorted(g["source"]) for r, g in pairs.groupby("route_id")}


def current_release_id(store_dir: Path) -> str:
    pointer = store_dir / "CURRENT"
    if not pointer.is_file():
        raise NoRelease(f"no release published in {store_dir} (no CURRENT); run `routecast nightly` first")
    release_id = pointer.read_text().strip()
    if not release_id or "/" in release_id or release_id.startswith("."):
        raise StoreError(f"{pointer} holds an invalid release id {release_id!r}")
    return release_id


def check_privacy(manifest: dict, where: Path) -> None:
    """Refuse a manifest that does not declare suppression at or above the floor."""
    privacy = manifest.get("privacy") or {}
    k = privacy.get("min_devices")
    if privacy.get("suppressed") is not True or not isinstance(k, int) or k < MIN_DEVICES_FLOOR:
        raise UnsuppressedRelease(
            f"{where}: release does not declare suppression with min_devices >= {MIN_DEVICES_FLOOR} "
            f"(privacy={privacy!r}); refusing to serve it"
        )


def load_release(store_dir: Path, release_id: str | None = None) -> Release:
    """Load a release (the current one by default), checking its manifest and columns."""
    release_id = release_id or current_release_id(store_dir)
    folder = store_dir / "releases" / release_id
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise StoreError(f"release {release_id}: {manifest_path} missing")
    manifest = json.loads(manifest_path.read_text())
    check_privacy(manifest, manifest_path)
    table = pq.read_table(folder / "forecasts.parquet")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise StoreError(f"release {release_id}: forecasts.parquet lacks columns {missing}")
    forecasts = table.select(list(REQUIRED_COLUMNS)).to_pandas()
    return Release(release_id=release_id, manifest=manifest, forecasts=forecasts)
