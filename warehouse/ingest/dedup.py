"""Deduplication by transaction_id, within the batch and against the committed warehouse.

A valid event whose transaction_id is already stored, or that an earlier record of the same
batch carries (earlier = smaller `pos`: file order, then line/row order), is a duplicate: not
stored, counted, not rejected.  Stored ids are read from the committed files only (the
`event_files` manifest), restricted to files whose events reach back to
`DEDUP_WINDOW` before the batch's earliest valid event (the 34-day acceptance window plus a day).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from warehouse.events import EventStore
from warehouse.ingest.sqltext import first_row, lit_list

DEDUP_WINDOW = timedelta(days=35)


def find_duplicates(
    work: duckdb.DuckDBPyConnection, store: EventStore, *, valid: str = "valid"
) -> int:
    """Fill temp table `duplicates(pos, transaction_id, against)`, flag those rows of `staged`
    (column `duplicate`), and return how many there are.

    `valid` names a relation of the batch's valid records (pos, transaction_id, ts)."""
    earliest: datetime | None = first_row(work, f"SELECT min(ts) FROM {valid}")[0]  # noqa: S608
    files = store.files(start=earliest - DEDUP_WINDOW) if earliest is not None else []
    work.execute(
        "CREATE OR REPLACE TEMP TABLE stored_duplicates (pos BIGINT, transaction_id VARCHAR)"
    )
    if files:
        paths = lit_list(f.path for f in files)
        work.execute(
            f"""
            INSERT INTO stored_duplicates
            SELECT pos, transaction_id FROM {valid}
            SEMI JOIN (SELECT transaction_id FROM read_parquet({paths}, union_by_name=true)) w
                ON w.transaction_id = {valid}.transaction_id
            """  # noqa: S608 - paths rendered by sqlglot
        )
    work.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE duplicates AS
        SELECT pos, transaction_id, 'warehouse' AS against FROM stored_duplicates
        UNION ALL
        SELECT v.pos, v.transaction_id, 'batch' AS against
        FROM {valid} v
        JOIN (SELECT transaction_id, min(pos) AS keep FROM {valid}
              GROUP BY transaction_id HAVING count(*) > 1) f
          ON f.transaction_id = v.transaction_id
        WHERE v.pos <> f.keep
          AND v.transaction_id NOT IN (SELECT transaction_id FROM stored_duplicates)
        """  # noqa: S608 - fixed SQL
    )
    count = int(first_row(work, "SELECT count(*) FROM duplicates")[0])
    if count:
        work.execute("UPDATE staged SET duplicate = true WHERE pos IN (SELECT pos FROM duplicates)")
    return count
