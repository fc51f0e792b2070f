"""Every input format round-trips to the same canonical events through the read API."""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse.errors import UserError
from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import ingest
from warehouse.layout import property_column, rare_column

NOW = datetime(2026, 2, 1)

HOSTILE = [
    'x"; DROP TABLE events; --',
    "it's",
    "a.b",
    "with space",
    "[brackets]",
    "ünïcödé 名前",
    "Model",
    "model",
    "~/slash",
    "",
]

EVENTS = [
    {
        "transaction_id": "tx-1",
        "customer_id": "cust-a",
        "event_type": "llm_request",
        "timestamp": "2026-01-20T10:00:00.123456Z",
        "properties": {"model": "gpt-4o", "input_tokens": "1500", "price": "0.1000"},
    },
    {
        "transaction_id": "tx-2",
        "customer_id": "cust-b",
        "event_type": "embedding",
        "timestamp": "2026-01-21T11:30:00+02:00",
        "properties": {"model": "small", "input_tokens": "20"},
    },
    {
        "transaction_id": "tx-3",
        "customer_id": "cust-a",
        "event_type": "llm_request",
        "timestamp": "2026-01-21 08:00:00",
        "properties": {},
    },
]

EXPECTED = {
    ("tx-1", "cust-a", "llm_request", datetime(2026, 1, 20, 10, 0, 0, 123456)): {
        "model": "gpt-4o",
        "input_tokens": "1500",
        "price": "0.1000",
    },
    ("tx-2", "cust-b", "embedding", datetime(2026, 1, 21, 9, 30)): {
        "model": "small",
        "input_tokens": "20",
    },
    ("tx-3", "cust-a", "llm_request", datetime(2026, 1, 21, 8, 0)): {},
}
KEYS = ["model", "input_tokens", "price"]


# every test runs through the three write paths (conftest.write_path)
pytestmark = pytest.mark.usefixtures("write_path")


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home.resolve(tmp_path / "home")
    home.init()
    return home


def stored(home: Home, keys: list[str]) -> dict[tuple, dict[str, str]]:
    """Canonical events as the read API returns them (customers unresolved)."""
    con = home.connect()
    try:
        query = EventStore(home, con).relation(keys, resolve_customers=False)
        result = con.execute(query.sql("duckdb"))
        names = [d[0] for d in result.description]
        out = {}
        for row in result.fetchall():
            record = dict(zip(names, row, strict=True))
            key = tuple(record[c] for c in ("transaction_id", "customer_id", "event_type"))
            props = {
                k: record[property_column(k)]
                for k in keys
                if record[property_column(k)] is not None
            }
            out[(*key, record["timestamp"])] = props
        return out
    finally:
        con.close()


def stored_events(home: Home) -> dict[tuple, dict[str, str]]:
    return stored(home, [])


