"""Retention: device-level data (bronze pings and quarantined pings) is deleted once older than its retention.

design.md: device ids never leave bronze, and bronze is deleted after its retention period. Quarantined pings
carry device ids too, so they go with the same clock. The cut-off is the first day of the
default window of a nightly run (run date − retention + 1), so that window is kept; the stage runs after
every stage that reads bronze (aggregate, flows), so a longer first run (``--since``) is aggregated first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from jobs.lake import purge_partitions
from jobs.settings import JobSettings


@dataclass(frozen=True)
class RetentionReport:
    cutoff: dt.date  # partitions dated before this day were deleted
    bronze_days: tuple[str, ...]
    quarantine_days: tuple[str, ...]


def run(settings: JobSettings, run_date: dt.date) -> RetentionReport:
    """Delete bronze ping days and quarantined-ping run days older than ``bronze_retention_days``."""
    cutoff = run_date - dt.timedelta(days=settings.bronze_retention_days - 1)
    bronze = purge_partitions(settings.lake("bronze", "pings"), "date", cutoff)
    quarantine = purge_partitions(settings.lake("quarantine", "pings"), "run_date", cutoff)
    return RetentionReport(cutoff, tuple(bronze), tuple(quarantine))
