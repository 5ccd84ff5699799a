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


# H3 index layout (64 bits): 1 reserved, 4 mode, 3 reserved, 4 resolution (bits 52-55), 7 base cell, then 15
# digits of 3 bits, digit 1 first; digits finer than the cell's resolution are all ones (7).
_RES_SHIFT = 52
_RES_MASK = 0xF << _RES_SHIFT


def parent_bits(res: int) -> tuple[int, int]:
    """``(keep, set)`` with ``parent = (cell & keep) | set`` for any H3 cell at resolution ``res`` or finer.

    The parent at ``res`` keeps the base cell and digits 1..res, takes ``res`` as its resolution and sets the
    finer digits to 7; both masks fit a signed int64, so the same two numbers work in numpy and in Spark SQL.
    """
    if not 0 <= res <= 15:
        raise ValueError(f"H3 resolution must be 0..15, got {res}")
    finer_digits = (1 << (3 * (15 - res))) - 1
    keep = (2**63 - 1) & ~_RES_MASK & ~finer_digits
    return keep, (res << _RES_SHIFT) | finer_digits


def cells_to_parents(cells: np.ndarray, res: int) -> np.ndarray:
    """The parents (int64) at ``res`` of H3 cells (int64) at resolution ``res`` or finer."""
    keep, set_bits = parent_bits(res)
    return (np.asarray(cells, dtype=np.int64) & keep) | set_bits
