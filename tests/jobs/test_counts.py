"""Official counts: the real reference files, every row rule and file error on tiny files, and the lake writes.

Figures on the real files were counted by hand from the files in shared/data/real (see each test).
"""

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from contracts import tables
from jobs.lake import read_checks, read_table
from jobs.schemas import QUARANTINE_COUNTS, SERIES
from jobs.stages.counts import CountsFileError, CountsText, SeriesSpan, ingest_counts, read_counts, transform
from tests.conftest import SHARED_DATA

RUN = dt.date(2025, 9, 1)
D = dt.date


def real(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"real data absent: {path} (the shared folder beside the repository)")
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def values(batch, route_id: str) -> dict[dt.date, float]:
    rows = batch.series[batch.series["route_id"] == route_id]
    return dict(zip(rows["ds"], rows["y"], strict=True))


def quarantined(batch) -> list[tuple[int, str]]:
    return list(zip(batch.quarantine["line"], batch.quarantine["reason"], strict=True))


# --- the real files ------------------------------------------------------------------------------------------

CATALOGUE_FRONTEX_ROUTES = [
    "central_mediterranean",
    "eastern_borders",
    "eastern_mediterranean",
    "western_african",
    "western_balkans",
    "western_mediterranean",
]


def test_frontex_by_route_maps_six_routes_and_quarantines_the_three_the_catalogue_lacks(catalogue):
    batch = read_counts(real("frontex_ibc_monthly_by_route.csv"), "frontex", catalogue)
    report = batch.report
    # 9 routes x 184 months (2009-01 .. 2024-04) = 1656 rows; Black Sea, Circular Albania-Greece and Other
    # are in no catalogue route: 3 x 184 = 552 quarantined, 6 x 184 = 1104 accepted.
    assert (report.rows_in, report.accepted, report.quarantined, report.duplicates) == (1656, 1104, 552, 0)
    assert report.reasons == {"unknown_route": 552} and report.balanced()
    assert report.unknown_routes == {
        "Black Sea Route": 184,
        "Circular Route from Albania to Greece": 184,
        "Other": 184,
    }
    assert list(report.series) == CATALOGUE_FRONTEX_ROUTES
    assert set(report.series.values()) == {SeriesSpan(D(2009, 1, 1), D(2024, 4, 1), 184)}
    assert report.gaps == {} and report.partial == {} and report.zero_filled == 0
    # Line 3: 2009-01-01,Central Mediterranean Route,1491,25; line 735: 2015-10-01,Eastern Med...,216260;
    # the file writes Western African's 29 empty months as explicit zeros.
    assert values(batch, "central_mediterranean")[D(2009, 1, 1)] == 1491
    assert values(batch, "eastern_mediterranean")[D(2015, 10, 1)] == 216260
    assert sum(y == 0 for y in values(batch, "western_african").values()) == 29
    assert batch.series["series_id"].iloc[0] == "frontex/route:central_mediterranean"
    assert set(batch.series["freq"]) == {"M"} and set(batch.series["level"]) == {"route"}
    assert quarantined(batch)[0] == (2, "unknown_route")  # line 2: 2009-01-01,Black Sea Route,0,0


def test_frontex_detail_sums_to_the_by_route_file_with_the_unstored_zero_months(catalogue):
    by_route = read_counts(real("frontex_ibc_monthly_by_route.csv"), "frontex", catalogue)
    detail = read_counts(real("frontex_ibc_monthly_detail.csv"), "frontex", catalogue)
    report = detail.report
    # 31882 rows; Circular Albania-Greece 1137 + Black Sea 73 + Other 42 = 1252 have no catalogue route.
    assert (report.rows_in, report.accepted, report.quarantined, report.duplicates) == (31882, 30630, 1252, 0)
    assert report.unknown_routes == {"Black Sea Route": 73, "Circular Route from Albania to Greece": 1137, "Other": 42}
    # Frontex stores no zero cells: Western African's 29 zero months and Central Med's one are filled in.
    assert report.zero_filled == 30 and report.gaps == {}
    for route_id in CATALOGUE_FRONTEX_ROUTES:
        assert values(detail, route_id) == values(by_route, route_id), route_id


