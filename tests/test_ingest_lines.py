"""Reading NDJSON lines: numbered in file order on every thread for a large file, long lines
read again with the largest limits, and never a line silently left out."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from warehouse.errors import UserError
from warehouse.home import Home
from warehouse.ingest import ingest, json_records, sources
from warehouse.ingest.json_records import count_lines, lines_bytes

NOW = datetime(2026, 2, 1)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home(tmp_path / "home")
    home.init()
    return home


def line(i: int, pad: int = 0) -> str:
    return json.dumps(
        {
            "transaction_id": f"t{i}",
            "customer_id": "c",
            "event_type": "e",
            "timestamp": "2026-01-20T00:00:00Z",
            "properties": {"pad": "x" * pad},
        }
    )


@pytest.fixture
def small_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Buffers of a few hundred bytes, so a small file is read the way a large one is."""
    monkeypatch.setattr(json_records, "FAST_LINE_BYTES", 300)
    monkeypatch.setattr(json_records, "FAST_BUFFER_BYTES", 600)
    monkeypatch.setattr(json_records, "MAX_LINE_BYTES", 3000)
    monkeypatch.setattr(json_records, "READ_BUFFER_BYTES", 6000)


def rejects(summary) -> list[dict]:
    text = Path(summary.rejects_path).read_text(encoding="utf-8")
    return [json.loads(r) for r in text.splitlines()]


@pytest.mark.usefixtures("small_buffers")
def test_a_large_file_keeps_its_line_numbers(home: Home, tmp_path: Path) -> None:
    lines = [line(i) for i in range(60)]
    lines[7] = ""  # blank lines count for line numbers
    lines[30] = "not json"
    lines[59] = "   "
    path = tmp_path / "big.ndjson"
    path.write_text("\n".join(lines), encoding="utf-8")  # no newline at the end
    assert path.stat().st_size > json_records.FAST_BUFFER_BYTES
    summary = ingest(home, [path], now=NOW)
    assert (summary.received, summary.accepted, summary.rejected) == (58, 57, 1)
    [reject] = rejects(summary)
    assert (reject["record"], reject["raw"]) == (31, "not json")
    assert reject["message"].startswith("line 31 of big.ndjson")


@pytest.mark.usefixtures("small_buffers")
@pytest.mark.parametrize("pad", [400, 800])  # longer than the first limit / than its buffer
def test_a_line_longer_than_the_first_buffer_is_read_again(
    home: Home, tmp_path: Path, pad: int
) -> None:
    lines = [line(i) for i in range(20)]
    lines[12] = "{bad"
    lines[19] = line(19, pad)  # DuckDB drops a last line longer than its buffer, silently
    for name, opener in (("a.ndjson", open), ("b.ndjson.gz", gzip.open)):
        path = tmp_path / name
        with opener(path, "wt", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    summary = ingest(home, [tmp_path / "a.ndjson", tmp_path / "b.ndjson.gz"], now=NOW)
    assert (summary.accepted, summary.duplicates, summary.rejected) == (19, 19, 2)
    assert [(r["record"], Path(r["source"]).name) for r in rejects(summary)] == [
        (13, "a.ndjson"),
        (13, "b.ndjson.gz"),
    ]


def duckdb_lines(path: Path, max_line: int, buffer: int) -> tuple[int, int]:
    """(lines, bytes of their text) as DuckDB's CSV reader gives them (as json_records reads)."""
    con = duckdb.connect()
    try:
        file = sources.SourceFile(0, path, "ndjson", path.stat().st_size)
        lines = json_records._read_lines(file, max_line, buffer)
        sql = f"SELECT count(*), coalesce(sum(strlen(line)), 0) FROM {lines}"  # noqa: S608
        return con.execute(sql).fetchall()[0]
    finally:
        con.close()


@pytest.mark.usefixtures("small_buffers")
def test_a_long_line_between_others_is_read_again(home: Home, tmp_path: Path) -> None:
    lines = [line(i) for i in range(40)]
    lines[27] = line(27, 1500)  # longer than the first buffer, not at either end
    path = tmp_path / "middle.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # what makes the check necessary: DuckDB leaves that line out without an error
    read, text_bytes = duckdb_lines(
        path, json_records.FAST_LINE_BYTES, json_records.FAST_BUFFER_BYTES
    )
    assert read == 39
    assert lines_bytes(path, read, text_bytes) != path.stat().st_size
    summary = ingest(home, [path], now=NOW)
    assert (summary.received, summary.accepted) == (40, 40)


@pytest.mark.usefixtures("small_buffers")
@pytest.mark.parametrize("pad", [4000, 7000])  # longer than the limit / than every buffer
def test_a_line_longer_than_the_limit_stops_the_ingest(
    home: Home, tmp_path: Path, pad: int
) -> None:
    path = tmp_path / "long.ndjson"
    lines = [line(1), line(2), line(3, pad)]  # a last line longer than every buffer: dropped
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # by DuckDB without an error
    with pytest.raises(UserError, match="cannot read ndjson file .*long.ndjson"):
        ingest(home, [path], now=NOW)
    assert list(home.events_dir.rglob("*.parquet")) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0),
        (b"a", 1),
        (b"a\n", 1),
        (b"a\nb", 2),
        (b"a\r\nb\r\n\r\n", 3),
        (b"\n\n", 2),
        (b"a\rb\r", 2),
        (b"a\rb", 2),
    ],
)
def test_count_lines(tmp_path: Path, data: bytes, expected: int) -> None:
    (tmp_path / "x.ndjson").write_bytes(data)
    (tmp_path / "x.ndjson.gz").write_bytes(gzip.compress(data))
    assert count_lines(tmp_path / "x.ndjson") == expected
    assert count_lines(tmp_path / "x.ndjson.gz") == expected


