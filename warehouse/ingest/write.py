"""Writing sorted event rows as Parquet files, streamed, with bounded memory.

DuckDB sorts the accepted events (by event date, event_type, customer_id, timestamp) and streams
them out as Arrow record batches; `write_sorted` cuts the stream into files (one per date, a
date of more than `MAX_ROWS_PER_FILE` rows into several) and row groups of `ROW_GROUP_SIZE`
rows, and pyarrow's Parquet writer writes each file row group by row group, `WRITERS` files at
a time on their own threads, while DuckDB keeps producing.  Each file's queue holds at most
`QUEUED_ROW_GROUPS` row groups, so the memory held outside DuckDB stays a few row groups
whatever the size of the batch (a 100M-event dump included).  Measured on the benchmark
machine (README "Ingest benchmarks"): DuckDB's partitioned COPY does not keep the sort order
inside a file when it runs on several threads, one COPY per date re-scans the whole batch per
date, and pyarrow's writer takes less CPU than DuckDB's for the same rows.

A file holds only the property columns that have a value in its rows (and, for many sparse
keys, the MAP columns of its rare keys: warehouse.rare).  The caller's `prepare` gives each row
group its final columns; a file's columns are those of its first row group (the columns its
date may hold), and a column that turns out to hold no value in the whole file is
dropped by rewriting the file, one row group at a time (rare: a date split into several files,
or a key sent only with JSON null values).  `write_event_table` writes one in-memory table the
same way (compaction).  Files are written into the batch's staging directory;
`ledger.place_files` renames them into `events/event_date=YYYY-MM-DD/<batch_id>-<n>.parquet`.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Set
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.layout import is_property_column, is_rare_column, property_column
from warehouse.rare import arrange, rare_keys

ROW_GROUP_SIZE = 122_880  # DuckDB's default; small enough for row-group pruning
MAX_ROWS_PER_FILE = 4_000_000  # a larger date is split into several files
BATCH_ROWS = ROW_GROUP_SIZE  # rows per Arrow batch read from DuckDB
WRITERS = 2  # files written at the same time, each on its own thread
QUEUED_ROW_GROUPS = 4  # row groups waiting to be written, per file

# A piece of the sorted stream: the event date of its rows, and the rows.
Piece = tuple[date, pa.RecordBatch]
# (event date, a row group's rows as they came) -> the row group's stored columns
Prepare = Callable[[date, pa.Table], pa.Table]


@dataclass(frozen=True)
class EventFileStats:
    """What the manifest records of a written event file."""

    row_count: int
    min_timestamp: datetime
    max_timestamp: datetime
    property_columns: tuple[str, ...]  # encoded names of the columns with a value in this file
    event_types: tuple[str, ...]
    integer_columns: tuple[str, ...]  # property columns whose every value is integer_text
    rare_properties: tuple[str, ...] = ()  # encoded names of the keys in its rare-key maps


@dataclass(frozen=True, kw_only=True)
class WrittenFile(EventFileStats):
    """A written event file: its manifest figures, and where it is until it is placed."""

    staged_path: Path  # where it was written (the batch's staging directory)
    number: int  # <n> of <batch_id>-<n>.parquet
    event_date: date


# The longest integer text that is a decimal of the metric (below 10^18: metric_compiler.numbers)
MAX_INTEGER_DIGITS = 18
# A column with at most this many values is checked in Python: files of many sparse keys have
# thousands of columns of a few values each, where the kernels' per-call cost dominated
# (measured: the check took 4.7 of the 2,000-sparse-keys ingest's 13 CPU-seconds).
FEW_VALUES = 64


def integer_text(column: pa.ChunkedArray | pa.Array) -> bool:
    """Every value of a string column (NULLs aside) is 1 to 18 ASCII digits: the text of a
    non-negative integer below 10^18, so an exact decimal of the metric (metric_compiler.numbers)
    that compiled queries read without their text check.  A sufficient test, not a necessary
    one (`-1` or `2.5` are decimals too): False only costs a query the check.  Dictionary
    chunks are judged by their dictionary (which may hold more values than the rows)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        values = chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk
        if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
            return False
        present = len(values) - values.null_count
        if present == 0:
            continue
        if present <= FEW_VALUES:  # cheaper in Python than four kernel calls
            texts = values.drop_null().to_pylist()
            if not all(
                0 < len(t) <= MAX_INTEGER_DIGITS and t.isascii() and t.isdigit() for t in texts
            ):
                return False
            continue
        digits = pc.ascii_is_decimal(values)
        if not pc.all(digits).as_py():
            return False
        if pc.max(pc.binary_length(values)).as_py() > MAX_INTEGER_DIGITS:
            return False
    return True


