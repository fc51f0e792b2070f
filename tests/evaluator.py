"""An independent, pure-Python evaluator of billable metrics (SEMANTICS.md section 2).

It does not import the compiler: it reads the metric's fields and the events directly, with
`Decimal`, so the SQL the compiler emits can be checked against it.  Slow on purpose (one loop
over events); for tests only.

Decisions it shares with meterql's documentation (README / metric_compiler):
- a number is a plain decimal: optional sign, ASCII digits with an optional fraction (or a
  fraction alone), at most 12 fractional digits, magnitude below 10^18; anything else is not a
  finite decimal and the event does not count for SUM, MAX or LATEST (a group with no valid
  value has no row);
- UNIQUE counts distinct strings; LATEST takes the greatest (timestamp, transaction_id).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

DIGITS = frozenset("0123456789")
LIMIT = Decimal(10) ** 18
MAX_FRACTION_DIGITS = 12


@dataclass(frozen=True)
class Event:
    transaction_id: str
    customer_id: str
    event_type: str
    timestamp: datetime  # naive UTC
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WindowRow:
    customer_id: str
    window_id: str
    window_start: datetime
    window_end: datetime


def finite_decimal(text: str) -> Decimal | None:
    """The value of `text` if it is a plain finite decimal of the metric, else None."""
    body = text[1:] if text[:1] in ("+", "-") else text
    whole, _dot, fraction = body.partition(".")
    if not whole and not fraction:
        return None
    if any(c not in DIGITS for c in whole) or any(c not in DIGITS for c in fraction):
        return None
    if len(fraction) > MAX_FRACTION_DIGITS:
        return None
    value = Decimal(text)
    return value if value.copy_abs() < LIMIT else None


def _get(metric: Any, name: str) -> Any:
    return metric.get(name) if isinstance(metric, dict) else getattr(metric, name)


def _filter_dict(f: Any) -> dict[str, Any]:
    return f if isinstance(f, dict) else f.model_dump()


def event_matches(metric: Any, event: Event) -> bool:
    """The filters of SEMANTICS.md section 2, read literally."""
    etf = _get(metric, "event_type_filter")
    if etf is not None:
        etf = _filter_dict(etf)
        if etf.get("in_values") is not None and event.event_type not in etf["in_values"]:
            return False
        if etf.get("not_in_values") is not None and event.event_type in etf["not_in_values"]:
            return False
    for pf in _get(metric, "property_filters") or []:
        pf = _filter_dict(pf)
        name = pf["name"]
        present = name in event.properties
        value = event.properties.get(name)
        if pf.get("exists") is True and not present:
            return False
        if pf.get("exists") is False and present:
            return False
        if pf.get("in_values") is not None and (not present or value not in pf["in_values"]):
            return False
        if pf.get("not_in_values") is not None:
            if present and value in pf["not_in_values"]:
                return False
            if not present and pf.get("exists") is True:
                return False
    return True


def _buckets(
    event: Event,
    window: str | Sequence[WindowRow],
    start: datetime | None,
    end: datetime | None,
) -> list[tuple[Any, ...]]:
    """The window keys an event falls in: (start, end) pairs, or (window_id,) for relations."""
    if not isinstance(window, str):
        return [
            (w.window_id,)
            for w in window
            if w.customer_id == event.customer_id
            and w.window_start <= event.timestamp < w.window_end
        ]
    assert start is not None and end is not None
    if not (start <= event.timestamp < end):
        return []
    if window == "none":
        return [(start, end)]
    ts = event.timestamp
    if window == "hour":
        lo, step = ts.replace(minute=0, second=0, microsecond=0), timedelta(hours=1)
    elif window == "day":
        lo, step = ts.replace(hour=0, minute=0, second=0, microsecond=0), timedelta(days=1)
    else:
        raise ValueError(window)
    return [(max(lo, start), min(lo + step, end))]


def evaluate(
    metric: Any,
    events: Iterable[Event],
    *,
    window: str | Sequence[WindowRow] = "none",
    start: datetime | None = None,
    end: datetime | None = None,
    group_by: Sequence[str] = (),
    customer_ids: Sequence[str] | None = None,
) -> list[tuple[Any, ...]]:
    """Rows (customer_id, metric_id, *window key, *group values, value), sorted."""
    agg = str(_get(metric, "aggregation_type")).upper().split(".")[-1]
    key = _get(metric, "aggregation_key")
    metric_id = _get(metric, "id") or _get(metric, "name")
    groups: dict[tuple[Any, ...], list[Event]] = defaultdict(list)
    for event in events:
        if customer_ids is not None and event.customer_id not in customer_ids:
            continue
        if not event_matches(metric, event):
            continue
        if agg in ("SUM", "MAX", "LATEST"):
            if finite_decimal(event.properties.get(key, "")) is None:
                continue
        group = tuple(event.properties.get(g) for g in group_by)
        for bucket in _buckets(event, window, start, end):
            groups[(event.customer_id, *bucket, *group)].append(event)

    rows = []
    with localcontext() as exact:
        exact.prec = 100  # wide enough that no sum of DECIMAL(38, 12) values is rounded
        for group_key, members in groups.items():
            rows.append(_aggregate(agg, key, metric_id, group_key, members))
    return sorted(rows, key=_sort_key)


def _aggregate(
    agg: str, key: str, metric_id: str, group_key: tuple[Any, ...], members: list[Event]
) -> tuple[Any, ...]:
    if agg == "COUNT":
        value = Decimal(len(members))
    elif agg == "SUM":
        value = sum((finite_decimal(e.properties[key]) for e in members), Decimal(0))
    elif agg == "MAX":
        value = max(finite_decimal(e.properties[key]) for e in members)
    elif agg == "UNIQUE":
        value = Decimal(len({e.properties[key] for e in members}))
    elif agg == "LATEST":
        last = max(members, key=lambda e: (e.timestamp, e.transaction_id))
        value = finite_decimal(last.properties[key])
    else:
        raise ValueError(agg)
    customer, rest = group_key[0], group_key[1:]
    return (customer, metric_id, *rest, value)


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, "" if v is None else v) for v in row)


# ---------------------------------------------------------------------------------------------
# Fixture events into DuckDB (the canonical relation the compiler reads; no compiler import)


def load_events(
    con: Any, events: Sequence[Event], properties: Iterable[str] = (), table: str = "events"
) -> None:
    """Create `table` with the canonical columns and one VARCHAR column per property."""
    import pyarrow as pa
    from sqlglot import exp

    from warehouse.layout import property_column

    names = list(dict.fromkeys([*properties, *(k for e in events for k in e.properties)]))
    columns: dict[str, Any] = {
        "transaction_id": pa.array([e.transaction_id for e in events], pa.string()),
        "customer_id": pa.array([e.customer_id for e in events], pa.string()),
        "event_type": pa.array([e.event_type for e in events], pa.string()),
        "timestamp": pa.array([e.timestamp for e in events], pa.timestamp("us")),
    }
    for name in names:
        columns[property_column(name)] = pa.array(
            [e.properties.get(name) for e in events], pa.string()
        )
    data = pa.table(columns)  # noqa: F841 - read by DuckDB's replacement scan below
    target = exp.to_table(table).sql("duckdb")
    con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM data")  # noqa: S608


def load_windows(con: Any, windows: Sequence[WindowRow], table: str = "windows") -> None:
    import pyarrow as pa
    from sqlglot import exp

    data = pa.table(  # noqa: F841 - read by DuckDB's replacement scan below
        {
            "customer_id": pa.array([w.customer_id for w in windows], pa.string()),
            "window_id": pa.array([w.window_id for w in windows], pa.string()),
            "window_start": pa.array([w.window_start for w in windows], pa.timestamp("us")),
            "window_end": pa.array([w.window_end for w in windows], pa.timestamp("us")),
        }
    )
    target = exp.to_table(table).sql("duckdb")
    con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM data")  # noqa: S608


# ---------------------------------------------------------------------------------------------
# The fixture events of the golden tests (seeded, so the golden expectations are stable)

NUMBER_TEXTS = (
    "10", "2.5", "-0", "+7", ".5", "5.", "-3.25", "150.5", "0.000000000001", "12.000000000001",
    "9999999999999999999", "1e5", "  3", "3 ", "NaN", "Infinity", "-Infinity", "",
    "abc", "1_000", "0x10", "0.1234567890123", "1" * 40, "١٢", "1,5",
)  # fmt: skip
FIXTURE_START = datetime(2026, 1, 1)
FIXTURE_END = datetime(2026, 1, 4)


def fixture_events(n: int = 400, seed: int = 7) -> list[Event]:
    import random

    rnd = random.Random(seed)
    events = []
    for i in range(n):
        props: dict[str, str] = {}
        if rnd.random() < 0.85:
            props["tokens"] = (
                rnd.choice(NUMBER_TEXTS) if rnd.random() < 0.3 else str(rnd.randint(1, 500))
            )
        if rnd.random() < 0.8:
            props["model"] = rnd.choice(["gpt-4o", "o3", "Model-X", "gpt-4o-mini"])
        if rnd.random() < 0.6:
            props["region"] = rnd.choice(["us-east-1", "eu-west-1", "ap-south-1"])
        if rnd.random() < 0.7:
            props["user"] = f"u{rnd.randint(1, 6)}"
        minute = rnd.randint(-120, 3 * 24 * 60 + 60)  # some events fall outside the period
        events.append(
            Event(
                transaction_id=f"t{rnd.randint(0, 10**6):07d}-{i}",
                customer_id=rnd.choice(["c1", "c1", "c2", "c3", "c'4"]),
                event_type=rnd.choice(["llm_request", "llm_request", "embedding", "api_call"]),
                # minutes repeat, so LATEST meets timestamp ties broken by transaction_id
                timestamp=FIXTURE_START + timedelta(minutes=minute - minute % 7),
                properties=props,
            )
        )
    # One decoy per customer that every filter shape of the golden tests excludes (api_call, no
    # model, region eu-west-1) with the largest value and the latest timestamp, so MAX and
    # LATEST change whenever a filter works.
    for customer in ("c1", "c2", "c3", "c'4"):
        events.append(
            Event(
                transaction_id=f"zz-decoy-{customer}",
                customer_id=customer,
                event_type="api_call",
                timestamp=FIXTURE_END - timedelta(minutes=1),
                properties={"tokens": "999", "region": "eu-west-1", "user": "u1"},
            )
        )
    return events


def fixture_windows() -> list[WindowRow]:
    day = timedelta(days=1)
    s = FIXTURE_START
    return [
        WindowRow("c1", "w1", s, s + day),
        WindowRow("c1", "w2", s + timedelta(hours=12), s + 2 * day),  # overlaps w1
        WindowRow("c2", "w3", s + day, s + 3 * day),
        WindowRow("c'4", "w4", s - day, s + 5 * day),
        WindowRow("nobody", "w5", s, s + 3 * day),
    ]
