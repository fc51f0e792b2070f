"""The ingest ledger (`ingest_batches`), the file manifest (`event_files`) and crash recovery.

A batch moves staged -> committed | failed.  Its files are written under temporary names in
`staging/<batch_id>/`, renamed into `events/event_date=.../<batch_id>-<n>.parquet`, and become
visible only when `commit` inserts their manifest rows and marks the batch committed, in one
catalog transaction (readers read only the manifest).  A crash at any point before that commit
leaves files nobody reads; `sweep`, run at the start of every ingest under the writer lock,
deletes them and marks such batches failed.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse.home import Home
from warehouse.ingest.write import WrittenFile
from warehouse.layout import PARTITION_COLUMN
from warehouse.sqlrows import rollback

STAGED, COMMITTED, FAILED = "staged", "committed", "failed"


def wall() -> datetime:
    """The wall clock, naive UTC (the times the ledger records)."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo is None else ts.astimezone(UTC).replace(tzinfo=None)


def final_name(batch_id: str, file: WrittenFile) -> str:
    """The file's path relative to events/ (`batch_id`: an ingest batch or a compaction)."""
    return f"{PARTITION_COLUMN}={file.event_date.isoformat()}/{batch_id}-{file.number}.parquet"


def start(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    sources: Sequence[str],
    clock: datetime,
    started_at: datetime,
) -> None:
    con.execute(
        "INSERT INTO ingest_batches (batch_id, sources, status, clock, started_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [batch_id, list(sources), STAGED, clock, started_at],
    )


def fail(con: duckdb.DuckDBPyConnection, batch_id: str, message: str, at: datetime) -> None:
    con.execute(
        "UPDATE ingest_batches SET status = ?, finished_at = ?, message = ? WHERE batch_id = ?",
        [FAILED, at, message[:2000], batch_id],
    )


def move_file(source: Path, target: Path) -> None:
    """Move `source` to `target` atomically: a rename, or, when `target` is on another file
    system (events/ or rejects/ linked to another disk: the rename fails with EXDEV), a copy
    under a temporary name beside `target` renamed into place, then `source` removed.  The
    temporary copy of an interrupted move ends in `.parquet` / `.ndjson` and is not listed,
    so `sweep` deletes it."""
    try:
        os.replace(source, target)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    partial = target.with_name(f".copy-{target.name}")
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    source.unlink()


def place_files(home: Home, batch_id: str, files: Sequence[WrittenFile]) -> list[Path]:
    """Rename the staged files into events/ (still invisible: not in the manifest).  If a
    rename fails, the files placed before it are removed again."""
    placed: list[Path] = []
    try:
        for file in files:
            target = home.events_dir / final_name(batch_id, file)
            target.parent.mkdir(parents=True, exist_ok=True)
            move_file(file.staged_path, target)
            placed.append(target)
    except BaseException:
        remove_quietly(placed)
        raise
    return placed


def insert_manifest(
    con: duckdb.DuckDBPyConnection, batch_id: str, files: Sequence[WrittenFile]
) -> None:
    """The `event_files` rows of placed files (inside the caller's transaction)."""
    if not files:
        return
    con.executemany(
        "INSERT INTO event_files (path, batch_id, event_date, row_count, min_timestamp, "
        "max_timestamp, property_columns, event_types, integer_columns, rare_properties) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [
                final_name(batch_id, f),
                batch_id,
                f.event_date,
                f.row_count,
                f.min_timestamp,
                f.max_timestamp,
                list(f.property_columns),
                list(f.event_types),
                list(f.integer_columns),
                list(f.rare_properties),
            ]
            for f in files
        ],
    )


def commit(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    files: Sequence[WrittenFile],
    counts: dict[str, int],
    rejects_path: str | None,
    finished_at: datetime,
) -> None:
    """One transaction: the batch's manifest rows, and the batch marked committed."""
    con.execute("BEGIN TRANSACTION")
    try:
        insert_manifest(con, batch_id, files)
        con.execute(
            """
            UPDATE ingest_batches SET status = ?, finished_at = ?, received = ?, accepted = ?,
                duplicates = ?, rejected = ?, unknown_customer_events = ?, rejects_path = ?
            WHERE batch_id = ?
            """,
            [
                COMMITTED,
                finished_at,
                counts["received"],
                counts["accepted"],
                counts["duplicates"],
                counts["rejected"],
                counts["unknown_customer_events"],
                rejects_path,
                batch_id,
            ],
        )
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise


def committed(con: duckdb.DuckDBPyConnection, batch_id: str) -> bool:
    """Whether the batch's commit went through: a failure handler must not undo a committed
    batch (an interrupt, Ctrl-C or SIGTERM, can land just after its COMMIT returned)."""
    rows = con.execute("SELECT status FROM ingest_batches WHERE batch_id = ?", [batch_id])
    return rows.fetchall() == [(COMMITTED,)]


def remove_quietly(paths: Sequence[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def sweep(home: Home, con: duckdb.DuckDBPyConnection, by_batch: str, at: datetime) -> int:
    """Clean up after batches that never committed (a crash or a kill mid-ingest).

    Marks `staged` batches failed, and deletes event files that are neither in the manifest nor
    retired by a compaction and still in their grace period, the
    rejects files of uncommitted batches and every staging directory.  Call it holding the
    writer lock (no other ingest can be running).  Returns the number of files deleted."""
    con.execute(
        "UPDATE ingest_batches SET status = ?, finished_at = ?, message = ? WHERE status = ?",
        [FAILED, at, f"interrupted before commit; cleaned up by batch {by_batch}", STAGED],
    )
    committed = {
        b
        for (b,) in con.execute(
            "SELECT batch_id FROM ingest_batches WHERE status = ?", [COMMITTED]
        ).fetchall()
    }
    deleted = delete_unlisted_files(home, con)
    if home.rejects_dir.is_dir():
        for path in home.rejects_dir.iterdir():
            if path.is_file() and path.name.removesuffix(".ndjson") not in committed:
                path.unlink()
                deleted += 1
    remove_staging(home, "ingest-")
    return deleted


def remove_staging(home: Home, prefix: str) -> None:
    """Remove the staging directories of commands named `prefix...` that no longer run, and
    their DuckDB spill directories in the home's default temp directory (one elsewhere, under
    METERQL_TEMP_DIRECTORY, may belong to another home's running command and is left alone).
    Only under the writer lock."""
    for parent in (home.staging_dir, home.default_temp_dir):
        if parent.is_dir():
            for path in parent.iterdir():
                if path.is_dir() and path.name.startswith(prefix):
                    shutil.rmtree(path, ignore_errors=True)


def delete_unlisted_files(home: Home, con: duckdb.DuckDBPyConnection) -> int:
    """Delete the event files neither in the manifest nor retired by a compaction and still in
    their grace period (warehouse.compact deletes those), and empty partition directories;
    returns how many files.  Only under the writer lock: no batch may be between placing its
    files and committing them."""
    listed = {
        p
        for (p,) in con.execute(
            "SELECT path FROM event_files UNION ALL SELECT path FROM retired_event_files"
        ).fetchall()
    }
    deleted = 0
    events = home.events_dir
    if not events.is_dir():
        return 0
    for partition in events.iterdir():
        if not partition.is_dir():
            continue
        for path in partition.iterdir():
            relative = f"{partition.name}/{path.name}"
            if path.is_file() and path.suffix == ".parquet" and relative not in listed:
                path.unlink()
                deleted += 1
        if not any(partition.iterdir()):
            partition.rmdir()
    return deleted