@dataclass(frozen=True)
class Constants:
    """The columns that are the same in every row of a batch (added here, not by DuckDB, so
    they cost neither a conversion nor an encoding per row)."""

    ingested_at: datetime
    batch_id: str


def with_constants(table: pa.Table, constants: Constants) -> pa.Table:
    """`table` with `ingested_at` and `batch_id` inserted after its `timestamp` column."""
    n = len(table)
    zeros = pa.nulls(n, pa.int32()).fill_null(0)
    ingested_at = pa.DictionaryArray.from_arrays(
        zeros, pa.array([constants.ingested_at], pa.timestamp("us"))
    ).cast(pa.timestamp("us"))
    batch_id = pa.DictionaryArray.from_arrays(zeros, pa.array([constants.batch_id]))
    at = table.column_names.index("timestamp") + 1
    table = table.add_column(at, "ingested_at", ingested_at)
    return table.add_column(at + 1, "batch_id", batch_id)


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        path,
        schema,
        compression="snappy",
        # unique ids and (sorted, mostly distinct) timestamps gain nothing from a dictionary;
        # every other column usually does
        use_dictionary=[c for c in schema.names if c not in ("transaction_id", "timestamp")],
    )


class _Stats:
    """The manifest figures of a file, gathered row group by row group."""

    def __init__(self) -> None:
        self.rows = 0
        self.low: datetime | None = None
        self.high: datetime | None = None
        self.event_types: set[str] = set()
        self.values: dict[str, int] = {}  # property column -> rows with a value
        self.integers: dict[str, bool] = {}  # property column -> integer_text so far
        self.rare: set[str] = set()  # keys held in the rare-key maps

    def add(self, table: pa.Table) -> None:
        self.rows += len(table)
        bounds = pc.min_max(table.column("timestamp"))
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        self.event_types.update(pc.unique(table.column("event_type")).to_pylist())
        for name, column in zip(table.column_names, table.columns, strict=True):
            if is_property_column(name):
                self.values[name] = self.values.get(name, 0) + len(column) - column.null_count
                if self.integers.get(name, True):  # a column that failed is not looked at again
                    self.integers[name] = integer_text(column)
            elif is_rare_column(name):
                self.values[name] = self.values.get(name, 0) + len(column) - column.null_count
                self.rare.update(rare_keys(column))

    def empty_columns(self) -> list[str]:
        return [name for name, n in self.values.items() if n == 0]

    def result(self, columns: Iterable[str]) -> EventFileStats:
        assert self.low is not None and self.high is not None
        empty = set(self.empty_columns())
        return EventFileStats(
            row_count=self.rows,
            min_timestamp=self.low,
            max_timestamp=self.high,
            property_columns=tuple(n for n in columns if is_property_column(n) and n not in empty),
            event_types=tuple(sorted(self.event_types)),
            integer_columns=tuple(
                n
                for n in columns
                if is_property_column(n) and n not in empty and self.integers.get(n, False)
            ),
            rare_properties=tuple(sorted(property_column(k) for k in self.rare)),
        )


def _drop_columns(path: Path, empty: list[str]) -> list[str]:
    """Rewrite the file at `path` without the columns `empty`, one row group at a time.
    Returns the columns kept."""
    source = pq.ParquetFile(path)
    keep = [n for n in source.schema_arrow.names if n not in set(empty)]
    schema = pa.schema([source.schema_arrow.field(n) for n in keep])
    rewritten = path.with_name(path.name + ".rewrite")
    writer = _writer(rewritten, schema)
    try:
        for i in range(source.num_row_groups):
            writer.write_table(source.read_row_group(i, columns=keep))
    finally:
        writer.close()
        source.close()
    os.replace(rewritten, path)
    return keep


def write_event_table(table: pa.Table, path: Path, kept: Set[str] = frozenset()) -> EventFileStats:
    """Write sorted event rows (every stored column) as one Parquet file, its properties laid
    out anew by warehouse.rare.arrange (`kept`: the keys that are columns whatever their share;
    property columns with no value in these rows left out); used by compaction."""
    table = arrange(table, kept)
    stats = _Stats()
    stats.add(table)
    table = table.drop_columns(stats.empty_columns())
    writer = _writer(path, table.schema)
    try:
        writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
    finally:
        writer.close()
    return stats.result(table.column_names)


_END = object()


