"""Compaction: many small ingest files of a date -> few large sorted ones, safely while readers run.

    from warehouse.compact import compact
    summary = compact(home)            # under the home's writer lock

Every ingest batch writes at least one file per event date it touches, so a home fed by many
small batches ends up with many small files per date, and every query opens all of them.
`compact` rewrites each date partition whose file count exceeds what its rows need
(ceil(rows / target_rows)), or whose files hold in their rare-key maps a key that a metric or
product reads (created after the files were written), as files of up to `target_rows` rows,
sorted like ingest sorts them (event_type, customer_id, timestamp; then transaction_id), with
the union of their properties laid out anew (warehouse.rare.arrange: a column per key, but the
rare keys of a file of many sparse keys in the maps of their buckets, except the keys metrics
and products read; a column with no value in a written file is left out of it, as ingest
does).

Per partition, in this order (the flow of an ingest batch, see warehouse.ingest.ledger):

1. DuckDB reads the partition's listed files (`union_by_name`) sorted, and the rows are written
   under temporary names in `staging/<compaction_id>/`.
2. Verification: the written files hold exactly the rows of the old ones: the same row count
   (also equal to the manifest's), and the same sums of a hash of every row (its fixed columns
   and its property values, wherever they are kept) and of every transaction_id.  A mismatch
   raises before anything visible changed.
3. The new files are renamed into `events/event_date=.../<compaction_id>-<n>.parquet` (still
   unlisted, so no reader sees them).
4. ONE catalog transaction: the old files' `event_files` rows are replaced by the new files'
   rows, the old paths are recorded in `retired_event_files`, the compaction is recorded in
   the ledger (`ingest_batches`, status `compacted`, sources = the replaced files), and the
   ingest batches of the rows are numbered for the invoice run (below).

Readers and the grace period.  Readers list files from the manifest and then open them, and a
reader that listed before the commit may still open an old file.  So old files are not deleted
at the commit: they stay at their paths for `grace` (default 30 minutes) and a later compaction
deletes them.  Guarantee: a query whose files were listed at most `grace` before it finishes
reading them reads a complete, consistent set (all old files or all new files of a partition,
never both: they are swapped in one transaction).  An ingest's orphan sweep
(warehouse.ingest.ledger.sweep) leaves retired files alone.

Dedup.  The new files hold exactly the same transaction ids (checked in step 2) and are listed
with the old files' timestamp range, and the compaction's ledger row carries the newest ingest
clock of the batches its rows came from (or its own time, if later), so a later ingest's
dedup (warehouse.ingest.dedup: by event time and by ingest time) still sees every stored
transaction_id it saw before: re-sending a compacted event is a duplicate.

Late events and auditing.  Every row keeps its own `batch_id` and `ingested_at` (the data is not
re-stamped).  The manifest row of a compacted file carries the compaction id as its batch_id;
in `invoice_event_batches` the compaction id is numbered with the greatest number of the
batches whose rows it holds (batches the invoice run had not numbered yet are first numbered as
the next invoice run would have numbered them), so the invoice run's late-event check (which
prunes files by their manifest batch and then joins rows on their own batch_id) keeps finding
exactly the events it found before.

Crash safety.  A crash before the commit leaves the old files listed and the new files
unlisted orphans, deleted by the next compaction or ingest (so nothing changed).  A crash after
the commit leaves the compaction complete; its old files are deleted after the grace period.
Each partition commits on its own: a crash mid-run keeps the partitions already committed.
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
from pydantic import BaseModel

from warehouse.catalog import Catalog
from warehouse.errors import UserError
from warehouse.home import Home
from warehouse.ingest.connection import open_work
from warehouse.ingest.ledger import (
    delete_unlisted_files,
    insert_manifest,
    naive_utc,
    place_files,
    remove_quietly,
    remove_staging,
    wall,
)
from warehouse.ingest.pipeline import NoProgress, Progress
from warehouse.ingest.sqltext import ident, lit, path_list
from warehouse.ingest.write import (
    BATCH_ROWS,
    MAX_ROWS_PER_FILE,
    WrittenFile,
    write_event_table,
)
from warehouse.layout import (
    EVENT_COLUMNS,
    is_property_column,
    is_rare_column,
    property_name,
)
from warehouse.sqlrows import first_row, rollback

COMPACTED = "compacted"
DEFAULT_GRACE = timedelta(minutes=30)
DEFAULT_TARGET_ROWS = MAX_ROWS_PER_FILE
SORT_KEY = ("event_type", "customer_id", "timestamp", "transaction_id")
PREFIX = "compact-"


class CompactedPartition(BaseModel):
    event_date: date
    files_before: int
    files_after: int
    rows: int
    bytes_before: int
    bytes_after: int


class CompactionSummary(BaseModel):
    """What `meterql warehouse compact` did."""

    compaction_id: str | None  # None when there was nothing to compact
    partitions: list[CompactedPartition]
    files_before: int
    files_after: int
    rows: int
    retired_files_deleted: int  # old files of earlier compactions, past their grace period
    orphan_files_deleted: int  # unlisted files left by an interrupted ingest or compaction
    grace_seconds: float
    elapsed_seconds: float

    def lines(self) -> list[str]:
        if not self.partitions:
            head = "nothing to compact"
        else:
            head = (
                f"compaction {self.compaction_id}: {len(self.partitions)} partitions, "
                f"{self.files_before} files -> {self.files_after}, {self.rows} events"
            )
        out = [head]
        out.extend(
            f"  {p.event_date}: {p.files_before} files -> {p.files_after}, {p.rows} events, "
            f"{p.bytes_before:,} -> {p.bytes_after:,} bytes"
            for p in self.partitions
        )
        if self.retired_files_deleted or self.orphan_files_deleted:
            out.append(
                f"deleted {self.retired_files_deleted} retired files (grace period over) and "
                f"{self.orphan_files_deleted} orphan files"
            )
        return out


@dataclass(frozen=True)
class _Listed:
    path: str  # relative to events/
    row_count: int
    min_timestamp: datetime
    max_timestamp: datetime


def new_compaction_id(at: datetime) -> str:
    return f"{PREFIX}{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def compact(
    home: Home,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    grace: timedelta = DEFAULT_GRACE,
    target_rows: int = DEFAULT_TARGET_ROWS,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> CompactionSummary:
    """Compact every partition that needs it (see the module docstring), under the writer lock.

    `grace`: how long replaced files stay readable; `target_rows`: rows per written file at
    most; `now`: the clock that decides which retired files are past their grace (default: the
    wall clock).  `con` is an open catalog connection to use (default: a new one)."""
    if grace < timedelta(0):
        raise UserError(f"compaction grace period {grace} is negative; expected 0 or more")
    if target_rows < 1:
        raise UserError(f"compaction target_rows {target_rows} is not a positive number of rows")
    started = time.perf_counter()
    with home.writer_lock(), home.catalog(con) as catalog:
        return _run(
            home,
            catalog,
            grace,
            target_rows,
            naive_utc(now) if now is not None else None,
            progress or NoProgress(),
            started,
        )


def _run(
    home: Home,
    catalog: duckdb.DuckDBPyConnection,
    grace: timedelta,
    target_rows: int,
    now: datetime | None,
    progress: Progress,
    started: float,
) -> CompactionSummary:
    retired_deleted = delete_expired(home, catalog, _retired_before(now or wall(), grace))
    orphans = sweep_orphans(home, catalog)
    kept = Catalog(catalog).metered_properties()
    plan = partitions_to_compact(catalog, target_rows, kept)
    compaction_id = new_compaction_id(wall()) if plan else None
    done: list[CompactedPartition] = []
    if compaction_id is not None:
        scratch = home.staging_dir / compaction_id
        scratch.mkdir(parents=True)
        progress.update(description="compacting", total=len(plan), completed=0)
        try:
            for event_date in plan:
                done.append(
                    _compact_partition(home, catalog, compaction_id, event_date, target_rows, kept)
                )
                progress.advance(1)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        # with a zero grace period, the files replaced just now go at once
        retired_deleted += delete_expired(home, catalog, _retired_before(now or wall(), grace))
    return CompactionSummary(
        compaction_id=compaction_id,
        partitions=done,
        files_before=sum(p.files_before for p in done),
        files_after=sum(p.files_after for p in done),
        rows=sum(p.rows for p in done),
        retired_files_deleted=retired_deleted,
        orphan_files_deleted=orphans,
        grace_seconds=grace.total_seconds(),
        elapsed_seconds=round(time.perf_counter() - started, 4),
    )


def _retired_before(now: datetime, grace: timedelta) -> datetime:
    """The retirement time at or before which retired files are past their grace period (a
    grace longer than the calendar reaches back keeps every retired file)."""
    try:
        return now - grace
    except OverflowError:
        return datetime.min


def partitions_to_compact(
    con: duckdb.DuckDBPyConnection, target_rows: int, kept: Set[str] = frozenset()
) -> list[date]:
    """Event dates whose listed files are more than their rows need (ceil(rows / target)), or
    hold in their rare-key maps a key of `kept` (the metered properties: a metric or product
    created after the files were written reads it)."""
    metered = Catalog(con).metered_in_maps(kept)
    rows = con.execute(
        "SELECT event_date, count(*), sum(row_count) FROM event_files GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return [
        d for d, files, n in rows if d in metered or files > max(1, math.ceil(int(n) / target_rows))
    ]


def _listed(con: duckdb.DuckDBPyConnection, event_date: date) -> list[_Listed]:
    return [
        _Listed(p, int(n), lo, hi)
        for p, n, lo, hi in con.execute(
            "SELECT path, row_count, min_timestamp, max_timestamp FROM event_files "
            "WHERE event_date = ? ORDER BY path",
            [event_date],
        ).fetchall()
    ]


def _source(paths: Sequence[Path]) -> str:
    return f"read_parquet({path_list(paths)}, union_by_name = true, hive_partitioning = false)"


def _present(work: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> list[str]:
    """The column names of the files (unioned by name)."""
    query = f"DESCRIBE SELECT * FROM {_source(paths)}"  # noqa: S608 - paths rendered by sqlglot
    return [r[0] for r in work.execute(query).fetchall()]


def _columns(work: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> list[str]:
    """The fixed columns in their order, then every property column of the files, sorted, then
    the maps of rare keys the files have, sorted."""
    names = _present(work, paths)
    missing = [c for c in EVENT_COLUMNS if c not in names]
    if missing:
        raise RuntimeError(f"event files {[str(p) for p in paths]} lack the columns {missing}")
    rare = sorted(n for n in names if is_rare_column(n))
    return [*EVENT_COLUMNS, *sorted(n for n in names if is_property_column(n)), *rare]


def _sum_sql(terms: Sequence[str]) -> str:
    """`terms` added as a balanced tree (thousands of terms stay a shallow expression)."""
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_sum_sql(terms[:half])} + {_sum_sql(terms[half:])})"


def _checksum(work: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> tuple[int, int, int]:
    """(rows, sum of a hash of every row, sum of a hash of every transaction_id) of the files.

    A row's hash does not depend on where its properties are kept (a column each, or a map of
    rare keys: compaction may move a key from one to the other, warehouse.rare.arrange): it is
    the hash of its fixed columns together with the sum, over every property value present, of
    the hash of (key, value).  (Hashed together, not added: with the sums only added, a value
    moved to another row would leave the total unchanged.)"""
    columns = _columns(work, paths)
    fixed = ", ".join(ident(c) for c in EVENT_COLUMNS)
    terms = ["0::HUGEINT"]
    for column in columns:
        if is_property_column(column):
            value = ident(column)
            name = lit(property_name(column))
            terms.append(
                f"CASE WHEN {value} IS NULL THEN 0 ELSE hash({name}, {value})::HUGEINT END"
            )
        elif is_rare_column(column):
            terms.append(
                f"coalesce(list_sum(list_transform(map_entries({ident(column)}), "
                "lambda e: hash(e.key, e.value)::HUGEINT)), 0)"
            )
    row_hash = f"hash({fixed}, {_sum_sql(terms)})::HUGEINT"
    count, rows, ids = first_row(
        work,
        f"SELECT count(*), coalesce(sum({row_hash}), 0), "  # noqa: S608 - sqlglot names
        f"coalesce(sum(hash(transaction_id)), 0) FROM {_source(paths)}",
    )
    return int(count), int(rows), int(ids)


def _sorted_batches(
    work: duckdb.DuckDBPyConnection, paths: Sequence[Path], columns: Sequence[str]
) -> Iterator[pa.RecordBatch]:
    select = ", ".join(ident(c) for c in columns)
    order = ", ".join(ident(c) for c in SORT_KEY)
    query = f"SELECT {select} FROM {_source(paths)} ORDER BY {order}"  # noqa: S608
    yield from work.sql(query).to_arrow_reader(BATCH_ROWS)


def write_compacted(
    batches: Iterator[pa.RecordBatch],
    directory: Path,
    target_rows: int,
    event_date: date,
    kept: Set[str] = frozenset(),
) -> list[WrittenFile]:
    """Write sorted `batches` of one date as files of at most `target_rows` rows, in order
    (`kept`: the metered properties, columns whatever their share, warehouse.rare)."""
    written: list[WrittenFile] = []
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if pending_rows:
            number = len(written)
            table = pa.Table.from_batches(pending)
            path = directory / f".tmp-{number}.parquet"
            stats = write_event_table(table, path, kept)
            written.append(
                WrittenFile(staged_path=path, number=number, event_date=event_date, **vars(stats))
            )
        pending, pending_rows = [], 0

    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(batch.num_rows - offset, target_rows - pending_rows)
            pending.append(batch.slice(offset, take))
            pending_rows += take
            offset += take
            if pending_rows >= target_rows:
                flush()
    flush()
    return written


def _compact_partition(
    home: Home,
    catalog: duckdb.DuckDBPyConnection,
    compaction_id: str,
    event_date: date,
    target_rows: int,
    kept: Set[str],
) -> CompactedPartition:
    old = _listed(catalog, event_date)
    old_paths = [home.events_dir / f.path for f in old]
    scratch = home.staging_dir / compaction_id / event_date.isoformat()
    scratch.mkdir(parents=True)
    work = open_work(home, f"{compaction_id}-{event_date.isoformat()}")
    placed: list[Path] = []
    try:
        columns = _columns(work, old_paths)
        before = _checksum(work, old_paths)
        listed_rows = sum(f.row_count for f in old)
        if before[0] != listed_rows:
            raise RuntimeError(
                f"partition {event_date}: the files hold {before[0]} rows, the manifest "
                f"says {listed_rows}; not compacting it"
            )
        batch_ids = [
            b
            for (b,) in work.execute(
                f"SELECT DISTINCT batch_id FROM {_source(old_paths)} ORDER BY 1"  # noqa: S608
            ).fetchall()
        ]
        (scratch / "files").mkdir()
        written = write_compacted(
            _sorted_batches(work, old_paths, columns),
            scratch / "files",
            target_rows,
            event_date,
            kept,
        )
        after = _checksum(work, [w.staged_path for w in written])
        if after != before:
            raise RuntimeError(
                f"partition {event_date}: compacted files do not hold the same rows "
                f"(rows/row hash/id hash {after} vs {before}); nothing changed"
            )
        bytes_before = sum(p.stat().st_size for p in old_paths)
        bytes_after = sum(w.staged_path.stat().st_size for w in written)
        placed = place_files(home, compaction_id, written)
        _commit_partition(catalog, compaction_id, event_date, old, written, batch_ids)
    except BaseException:
        if not _committed(catalog, compaction_id, event_date):
            remove_quietly(placed)
        raise
    finally:
        work.close()
    return CompactedPartition(
        event_date=event_date,
        files_before=len(old),
        files_after=len(written),
        rows=before[0],
        bytes_before=bytes_before,
        bytes_after=bytes_after,
    )


def _committed(con: duckdb.DuckDBPyConnection, compaction_id: str, event_date: date) -> bool:
    """Whether the partition's commit went through: its new files are listed and must stay (an
    interrupt, Ctrl-C or SIGTERM, can land just after its COMMIT returned)."""
    (listed,) = first_row(
        con,
        "SELECT count(*) FROM event_files WHERE batch_id = ? AND event_date = ?",
        [compaction_id, event_date],
    )
    return listed > 0


def _commit_partition(
    con: duckdb.DuckDBPyConnection,
    compaction_id: str,
    event_date: date,
    old: Sequence[_Listed],
    written: Sequence[WrittenFile],
    batch_ids: Sequence[str],
) -> None:
    """ONE transaction: swap the manifest rows, retire the old files, record the compaction in
    the ledger and number the row batches for the invoice run (see the module docstring)."""
    at = wall()
    old_paths = [f.path for f in old]
    con.execute("BEGIN TRANSACTION")
    try:
        [(still,)] = con.execute(
            "SELECT count(*) FROM event_files WHERE list_contains(?, path)", [old_paths]
        ).fetchall()
        if still != len(old):
            raise RuntimeError(
                f"partition {event_date}: the manifest changed during compaction "
                f"({still} of {len(old)} files still listed); nothing changed"
            )
        con.execute("DELETE FROM event_files WHERE list_contains(?, path)", [old_paths])
        insert_manifest(con, compaction_id, written)
        con.executemany(
            "INSERT INTO retired_event_files (path, compaction_id, retired_at) VALUES (?, ?, ?)",
            [[p, compaction_id, at] for p in old_paths],
        )
        rows = sum(w.row_count for w in written)
        # the files count as ingested when their newest rows were (ingest's dedup window by
        # ingest clock, warehouse.ingest.dedup), never earlier
        (newest,) = first_row(
            con,
            "SELECT max(clock) FROM ingest_batches WHERE list_contains(?, batch_id)",
            [list(batch_ids)],
        )
        clock = max(at, newest) if newest is not None else at
        con.execute(
            """
            INSERT INTO ingest_batches (batch_id, sources, status, clock, started_at,
                finished_at, received, accepted, duplicates, rejected, unknown_customer_events,
                message)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?)
            ON CONFLICT (batch_id) DO UPDATE SET
                sources = list_concat(ingest_batches.sources, excluded.sources),
                clock = greatest(ingest_batches.clock, excluded.clock),
                finished_at = excluded.finished_at,
                received = ingest_batches.received + excluded.received,
                accepted = ingest_batches.accepted + excluded.accepted,
                message = excluded.message
            """,
            [
                compaction_id,
                old_paths,
                COMPACTED,
                clock,
                at,
                at,
                rows,
                rows,
                f"compaction: replaced files are listed in sources; last partition {event_date}",
            ],
        )
        _number_batches(con, compaction_id, batch_ids)
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise


def _number_batches(
    con: duckdb.DuckDBPyConnection, compaction_id: str, batch_ids: Sequence[str]
) -> None:
    """Number the row batches the invoice run has not numbered yet (as its next run would: one
    number after the greatest), then give the compaction id the greatest number of its rows'
    batches (raised, never lowered, when a later partition of the same run adds batches)."""
    con.execute(
        """
        INSERT INTO invoice_event_batches
        SELECT b, (SELECT coalesce(max(seq), 0) + 1 FROM invoice_event_batches)
        FROM unnest(?::VARCHAR[]) t(b)
        WHERE b NOT IN (SELECT batch_id FROM invoice_event_batches)
        """,
        [list(batch_ids)],
    )
    [(seq,)] = con.execute(
        "SELECT max(seq) FROM invoice_event_batches WHERE list_contains(?, batch_id)",
        [list(batch_ids)],
    ).fetchall()
    con.execute(
        """
        INSERT INTO invoice_event_batches VALUES (?, ?)
        ON CONFLICT (batch_id) DO UPDATE SET seq = greatest(invoice_event_batches.seq, excluded.seq)
        """,
        [compaction_id, seq],
    )


def delete_expired(home: Home, con: duckdb.DuckDBPyConnection, before: datetime) -> int:
    """Delete the retired files retired at or before `before`; returns how many."""
    rows = [
        p
        for (p,) in con.execute(
            "SELECT path FROM retired_event_files WHERE retired_at <= ? ORDER BY path", [before]
        ).fetchall()
    ]
    for path in rows:
        (home.events_dir / path).unlink(missing_ok=True)
    if rows:
        con.execute("DELETE FROM retired_event_files WHERE list_contains(?, path)", [rows])
    _remove_empty_partitions(home)
    return len(rows)


def sweep_orphans(home: Home, con: duckdb.DuckDBPyConnection) -> int:
    """Delete event files neither listed nor retired (left by a crash before a commit) and the
    staging directories of interrupted compactions.  Call it holding the writer lock."""
    deleted = delete_unlisted_files(home, con)
    remove_staging(home, PREFIX)
    return deleted


def _partitions(home: Home) -> list[Path]:
    if not home.events_dir.is_dir():
        return []
    return [p for p in home.events_dir.iterdir() if p.is_dir()]


def _remove_empty_partitions(home: Home) -> None:
    for partition in _partitions(home):
        if not any(partition.iterdir()):
            partition.rmdir()
