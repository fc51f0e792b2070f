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
    unknown: list[UnknownCustomer]  # the first UNKNOWN_SHOWN
    unknown_customer_keys: int
    unknown_customer_events: int
    duplicate_ids: list[str]  # up to UNKNOWN_SHOWN, smallest first
    dates: list[tuple[date, int]]  # accepted events per event date, in date order
    key_uses: dict[str, int]  # property name -> accepted events that carry it
    date_keys: dict[date, set[str]]  # property names that may have a value on that date

    def ledger_counts(self, duplicates: int) -> dict[str, int]:
        return {
            "received": self.received,
            "rejected": self.rejected,
            "accepted": self.accepted,
            "duplicates": duplicates,
            "unknown_customer_events": self.unknown_customer_events,
        }


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
    unknown_rows = _unknown_customers(work, catalog)
    return BatchCounts(
        received=received,
        rejected=sum(reasons.values()),
        accepted=sum(n for _, n in dates),
        reasons=reasons,
        unknown=[
            UnknownCustomer(customer_id=c, events=int(n)) for c, n in unknown_rows[:UNKNOWN_SHOWN]
        ],
        unknown_customer_keys=len(unknown_rows),
        unknown_customer_events=sum(int(n) for _, n in unknown_rows),
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
            GROUP BY customer_id ORDER BY events DESC, customer_id
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
