"""Helpers of the invoice tests: catalog documents, and events stored through the real ingest
pipeline (one call = one committed batch, with a pinned ingest clock).  It holds no tests."""

from __future__ import annotations

import itertools
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from engine.api import Meterql
from warehouse.ingest import ingest

_files = itertools.count(1)


def ts(text: str) -> datetime:
    """An aware UTC datetime from ISO text."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def apply_docs(mq: Meterql, tmp_path: Path, doc: dict[str, Any], name: str = "catalog") -> Any:
    """Apply `doc`; returns the ApplyResult."""
    path = tmp_path / f"{name}-{next(_files)}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return mq.apply([path])


def commit_events(mq: Meterql, events: list[dict[str, Any]], *, now: str | None = None) -> str:
    """Ingest `events` (Metronome-shaped dicts) as one batch; the ingest clock is `now`, by
    default one minute after the latest event.  Returns the batch id; every event must be
    accepted."""
    clock = ts(now) if now else max(ts(e["timestamp"]) for e in events) + timedelta(minutes=1)
    with tempfile.TemporaryDirectory(prefix="meterql-test-events-") as tmp:
        path = Path(tmp) / f"events-{next(_files)}.ndjson"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        summary = ingest(mq.home, [path], now=clock, con=mq.con)
    assert summary.accepted == len(events), summary.lines()
    return summary.batch_id


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
