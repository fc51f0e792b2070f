"""Many small Parquet files of one signature are staged by ONE read (staging._groups), and a
Parquet column named like DuckDB's row-number columns is an ordinary property: either way
every row keeps its file and row number (rejects, the first copy of a duplicate)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse.errors import UserError
from warehouse.home import Home
from warehouse.ingest import chunks, ingest, pipeline, readers, staging
from warehouse.ingest.sources import resolve_sources
from warehouse.layout import property_column

NOW = datetime(2026, 2, 1)
GOOD = "2026-01-20T00:00:00Z"


def dump(path: Path, ids: list[str], times: list[str], **extra: list[Any]) -> Path:
    columns = {
        "transaction_id": ids,
        "customer_id": ["c"] * len(ids),
        "event_type": ["e"] * len(ids),
        "timestamp": times,
        **extra,
    }
    pq.write_table(pa.table(columns), path, row_group_size=2)
    return path


def run(tmp: Path, name: str, files: list[Path]) -> Any:
    home = Home(tmp / name)
    home.init()
    summary = ingest(home, files, now=NOW)
    con = duckdb.connect()
    paths = [str(p) for p in sorted(home.events_dir.rglob("*.parquet"))]
    result = con.execute(
        "SELECT * EXCLUDE (ingested_at, batch_id) FROM read_parquet($p, union_by_name = true) "
        "ORDER BY transaction_id",
        {"p": paths},
    )
    names = [d[0] for d in result.description]
    rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    rejects = []
    if summary.rejects_path:
        for line in Path(summary.rejects_path).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            rejects.append((Path(record["source"]).name, record["record"], record["reason"]))
    return summary, rows, rejects


def test_small_parquet_files_read_together_give_what_one_by_one_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "dumps"
    src.mkdir()
    files = []
    for i in range(6):
        ids = [f"t{i}-{j}" for j in range(5)] + ["t0-1"]  # t0-1 again: a duplicate
        times = [GOOD] * 6
        times[i % 5] = "not a time"  # a reject in each file, at another row
        if i % 2:  # two signatures, interleaved
            files.append(dump(src / f"f{i}.parquet", ids, times, model=["m"] * 6))
        else:
            files.append(dump(src / f"f{i}.parquet", ids, times, tokens=[str(j) for j in range(6)]))
    together = run(tmp_path, "together", files)
    plan = readers.inspect_sources(duckdb.connect(), list(resolve_sources(files).files))
    assert [len(g) for g in staging._groups(plan.tables)] == [3, 3]
    monkeypatch.setattr(staging, "_groups", lambda tables: [[t] for t in tables])
    alone = run(tmp_path, "alone", files)
    assert together[1:] == alone[1:]
    assert together[2][:3] == [
        ("f0.parquet", 1, "invalid_timestamp"),
        ("f1.parquet", 2, "invalid_timestamp"),
        ("f2.parquet", 3, "invalid_timestamp"),
    ]
    assert (together[0].accepted, together[0].duplicates) == (24, 6)


def test_an_unreadable_file_of_a_group_is_named(tmp_path: Path) -> None:
    files = [dump(tmp_path / f"f{i}.parquet", [f"t{i}"], [GOOD]) for i in range(3)]
    data = files[1].read_bytes()
    files[1].write_bytes(data[:4] + b"\xff" * 40 + data[44:])  # broken pages, a sound footer
    home = Home(tmp_path / "home")
    home.init()
    with pytest.raises(UserError, match=r"cannot read parquet file \S*f1\.parquet"):
        ingest(home, files, now=NOW)
    assert not list(home.events_dir.rglob("*.parquet"))


@pytest.mark.parametrize("chunked", [False, True])
def test_columns_named_like_duckdb_row_numbers_are_properties(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    """`file_row_number` made DuckDB's option fail ("a column with this name is also in the
    file": an internal error); `file_index` hid DuckDB's file numbers."""
    ids = [f"t{j}" for j in range(7)]
    times = [GOOD] * 7
    times[5] = "not a time"
    extra = {
        "file_row_number": [f"r{j}" for j in range(7)],
        "File_Index": ["x"] * 7,
        "filename": ["y"] * 7,
    }
    files = [dump(tmp_path / "a.parquet", ids, times, **extra)]
    files.append(
        dump(
            tmp_path / "b.parquet",
            ["t0", "u1"],
            [GOOD, "bad"],
            **{k: v[:2] for k, v in extra.items()},
        )
    )
    if chunked:
        monkeypatch.setattr(pipeline, "chunk_events", lambda _: 3)  # row groups of 2 rows
        monkeypatch.setattr(chunks, "TEXT_BYTES_PER_EVENT", 1)
    summary, rows, rejects = run(tmp_path, "home", files)
    assert rejects == [("a.parquet", 6, "invalid_timestamp"), ("b.parquet", 2, "invalid_timestamp")]
    assert (summary.accepted, summary.duplicates) == (6, 1)
    stored = [
        (
            r["transaction_id"],
            r[property_column("file_row_number")],
            r[property_column("File_Index")],
        )
        for r in rows
    ]
    assert stored == [(f"t{j}", f"r{j}", "x") for j in (0, 1, 2, 3, 4, 6)]


def test_small_csv_files_read_together_give_what_one_by_one_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "dumps"
    src.mkdir()
    files = []
    for i in range(5):
        header = "transaction_id,customer_id,event_type,timestamp," + ("model" if i % 2 else "note")
        rows = [f't{i}-{j},c,e,{GOOD},"v{j}"' for j in range(4)]
        rows[i % 4] = f"t{i}-{i % 4},c,e,not a time,x"  # a reject in each file, at another row
        rows.append(f't0-1,c,e,{GOOD},"two\nlines"')  # a duplicate; a cell holding a line end
        path = src / f"f{i}.csv"
        path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        files.append(path)
    plan = readers.inspect_sources(duckdb.connect(), list(resolve_sources(files).files))
    assert [len(g) for g in staging._groups(plan.tables)] == [3, 2]
    together = run(tmp_path, "together", files)
    monkeypatch.setattr(staging, "_groups", lambda tables: [[t] for t in tables])
    alone = run(tmp_path, "alone", files)
    assert together[1:] == alone[1:]
    assert [r[:2] for r in together[2]] == [(f"f{i}.csv", i % 4 + 1) for i in range(5)]
    assert (together[0].accepted, together[0].duplicates) == (15, 5)
