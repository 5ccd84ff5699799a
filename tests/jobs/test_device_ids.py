"""Property: device ids never leave bronze — no column and no value of silver or gold carries one."""

import datetime as dt

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from jobs.schemas import PINGS
from jobs.stages import aggregate, flows, ingest, series

RUN = dt.date(2025, 3, 10)
# Agadez, on the Central Mediterranean route's first segment: enough devices there publish cells and series.
AGADEZ = (16.9742, 7.9865)

device_ids = st.text(alphabet="abcdef0123456789-", min_size=6, max_size=16)


@hsettings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
    wanted = set(ids)
    for path in published_files:
        table = pq.read_table(path)
        assert "device_id" not in table.column_names, path
        for name in table.column_names:
            if table.schema.field(name).type in ("string", "large_string"):
                assert not wanted & set(table[name].to_pylist()), f"a device id in {path}:{name}"
        # Partition folder names are values too.
        assert not any(part.split("=", 1)[-1] in wanted for part in path.parts), path
