"""Official counts: one CSV of arrivals or detections → route-level gold series; bad rows → quarantine.

Sources and the files they read (reference copies: shared/data/real/, described in its SOURCES.md):

=============  ==========================================================  ====  ================================
source         columns (a header row; further columns are ignored)         freq  route from
=============  ==========================================================  ====  ================================
frontex        ``date,route,count,n_source_rows`` (by route), or           M     Frontex route name
               ``date,route,border_type,nationality_iso3,count`` (detail,
               summed per route and month; a route-month without any row
               is 0, as Frontex stores only non-zero cells)
uk-channel     ``date,migrants_arrived`` (``y = migrants_arrived``)        D     always "small boats" (Home Office)
iom-dtm        ``date,country,arrivals,granularity``, summed over the      M     ISO-3 country of arrival
               countries of a route; only ``granularity=month`` rows
generic        ``date,route,count``                                        D|W|M a route id or any official name
landings       ``date,route,crossing_point,count``: arrivals per landing     M     a route id or any official name;
               place or border post (as Greece publishes per island, Spain         the point: one of the route's
               per island and city, Italy per region)                              entry points (``geo.entry``)
=============  ==========================================================  ====  ================================

Route names map to catalogue ids through ``Catalogue.official_name_map`` (``frontex``, ``uk_home_office``,
``iom_dtm``). Dates are ``YYYY-MM-DD``; weekly dates are Mondays, monthly dates the 1st. Counts are whole
numbers >= 0. One record per line; blank lines are skipped and are not rows.

Every data row is accounted for: ``rows_in = accepted + quarantined + duplicates``. A rejected row goes to
quarantine (Parquet, partitioned by source) with its line number, its raw text and the first rule it broke,
checked in this order: ``wrong_field_count``, ``bad_date``, ``missing_count``, ``non_integer_count``,
``negative_count``, ``off_grid_date`` (not a Monday for W, not the 1st for M), ``not_monthly`` (IOM
annual totals stored in December would corrupt a monthly series), ``total_of_mapped_parts`` (a country
total such as IOM's ``ESP`` whose parts ``ESP-WMR`` and ``ESP-WAAR`` map to routes: counting it too would
count those people twice), ``unknown_route``, ``unknown_crossing_point`` (``landings``: not an entry point of the
row's route), and among the rows
left, ``conflicting_duplicate``: rows with the same key (route and date, plus country for IOM, plus
border type and nationality for the Frontex detail) and different counts are all quarantined, while
repeats with the same count are kept once and counted as duplicates.

Ingest writes what the file says and invents nothing (the Frontex detail's zeros are Frontex's own
convention, written out). One period is derived rather than read: where a
mapped part (IOM ``ESP-WAAR``) has no row inside its own first..last month while its country total and the
other parts do, its value is the total minus the other parts (reported as *derived*; IOM stores no row for a
month without Atlantic arrivals). Any other period with no row is not written: it is
reported as a *gap* (forecasting refuses a series with gaps, naming the first one, until it is filled
upstream). A written period summed from incomplete inputs (a country of the route that reports every
month has no row that month, or one of the period's rows was quarantined for its count) is reported as
*partial*; its value is the sum of what was accepted. Both go to the report and to the QA checks.
Re-ingesting a source replaces exactly that source's gold series and quarantine.

:func:`transform` checks a file's text and makes the series, the quarantine and the report (no file, no lake);
:func:`read_counts` reads a file and calls it, and :func:`ingest_counts` writes its result to the lake.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from contracts import tables
from contracts.series import series_id
from forecasting.protocol import PERIOD_NAMES, check_freq, is_on_grid, period_grid
from geo.catalogue import Catalogue, load_catalogue
from geo.entry import entry_points
from jobs import lake
from jobs.schemas import QUARANTINE_COUNTS, SERIES
from jobs.settings import JobSettings

__all__ = [
    "REASONS",
    "SOURCES",
    "CountsBatch",
    "CountsFileError",
    "CountsReport",
    "CountsText",
    "SeriesSpan",
    "ingest_counts",
    "read_counts",
    "read_counts_text",
    "transform",
]

SOURCES: tuple[str, ...] = ("frontex", "uk-channel", "iom-dtm", "generic", "landings")
# Sources whose series are per crossing point (level "point"), not per route.
POINT_SOURCES: frozenset[str] = frozenset({"landings"})

# The quarantine reasons, in the order rows are checked (the first rule a row breaks is recorded).
REASONS: tuple[str, ...] = (
    "wrong_field_count",
    "bad_date",
    "missing_count",
    "non_integer_count",
    "negative_count",
    "off_grid_date",
    "not_monthly",
    "total_of_mapped_parts",
    "unknown_route",
    "unknown_crossing_point",
    "conflicting_duplicate",
)
# Rows quarantined for one of these still say which route and period they were for, so a sum written
# for that route and period lacks them.
_LOST_FROM_PERIOD = frozenset({"missing_count", "non_integer_count", "negative_count", "conflicting_duplicate"})

# The Home Office figures carry no route column: every row is the Channel crossing, named so in the catalogue.
UK_HOME_OFFICE_NAME = "small boats"

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WHOLE_NUMBER = re.compile(r"[+-]?\d+")


class CountsFileError(ValueError):
    """The file as a whole cannot be read as official counts; the one-line message names it and says what to do."""


@dataclass(frozen=True)
class _Layout:
    """How one file format maps onto (date, route, count)."""

    columns: tuple[str, ...]  # the required header, in documented order
    count: str  # the column holding the count
    route: str | None  # the column naming the route; None: every row is the source's one route
    key: tuple[str, ...] = ()  # further columns that tell apart rows summed into one route and period
    granularity: str | None = None  # a column that must read "month"
    zero_when_absent: bool = False  # a route-period without any row is 0 (the source stores no zeros)
    key_reports_every_period: bool = False  # each key (IOM country) is expected every period of its span
    point: str | None = None  # the column naming the crossing point (a per-point source); the series' target is
    # then "<route id>/<point id>"


@dataclass(frozen=True)
class _Source:
    freq: str | None  # None: given by the caller (generic)
    names: str | None  # the catalogue's official-name source; None: route ids and every official name
    layouts: tuple[_Layout, ...]  # the first is the documented one


_SOURCES: dict[str, _Source] = {
    "frontex": _Source(
        "M",
        "frontex",
        (
            _Layout(("date", "route", "count", "n_source_rows"), count="count", route="route"),
            _Layout(
                ("date", "route", "border_type", "nationality_iso3", "count"),
                count="count",
                route="route",
                key=("border_type", "nationality_iso3"),
                zero_when_absent=True,
            ),
        ),
    ),
    "uk-channel": _Source("D", "uk_home_office", (_Layout(("date", "migrants_arrived"), "migrants_arrived", None),)),
    "iom-dtm": _Source(
        "M",
        "iom_dtm",
        (
            _Layout(
                ("date", "country", "arrivals", "granularity"),
                count="arrivals",
                route="country",
                key=("country",),
                granularity="granularity",
                key_reports_every_period=True,
            ),
        ),
    ),
    "generic": _Source(None, None, (_Layout(("date", "route", "count"), count="count", route="route"),)),
    "landings": _Source(
        "M",
        None,
        (_Layout(("date", "route", "crossing_point", "count"), count="count", route="route", point="crossing_point"),),
    ),
}


class SeriesSpan(NamedTuple):
    """What was written for one route: first and last period and how many periods."""

    first: dt.date
    last: dt.date
    periods: int


@dataclass(frozen=True)
class CountsReport:
    """Row accounting and series quality of one ingested counts file."""

    source: str
    file: str
    freq: str
    rows_in: int
    accepted: int
    quarantined: int
    duplicates: int
    reasons: Mapping[str, int]  # quarantined rows per reason
    unknown_routes: Mapping[str, int]  # rows per route name the catalogue does not carry
    series: Mapping[str, SeriesSpan]  # route id -> what was written
    gaps: Mapping[str, tuple[dt.date, ...]]  # route id -> periods between its first and last with no value
    partial: Mapping[str, tuple[dt.date, ...]]  # route id -> periods written from incomplete inputs
    zero_filled: int = 0  # periods written as 0 because the source stores no row for zero
    derived: Mapping[str, tuple[dt.date, ...]] = field(default_factory=dict)  # route id -> periods with a part
    # that had no row, derived as its country total minus the other parts (IOM: ESP-WAAR = ESP - ESP-WMR)

    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.quarantined + self.duplicates

    @property
    def periods_written(self) -> int:
        return sum(span.periods for span in self.series.values())

    def checks(self) -> dict[str, float]:
        """The figures stored as QA checks (stage ``counts:<source>``)."""
        return {
            "rows_in": self.rows_in,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            **{f"quarantined_{reason}": n for reason, n in self.reasons.items()},
            "routes": len(self.series),
            "periods_written": self.periods_written,
            "zero_filled": self.zero_filled,
            "gap_periods": sum(len(d) for d in self.gaps.values()),
            "partial_periods": sum(len(d) for d in self.partial.values()),
            "derived_periods": sum(len(d) for d in self.derived.values()),
        }

    def summary_lines(self) -> list[str]:
        """What a person running the ingest needs to read, one line per fact (for the CLI)."""
        unit = PERIOD_NAMES[self.freq]
        lines = [
            f"{self.file} ({self.source}, one value per {unit}): {self.rows_in} rows in = {self.accepted} accepted"
            f" + {self.quarantined} quarantined + {self.duplicates} duplicates",
        ]
        if self.reasons:
            lines.append("quarantined: " + ", ".join(f"{reason} {n}" for reason, n in self.reasons.items()))
        if self.unknown_routes:
            names = ", ".join(f"{name!r} ({n})" for name, n in self.unknown_routes.items())
            lines.append(f"routes not in the catalogue: {names}")
        zeros = f", {self.zero_filled} of them zeros the source does not store" if self.zero_filled else ""
        lines.append(f"written: {len(self.series)} route series, {self.periods_written} {unit}s{zeros}")
        for route_id, span in self.series.items():
            lines.append(f"  {route_id}: {span.first} .. {span.last}, {span.periods} {unit}s")
        for route_id, dates in self.derived.items():
            lines.append(
                f"derived: {route_id} has {len(dates)} {unit}(s) whose part had no row, taken as its country total"
                f" minus the other parts ({_some(dates)})"
            )
        for route_id, dates in self.gaps.items():
            lines.append(
                f"gap: {route_id} has no value for {len(dates)} {unit}(s) ({_some(dates)}); not filled, so "
                "forecasting refuses this series until the file supplies them"
            )
        for route_id, dates in self.partial.items():
            lines.append(
                f"partial: {route_id} has {len(dates)} {unit}(s) summed without all of their inputs ({_some(dates)})"
            )
        return lines


@dataclass(frozen=True)
class CountsText:
    """A counts file as text: its name, its header's column names (stripped, lower case) and its non-blank data
    lines with their line numbers (as an editor shows them; the header is line 1 or later)."""

    name: str
    header: tuple[str, ...]
    lines: tuple[tuple[int, str], ...]


@dataclass(frozen=True, eq=False)
class CountsBatch:
    """A counts file read and checked, before anything is written."""

    series: pd.DataFrame  # the SERIES columns, sorted by series_id and ds
    quarantine: pd.DataFrame  # the QUARANTINE_COUNTS columns, by line
    report: CountsReport


# Not a quarantine reason: a repeat of an accepted row (same key, same count), dropped and counted.
_DUPLICATE = "duplicate"


@dataclass
class _Row:
    line: int
    raw: str
    reason: str | None = None  # a REASONS entry, _DUPLICATE, or None when accepted
    ds: dt.date | None = None  # the period, when the date parses and is on the grid
    route_name: str = ""  # as the file (or, for the UK figures, the catalogue) names the route
    route_id: str | None = None
    y: int | None = None
    key: tuple[str, ...] = ()


def read_counts(path: Path, source: str, catalogue: Catalogue | None = None, freq: str | None = None) -> CountsBatch:
    """Read and check one official-counts file of ``source`` (see the module docstring); writes nothing.

    ``freq`` applies to ``generic`` (D, W or M; default D); the other sources have a fixed one, and a
    different ``freq`` is refused. Raises CountsFileError for a file that cannot be read as counts
    (missing, empty, not CSV, columns missing, no rows) and ValueError for an unknown source or freq.
    """
    _freq_for(source, _source_spec(source), freq)  # refused before the file is read
    return transform(read_counts_text(Path(path)), source, catalogue or load_catalogue(), freq)


def transform(text: CountsText, source: str, catalogue: Catalogue, freq: str | None = None) -> CountsBatch:
    """Check a counts file's text as ``source`` and make its series, quarantine and report (no file, no lake).

    ``freq`` as :func:`read_counts`. Raises CountsFileError when the header lacks a column of the source's
    layouts or there is no data line, and ValueError for an unknown source or freq.
    """
    spec = _source_spec(source)
    freq = _freq_for(source, spec, freq)
    header = list(text.header)
    layout = _layout_for(text.name, spec, header)
    if not text.lines:
        raise CountsFileError(f"counts file {text.name}: a header but no rows; nothing to ingest")
    resolve = _route_names(catalogue, spec.names)
    entries = entry_points(catalogue) if layout.point else {}
    rows = [_checked_row(number, raw, header, layout, freq, resolve, entries) for number, raw in text.lines]
    unknown = Counter(row.route_name for row in rows if row.reason == "unknown_route")
    _mark_duplicates(rows)

    accepted = [r for r in rows if r.reason is None]
    sums: dict[tuple[str, dt.date], int] = defaultdict(int)
    for r in accepted:
        sums[r.route_id, r.ds] += r.y
    zero_filled = _fill_absent_zeros(sums, rows, set(resolve.values()), freq) if layout.zero_when_absent else 0
    derived = _derive_missing_parts(sums, rows, resolve)

    by_route: dict[str, list[dt.date]] = defaultdict(list)
    for route_id, ds in sorted(sums):
        by_route[route_id].append(ds)
    spans = {rid: SeriesSpan(ds[0], ds[-1], len(ds)) for rid, ds in by_route.items()}
    gaps = {rid: missing for rid, ds in by_route.items() if (missing := _missing_periods(ds, freq))}
    partial = _partial_periods(rows, set(sums), freq, layout.key_reports_every_period)
    partial = {rid: tuple(d for d in dates if d not in derived.get(rid, ())) for rid, dates in partial.items()}
    partial = {rid: dates for rid, dates in partial.items() if dates}

    reasons = Counter(r.reason for r in rows if r.reason not in (None, _DUPLICATE))
    report = CountsReport(
        source=source,
        file=text.name,
        freq=freq,
        rows_in=len(rows),
        accepted=len(accepted),
        quarantined=sum(reasons.values()),
        duplicates=sum(r.reason == _DUPLICATE for r in rows),
        reasons={reason: reasons[reason] for reason in REASONS if reasons[reason]},
        unknown_routes=dict(sorted(unknown.items())),
        series=spans,
        gaps=gaps,
        partial=partial,
        zero_filled=zero_filled,
        derived=derived,
    )
    series = pd.DataFrame(
        [_series_row(target, ds, y, freq, source, catalogue) for (target, ds), y in sorted(sums.items())],
        columns=SERIES.fieldNames(),
    )
    quarantine = pd.DataFrame(
        [(text.name, r.line, r.raw, r.reason, source) for r in rows if r.reason not in (None, _DUPLICATE)],
        columns=QUARANTINE_COUNTS.fieldNames(),
    )
    return CountsBatch(series=series, quarantine=quarantine, report=report)


def _series_row(target: str, ds: dt.date, y: int, freq: str, source: str, catalogue: Catalogue) -> tuple:
    """One SERIES row: of a route, or of a crossing point when ``target`` is ``"<route id>/<point id>"``."""
    if "/" not in target:
        return (series_id("route", target, source=source), "route", target, None, ds, float(y), freq, source)
    route_id, point_id = target.split("/", 1)
    segment_id = next(p.segment_id for p in catalogue.route(route_id).crossing_points if p.id == point_id)
    sid = series_id("point", route_id, segment_id, source, crossing_point=point_id)
    return (sid, "point", route_id, segment_id, ds, float(y), freq, source)


def ingest_counts(
    spark: SparkSession,
    settings: JobSettings,
    path: Path,
    source: str,
    catalogue: Catalogue | None = None,
    freq: str | None = None,
    run_date: dt.date | None = None,
) -> CountsReport:
    """Ingest one official-counts file: gold series and quarantine of ``source`` replaced, QA checks written.

    ``run_date`` (default: today, UTC) dates the QA checks, stage ``counts:<source>``. Errors as
    :func:`read_counts`; nothing is written when the file is refused.
    """
    batch = read_counts(path, source, catalogue, freq)
    # The source's partition is replaced even when it has no rows now: a previous ingest's rows must not stay.
    lake.write(settings, tables.SERIES, _spark_frame(spark, batch.series, SERIES), replace={"source": [source]})
    quarantine = _spark_frame(spark, batch.quarantine, QUARANTINE_COUNTS)
    lake.write(settings, tables.QUARANTINE_COUNTS, quarantine, replace={"source": [source]})
    run_date = run_date or dt.datetime.now(dt.UTC).date()
    lake.write_checks(spark, settings.lake(tables.QA_CHECKS), run_date, f"counts:{source}", batch.report.checks())
    return batch.report


# --- the file ------------------------------------------------------------------------------------------------


def _source_spec(source: str) -> _Source:
    if source not in _SOURCES:
        raise ValueError(f"unknown counts source {source!r}; expected one of {', '.join(SOURCES)}")
    return _SOURCES[source]


def _freq_for(source: str, spec: _Source, freq: str | None) -> str:
    if spec.freq is None:
        return check_freq(freq or "D")
    if freq is not None and freq != spec.freq:
        raise ValueError(
            f"source {source!r} has one value per {PERIOD_NAMES[spec.freq]} (freq {spec.freq}), not {freq!r}"
        )
    return spec.freq


def read_counts_text(path: Path) -> CountsText:
    """The header and the non-blank data lines of a counts file; CountsFileError when it is not CSV text."""
    if not path.exists():
        raise CountsFileError(f"counts file {path}: not found; check the path")
    if not path.is_file():
        raise CountsFileError(f"counts file {path}: not a file; pass the CSV file itself")
    data = path.read_bytes()
    if not data.strip():
        raise CountsFileError(f"counts file {path.name}: empty; expected a CSV header and one row per route and date")
    if b"\x00" in data:
        raise CountsFileError(
            f"counts file {path.name}: binary content, not CSV (a spreadsheet?); export it as CSV (UTF-8)"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CountsFileError(
            f"counts file {path.name}: not UTF-8 text (byte {exc.start}); save it as CSV in UTF-8"
        ) from None
    if text.lstrip()[:1] in ("{", "["):
        raise CountsFileError(f"counts file {path.name}: JSON, not CSV; convert it to CSV with a header row")
    # Physical lines, so that line numbers match what an editor shows ("\r\n" files included).
    physical = [line.rstrip("\r") for line in text.split("\n")]
    numbered = [(n, line) for n, line in enumerate(physical, start=1) if line.strip()]
    (_, header_line), lines = numbered[0], numbered[1:]
    header = [name.strip().lower() for name in next(csv.reader([header_line]))]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CountsFileError(f"counts file {path.name}: column {repeated[0]!r} appears more than once in the header")
    return CountsText(path.name, tuple(header), tuple(lines))


def _layout_for(name: str, spec: _Source, header: list[str]) -> _Layout:
    """The layout sharing most columns with the header (ties: the documented one); refused if it lacks one."""
    layout = max(spec.layouts, key=lambda lay: (len(set(lay.columns) & set(header)), -spec.layouts.index(lay)))
    missing = [c for c in layout.columns if c not in header]
    if missing:
        what = f"column {missing[0]!r}" if len(missing) == 1 else "columns " + ", ".join(map(repr, missing))
        others = [",".join(lay.columns) for lay in spec.layouts if lay is not layout]
        alternative = "".join(f" (or {o})" for o in others)
        if len(header) == 1 and (separator := next((c for c in ";\t|" if c in header[0]), None)):
            alternative += f"; the header is one column: separate the columns with commas, not {separator!r}"
        raise CountsFileError(f"counts file {name}: {what} missing; expected {','.join(layout.columns)}{alternative}")
    return layout


def _route_names(catalogue: Catalogue, names: str | None) -> dict[str, str]:
    """``{name: route id}``: one source's official names, or (generic) route ids and every official name."""
    if names is not None:
        return catalogue.official_name_map(names)
    mapping: dict[str, str] = {}
    ambiguous: set[str] = set()
    for source in sorted({s for route in catalogue for s in route.official_names}):
        for name, route_id in catalogue.official_name_map(source).items():
            if mapping.setdefault(name, route_id) != route_id:
                ambiguous.add(name)  # one name, two routes in two sources: it cannot say which
    for name in ambiguous:
        del mapping[name]
    return mapping | {route_id: route_id for route_id in catalogue.route_ids()}


