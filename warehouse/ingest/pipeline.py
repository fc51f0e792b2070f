"""One ingest batch, end to end: sources -> staged -> checks -> dedup -> files -> commit.

Python orchestrates; every step over the events is one DuckDB statement in a private in-memory
connection (`work`), so the work grows with the events only inside DuckDB.  The catalog
connection is used for the ledger, the manifest and the customer keys.  The whole ingest holds
the home's writer lock.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import ledger
from warehouse.ingest.dedup import find_duplicates
from warehouse.ingest.properties import (
    JSON_VALUES,
    discover_keys,
    json_entry_value,
    json_values_sql,
    key_counts,
    property_values,
)
from warehouse.ingest.readers import Plan, inspect_sources, stage
from warehouse.ingest.rejects import write_rejects
from warehouse.ingest.sources import Sources, resolve_sources
from warehouse.ingest.sqltext import first_row, ident, lit, lit_list
from warehouse.ingest.summary import IngestSummary, UnknownCustomer
from warehouse.ingest.write import (
    DATE_COLUMN,
    Constants,
    sorted_batches,
    sorted_batches_per_date,
    write_sorted,
)
from warehouse.layout import property_column

UNKNOWN_SHOWN = 20
# With more property keys than DENSE_KEYS, of which an event holds on average less than
# SPARSE_DENSITY, the events are sorted with their properties in one column and expanded per
# date (write.sorted_batches_per_date); otherwise with one column per key.
DENSE_KEYS = 32
SPARSE_DENSITY = 0.25


class Progress(Protocol):
    def advance(self, n: float = 1) -> None: ...

    def update(self, **kwargs: Any) -> None: ...


class _NoProgress:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, **kwargs: Any) -> None:
        pass


def _naive_utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo is None else ts.astimezone(UTC).replace(tzinfo=None)


def _wall() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_batch_id(at: datetime) -> str:
    return f"ingest-{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _work_connection(scratch: Path) -> duckdb.DuckDBPyConnection:
    work = duckdb.connect()
    work.execute("SET TimeZone = 'UTC'")
    work.execute("SET enable_progress_bar = false")
    work.execute(f"SET temp_directory = {lit(str(scratch / 'spill'))}")
    return work


def ingest(
    home: Home,
    paths: Sequence[str | os.PathLike[str]],
    *,
    now: datetime | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    progress: Progress | None = None,
) -> IngestSummary:
    """Ingest the event files at `paths` into `home` as one batch (see the package docstring).

    `now` is the ingest clock (naive means UTC; default: the wall clock).  `con` is an open
    catalog connection to use (default: a new one).  Raises `UserError` for a missing path, an
    unsupported file or a file whose columns have the wrong types, before anything is written."""
    started = time.perf_counter()
    sources = resolve_sources(paths)
    clock = _naive_utc(now) if now is not None else _wall()
    with home.writer_lock():
        catalog = con if con is not None else home.connect()
        try:
            return _run(home, catalog, sources, clock, progress or _NoProgress(), started)
        finally:
            if con is None:
                catalog.close()


def _run(
    home: Home,
    catalog: duckdb.DuckDBPyConnection,
    sources: Sources,
    clock: datetime,
    progress: Progress,
    started: float,
) -> IngestSummary:
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(now - mark, 4)
        mark = now

    batch_id = new_batch_id(_wall())
    ledger.sweep(home, catalog, batch_id, _wall())
    scratch = home.staging_dir / batch_id
    scratch.mkdir(parents=True)
    work = _work_connection(scratch)
    placed: list[Path] = []
    rejects_final = home.rejects_dir / f"{batch_id}.ndjson"
    try:
        progress.update(description="checking sources")
        files = list(sources.files)
        plan = inspect_sources(work, files)
        phase("inspect")
        ledger.start(catalog, batch_id, [f.name for f in files], clock, _wall())
        try:
            progress.update(description="reading")
            units = stage(work, plan, clock)
            phase("read_and_validate")

            progress.update(description="deduplicating")
            work.execute(
                "CREATE TEMP VIEW valid AS SELECT pos, transaction_id, ts FROM staged "
                "WHERE reason IS NULL"
            )
            duplicates = find_duplicates(work, EventStore(home, catalog))
            work.execute(
                "CREATE TEMP VIEW accepted AS SELECT * FROM staged "
                "WHERE reason IS NULL AND duplicate IS NULL"
            )
            phase("dedup")

            work.execute(
                """
                CREATE TEMP TABLE dims AS
                SELECT event_type, customer_id, count(*) AS events,
                       row_number() OVER (ORDER BY event_type, customer_id) AS k
                FROM accepted GROUP BY event_type, customer_id
                """
            )
            key_uses = key_counts(work, plan, "accepted")
            keys = sorted(set(plan.column_properties) | set(key_uses))
            counts, reasons, unknown, dup_ids = _counts(work, catalog)
            counts["duplicates"] = duplicates
            phase("summarise")

            rejects_staged = scratch / "rejects.ndjson"
            rejected = write_rejects(work, batch_id, files, units, plan.tables, rejects_staged)
            phase("rejects")

            progress.update(description="writing", total=counts["accepted"], completed=0)
            sparse = len(keys) > DENSE_KEYS and sum(key_uses.values()) < (
                SPARSE_DENSITY * len(keys) * max(1, counts["accepted"])
            )
            if not sparse:
                batches = sorted_batches(work, _write_query(plan, keys))
            else:
                batches = sorted_batches_per_date(
                    work, _narrow_query(), lambda d: _date_query(work, plan, d)
                )
            written = write_sorted(
                batches,
                scratch / "files",
                Constants(ingested_at=clock, batch_id=batch_id),
                on_rows=progress.advance,
            )
            phase("write")

            placed = ledger.place_files(home, batch_id, written)
            rejects_path = None
            if rejected:
                os.replace(rejects_staged, rejects_final)
                placed.append(rejects_final)
                rejects_path = str(rejects_final)
            ledger.commit(catalog, batch_id, written, counts, rejects_path, _wall())
            phase("commit")
        except BaseException as error:
            ledger.remove_quietly(placed)
            ledger.fail(catalog, batch_id, f"{type(error).__name__}: {error}", _wall())
            raise
    finally:
        work.close()
        shutil.rmtree(scratch, ignore_errors=True)

    return IngestSummary(
        accepted=counts["accepted"],
        duplicates=duplicates,
        rejected=counts["rejected"],
        rejects_path=rejects_path,
        batch_id=batch_id,
        received=counts["received"],
        reasons=reasons,
        unknown_customers=unknown,
        unknown_customer_keys=counts["unknown_customer_keys"],
        unknown_customer_events=counts["unknown_customer_events"],
        duplicate_transaction_ids=dup_ids,
        sources=[f.name for f in files],
        skipped=list(sources.skipped),
        clock=clock,
        files_written=len(written),
        elapsed_seconds=round(time.perf_counter() - started, 4),
        phases=phases,
    )


def _counts(
    work: duckdb.DuckDBPyConnection, catalog: duckdb.DuckDBPyConnection
) -> tuple[dict[str, int], dict[str, int], list[UnknownCustomer], list[str]]:
    received, rejected = first_row(
        work, "SELECT count(*), count(*) FILTER (WHERE reason IS NOT NULL) FROM staged"
    )
    accepted = int(first_row(work, "SELECT coalesce(sum(events), 0) FROM dims")[0])
    reasons = {
        r: int(n)
        for r, n in work.execute(
            "SELECT reason, count(*) FROM staged WHERE reason IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    }
    keys = catalog.sql("SELECT key FROM customer_keys").to_arrow_table()
    work.register("known_customer_keys", keys)
    unknown_rows = work.execute(
        """
        SELECT customer_id, sum(events) AS events FROM dims
        ANTI JOIN known_customer_keys k ON k.key = dims.customer_id
        GROUP BY customer_id ORDER BY events DESC, customer_id
        """
    ).fetchall()
    work.unregister("known_customer_keys")
    dup_ids = [
        t
        for (t,) in work.execute(
            "SELECT DISTINCT transaction_id FROM duplicates ORDER BY 1 LIMIT ?", [UNKNOWN_SHOWN]
        ).fetchall()
    ]
    counts = {
        "received": int(received),
        "rejected": int(rejected),
        "accepted": accepted,
        "unknown_customer_keys": len(unknown_rows),
        "unknown_customer_events": sum(int(n) for _, n in unknown_rows),
    }
    unknown = [
        UnknownCustomer(customer_id=c, events=int(n)) for c, n in unknown_rows[:UNKNOWN_SHOWN]
    ]
    return counts, reasons, unknown, dup_ids


def _narrow_query() -> str:
    """SQL: the accepted events sorted, their properties still in their staged shape."""
    return f"""
        SELECT s.*, CAST(s.ts AS DATE) AS {DATE_COLUMN}
        FROM accepted s
        JOIN dims d ON d.event_type = s.event_type AND d.customer_id = s.customer_id
        ORDER BY {DATE_COLUMN}, d.k, s.ts, s.pos
    """  # noqa: S608 - fixed SQL


def _date_query(
    work: duckdb.DuckDBPyConnection, plan: Plan, event_date: date
) -> tuple[str, str | None, list[str]]:
    """For one date of `sorted_events` (see write.sorted_batches_per_date): the SQL of its
    rows in order with the fixed columns and the column properties, the SQL of its JSON and MAP
    property values in long form (row, key index, value), and the keys."""
    day = f"DATE {lit(event_date.isoformat())}"
    rows = f"(SELECT * FROM sorted_events WHERE {DATE_COLUMN} = {day})"  # noqa: S608
    columns = "".join(f", {ident(property_column(n))}" for n in plan.column_properties)
    fixed = 'transaction_id, customer_id, event_type, ts AS "timestamp"'
    rows_sql = f"SELECT {fixed} {columns}, {DATE_COLUMN} FROM {rows} s"  # noqa: S608
    keys = discover_keys(work, plan, rows, columns=False)
    if not keys:
        return rows_sql, None, []
    numbered = f"(SELECT row_number() OVER () - 1 AS rn, * FROM {rows} s)"  # noqa: S608
    parts = []
    if plan.has_json:
        value = json_entry_value("kind", "value", "text", "marked")
        parts.append(
            f"""
            SELECT row, name, {value} AS value
            FROM (
                SELECT s.rn AS row, s.props_marked AS marked, e.key AS name, e.type AS kind,
                       CAST(e.value AS VARCHAR) AS value,
                       CASE WHEN e.type = 'VARCHAR' THEN json_extract_string(e.value, '$') END
                           AS text
                FROM {numbered} s, json_each(s.props_json) e
                WHERE s.props_json IS NOT NULL AND e.type <> 'NULL'
            )
            """  # noqa: S608 - fixed SQL
        )
    if plan.has_map:
        parts.append(
            f"""
            SELECT rn AS row, entry.key AS name, entry.value AS value
            FROM (SELECT rn, unnest(map_entries(props_map)) AS entry FROM {numbered} s
                  WHERE props_map IS NOT NULL)
            WHERE entry.value IS NOT NULL
            """  # noqa: S608 - fixed SQL
        )
    long_sql = f"""
        SELECT v.row, k.key, v.value
        FROM ({" UNION ALL ".join(parts)}) v
        JOIN (SELECT unnest({lit_list(keys)}) AS name, unnest(range({len(keys)})) AS key) k
          ON k.name = v.name
        ORDER BY k.key, v.row
    """  # noqa: S608 - keys rendered by sqlglot
    return rows_sql, long_sql, keys


def _write_query(plan: Plan, keys: list[str]) -> str:
    values = property_values(plan, keys, "s")
    json_values = json_values_sql(plan, keys)
    extra = f", {json_values} AS {JSON_VALUES}" if json_values else ""
    inner = f"SELECT *{extra} FROM accepted"  # noqa: S608 - fixed SQL
    props = "".join(f", {expr} AS {column}" for column, expr in values)
    return f"""
        SELECT s.transaction_id, s.customer_id, s.event_type, s.ts AS "timestamp" {props},
               CAST(s.ts AS DATE) AS {DATE_COLUMN}
        FROM ({inner}) s
        JOIN dims d ON d.event_type = s.event_type AND d.customer_id = s.customer_id
        ORDER BY {DATE_COLUMN}, d.k, s.ts, s.pos
    """  # noqa: S608 - names rendered by sqlglot
