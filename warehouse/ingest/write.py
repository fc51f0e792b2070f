"""Writing the accepted events as hive-partitioned Parquet files (under temporary names).

DuckDB sorts the accepted events by (event date, event_type, customer_id, timestamp) and
streams them out as Arrow record batches; each date's rows go to their own file(s), written by
pyarrow's Parquet writer on a small thread pool while DuckDB keeps producing.  Measured on the
benchmark machine (README "Ingest benchmarks"): DuckDB's partitioned COPY does not keep the sort
order inside a file when it runs on several threads, and one COPY per date re-scans the whole
batch per date; the sorted stream keeps the order exactly and costs less.

The sort key uses dense integer codes of (event_type, customer_id) (`dims`, ranked in string
order), which sorts the same as the strings and several times faster.  Each file holds only the
property columns that have a value in its rows, so sparse keys do not widen every file.
Files are written into the batch's staging directory; `ledger.place_files` renames them into
`events/event_date=YYYY-MM-DD/<batch_id>-<n>.parquet`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.layout import is_property_column, property_column

ROW_GROUP_SIZE = 122_880  # DuckDB's default; small enough for row-group pruning
MAX_ROWS_PER_FILE = 4_000_000  # a larger date is split into several files
BATCH_ROWS = 262_144
DATE_COLUMN = "__event_date"


@dataclass(frozen=True)
class WrittenFile:
    staged_path: Path  # where it was written (the batch's staging directory)
    number: int  # <n> of <batch_id>-<n>.parquet
    event_date: date
    row_count: int
    min_timestamp: datetime
    max_timestamp: datetime
    property_columns: tuple[str, ...]  # encoded names of the columns with a value in this file
    event_types: tuple[str, ...]


def _date_runs(batch: pa.RecordBatch) -> Iterator[tuple[date, pa.RecordBatch]]:
    """Split a batch sorted by date into one slice per date."""
    encoded = pc.run_end_encode(batch.column(DATE_COLUMN))
    start = 0
    for value, end in zip(encoded.values.to_pylist(), encoded.run_ends.to_pylist(), strict=True):
        yield value, batch.slice(start, end - start)
        start = end


@dataclass(frozen=True)
class Constants:
    """The columns that are the same in every row of a batch (added here, not by DuckDB, so
    they cost neither a conversion nor an encoding per row)."""

    ingested_at: datetime
    batch_id: str


def _with_constants(table: pa.Table, constants: Constants) -> pa.Table:
    n = len(table)
    zeros = pa.nulls(n, pa.int32()).fill_null(0)
    ingested_at = pa.DictionaryArray.from_arrays(
        zeros, pa.array([constants.ingested_at], pa.timestamp("us"))
    ).cast(pa.timestamp("us"))
    batch_id = pa.DictionaryArray.from_arrays(zeros, pa.array([constants.batch_id]))
    at = table.column_names.index("timestamp") + 1
    table = table.add_column(at, "ingested_at", ingested_at)
    return table.add_column(at + 1, "batch_id", batch_id)


def _write_file(
    pieces: list[pa.RecordBatch],
    event_date: date,
    number: int,
    directory: Path,
    constants: Constants,
) -> WrittenFile:
    table = _with_constants(pa.Table.from_batches(pieces).drop_columns([DATE_COLUMN]), constants)
    path = directory / f".tmp-{number}.parquet"
    stats = write_event_table(table, path)
    return WrittenFile(staged_path=path, number=number, event_date=event_date, **vars(stats))


@dataclass(frozen=True)
class EventFileStats:
    """What the manifest records of a written event file."""

    row_count: int
    min_timestamp: datetime
    max_timestamp: datetime
    property_columns: tuple[str, ...]  # encoded names of the columns with a value in this file
    event_types: tuple[str, ...]


def write_event_table(table: pa.Table, path: Path) -> EventFileStats:
    """Write sorted event rows as one Parquet file (property columns with no value in these
    rows left out); used by ingest and by compaction."""
    empty = [
        name
        for name in table.column_names
        if is_property_column(name) and table.column(name).null_count == len(table)
    ]
    table = table.drop_columns(empty)
    pq.write_table(
        table,
        path,
        row_group_size=ROW_GROUP_SIZE,
        compression="snappy",
        # unique ids gain nothing from a dictionary; every other column usually does
        use_dictionary=[c for c in table.column_names if c != "transaction_id"],
    )
    bounds = pc.min_max(table.column("timestamp"))
    return EventFileStats(
        row_count=len(table),
        min_timestamp=bounds["min"].as_py(),
        max_timestamp=bounds["max"].as_py(),
        property_columns=tuple(n for n in table.column_names if is_property_column(n)),
        event_types=tuple(sorted(pc.unique(table.column("event_type")).to_pylist())),
    )


def sorted_batches(work: duckdb.DuckDBPyConnection, query: str) -> Iterator[pa.RecordBatch]:
    """The Arrow batches of one sorted query (the dense case: few property keys)."""
    yield from work.sql(query).to_arrow_reader(BATCH_ROWS)


def sorted_batches_per_date(
    work: duckdb.DuckDBPyConnection,
    narrow_query: str,
    date_queries: Callable[[date], tuple[str, str | None, list[str]]],
) -> Iterator[pa.RecordBatch]:
    """The sparse case (many property keys): sorting rows that carry one column per key would
    move every absent value too (measured: 26 s for 100k events with 2,000 sparse keys), and
    extracting every key from every row costs rows x keys in DuckDB.  So the events are sorted
    with their properties still in their staged shape (`narrow_query`, into a temp table, in
    order); then per date, `date_queries(d)` gives the SQL of the date's rows in that order
    (fixed columns and column properties), the SQL of its other property values in long form
    (row, key, value: only the values present), and the keys; `_pivot` makes them columns."""
    work.execute(f"CREATE OR REPLACE TEMP TABLE sorted_events AS {narrow_query}")
    dates = [
        d
        for (d,) in work.execute(
            f"SELECT DISTINCT {DATE_COLUMN} FROM sorted_events ORDER BY 1"  # noqa: S608
        ).fetchall()
    ]
    for event_date in dates:
        rows_sql, long_sql, keys = date_queries(event_date)
        table = work.sql(rows_sql).to_arrow_table()
        if long_sql is not None:
            table = _pivot(table, work.sql(long_sql).to_arrow_table(), keys)
        yield from table.to_batches(BATCH_ROWS)


def _pivot(table: pa.Table, long: pa.Table, keys: list[str]) -> pa.Table:
    """Add one column per key to `table` from `long` (row, key, value), sorted by key then row:
    a key's values go to its rows, other rows get NULL; a property column of the same name
    keeps its values and takes the key's where it has none."""
    positions = pa.array(range(len(table)), pa.int64())
    names = list(table.column_names)
    arrays = list(table.columns)
    where = {name: i for i, name in enumerate(names)}
    long = long.combine_chunks()
    runs = pc.run_end_encode(long.column("key").chunk(0)) if len(long) else None
    if runs is None:
        return table
    start = 0
    for key_index, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist(), strict=True):
        rows = long.column("row").slice(start, end - start)
        values = long.column("value").slice(start, end - start)
        start = end
        column = pc.take(values, pc.index_in(positions, value_set=rows))
        name = property_column(keys[key_index])
        if name in where:
            arrays[where[name]] = pc.coalesce(arrays[where[name]], column)
        else:
            where[name] = len(names)
            names.append(name)
            arrays.append(column)
    return pa.table(arrays, names=names)


