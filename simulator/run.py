"""The simulator's entry point: ``simulate`` builds the model of a run, computes every agent's legs once on the
executors, and writes the ground truth (``var/truth``: segment_people, arrivals, journeys, departures,
segment_phones) and the raw pings (``var/raw/pings``) from them.

``SimulationReport`` says what was written: the run's days, how many journeys started and diverted, how many
pings came from migrants and from everyone else (residents, foreign workers, tourists, drivers), and where the
files are. ``truth_correlation`` (``simulator.truth``)
scores the pipeline's output against the truth afterwards.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from geo.catalogue import Catalogue, load_catalogue
from jobs.schemas import PINGS, TRUTH_ARRIVALS, TRUTH_JOURNEYS
from jobs.settings import JobSettings
from simulator.config import SimulatorConfig, SimulatorConfigError, load_config
from simulator.journeys import legs_frame
from simulator.model import build_model, epoch_seconds
from simulator.official import write_official_files
from simulator.pings import driver_pings, line_points_df, migrant_phone_pings, migrant_pings, resident_pings
from simulator.surges import check_surges, surged_legs
from simulator.truth import (
    truth_arrivals,
    truth_departures,
    truth_journeys,
    truth_segment_people,
    truth_segment_phones,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationReport:
    start: dt.date
    days: int
    scale: str
    seed: int
    routes: tuple[str, ...]
    paths: int
    journeys: int  # journeys started during the simulated days (diverted agents' second journeys included)
    diverted: int  # journeys ended at a closed crossing during the simulated days
    residents: int
    others: int  # foreign workers, tourist beds and drivers: not migrants, on foreign networks
    migrant_pings: int
    resident_pings: int
    seconds: float
    pings_path: Path | None
    truth_path: Path
    skipped_closures: tuple[str, ...] = ()  # closures and surges not run (their route is not simulated)
    # What the official sources would publish of the run (simulator.official), in the counts layouts
    official_paths: tuple[Path, ...] = ()

    @property
    def pings(self) -> int:
        return self.migrant_pings + self.resident_pings

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)


def simulate(
    spark: SparkSession,
    settings: JobSettings,
    start: dt.date,
    days: int | None = None,
    scale: str = "small",
    config_path: Path | None = None,
    catalogue: Catalogue | None = None,
    *,
    config: SimulatorConfig | None = None,
    truth_only: bool = False,
) -> SimulationReport:
    """Simulate ``days`` days from ``start`` (default: the scale's days) and write raw pings and truth.

    Pings (``PINGS``) replace ``settings.raw_dir / "pings"``; the ground truth replaces ``var/truth``.
    ``config`` (already loaded) wins over ``config_path``; ``truth_only`` skips the pings (for quick studies).
    Raises SimulatorConfigError for an unknown scale or a config that does not fit the catalogue.
    """
    began = time.perf_counter()
    cfg = config or load_config(config_path)
    if scale not in cfg.scales:
        raise SimulatorConfigError(f"unknown scale {scale!r}; expected one of {', '.join(cfg.scales)}")
    preset = cfg.scales[scale]
    days = preset.days if days is None else days
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    catalogue = catalogue or load_catalogue()
    skipped_surges = check_surges(cfg, catalogue)
    model = build_model(cfg, preset, catalogue, start, days)
    for note in model.skipped_closures + skipped_surges:
        log.info("skipped: %s", note)

    legs = surged_legs(spark, legs_frame(spark, model), model).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        truth = settings.truth_dir
        truth_segment_people(spark, legs, model).write.mode("overwrite").parquet(str(truth / "segment_people"))
        truth_arrivals(spark, legs, model).write.mode("overwrite").parquet(str(truth / "arrivals"))
        last = start + dt.timedelta(days=days - 1)
        arrivals = spark.read.schema(TRUTH_ARRIVALS).parquet(str(truth / "arrivals")).toPandas()
        official = write_official_files(arrivals, catalogue, start, last, truth / "official")
        truth_departures(spark, legs, model).write.mode("overwrite").parquet(str(truth / "departures"))
        points = line_points_df(spark, model)
        phone_pings = migrant_phone_pings(legs, points, model)
        truth_segment_phones(spark, legs, phone_pings, model).write.mode("overwrite").parquet(
            str(truth / "segment_phones")
        )
        journeys = truth_journeys(spark, legs, model)
        journeys.write.mode("overwrite").parquet(str(truth / "journeys"))
        in_run = spark.read.schema(TRUTH_JOURNEYS).parquet(str(truth / "journeys"))
        first_s, end_s = epoch_seconds(start), epoch_seconds(start + dt.timedelta(days=days))
        run_window = (F.unix_timestamp("departed") >= first_s) & (F.unix_timestamp("departed") < end_s)
        ended_in_run = (F.unix_timestamp("ended") >= first_s) & (F.unix_timestamp("ended") < end_s)
        counts = in_run.agg(
            F.sum(run_window.cast("int")).alias("journeys"),
            F.sum(((F.col("outcome") == "diverted") & ended_in_run).cast("int")).alias("diverted"),
        ).first()

        migrant_n = resident_n = 0
        pings_path = None
        if not truth_only:
            pings_path = settings.raw_dir / "pings"
            observed = Observation("pings")
            pings = (
                migrant_pings(legs, points, model)
                .unionByName(resident_pings(spark, model))
                .unionByName(driver_pings(spark, model, points))
                .observe(
                    observed,
                    F.count(F.lit(1)).alias("rows"),
                    F.coalesce(F.sum(F.col("is_migrant").cast("long")), F.lit(0)).alias("migrant"),
                )
                .select(*[F.col(f.name).cast(f.dataType) for f in PINGS.fields])
            )
            pings.write.mode("overwrite").parquet(str(pings_path))
            migrant_n = int(observed.get["migrant"])
            resident_n = int(observed.get["rows"]) - migrant_n
    finally:
        legs.unpersist()

    return SimulationReport(
        start=start,
        days=days,
        scale=scale,
        seed=cfg.seed,
        routes=tuple(catalogue.route_ids()),
        paths=len(model.paths),
        journeys=int(counts["journeys"] or 0),
        diverted=int(counts["diverted"] or 0),
        residents=len(model.places) * preset.residents_per_place,
        others=model.others(),
        migrant_pings=migrant_n,
        resident_pings=resident_n,
        seconds=time.perf_counter() - began,
        pings_path=pings_path,
        truth_path=truth,
        skipped_closures=model.skipped_closures + skipped_surges,
        official_paths=tuple(official),
    )
