"""Ingest's work connection and write path: DuckDB resources from the home's settings, files cut
by date and size with only their own property columns, dedup within and across batches at
once, and a writer failure that fails the batch cleanly."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import warehouse.compact as compact_mod
from warehouse.events import EventStore
from warehouse.home import DEFAULT_MEMORY_LIMIT, Home, memory_bytes
from warehouse.ingest import ingest, pipeline, write
from warehouse.ingest.write import split_by_date

NOW = datetime(2026, 2, 1)
SETTINGS = ("METERQL_THREADS", "METERQL_MEMORY_LIMIT", "METERQL_TEMP_DIRECTORY")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    home = Home(tmp_path / "home")
    home.init()
    return home


def event(tid: str, customer: str, ts: str, **properties: str) -> dict:
    return {
        "transaction_id": tid,
        "customer_id": customer,
        "event_type": "e",
        "timestamp": ts,
        "properties": properties,
    }


def ndjson(path: Path, events: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n", encoding="utf-8")
    return path


def spy_settings(monkeypatch: pytest.MonkeyPatch, module: object) -> list[dict[str, str]]:
    """Record the DuckDB settings of every work connection `module` opens."""
    seen: list[dict[str, str]] = []
    opened = module.open_work  # type: ignore[attr-defined]

    def spy(home: Home, name: str):
        con = opened(home, name)
        row = con.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit'), "
            "current_setting('temp_directory')"
        ).fetchall()[0]
        seen.append({"name": name, "threads": str(row[0]), "memory": row[1], "temp": row[2]})
        return con

    monkeypatch.setattr(module, "open_work", spy)
    return seen


def test_ingest_and_compaction_work_with_the_home_settings(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METERQL_THREADS", "1")
    monkeypatch.setenv("METERQL_MEMORY_LIMIT", "700MiB")
    monkeypatch.setenv("METERQL_TEMP_DIRECTORY", str(tmp_path / "spill"))
    seen = spy_settings(monkeypatch, pipeline)
    for i in range(2):  # two batches: two files of one date, for the compaction below
        path = ndjson(tmp_path / f"{i}.ndjson", [event(f"t{i}", "c", "2026-01-20T00:00:00Z")])
        summary = ingest(home, [path], now=NOW)
        assert summary.accepted == 1
        assert seen[-1] == {
            "name": summary.batch_id,
            "threads": "1",
            "memory": seen[-1]["memory"],
            "temp": str(tmp_path / "spill" / summary.batch_id),
        }
        assert memory_bytes(seen[-1]["memory"]) == 700 * 2**20
    compacted = spy_settings(monkeypatch, compact_mod)
    summary = compact_mod.compact(home)
    assert summary.files_after == 1
    assert [(s["threads"], memory_bytes(s["memory"])) for s in compacted] == [("1", 700 * 2**20)]
    assert compacted[0]["temp"].startswith(str(tmp_path / "spill" / "compact-"))
    assert not any((tmp_path / "spill").iterdir())  # each work connection removed its own


def test_ingest_defaults_cap_memory_and_spill_inside_the_home(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_settings(monkeypatch, pipeline)
    path = ndjson(tmp_path / "e.ndjson", [event("t", "c", "2026-01-20T00:00:00Z")])
    summary = ingest(home, [path], now=NOW)
    limit = memory_bytes(seen[0]["memory"])
    assert limit is not None and limit <= memory_bytes(DEFAULT_MEMORY_LIMIT)
    assert seen[0]["temp"] == str(home.staging_dir / "duckdb-tmp" / summary.batch_id)


def stored_rows(home: Home, keys: list[str]) -> list[tuple]:
    con = home.connect()
    try:
        query = EventStore(home, con).relation(keys, resolve_customers=False)
        return sorted(con.execute(query.sql("duckdb")).fetchall())
    finally:
        con.close()


def test_a_large_date_is_cut_into_sorted_files_holding_only_their_columns(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write, "MAX_ROWS_PER_FILE", 5)
    monkeypatch.setattr(write, "ROW_GROUP_SIZE", 2)
    # 12 events of one date: "first" only on customer a (sorted first), "last" only on z
    events = [
        event(f"t{i:02d}", c, f"2026-01-20T{h:02d}:00:00Z", **props)
        for i, (c, h, props) in enumerate(
            [("z", 5, {"last": "1"}), ("a", 3, {"first": "x"}), ("m", 1, {})]
            + [("m", h, {"both": str(h)}) for h in range(2, 8)]
            + [("a", 1, {"first": "y"}), ("z", 1, {"last": "2"}), ("z", 9, {})]
        )
    ]
    summary = ingest(home, [ndjson(tmp_path / "e.ndjson", events)], now=NOW)
    assert (summary.accepted, summary.files_written) == (12, 3)
    con = home.connect()
    listed = con.execute(
        "SELECT path, row_count, property_columns FROM event_files ORDER BY path"
    ).fetchall()
    con.close()
    order = []
    for path, rows, columns in listed:
        parquet = pq.ParquetFile(home.events_dir / path)
        table = parquet.read()
        physical = [c for c in table.column_names if c.startswith("p_")]
        assert physical == columns  # only the columns with a value in this file
        assert all(table.column(c).null_count < len(table) for c in physical)
        assert len(table) == rows
        sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
        assert max(sizes) <= 2
        columns_of = (table.column(c).to_pylist() for c in ("customer_id", "timestamp"))
        order += list(zip(*columns_of, strict=True))
    assert [r for _, r, _ in listed] == [5, 5, 2]
    assert listed[0][2] == ["p_both", "p_first"] and listed[2][2] == ["p_last"]
    assert order == sorted(order)
    stored = stored_rows(home, ["first", "last", "both"])
    assert len(stored) == 12 and {r[0] for r in stored} == {e["transaction_id"] for e in events}


def test_repeats_inside_a_batch_of_an_id_already_stored_are_all_duplicates(
    home: Home, tmp_path: Path
) -> None:
    first = ndjson(tmp_path / "a.ndjson", [event("old", "c", "2026-01-10T00:00:00Z", v="1")])
    assert ingest(home, [first], now=NOW).accepted == 1
    again = [
        event("old", "c", "2026-01-11T00:00:00Z", v="2"),
        event("new", "c", "2026-01-11T00:00:00Z", v="3"),
        event("old", "c", "2026-01-12T00:00:00Z", v="4"),
        event("new", "c", "2026-01-12T00:00:00Z", v="5"),
    ]
    summary = ingest(home, [ndjson(tmp_path / "b.ndjson", again)], now=NOW)
    assert (summary.accepted, summary.duplicates) == (1, 3)
    assert summary.duplicate_transaction_ids == ["new", "old"]
    assert [(r[0], r[-1]) for r in stored_rows(home, ["v"])] == [("new", "3"), ("old", "1")]


def test_a_failing_writer_fails_the_batch_and_leaves_nothing(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write, "MAX_ROWS_PER_FILE", 2)
    monkeypatch.setattr(write, "ROW_GROUP_SIZE", 1)
    calls = []

    def failing(table: pa.Table, constants: write.Constants) -> pa.Table:
        calls.append(len(table))
        if len(calls) == 3:
            raise OSError("disk full")
        return write.with_constants(table, constants)

    monkeypatch.setattr(pipeline, "with_constants", failing)
    events = [event(f"t{i}", "c", f"2026-01-{10 + i % 3:02d}T00:00:00Z") for i in range(9)]
    path = ndjson(tmp_path / "e.ndjson", events)
    with pytest.raises(OSError, match="disk full"):
        ingest(home, [path], now=NOW)
    assert list(home.events_dir.rglob("*.parquet")) == []
    assert stored_rows(home, []) == []
    con = home.connect()
    assert con.execute("SELECT status FROM ingest_batches").fetchall() == [("failed",)]
    con.close()
    monkeypatch.undo()
    assert ingest(home, [path], now=NOW).accepted == 9


def test_split_by_date_checks_the_counts() -> None:
    batch = pa.record_batch({"x": list(range(5))})
    pieces = list(split_by_date([batch, batch], [(date(2026, 1, 1), 3), (date(2026, 1, 2), 7)]))
    assert [(d.day, p.num_rows) for d, p in pieces] == [(1, 3), (2, 2), (2, 5)]
    with pytest.raises(RuntimeError, match="more rows"):
        list(split_by_date([batch], [(date(2026, 1, 1), 4)]))
    with pytest.raises(RuntimeError, match="fewer rows"):
        list(split_by_date([batch], [(date(2026, 1, 1), 4), (date(2026, 1, 2), 2)]))


def test_spill_directories_of_killed_commands_are_removed(home: Home, tmp_path: Path) -> None:
    """A killed ingest or compaction leaves its DuckDB spill files behind: the next ingest or
    compaction (under the writer lock) removes the home's own ones."""
    stale = [
        home.default_temp_dir / "ingest-20260101T000000-deadbeef",
        home.staging_dir / "ingest-20260101T000000-deadbeef",
        home.default_temp_dir / "compact-20260101T000000-deadbeef-2026-01-20",
    ]
    for directory in stale:
        directory.mkdir(parents=True)
        (directory / "duckdb_temp_storage-0.tmp").write_bytes(b"x" * 10)
    path = ndjson(tmp_path / "e.ndjson", [event("t", "c", "2026-01-20T00:00:00Z")])
    assert ingest(home, [path], now=NOW).accepted == 1
    assert [d.exists() for d in stale] == [False, False, True]
    compact_mod.compact(home)
    assert not stale[2].exists()


