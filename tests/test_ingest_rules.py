"""The event rules (SEMANTICS.md section 1): each bad input is rejected with a message naming the
field and the value, and the good events of the same input are still stored."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import IngestSummary, ingest
from warehouse.layout import property_column

NOW = datetime(2026, 2, 1, 12, 0, 0)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home.resolve(tmp_path / "home")
    home.init()
    return home


def event(tid: str = "good-1", **changes: object) -> dict:
    base: dict = {
        "transaction_id": tid,
        "customer_id": "cust",
        "event_type": "llm_request",
        "timestamp": "2026-01-30T10:00:00Z",
        "properties": {"model": "gpt"},
    }
    base.update(changes)
    return base


def lines_file(tmp_path: Path, lines: list[str], name: str = "events.ndjson") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(home: Home, tmp_path: Path, bad: list[str], **kwargs) -> tuple[IngestSummary, list[dict]]:
    """Ingest one good event, the bad lines, another good event; return summary and rejects."""
    lines = [json.dumps(event("good-1")), *bad, json.dumps(event("good-2"))]
    summary = ingest(home, [lines_file(tmp_path, lines)], now=kwargs.get("now", NOW))
    rejects = []
    if summary.rejects_path:
        rejects = [json.loads(x) for x in Path(summary.rejects_path).read_text().splitlines()]
    assert stored_ids(home) >= {"good-1", "good-2"}, "good events must be stored"
    return summary, rejects


def stored_ids(home: Home) -> set[str]:
    return set(stored_props(home, []))


def stored_props(home: Home, keys: list[str]) -> dict[str, dict[str, str | None]]:
    con = home.connect()
    try:
        query = EventStore(home, con).relation(keys, resolve_customers=False)
        result = con.execute(query.sql("duckdb"))
        names = [d[0] for d in result.description]
        out = {}
        for row in result.fetchall():
            record = dict(zip(names, row, strict=True))
            out[record["transaction_id"]] = {k: record[property_column(k)] for k in keys}
        return out
    finally:
        con.close()


def only_reject(rejects: list[dict]) -> dict:
    assert len(rejects) == 1, rejects
    return rejects[0]


def test_malformed_line_rejects_only_itself_with_line_number_and_text(
    home: Home, tmp_path: Path
) -> None:
    summary, rejects = run(home, tmp_path, ['{"transaction_id": "broken", oops'])
    assert (summary.accepted, summary.rejected) == (2, 1)
    reject = only_reject(rejects)
    assert reject["reason"] == "malformed"
    assert reject["record"] == 2
    assert reject["message"] == "line 2 of events.ndjson: not valid JSON"
    assert reject["raw"] == '{"transaction_id": "broken", oops'
    assert reject["source"] == str(tmp_path / "events.ndjson")
    assert summary.reasons == {"malformed": 1}


def test_a_line_that_is_not_an_object_is_malformed(home: Home, tmp_path: Path) -> None:
    _, rejects = run(home, tmp_path, ["[1, 2]"])
    reject = only_reject(rejects)
    assert reject["reason"] == "malformed"
    assert "expected an event object, got an array" in reject["message"]
    assert reject["event"] == [1, 2]


@pytest.mark.parametrize("field", ["transaction_id", "customer_id", "event_type", "timestamp"])
def test_each_missing_field(home: Home, tmp_path: Path, field: str) -> None:
    bad = event("bad-1")
    del bad[field]
    _, rejects = run(home, tmp_path, [json.dumps(bad)])
    reject = only_reject(rejects)
    assert (reject["reason"], reject["field"]) == ("missing_field", field)
    assert reject["message"] == f"line 2 of events.ndjson: {field} is missing"
    assert reject["event"] == bad  # the event as sent


def test_every_rejects_line_is_strict_json(home: Home, tmp_path: Path) -> None:
    # DuckDB's reader takes NaN, Infinity and trailing commas as JSON; strict parsers do not:
    # such a line is kept as text under `raw`.  The same words inside strings are left alone.
    in_strings = event("bad-1", properties={"fruit": "banana", "note": "inf, NaN,]"})
    del in_strings["customer_id"]
    lenient = [
        json.dumps(in_strings)[:-1] + ', "n": NaN}',
        json.dumps(in_strings)[:-1] + ', "n": -Infinity}',
        json.dumps(in_strings)[:-1] + ', "n": [1, 2,]}',
    ]
    summary, rejects = run(home, tmp_path, [json.dumps(in_strings), *lenient])
    text = Path(summary.rejects_path or "").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in text] == rejects  # json.loads is strict about these
    assert [r["reason"] for r in rejects] == ["missing_field"] * 4
    assert rejects[0]["event"] == in_strings
    assert [r.get("raw") for r in rejects[1:]] == lenient


@pytest.mark.parametrize("field", ["customer_id", "event_type"])
def test_empty_or_null_field(home: Home, tmp_path: Path, field: str) -> None:
    _, rejects = run(
        home,
        tmp_path,
        [json.dumps(event("bad-1", **{field: ""})), json.dumps(event("bad-2", **{field: None}))],
    )
    assert [(r["reason"], r["field"]) for r in rejects] == [("missing_field", field)] * 2
    assert rejects[0]["message"].endswith(f"{field} is empty")
    assert rejects[1]["message"].endswith(f"{field} is null")


def test_wrong_json_type_of_a_field(home: Home, tmp_path: Path) -> None:
    _, rejects = run(
        home,
        tmp_path,
        [
            json.dumps(event("bad-1", customer_id={"id": 1})),
            json.dumps(event(["not", "a", "string"])),
            json.dumps(event("bad-3", timestamp=1767225600)),
            json.dumps(event("bad-4", properties=["a"])),
        ],
    )
    assert [(r["reason"], r["field"]) for r in rejects] == [
        ("malformed", "customer_id"),
        ("invalid_transaction_id", "transaction_id"),
        ("invalid_timestamp", "timestamp"),
        ("malformed", "properties"),
    ]
    assert 'customer_id must be a string, got an object "{\\"id\\":1}"' in rejects[0]["message"]
    assert (
        'timestamp must be an RFC 3339 string, got a number "1767225600"' in rejects[2]["message"]
    )
    assert "properties must be a JSON object, got an array" in rejects[3]["message"]


def test_integer_ids_are_taken_as_their_text(home: Home, tmp_path: Path) -> None:
    summary, _ = run(home, tmp_path, [json.dumps(event(12345, customer_id=987))])
    assert summary.accepted == 3
    assert "12345" in stored_ids(home)


@pytest.mark.parametrize(
    "value",
    [
        "2026-13-01T00:00:00Z",
        "yesterday",
        "2026-01-30",
        "2026-01-30T24:00:00Z",
        "2026-01-30T10:00:00+0100",
    ],
)
def test_unparseable_timestamp(home: Home, tmp_path: Path, value: str) -> None:
    _, rejects = run(home, tmp_path, [json.dumps(event("bad-1", timestamp=value))])
    reject = only_reject(rejects)
    assert (reject["reason"], reject["field"]) == ("invalid_timestamp", "timestamp")
    assert f"timestamp {json.dumps(value)} is not an RFC 3339 timestamp" in reject["message"]


@pytest.mark.parametrize("value", ["2026-02-30T00:00:00Z", "2016-12-31T23:59:60Z"])
def test_a_well_formed_timestamp_that_is_no_date_and_time_says_so(
    home: Home, tmp_path: Path, value: str
) -> None:
    """RFC 3339 allows second 60 and its grammar a Feb 30; DuckDB stores neither.  The
    message said "is not an RFC 3339 timestamp", which is wrong for such text."""
    _, rejects = run(home, tmp_path, [json.dumps(event("bad-1", timestamp=value))])
    reject = only_reject(rejects)
    assert (reject["reason"], reject["field"]) == ("invalid_timestamp", "timestamp")
    assert (
        f"timestamp {json.dumps(value)} is written as RFC 3339 but is not a date and time"
        in (reject["message"])
    )


def test_timestamps_offsets_and_microseconds(home: Home, tmp_path: Path) -> None:
    run(
        home,
        tmp_path,
        [
            json.dumps(event("t-offset", timestamp="2026-01-30T12:00:00.123456+02:00")),
            json.dumps(event("t-naive", timestamp="2026-01-30 10:00:00.5")),
            json.dumps(event("t-nanos", timestamp="2026-01-30T10:00:00.123456789z")),
        ],
    )
    con = home.connect()
    query = EventStore(home, con).relation([], resolve_customers=False)
    rows = dict(
        con.execute(f"SELECT transaction_id, timestamp FROM ({query.sql('duckdb')})").fetchall()  # noqa: S608
    )
    con.close()
    assert rows["t-offset"] == datetime(2026, 1, 30, 10, 0, 0, 123456)
    assert rows["t-naive"] == datetime(2026, 1, 30, 10, 0, 0, 500000)
    assert rows["t-nanos"] == datetime(2026, 1, 30, 10, 0, 0, 123456)


def test_too_old_and_in_future_relative_to_the_clock(home: Home, tmp_path: Path) -> None:
    def at(delta: timedelta) -> str:
        return (NOW + delta).isoformat() + "Z"

    summary, rejects = run(
        home,
        tmp_path,
        [
            json.dumps(event("oldest-ok", timestamp=at(-timedelta(days=34)))),
            json.dumps(event("too-old", timestamp=at(-timedelta(days=34, microseconds=1)))),
            json.dumps(event("newest-ok", timestamp=at(timedelta(minutes=5)))),
            json.dumps(event("future", timestamp=at(timedelta(minutes=5, seconds=1)))),
        ],
    )
    assert {"oldest-ok", "newest-ok"} <= stored_ids(home)
    assert [(r["reason"], r["event"]["transaction_id"]) for r in rejects] == [
        ("too_old", "too-old"),
        ("in_future", "future"),
    ]
    assert rejects[0]["message"] == (
        "line 3 of events.ndjson: timestamp 2025-12-29T11:59:59.999999Z is more than 34 days "
        "before the ingest clock 2026-02-01T12:00:00Z"
    )
    assert rejects[1]["message"] == (
        "line 5 of events.ndjson: timestamp 2026-02-01T12:05:01Z is more than 5 minutes after "
        "the ingest clock 2026-02-01T12:00:00Z"
    )
    assert summary.reasons == {"too_old": 1, "in_future": 1}


def test_an_ingest_clock_in_the_first_weeks_of_the_year_1(home: Home, tmp_path: Path) -> None:
    """The dedup window reaches back 35 days from the clock and the earliest event: before the
    year 1 it overflowed (an internal error); the window simply starts at the year 1."""
    path = lines_file(tmp_path, [json.dumps(event("first", timestamp="0001-01-02T00:00:00Z"))])
    first, again = (ingest(home, [path], now=datetime(1, 1, 5)) for _ in range(2))
    assert (first.accepted, again.duplicates) == (1, 1)


def test_transaction_id_length(home: Home, tmp_path: Path) -> None:
    ok, too_long = "a" * 128, "b" * 129
    _, rejects = run(home, tmp_path, [json.dumps(event(ok)), json.dumps(event(too_long))])
    assert ok in stored_ids(home)
    reject = only_reject(rejects)
    assert (reject["reason"], reject["field"]) == ("invalid_transaction_id", "transaction_id")
    assert "is 129 characters long; expected 1 to 128 characters" in reject["message"]
    assert '"bbbbbbbbbb' in reject["message"]  # the value, shortened


def test_property_count(home: Home, tmp_path: Path) -> None:
    at_limit = {f"k{i}": i for i in range(2000)}
    over = {f"k{i}": "v" for i in range(2001)}
    summary, rejects = run(
        home,
        tmp_path,
        [
            json.dumps(event("limit", properties=at_limit)),
            json.dumps(event("over", properties=over)),
        ],
    )
    assert "limit" in stored_ids(home)
    assert stored_props(home, ["k1999"])["limit"] == {"k1999": "1999"}
    reject = only_reject(rejects)
    assert (reject["reason"], reject["field"]) == ("too_many_properties", "properties")
    assert "properties has 2001 keys; at most 2000 are allowed" in reject["message"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_property_count_of_a_file_with_more_property_columns_than_allowed(
    home: Home, tmp_path: Path, fmt: str
) -> None:
    """Properties as extra columns: 2,001 columns are fine as long as a row holds at most 2,000
    values (an empty cell or a null is no property).  The count was a chain of 2,001 additions,
    past DuckDB's expression depth limit: the ingest failed with an internal error."""
    names = [f"k{i}" for i in range(2001)]
    rows = [
        ["limit", "cust", "llm_request", "2026-01-30T10:00:00Z", *["v"] * 2000, None],
        ["over", "cust", "llm_request", "2026-01-30T10:00:00Z", *["v"] * 2001],
    ]
    columns = ["transaction_id", "customer_id", "event_type", "timestamp", *names]
    path = tmp_path / f"events.{fmt}"
    if fmt == "csv":
        lines = [",".join(columns), *(",".join(v or "" for v in row) for row in rows)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        table = pa.table(
            {c: pa.array([row[i] for row in rows], pa.string()) for i, c in enumerate(columns)}
        )
        pq.write_table(table, path)
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.reasons) == (1, {"too_many_properties": 1})
    assert stored_props(home, ["k1999", "k2000"])["limit"] == {"k1999": "v", "k2000": None}
    reject = json.loads(Path(summary.rejects_path).read_text())
    assert reject["event"]["transaction_id"] == "over"
    assert "properties has 2001 keys; at most 2000 are allowed" in reject["message"]


