"""The run ledger's rules, on the ledger alone (the pipeline's use of it: test_end_to_end, test_faults)."""

import datetime as dt
import subprocess
import sys

from jobs.orchestration.runs import STAGES, Ledger, new_run_id

DAY = dt.date(2025, 6, 30)


def _done(ledger: Ledger, run_id: str, stage: str, **counts) -> None:
    ledger.start(run_id, DAY, stage)
    ledger.finish(run_id, stage, "done", seconds=1.0, **counts)


def test_a_done_stage_is_up_to_date_until_a_stage_before_it_runs_again(tmp_path):
    ledger = Ledger(tmp_path)
    first = new_run_id(DAY)
    for stage in STAGES:
        _done(ledger, first, stage, rows_in=10, rows_out=9)
    assert all(ledger.up_to_date(DAY, s) is not None for s in STAGES)
    # Late data: ingest done again; everything after it is stale, ingest itself is fresh.
    second = new_run_id(DAY)
    _done(ledger, second, "ingest")
    assert ledger.up_to_date(DAY, "ingest").run_id == second
    assert [s for s in STAGES if ledger.up_to_date(DAY, s) is None] == list(STAGES[1:])
    assert ledger.up_to_date(DAY + dt.timedelta(days=1), "ingest") is None  # another date: nothing done


def test_failed_and_skipped_attempts(tmp_path):
    ledger = Ledger(tmp_path)
    run = new_run_id(DAY)
    _done(ledger, run, "ingest")
    again = new_run_id(DAY)
    ledger.skip(again, DAY, "ingest", "done by run x")
    assert ledger.up_to_date(DAY, "ingest").run_id == run  # a skip is not an attempt
    third = new_run_id(DAY)
    ledger.start(third, DAY, "ingest")
    ledger.finish(third, "ingest", "failed", seconds=0.5, detail="OSError: disk full")
    assert ledger.up_to_date(DAY, "ingest") is None  # the latest attempt failed: do it again
    latest = ledger.rows(run_date=DAY)[0]
    assert (latest.status, latest.detail) == ("failed", "OSError: disk full")


def test_a_running_attempt_whose_process_is_gone_reads_interrupted(tmp_path):
    code = (
        "import datetime as dt, pathlib; from jobs.orchestration.runs import Ledger;"
        f"Ledger(pathlib.Path({str(tmp_path)!r})).start('r1', dt.date(2025, 6, 30), 'aggregate')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    ledger = Ledger(tmp_path)
    [row] = ledger.rows(run_date=DAY)
    assert (row.stage, row.status) == ("aggregate", "interrupted")
    ledger.start("r2", DAY, "series")  # this process is alive: still running
    assert ledger.rows(run_date=DAY)[0].status == "running"


def test_a_stage_whose_output_was_rewritten_since_is_not_up_to_date(tmp_path):
    ledger = Ledger(tmp_path)
    run = new_run_id(DAY)
    ledger.start(run, DAY, "series", inputs="in-1")
    ledger.finish(run, "series", "done", seconds=1.0, outputs="out-1")
    assert ledger.up_to_date(DAY, "series", "in-1", "out-1").run_id == run
    assert ledger.up_to_date(DAY, "series", "in-2", "out-1") is None  # late data
    assert ledger.up_to_date(DAY, "series", "in-1", "out-2") is None  # another date's run rewrote the output


def test_fingerprints_change_with_files_in_the_window_only(tmp_path):
    from jobs.orchestration.runs import fingerprint

    table = tmp_path / "table"
    for day in ("2025-06-01", "2025-06-20"):
        (table / f"date={day}").mkdir(parents=True)
        (table / f"date={day}" / "part-0.parquet").write_bytes(b"x")
    (table / "_lock").write_text("")
    window = {"since": dt.date(2025, 6, 10), "until": dt.date(2025, 6, 30)}
    before = fingerprint(table, **window)
    (table / "date=2025-06-01" / "part-1.parquet").write_bytes(b"y")  # outside the window
    (table / "_staging").mkdir()  # hidden from readers
    assert fingerprint(table, **window) == before
    (table / "date=2025-06-20" / "part-1.parquet").write_bytes(b"late")
    assert fingerprint(table, **window) != before


def test_the_pipeline_table_runs_the_ledgers_stages_in_the_ledgers_order():
    from jobs.orchestration.pipeline import PIPELINE

    assert tuple(stage.name for stage in PIPELINE) == STAGES