def test_uk_small_boats_is_one_complete_daily_channel_series(catalogue):
    batch = read_counts(real("uk_small_boats_daily.csv"), "uk-channel", catalogue)
    report = batch.report
    assert (report.rows_in, report.accepted, report.quarantined, report.duplicates) == (2800, 2800, 0, 0)
    assert report.series == {"channel": SeriesSpan(D(2018, 1, 1), D(2025, 8, 31), 2800)} and report.gaps == {}
    channel = values(batch, "channel")
    assert channel[D(2022, 8, 22)] == 1137  # line 1696
    assert channel[D(2022, 9, 3)] == 1305  # the busiest day in the file
    assert sum(channel.values()) == 180141  # the migrants_arrived column summed
    assert batch.series["series_id"].iloc[0] == "uk-channel/route:channel" and set(batch.series["freq"]) == {"D"}


def test_iom_dtm_sums_countries_per_route_and_reports_the_months_a_country_is_missing(catalogue):
    batch = read_counts(real("iom_dtm_med_arrivals.csv"), "iom-dtm", catalogue)
    report = batch.report
    # 839 rows: 73 annual totals + 1 "single_value_unclear" are not monthly; the 108 monthly ESP rows are the
    # sum of ESP-WMR (western_mediterranean) and ESP-WAAR (western_african), so counting them would count
    # those people twice. 839 - 74 - 108 = 657 accepted.
    assert (report.rows_in, report.accepted, report.quarantined, report.duplicates) == (839, 657, 182, 0)
    assert report.reasons == {"not_monthly": 74, "total_of_mapped_parts": 108}
    assert report.unknown_routes == {}
    assert report.series == {
        "central_mediterranean": SeriesSpan(D(2014, 1, 1), D(2023, 12, 1), 120),  # ITA + MLT
        "eastern_mediterranean": SeriesSpan(D(2015, 1, 1), D(2023, 12, 1), 108),  # GRC + CYP + BGR
        "western_african": SeriesSpan(D(2017, 1, 1), D(2023, 12, 1), 84),  # ESP-WAAR (78 rows + 6 derived)
        "western_mediterranean": SeriesSpan(D(2015, 1, 1), D(2023, 12, 1), 108),  # ESP-WMR
    }
    # IOM stores no ESP-WAAR row in 6 months (2017-03 ...) where ESP equals ESP-WMR: derived as 0, not a gap.
    assert report.derived == {
        "western_african": (D(2017, 3, 1), D(2017, 5, 1), D(2017, 6, 1), D(2017, 7, 1), D(2018, 3, 1), D(2019, 7, 1))
    }
    assert all(values(batch, "western_african")[d] == 0 for d in report.derived["western_african"])
    assert report.gaps == {}
    # ITA, GRC and ESP-WMR report every month; MLT misses 45 months of its 2015-07 .. 2023-12 span, and CYP 13
    # and BGR 1 (2015-10): those route-months are partial sums.
    assert {route: len(dates) for route, dates in report.partial.items()} == {
        "central_mediterranean": 45,
        "eastern_mediterranean": 14,
    }
    assert report.partial["eastern_mediterranean"][:2] == (D(2015, 10, 1), D(2015, 12, 1))
    # 2020-07: ITA 7067 + MLT 267 (lines 738, 811); GRC 574 + BGR 395 (lines 601, 59), CYP missing.
    assert values(batch, "central_mediterranean")[D(2020, 7, 1)] == 7067 + 267
    assert values(batch, "eastern_mediterranean")[D(2020, 7, 1)] == 574 + 395
    assert D(2020, 7, 1) in report.partial["eastern_mediterranean"]
    assert D(2020, 7, 1) not in report.partial["central_mediterranean"]
    assert quarantined(batch)[0] == (101, "not_monthly")  # 2014-09-01,CYP,345,single_value_unclear