def timestamp_value(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def write_csv(path: Path, header: list[str], rows: list[list[str | None]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    return path


MAP = pa.map_(pa.string(), pa.string())


def base_columns() -> dict[str, pa.Array]:
    return {
        "transaction_id": pa.array([e["transaction_id"] for e in EVENTS]),
        "customer_id": pa.array([e["customer_id"] for e in EVENTS]),
        "event_type": pa.array([e["event_type"] for e in EVENTS]),
        "timestamp": pa.array([e["timestamp"] for e in EVENTS]),
    }


def check(home: Home, path: Path, keys: list[str] = KEYS) -> None:
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.rejected, summary.duplicates) == (3, 0, 0), summary
    assert stored(home, keys) == EXPECTED


def test_ndjson(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in EVENTS) + "\n", encoding="utf-8")
    check(home, path)


def test_ndjson_numbers_as_json_numbers(home: Home, tmp_path: Path) -> None:
    lines = []
    for e in EVENTS:
        props = {k: (json.loads(v) if k != "model" else v) for k, v in e["properties"].items()}
        lines.append(json.dumps({**e, "properties": props}))
    # json.dumps would write 0.1 for 0.1000: write the exact text the sender used
    text = "\n".join(lines).replace('"price": 0.1', '"price": 0.1000')
    path = tmp_path / "events.jsonl"
    path.write_text(text, encoding="utf-8")
    check(home, path)


def test_json_array(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps(EVENTS, indent=2).replace('"0.1000"', "0.1000"), encoding="utf-8")
    check(home, path)


def test_json_single_object_and_json_holding_ndjson(home: Home, tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(EVENTS[0], indent=2), encoding="utf-8")
    rest = tmp_path / "rest.json"
    rest.write_text("\n".join(json.dumps(e) for e in EVENTS[1:]), encoding="utf-8")
    summary = ingest(home, [one, rest], now=NOW)
    assert summary.accepted == 3
    assert stored(home, KEYS) == EXPECTED


@pytest.mark.parametrize("shape", ["array", "object"])
def test_json_with_a_byte_order_mark(home: Home, tmp_path: Path, shape: str) -> None:
    """A `.json` file written with a UTF-8 byte order mark (Windows tools write one) is read as
    the array or object it holds, not line by line as NDJSON (which lost every event)."""
    path = tmp_path / "events.json"
    document = EVENTS if shape == "array" else EVENTS[0]
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(document, indent=2).encode("utf-8"))
    summary = ingest(home, [path], now=NOW)
    expected = len(EVENTS) if shape == "array" else 1
    assert (summary.accepted, summary.rejected) == (expected, 0), summary
    got = stored(home, KEYS)
    assert got == {
        k: v
        for k, v in EXPECTED.items()
        if k[0] in {e["transaction_id"] for e in EVENTS[:expected]}
    }


def test_csv_with_properties_json_column(home: Home, tmp_path: Path) -> None:
    rows = [
        [e["transaction_id"], e["customer_id"], e["event_type"], e["timestamp"]]
        + [json.dumps(e["properties"]).replace('"0.1000"', "0.1000")]
        for e in EVENTS
    ]
    path = write_csv(
        tmp_path / "events.csv",
        ["transaction_id", "customer_id", "event_type", "timestamp", "properties"],
        rows,
    )
    check(home, path)


def test_csv_with_extra_columns(home: Home, tmp_path: Path) -> None:
    rows = [
        [e["transaction_id"], e["customer_id"], e["event_type"], e["timestamp"]]
        + [e["properties"].get(k) for k in KEYS]
        for e in EVENTS
    ]
    path = write_csv(
        tmp_path / "events.csv",
        ["transaction_id", "customer_id", "event_type", "timestamp", *KEYS],
        rows,
    )
    check(home, path)


def test_parquet_map(home: Home, tmp_path: Path) -> None:
    props = pa.array(
        [list(e["properties"].items()) for e in EVENTS], pa.map_(pa.string(), pa.string())
    )
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({**base_columns(), "properties": props}), path)
    check(home, path)


def test_a_key_sent_twice_counts_its_first_value_even_when_that_is_null(
    home: Home, tmp_path: Path
) -> None:
    """A MAP (Parquet) or JSON object (NDJSON) holding a key twice: the first value counts on
    every write path, a null first value too (the property is absent)."""
    entries = [
        [("model", "first"), ("model", "second")],
        [("model", None), ("model", "second")],
        [("input_tokens", "1"), ("model", "x"), ("input_tokens", "2")],
    ]
    maps = tmp_path / "maps.parquet"
    pq.write_table(pa.table({**base_columns(), "properties": pa.array(entries, MAP)}), maps)
    objects = tmp_path / "objects.ndjson"  # the same, as JSON objects (json.dumps of a dict
    # cannot write a key twice): {"transaction_id": "jtx-1", ..., "properties": {"model": ...}}
    lines = []
    for event, pairs in zip(EVENTS, entries, strict=True):
        fields = {k: v for k, v in event.items() if k != "properties"}
        fields["transaction_id"] = "j" + event["transaction_id"]
        head = json.dumps(fields)[:-1]
        props = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs)
        lines.append(f'{head}, "properties": {{{props}}}}}')
    objects.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = ingest(home, [maps, objects], now=NOW)
    assert (summary.accepted, summary.rejected) == (6, 0), summary
    got = {key[0]: props for key, props in stored(home, KEYS).items()}
    for prefix in ("", "j"):
        assert got[prefix + "tx-1"] == {"model": "first"}
        assert got[prefix + "tx-2"] == {}
        assert got[prefix + "tx-3"] == {"input_tokens": "1", "model": "x"}