def test_numbers_and_booleans_keep_their_exact_text(home: Home, tmp_path: Path) -> None:
    line = (
        '{"transaction_id": "nums", "customer_id": "c", "event_type": "e",'
        ' "timestamp": "2026-01-30T10:00:00Z", "properties": {"a": 0.1, "b": 1500,'
        ' "c": 1e400, "d": 0.1000, "e": true, "f": false, "g": -0, "h": 1E5, "i": -2.50e-3,'
        ' "j": {"x": [1.50, 2, "s"]}, "k": null, "l": "text 1.50", "m": 12345678901234567890123}}'
    )
    run(home, tmp_path, [line])
    keys = list("abcdefghijklm")
    assert stored_props(home, keys)["nums"] == {
        "a": "0.1",
        "b": "1500",
        "c": "1e400",
        "d": "0.1000",
        "e": "true",
        "f": "false",
        "g": "-0",
        "h": "1E5",
        "i": "-2.50e-3",
        "j": '{"x":[1.50,2,"s"]}',
        "k": None,  # a JSON null is an absent property
        "l": "text 1.50",
        "m": "12345678901234567890123",
    }


def test_exact_numbers_in_a_json_array_file(home: Home, tmp_path: Path) -> None:
    text = (
        '[{"transaction_id": "arr-1", "customer_id": "c", "event_type": "e", '
        '"timestamp": "2026-01-30T10:00:00Z", "properties": {"p": 0.1000, "q": "x-1"}},\n'
        ' {"transaction_id": 7.5, "customer_id": "c", "event_type": "e", '
        '"timestamp": "2026-01-30T10:00:00Z"}]'
    )
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    summary = ingest(home, [path], now=NOW)
    assert summary.accepted == 1
    assert stored_props(home, ["p", "q"])["arr-1"] == {"p": "0.1000", "q": "x-1"}
    reject = json.loads(Path(summary.rejects_path or "").read_text())
    assert reject["message"] == (
        'element 2 of a.json: transaction_id must be a string, got a number "7.5"'
    )
    assert reject["event"]["transaction_id"] == 7.5


