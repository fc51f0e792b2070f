"""Deduplication by transaction_id, within the batch and against the committed warehouse.

A valid event whose transaction_id is already stored, or that an earlier record of the same
batch carries (earlier = smaller `pos`: file order, then line/row order), is a duplicate: not
stored, counted, not rejected.  Stored ids are read from the committed files only (the
`event_files` manifest) of the dedup window, `DEDUP_WINDOW` (the 34-day acceptance window plus
a day) read both ways: the files whose events reach back to it before the batch's earliest
valid event, and the files of the batches ingested (by their ingest clock) within it before
this batch's clock.  So an id accepted within 34 days is a duplicate even when its two
events' timestamps are further apart (a backdated first send, a retry stamped anew).

How (measured on 10M events, README "Ingest benchmarks"): first by the 64-bit hashes of the ids
(grouping or joining integers costs about half of doing it with the id strings), then exactly,
by the ids themselves, for the candidates only, so a hash collision never makes a duplicate:
ids repeated inside the batch are the rows whose hash is seen more than once; ids already
stored are the rows whose hash a stored id has, checked by a join on (hash, id) with the stored
ids.  New events usually have no candidates at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from warehouse.events import EventStore
from warehouse.ingest.sqltext import lit, path_list
from warehouse.sqlrows import first_row

DEDUP_WINDOW = timedelta(days=35)


def _window_start(ts: datetime) -> datetime:
    """`ts` - DEDUP_WINDOW, or the earliest datetime when that is before the year 1."""
    return ts - DEDUP_WINDOW if ts - datetime.min >= DEDUP_WINDOW else datetime.min


def find_duplicates(
    work: duckdb.DuckDBPyConnection,
    store: EventStore,
    clock: datetime,
    *,
    valid: str = "valid",
    earlier: Sequence[tuple[Path, Sequence[Path]]] = (),
) -> int:
    """Fill the relation `duplicates(pos, transaction_id, against)`, flag those rows of `staged`
    (column `duplicate`), and return how many there are.

    `clock` is the batch's ingest clock; `valid` names a relation of the batch's valid records
    (pos, transaction_id, tid_hash, ts), `tid_hash` being `hash(transaction_id)` (computed
    once, while staging).  `earlier`: the batch's earlier chunks (warehouse.ingest.chunks), each
    as (the hashes of its accepted ids, `save_hashes`; the files it wrote, not committed yet),
    read whatever their dates: their ids came first.  Their hashes are read first; their files
    only when a hash matches."""
    earliest: datetime | None = first_row(work, f"SELECT min(ts) FROM {valid}")[0]  # noqa: S608
    paths: list[str] = []
    if earliest is not None:
        by_time = store.files(start=_window_start(earliest))
        by_clock = store.files_ingested_since(_window_start(clock))
        paths = sorted({f.path for f in by_time} | {f.path for f in by_clock})
    if earlier and _hashes_match(work, [h for h, _ in earlier], valid):
        paths += [str(f) for _, files in earlier for f in files]
    work.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE batch_repeats AS
        SELECT pos, transaction_id FROM {valid}
        WHERE tid_hash IN (SELECT tid_hash FROM {valid} GROUP BY tid_hash HAVING count(*) > 1)
        """  # noqa: S608 - fixed SQL
    )
    work.execute(
        "CREATE OR REPLACE TEMP TABLE stored_duplicates (pos BIGINT, transaction_id VARCHAR)"
    )
    if paths:
        stored = f"read_parquet({path_list(paths)})"
        # one read of the stored ids: those whose hash a valid event's id has (usually none)
        work.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE stored_matches AS
            SELECT h, transaction_id
            FROM (SELECT hash(transaction_id) AS h, transaction_id FROM {stored})
            WHERE h IN (SELECT tid_hash FROM {valid})
            """  # noqa: S608 - paths rendered by sqlglot
        )
        work.execute(
            f"""
            INSERT INTO stored_duplicates
            SELECT pos, transaction_id
            FROM {valid} v
            SEMI JOIN stored_matches s ON s.h = v.tid_hash AND s.transaction_id = v.transaction_id
            """  # noqa: S608 - fixed SQL
        )
    work.execute(
        "CREATE OR REPLACE TEMP TABLE batch_duplicates (pos BIGINT, transaction_id VARCHAR)"
    )
    if first_row(work, "SELECT count(*) FROM batch_repeats")[0]:
        work.execute(
            """
            INSERT INTO batch_duplicates
            SELECT r.pos, r.transaction_id
            FROM batch_repeats r
            JOIN (SELECT transaction_id, min(pos) AS keep FROM batch_repeats
                  GROUP BY transaction_id HAVING count(*) > 1) f
              ON f.transaction_id = r.transaction_id
            WHERE r.pos <> f.keep
              AND r.transaction_id NOT IN (SELECT transaction_id FROM stored_duplicates)
            """
        )
    work.execute(
        """
        CREATE OR REPLACE TEMP VIEW duplicates AS
        SELECT pos, transaction_id, 'warehouse' AS against FROM stored_duplicates
        UNION ALL
        SELECT pos, transaction_id, 'batch' AS against FROM batch_duplicates
        """
    )
    count = int(first_row(work, "SELECT count(*) FROM duplicates")[0])
    if count:
        work.execute(
            "UPDATE staged SET duplicate = true WHERE pos IN (SELECT pos FROM stored_duplicates "
            "UNION ALL SELECT pos FROM batch_duplicates)"
        )
    return count


def save_hashes(work: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Keep the hashes of the accepted ids of `staged` in the Parquet file `path` (for the
    batch's later chunks: reading 8-byte hashes costs a fraction of hashing the stored ids)."""
    work.execute(
        f"COPY (SELECT tid_hash AS h FROM staged WHERE reason IS NULL AND duplicate IS NULL) "  # noqa: S608
        f"TO {lit(str(path))} (FORMAT parquet)"
    )


def _hashes_match(work: duckdb.DuckDBPyConnection, files: Sequence[Path], valid: str) -> bool:
    """Whether a hash kept in `files` (save_hashes) is the hash of a valid record's id."""
    hashes = f"read_parquet({path_list(files)})"
    sql = f"SELECT EXISTS (SELECT 1 FROM {hashes} WHERE h IN (SELECT tid_hash FROM {valid}))"  # noqa: S608
    return bool(first_row(work, sql)[0])