def test_a_real_file_lands_in_the_lake_with_its_quarantine_and_checks(spark, settings, catalogue):
    report = ingest_counts(
        spark, settings, real("frontex_ibc_monthly_by_route.csv"), "frontex", catalogue, run_date=RUN
    )
    gold = read_table(spark, settings.lake(tables.SERIES), SERIES)
    assert gold.where(F.col("source") == "frontex").count() == 1104
    row = gold.where((F.col("route_id") == "central_mediterranean") & (F.col("ds") == D(2009, 1, 1))).first()
    assert (row.series_id, row.y, row.freq, row.level, row.segment_id) == (
        "frontex/route:central_mediterranean",
        1491.0,
        "M",
        "route",
        None,
    )
    bad = read_table(spark, settings.lake(tables.QUARANTINE_COUNTS), QUARANTINE_COUNTS).orderBy("line").first()
    assert (bad.line, bad.raw, bad.reason, bad.file) == (
        2,
        "2009-01-01,Black Sea Route,0,0",
        "unknown_route",
        "frontex_ibc_monthly_by_route.csv",
    )
    checks = read_checks(spark, settings.lake(tables.QA_CHECKS), RUN, "counts:frontex")
    assert checks["rows_in"] == 1656 and checks["accepted"] == 1104 and checks["quarantined_unknown_route"] == 552
    assert checks["periods_written"] == 1104 and checks["gap_periods"] == 0
    assert report.summary_lines()[0] == (
        "frontex_ibc_monthly_by_route.csv (frontex, one value per month): "
        "1656 rows in = 1104 accepted + 552 quarantined + 0 duplicates"
    )


# --- row rules -----------------------------------------------------------------------------------------------

GENERIC = """date,route,count
2024-01-01,central_mediterranean,10
2024-01-02,Central Mediterranean Route,11
2024-13-01,channel,5
01/02/2024,channel,5
2024-01-03,channel,
2024-01-03,channel,2.5
2024-01-03,channel,-1
2024-01-03,atlantis,4
2024-01-04,channel,7
2024-01-04,channel,7
2024-01-05,channel,1
2024-01-05,channel,2
2024-01-06,channel

2024-01-06,channel,3
"""


def test_every_row_rule_quarantines_with_its_reason_and_line(tmp_path, catalogue):
    batch = read_counts(write(tmp_path, "counts.csv", GENERIC), "generic", catalogue)
    assert quarantined(batch) == [
        (4, "bad_date"),  # month 13
        (5, "bad_date"),  # not YYYY-MM-DD
        (6, "missing_count"),
        (7, "non_integer_count"),
        (8, "negative_count"),
        (9, "unknown_route"),
        (12, "conflicting_duplicate"),  # 2024-01-05: 1 and 2, both out
        (13, "conflicting_duplicate"),
        (14, "wrong_field_count"),
    ]
    assert batch.quarantine["raw"].iloc[0] == "2024-13-01,channel,5"
    report = batch.report
    # 14 rows (line 15 is blank): lines 2, 3, 10, 16 accepted; line 11 repeats line 10 exactly.
    assert (report.rows_in, report.accepted, report.quarantined, report.duplicates) == (14, 4, 9, 1)
    assert report.balanced() and report.unknown_routes == {"atlantis": 1}
    # A route id and an official name both name central_mediterranean.
    assert values(batch, "central_mediterranean") == {D(2024, 1, 1): 10, D(2024, 1, 2): 11}
    assert values(batch, "channel") == {D(2024, 1, 4): 7, D(2024, 1, 6): 3}
    assert report.gaps == {"channel": (D(2024, 1, 5),)}  # not invented: reported
    assert set(batch.series["source"]) == {"generic"} and set(batch.series["freq"]) == {"D"}


