"""Device ids never leave bronze: no column and no value of silver, gold or a published release carries one.

A property over generated ids (their shape and number) through the Spark stages, and every id of a whole published
run (thousands, ``published_run``) searched for in everything it wrote past bronze, the release included.
"""

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from jobs.schemas import PINGS
from jobs.stages import aggregate, flows, ingest, series
from tests.published import PUBLISHED

RUN = dt.date(2025, 3, 10)
# Agadez, on the Central Mediterranean route's first segment: enough devices there publish cells and series.
AGADEZ = (16.9742, 7.9865)

device_ids = st.text(alphabet="abcdef0123456789-", min_size=6, max_size=16)


@hsettings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(device_ids, min_size=16, max_size=40, unique=True), seed=st.integers(0, 1000))
def test_no_device_id_reaches_silver_or_gold(spark, tmp_path_factory, catalogue, ids, seed):
    from jobs.settings import JobSettings

    settings = JobSettings(var_dir=tmp_path_factory.mktemp("var"))
    rows = []
    for i, device in enumerate(ids):
        for k in range(3):  # moving north along the segment during the day
            ts = dt.datetime.combine(RUN, dt.time(8 + k, (seed + i) % 60))
            rows.append((device, ts, AGADEZ[0] + 0.05 * k, AGADEZ[1] + 0.001 * (i % 7), None, "614"))
    raw = settings.raw_dir / "pings"
    spark.createDataFrame(rows, PINGS).write.parquet(str(raw))

    ingest.run(spark, settings, RUN, raw)
    assert aggregate.run(spark, settings, RUN).published > 0
    flows.run(spark, settings, RUN, catalogue=catalogue)
    series.run(spark, settings, RUN, catalogue)

    published_files = [p for layer in ("silver", "gold") for p in (settings.lake_dir / layer).rglob("*.parquet")]
    assert published_files
    assert_no_id_in(published_files, set(ids))


def assert_no_id_in(paths: list[Path], ids: set[str]) -> None:
    """No Parquet file of ``paths`` has a ``device_id`` column, a string value in ``ids`` or a folder named by one."""
    for path in paths:
        table = pq.read_table(path)
        assert "device_id" not in table.column_names, path
        for name in table.column_names:
            if table.schema.field(name).type in ("string", "large_string"):
                assert not ids & set(table[name].to_pylist()), f"a device id in {path}:{name}"
        # Partition folder names are values too.
        assert not any(part.split("=", 1)[-1] in ids for part in path.parts), path


@PUBLISHED
def test_no_device_id_of_a_published_run_is_past_bronze(published_run):
    settings = published_run.settings
    ids = set(pq.read_table(published_run.raw, columns=["device_id"])["device_id"].drop_null().to_pylist())
    assert len(ids) > 1000
    with pytest.raises(AssertionError, match="device"):  # the search finds them where they are
        assert_no_id_in(list((settings.lake_dir / "bronze").rglob("*.parquet")), ids)
    release = list(settings.store_dir.rglob("*.parquet"))
    assert release
    assert_no_id_in(
        [*(p for layer in ("silver", "gold") for p in (settings.lake_dir / layer).rglob("*.parquet")), *release], ids
    )
    for manifest in settings.store_dir.rglob("*.json"):
        text = manifest.read_text()
        assert not any(i in text for i in ids), manifest
