"""Dedup by the staged transaction-id hash: a repeated hash only makes candidates; the ids
themselves decide, within the batch and against the stored events."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import ingest
from warehouse.ingest.dedup import find_duplicates

NOW = datetime(2026, 2, 1)


def test_equal_hashes_of_different_ids_are_not_duplicates(tmp_path: Path) -> None:
    home = Home.resolve(tmp_path / "home")
    home.init()
    stored = tmp_path / "stored.ndjson"
    event = {"customer_id": "c", "event_type": "e", "timestamp": "2026-01-20T00:00:00Z"}
    stored.write_text(json.dumps({"transaction_id": "tx-a", **event}), encoding="utf-8")
    assert ingest(home, [stored], now=NOW).accepted == 1

    work = duckdb.connect()
    (stored_hash,) = work.execute("SELECT hash('tx-a')").fetchall()[0]
    work.execute(
        "CREATE TEMP TABLE staged (pos BIGINT, transaction_id VARCHAR, tid_hash UBIGINT, "
        "ts TIMESTAMP, duplicate BOOLEAN)"
    )
    rows = [
        (1, "tx-b", stored_hash),  # the stored id's hash, another id: not a duplicate
        (2, "tx-a", stored_hash),  # the stored id: a duplicate
        (3, "tx-c", 42),  # a hash seen twice in the batch, two ids: no duplicate
        (4, "tx-d", 42),
        (5, "tx-e", 43),  # one id twice: the later copy is a duplicate
        (6, "tx-e", 43),
    ]
    for pos, tid, h in rows:
        work.execute(
            "INSERT INTO staged VALUES (?, ?, ?, TIMESTAMP '2026-01-20 00:00:00', NULL)",
            [pos, tid, h],
        )
    work.execute("CREATE TEMP VIEW valid AS SELECT pos, transaction_id, tid_hash, ts FROM staged")
    con = home.connect()
    try:
        assert find_duplicates(work, EventStore(home, con), NOW) == 2
    finally:
        con.close()
    assert work.execute("SELECT pos, against FROM duplicates ORDER BY pos").fetchall() == [
        (2, "warehouse"),
        (6, "batch"),
    ]
    flagged = work.execute("SELECT pos FROM staged WHERE duplicate ORDER BY pos").fetchall()
    assert flagged == [(2,), (6,)]


def test_an_integer_id_is_the_same_id_as_its_text(tmp_path: Path) -> None:
    """The staged hash is of the id's text: an integer column's 7, an NDJSON 7 and "7" are
    one transaction id, within a batch and against the stored events."""
    home = Home.resolve(tmp_path / "home")
    home.init()
    parquet = tmp_path / "ints.parquet"
    pq.write_table(
        pa.table(
            {
                "transaction_id": pa.array([7, 8], pa.int64()),
                "customer_id": ["c", "c"],
                "event_type": ["e", "e"],
                "timestamp": ["2026-01-20T00:00:00Z", "2026-01-20T00:00:01Z"],
            }
        ),
        parquet,
    )
    lines = tmp_path / "texts.ndjson"
    event = {"customer_id": "c", "event_type": "e", "timestamp": "2026-01-20T00:00:02Z"}
    lines.write_text(
        "\n".join(json.dumps({"transaction_id": t, **event}) for t in (7, "8", "9")),
        encoding="utf-8",
    )
    first = ingest(home, [parquet, lines], now=NOW)
    assert (first.accepted, first.duplicates) == (3, 2)
    assert first.duplicate_transaction_ids == ["7", "8"]
    again = ingest(home, [lines, parquet], now=NOW)
    assert (again.accepted, again.duplicates) == (0, 5)
