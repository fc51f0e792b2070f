"""Usage windows: the time spans a metric is aggregated over.

    Window.none(start, end)    one window [start, end) per customer
    Window.hour(start, end)    one window per UTC hour with events, clipped to [start, end)
    Window.day(start, end)     one window per UTC day with events, clipped to [start, end)
    Window.relation(expr)      the windows of a relation with the columns
                               (customer_id, window_id, window_start, window_end): an event
                               counts in every window of its customer with
                               window_start <= timestamp < window_end (windows may differ per
                               customer and may overlap); results are per window_id
    Window.relation(expr, boundaries=[t0, t1, ...])
                               the same, and every window_start and window_end is one of the
                               given times: the compiler then joins events to windows by
                               (customer, slice) instead of by a time range (see
                               usage_query: "slices"); a window whose bounds are not among
                               them makes the query fail, never miscount

`start` and `end` are datetimes (naive means UTC; aware ones are converted) or sqlglot
expressions such as the query parameters `$start` / `$end` (see `meterql compile`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlglot import exp

from warehouse.errors import UserError

Bound = datetime | exp.Expression


class WindowKind(enum.StrEnum):
    NONE = "none"
    HOUR = "hour"
    DAY = "day"
    RELATION = "relation"


# The columns a windows relation must have.
WINDOW_COLUMNS = ("customer_id", "window_id", "window_start", "window_end")


def _naive_utc(value: Bound) -> Bound:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def format_ts(value: datetime) -> str:
    return value.isoformat(sep="T", timespec="auto") + "Z"


@dataclass(frozen=True)
class Window:
    kind: WindowKind
    start: Bound | None = None
    end: Bound | None = None
    windows: exp.Expression | None = None
    boundaries: tuple[datetime, ...] | None = None

    @classmethod
    def _bounded(cls, kind: WindowKind, start: Bound, end: Bound) -> Window:
        start, end = _naive_utc(start), _naive_utc(end)
        if isinstance(start, datetime) and isinstance(end, datetime) and start >= end:
            raise UserError(
                f"start {format_ts(start)} is not before end {format_ts(end)}; the usage window "
                "[start, end) would be empty"
            )
        return cls(kind, start, end)

    @classmethod
    def none(cls, start: Bound, end: Bound) -> Window:
        return cls._bounded(WindowKind.NONE, start, end)

    @classmethod
    def hour(cls, start: Bound, end: Bound) -> Window:
        return cls._bounded(WindowKind.HOUR, start, end)

    @classmethod
    def day(cls, start: Bound, end: Bound) -> Window:
        return cls._bounded(WindowKind.DAY, start, end)

    @classmethod
    def relation(
        cls, windows: exp.Expression, boundaries: Sequence[datetime] | None = None
    ) -> Window:
        """Per-customer windows from a relation (a table or a SELECT; see the module doc),
        optionally with the times every window starts and ends at (`boundaries`, any order)."""
        if boundaries is None:
            return cls(WindowKind.RELATION, windows=windows)
        times = sorted({_naive_utc(b) for b in boundaries})  # type: ignore[type-var]
        if len(times) < 2:
            raise ValueError("relation window boundaries need at least two distinct times")
        return cls(WindowKind.RELATION, windows=windows, boundaries=tuple(times))  # type: ignore[arg-type]

    @classmethod
    def parse(cls, kind: str, start: Bound, end: Bound) -> Window:
        """`--window none|hour|day` (any case)."""
        choices = (WindowKind.NONE, WindowKind.HOUR, WindowKind.DAY)
        value = kind.strip().lower()
        for choice in choices:
            if value == choice.value:
                return cls._bounded(choice, start, end)
        raise UserError(
            f"--window {kind!r} is not a usage window; expected one of "
            + ", ".join(c.value for c in choices)
        )