def test_parquet_map_of_numbers_keeps_exact_text(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (SELECT 'tx-1' AS transaction_id, 'c' AS customer_id, 'e' AS event_type,
                     TIMESTAMP '2026-01-20 10:00:00' AS "timestamp",
                     MAP {{'tokens': 1500::DECIMAL(10, 4), 'n': 7}} AS properties)
        TO '{path}' (FORMAT parquet)
        """
    )
    con.close()
    ingest(home, [path], now=NOW)
    # a MAP has one value type: both values are DECIMAL(10, 4), stored as their exact text
    assert list(stored(home, ["tokens", "n"]).values()) == [{"tokens": "1500.0000", "n": "7.0000"}]


def test_parquet_decimals_inside_nested_values_keep_their_digits(
    home: Home, tmp_path: Path
) -> None:
    """A DECIMAL inside a nested value (a STRUCT field, a LIST, a MAP value) is stored with its
    exact digits, as a top-level DECIMAL is: DuckDB's to_json writes a DECIMAL of up to 15
    digits through a double (`0.1000` -> `0.1`, `0.00000001` -> `1e-8`)."""
    path = tmp_path / "events.parquet"
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (SELECT 'tx-1' AS transaction_id, 'c' AS customer_id, 'e' AS event_type,
                     TIMESTAMP '2026-01-20 10:00:00' AS "timestamp",
                     {{'price': 0.1000::DECIMAL(8, 4), 'tiny': 0.00000001::DECIMAL(9, 8),
                       'wide': 0.1000::DECIMAL(20, 4), 'a "b': [2.50::DECIMAL(4, 2)]}}
                       AS nested,
                     [0.10::DECIMAL(3, 2), NULL] AS list,
                     [1.50::DECIMAL(3, 2)]::DECIMAL(3, 2)[1] AS fixed,
                     MAP {{'k': {{'v': 7.0::DECIMAL(2, 1)}}}} AS mapped,
                     {{'d': 1.5::DOUBLE, 'i': 3, 's': 'x'}} AS other)
        TO '{path}' (FORMAT parquet)
        """
    )
    con.close()
    ingest(home, [path], now=NOW)
    (props,) = stored(home, ["nested", "list", "fixed", "mapped", "other"]).values()
    assert props == {
        "nested": '{"price":0.1000,"tiny":0.00000001,"wide":0.1000,"a \\"b":[2.50]}',
        "list": "[0.10,null]",
        "fixed": "[1.50]",
        "mapped": '{"k":{"v":7.0}}',
        "other": '{"d":1.5,"i":3,"s":"x"}',
    }


def test_parquet_struct(home: Home, tmp_path: Path) -> None:
    struct = pa.array(
        [{k: e["properties"].get(k) for k in KEYS} for e in EVENTS],
        pa.struct([(k, pa.string()) for k in KEYS]),
    )
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({**base_columns(), "properties": struct}), path)
    check(home, path)


def test_parquet_json_string(home: Home, tmp_path: Path) -> None:
    props = pa.array([json.dumps(e["properties"]) for e in EVENTS])
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({**base_columns(), "properties": props}), path)
    check(home, path)


def test_parquet_extra_columns_with_typed_timestamp(home: Home, tmp_path: Path) -> None:
    columns = base_columns()
    columns["timestamp"] = pa.array(
        [
            timestamp_value(e["timestamp"])
            if "Z" in e["timestamp"] or "+" in e["timestamp"]
            else datetime.fromisoformat(e["timestamp"])
            for e in EVENTS
        ],
        pa.timestamp("us", tz="UTC"),
    )
    for k in KEYS:
        columns[k] = pa.array([e["properties"].get(k) for e in EVENTS])
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table(columns), path)
    check(home, path)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "+02:00"])