def test_integer_ids_in_a_json_array_file_with_fractions_are_taken_as_their_text(
    home: Home, tmp_path: Path
) -> None:
    """A JSON array whose numbers are marked to keep their text (one event sends a fraction)
    takes integer ids as their text like any other file; they were rejected as "a number"."""
    fraction = event("arr-1", properties={"cost": 0.0042})
    integers = event(12345, customer_id=987, event_type=7)
    text = json.dumps([fraction, integers, event("arr-3", timestamp=1767225600)])
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    summary = ingest(home, [path], now=NOW)
    assert summary.accepted == 2
    con = home.connect()
    try:
        query = EventStore(home, con).relation([], resolve_customers=False)
        result = con.execute(query.sql("duckdb"))
        names = [d[0] for d in result.description]
        rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    finally:
        con.close()
    fields = ("transaction_id", "customer_id", "event_type")
    assert sorted(tuple(r[f] for f in fields) for r in rows) == [
        ("12345", "987", "7"),
        ("arr-1", "cust", "llm_request"),
    ]
    assert stored_props(home, ["cost"])["arr-1"] == {"cost": "0.0042"}
    reject = json.loads(Path(summary.rejects_path or "").read_text())
    assert reject["message"] == (
        'element 3 of a.json: timestamp must be an RFC 3339 string, got a number "1767225600"'
    )