def test_pivot_puts_each_key_value_on_its_row() -> None:
    # keys 0 and 2 have values (1 has none), rows at both ends; a column of the same name as
    # key 2 keeps its own values and takes the key's where it has none
    from warehouse.ingest.sparse import _pivot
    from warehouse.layout import property_column

    table = pa.table({"id": ["a", "b", "c", "d"], property_column("z"): [None, "own", None, None]})
    long = pa.table(
        {
            "row": pa.array([0, 3, 1, 2], pa.int64()),
            "key": pa.array([0, 0, 2, 2], pa.int64()),
            "value": ["x0", "x3", "z1", "z2"],
        }
    )
    out = _pivot(table, long, ["x", "y", "z"], {"z"})
    assert out.column_names == ["id", property_column("z"), property_column("x")]
    assert out.column(property_column("x")).to_pylist() == ["x0", None, None, "x3"]
    assert out.column(property_column("z")).to_pylist() == [None, "own", "z2", None]
    empty = long.slice(0, 0)
    assert _pivot(table, empty, ["x"], set()).equals(table)


def test_pivot_puts_rare_keys_into_the_map(monkeypatch: pytest.MonkeyPatch) -> None:
    # with more keys than NARROW_KEYS, a key on fewer than COLUMN_SHARE of the rows goes into
    # the map of rare keys; a key that already has a column stays a column
    from warehouse import rare
    from warehouse.ingest.sparse import _pivot
    from warehouse.layout import property_column, rare_column

    monkeypatch.setattr(rare, "NARROW_KEYS", 1)
    monkeypatch.setattr(rare, "COLUMN_SHARE", 0.5)
    table = pa.table({"id": ["a", "b", "c", "d"], property_column("z"): [None, "own", None, None]})
    long = pa.table(
        {
            "row": pa.array([0, 1, 2, 3, 3, 2], pa.int64()),
            "key": pa.array([0, 0, 0, 1, 2, 3], pa.int64()),
            "value": ["x0", "x1", "x2", "y3", "z3", "w2"],
        }
    )
    out = _pivot(table, long, ["x", "y", "z", "w"], {"z"})
    maps = sorted({rare_column("w"), rare_column("y")})
    assert out.column_names == ["id", property_column("z"), *maps, property_column("x")]
    assert out.column(property_column("x")).to_pylist() == ["x0", "x1", "x2", None]
    assert out.column(property_column("z")).to_pylist() == [None, "own", None, "z3"]
    assert rare_column("w") != rare_column("y")  # each in its bucket's map
    assert out.column(rare_column("w")).to_pylist() == [None, None, [("w", "w2")], None]
    assert out.column(rare_column("y")).to_pylist() == [None, None, None, [("y", "y3")]]
