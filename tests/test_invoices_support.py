"""Helpers of the invoice tests: catalog documents and committed event batches in a home.

`commit_events` writes one committed batch the way the warehouse lays it out (one Parquet file
per event date under events/, listed in the event_files manifest, a committed ingest_batches
row), so invoice tests control batches and ingest clocks exactly.  It holds no tests.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from engine.api import Meterql
from warehouse.layout import property_column

_batches = itertools.count(1)


def ts(text: str) -> datetime:
    """An aware UTC datetime from ISO text."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def naive(text: str) -> datetime:
    return ts(text).replace(tzinfo=None)


def apply_docs(mq: Meterql, tmp_path: Path, doc: dict[str, Any], name: str = "catalog") -> None:
    path = tmp_path / f"{name}-{next(_batches)}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    mq.apply([path])


def commit_events(
    mq: Meterql, events: list[dict[str, Any]], *, ingested_at: str = "2026-01-01T00:00:00Z"
) -> str:
    """Store `events` (Metronome-shaped dicts) as one committed batch; returns its id."""
    batch = f"batch-{next(_batches):04d}"
    con = mq.con
    clock = naive(ingested_at)
    by_date: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_date.setdefault(event["timestamp"][:10], []).append(event)
    con.execute(
        "INSERT INTO ingest_batches (batch_id, sources, status, clock, started_at, finished_at, "
        "received, accepted, duplicates, rejected) VALUES (?, ['test'], 'committed', ?, ?, ?, "
        "?, ?, 0, 0)",
        [batch, clock, clock, clock, len(events), len(events)],
    )
    for day, rows in sorted(by_date.items()):
        names = sorted({k for e in rows for k in e.get("properties", {})})
        columns: dict[str, pa.Array] = {
            "transaction_id": pa.array([e["transaction_id"] for e in rows], pa.string()),
            "customer_id": pa.array([e["customer_id"] for e in rows], pa.string()),
            "event_type": pa.array([e["event_type"] for e in rows], pa.string()),
            "timestamp": pa.array([naive(e["timestamp"]) for e in rows], pa.timestamp("us")),
            "ingested_at": pa.array([clock] * len(rows), pa.timestamp("us")),
            "batch_id": pa.array([batch] * len(rows), pa.string()),
        }
        for name in names:
            columns[property_column(name)] = pa.array(
                [e.get("properties", {}).get(name) for e in rows], pa.string()
            )
        relative = f"event_date={day}/{batch}-0.parquet"
        target = mq.home.events_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), target)
        stamps = [naive(e["timestamp"]) for e in rows]
        con.execute(
            "INSERT INTO event_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                relative,
                batch,
                day,
                len(rows),
                min(stamps),
                max(stamps),
                [property_column(n) for n in names],
                sorted({e["event_type"] for e in rows}),
            ],
        )
    return batch


def event(
    tx: str,
    customer: str,
    timestamp: str,
    event_type: str = "llm_request",
    **properties: str,
) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "customer_id": customer,
        "event_type": event_type,
        "timestamp": timestamp,
        "properties": properties,
    }
