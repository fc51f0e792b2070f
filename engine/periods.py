"""Statement periods of a contract (SEMANTICS.md section 6), all in UTC: in Python (one
contract: `iter_periods`, `started_periods`) and in SQL (every contract at once:
`STARTED_PERIODS`, what an invoice run uses; tests/test_periods.py checks both agree).

A contract's `usage_statement_schedule` says how often a statement period ends (`frequency`) and
where the boundaries fall (`day`):

- MONTHLY, QUARTERLY, ANNUAL: a boundary every 1, 3 or 12 months, on the anchor's day of the
  month and time of day.  An anchor day past a month's end falls on that month's last day, and
  the next boundary goes back to the anchor day (anchor Jan 31: Feb 28 or 29, Mar 31, Apr 30).
- WEEKLY: a boundary every 7 days, on the anchor's weekday and time of day.

The anchor (ours):

- FIRST_OF_MONTH: 00:00 UTC on the 1st of the month the contract starts in.  Quarters and years
  count from that month (a contract starting 2026-02-15, quarterly: Feb 15 - May 1, May 1 -
  Aug 1, ...).  With WEEKLY, where a "first of month" means nothing, weeks run Monday 00:00 UTC
  to Monday 00:00 UTC (ISO weeks).
- CONTRACT_START: the contract's `starting_at` (day, weekday and time of day).
- CUSTOM_DATE: the schedule's `billing_anchor_date` (it may lie before or after the start).

The first period runs from `starting_at` to the first boundary after it; each later period runs
from one boundary to the next; the last is cut at `ending_before`.  Periods are half-open
[start, end) and tile [starting_at, ending_before) with no gap and no overlap.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from warehouse.errors import UserError
from warehouse.models import AnchorDay, Frequency, UsageStatementSchedule

if TYPE_CHECKING:
    import duckdb

_MONTHS = {Frequency.MONTHLY: 1, Frequency.QUARTERLY: 3, Frequency.ANNUAL: 12}
_WEEK = timedelta(days=7)


@dataclass(frozen=True, order=True)
class Period:
    """One statement period, [start, end), aware UTC datetimes."""

    start: datetime
    end: datetime


def utc(ts: datetime) -> datetime:
    """An aware UTC datetime (naive means UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def naive(ts: datetime) -> datetime:
    """The naive UTC datetime DuckDB's TIMESTAMP columns hold."""
    return utc(ts).replace(tzinfo=None)


def parse_timestamp(value: datetime | str, option: str) -> datetime:
    """An ISO 8601 timestamp (an option's value, named `option` in errors) as naive UTC (naive
    input means UTC)."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = value.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise UserError(
                f"{option} {value!r} is not an ISO 8601 timestamp (expected e.g. "
                "2026-01-01T00:00:00Z; naive timestamps are UTC)"
            ) from None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise UserError(f"{option} {value!r} is outside the years 1 to 9999 in UTC") from None
    return moment


def iso(ts: datetime) -> str:
    """ISO 8601 UTC text with `Z` (naive means UTC)."""
    return utc(ts).isoformat().replace("+00:00", "Z")


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by `months` calendar months, its day clamped to the month's last day."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def anchor_of(schedule: UsageStatementSchedule, starting_at: datetime) -> datetime:
    """The instant the schedule's boundaries are counted from (see the module docstring)."""
    start = utc(starting_at)
    day = schedule.day
    if day is AnchorDay.CONTRACT_START:
        return start
    if day is AnchorDay.CUSTOM_DATE:
        assert schedule.billing_anchor_date is not None  # the model requires it
        return utc(schedule.billing_anchor_date)
    if day is AnchorDay.FIRST_OF_MONTH:
        if schedule.frequency is Frequency.WEEKLY:
            midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
            return midnight - timedelta(days=midnight.weekday())  # the Monday of that week
        return start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise AssertionError(f"unhandled anchor day {day!r}")


def _boundary(schedule: UsageStatementSchedule, anchor: datetime, k: int) -> datetime:
    """The k-th boundary counted from the anchor (k may be negative)."""
    frequency = schedule.frequency
    if frequency is Frequency.WEEKLY:
        return anchor + k * _WEEK
    if frequency in _MONTHS:
        return add_months(anchor, k * _MONTHS[frequency])
    raise AssertionError(f"unhandled frequency {frequency!r}")


def _first_index_after(schedule: UsageStatementSchedule, anchor: datetime, ts: datetime) -> int:
    """The smallest k with boundary(k) > ts."""
    if schedule.frequency is Frequency.WEEKLY:
        k = (ts - anchor) // _WEEK - 1
    else:
        step = _MONTHS[schedule.frequency]
        months = (ts.year - anchor.year) * 12 + (ts.month - anchor.month)
        k = months // step - 1
    while _boundary(schedule, anchor, k) > ts:
        k -= 1
    while _boundary(schedule, anchor, k) <= ts:
        k += 1
    return k


def iter_periods(
    schedule: UsageStatementSchedule,
    starting_at: datetime,
    ending_before: datetime | None = None,
    *,
    since: datetime | None = None,
) -> Iterator[Period]:
    """Every statement period of a contract, in order (endless when `ending_before` is None);
    with `since` (the end of the contract's latest frozen period), the periods from there on
    (found without walking the earlier ones): the first starts at `since` itself, which cuts
    a schedule period when `since` is not a boundary (the frozen period was cut by an
    `ending_before` the contract no longer has, or by another schedule)."""
    start = utc(starting_at)
    end = utc(ending_before) if ending_before is not None else None
    anchor = anchor_of(schedule, start)
    if since is not None and utc(since) > start:
        start = utc(since)
    k = _first_index_after(schedule, anchor, start)
    while end is None or start < end:
        boundary = _boundary(schedule, anchor, k)
        stop = boundary if end is None else min(boundary, end)
        yield Period(start, stop)
        start, k = stop, k + 1


def started_periods(
    schedule: UsageStatementSchedule,
    starting_at: datetime,
    ending_before: datetime | None,
    as_of: datetime,
    *,
    since: datetime | None = None,
) -> list[Period]:
    """The periods that have started by `as_of` (start <= as_of), in order; with `since`, only
    those starting at or after it."""
    limit = utc(as_of)
    out: list[Period] = []
    for period in iter_periods(schedule, starting_at, ending_before, since=since):
        if period.start > limit:
            break
        out.append(period)
    return out


# ---------------------------------------------------------------------------------------------
# The same rules in SQL, for every contract at once


def define_period_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Temp macros of the rules above, over naive UTC TIMESTAMPs and the schedule's enum texts:

    mq_utc(text)                    a stored document's ISO 8601 timestamp as naive UTC
    mq_months(frequency)            months between boundaries (NULL: WEEKLY)
    mq_anchor(start, frequency, day, billing_anchor_date)
    mq_boundary(anchor, months, k)  the k-th boundary (k may be negative); DuckDB's month
                                    arithmetic clamps the day to the month's last day, counted
                                    from the anchor each time, as `add_months` does
    mq_floor_index(anchor, months, ts)
                                    WEEKLY: the largest k with boundary(k) <= ts; months: the
                                    largest k whose boundary falls in ts's month or before, so
                                    the first boundary after ts is k or k + 1 (boundary(k + 1)
                                    falls in a later month)
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP MACRO mq_utc(text) AS (
            make_timestamp(epoch_us(CAST(text AS TIMESTAMPTZ))));
        CREATE OR REPLACE TEMP MACRO mq_fdiv(a, b) AS ((a - (((a % b) + b) % b)) // b);
        CREATE OR REPLACE TEMP MACRO mq_months(frequency) AS (
            CASE frequency WHEN 'MONTHLY' THEN 1 WHEN 'QUARTERLY' THEN 3 WHEN 'ANNUAL' THEN 12
            END);
        CREATE OR REPLACE TEMP MACRO mq_anchor(start, frequency, day, billing_anchor_date) AS (
            CASE day
                WHEN 'CONTRACT_START' THEN start
                WHEN 'CUSTOM_DATE' THEN billing_anchor_date
                WHEN 'FIRST_OF_MONTH' THEN
                    CASE WHEN frequency = 'WEEKLY' THEN date_trunc('week', start)
                         ELSE date_trunc('month', start) END
            END);
        CREATE OR REPLACE TEMP MACRO mq_boundary(anchor, months, k) AS (
            CASE WHEN months IS NULL THEN anchor + to_days(CAST(7 * k AS INTEGER))
                 ELSE anchor + to_months(CAST(k * months AS INTEGER)) END);
        CREATE OR REPLACE TEMP MACRO mq_floor_index(anchor, months, ts) AS (
            CASE WHEN months IS NULL
                 THEN mq_fdiv(epoch_us(ts) - epoch_us(anchor), 604800000000)
                 ELSE mq_fdiv((year(ts) - year(anchor)) * 12 + month(ts) - month(anchor), months)
            END);
        """
    )


# The periods started by $as_of of every schedule of the table `{schedules}` (columns key,
# starting_at, ending_before, frequency, day, billing_anchor_date, since: naive UTC timestamps
# and the schedule's enum texts): rows (key, period_start, period_end).  `started_periods` in
# SQL: with `since` (after the start), the periods from `since` on, the first starting at
# `since` itself.  first(ts), the index of the first boundary after ts, is floor_index(ts) +
# (boundary(floor_index) <= ts).
_STARTED_PERIODS = """
WITH anchored AS (
    SELECT key, starting_at, ending_before, anchor, months,
           -- the first period runs from from_ts to boundary(first(from_ts))
           CASE WHEN coalesce(since > starting_at, false) THEN since ELSE starting_at END
               AS from_ts
    FROM (SELECT *, mq_anchor(starting_at, frequency, day, billing_anchor_date) AS anchor,
                 mq_months(frequency) AS months
          FROM {schedules})
), floored AS (
    SELECT *, mq_floor_index(anchor, months, from_ts) AS k_from,
           mq_floor_index(anchor, months, $as_of) AS k_limit
    FROM anchored
), indexed AS (
    SELECT *,
           k_from + CASE WHEN mq_boundary(anchor, months, k_from) <= from_ts THEN 1 ELSE 0 END
               AS k_first,
           k_limit + CASE WHEN mq_boundary(anchor, months, k_limit) <= $as_of THEN 1 ELSE 0 END
               AS k_as_of
    FROM floored
), cut AS (
    SELECT key, ending_before,
           CASE WHEN k = k_first - 1 THEN from_ts
                ELSE mq_boundary(anchor, months, k) END AS period_start,
           mq_boundary(anchor, months, k + 1) AS boundary
    FROM (SELECT *, unnest(generate_series(k_first - 1, k_as_of - 1)) AS k FROM indexed)
)
SELECT key, period_start,
       CASE WHEN ending_before < boundary THEN ending_before ELSE boundary END AS period_end
FROM cut
WHERE period_start <= $as_of AND (ending_before IS NULL OR period_start < ending_before)
"""


def started_periods_sql(schedules: str) -> str:
    """The SELECT of the started periods of the schedules in the table `schedules` (an engine
    temp table's name; see _STARTED_PERIODS), with the parameter $as_of (naive UTC); needs
    define_period_macros."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schedules):
        raise ValueError(f"schedules table {schedules!r}: expected a plain lower-case name")
    return _STARTED_PERIODS.format(schedules=schedules)