def _parse_date(text: str) -> dt.date | None:
    if not _ISO_DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _parse_count(text: str) -> tuple[str | None, int | None]:
    """(reason, count): a whole number >= 0, or why not."""
    if not text:
        return "missing_count", None
    if not _WHOLE_NUMBER.fullmatch(text):
        return "non_integer_count", None
    value = int(text)
    return ("negative_count", value) if value < 0 else (None, value)


def _checked_row(
    number: int,
    raw: str,
    header: list[str],
    layout: _Layout,
    freq: str,
    resolve: Mapping[str, str],
    entries: Mapping[str, tuple[str, ...]] | None = None,
) -> _Row:
    """One data line parsed, with the first rule it breaks as ``reason`` (None when valid so far).

    For a per-point layout, ``entries`` (route id → its entry points) checks the point, and the row's ``route_id``
    becomes ``"<route id>/<point id>"``: every sum, gap and duplicate is then per point."""
    row = _Row(number, raw)
    fields = next(csv.reader([raw]))
    if len(fields) != len(header):
        row.reason = "wrong_field_count"
        return row
    values = dict(zip(header, (f.strip() for f in fields), strict=True))
    # Route and period are kept on refused rows too: a sum written for them is then known to be partial.
    row.route_name = values[layout.route] if layout.route else UK_HOME_OFFICE_NAME
    row.route_id = resolve.get(row.route_name)
    row.key = tuple(values[c] for c in layout.key)
    date = _parse_date(values["date"])
    row.ds = date if date is not None and is_on_grid(date, freq) else None
    count_reason, row.y = _parse_count(values[layout.count])
    if date is None:
        row.reason = "bad_date"
    elif count_reason:
        row.reason = count_reason
    elif row.ds is None:
        row.reason = "off_grid_date"
    elif layout.granularity and values[layout.granularity] != "month":
        row.reason = "not_monthly"
    elif row.route_id is None and any(name.startswith(f"{row.route_name}-") for name in resolve):
        row.reason = "total_of_mapped_parts"  # ESP = ESP-WMR + ESP-WAAR, which map to two routes
    elif row.route_id is None:
        row.reason = "unknown_route"
    if layout.point and row.route_id is not None:
        point = values[layout.point]
        if point in (entries or {}).get(row.route_id, ()):
            row.route_id = f"{row.route_id}/{point}"
        else:
            row.reason = row.reason or "unknown_crossing_point"
            row.route_id = None  # no series this row could belong to
    return row


