"""A large batch is ingested in chunks (warehouse.ingest.chunks): the result must be the one
of the same batch in one piece: the same events stored, the same duplicates, rejects and
counts, one commit.  Forced here by a chunk limit of a few events."""

from __future__ import annotations

import csv
import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from warehouse.errors import UserError
from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import chunks, ingest, pipeline
from warehouse.ingest.chunks import chunk_events, plan_chunks
from warehouse.ingest.readers import inspect_sources
from warehouse.ingest.sources import resolve_sources
from warehouse.ingest.sqltext import ident
from warehouse.layout import property_column

NOW = datetime(2026, 2, 1)
KEYS = ["model", "tokens", "region"]


def event(tid: str, customer: str, ts: str, **props: Any) -> dict[str, Any]:
    return {
        "transaction_id": tid,
        "customer_id": customer,
        "event_type": "llm" if int(tid.split("-")[1]) % 3 else "api",
        "timestamp": ts,
        "properties": props,
    }


def parquet_dump(path: Path, rows: list[dict[str, Any]], row_group: int) -> Path:
    table = pa.table(
        {
            "transaction_id": [r["transaction_id"] for r in rows],
            "customer_id": [r["customer_id"] for r in rows],
            "event_type": [r["event_type"] for r in rows],
            "timestamp": [r["timestamp"] for r in rows],
            "model": [r["properties"].get("model") for r in rows],
            "tokens": [r["properties"].get("tokens") for r in rows],
        }
    )
    pq.write_table(table, path, row_group_size=row_group)
    return path


def ndjson_dump(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_dump(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["transaction_id", "customer_id", "event_type", "timestamp", "region"])
        for r in rows:
            writer.writerow(
                [
                    r["transaction_id"],
                    r["customer_id"],
                    r["event_type"],
                    r["timestamp"],
                    r["properties"].get("region", ""),
                ]
            )
    return path


def sources(tmp: Path) -> list[Path]:
    """Files whose chunks meet every cross-chunk case: an id repeated in a later file and in
    a later row group of the same file, ids already stored, rejects and unknown customers in
    several chunks, property keys and dates that only some chunks have."""
    tmp.mkdir()
    days = [f"2026-01-{d:02d}T{h:02d}:00:00Z" for d in (5, 6, 20) for h in (1, 13)]
    rows = [
        event(f"tx-{i}", f"cust-{i % 4}", days[i % len(days)], model=f"m{i % 2}", tokens=str(i))
        for i in range(40)
    ]
    rows[12]["transaction_id"] = "tx-3"  # a later row group repeats an earlier one's id
    rows[33]["transaction_id"] = "stored-1"  # already stored
    rows[25]["timestamp"] = "not a time"  # a reject in the middle of the file
    rows[38]["customer_id"] = "nobody"  # an unknown customer, late in the file
    first = parquet_dump(tmp / "a.parquet", rows, row_group=5)
    more: list[dict[str, Any] | str] = [
        event("tx-5", "cust-1", days[0], model="m9"),  # repeats a.parquet's tx-5
        event("tx-100", "nobody", days[1], region="eu"),  # a key no other file has
        "{not json",
        event("stored-2", "cust-2", days[2]),
        event("tx-101", "cust-3", "2025-11-01T00:00:00Z"),  # too old
        event("tx-102", "ghost", "2026-01-31T23:59:59.999999Z", tokens="7"),
        event("tx-102", "ghost", "2026-01-31T23:59:59Z"),  # repeated within the file
    ]
    second = ndjson_dump(tmp / "b.ndjson", more)
    third = csv_dump(
        tmp / "c.csv",
        [
            event("tx-200", "cust-0", days[3], region="us"),
            event("tx-100", "cust-0", days[3]),  # repeats b.ndjson's tx-100
            {**event("tx-201", "cust-1", days[4]), "customer_id": ""},  # missing customer
        ],
    )
    return [first, second, third]


def new_home(tmp: Path) -> Home:
    home = Home.resolve(tmp)
    home.init()
    stored = ndjson_dump(
        tmp.parent / f"{tmp.name}-stored.ndjson",
        [
            event("stored-1", "cust-0", "2026-01-10T00:00:00Z"),
            event("stored-2", "cust-1", "2026-01-11T00:00:00Z"),
        ],
    )
    assert ingest(home, [stored], now=NOW).accepted == 2
    return home


def stored_rows(home: Home) -> list[tuple]:
    """Every stored event with its properties, as the read API gives them (any layout)."""
    con = home.connect()
    try:
        query = EventStore(home, con).relation(KEYS, resolve_customers=False)
        columns = ", ".join(
            ["transaction_id", "customer_id", "event_type", "timestamp"]
            + [ident(property_column(k)) for k in KEYS]
        )
        sql = f"SELECT {columns} FROM ({query.sql('duckdb')}) ORDER BY transaction_id"  # noqa: S608
        return con.execute(sql).fetchall()
    finally:
        con.close()


def rejects(summary: Any) -> list[dict[str, Any]]:
    lines = Path(summary.rejects_path).read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "batch_id"} for line in lines]