def test_duplicates_within_a_batch_first_copy_wins(home: Home, tmp_path: Path) -> None:
    summary, rejects = run(
        home,
        tmp_path,
        [
            json.dumps(event("dup", properties={"copy": "first"})),
            json.dumps(event("dup", properties={"copy": "second"})),
            json.dumps(event("good-1", properties={"copy": "again"})),
        ],
    )
    assert (summary.accepted, summary.duplicates, summary.rejected) == (3, 2, 0)
    assert rejects == []
    assert sorted(summary.duplicate_transaction_ids) == ["dup", "good-1"]
    props = stored_props(home, ["copy", "model"])
    assert props["dup"]["copy"] == "first"
    assert props["good-1"] == {"copy": None, "model": "gpt"}


def test_a_rejected_copy_never_makes_a_later_copy_a_duplicate(home: Home, tmp_path: Path) -> None:
    """Only an *accepted* transaction_id is a duplicate: the first copy is rejected, so the
    second (in the same batch) and the third (in a later one: the first good copy is the
    second) are judged on their own."""
    summary, rejects = run(
        home,
        tmp_path,
        [
            json.dumps(event("retry", timestamp="2026-01-30T10:00:00+25:00")),
            json.dumps(event("retry", properties={"copy": "second"})),
        ],
    )
    assert (summary.accepted, summary.duplicates, summary.rejected) == (3, 0, 1)
    assert only_reject(rejects)["reason"] == "invalid_timestamp"
    assert stored_props(home, ["copy"])["retry"] == {"copy": "second"}
    again = ingest(home, [lines_file(tmp_path, [json.dumps(event("retry"))], "b.ndjson")], now=NOW)
    assert (again.accepted, again.duplicates) == (0, 1)


