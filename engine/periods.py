"""Statement periods of a contract (SEMANTICS.md section 6): pure Python, all in UTC.

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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from warehouse.models import AnchorDay, Frequency, UsageStatementSchedule

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
    with `since`, only the periods that start at or after it (found without walking the
    earlier ones)."""
    start = utc(starting_at)
    end = utc(ending_before) if ending_before is not None else None
    anchor = anchor_of(schedule, start)
    k = _first_index_after(schedule, anchor, start)
    if since is not None and utc(since) > start:
        # the first boundary at or after `since` starts the first period wanted
        k = _first_index_after(schedule, anchor, utc(since) - timedelta(microseconds=1))
        start = _boundary(schedule, anchor, k)
        k += 1
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