# --- rows to series ------------------------------------------------------------------------------------------


def _mark_duplicates(rows: list[_Row]) -> None:
    """Among valid rows with the same key (route, period, layout key): the same count → the first is kept
    and the repeats marked _DUPLICATE; different counts → every one of them is a conflicting_duplicate."""
    groups: dict[tuple, list[_Row]] = defaultdict(list)
    for row in rows:
        if row.reason is None:
            groups[row.route_id, row.ds, row.key].append(row)
    for group in groups.values():
        if len({row.y for row in group}) > 1:
            for row in group:
                row.reason = "conflicting_duplicate"
        else:
            for row in group[1:]:
                row.reason = _DUPLICATE


def _fill_absent_zeros(sums: dict[tuple[str, dt.date], int], rows: list[_Row], routes: set[str], freq: str) -> int:
    """Write 0 for every (route, period) of the file's span that no row names at all; returns how many."""
    dates = [r.ds for r in rows if r.ds is not None]
    if not dates:
        return 0
    named = {(r.route_id, r.ds) for r in rows if r.route_id is not None and r.ds is not None}
    filled = 0
    for stamp in period_grid(pd.Timestamp(min(dates)), pd.Timestamp(max(dates)), freq):
        for route_id in sorted(routes):
            if (route_id, stamp.date()) not in named:
                sums[route_id, stamp.date()] = 0
                filled += 1
    return filled


