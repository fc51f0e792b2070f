"""Statement periods: frequencies, anchors, month-end clamping, cuts, and tiling (hypothesis)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from itertools import islice

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.periods import (
    Period,
    add_months,
    anchor_of,
    define_period_macros,
    iso,
    iter_periods,
    naive,
    started_periods,
    started_periods_sql,
    utc,
)
from engine.temp_tables import create_temp
from warehouse.models import UsageStatementSchedule


def T(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def sched(frequency: str, day: str = "FIRST_OF_MONTH", anchor: str | None = None):
    return UsageStatementSchedule(frequency=frequency, day=day, billing_anchor_date=anchor)


def spans(periods) -> list[tuple[str, str]]:
    return [(p.start.strftime("%Y-%m-%dT%H:%M"), p.end.strftime("%Y-%m-%dT%H:%M")) for p in periods]


def test_monthly_first_of_month_from_the_first():
    got = list(islice(iter_periods(sched("MONTHLY"), T("2026-03-01T00:00:00Z")), 3))
    assert spans(got) == [
        ("2026-03-01T00:00", "2026-04-01T00:00"),
        ("2026-04-01T00:00", "2026-05-01T00:00"),
        ("2026-05-01T00:00", "2026-06-01T00:00"),
    ]


def test_monthly_first_of_month_mid_month_start_gives_a_short_first_period():
    got = list(islice(iter_periods(sched("monthly"), T("2026-03-15T09:30:00Z")), 2))
    assert spans(got) == [
        ("2026-03-15T09:30", "2026-04-01T00:00"),
        ("2026-04-01T00:00", "2026-05-01T00:00"),
    ]


def test_monthly_contract_start_anchor_clamps_to_month_end_and_returns():
    got = list(islice(iter_periods(sched("MONTHLY", "CONTRACT_START"), T("2024-01-31Z")), 4))
    assert spans(got) == [
        ("2024-01-31T00:00", "2024-02-29T00:00"),  # leap year
        ("2024-02-29T00:00", "2024-03-31T00:00"),  # back to the 31st, no drift
        ("2024-03-31T00:00", "2024-04-30T00:00"),
        ("2024-04-30T00:00", "2024-05-31T00:00"),
    ]


def test_non_leap_february():
    got = list(islice(iter_periods(sched("MONTHLY", "CONTRACT_START"), T("2025-01-31Z")), 2))
    assert spans(got)[0] == ("2025-01-31T00:00", "2025-02-28T00:00")


def test_contract_start_keeps_the_time_of_day():
    got = list(
        islice(iter_periods(sched("MONTHLY", "CONTRACT_START"), T("2026-03-10T15:45:00Z")), 2)
    )
    assert spans(got) == [
        ("2026-03-10T15:45", "2026-04-10T15:45"),
        ("2026-04-10T15:45", "2026-05-10T15:45"),
    ]


def test_custom_date_anchor_before_start():
    schedule = sched("MONTHLY", "CUSTOM_DATE", "2025-06-20T00:00:00Z")
    got = list(islice(iter_periods(schedule, T("2026-03-01T00:00:00Z")), 2))
    assert spans(got) == [
        ("2026-03-01T00:00", "2026-03-20T00:00"),
        ("2026-03-20T00:00", "2026-04-20T00:00"),
    ]


def test_custom_date_anchor_after_start_and_on_the_31st():
    schedule = sched("MONTHLY", "CUSTOM_DATE", "2026-08-31T00:00:00Z")
    got = list(islice(iter_periods(schedule, T("2026-02-10T00:00:00Z")), 3))
    assert spans(got) == [
        ("2026-02-10T00:00", "2026-02-28T00:00"),
        ("2026-02-28T00:00", "2026-03-31T00:00"),
        ("2026-03-31T00:00", "2026-04-30T00:00"),
    ]


def test_quarterly_first_of_month_counts_from_the_start_month():
    got = list(islice(iter_periods(sched("QUARTERLY"), T("2026-02-15Z")), 3))
    assert spans(got) == [
        ("2026-02-15T00:00", "2026-05-01T00:00"),
        ("2026-05-01T00:00", "2026-08-01T00:00"),
        ("2026-08-01T00:00", "2026-11-01T00:00"),
    ]


def test_annual_contract_start_on_leap_day():
    got = list(islice(iter_periods(sched("ANNUAL", "CONTRACT_START"), T("2024-02-29Z")), 5))
    assert [p.end.date().isoformat() for p in got] == [
        "2025-02-28",
        "2026-02-28",
        "2027-02-28",
        "2028-02-29",
        "2029-02-28",
    ]


def test_weekly_first_of_month_uses_iso_weeks_from_monday():
    # 2026-03-04 is a Wednesday; ISO weeks start on Monday 2026-03-09.
    got = list(islice(iter_periods(sched("WEEKLY"), T("2026-03-04T10:00:00Z")), 2))
    assert spans(got) == [
        ("2026-03-04T10:00", "2026-03-09T00:00"),
        ("2026-03-09T00:00", "2026-03-16T00:00"),
    ]


def test_weekly_contract_start_and_custom_weekday():
    got = list(islice(iter_periods(sched("WEEKLY", "CONTRACT_START"), T("2026-03-04Z")), 2))
    assert spans(got)[1] == ("2026-03-11T00:00", "2026-03-18T00:00")
    friday = sched("WEEKLY", "CUSTOM_DATE", "2020-01-03T00:00:00Z")  # a Friday
    got = list(islice(iter_periods(friday, T("2026-03-04Z")), 2))
    assert spans(got) == [
        ("2026-03-04T00:00", "2026-03-06T00:00"),
        ("2026-03-06T00:00", "2026-03-13T00:00"),
    ]


def test_cut_at_ending_before_and_stop():
    got = list(iter_periods(sched("MONTHLY"), T("2026-01-10Z"), T("2026-03-15T12:00:00Z")))
    assert spans(got) == [
        ("2026-01-10T00:00", "2026-02-01T00:00"),
        ("2026-02-01T00:00", "2026-03-01T00:00"),
        ("2026-03-01T00:00", "2026-03-15T12:00"),
    ]


def test_ending_on_a_boundary_leaves_no_empty_period():
    got = list(iter_periods(sched("MONTHLY"), T("2026-01-01Z"), T("2026-03-01Z")))
    assert len(got) == 2 and got[-1].end == T("2026-03-01Z")


def test_started_periods_include_the_one_starting_at_as_of():
    schedule = sched("MONTHLY")
    start = T("2026-01-01Z")
    assert started_periods(schedule, start, None, T("2025-12-31T23:59:59Z")) == []
    assert len(started_periods(schedule, start, None, T("2026-01-01Z"))) == 1
    got = started_periods(schedule, start, None, T("2026-03-01Z"))
    assert [p.start for p in got] == [T("2026-01-01Z"), T("2026-02-01Z"), T("2026-03-01Z")]


def test_naive_datetimes_are_utc():
    got = next(iter_periods(sched("MONTHLY"), datetime(2026, 3, 5)))
    assert got == Period(T("2026-03-05Z"), T("2026-04-01Z"))


@pytest.mark.parametrize(
    ("anchor", "months", "expected"),
    [
        ("2026-01-31", 1, "2026-02-28"),
        ("2026-01-31", 2, "2026-03-31"),
        ("2026-01-31", -2, "2025-11-30"),
        ("2026-05-15", -17, "2024-12-15"),
    ],
)
def test_add_months(anchor, months, expected):
    assert add_months(T(anchor + "Z"), months).date().isoformat() == expected


# -- properties -----------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
schedules = st.builds(
    lambda f, d, a: UsageStatementSchedule(
        frequency=f, day=d, billing_anchor_date=a if d == "CUSTOM_DATE" else None
    ),
    st.sampled_from(["MONTHLY", "QUARTERLY", "ANNUAL", "WEEKLY"]),
    st.sampled_from(["FIRST_OF_MONTH", "CONTRACT_START", "CUSTOM_DATE"]),
    instants,
)


@settings(max_examples=300, deadline=None)
@given(schedules, instants, st.integers(min_value=1, max_value=40_000))
def test_periods_tile_the_contract(schedule, start, days):
    end = start + timedelta(days=days, seconds=start.second % 7)
    periods = list(iter_periods(schedule, start, end))
    assert periods[0].start == start
    assert periods[-1].end == end
    for a, b in zip(periods, periods[1:], strict=False):
        assert a.end == b.start  # no gap, no overlap
    for p in periods:
        assert p.start < p.end
    longest = {"MONTHLY": 31, "QUARTERLY": 92, "ANNUAL": 366, "WEEKLY": 7}[schedule.frequency.value]
    assert all(p.end - p.start <= timedelta(days=longest) for p in periods)
    # every period but the last ends on an anchor boundary: the anchor's weekday (WEEKLY) or
    # day of the month, clamped to the month's end, at the anchor's time of day
    anchor = anchor_of(schedule, start)
    for p in periods[:-1]:
        b = p.end
        assert b.time() == anchor.time()
        if schedule.frequency.value == "WEEKLY":
            assert b.weekday() == anchor.weekday()
        else:
            assert b.day == min(anchor.day, calendar.monthrange(b.year, b.month)[1])
            months = (b.year - anchor.year) * 12 + b.month - anchor.month
            assert (
                months % {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12}[schedule.frequency.value] == 0
            )


@settings(max_examples=200, deadline=None)
@given(schedules, instants, instants)
def test_started_periods_is_a_prefix_of_the_schedule(schedule, start, as_of):
    got = started_periods(schedule, start, None, as_of)
    assert all(p.start <= as_of for p in got)
    expected = list(islice(iter_periods(schedule, start), len(got) + 1))
    assert got == expected[: len(got)]
    assert expected[len(got)].start > as_of


@settings(max_examples=200, deadline=None)
@given(schedules, instants)
def test_later_boundaries_do_not_depend_on_the_start(schedule, start):
    """After the first period, boundaries are the anchor's, whatever day the contract began
    (with CUSTOM_DATE, whose anchor is fixed)."""
    if schedule.day.value != "CUSTOM_DATE":
        return
    a = list(islice(iter_periods(schedule, start), 4))
    later = a[1].start + timedelta(seconds=1)
    b = list(islice(iter_periods(schedule, later), 3))
    assert b[0].end == a[1].end and b[1:] == a[2:4]


@settings(max_examples=300, deadline=None)
@given(schedules, instants, st.integers(min_value=0, max_value=3_000), instants)
def test_since_resumes_the_periods_exactly_at_since(schedule, start, days, since):
    """`since` (the end of the latest frozen period) starts the first period: a period it
    falls inside is cut there (a frozen period cut by an `ending_before` the contract no longer
    has leaves no gap); the periods before it are skipped."""
    end = start + timedelta(days=days + 1)
    every = list(iter_periods(schedule, start, end))
    got = list(iter_periods(schedule, start, end, since=since))
    if since <= start:
        assert got == every
    else:
        expected = [Period(max(p.start, since), p.end) for p in every if p.end > since]
        assert got == expected


# -- the SQL form (engine.periods.STARTED_PERIODS, what an invoice run uses) ---------------------

SQL = duckdb.connect()
define_period_macros(SQL)


def sql_started_periods(contracts: list[tuple], as_of: datetime) -> dict[int, list[Period]]:
    """The SQL periods of (schedule, starting_at, ending_before, since) rows, by row index; the
    table holds the schedules as stored documents do (ISO text with Z, enum texts)."""

    def text(ts: datetime | None) -> str | None:
        return None if ts is None else iso(ts)

    create_temp(
        SQL,
        "mq_test_docs",
        {
            "key": ("BIGINT", range(len(contracts))),
            "frequency": ("VARCHAR", [c[0].frequency.value for c in contracts]),
            "day": ("VARCHAR", [c[0].day.value for c in contracts]),
            "anchor": ("VARCHAR", [text(c[0].billing_anchor_date) for c in contracts]),
            "starting_at": ("VARCHAR", [text(c[1]) for c in contracts]),
            "ending_before": ("VARCHAR", [text(c[2]) for c in contracts]),
            "since": ("VARCHAR", [text(c[3]) for c in contracts]),
        },
    )
    SQL.execute(
        "CREATE OR REPLACE TEMP TABLE mq_test_schedules AS SELECT key, frequency, day, "
        "mq_utc(anchor) AS billing_anchor_date, mq_utc(starting_at) AS starting_at, "
        "mq_utc(ending_before) AS ending_before, mq_utc(since) AS since FROM mq_test_docs"
    )
    rows = SQL.execute(
        started_periods_sql("mq_test_schedules") + " ORDER BY key, period_start",
        {"as_of": naive(as_of)},
    ).fetchall()
    out: dict[int, list[Period]] = {k: [] for k in range(len(contracts))}
    for key, start, end in rows:
        out[key].append(Period(utc(start), utc(end)))
    return out


contracts = st.tuples(
    schedules,
    instants,
    st.none() | st.integers(min_value=1, max_value=3_000),
    st.none() | instants,
).map(lambda t: (t[0], t[1], None if t[2] is None else t[1] + timedelta(days=t[2]), t[3]))


@settings(max_examples=150, deadline=None)
@given(st.lists(contracts, min_size=1, max_size=8), instants)
def test_sql_started_periods_equal_the_python_ones(rows, as_of):
    got = sql_started_periods(rows, as_of)
    for key, (schedule, start, end, since) in enumerate(rows):
        assert got[key] == started_periods(schedule, start, end, as_of, since=since), rows[key]


def test_sql_started_periods_at_month_ends_leap_days_and_microseconds():
    rows = [
        (sched("MONTHLY", "CONTRACT_START"), T("2024-01-31T10:00:00Z"), None, None),
        (sched("QUARTERLY"), T("2026-02-15T00:00:00.000001Z"), None, None),
        (sched("ANNUAL", "CONTRACT_START"), T("2024-02-29T00:00:00Z"), None, None),
        (sched("WEEKLY"), T("2026-03-01T12:00:00Z"), T("2026-05-01T00:00:00Z"), None),
        (sched("MONTHLY", "CUSTOM_DATE", "2027-08-31T06:00:00Z"), T("2026-01-15Z"), None, None),
        (sched("MONTHLY"), T("2026-01-01Z"), None, T("2026-03-01Z")),  # resumed after a freeze
        (sched("MONTHLY"), T("2026-01-01Z"), T("2026-03-01Z"), T("2026-03-01Z")),  # all frozen
    ]
    as_of = T("2026-06-01T00:00:00Z")
    got = sql_started_periods(rows, as_of)
    for key, (schedule, start, end, since) in enumerate(rows):
        assert got[key] == started_periods(schedule, start, end, as_of, since=since)
    assert spans(got[0][:2]) == [
        ("2024-01-31T10:00", "2024-02-29T10:00"),
        ("2024-02-29T10:00", "2024-03-31T10:00"),
    ]
    assert got[6] == []


def test_sql_timestamps_of_stored_documents_honour_their_offset():
    [(z, plus)] = SQL.execute(
        "SELECT mq_utc('2026-03-01T00:00:00.5Z'), mq_utc('2026-03-01T02:00:00+02:00')"
    ).fetchall()
    assert z == datetime(2026, 3, 1, 0, 0, 0, 500000)
    assert plus == datetime(2026, 3, 1)


def test_started_periods_sql_refuses_a_table_name_that_is_not_plain():
    with pytest.raises(ValueError, match="schedules table"):
        started_periods_sql("x; DROP TABLE contracts")
