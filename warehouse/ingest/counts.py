"""What a batch holds, counted in a few DuckDB aggregates after dedup.

- `dims`: one row per (event_type, customer_id) of the accepted events, with its event count
  and `k`, its rank in string order from 0 (the write sort key, and what the sorted stream
  carries instead of the two strings);
- per event date: the accepted events and, per property, how many carry it (the write path
  cuts the sorted stream by these counts and gives each date's files only the property
  columns that date may hold);
- received, rejected and per reason; unknown customer keys; some duplicate ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from warehouse.ingest.readers import Plan
from warehouse.ingest.sqltext import ident
from warehouse.ingest.summary import UnknownCustomer
from warehouse.layout import property_column

UNKNOWN_SHOWN = 20


@dataclass(frozen=True)
class BatchCounts:
    received: int
    rejected: int
    accepted: int
    reasons: dict[str, int]
    unknown_events: dict[str, int]  # unknown customer key -> its accepted events
    duplicate_ids: list[str]  # up to UNKNOWN_SHOWN, smallest first
    dates: list[tuple[date, int]]  # accepted events per event date, in date order
    key_uses: dict[str, int]  # property name -> accepted events that carry it
    date_keys: dict[date, set[str]]  # property names that may have a value on that date

    @property
    def unknown(self) -> list[UnknownCustomer]:
        """The unknown customer keys with the most events (the first UNKNOWN_SHOWN)."""
        ranked = sorted(self.unknown_events.items(), key=lambda kv: (-kv[1], kv[0]))
        return [UnknownCustomer(customer_id=c, events=n) for c, n in ranked[:UNKNOWN_SHOWN]]

    @property
    def unknown_customer_keys(self) -> int:
        return len(self.unknown_events)

    @property
    def unknown_customer_events(self) -> int:
        return sum(self.unknown_events.values())

    def __add__(self, later: BatchCounts) -> BatchCounts:
        """The counts of two chunks of one batch (warehouse.ingest.chunks), `later` read after
        this one."""
        by_date = dict(self.dates)
        for day, n in later.dates:
            by_date[day] = by_date.get(day, 0) + n
        date_keys = {day: set(keys) for day, keys in self.date_keys.items()}
        for day, keys in later.date_keys.items():
            date_keys.setdefault(day, set()).update(keys)
        return BatchCounts(
            received=self.received + later.received,
            rejected=self.rejected + later.rejected,
            accepted=self.accepted + later.accepted,
            reasons=_added(self.reasons, later.reasons),
            unknown_events=_added(self.unknown_events, later.unknown_events),
            duplicate_ids=sorted(set(self.duplicate_ids) | set(later.duplicate_ids))[
                :UNKNOWN_SHOWN
            ],
            dates=sorted(by_date.items()),
            key_uses=_added(self.key_uses, later.key_uses),
            date_keys=date_keys,
        )

    def ledger_counts(self, duplicates: int) -> dict[str, int]:
        return {
            "received": self.received,
            "rejected": self.rejected,
            "accepted": self.accepted,
            "duplicates": duplicates,
            "unknown_customer_events": self.unknown_customer_events,
        }


def _added(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    """Two counts by key, added (keys in sorted order)."""
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(a.keys() | b.keys())}


def count_batch(
    work: duckdb.DuckDBPyConnection, catalog: duckdb.DuckDBPyConnection, plan: Plan
) -> BatchCounts:
    """Count the batch (see the module docstring); creates the temp table `dims`.  Reads the
    relations `staged`, `accepted` and `duplicates` of the work connection."""
    work.execute(
        """
        CREATE OR REPLACE TEMP TABLE dims AS
        SELECT event_type, customer_id, count(*) AS events,
               CAST(row_number() OVER (ORDER BY event_type, customer_id) - 1 AS INTEGER) AS k
        FROM accepted GROUP BY event_type, customer_id
        """
    )
    by_reason = work.execute("SELECT reason, count(*) FROM staged GROUP BY reason").fetchall()
    reasons = {r: int(n) for r, n in sorted(by_reason, key=lambda x: str(x[0])) if r is not None}
    received = sum(int(n) for _, n in by_reason)
    dates, uses, date_keys = _per_date(work, plan)
    return BatchCounts(
        received=received,
        rejected=sum(reasons.values()),
        accepted=sum(n for _, n in dates),
        reasons=reasons,
        unknown_events={c: int(n) for c, n in _unknown_customers(work, catalog)},
        duplicate_ids=_some_duplicate_ids(work),
        dates=dates,
        key_uses=uses,
        date_keys=date_keys,
    )


def _per_date(
    work: duckdb.DuckDBPyConnection, plan: Plan
) -> tuple[list[tuple[date, int]], dict[str, int], dict[date, set[str]]]:
    """Accepted events per date, and the property keys: events per key and keys per date.
    Column properties are counted by value (NULL = absent); JSON and MAP keys by the keys
    their objects list (a key sent only with JSON null is counted but holds no value)."""
    names = plan.column_properties
    counts = "".join(f", count({ident(property_column(n))})" for n in names)
    rows = work.execute(
        f"SELECT CAST(ts AS DATE) AS d, count(*) {counts} FROM accepted "  # noqa: S608
        "GROUP BY d ORDER BY d"
    ).fetchall()
    dates = [(row[0], int(row[1])) for row in rows]
    uses: dict[str, int] = {}
    date_keys: dict[date, set[str]] = {d: set() for d, _ in dates}
    for row in rows:
        for name, n in zip(names, row[2:], strict=True):
            if n:
                uses[name] = uses.get(name, 0) + int(n)
                date_keys[row[0]].add(name)
    for column, keys_of, present in (
        ("props_json", "json_keys(props_json)", plan.has_json),
        ("props_map", "map_keys(props_map)", plan.has_map),
    ):
        if not present:
            continue
        for day, key, n in work.execute(
            f"SELECT d, key, count(*) FROM (SELECT CAST(ts AS DATE) AS d, unnest({keys_of}) "  # noqa: S608
            f"AS key FROM accepted WHERE {column} IS NOT NULL) GROUP BY d, key"
        ).fetchall():
            uses[key] = uses.get(key, 0) + int(n)
            date_keys[day].add(key)
    return dates, uses, date_keys


def _unknown_customers(
    work: duckdb.DuckDBPyConnection, catalog: duckdb.DuckDBPyConnection
) -> list[tuple[str, int]]:
    keys = catalog.sql("SELECT key FROM customer_keys").to_arrow_table()
    work.register("known_customer_keys", keys)
    try:
        return work.execute(
            """
            SELECT customer_id, sum(events) AS events FROM dims
            ANTI JOIN known_customer_keys k ON k.key = dims.customer_id
            GROUP BY customer_id
            """
        ).fetchall()
    finally:
        work.unregister("known_customer_keys")


def _some_duplicate_ids(work: duckdb.DuckDBPyConnection) -> list[str]:
    """The smallest UNKNOWN_SHOWN distinct duplicate transaction ids (a top-N of the rows
    first; only when ids repeat among them, the distinct ids of all duplicates)."""
    top = [
        t
        for (t,) in work.execute(
            "SELECT transaction_id FROM duplicates ORDER BY 1 LIMIT ?", [UNKNOWN_SHOWN]
        ).fetchall()
    ]
    distinct = list(dict.fromkeys(top))
    if len(distinct) == len(top):
        return distinct
    return [
        t
        for (t,) in work.execute(
            "SELECT DISTINCT transaction_id FROM duplicates ORDER BY 1 LIMIT ?", [UNKNOWN_SHOWN]
        ).fetchall()
    ]