def _derive_missing_parts(
    sums: dict[tuple[str, dt.date], int], rows: list[_Row], resolve: Mapping[str, str]
) -> dict[str, tuple[dt.date, ...]]:
    """Where a country total (quarantined as total_of_mapped_parts) has a row for a period and exactly one of
    its mapped parts has none inside that part's own first..last monthly row, add ``total - the other parts``
    to the part's route (when >= 0): IOM stores ESP and ESP-WMR but no ESP-WAAR row in months without Atlantic
    arrivals. Outside a part's span nothing is derived: before 2017 IOM kept ESP-WAAR only as annual totals,
    and ESP's monthly figures then lack it. Returns route id -> periods."""
    parts_of: dict[str, list[str]] = defaultdict(list)
    for name in resolve:
        if "-" in name:
            parts_of[name.split("-", 1)[0]].append(name)
    present = {(r.route_name, r.ds): r.y for r in rows if r.reason is None}
    span: dict[str, tuple[dt.date, dt.date]] = {}
    for name, ds in present:
        first, last = span.get(name, (ds, ds))
        span[name] = (min(first, ds), max(last, ds))
    derived: dict[str, list[dt.date]] = defaultdict(list)
    for total in rows:
        if total.reason != "total_of_mapped_parts" or total.ds is None or total.y is None:
            continue
        parts = parts_of.get(total.route_name, [])
        missing = [p for p in parts if (p, total.ds) not in present]
        if len(parts) < 2 or len(missing) != 1 or missing[0] not in span:
            continue
        if not span[missing[0]][0] <= total.ds <= span[missing[0]][1]:
            continue
        rest = total.y - sum(present[p, total.ds] for p in parts if p != missing[0])
        route_id = resolve[missing[0]]
        if rest >= 0 and total.ds not in derived[route_id]:
            sums[route_id, total.ds] = sums.get((route_id, total.ds), 0) + rest
            derived[route_id].append(total.ds)
    return {rid: tuple(sorted(dates)) for rid, dates in sorted(derived.items()) if dates}