COMPARED = (
    "accepted duplicates rejected received reasons unknown_customers unknown_customer_keys "
    "unknown_customer_events duplicate_transaction_ids sources skipped clock"
).split()


@pytest.mark.usefixtures("write_path")
def test_a_batch_in_chunks_stores_what_it_stores_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sources(tmp_path / "dumps")
    whole = ingest(new_home(tmp_path / "whole"), files, now=NOW)
    in_one = stored_rows(Home.resolve(tmp_path / "whole"))

    monkeypatch.setattr(pipeline, "chunk_events", lambda _: 7)
    monkeypatch.setattr(chunks, "TEXT_BYTES_PER_EVENT", 100)
    home = new_home(tmp_path / "chunked")
    work = duckdb.connect()
    plan = inspect_sources(work, list(resolve_sources(files).files))
    cut = plan_chunks(plan, 7)
    assert len(cut) >= 7  # the Parquet file alone is split in 5 or more
    assert sum(1 for c in cut for f in c.json_files if f.span) >= 2  # b.ndjson in pieces
    chunked = ingest(home, files, now=NOW)

    assert {k: getattr(chunked, k) for k in COMPARED} == {k: getattr(whole, k) for k in COMPARED}
    assert (whole.duplicates, whole.rejected, whole.unknown_customer_keys) == (6, 4, 6)
    assert stored_rows(home) == in_one
    assert rejects(chunked) == rejects(whole)
    con = home.connect()
    [ledger] = con.execute(
        "SELECT status, received, accepted, duplicates, rejected FROM ingest_batches "
        "WHERE batch_id = ?",
        [chunked.batch_id],
    ).fetchall()
    con.close()
    assert ledger == ("committed", whole.received, whole.accepted, 6, 4)


def test_a_failing_chunk_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = sources(tmp_path / "dumps")
    monkeypatch.setattr(pipeline, "chunk_events", lambda _: 7)
    home = new_home(tmp_path / "home")
    before = sorted(p.relative_to(home.events_dir) for p in home.events_dir.rglob("*"))
    calls = {"n": 0}
    real = pipeline.write_sorted

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_sorted", failing)
    with pytest.raises(OSError, match="disk full"):
        ingest(home, files, now=NOW)
    assert calls["n"] == 3
    assert sorted(p.relative_to(home.events_dir) for p in home.events_dir.rglob("*")) == before
    assert not list(home.rejects_dir.glob("*"))
    con = home.connect()
    statuses = con.execute("SELECT status FROM ingest_batches ORDER BY started_at").fetchall()
    con.close()
    assert statuses == [("committed",), ("failed",)]


def test_chunks_follow_row_groups_in_input_order(tmp_path: Path) -> None:
    rows = [event(f"tx-{i}", "c", "2026-01-05T00:00:00Z") for i in range(23)]
    big = parquet_dump(tmp_path / "big.parquet", rows, row_group=5)  # 5,5,5,5,3
    text = ndjson_dump(tmp_path / "small.ndjson", rows[:2])
    work = duckdb.connect()
    plan = inspect_sources(work, list(resolve_sources([text, big]).files))
    cut = plan_chunks(plan, 10)  # the text file (~1 event) and 10 more do not fit together
    assert [([f.name for f in c.json_files], [t.rows for t in c.tables]) for c in cut] == [
        ([str(text)], []),
        ([], [(0, 10)]),
        ([], [(10, 20)]),
        ([], [(20, 23)]),
    ]
    assert plan_chunks(plan, 1000) == [plan]
    assert [t.rows for c in plan_chunks(plan, 1) for t in c.tables] == [
        (0, 5),
        (5, 10),
        (10, 15),
        (15, 20),
        (20, 23),
    ]


def test_chunk_size_follows_the_memory_limit() -> None:
    assert chunk_events(3 * 2**30) == 3 * 2**30 // chunks.BYTES_PER_EVENT
    assert chunk_events(None) == chunk_events(3 * 2**30)
    assert chunk_events(2**20) == chunks.MIN_CHUNK_EVENTS