def test_transform_checks_text_without_a_file(catalogue):
    text = CountsText(
        "weekly.csv",
        ("date", "route", "count"),
        ((2, "2024-01-01,channel,4"), (3, "2024-01-08,channel,4"), (3, "2024-01-08,channel,4"), (5, "2024-01-10,x,1")),
    )
    batch = transform(text, "generic", catalogue, freq="W")
    assert values(batch, "channel") == {D(2024, 1, 1): 4, D(2024, 1, 8): 4}
    assert quarantined(batch) == [(5, "off_grid_date")]
    assert set(batch.quarantine["file"]) == {"weekly.csv"} and batch.report.file == "weekly.csv"
    assert (batch.report.rows_in, batch.report.duplicates) == (4, 1) and batch.report.balanced()
    with pytest.raises(CountsFileError, match="counts file weekly.csv: a header but no rows"):
        transform(CountsText("weekly.csv", text.header, ()), "generic", catalogue)
    with pytest.raises(CountsFileError, match="counts file weekly.csv: column 'route' missing"):
        transform(CountsText("weekly.csv", ("date", "count"), text.lines), "generic", catalogue)


LANDINGS = """date,route,crossing_point,count
2025-05-01,central_mediterranean,porto_empedocle,300
2025-05-01,Central Mediterranean,pozzallo,40
2025-05-01,central_mediterranean,lampedusa,120
2025-05-01,central_mediterranean,zuwara,9
2025-05-01,central_mediterranean,dover,3
2025-06-01,central_mediterranean,porto_empedocle,310
2025-06-01,central_mediterranean,porto_empedocle,310
2025-06-01,central_mediterranean,pozzallo,-1
2025-06-01,atlantis,porto_empedocle,5
2025-07-01,central_mediterranean,pozzallo,
2025-08-01,central_mediterranean,porto_empedocle,280
"""


def test_landings_are_one_monthly_series_per_entry_point_and_other_points_are_quarantined(tmp_path, catalogue):
    batch = read_counts(write(tmp_path, "landings.csv", LANDINGS), "landings", catalogue)
    assert quarantined(batch) == [
        (4, "unknown_crossing_point"),  # Lampedusa: its landings are counted at Porto Empedocle
        (5, "unknown_crossing_point"),  # a departure point
        (6, "unknown_crossing_point"),  # a point of another route
        (9, "negative_count"),
        (10, "unknown_route"),
        (11, "missing_count"),
    ]
    report = batch.report
    assert (report.rows_in, report.accepted, report.quarantined, report.duplicates) == (11, 4, 6, 1)
    assert report.balanced()
    series = batch.series.set_index("series_id")
    empedocle = series.loc["landings/point:central_mediterranean/porto_empedocle"]
    assert set(empedocle["level"]) == {"point"} and set(empedocle["segment_id"]) == {"lampedusa_sicily"}
    assert list(empedocle["y"]) == [300, 310, 280] and set(empedocle["freq"]) == {"M"}
    # A route's official name names it too; the point keeps its own series.
    pozzallo = batch.series[batch.series["series_id"] == "landings/point:central_mediterranean/pozzallo"]
    assert list(pozzallo["ds"]) == [D(2025, 5, 1)]  # its June and July rows were refused: not written
    # Gaps are per point: Porto Empedocle has no July.
    assert report.gaps == {"central_mediterranean/porto_empedocle": (D(2025, 7, 1),)}
    assert set(report.series) == {"central_mediterranean/porto_empedocle", "central_mediterranean/pozzallo"}


