"""Vectorised point → H3 cell conversion (h3ronpy), for bulk work such as Spark Arrow UDFs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from h3ronpy.vector import coordinates_to_cells


def latlng_to_cells(lat: np.ndarray, lon: np.ndarray, res: int) -> np.ndarray:
    """H3 cells (int64) of WGS84 points at resolution ``res``; coordinates must be valid (checked upstream)."""
    if not 0 <= res <= 15:
        raise ValueError(f"H3 resolution must be 0..15, got {res}")
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    cells = pa.array(coordinates_to_cells(lat, lon, res))
    # H3 indexes use 63 bits, so the UInt64 values fit int64 (Spark's LongType) unchanged.
    return cells.to_numpy(zero_copy_only=False).astype(np.int64)