def _missing_periods(dates: list[dt.date], freq: str) -> tuple[dt.date, ...]:
    grid = period_grid(pd.Timestamp(dates[0]), pd.Timestamp(dates[-1]), freq)
    return tuple(stamp.date() for stamp in grid.difference(pd.DatetimeIndex(dates)))


def _partial_periods(
    rows: list[_Row], written: set[tuple[str, dt.date]], freq: str, key_reports_every_period: bool
) -> dict[str, tuple[dt.date, ...]]:
    """Per route, the written periods that lack an input: a row quarantined for its count, or (when each key
    reports every period, as IOM countries do) a key with no row in a period inside its own first..last."""
    incomplete = {(r.route_id, r.ds) for r in rows if r.reason in _LOST_FROM_PERIOD and r.route_id is not None and r.ds}
    if key_reports_every_period:
        reported: dict[tuple[str, tuple[str, ...]], list[dt.date]] = defaultdict(list)
        for r in rows:
            if r.reason is None:
                reported[r.route_id, r.key].append(r.ds)
        for (route_id, _), dates in reported.items():
            incomplete |= {(route_id, ds) for ds in _missing_periods(sorted(dates), freq)}
    by_route: dict[str, list[dt.date]] = defaultdict(list)
    for route_id, ds in sorted(incomplete & written):
        by_route[route_id].append(ds)
    return {route_id: tuple(dates) for route_id, dates in by_route.items()}


# --- writing -------------------------------------------------------------------------------------------------


def _spark_frame(spark: SparkSession, frame: pd.DataFrame, schema: StructType) -> DataFrame:
    """``frame``'s rows as a Spark DataFrame of ``schema`` (missing values as nulls)."""
    rows = list(frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None))
    return spark.createDataFrame(rows, schema)


def _some(dates: tuple[dt.date, ...], shown: int = 3) -> str:
    head = ", ".join(str(d) for d in dates[:shown])
    return head + (f" and {len(dates) - shown} more" if len(dates) > shown else "")