def test_duplicates_across_batches(home: Home, tmp_path: Path) -> None:
    lines = [json.dumps(event(f"t{i}")) for i in range(5)]
    path = lines_file(tmp_path, lines)
    first = ingest(home, [path], now=NOW)
    second = ingest(home, [path], now=NOW)
    assert (first.accepted, first.duplicates) == (5, 0)
    assert (second.accepted, second.duplicates, second.rejected) == (0, 5, 0)
    assert second.files_written == 0
    assert len(stored_ids(home)) == 5


def test_an_id_accepted_within_34_days_is_a_duplicate_whatever_the_timestamps(
    home: Home, tmp_path: Path
) -> None:
    """The dedup window covers both readings of "34 days": an id stored from a batch ingested
    within it is a duplicate even when its two events' timestamps are further apart (a
    backdated first send, a retry with a new timestamp), and so is an id whose stored event's
    timestamp is within it of the new events, whenever it was ingested."""
    backdated = lines_file(
        tmp_path, [json.dumps(event("retry", timestamp="2026-01-03T00:00:00Z"))], "a.ndjson"
    )
    assert ingest(home, [backdated], now=NOW).accepted == 1  # 29.5 days old: accepted
    # 6 days later the same id, stamped then: its stored copy is 35.5 days older
    later = NOW + timedelta(days=6)
    retry = lines_file(
        tmp_path, [json.dumps(event("retry", timestamp="2026-02-07T11:00:00Z"))], "b.ndjson"
    )
    summary = ingest(home, [retry], now=later)
    assert (summary.accepted, summary.duplicates) == (0, 1)
    assert stored_ids(home) == {"retry"}