@pytest.mark.parametrize(
    ("freq", "on_grid", "off_grid"),
    [("W", "2024-01-08", "2024-01-10"), ("M", "2024-02-01", "2024-02-15")],  # a Monday / a Wednesday
)
def test_a_date_off_the_frequency_grid_is_quarantined(tmp_path, catalogue, freq, on_grid, off_grid):
    path = write(tmp_path, "c.csv", f"date,route,count\n{on_grid},channel,4\n{off_grid},channel,5\n")
    batch = read_counts(path, "generic", catalogue, freq=freq)
    assert quarantined(batch) == [(3, "off_grid_date")]
    assert batch.report.series == {"channel": SeriesSpan(D.fromisoformat(on_grid), D.fromisoformat(on_grid), 1)}
    assert set(batch.series["freq"]) == {freq}


def test_frontex_gaps_are_reported_not_filled(tmp_path, catalogue):
    path = write(
        tmp_path,
        "frontex.csv",
        "date,route,count,n_source_rows\n"
        "2024-01-01,Central Mediterranean Route,5,1\n"
        "2024-03-01,Central Mediterranean Route,7,1\n"
        "2024-03-15,Central Mediterranean Route,7,1\n"
        "2024-03-01,Other,2,1\n",
    )
    batch = read_counts(path, "frontex", catalogue)
    assert quarantined(batch) == [(4, "off_grid_date"), (5, "unknown_route")]
    assert values(batch, "central_mediterranean") == {D(2024, 1, 1): 5, D(2024, 3, 1): 7}
    assert batch.report.gaps == {"central_mediterranean": (D(2024, 2, 1),)}
    assert any(line.startswith("gap: central_mediterranean has no value for 1 month(s) (2024-02-01)")
               for line in batch.report.summary_lines())  # fmt: skip


def test_iom_sums_countries_quarantines_annual_totals_and_flags_partial_months(tmp_path, catalogue):
    path = write(
        tmp_path,
        "iom.csv",
        "date,country,arrivals,granularity\n"
        "2023-12-01,ITA,1000,annual_total_stored_at_dec\n"
        "2024-01-01,ITA,100,month\n"
        "2024-01-01,MLT,10,month\n"
        "2024-02-01,ITA,200,month\n"
        "2024-03-01,ITA,300,month\n"
        "2024-03-01,MLT,30,month\n"
        "2024-03-01,ESP,9,month\n"
        "2024-04-01,ITA,400,month\n"
        "2024-04-01,MLT,40,month\n"
        "2024-04-01,MLT,41,month\n"
        "2024-04-01,FRA,5,month\n",
    )
    batch = read_counts(path, "iom-dtm", catalogue)
    assert quarantined(batch) == [
        (2, "not_monthly"),
        (8, "total_of_mapped_parts"),  # ESP = ESP-WMR + ESP-WAAR, both mapped
        (10, "conflicting_duplicate"),
        (11, "conflicting_duplicate"),
        (12, "unknown_route"),
    ]
    # ITA + MLT = central_mediterranean; MLT has no February and two different Aprils.
    assert values(batch, "central_mediterranean") == {
        D(2024, 1, 1): 110,
        D(2024, 2, 1): 200,
        D(2024, 3, 1): 330,
        D(2024, 4, 1): 400,
    }
    assert batch.report.partial == {"central_mediterranean": (D(2024, 2, 1), D(2024, 4, 1))}
    assert batch.report.gaps == {}


def test_a_part_without_a_row_is_its_country_total_minus_the_other_parts_inside_its_own_span(tmp_path, catalogue):
    path = write(
        tmp_path,
        "iom.csv",
        "date,country,arrivals,granularity\n"
        "2024-01-01,ESP,100,month\n"  # before ESP-WAAR's first row: nothing derived
        "2024-01-01,ESP-WMR,100,month\n"
        "2024-02-01,ESP,150,month\n"
        "2024-02-01,ESP-WMR,120,month\n"
        "2024-02-01,ESP-WAAR,30,month\n"
        "2024-03-01,ESP,90,month\n"  # ESP-WAAR has no row: 90 - 70 = 20
        "2024-03-01,ESP-WMR,70,month\n"
        "2024-04-01,ESP,50,month\n"  # the total is below the other part: no derivation, a gap
        "2024-04-01,ESP-WMR,60,month\n"
        "2024-05-01,ESP,45,month\n"
        "2024-05-01,ESP-WMR,40,month\n"
        "2024-05-01,ESP-WAAR,5,month\n",
    )
    batch = read_counts(path, "iom-dtm", catalogue)
    assert batch.report.balanced()
    assert values(batch, "western_african") == {D(2024, 2, 1): 30, D(2024, 3, 1): 20, D(2024, 5, 1): 5}
    assert batch.report.derived == {"western_african": (D(2024, 3, 1),)}
    assert batch.report.gaps == {"western_african": (D(2024, 4, 1),)}
    assert batch.report.reasons == {"total_of_mapped_parts": 5}
    assert any(line.startswith("derived: western_african has 1 month(s)") for line in batch.report.summary_lines())


