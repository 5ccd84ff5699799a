"""The simulator's randomness: every draw is a pure hash of (seed, stream, ids), never a generator's state.

So the output does not depend on how agents are batched or partitioned: the same config and seed give the same
rows. ``Stream`` numbers the kinds of draw (one constant each keeps them independent); ``hash_uniform`` and its
derivatives draw in numpy on the executors (the agent logic), ``spark_uniform`` and ``spark_normals`` are their
twins as Spark columns (xxhash64) for the pings. Only the departures and the weather, drawn once per route on the
driver, use seeded numpy generators (``simulator.departures``).
"""

from __future__ import annotations

import math

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F


class Stream:
    """Random streams: one constant per kind of draw. Changing a number changes every output row."""

    DEPART, PATH, MCC, DWELL1, DWELL2, SPEED1, SPEED2 = range(1, 8)
    SAIL, DIVERT, HOLD1, HOLD2 = range(8, 12)
    PHONES, SIM_BUY, SIM_WAIT1, SIM_WAIT2 = range(12, 16)
    SLOT_T, KEEP, MISS, PLACE, JITTER, COARSE, ACC, NOISE = range(20, 28)
    HOME, PRESENT, DEVICE_MIGRANT, DEVICE_RESIDENT = range(30, 34)
    NETWORK, ROAD, DEVICE_DRIVER = range(34, 37)
    SURGE = 37


NORMAL_STREAM_GAP = 1000  # a normal pair uses streams s and s + gap

_M64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: a bijection on uint64 with good avalanche.
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, ids: np.ndarray, k: int = 0) -> np.ndarray:
    """Uniform [0, 1) per id, a pure function of (seed, stream, id, k): no state, no dependence on batching."""
    key = (seed * 0x9E3779B97F4A7C15 + stream * 0xC2B2AE3D27D4EB4F + k * 0x165667B19E3779F9) & _M64
    key_arr = _mix64(np.array([key], dtype=np.uint64))[0]
    x = _mix64(np.asarray(ids).astype(np.uint64) ^ key_arr)
    with np.errstate(over="ignore"):
        x = _mix64(x + key_arr)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def hash_normal(seed: int, stream: int, ids: np.ndarray, k: int = 0) -> np.ndarray:
    """Standard normal per id (Box-Muller on two hash uniforms)."""
    u1 = hash_uniform(seed, stream, ids, k)
    u2 = hash_uniform(seed, stream + NORMAL_STREAM_GAP, ids, k)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)


def erlang2(mean: np.ndarray | float, u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """A wait from two uniforms: the sum of two exponentials, rarely near zero, with a long right tail."""
    return -0.5 * np.asarray(mean) * (np.log1p(-u1) + np.log1p(-u2))


def spark_uniform(seed: int, stream: int, *cols: Column) -> Column:
    """Spark twin of the idea: uniform [0, 1) from xxhash64 of (seed, stream, cols) — partition-independent."""
    h = F.xxhash64(F.lit(seed).cast("long"), F.lit(stream).cast("int"), *cols)
    return F.shiftrightunsigned(h, 11).cast("double") * F.lit(2.0**-53)


def spark_normals(seed: int, stream: int, *cols: Column) -> tuple[Column, Column]:
    """Two independent standard normals (Box-Muller) from hashes."""
    radius = F.sqrt(F.lit(-2.0) * F.log(F.lit(1.0) - spark_uniform(seed, stream, *cols)))
    angle = F.lit(2 * math.pi) * spark_uniform(seed, stream + NORMAL_STREAM_GAP, *cols)
    return radius * F.cos(angle), radius * F.sin(angle)