def test_duplicate_across_files_of_one_batch_first_file_wins(home: Home, tmp_path: Path) -> None:
    a = lines_file(tmp_path, [json.dumps(event("same", properties={"from": "a"}))], "a.ndjson")
    b = lines_file(tmp_path, [json.dumps(event("same", properties={"from": "b"}))], "b.ndjson")
    summary = ingest(home, [b, a], now=NOW)
    assert (summary.accepted, summary.duplicates) == (1, 1)
    assert stored_props(home, ["from"])["same"] == {"from": "b"}


def test_unknown_customer_is_stored_reported_and_visible_once_an_alias_exists(
    home: Home, tmp_path: Path
) -> None:
    con = home.connect()
    con.execute("INSERT INTO customer_keys VALUES ('known', 'cust-1')")
    con.close()
    lines = [
        json.dumps(event("a", customer_id="known")),
        json.dumps(event("b", customer_id="stranger")),
        json.dumps(event("c", customer_id="stranger")),
    ]
    summary = ingest(home, [lines_file(tmp_path, lines)], now=NOW)
    assert summary.accepted == 3
    assert [(u.customer_id, u.events) for u in summary.unknown_customers] == [("stranger", 2)]
    assert (summary.unknown_customer_keys, summary.unknown_customer_events) == (1, 2)
    assert stored_ids(home) == {"a", "b", "c"}

    def resolved() -> list[tuple[str, str]]:
        con = home.connect()
        try:
            query = EventStore(home, con).relation([])
            sql = f"SELECT transaction_id, customer_id FROM ({query.sql('duckdb')}) ORDER BY 1"  # noqa: S608
            return con.execute(sql).fetchall()
        finally:
            con.close()

    assert resolved() == [("a", "cust-1")]
    con = home.connect()
    con.execute("INSERT INTO customer_keys VALUES ('stranger', 'cust-1')")
    con.close()
    assert resolved() == [("a", "cust-1"), ("b", "cust-1"), ("c", "cust-1")]


def test_empty_and_blank_files(home: Home, tmp_path: Path) -> None:
    (tmp_path / "empty.ndjson").write_text("", encoding="utf-8")
    (tmp_path / "blank.ndjson").write_text("\n  \n\n", encoding="utf-8")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "empty.json").write_text("[]", encoding="utf-8")
    summary = ingest(home, sorted(tmp_path.glob("*.*")), now=NOW)
    assert (summary.received, summary.accepted, summary.rejected) == (0, 0, 0)
    assert summary.rejects_path is None


def test_blank_lines_count_for_line_numbers(home: Home, tmp_path: Path) -> None:
    path = lines_file(tmp_path, [json.dumps(event("a")), "", "   ", "nope", json.dumps(event("b"))])
    summary = ingest(home, [path], now=NOW)
    assert (summary.received, summary.accepted) == (3, 2)
    reject = json.loads(Path(summary.rejects_path or "").read_text())
    assert reject["record"] == 4


