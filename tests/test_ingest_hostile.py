"""Hostile NDJSON lines: every field of every kind, strings that look like other kinds, literals
DuckDB's parser takes (NaN, Infinity), duplicate keys, escapes and unicode.  Each line is
accepted or rejected exactly as the rules say, with the message naming the field and value,
and the good lines around them are stored."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import ingest
from warehouse.layout import property_column

NOW = datetime(2026, 2, 1)
TS = '"2026-01-30T10:00:00Z"'


def line(
    tid: str = '"t"', cust: str = '"c"', et: str = '"e"', ts: str = TS, props: str = ""
) -> str:
    parts = [
        f'"transaction_id":{tid}' if tid else "",
        f'"customer_id":{cust}' if cust else "",
        f'"event_type":{et}' if et else "",
        f'"timestamp":{ts}' if ts else "",
        f'"properties":{props}' if props else "",
    ]
    return "{" + ",".join(p for p in parts if p) + "}"


# (line, reason or None when accepted, field, text the message holds)
REJECTED = [
    ("not json at all", "malformed", None, "not valid JSON"),
    ('{"transaction_id":"t"', "malformed", None, "not valid JSON"),
    (line() + " trailing", "malformed", None, "not valid JSON"),
    ("[1, 2]", "malformed", None, "expected an event object, got an array"),
    ('"just a string"', "malformed", None, "expected an event object, got a string"),
    ("42", "malformed", None, "expected an event object, got a number"),
    ("true", "malformed", None, "expected an event object, got a boolean"),
    ("null", "malformed", None, "expected an event object, got null"),
    ("{}", "missing_field", "transaction_id", "transaction_id is missing"),
    (line(tid="null"), "missing_field", "transaction_id", "transaction_id is null"),
    (line(tid=""), "missing_field", "transaction_id", "transaction_id is missing"),
    (line(tid="1.5"), "invalid_transaction_id", "transaction_id", "got a number"),
    (line(tid="NaN"), "invalid_transaction_id", "transaction_id", 'got a number "NaN"'),
    (line(tid="-Infinity"), "invalid_transaction_id", "transaction_id", "got a number"),
    (line(tid="true"), "invalid_transaction_id", "transaction_id", 'got a boolean "true"'),
    (line(tid='{"a":1}'), "invalid_transaction_id", "transaction_id", "got an object"),
    (line(tid="[1]"), "invalid_transaction_id", "transaction_id", "got an array"),
    (line(tid="1e400"), "invalid_transaction_id", "transaction_id", 'got a number "1e400"'),
    (line(tid='""'), "invalid_transaction_id", "transaction_id", "is 0 characters long"),
    (line(cust="inf"), "malformed", "customer_id", 'must be a string, got a number "inf"'),
    (line(cust="INFINITY"), "malformed", "customer_id", "got a number"),
    (line(cust="false"), "malformed", "customer_id", "got a boolean"),
    (line(cust="2.5"), "malformed", "customer_id", 'got a number "2.5"'),
    (line(cust='""'), "missing_field", "customer_id", "customer_id is empty"),
    (line(cust="null"), "missing_field", "customer_id", "customer_id is null"),
    (line(et="[]"), "malformed", "event_type", "got an array"),
    (line(et="nan"), "malformed", "event_type", "got a number"),
    (line(et=""), "missing_field", "event_type", "event_type is missing"),
    (line(ts="null"), "missing_field", "timestamp", "timestamp is null"),
    (line(ts=""), "missing_field", "timestamp", "timestamp is missing"),
    (line(ts="1767225600"), "invalid_timestamp", "timestamp", 'got a number "1767225600"'),
    (line(ts='{"t":1}'), "invalid_timestamp", "timestamp", "got an object"),
    (line(ts='"20260130"'), "invalid_timestamp", "timestamp", '"20260130" is not an RFC 3339'),
    (line(props='"{\\"a\\":1}"'), "malformed", "properties", "got a string"),
    (line(props="[1]"), "malformed", "properties", "got an array"),
    (line(props="7"), "malformed", "properties", "got a number"),
    (line(props="true"), "malformed", "properties", "got a boolean"),
]

# (line, stored transaction_id, customer_id, event_type, properties stored)
ACCEPTED = [
    (line(tid='"true"', cust='"false"', et='"NaN"'), "true", "false", "NaN", {}),
    (line(tid='"inf"', cust='"Infinity"', et='"null"'), "inf", "Infinity", "null", {}),
    (line(tid='"-5"', cust='"12"', et='"[x"'), "-5", "12", "[x", {}),
    (line(tid='"{y"', cust='"1e5"', et='"-"'), "{y", "1e5", "-", {}),
    (line(tid="12345", cust="-7", et="18446744073709551615"), "12345", "-7",
     "18446744073709551615", {}),
    (line(tid='"\\u00e9\\"q\\\\"', cust='"é ü"', et='"a\\/b"'), 'é"q\\', "é ü", "a/b", {}),
    ('  ' + line(tid='"ws"') + "  ", "ws", "c", "e", {}),
    (
        '{"transaction_id":"dup","transaction_id":"other","customer_id":"c","event_type":"e",'
        f'"timestamp":{TS},"properties":{{"k":"first","k":"second"}}}}',
        "dup", "c", "e", {"k": "first"},
    ),
    (
        line(tid='"nest"', props='{"ké":"v","Key":"upper","key":"lower","n":{"a":[1.50,-0,"s"]},'
             '"z":null,"b":true,"s":"tab\\tq\\"","e":{}}'),
        "nest", "c", "e",
        {"ké": "v", "Key": "upper", "key": "lower", "n": '{"a":[1.50,-0,"s"]}', "b": "true",
         "s": 'tab\tq"', "e": "{}"},
    ),
    (line(tid='"nullprops"', props="null"), "nullprops", "c", "e", {}),
    (line(tid='"emptyprops"', props="{}"), "emptyprops", "c", "e", {}),
    (
        '{"timestamp":' + TS + ',"properties":{"p":1},"event_type":"e","customer_id":"c",'
        '"transaction_id":"reordered","extra":[1,2]}',
        "reordered", "c", "e", {"p": "1"},
    ),
]  # fmt: skip

KEYS = ["k", "ké", "Key", "key", "n", "z", "b", "s", "e", "p"]


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home(tmp_path / "home")
    home.init()
    return home


def good(i: int) -> str:
    return line(tid=f'"good-{i}"', props='{"p":"x"}')


def load_reject(text: str) -> dict:
    """A line of the rejects file: strict JSON, whatever the line sent (warehouse.ingest.rejects:
    a line only DuckDB's lenient reader takes, with `inf`, `nan` or a trailing comma, is kept
    as text under `raw`)."""
    return json.loads(text)


@pytest.mark.usefixtures("write_path")
def test_hostile_lines(home: Home, tmp_path: Path) -> None:
    lines = [good(0)]
    for i, (text, *_) in enumerate(REJECTED, start=1):
        lines += [text, good(i)]
    for text, *_ in ACCEPTED:
        lines.append(text)
    path = tmp_path / "hostile.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = ingest(home, [path], now=NOW)

    text = Path(summary.rejects_path or "").read_text(encoding="utf-8")
    rejects = [load_reject(r) for r in text.splitlines()]
    assert len(rejects) == len(REJECTED)
    for reject, (text, reason, field, message) in zip(rejects, REJECTED, strict=True):
        assert (reject["reason"], reject["field"]) == (reason, field), (text, reject)
        assert message in reject["message"], (text, reject["message"])
        assert reject["message"].startswith(f"line {reject['record']} of hostile.ndjson: ")
        assert lines[reject["record"] - 1] == text
        if "raw" in reject:
            assert reject["raw"] == text
        elif "event" in reject:
            assert reject["event"] == json.loads(text)

    con = home.connect()
    try:
        # every stored file reads whole (a MAP of rare keys with a key twice would not)
        paths = [str(p) for p in sorted(home.events_dir.rglob("*.parquet"))]
        whole = con.execute(
            "SELECT * FROM read_parquet($paths, union_by_name = true)", {"paths": paths}
        ).fetchall()
        assert len(whole) == len(lines) - len(REJECTED)
        query = EventStore(home, con).relation(KEYS, resolve_customers=False).sql("duckdb")
        rows = con.execute(f"SELECT * FROM ({query})").fetchall()  # noqa: S608
        names = [d[0] for d in con.execute(f"DESCRIBE ({query})").fetchall()]
    finally:
        con.close()
    stored = {r[names.index("transaction_id")]: dict(zip(names, r, strict=True)) for r in rows}
    goods = [f"good-{i}" for i in range(len(REJECTED) + 1)]
    assert set(stored) == set(goods) | {tid for _, tid, *_ in ACCEPTED}
    for text, tid, cust, et, props in ACCEPTED:
        row = stored[tid]
        assert (row["customer_id"], row["event_type"]) == (cust, et), text
        got = {k: row[property_column(k)] for k in KEYS if row[property_column(k)] is not None}
        assert got == props, text
