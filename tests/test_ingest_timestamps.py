"""Timestamps: the quick strptime reading of the common shapes gives exactly what the rule
(RFC 3339 regular expression, then the TIMESTAMPTZ cast) gives, for every text tried."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import ingest
from warehouse.ingest.normalise import RFC3339, timestamp_sql


def timestamp_sql_reference(text_sql: str) -> str:
    """SQL: the rule `timestamp_sql` implements, the plain way (the regular expression, then
    DuckDB's TIMESTAMPTZ cast and its cast to naive UTC)."""
    return (
        f"CASE WHEN regexp_full_match({text_sql}, '{RFC3339}') "
        f"THEN coalesce(try_cast({text_sql} AS TIMESTAMPTZ), "
        f"try_cast(upper({text_sql}) AS TIMESTAMPTZ))::TIMESTAMP END"
    )


TEMPLATES = ["2026-01-30T10:20:30.123456Z", "2026-01-30T10:20:30Z", "2026-01-30T10:20:30.1Z"]
CHARS = [chr(i) for i in range(1, 128)] + ["é", "٣", "０", "\u00a0"]
OTHERS = [
    "  26-01-30T10:20:30.123456Z",
    "2026-01-30T10:20:30.1234567Z",
    "2026-01-30T10:20:30.123456789Z",
    "2026-01-30T10:20:30.Z",
    "2026-01-30T10:20:30,123Z",
    "9999-12-31T23:59:59.999999Z",
    "0000-01-01T00:00:00Z",
    "2026-01-30t10:20:30z",
    "2026-01-30 10:20:30Z",
    "2026-01-30T10:20:30+00:00",
    "2026-01-30T10:20:30.5-02:30",
    "2024-02-29T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "1900-02-29T00:00:00.000000Z",
    "2026-01-30T24:00:00Z",
    "2026-01-30T24:00:00.000000Z",
    "2026-01-30T23:59:60Z",
    "20261-1-30T10:20:30.123456Z",
    "",
]


def variants() -> list[str]:
    """Every template with each character replaced, removed or preceded by another, every value
    00-99 of each two-digit field, years, month ends, and the texts of OTHERS."""
    out = set(TEMPLATES) | set(OTHERS)
    for t in TEMPLATES:
        for i in range(len(t)):
            out.add(t[:i] + t[i + 1 :])
            for ch in CHARS:
                out.add(t[:i] + ch + t[i + 1 :])
                out.add(t[:i] + ch + t[i:])
        for a, b in [(5, 7), (8, 10), (11, 13), (14, 16), (17, 19)]:
            out.update(t[:a] + f"{n:02d}" + t[b:] for n in range(100))
        out.update(f"{y:04d}" + t[4:] for y in range(0, 10000, 7))
        out.update(
            t[:5] + f"{m:02d}-{d:02d}" + t[10:] for m in range(1, 13) for d in (28, 29, 30, 31)
        )
    return sorted(out)


def test_the_quick_reading_gives_what_the_rule_gives() -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    texts = variants()
    con.execute("CREATE TABLE v AS SELECT unnest(?::VARCHAR[]) AS s", [texts])
    differ = con.execute(
        f"SELECT s, {timestamp_sql_reference('s')} AS want, {timestamp_sql('s')} AS got "  # noqa: S608
        "FROM v WHERE want IS DISTINCT FROM got"
    ).fetchall()
    assert len(texts) > 20_000
    assert differ == []
    # the comparison is not empty: both kinds of result occur, through both ways
    accepted, refused = con.execute(
        f"SELECT count(*) FILTER (WHERE {timestamp_sql('s')} IS NOT NULL), "  # noqa: S608
        f"count(*) FILTER (WHERE {timestamp_sql('s')} IS NULL) FROM v"
    ).fetchall()[0]
    assert accepted > 1000 and refused > 1000
    con.close()


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2026-01-30T10:20:30.123456Z", datetime(2026, 1, 30, 10, 20, 30, 123456)),
        ("2026-01-30T10:20:30Z", datetime(2026, 1, 30, 10, 20, 30)),
        ("2026-01-30T10:20:30.12345Z", datetime(2026, 1, 30, 10, 20, 30, 123450)),
        ("2026-01-30T12:20:30.123456+02:00", datetime(2026, 1, 30, 10, 20, 30, 123456)),
    ],
)
def test_common_and_offset_shapes_are_stored_in_utc(
    tmp_path: Path, text: str, stored: datetime
) -> None:
    home = Home(tmp_path / "home")
    home.init()
    line = {"transaction_id": "t", "customer_id": "c", "event_type": "e", "timestamp": text}
    path = tmp_path / "e.ndjson"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    summary = ingest(home, [path], now=datetime(2026, 2, 1))
    assert summary.accepted == 1
    con = home.connect()
    query = EventStore(home, con).relation([], resolve_customers=False).sql("duckdb")
    [(value,)] = con.execute(f"SELECT timestamp FROM ({query})").fetchall()  # noqa: S608
    con.close()
    assert value == stored


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-30T24:00:00Z",  # the common length, but hour 24 (DuckDB's cast takes it)
        "2026-01-30T24:00:00.000000Z",
        " 026-01-30T10:20:30.123456Z",  # the common length, but a leading space (strptime skips it)
        "2026-1-30T10:20:30.1234567Z",
        "2026-01-30T10:20:30.123456 ",
    ],
)
def test_texts_of_the_common_length_that_break_the_rule_are_rejected(
    tmp_path: Path, text: str
) -> None:
    home = Home(tmp_path / "home")
    home.init()
    line = {"transaction_id": "t", "customer_id": "c", "event_type": "e", "timestamp": text}
    path = tmp_path / "e.ndjson"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    summary = ingest(home, [path], now=datetime(2026, 2, 1))
    assert (summary.accepted, summary.reasons) == (0, {"invalid_timestamp": 1})
    reject = json.loads(Path(summary.rejects_path or "").read_text(encoding="utf-8"))
    assert reject["field"] == "timestamp"
    assert f"timestamp {json.dumps(text)} is not an RFC 3339 timestamp" in reject["message"]