@dataclass
class _FileJob:
    """One file being written: the producer queues its row groups, a writer thread writes
    them in order."""

    number: int
    event_date: date
    path: Path
    prepare: Prepare
    abort: threading.Event
    queue: queue.Queue = field(default_factory=lambda: queue.Queue(QUEUED_ROW_GROUPS))
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_rows: int = 0
    rows: int = 0  # rows handed over so far (queued or pending)
    future: Future[WrittenFile] | None = None

    def run(self) -> WrittenFile:
        writer: pq.ParquetWriter | None = None
        stats = _Stats()
        columns: list[str] = []
        try:
            while True:
                try:
                    item = self.queue.get(timeout=0.1)
                except queue.Empty:
                    if self.abort.is_set():
                        raise RuntimeError("write aborted") from None
                    continue
                if item is _END:
                    break
                if self.abort.is_set():
                    raise RuntimeError("write aborted")
                table = self.prepare(self.event_date, pa.Table.from_batches(item))
                if writer is None:
                    columns = table.column_names
                    writer = _writer(self.path, table.schema)
                elif table.column_names != columns:
                    table = table.select(columns)
                writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
                stats.add(table)
        finally:
            if writer is not None:
                writer.close()
        empty = stats.empty_columns()
        if empty:
            columns = _drop_columns(self.path, empty)
        return WrittenFile(
            staged_path=self.path,
            number=self.number,
            event_date=self.event_date,
            **vars(stats.result(columns)),
        )

    def put(self, item: object) -> None:
        """Queue `item`, waiting while the queue is full; a failed writer raises here."""
        while True:
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.future is not None and self.future.done():
                    self.future.result()  # raises the writer's error
                    raise RuntimeError(f"writer of file {self.number} stopped early") from None

    def flush(self) -> None:
        if self.pending:
            self.put(self.pending)
            self.pending, self.pending_rows = [], 0


def write_sorted(
    pieces: Iterable[Piece],
    directory: Path,
    prepare: Prepare,
    on_rows: Callable[[int], None] = lambda n: None,
    first_number: int = 0,
) -> list[WrittenFile]:
    """Write sorted event rows, arriving as consecutive `pieces` of a date each (dates in
    order), as Parquet files of at most MAX_ROWS_PER_FILE rows per date into `directory`,
    numbered from `first_number`.  `prepare` turns a row group's rows into its stored columns
    (in the writer's thread).  Returns the files, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs: list[_FileJob] = []
    abort = threading.Event()
    job: _FileJob | None = None

    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="meterql-write") as pool:

        def start(event_date: date) -> _FileJob:
            number = first_number + len(jobs)
            new = _FileJob(number, event_date, directory / f".tmp-{number}.parquet", prepare, abort)
            new.future = pool.submit(new.run)
            jobs.append(new)
            return new

        def finish(done: _FileJob) -> None:
            done.flush()
            done.put(_END)

        try:
            for event_date, piece in pieces:
                if job is not None and job.event_date != event_date:
                    finish(job)
                    job = None
                offset = 0
                while offset < piece.num_rows:
                    if job is None:
                        job = start(event_date)
                    take = min(
                        piece.num_rows - offset,
                        ROW_GROUP_SIZE - job.pending_rows,
                        MAX_ROWS_PER_FILE - job.rows,
                    )
                    job.pending.append(piece.slice(offset, take))
                    job.pending_rows += take
                    job.rows += take
                    offset += take
                    if job.pending_rows >= ROW_GROUP_SIZE:
                        job.flush()
                    if job.rows >= MAX_ROWS_PER_FILE:
                        finish(job)
                        job = None
                on_rows(piece.num_rows)
            if job is not None:
                finish(job)
            return [j.future.result() for j in jobs if j.future is not None]
        except BaseException:
            abort.set()
            raise


def split_by_date(
    batches: Iterable[pa.RecordBatch], dates: list[tuple[date, int]]
) -> Iterator[Piece]:
    """Cut a sorted stream into pieces of one date each, given every date's row count in
    order (the stream carries no date column).  Raises if the stream does not hold exactly
    those rows."""
    plan = iter(dates)
    current: tuple[date, int] | None = next(plan, None)
    left = current[1] if current else 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            while current is not None and left == 0:
                current = next(plan, None)
                left = current[1] if current else 0
            if current is None:
                raise RuntimeError("the sorted events hold more rows than their dates count")
            take = min(left, batch.num_rows - offset)
            yield current[0], batch.slice(offset, take)
            offset += take
            left -= take
    if left or next(plan, None) is not None:
        raise RuntimeError("the sorted events hold fewer rows than their dates count")