def test_parquet_timestamps_of_every_unit_keep_their_instant_to_the_microsecond(
    home: Home, tmp_path: Path, unit: str, tz: str | None
) -> None:
    """pandas writes nanoseconds: accepted, and cut (never rounded) to the stored microsecond,
    so an event a hair before midnight stays on its day and in its billing period."""
    last = 1769903999999999999 if unit == "ns" else 1769903999  # 2026-01-31T23:59:59.999999999Z
    scale = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[unit]
    values = [last if unit == "ns" else last * scale + (scale - 1 if unit != "s" else 0)]
    stamps = pa.array(values, pa.int64()).cast(pa.timestamp(unit, tz=tz))
    path = tmp_path / "events.parquet"
    pq.write_table(
        pa.table(
            {
                "transaction_id": ["tx-late"],
                "customer_id": ["c"],
                "event_type": ["e"],
                "timestamp": stamps,
            }
        ),
        path,
    )
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.rejected) == (1, 0), summary
    [(stored, _)] = [(k[3], v) for k, v in stored_events(home).items()]
    expected = {
        "s": datetime(2026, 1, 31, 23, 59, 59),
        "ms": datetime(2026, 1, 31, 23, 59, 59, 999000),
        "us": datetime(2026, 1, 31, 23, 59, 59, 999999),
        "ns": datetime(2026, 1, 31, 23, 59, 59, 999999),
    }[unit]
    assert stored == expected


def test_parquet_typed_extra_columns_are_stored_as_exact_text(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (SELECT 'tx-1' AS transaction_id, 42 AS customer_id, 'e' AS event_type,
                     TIMESTAMP '2026-01-20 10:00:00' AS "timestamp",
                     1500 AS tokens, 0.1000::DECIMAL(8, 4) AS price, true AS flag,
                     [1, 2] AS list, {{'a': 'b'}} AS nested, NULL::VARCHAR AS absent)
        TO '{path}' (FORMAT parquet)
        """
    )
    con.close()
    ingest(home, [path], now=NOW)
    (props,) = stored(home, ["tokens", "price", "flag", "list", "nested", "absent"]).values()
    assert props == {
        "tokens": "1500",
        "price": "0.1000",
        "flag": "true",
        "list": "[1,2]",
        "nested": '{"a":"b"}',
    }
    assert list(stored(home, []))[0][1] == "42"  # an integer customer_id column, as text


def hostile_event(i: int) -> dict:
    return {
        "transaction_id": f"h-{i}",
        "customer_id": "c",
        "event_type": "e",
        "timestamp": "2026-01-20T00:00:00Z",
        "properties": {name: f"v{j}" for j, name in enumerate(HOSTILE)},
    }


EXPECTED_HOSTILE = {name: f"v{j}" for j, name in enumerate(HOSTILE)}


def test_hostile_property_names_ndjson(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "h.ndjson"
    path.write_text(json.dumps(hostile_event(1), ensure_ascii=False) + "\n", encoding="utf-8")
    ingest(home, [path], now=NOW)
    assert list(stored(home, HOSTILE).values()) == [EXPECTED_HOSTILE]


def test_hostile_property_names_csv_and_parquet_columns(home: Home, tmp_path: Path) -> None:
    names = [n for n in HOSTILE if n]  # a CSV/Parquet column needs a name
    header = ["transaction_id", "customer_id", "event_type", "timestamp", *names]
    write_csv(
        tmp_path / "h.csv",
        header,
        [["h-1", "c", "e", "2026-01-20T00:00:00Z"] + [f"v{HOSTILE.index(n)}" for n in names]],
    )
    table = pa.table(
        {
            "transaction_id": ["h-2"],
            "customer_id": ["c"],
            "event_type": ["e"],
            "timestamp": ["2026-01-20T00:00:00Z"],
            **{n: [f"v{HOSTILE.index(n)}"] for n in names},
        }
    )
    pq.write_table(table, tmp_path / "h.parquet")
    summary = ingest(home, [tmp_path / "h.csv", tmp_path / "h.parquet"], now=NOW)
    assert summary.accepted == 2
    expected = {n: v for n, v in EXPECTED_HOSTILE.items() if n}
    assert list(stored(home, names).values()) == [expected, expected]


def test_hostile_struct_field_names(home: Home, tmp_path: Path) -> None:
    struct = pa.array(
        [{"Model": "M", "model": "m", "a.b": "dot"}],
        pa.struct([("Model", pa.string()), ("model", pa.string()), ("a.b", pa.string())]),
    )
    table = pa.table(
        {
            "transaction_id": ["s-1"],
            "customer_id": ["c"],
            "event_type": ["e"],
            "timestamp": ["2026-01-20T00:00:00Z"],
            "properties": struct,
        }
    )
    pq.write_table(table, tmp_path / "s.parquet")
    ingest(home, [tmp_path / "s.parquet"], now=NOW)
    assert list(stored(home, ["Model", "model", "a.b"]).values()) == [
        {"Model": "M", "model": "m", "a.b": "dot"}
    ]


def test_a_subdirectory_that_cannot_be_listed_stops_the_ingest(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.walk skips a directory it cannot list unless told otherwise: its events would be
    missing from the batch without a word.  (Simulated: the tests run as root.)"""
    folder = tmp_path / "dump"
    (folder / "locked").mkdir(parents=True)
    (folder / "a.ndjson").write_text(json.dumps(EVENTS[0]) + "\n", encoding="utf-8")
    listing = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> Any:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UserError) as raised:
        ingest(home, [folder], now=NOW)
    assert str(raised.value) == (
        f"cannot list {folder / 'locked'} inside ingest path {folder}: Permission denied "
        "(nothing was ingested)"
    )
    assert stored_events(home) == {}