def write_sorted(
    batches: Iterable[pa.RecordBatch],
    directory: Path,
    constants: Constants,
    on_rows: Callable[[int], None] = lambda n: None,
) -> list[WrittenFile]:
    """Write accepted events, arriving in `batches` sorted by DATE_COLUMN first (every stored
    column but the `constants`), as one or more Parquet files per date into `directory`.
    Returns the files, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Future[WrittenFile]] = []
    pending: list[pa.RecordBatch] = []
    pending_date: date | None = None
    pending_rows = 0

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="meterql-write") as pool:

        def flush() -> None:
            nonlocal pending, pending_rows
            if pending and pending_date is not None:
                # bound the memory held by batches waiting to be written
                while sum(not f.done() for f in written) >= 2:
                    next(f for f in written if not f.done()).result()
                written.append(
                    pool.submit(
                        _write_file, pending, pending_date, len(written), directory, constants
                    )
                )
            pending, pending_rows = [], 0

        for batch in batches:
            for event_date, piece in _date_runs(batch):
                schema_changed = bool(pending) and piece.schema != pending[0].schema
                if (
                    event_date != pending_date
                    or pending_rows >= MAX_ROWS_PER_FILE
                    or schema_changed
                ):
                    flush()
                    pending_date = event_date
                pending.append(piece)
                pending_rows += piece.num_rows
            on_rows(batch.num_rows)
        flush()
        return [f.result() for f in written]