def test_frontex_detail_fills_months_without_rows_but_not_months_whose_rows_were_refused(tmp_path, catalogue):
    path = write(
        tmp_path,
        "detail.csv",
        "date,route,border_type,nationality_iso3,count\n"
        "2024-01-01,Western African Route,Sea,SEN,5\n"
        "2024-01-01,Western African Route,Sea,GIN,6\n"
        "2024-01-01,Western African Route,Sea,SEN,5\n"
        "2024-03-01,Western African Route,Sea,MLI,-2\n"
        "2024-04-01,Western African Route,Sea,SEN,1\n",
    )
    batch = read_counts(path, "frontex", catalogue)
    assert quarantined(batch) == [(5, "negative_count")] and batch.report.duplicates == 1
    # January 5 + 6; February has no row: 0 (Frontex stores no zeros); March's only row was refused: a gap.
    assert values(batch, "western_african") == {D(2024, 1, 1): 11, D(2024, 2, 1): 0, D(2024, 4, 1): 1}
    assert batch.report.gaps["western_african"] == (D(2024, 3, 1),)
    # The other five catalogue routes have no row at all in January .. April: four zero months each.
    assert values(batch, "central_mediterranean") == dict.fromkeys([D(2024, m, 1) for m in (1, 2, 3, 4)], 0)
    assert batch.report.zero_filled == 1 + 5 * 4


def test_uk_rows_without_a_figure_are_quarantined(tmp_path, catalogue):
    path = write(tmp_path, "uk.csv", "date,migrants_arrived,boats_arrived\n2024-06-01,40,1\n2024-06-02,,0\n")
    batch = read_counts(path, "uk-channel", catalogue)
    assert quarantined(batch) == [(3, "missing_count")]
    assert values(batch, "channel") == {D(2024, 6, 1): 40}


# --- file errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "source", "message"),
    [
        (
            "frontex.csv",
            b"date,count,n_source_rows\n2024-01-01,5,1\n",
            "frontex",
            "counts file frontex.csv: column 'route' missing; expected date,route,count,n_source_rows "
            "(or date,route,border_type,nationality_iso3,count)",
        ),
        (
            "boats.csv",
            b"date,boats_arrived\n2024-01-01,5\n",
            "uk-channel",
            "counts file boats.csv: column 'migrants_arrived' missing; expected date,migrants_arrived",
        ),
        (
            "iom.csv",
            b"date,country,arrivals\n2024-01-01,ITA,5\n",
            "iom-dtm",
            "counts file iom.csv: column 'granularity' missing; expected date,country,arrivals,granularity",
        ),
        (
            "c.csv",
            b"day;route;count\n",
            "generic",
            "counts file c.csv: columns 'date', 'route', 'count' missing; expected date,route,count; "
            "the header is one column: separate the columns with commas, not ';'",
        ),
        ("e.csv", b"", "generic", "counts file e.csv: empty; expected a CSV header and one row per route and date"),
        ("e.csv", b"\n  \n", "generic", "counts file e.csv: empty;"),
        ("h.csv", b"date,route,count\n\n", "generic", "counts file h.csv: a header but no rows; nothing to ingest"),
        (
            "c.xlsx",
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00",
            "generic",
            "counts file c.xlsx: binary content, not CSV (a spreadsheet?); export it as CSV (UTF-8)",
        ),
        (
            "l.csv",
            "date,route,count\n2024-01-01,Málaga,1\n".encode("latin-1"),
            "generic",
            "counts file l.csv: not UTF-8",
        ),
        (
            "c.json",
            b'[{"date": "2024-01-01", "route": "channel", "count": 5}]',
            "generic",
            "counts file c.json: JSON, not CSV; convert it to CSV with a header row",
        ),
        (
            "d.csv",
            b"date,route,count,route\n2024-01-01,channel,5,x\n",
            "generic",
            "counts file d.csv: column 'route' appears more than once in the header",
        ),
    ],
)
def test_a_bad_file_is_one_clear_line(tmp_path, catalogue, name, content, source, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CountsFileError) as caught:
        read_counts(path, source, catalogue)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value) and isinstance(caught.value, ValueError)