def test_directory_and_glob(home: Home, tmp_path: Path) -> None:
    folder = tmp_path / "dump"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.ndjson").write_text(json.dumps(EVENTS[0]), encoding="utf-8")
    (folder / "sub" / "b.ndjson").write_text(json.dumps(EVENTS[1]), encoding="utf-8")
    (folder / "README.txt").write_text("not events", encoding="utf-8")
    summary = ingest(home, [folder], now=NOW)
    assert summary.accepted == 2
    assert summary.skipped == [str(folder / "README.txt")]
    (tmp_path / "c.ndjson").write_text(json.dumps(EVENTS[2]), encoding="utf-8")
    assert ingest(home, [str(tmp_path / "*.ndjson")], now=NOW).accepted == 1
    assert stored(home, KEYS) == EXPECTED


def write_event(path: Path, transaction_id: str) -> Path:
    """One event in the format `path`'s name gives."""
    event = {**EVENTS[0], "transaction_id": transaction_id, "properties": {}}
    if path.suffix == ".parquet":
        pq.write_table(pa.table({k: [v] for k, v in event.items() if k != "properties"}), path)
    elif path.suffix == ".csv":
        fields = ["transaction_id", "customer_id", "event_type", "timestamp"]
        write_csv(path, fields, [[event[f] for f in fields]])
    else:
        text = json.dumps([event] if path.suffix == ".json" else event)
        path.write_text(text + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("ext", [".ndjson", ".json", ".csv", ".parquet"])
def test_a_file_named_like_a_glob_is_read_alone(home: Home, tmp_path: Path, ext: str) -> None:
    """DuckDB's readers expand `*`, `?` and `[...]`: `a[1].csv` would read `a1.csv`, `b*.csv`
    also `bb.csv`.  A file named on the command line is that file and no other, alone or
    read together with others."""
    names = ["a[1]", "b*", "c?", "d[!x]", "e[[]"]
    for decoy in ["a1", "bb", "cc", "dd", "e["]:
        write_event(tmp_path / f"{decoy}{ext}", f"decoy {decoy}")
    paths = [write_event(tmp_path / f"{name}{ext}", name) for name in names]
    summary = ingest(home, [paths[0]], now=NOW)
    assert (summary.accepted, summary.rejected, summary.duplicates) == (1, 0, 0)
    summary = ingest(home, paths[1:], now=NOW)
    assert (summary.accepted, summary.rejected, summary.duplicates) == (4, 0, 0)
    assert sorted(key[0] for key in stored_events(home)) == sorted(names)


def test_a_file_name_that_is_not_utf8_is_refused(home: Home, tmp_path: Path) -> None:
    """Found in a directory, its name (bytes that are not UTF-8, surrogates in Python) reached
    DuckDB, which cannot encode it: an internal error."""
    folder = tmp_path / "dump"
    folder.mkdir()
    write_event(folder / "good.ndjson", "good")
    write_event(folder / os.fsdecode(b"caf\xe9.ndjson"), "latin-1 name")
    with pytest.raises(UserError) as raised:
        ingest(home, [folder], now=NOW)
    shown = str(folder / "caf\\xe9.ndjson")  # its bytes as Python writes them
    assert str(raised.value) == (
        f"ingest file {shown!r} is not UTF-8 text (byte 0xE9); "
        "rename it (DuckDB takes only UTF-8 paths)"
    )
    assert stored_events(home) == {}


def test_a_file_path_with_a_backslash_and_a_glob_character_is_refused(
    home: Home, tmp_path: Path
) -> None:
    """DuckDB splits a pattern at a backslash, so no pattern names `x\\*.ndjson` alone."""
    (tmp_path / "x").mkdir()
    write_event(tmp_path / "x" / "decoy.ndjson", "decoy")
    path = write_event(tmp_path / "x\\*.ndjson", "star")
    with pytest.raises(UserError, match="x\\\\\\\\[*].ndjson'?: its path holds a backslash"):
        ingest(home, [path], now=NOW)
    assert stored_events(home) == {}


def test_file_names_that_are_not_utf8(home: Home, tmp_path: Path) -> None:
    # a skipped file is listed with \xNN escapes (the JSON summary is UTF-8); an event file is
    # refused before anything is written (DuckDB reads only UTF-8 paths)
    folder = tmp_path / "dump"
    folder.mkdir()
    (folder / "a.ndjson").write_text(json.dumps(EVENTS[0]), encoding="utf-8")
    (folder / os.fsdecode(b"R\xe9AD.txt")).write_text("not events", encoding="utf-8")
    summary = ingest(home, [folder], now=NOW)
    assert summary.accepted == 1
    assert summary.skipped == [str(folder) + "/R\\xe9AD.txt"]
    (folder / os.fsdecode(b"\xff.ndjson")).write_text(json.dumps(EVENTS[1]), encoding="utf-8")
    with pytest.raises(UserError, match=r"dump/\\\\xff.ndjson' is not UTF-8 text \(byte 0xFF\)"):
        ingest(home, [folder], now=NOW)
    assert len(stored_events(home)) == 1


def test_files_are_sorted_and_hold_only_their_property_columns(
    home: Home, tmp_path: Path, write_path: str
) -> None:
    events = [
        {
            "transaction_id": f"t{i}",
            "customer_id": c,
            "event_type": et,
            "timestamp": ts,
            "properties": props,
        }
        for i, (c, et, ts, props) in enumerate(
            [
                ("b", "x", "2026-01-20T03:00:00Z", {"only_day_20": "1"}),
                ("a", "y", "2026-01-20T01:00:00Z", {}),
                ("a", "x", "2026-01-20T02:00:00Z", {}),
                ("a", "x", "2026-01-20T01:00:00Z", {}),
                ("a", "x", "2026-01-21T01:00:00Z", {"only_day_21": "2"}),
            ]
        )
    ]
    path = tmp_path / "e.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in events), encoding="utf-8")
    summary = ingest(home, [path], now=NOW)
    assert summary.files_written == 2
    con = home.connect()
    rows = con.execute(
        "SELECT path, event_date, row_count, property_columns, event_types, rare_properties "
        "FROM event_files ORDER BY event_date"
    ).fetchall()
    assert [r[1].isoformat() for r in rows] == ["2026-01-20", "2026-01-21"]
    assert rows[0][0].startswith(f"event_date=2026-01-20/{summary.batch_id}-")
    held = [["p_only_day_20"], ["p_only_day_21"]]
    rare = write_path == "rare"  # every key is in the map of rare keys
    assert [r[3] for r in rows] == ([[], []] if rare else held)
    assert [r[5] for r in rows] == (held if rare else [[], []])
    assert rows[0][4] == ["x", "y"]
    day20 = pq.read_table(home.events_dir / rows[0][0])
    assert [c for c in day20.column_names if c.startswith("p_")] == ([] if rare else held[0])
    maps = [c for c in day20.column_names if c.startswith("rare_properties_")]
    assert maps == ([rare_column("only_day_20")] if rare else [])
    order = list(
        zip(
            *(day20.column(c).to_pylist() for c in ("event_type", "customer_id", "timestamp")),
            strict=True,
        )
    )
    assert [(et, c) for et, c, _ in order] == [("x", "a"), ("x", "a"), ("x", "b"), ("y", "a")]
    assert order == sorted(order)
    con.close()


def test_one_batch_mixing_every_property_shape(home: Home, tmp_path: Path) -> None:
    """The same key as an extra column, in a MAP, in a STRUCT and in JSON, in one batch."""
    base = {
        "customer_id": ["c"],
        "event_type": ["e"],
        "timestamp": ["2026-01-20T00:00:00Z"],
    }
    pq.write_table(
        pa.table({"transaction_id": ["col"], **base, "model": ["m-col"]}), tmp_path / "a.parquet"
    )
    pq.write_table(
        pa.table(
            {
                "transaction_id": ["map"],
                **base,
                "properties": pa.array(
                    [[("model", "m-map"), ("only_map", "x")]], pa.map_(pa.string(), pa.string())
                ),
            }
        ),
        tmp_path / "b.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "transaction_id": ["struct"],
                **base,
                "properties": pa.array(
                    [{"model": "m-struct"}], pa.struct([("model", pa.string())])
                ),
            }
        ),
        tmp_path / "c.parquet",
    )
    (tmp_path / "d.ndjson").write_text(
        '{"transaction_id": "json", "customer_id": "c", "event_type": "e", '
        '"timestamp": "2026-01-20T00:00:00Z", "properties": {"model": "m-json", "n": 1.50}}',
        encoding="utf-8",
    )
    summary = ingest(home, sorted(tmp_path.glob("*.*")), now=NOW)
    assert summary.accepted == 4
    got = {k[0]: v for k, v in stored(home, ["model", "only_map", "n"]).items()}
    assert got == {
        "col": {"model": "m-col"},
        "map": {"model": "m-map", "only_map": "x"},
        "struct": {"model": "m-struct"},
        "json": {"model": "m-json", "n": "1.50"},
    }


def test_a_parquet_column_of_nulls_only_rejects_its_rows_not_the_batch(tmp_path: Path) -> None:
    """pyarrow writes a column holding only None with its `null` type: each row is rejected as
    a missing field (it refused the whole file, and with it the batch's other files)."""
    home = Home(tmp_path / "home")
    home.init()
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(
        pa.table(
            {
                "transaction_id": pa.array([None, None]),
                "customer_id": ["c", "c"],
                "event_type": ["e", "e"],
                "timestamp": ["2026-01-30T10:00:00Z"] * 2,
            }
        ),
        nulls,
    )
    good = tmp_path / "good.ndjson"
    good.write_text(
        '{"transaction_id": "t", "customer_id": "c", "event_type": "e", '
        '"timestamp": "2026-01-30T10:00:00Z"}\n'
    )
    summary = ingest(home, [nulls, good], now=datetime(2026, 2, 1))
    assert (summary.accepted, summary.reasons) == (1, {"missing_field": 2})