def test_rejects_of_csv_and_parquet_keep_the_row_as_sent(home: Home, tmp_path: Path) -> None:
    csv_path = tmp_path / "e.csv"
    csv_path.write_text(
        "transaction_id,customer_id,event_type,timestamp,properties\n"
        'c-1,cust,e,2026-01-30T10:00:00Z,"{""a"": 1}"\n'
        'c-2,,e,2026-01-30T10:00:00Z,"{""a"": 1}"\n'
        "c-3,cust,e,2026-01-30T10:00:00Z,{not json\n",
        encoding="utf-8",
    )
    table = pa.table(
        {
            "transaction_id": ["p-1", "p-2"],
            "customer_id": ["cust", "cust"],
            "event_type": ["e", "e"],
            "timestamp": pa.array(
                [datetime(2026, 1, 30), datetime(2020, 1, 1)], pa.timestamp("us")
            ),
            "tokens": pa.array([1, 2], pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "e.parquet")
    summary = ingest(home, [csv_path, tmp_path / "e.parquet"], now=NOW)
    assert stored_ids(home) == {"c-1", "p-1"}
    rejects = [json.loads(x) for x in Path(summary.rejects_path or "").read_text().splitlines()]
    assert [(r["reason"], r["field"], r["record"]) for r in rejects] == [
        ("missing_field", "customer_id", 2),
        ("malformed", "properties", 3),
        ("too_old", "timestamp", 2),
    ]
    assert rejects[0]["message"] == "row 2 of e.csv: customer_id is missing"
    assert rejects[0]["event"] == {
        "transaction_id": "c-2",
        "customer_id": None,
        "event_type": "e",
        "timestamp": "2026-01-30T10:00:00Z",
        "properties": '{"a": 1}',
    }
    assert (
        "properties must be a JSON object, got text that is not valid JSON" in rejects[1]["message"]
    )
    assert rejects[2]["event"]["tokens"] == 2


@pytest.mark.parametrize("name", ["pos", "POS"])
def test_a_rejected_row_with_a_column_named_like_the_record_position(
    home: Home, tmp_path: Path, name: str
) -> None:
    """A CSV or Parquet column named `pos` is sent under `event` with its own value, not
    with the record's internal position."""
    csv_path = tmp_path / "e.csv"
    csv_path.write_text(
        f"transaction_id,customer_id,event_type,timestamp,{name}\n"
        "c-1,,e,2026-01-30T10:00:00Z,left\n",
        encoding="utf-8",
    )
    table = pa.table(
        {
            "transaction_id": ["p-1"],
            "customer_id": pa.array([None], pa.string()),
            "event_type": ["e"],
            "timestamp": ["2026-01-30T10:00:00Z"],
            name: ["right"],
        }
    )
    pq.write_table(table, tmp_path / "e.parquet")
    summary = ingest(home, [csv_path, tmp_path / "e.parquet"], now=NOW)
    rejects = [json.loads(x) for x in Path(summary.rejects_path or "").read_text().splitlines()]
    assert [(r["record"], r["event"]["transaction_id"], r["event"][name]) for r in rejects] == [
        (1, "c-1", "left"),
        (1, "p-1", "right"),
    ]


def _strict(text: str) -> dict:
    """A rejects line parsed strictly (Python's json takes NaN and Infinity), its fractional
    numbers kept as their text."""

    def refuse(word: str) -> None:
        raise ValueError(f"not strict JSON: {word}")

    return json.loads(text, parse_constant=refuse, parse_float=lambda s: ("number", s))


def test_rejects_of_parquet_rows_are_strict_json_with_exact_numbers(
    home: Home, tmp_path: Path
) -> None:
    """A rejected Parquet row's values are written as strict JSON (a non-finite DOUBLE or FLOAT
    as its text, like the stored property) and its numbers with the digits stored for them
    (DECIMAL(8, 4) 0.1000, FLOAT 0.1), not through a double."""
    from decimal import Decimal

    rows = 4
    table = pa.table(
        {
            "transaction_id": [f"p-{i}" for i in range(rows)],
            "customer_id": ["cust"] * rows,
            "event_type": ["e"] * rows,
            "timestamp": pa.array([datetime(2020, 1, 1)] * rows, pa.timestamp("us")),
            "ratio": pa.array([float("nan"), float("inf"), float("-inf"), 1.5]),
            "f32": pa.array([0.1, float("nan"), None, 2.0], pa.float32()),
            "price": pa.array([Decimal("0.1000"), Decimal("-2.5000"), None, Decimal(0)],
                              pa.decimal128(8, 4)),
            "wide": pa.array([Decimal("12345678901234567890.123456789012345678")] * rows,
                             pa.decimal128(38, 18)),
            "nested": pa.array([{"d": Decimal("0.10")}] * rows,
                               pa.struct([("d", pa.decimal128(4, 2))])),
        }
    )  # fmt: skip
    pq.write_table(table, tmp_path / "e.parquet")
    summary = ingest(home, [tmp_path / "e.parquet"], now=NOW)
    assert summary.reasons == {"too_old": rows}
    text = Path(summary.rejects_path or "").read_text().splitlines()
    events = [_strict(line)["event"] for line in text]
    number = lambda s: ("number", s)  # noqa: E731
    assert [(e["ratio"], e["f32"], e["price"]) for e in events] == [
        ("nan", number("0.1"), number("0.1000")),
        ("inf", "nan", number("-2.5000")),
        ("-inf", None, None),
        (number("1.5"), number("2.0"), number("0.0000")),
    ]
    assert {e["wide"] for e in events} == {number("12345678901234567890.123456789012345678")}
    assert [e["nested"] for e in events] == [{"d": number("0.10")}] * rows


def test_json_array_elements_that_are_not_objects(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([event("ok-1"), 42, "text", event("ok-2")]), encoding="utf-8")
    summary = ingest(home, [path], now=NOW)
    assert summary.accepted == 2
    rejects = [json.loads(x) for x in Path(summary.rejects_path or "").read_text().splitlines()]
    assert [(r["record"], r["reason"], r["event"]) for r in rejects] == [
        (2, "malformed", 42),
        (3, "malformed", "text"),
    ]
    assert (
        rejects[0]["message"] == "element 2 of mixed.json: expected an event object, got a number"
    )


def test_json_array_elements_that_are_null_or_numbers_in_a_document_with_fractions(
    home: Home, tmp_path: Path
) -> None:
    """A null element is "null", kept under `event`; a number element is "a number" also when
    the document holds a fraction (its numbers are then marked to keep their text)."""
    path = tmp_path / "mixed.json"
    good = json.dumps(event("ok-1"))[:-2] + ', "price": 0.10}}'
    path.write_text(f"[null, 42, 2.50, {good}]", encoding="utf-8")
    summary = ingest(home, [path], now=NOW)
    assert summary.accepted == 1
    text = Path(summary.rejects_path or "").read_text().splitlines()
    rejects = [_strict(line) for line in text]
    assert [(r["record"], r["message"], r["event"]) for r in rejects] == [
        (1, "element 1 of mixed.json: expected an event object, got null", None),
        (2, "element 2 of mixed.json: expected an event object, got a number", 42),
        (3, "element 3 of mixed.json: expected an event object, got a number", ("number", "2.50")),
    ]
    assert stored_props(home, ["price"])["ok-1"] == {"price": "0.10"}


def test_rejects_are_written_in_slices_in_input_order(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the rejects file is written a slice of CHUNK_ROWS rejects at a time (bounded memory for
    # millions of rejects); the slices follow each other in input order, none lost
    from warehouse.ingest import rejects as rejects_mod

    monkeypatch.setattr(rejects_mod, "CHUNK_ROWS", 2)
    paths = []
    for name in ("a.ndjson", "b.ndjson"):
        lines = []
        for i in range(7):
            bad = event(f"{name}-{i}")
            if i % 2 == 0:
                del bad["customer_id"]
            lines.append(json.dumps(bad) if i != 3 else "not json")
        paths.append(lines_file(tmp_path, lines, name))
    summary = ingest(home, paths, now=NOW)
    text = Path(summary.rejects_path or "").read_text().splitlines()
    rejects = [json.loads(line) for line in text]
    assert [(Path(r["source"]).name, r["record"]) for r in rejects] == [
        (name, i + 1) for name in ("a.ndjson", "b.ndjson") for i in (0, 2, 3, 4, 6)
    ]
    assert rejects[2]["raw"] == "not json" and rejects[0]["event"]["transaction_id"] == "a.ndjson-0"
    assert not list(tmp_path.glob("**/*.part"))