@pytest.mark.parametrize(
    "data",
    [
        b"a",
        b"a\n",
        b"a\nb",
        b"a\r\nb\r\n\r\n",
        b"\n\n",
        b"a\rb\r",
        b"a\rb",
        b" \t\n\xc3\xa9\xe2\x82\xac\n\nx",
        b"\xef\xbb\xbfa\nbb\n",
        b"\xef\xbb\xbf\r\nx\r\n",
        b"x" * 70_000 + b"\r\ny",  # the first line end beyond the first 64 KiB read
    ],
)
def test_lines_bytes_is_the_size_of_the_lines_duckdb_reads(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(data)
    read, text_bytes = duckdb_lines(path, sources.MAX_LINE_BYTES, sources.READ_BUFFER_BYTES)
    assert read == count_lines(path)
    assert lines_bytes(path, read, text_bytes) == len(data)
    # a line left out (a long one: some text with it) or a line cut in two breaks the sum
    if text_bytes:
        assert lines_bytes(path, read - 1, text_bytes - 1) != len(data)
    assert lines_bytes(path, read + 1, text_bytes) != len(data)


@pytest.mark.parametrize(
    ("name", "end", "compress"),
    [("lf.ndjson", "\n", False), ("crlf.ndjson", "\r\n", False), ("lf.ndjson.gz", "\n", True)],
)
def test_a_carriage_return_inside_a_line_stops_the_ingest_naming_the_line(
    home: Home, tmp_path: Path, name: str, end: str, compress: bool
) -> None:
    """JSON allows \\r as whitespace, but DuckDB's line reader takes it as a line end: in a
    CRLF file it cut the line in two (a valid event rejected as two malformed lines, and every
    later line numbered one too far); in an LF file it failed with "CSV Parser state machine
    reached an invalid state"; a gzipped file was reported as holding a line over 256 MiB."""
    lines = [line(1), line(2).replace(", ", ",\r ", 1), line(3)]
    data = end.join(lines).encode() + end.encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(UserError, match=r"line 2 holds a carriage return \(\\r\) that does not"):
        ingest(home, [path], now=NOW)
    assert not list(home.events_dir.rglob("*.parquet"))


@pytest.mark.parametrize(
    "data",
    [b"a\nb\r", b"a\rb\r", b"a\r\nb\r\n", b"a\n\r\n", b"\xef\xbb\xbfa\r\n", b""],
)
def test_line_ends_that_are_no_lone_carriage_return(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(data)
    assert json_records.lone_carriage_return(path) is None


def test_the_line_of_a_lone_carriage_return_counts_from_the_start_of_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(b"a\r\n\r\nb\r\nc\rd\r\n")
    assert json_records.lone_carriage_return(path) == 4


def test_many_small_files_read_at_once_give_what_one_by_one_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small NDJSON files, plain or gzipped, are read by ONE read (load_small_files): every
    line keeps its file and line number (rejects, the first copy of a duplicate), blank lines,
    byte order marks and CRLF included; a file whose check fails, or every file when that read
    fails, is read on its own."""
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    bad = "{not json"
    bodies = {
        "a.ndjson": "\n".join([line(1), bad, "", line(2), line(3)]) + "\n",
        "b.ndjson": "\ufeff" + "\r\n".join([line(3), line(4), "   ", bad + " b", line(5)]),
        "c.ndjson": "\n".join([bad + " c", line(6), line(1)]) + "\n",
        "d.ndjson": "\n\n\n",
        "e.ndjson": "\n".join([line(7), line(8, pad=600), bad + " e"]) + "\n",
    }
    for name, body in bodies.items():
        (dumps / name).write_text(body, encoding="utf-8")
    gzipped = "\n".join([line(9), bad + " g"]) + "\n"
    (dumps / "g.ndjson.gz").write_bytes(gzip.compress(gzipped.encode()))
    calls: list[str] = []
    real = json_records.load_lines

    def one(con: duckdb.DuckDBPyConnection, file: sources.SourceFile) -> str | None:
        calls.append(file.path.name)
        return real(con, file)

    monkeypatch.setattr("warehouse.ingest.staging.load_lines", one)

    def run(name: str) -> Any:
        home = Home(tmp_path / name)
        home.init()
        calls.clear()
        return ingest(home, [dumps], now=NOW)

    def rejects(summary: Any) -> list[dict[str, Any]]:
        text = Path(summary.rejects_path).read_text(encoding="utf-8")
        rows = [json.loads(r) for r in text.split("\n") if r]
        return [{k: v for k, v in r.items() if k != "batch_id"} for r in rows]

    def same(a: Any, b: Any) -> None:
        assert rejects(a) == rejects(b)
        assert (a.accepted, a.duplicates, a.received) == (b.accepted, b.duplicates, b.received)

    at_once = run("at-once")
    assert calls == []
    assert [(r["source"].rsplit("/", 1)[1], r["record"]) for r in rejects(at_once)] == [
        ("a.ndjson", 2),
        ("b.ndjson", 4),
        ("c.ndjson", 1),
        ("e.ndjson", 3),
        ("g.ndjson.gz", 2),
    ]
    assert (at_once.accepted, at_once.duplicates, at_once.received) == (9, 2, 16)

    with monkeypatch.context() as patch:
        patch.setattr("warehouse.ingest.staging.load_small_files", lambda con, files: files)
        same(run("one-by-one"), at_once)

    checked = json_records._all_lines_read
    with monkeypatch.context() as patch:  # c.ndjson's check fails: c alone is read again
        patch.setattr(
            json_records,
            "_all_lines_read",
            lambda path, *counts: path.name != "c.ndjson" and checked(path, *counts),
        )
        with pytest.raises(UserError, match="c.ndjson: a line is longer than"):
            run("check-fails")
        assert calls == ["c.ndjson"]

    with monkeypatch.context() as patch:  # the one read fails (a line over its limit)
        patch.setattr(json_records, "MAX_LINE_BYTES", 300)
        patch.setattr(json_records, "READ_BUFFER_BYTES", 600)
        patch.setattr(json_records, "FAST_LINE_BYTES", 1000)
        patch.setattr(json_records, "FAST_BUFFER_BYTES", 2000)
        same(run("read-fails"), at_once)
        assert calls == [*bodies, "g.ndjson.gz"]


def test_a_carriage_return_inside_a_line_of_one_of_many_small_gzipped_files_is_named(
    home: Home, tmp_path: Path
) -> None:
    good = (line(1) + "\n").encode()
    bad = "\r\n".join([line(2), line(3).replace(", ", ",\r ", 1)]).encode() + b"\r\n"
    (tmp_path / "a.ndjson.gz").write_bytes(gzip.compress(good))
    (tmp_path / "b.ndjson.gz").write_bytes(gzip.compress(bad))
    with pytest.raises(UserError, match=r"b\.ndjson\.gz: line 2 holds a carriage return"):
        ingest(home, [tmp_path / "a.ndjson.gz", tmp_path / "b.ndjson.gz"], now=NOW)
    assert not list(home.events_dir.rglob("*.parquet"))


@pytest.mark.parametrize(
    "data",
    [
        b"a\r\nb\r\nc\rd\r\n",
        b"a\nb\r",
        b"a\rb\r",
        b"\r\r\nx\n",
        b"ab\r\r\n\r\n",
        b"a\r\n" * 7 + b"b\rc\n",
        b"x\ry\rz\r" + b"q\n",
        b"",
    ],
)
def test_a_gzipped_file_is_searched_block_by_block_as_a_plain_one_whole(
    tmp_path: Path, data: bytes
) -> None:
    plain = tmp_path / "x.ndjson"
    plain.write_bytes(data)
    whole = json_records.lone_carriage_return(plain)
    for block in (1, 2, 3, 5, 64):
        with gzip.open(_gz(tmp_path, data), "rb") as handle:
            assert json_records._lone_cr_in_blocks(handle, block) == whole, block


def _gz(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "x.ndjson.gz"
    path.write_bytes(gzip.compress(data))
    return path