def test_a_missing_path_or_a_folder_is_refused(tmp_path, catalogue):
    with pytest.raises(CountsFileError, match=f"counts file {tmp_path / 'nope.csv'}: not found; check the path"):
        read_counts(tmp_path / "nope.csv", "frontex", catalogue)
    with pytest.raises(CountsFileError, match="not a file; pass the CSV file itself"):
        read_counts(tmp_path, "frontex", catalogue)


def test_unknown_source_and_a_frequency_the_source_does_not_have_are_refused(tmp_path, catalogue):
    path = write(tmp_path, "c.csv", "date,route,count\n2024-01-01,channel,1\n")
    with pytest.raises(ValueError, match="unknown counts source 'unhcr'; expected one of frontex, uk-channel"):
        read_counts(path, "unhcr", catalogue)
    with pytest.raises(ValueError, match="source 'frontex' has one value per month \\(freq M\\), not 'D'"):
        read_counts(path, "frontex", catalogue, freq="D")
    with pytest.raises(ValueError, match="freq='Q' must be one of"):
        read_counts(path, "generic", catalogue, freq="Q")


# --- the lake ------------------------------------------------------------------------------------------------


def test_reingesting_a_source_replaces_it_and_leaves_other_sources_alone(spark, settings, catalogue, tmp_path):
    first = write(
        tmp_path,
        "first.csv",
        "date,route,count,n_source_rows\n"
        "2024-01-01,Central Mediterranean Route,5,1\n"
        "2024-01-01,Western African Route,6,1\n"
        "2024-01-01,Other,1,1\n",
    )
    second = write(
        tmp_path, "second.csv", "date,route,count,n_source_rows\n2024-02-01,Central Mediterranean Route,9,1\n"
    )
    boats = write(tmp_path, "boats.csv", "date,migrants_arrived\n2024-06-01,40\n")
    ingest_counts(spark, settings, first, "frontex", catalogue, run_date=RUN)
    ingest_counts(spark, settings, boats, "uk-channel", catalogue, run_date=RUN)
    report = ingest_counts(spark, settings, second, "frontex", catalogue, run_date=RUN)

    gold = read_table(spark, settings.lake(tables.SERIES), SERIES)
    got = sorted((r.source, r.route_id, r.ds, r.y) for r in gold.collect())
    assert got == [
        ("frontex", "central_mediterranean", D(2024, 2, 1), 9.0),
        ("uk-channel", "channel", D(2024, 6, 1), 40.0),
    ]
    # The first file's quarantined "Other" row went with it; the second file has none.
    assert read_table(spark, settings.lake(tables.QUARANTINE_COUNTS), QUARANTINE_COUNTS).count() == 0
    checks = read_checks(spark, settings.lake(tables.QA_CHECKS), RUN, "counts:frontex")
    assert checks["rows_in"] == 1 == report.rows_in and "quarantined_unknown_route" not in checks
