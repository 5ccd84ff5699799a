"""The catalogue of tables: where each lives (layer and name), its schema and how it is partitioned.

Lake tables live under ``<var>/lake/<layer>/<name>`` as Parquet partitioned by ``partition_by``; the simulator's
truth under ``<var>/truth/<name>``; a release's files under ``<var>/store/releases/<id>/<name>.parquet``. Job code
names a table by its entry here (``jobs.lake.read`` and ``jobs.lake.write`` take it), never by strings, and a
write whose DataFrame does not have the declared columns and types is refused.

Layers: ``bronze`` (accepted input, device-level, short retention), ``quarantine`` (rejected rows with the rule
they broke), ``silver`` (suppressed aggregates), ``gold`` (the series every model reads), ``qa`` (data-quality
figures), ``privacy`` (the differential-privacy budget ledger), ``truth`` (the simulator's ground truth) and
``published`` (what serving reads; only ever made from suppressed data).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from contracts import schemas


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.layer}/{self.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)


BRONZE_PINGS = Table("bronze", "pings", schemas.BRONZE_PINGS, ("date",))
BRONZE_TILES = Table("bronze", "tiles", schemas.BRONZE_TILES, ("date",))
QUARANTINE_PINGS = Table("quarantine", "pings", schemas.QUARANTINE_PINGS, ("run_date",))
QUARANTINE_TILES = Table("quarantine", "tiles", schemas.QUARANTINE_TILES, ("run_date",))
QUARANTINE_FILES = Table("quarantine", "files", schemas.QUARANTINE_FILES, ("run_date",))
QUARANTINE_COUNTS = Table("quarantine", "counts", schemas.QUARANTINE_COUNTS, ("source",))
DENSITY = Table("silver", "density", schemas.DENSITY, ("date", "res"))
DENSITY_HOURLY = Table("silver", "density_hourly", schemas.DENSITY_HOURLY, ("date", "res"))
DENSITY_BY_GROUP = Table("silver", "density_by_group", schemas.DENSITY_BY_GROUP, ("date",))
FLOWS_SEGMENT = Table("silver", "flows_segment", schemas.FLOWS_SEGMENT, ("date",))
FLOWS_CELL = Table("silver", "flows_cell", schemas.FLOWS_CELL, ("date",))
SERIES = Table("gold", "series", schemas.SERIES, ("source",))
PEOPLE = Table("gold", "people", schemas.PEOPLE, ("measure",))
QA_CHECKS = Table("qa", "checks", schemas.QA_CHECKS, ("run_date", "stage"))
PRIVACY_LEDGER = Table("privacy", "ledger", schemas.PRIVACY_LEDGER, ("period",))
TRUTH_SEGMENT_PEOPLE = Table("truth", "segment_people", schemas.TRUTH_SEGMENT_PEOPLE)
TRUTH_ARRIVALS = Table("truth", "arrivals", schemas.TRUTH_ARRIVALS)
TRUTH_JOURNEYS = Table("truth", "journeys", schemas.TRUTH_JOURNEYS)
TRUTH_DEPARTURES = Table("truth", "departures", schemas.TRUTH_DEPARTURES)
TRUTH_SEGMENT_PHONES = Table("truth", "segment_phones", schemas.TRUTH_SEGMENT_PHONES)
PUBLISHED_FORECAST = Table("published", "forecasts", schemas.PUBLISHED_FORECAST)
PUBLISHED_HISTORY = Table("published", "history", schemas.PUBLISHED_HISTORY)
PUBLISHED_CELLS = Table("published", "cells", schemas.PUBLISHED_CELLS)
PUBLISHED_TOTALS = Table("published", "totals", schemas.PUBLISHED_TOTALS)

CATALOGUE: dict[str, Table] = {
    t.key: t
    for t in (
        BRONZE_PINGS,
        BRONZE_TILES,
        QUARANTINE_PINGS,
        QUARANTINE_TILES,
        QUARANTINE_FILES,
        QUARANTINE_COUNTS,
        DENSITY,
        DENSITY_HOURLY,
        DENSITY_BY_GROUP,
        FLOWS_SEGMENT,
        FLOWS_CELL,
        SERIES,
        PEOPLE,
        QA_CHECKS,
        PRIVACY_LEDGER,
        TRUTH_SEGMENT_PEOPLE,
        TRUTH_ARRIVALS,
        TRUTH_JOURNEYS,
        TRUTH_DEPARTURES,
        TRUTH_SEGMENT_PHONES,
        PUBLISHED_FORECAST,
        PUBLISHED_HISTORY,
        PUBLISHED_CELLS,
        PUBLISHED_TOTALS,
    )
}