def test_an_ndjson_file_in_pieces_keeps_every_line_and_its_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Line ends \r\n, blank lines, a byte order mark at the start and at the start of a
    line in the middle, a last line without a line end, bad lines."""
    lines = []
    for i in range(60):
        record = json.dumps(event(f"tx-{i}", f"cust-{i % 3}", "2026-01-05T10:00:00Z", n=str(i)))
        if i % 7 == 3:
            record = ""  # blank
        elif i % 11 == 5:
            record = "{broken " + str(i)
        elif i % 17 == 8:
            record = "\ufeff" + record  # a byte order mark opening a line mid-file
        lines.append(record)
    text = "\ufeff" + "\r\n".join(lines)  # no line end after the last line
    dump = tmp_path / "dumps" / "events.ndjson"
    dump.parent.mkdir()
    dump.write_bytes(text.encode("utf-8"))

    whole = ingest(new_home(tmp_path / "whole"), [dump], now=NOW)
    monkeypatch.setattr(pipeline, "chunk_events", lambda _: 4)
    monkeypatch.setattr(chunks, "TEXT_BYTES_PER_EVENT", 40)
    plan = inspect_sources(duckdb.connect(), list(resolve_sources([dump]).files))
    assert sum(1 for c in plan_chunks(plan, 4) for f in c.json_files if f.span) > 20
    home = new_home(tmp_path / "chunked")
    chunked = ingest(home, [dump], now=NOW)

    assert {k: getattr(chunked, k) for k in COMPARED} == {k: getattr(whole, k) for k in COMPARED}
    assert whole.rejected >= 5 and whole.accepted >= 40
    assert stored_rows(home) == stored_rows(Home.resolve(tmp_path / "whole"))
    assert rejects(chunked) == rejects(whole)
    assert not list(home.staging_dir.rglob("piece-*"))


def test_line_spans_cover_the_file_and_cut_after_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    body = b"\n".join([b"a" * 5, b"\xef\xbb\xbfb" * 3, b"c" * 9, b"", b"d" * 4, b"e"]) + b"\n"
    path.write_bytes(body)
    file = resolve_sources([path]).files[0]
    for target in range(1, len(body) + 2):
        spans = chunks._line_spans(file, target)
        assert spans[0][0] == 0 and spans[-1][1] == len(body)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        for start, end in spans:
            assert end > start and body[end - 1 : end] == b"\n"
            assert not body[start:].startswith(b"\xef\xbb\xbf")


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[list[dict[str, Any] | str]], list[str], int, int]:
    """Events (ids from a small pool: duplicates; some bad timestamps, lines that are not
    JSON, unknown customers, keys from a pool) split over 1-3 files of random formats, and a
    chunk limit and text size estimate."""
    n = draw(st.integers(1, 40))
    events: list[dict[str, Any] | str] = []
    for i in range(n):
        if draw(st.integers(0, 15)) == 0:
            events.append("{not json " + str(i))
            continue
        day = draw(st.sampled_from(["2026-01-05T01:00:00Z", "2026-01-06T02:00:00Z", "bad"]))
        keys = draw(st.lists(st.sampled_from(["model", "tokens", "region"]), unique=True))
        record = event(
            f"tx-{draw(st.integers(0, 12))}",
            draw(st.sampled_from(["cust-0", "cust-1", "ghost"])),
            day,
            **{k: f"{k}{i}" for k in keys},
        )
        events.append(record)
    cuts = sorted(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=2, unique=True)))
    parts = [events[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True) if b > a]
    formats = [draw(st.sampled_from(["ndjson", "parquet", "csv"])) for _ in parts]
    return parts, formats, draw(st.integers(1, 8)), draw(st.sampled_from([20, 60, 150]))


def write_dump(path: Path, fmt: str, rows: list[dict[str, Any] | str]) -> Path:
    if fmt == "ndjson":
        return ndjson_dump(path.with_suffix(".ndjson"), rows)
    good = [r for r in rows if isinstance(r, dict)]
    if fmt == "csv":
        return csv_dump(path.with_suffix(".csv"), good)
    return parquet_dump(path.with_suffix(".parquet"), good, row_group=2)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_any_batch_in_any_chunks_stores_and_reports_what_it_does_in_one(drawn: Any) -> None:
    parts, formats, limit, text_bytes = drawn
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        root = Path(tmp)
        files = [
            write_dump(root / f"part{i}", f, p)
            for i, (f, p) in enumerate(zip(formats, parts, strict=True))
        ]
        files = [f for f in files if f.stat().st_size]
        assume(files)
        whole = ingest(new_home(root / "whole"), files, now=NOW)
        patch.setattr(pipeline, "chunk_events", lambda _: limit)
        patch.setattr(chunks, "TEXT_BYTES_PER_EVENT", text_bytes)
        home = new_home(root / "chunked")
        chunked = ingest(home, files, now=NOW)
        assert {k: getattr(chunked, k) for k in COMPARED} == {
            k: getattr(whole, k) for k in COMPARED
        }
        assert stored_rows(home) == stored_rows(Home.resolve(root / "whole"))
        if whole.rejected:
            assert rejects(chunked) == rejects(whole)


def test_a_bad_line_in_a_later_piece_is_named_by_its_line_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [json.dumps(event(f"tx-{i}", "c", "2026-01-05T00:00:00Z")) for i in range(30)]
    rows[24] = rows[24].replace(", ", ",\r ", 1)  # a carriage return inside line 25
    dump = ndjson_dump(tmp_path / "events.ndjson", list(rows))
    monkeypatch.setattr(pipeline, "chunk_events", lambda _: 4)
    monkeypatch.setattr(chunks, "TEXT_BYTES_PER_EVENT", 40)
    home = new_home(tmp_path / "home")
    with pytest.raises(UserError, match=r"events\.ndjson: line 25 holds a carriage return"):
        ingest(home, [dump], now=NOW)
    assert len(stored_rows(home)) == 2  # the two events stored before
