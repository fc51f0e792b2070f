"""Whole-batch behaviour: user errors that stop an ingest before anything is written, the ledger,
crash safety (nothing visible before the commit, a re-run stores everything exactly once), and
the `meterql ingest` command."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse.errors import UserError
from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import ingest, ledger

NOW = datetime(2026, 2, 1)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home.resolve(tmp_path / "home")
    home.init()
    return home


def events_file(tmp_path: Path, n: int = 3, name: str = "events.ndjson") -> Path:
    path = tmp_path / name
    path.write_text(
        "\n".join(
            json.dumps(
                {
                    "transaction_id": f"t{i}",
                    "customer_id": "c",
                    "event_type": "e",
                    "timestamp": f"2026-01-{10 + i % 3:02d}T00:00:00Z",
                    "properties": {"n": str(i)},
                }
            )
            for i in range(n)
        ),
        encoding="utf-8",
    )
    return path


def visible_ids(home: Home) -> list[str]:
    con = home.connect()
    try:
        query = EventStore(home, con).relation([], resolve_customers=False)
        return sorted(r[0] for r in con.execute(query.sql("duckdb")).fetchall())
    finally:
        con.close()


def ledger_rows(home: Home) -> list[tuple]:
    con = home.connect()
    try:
        return con.execute(
            "SELECT status, received, accepted, message FROM ingest_batches ORDER BY started_at"
        ).fetchall()
    finally:
        con.close()


def nothing_written(home: Home) -> None:
    assert ledger_rows(home) == []
    assert list(home.events_dir.rglob("*.parquet")) == []
    assert list(home.rejects_dir.iterdir()) == []


def test_a_path_that_does_not_exist(home: Home, tmp_path: Path) -> None:
    good = events_file(tmp_path)
    with pytest.raises(UserError, match=r"ingest path '.*missing\.ndjson' does not exist"):
        ingest(home, [good, tmp_path / "missing.ndjson"], now=NOW)
    with pytest.raises(UserError, match="the glob matches no file"):
        ingest(home, [str(tmp_path / "nothing-*.ndjson")], now=NOW)
    long = "x" * 300  # longer than a file name can be: the file system refuses the path
    for path in (f"{long}.ndjson", f"{long}*.ndjson"):
        with pytest.raises(UserError, match=r"ingest path '.*xxx\*?\.ndjson': File name too"):
            ingest(home, [good, str(tmp_path / path)], now=NOW)
    nothing_written(home)


def test_unsupported_extension(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "events.xml"
    path.write_text("<events/>", encoding="utf-8")
    with pytest.raises(UserError, match=r"'.*events\.xml' has an unsupported file type"):
        ingest(home, [path], now=NOW)
    nothing_written(home)


def refused(home: Home, paths: list[Path]) -> str:
    """The message of the UserError an ingest of `paths` raises; nothing was written."""
    with pytest.raises(UserError) as error:
        ingest(home, paths, now=NOW)
    nothing_written(home)
    return str(error.value)


def write_parquet(path: Path, **columns: pa.Array) -> Path:
    base = {
        "transaction_id": pa.array(["p1"]),
        "customer_id": pa.array(["c"]),
        "event_type": pa.array(["e"]),
        "timestamp": pa.array(["2026-01-20T00:00:00Z"]),
    }
    pq.write_table(pa.table({**base, **columns}), path)
    return path


def test_parquet_timestamp_as_int64(home: Home, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "bad.parquet", timestamp=pa.array([1767225600], pa.int64()))
    with pytest.raises(UserError) as error:
        ingest(home, [events_file(tmp_path), path], now=NOW)
    message = str(error.value)
    assert str(path) in message
    assert "column timestamp has type BIGINT" in message
    assert "expected a TIMESTAMP or TIMESTAMP WITH TIME ZONE column" in message
    nothing_written(home)


def test_parquet_properties_as_int_column(home: Home, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "bad.parquet", properties=pa.array([7], pa.int32()))
    assert refused(home, [path]) == (
        f"Parquet file {path}: column properties has type INTEGER; expected a MAP(VARCHAR, ...), "
        "a STRUCT, or text holding a JSON object"
    )


def test_parquet_id_column_of_a_wrong_type(home: Home, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "bad.parquet", customer_id=pa.array([1.5], pa.float64()))
    with pytest.raises(UserError, match="column customer_id has type DOUBLE; expected text"):
        ingest(home, [path], now=NOW)
    nothing_written(home)


def test_parquet_blob_property_column(home: Home, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "bad.parquet", payload=pa.array([b"\x00"], pa.binary()))
    with pytest.raises(UserError, match="column payload has type BLOB"):
        ingest(home, [path], now=NOW)


def test_csv_missing_column_suggests_the_name(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        "transaction_id,customerid,event_type,timestamp\nt1,c,e,2026-01-20T00:00:00Z\n",
        encoding="utf-8",
    )
    with pytest.raises(UserError) as error:
        ingest(home, [path], now=NOW)
    assert f"CSV file {path} has no column customer_id" in str(error.value)
    assert "did you mean 'customerid'?" in str(error.value)
    nothing_written(home)


@pytest.mark.parametrize(
    ("rows", "record", "line", "fields"),
    [
        (["t1,c,e,2026-01-20T00:00:00Z,gpt,5", "t2,c,e,2026-01-20T00:00:00Z,a, b,5"], 2, 3, 7),
        (["t1,c,e,2026-01-20T00:00:00Z,gpt", "t2,c,e,2026-01-20T00:00:00Z,gpt,5"], 1, 2, 5),
        (['t1,c,e,2026-01-20T00:00:00Z,"x,\ny",5'] * 20 + ["t2,c,e"], 21, 42, 3),
        # after the rows DuckDB's sniffer samples: the read itself fails
        (
            ["t1,c,e,2026-01-20T00:00:00Z,gpt,5"] * 30_000 + ["t2,c,e,2026-01-20T00:00:00Z,a,b,5"],
            30_001,
            30_002,
            7,
        ),
    ],
)
def test_csv_row_whose_fields_do_not_match_the_header_is_rejected_alone(
    home: Home, tmp_path: Path, rows: list[str], record: int, line: int, fields: int
) -> None:
    """A CSV row with more or fewer fields than the header (a value holding a comma, not
    quoted) is rejected as malformed, naming its line, with its text under `raw`; the file's
    other rows are ingested, with their row numbers in the file as sent.  (DuckDB cannot read
    such a file: the whole file was refused.)"""
    path = tmp_path / "e.csv"
    header = "transaction_id,customer_id,event_type,timestamp,model,tokens"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    summary = ingest(home, [path], now=NOW)
    assert (summary.rejected, summary.reasons) == (1, {"malformed": 1})
    assert summary.accepted + summary.duplicates == len(rows) - 1
    [reject] = [json.loads(x) for x in Path(summary.rejects_path or "").read_text().splitlines()]
    assert reject["record"] == record and reject["raw"] == rows[record - 1]
    assert reject["message"] == (
        f"row {record} of e.csv: line {line} has {fields} fields and the header 6; a value "
        "holding the delimiter ',', a quote or a line end must be in double quotes"
    )
    assert "event" not in reject


def test_csv_rows_numbered_as_sent_around_rejected_ragged_rows(home: Home, tmp_path: Path) -> None:
    """Rows after ragged ones keep their numbers in the file as sent (a blank line is no row):
    the first copy of an id wins, and a later row's reject names its own row."""
    path = tmp_path / "e.csv"
    path.write_text(
        "transaction_id,customer_id,event_type,timestamp,model\n"
        "t1,c,e,2026-01-20T00:00:00Z,gpt\n"
        "t2,c,e,2026-01-20T00:00:00Z,gpt,extra\n"
        '"t4",c,e,2026-01-20T00:00:00Z,"multi\nline"\n'
        "t5,c\n"
        "\n"
        "t6,c,e,yesterday,x\n"
        "t1,c,e,2026-01-20T00:00:00Z,second copy\n",
        encoding="utf-8",
    )
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.duplicates) == (2, 1)
    rejects = [json.loads(x) for x in Path(summary.rejects_path or "").read_text().splitlines()]
    assert [(r["record"], r["reason"]) for r in rejects] == [
        (2, "malformed"),
        (4, "malformed"),
        (5, "invalid_timestamp"),
    ]
    assert rejects[2]["event"]["model"] == "x"
    assert sorted(visible_ids(home)) == ["t1", "t4"]


def test_a_csv_file_of_mostly_ragged_rows_is_refused(
    home: Home, tmp_path: Path, monkeypatch
) -> None:
    """More ragged rows than MAX_RAGGED is no stray row but another shape of file (a
    delimiter DuckDB did not detect, a broken export): the file is refused, naming the first."""
    from warehouse.ingest import ragged

    monkeypatch.setattr(ragged, "MAX_RAGGED", 2)
    path = tmp_path / "e.csv"
    rows = ["t1,c,e,2026-01-20T00:00:00Z,gpt,5,x"] * 3 + ["t2,c,e,2026-01-20T00:00:00Z,gpt,5"]
    header = "transaction_id,customer_id,event_type,timestamp,model,tokens"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as error:
        ingest(home, [path], now=NOW)
    assert str(error.value) == (
        f"CSV file {path}: line 2 has 7 fields and the header 6; a value holding the delimiter "
        "',', a quote or a line end must be in double quotes (more than 2 rows do not match "
        "the header: check the delimiter and the quoting)"
    )
    assert visible_ids(home) == []
    assert list(home.staging_dir.rglob("*.csv")) == []


def test_a_csv_file_with_ragged_rows_and_text_not_utf8_is_refused(
    home: Home, tmp_path: Path
) -> None:
    """A CSV file that is not UTF-8 is refused, naming its line and byte, whether or not it
    has ragged rows (its copy without them was written with the bad bytes replaced, and
    ingested)."""
    path = tmp_path / "e.csv"
    path.write_bytes(
        b"transaction_id,customer_id,event_type,timestamp,model\n"
        b"t1,c,e,2026-01-20T00:00:00Z,caf\xe9\n"
        b"t2,c,e,2026-01-20T00:00:00Z,gpt,extra\n"
    )
    with pytest.raises(UserError) as error:
        ingest(home, [path], now=NOW)
    assert str(error.value) == (
        f"cannot read csv file {path}: line 2 is not UTF-8 text (byte 0xE9); save the file as UTF-8"
    )
    assert visible_ids(home) == []
    assert list(home.staging_dir.rglob("*.csv")) == []


def test_csv_file_with_ragged_rows_and_a_value_over_128_kib(home: Home, tmp_path: Path) -> None:
    """A value longer than Python's csv module reads by default (131,072 characters) in a
    file with a ragged row: the file's rows are split as any other (it was a csv.Error)."""
    path = tmp_path / "e.csv"
    long = "x" * 200_000
    path.write_text(
        "transaction_id,customer_id,event_type,timestamp,model\n"
        f"t1,c,e,2026-01-20T00:00:00Z,{long}\n"
        "t2,c,e,2026-01-20T00:00:00Z,gpt,extra\n"
        f't3,c,e,2026-01-20T00:00:00Z,"{long}"\n',
        encoding="utf-8",
    )
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.rejected, summary.reasons) == (2, 1, {"malformed": 1})
    assert visible_ids(home) == ["t1", "t3"]


def test_csv_ragged_row_that_fails_duckdbs_sniffer(home: Home, tmp_path: Path) -> None:
    """A ragged row in a file whose rows end in \\r\\n and a quoted value holds a \\n (a
    spreadsheet's line break in a cell): DuckDB's sniffer fails ("Error when sniffing file")
    rather than misreading the header; the row is still rejected alone (the file was
    refused)."""
    path = tmp_path / "e.csv"
    path.write_bytes(
        b"transaction_id,customer_id,event_type,timestamp,model\r\n"
        b't1,c,e,2026-01-20T00:00:00Z,"two\nlines"\r\n'
        b"t2,c,e,2026-01-20T00:00:00Z,gpt,extra\r\n"
        b"t3,c,e,2026-01-20T00:00:00Z,gpt\r\n"
    )
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.rejected, summary.reasons) == (2, 1, {"malformed": 1})
    [reject] = [json.loads(x) for x in Path(summary.rejects_path or "").read_text().splitlines()]
    assert (reject["record"], reject["raw"]) == (2, "t2,c,e,2026-01-20T00:00:00Z,gpt,extra")
    assert visible_ids(home) == ["t1", "t3"]


def test_csv_ragged_row_taken_for_the_header_with_a_value_twice(home: Home, tmp_path: Path) -> None:
    """DuckDB's sniffer may take a ragged row for the header: one holding a value twice is
    still rejected alone, not refused as a header naming a column twice."""
    path = tmp_path / "e.csv"
    path.write_text(
        "transaction_id,customer_id,event_type,timestamp\nt1,c,e,2026-01-20T00:00:00Z,x,x\n",
        encoding="utf-8",
    )
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.rejected, summary.reasons) == (0, 1, {"malformed": 1})


@pytest.mark.parametrize(
    ("value", "read"),
    [('"say \\"hi\\", ok"', 'say "hi", ok'), ("'a, b'", "a, b"), ('"a ""b"", c"', 'a "b", c')],
)
def test_csv_ragged_rows_split_with_the_files_quoting(
    home: Home, tmp_path: Path, value: str, read: str
) -> None:
    """Rows holding a delimiter inside a value quoted as DuckDB detects it (a quote escaped by
    a backslash, single quotes) are not ragged: with a ragged row in the file, only that row
    is rejected (each was: the csv module read them with doubled double quotes only)."""
    path = tmp_path / "e.csv"
    path.write_text(
        "transaction_id,customer_id,event_type,timestamp,model\n"
        f"t1,c,e,2026-01-20T00:00:00Z,{value}\n"
        f"t2,c,e,2026-01-20T00:00:00Z,{value}\n"
        "t3,c,e,2026-01-20T00:00:00Z,gpt,extra\n"
        f"t4,c,e,yesterday,{value}\n",
        encoding="utf-8",
    )
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.rejected) == (2, 2)
    rejects = [json.loads(x) for x in Path(summary.rejects_path or "").read_text().splitlines()]
    assert [(r["record"], r["reason"]) for r in rejects] == [
        (3, "malformed"),
        (4, "invalid_timestamp"),
    ]
    assert rejects[1]["event"]["model"] == read
    assert visible_ids(home) == ["t1", "t2"]


@pytest.mark.parametrize(
    ("header", "repeated"),
    [("model,model", "model"), ("transaction_id,model", "transaction_id")],
)
def test_csv_with_a_column_name_twice(
    home: Home, tmp_path: Path, header: str, repeated: str
) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        f"transaction_id,customer_id,event_type,timestamp,{header}\n"
        "t1,c,e,2026-01-20T00:00:00Z,a,b\n",
        encoding="utf-8",
    )
    assert refused(home, [events_file(tmp_path), path]) == (
        f"CSV file {path}: its header names column {repeated!r} more than once; each event "
        "field and each property needs exactly one column"
    )


def test_parquet_with_a_column_or_struct_field_name_twice(home: Home, tmp_path: Path) -> None:
    base = pa.table(
        {
            "transaction_id": ["t1"],
            "customer_id": ["c"],
            "event_type": ["e"],
            "timestamp": ["2026-01-20T00:00:00Z"],
        }
    )
    columns = tmp_path / "columns.parquet"
    pq.write_table(
        base.append_column("model", pa.array(["a"])).append_column("model", pa.array(["b"])),
        columns,
    )
    assert refused(home, [columns]) == (
        f"Parquet file {columns}: its header names column 'model' more than once; each event "
        "field and each property needs exactly one column"
    )
    fields = tmp_path / "fields.parquet"
    struct = pa.StructArray.from_arrays([pa.array(["a"]), pa.array(["b"])], ["Model", "Model"])
    pq.write_table(base.append_column("properties", struct), fields)
    assert refused(home, [fields]) == (
        f"Parquet file {fields}: column properties has the field 'Model' more than once; each "
        "property needs exactly one field"
    )


def test_properties_column_and_extra_columns_together(home: Home, tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "both.parquet", properties=pa.array(['{"a": "1"}']), model=pa.array(["m"])
    )
    with pytest.raises(UserError, match="has a properties column and extra columns \\(model\\)"):
        ingest(home, [path], now=NOW)


def test_ndjson_with_a_nul_byte(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "binary.ndjson"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\x00junk\n')
    with pytest.raises(UserError, match=r"binary\.ndjson: a line holds a NUL byte"):
        ingest(home, [path], now=NOW)
    assert [r[0] for r in ledger_rows(home)] == ["failed"]
    assert visible_ids(home) == []


LATIN1_LINE = (
    b'{"transaction_id": "t-9", "customer_id": "caf\xe9", "event_type": "e", '
    b'"timestamp": "2026-01-30T10:00:00Z"}\n'
)


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("events.ndjson", b""),
        ("events.ndjson.gz", b""),
        ("events.json", b""),  # read whole (read_text): an internal error before
        ("array.json", b"[\n"),
        ("events.csv", b"transaction_id,customer_id,event_type,timestamp\n"),
    ],
)
def test_a_file_that_is_not_utf8_names_its_line(
    home: Home, tmp_path: Path, name: str, head: bytes
) -> None:
    """A text file with bytes that are not UTF-8 (a Latin-1 export) is refused with a message
    naming the file, the line and the byte, not DuckDB's "CSV Error on Line: N" (which said
    CSV for an NDJSON file and nothing of the cause) or an internal error."""
    good = [
        json.dumps(
            {"transaction_id": f"t-{i}", "customer_id": "c", "event_type": "e",
             "timestamp": "2026-01-30T10:00:00Z"}
        ).encode() + b"\n"
        for i in range(3)
    ]  # fmt: skip
    if name.endswith(".csv"):
        good = [f"t-{i},c,e,2026-01-30T10:00:00Z\n".encode() for i in range(3)]
        bad = b"t-9,caf\xe9,e,2026-01-30T10:00:00Z\n"
    elif head == b"[\n":
        good = [line.rstrip(b"\n") + b",\n" for line in good]
        bad = LATIN1_LINE.rstrip(b"\n") + b"]\n"
    else:
        bad = LATIN1_LINE
    data = head + b"".join(good) + bad
    path = tmp_path / name
    if name.endswith(".gz"):
        import gzip

        data = gzip.compress(data)
    path.write_bytes(data)
    line = 5 if head else 4
    kind = {"csv": "csv", "json": "json"}.get(name.split(".")[1], "ndjson")
    with pytest.raises(UserError) as raised:
        ingest(home, [path], now=NOW)
    assert str(raised.value) == (
        f"cannot read {kind} file {path}: line {line} is not UTF-8 text (byte 0xE9); "
        "save the file as UTF-8"
    )
    assert visible_ids(home) == []


def test_ledger_records_a_committed_batch(home: Home, tmp_path: Path) -> None:
    summary = ingest(home, [events_file(tmp_path)], now=NOW)
    con = home.connect()
    row = con.execute(
        "SELECT batch_id, sources, status, clock, received, accepted, duplicates, rejected, "
        "unknown_customer_events, rejects_path FROM ingest_batches"
    ).fetchall()
    files = con.execute("SELECT batch_id, row_count FROM event_files").fetchall()
    con.close()
    assert row == [
        (summary.batch_id, [str(tmp_path / "events.ndjson")], "committed", NOW, 3, 3, 0, 0, 3, None)
    ]
    assert sorted(files) == [(summary.batch_id, 1)] * 3


def test_failure_before_commit_leaves_nothing_visible_and_a_rerun_completes(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = events_file(tmp_path, 6)
    (tmp_path / "bad.ndjson").write_text("not json\n", encoding="utf-8")

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full while committing")

    monkeypatch.setattr(ledger, "commit", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest(home, [path, tmp_path / "bad.ndjson"], now=NOW)
    assert visible_ids(home) == []
    assert ledger_rows(home) == [("failed", None, None, "RuntimeError: disk full while committing")]
    assert list(home.events_dir.rglob("*.parquet")) == []  # the staged files were removed
    assert list(home.rejects_dir.iterdir()) == []

    monkeypatch.undo()
    summary = ingest(home, [path, tmp_path / "bad.ndjson"], now=NOW)
    assert (summary.accepted, summary.duplicates, summary.rejected) == (6, 0, 1)
    assert visible_ids(home) == [f"t{i}" for i in range(6)]


def test_a_killed_ingest_is_swept_by_the_next_one(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between placing the files and the commit: nothing cleans up in the process (the
    failure handlers are stubbed out), so files sit in events/ and the batch stays `staged`."""
    path = events_file(tmp_path, 4)

    class Killed(BaseException):
        pass

    def kill(*args: object, **kwargs: object) -> None:
        raise Killed

    monkeypatch.setattr(ledger, "commit", kill)
    monkeypatch.setattr(ledger, "remove_quietly", lambda paths: None)
    monkeypatch.setattr(ledger, "fail", lambda *args, **kwargs: None)
    with pytest.raises(Killed):
        ingest(home, [path], now=NOW)
    orphans = list(home.events_dir.rglob("*.parquet"))
    assert orphans, "the killed batch left its files in events/"
    assert visible_ids(home) == []  # readers read only the manifest
    assert [r[0] for r in ledger_rows(home)] == ["staged"]

    monkeypatch.undo()
    summary = ingest(home, [path], now=NOW)
    assert summary.accepted == 4
    assert visible_ids(home) == ["t0", "t1", "t2", "t3"]
    assert not any(p.exists() for p in orphans)
    statuses = [(r[0], r[3]) for r in ledger_rows(home)]
    assert statuses[0] == (
        "failed",
        f"interrupted before commit; cleaned up by batch {summary.batch_id}",
    )
    assert statuses[1] == ("committed", None)
    con = home.connect()
    listed = {p for (p,) in con.execute("SELECT path FROM event_files").fetchall()}
    con.close()
    on_disk = {str(p.relative_to(home.events_dir)) for p in home.events_dir.rglob("*.parquet")}
    assert on_disk == listed


def test_an_interrupt_just_after_the_commit_keeps_the_committed_batch(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C or SIGTERM (engine.cli) landing after the COMMIT returned: the batch is
    committed, so its listed files stay and it stays committed (the failure clean-up removed
    them and marked it failed: a manifest naming missing files)."""
    commit = ledger.commit

    def commit_then_interrupt(*args: object, **kwargs: object) -> None:
        commit(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ledger, "commit", commit_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        ingest(home, [events_file(tmp_path, 4)], now=NOW)
    monkeypatch.undo()
    assert visible_ids(home) == ["t0", "t1", "t2", "t3"]
    assert [r[0] for r in ledger_rows(home)] == ["committed"]
    con = home.connect()
    listed = {p for (p,) in con.execute("SELECT path FROM event_files").fetchall()}
    con.close()
    assert {str(p.relative_to(home.events_dir)) for p in home.events_dir.rglob("*.parquet")} == (
        listed
    )


def test_a_commit_that_fails_reports_its_own_error_and_leaves_nothing(
    home: Home, tmp_path: Path
) -> None:
    """The catalog's COMMIT fails (no space left for its write-ahead log): that error is the
    one raised and recorded, not the ROLLBACK's "no transaction is active" after it."""
    from full_disk import NO_SPACE, CommitFails

    con = home.connect()
    try:
        with pytest.raises(duckdb.TransactionException, match="No space left on device"):
            ingest(home, [events_file(tmp_path)], now=NOW, con=CommitFails(con))
    finally:
        con.close()
    assert visible_ids(home) == []
    assert ledger_rows(home) == [
        ("failed", None, None, f"TransactionException: TransactionContext Error: {NO_SPACE}")
    ]
    assert list(home.events_dir.rglob("*.parquet")) == []
    summary = ingest(home, [events_file(tmp_path)], now=NOW)
    assert (summary.accepted, summary.duplicates) == (3, 0)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_a_one_line_error_and_keeps_nothing(home: Home, tmp_path: Path) -> None:
    """The batch's Parquet files are written to /dev/full (every write fails with ENOSPC, as on
    a full file system): one line and exit 1, not "a bug in meterql"; nothing is kept."""
    script = (
        "from pathlib import Path\n"
        "from warehouse.ingest import write\n"
        "real = write._writer\n"
        "write._writer = lambda path, schema: real(Path('/dev/full'), schema)\n"
        "from engine.cli import main\n"
        "main()\n"
    )
    args = ["--home", str(home.path), "ingest", str(events_file(tmp_path)), "--now", "2026-02-01"]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stderr
    [message] = done.stderr.strip().splitlines()
    assert message.startswith("error: the disk refused a write ([Errno 28] "), message
    assert "No space left on device" in message
    assert message.endswith("free disk space or make the home writable, then run the command again")
    assert visible_ids(home) == []
    assert list(home.events_dir.rglob("*.parquet")) == []
    assert [r[0] for r in ledger_rows(home)] == ["failed"]


def test_ingest_holds_the_writer_lock(home: Home, tmp_path: Path) -> None:
    from warehouse.errors import HomeError

    with home.writer_lock(), pytest.raises(HomeError, match="locked"):
        ingest(home, [events_file(tmp_path)], now=NOW)


def meterql(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_json_summary_and_errors(home: Home, tmp_path: Path) -> None:
    path = events_file(tmp_path)
    (tmp_path / "bad.ndjson").write_text('{"transaction_id": "x"}\n', encoding="utf-8")
    done = meterql(
        "--home",
        str(home.path),
        "ingest",
        str(path),
        str(tmp_path / "bad.ndjson"),
        "--now",
        "2026-02-01T00:00:00Z",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {k: out[k] for k in ("accepted", "duplicates", "rejected")} == {
        "accepted": 3,
        "duplicates": 0,
        "rejected": 1,
    }
    assert out["rejects_path"] == str(home.rejects_dir / f"{out['batch_id']}.ndjson")
    assert out["reasons"] == {"missing_field": 1}
    assert out["unknown_customers"] == [{"customer_id": "c", "events": 3}]
    assert out["clock"] == "2026-02-01T00:00:00Z"

    again = meterql("--home", str(home.path), "ingest", str(path), "--now", "2026-02-01")
    assert again.returncode == 0, again.stderr
    assert "0 accepted, 3 duplicates, 0 rejected" in again.stdout

    missing = meterql("--home", str(home.path), "ingest", str(tmp_path / "nope.ndjson"))
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == f"error: ingest path '{tmp_path / 'nope.ndjson'}' does not exist"
    )

    bad_clock = meterql("--home", str(home.path), "ingest", str(path), "--now", "soon")
    assert bad_clock.returncode == 1
    assert "--now 'soon' is not an ISO 8601 timestamp" in bad_clock.stderr


def test_a_batch_of_only_rejects_lists_no_files(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "all-bad.ndjson"
    path.write_text("nope\n[]\n", encoding="utf-8")
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.rejected, summary.files_written) == (0, 2, 0)
    con = duckdb.connect(str(home.catalog_path), read_only=True)
    assert con.execute("SELECT count(*) FROM event_files").fetchall() == [(0,)]
    con.close()


def test_a_corrupt_parquet_file(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(UserError, match=r"cannot read parquet file .*corrupt\.parquet"):
        ingest(home, [events_file(tmp_path), path], now=NOW)
    nothing_written(home)


def damaged_gzip(data: bytes, damage: str) -> bytes:
    packed = gzip.compress(data)
    if damage == "not gzipped":
        return data
    if damage == "cut short":
        return packed[: len(packed) // 2]
    if damage == "trailing bytes":
        return packed + b"garbage"
    flipped = bytearray(packed)  # corrupt
    flipped[len(flipped) // 2] ^= 0xFF
    return bytes(flipped)


@pytest.mark.parametrize("damage", ["not gzipped", "cut short", "corrupt", "trailing bytes"])
@pytest.mark.parametrize("kind", ["ndjson", "csv"])
def test_a_damaged_gzip_file_is_named(home: Home, tmp_path: Path, kind: str, damage: str) -> None:
    """It failed with an internal error (BadGzipFile, zlib.error) or click's bare "Aborted!"
    (EOFError) from meterql's own passes over the file."""
    if kind == "ndjson":
        data = events_file(tmp_path, 2000, name="whole.ndjson").read_bytes()
    else:
        rows = [f"g{i},c,e,2026-01-30T00:00:00Z\n" for i in range(2000)]
        data = "".join(["transaction_id,customer_id,event_type,timestamp\n", *rows]).encode()
    path = tmp_path / f"events.{kind}.gz"
    path.write_bytes(damaged_gzip(data, damage))
    with pytest.raises(UserError) as raised:
        ingest(home, [events_file(tmp_path), path], now=NOW)
    assert str(raised.value).startswith(f"cannot read {kind} file {path}: it is not a valid gzip")
    assert visible_ids(home) == []


def test_gzipped_ndjson_and_a_path_with_quotes(home: Home, tmp_path: Path) -> None:
    import gzip

    folder = tmp_path / 'it\'s a "dir"'
    folder.mkdir()
    plain = events_file(folder, 2)
    with gzip.open(folder / "more.ndjson.gz", "wt", encoding="utf-8") as handle:
        handle.write(
            json.dumps(
                {
                    "transaction_id": "gz",
                    "customer_id": "c",
                    "event_type": "e",
                    "timestamp": "2026-01-20T00:00:00Z",
                }
            )
            + "\n"
        )
    summary = ingest(home, [plain, folder / "more.ndjson.gz"], now=NOW)
    assert summary.accepted == 3
    assert visible_ids(home) == ["gz", "t0", "t1"]


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"ab\n\xc3\xa9\n\xe9x\n", (3, 0xE9)),
        (b"\xe2\x82\xac\n\xe2\x82\n", (2, 0xE2)),  # a cut sequence before a line end
        (b"a\n\xe2\x82", (2, 0xE2)),  # a cut sequence at the end
        (b"\xff", (1, 0xFF)),
        (b"ok\n\xc3\xa9\n", None),
        (b"", None),
    ],
)
@pytest.mark.parametrize("block_size", [1, 2, 3, 1 << 20])
def test_first_non_utf8_across_blocks(
    tmp_path: Path, data: bytes, found: tuple[int, int] | None, block_size: int
) -> None:
    from warehouse.ingest.sources import first_non_utf8

    path = tmp_path / "t.ndjson"
    path.write_bytes(data)
    assert first_non_utf8(path, block_size) == found


@pytest.mark.parametrize("name", ["home", "h[1]*"])
def test_an_event_file_missing_from_disk_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    """A file the catalog lists but someone deleted (a damaged home, not a bug): one line
    naming it (as it is, not as the pattern DuckDB was given), exit 1, instead of "internal
    error"."""
    home = Home.resolve(tmp_path / name)
    home.init()
    ingest(home, [events_file(tmp_path)], now=NOW)
    gone = sorted(home.events_dir.rglob("*.parquet"))[0]
    gone.unlink()
    doc = tmp_path / "customers.yaml"
    doc.write_text("customers:\n  - name: C\n    ingest_aliases: [c]\n")
    assert meterql("--home", str(home.path), "apply", str(doc)).returncode == 0
    done = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", "--home", str(home.path)]
        + ["sql", "run", "-", "--start", "2026-01-01T00:00:00Z", "--end", "2026-02-01T00:00:00Z"],
        input="SELECT count(*) AS value FROM events",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1
    assert f"the catalog lists the event file {gone}, which is missing" in done.stderr


def _other_file_system(near: Path) -> Path | None:
    """A writable directory on another file system than `near` (tmpfs /dev/shm), or None."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == near.stat().st_dev:
        return None
    return Path(tempfile.mkdtemp(prefix="meterql-test-", dir=shm))


def test_events_and_rejects_on_another_file_system(home: Home, tmp_path: Path) -> None:
    """events/ and rejects/ linked to another disk: the staged files cannot be renamed there
    (EXDEV); they are copied under a temporary name and renamed into place."""
    other = _other_file_system(tmp_path)
    if other is None:
        pytest.skip("no writable directory on another file system")
    try:
        for name in ("events", "rejects"):
            (home.path / name).rmdir()
            (other / name).mkdir()
            (home.path / name).symlink_to(other / name, target_is_directory=True)
        path = events_file(tmp_path, 4)
        old = tmp_path / "old.ndjson"
        old.write_text(
            '{"transaction_id": "x", "customer_id": "c", "event_type": "e", '
            '"timestamp": "2020-01-01T00:00:00Z"}\n',
            encoding="utf-8",
        )
        summary = ingest(home, [path, old], now=NOW)
        assert (summary.accepted, summary.rejected) == (4, 1)
        assert visible_ids(home) == ["t0", "t1", "t2", "t3"]
        assert Path(summary.rejects_path).read_text(encoding="utf-8").count("\n") == 1
        names = [p.name for p in (other / "events").rglob("*")]
        assert not [n for n in names if n.startswith(".copy-")]
        assert list((home.staging_dir).glob("ingest-*")) == []
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_an_interrupted_copy_to_another_file_system_is_swept(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rename across directories fails with EXDEV (simulated); a copy that fails half way
    leaves nothing visible, and its partial file is deleted (here at once; after a kill, by
    the next ingest's sweep)."""
    real_replace = os.replace

    def cross_device(source: object, target: object) -> None:
        if Path(str(source)).parent != Path(str(target)).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", cross_device)
    path = events_file(tmp_path, 4)
    summary = ingest(home, [path], now=NOW)
    assert summary.accepted == 4 and visible_ids(home) == ["t0", "t1", "t2", "t3"]

    class Killed(BaseException):
        pass

    def copy_then_die(source: object, target: object) -> None:
        Path(str(target)).write_bytes(b"PAR1 half a file")
        raise Killed

    monkeypatch.setattr(shutil, "copyfile", copy_then_die)
    monkeypatch.setattr(ledger, "fail", lambda *args, **kwargs: None)
    with pytest.raises(Killed):
        ingest(home, [events_file(tmp_path, 6, "more.ndjson")], now=NOW)
    assert visible_ids(home) == ["t0", "t1", "t2", "t3"]
    assert not [p for p in home.events_dir.rglob("*") if p.name.startswith(".copy-")]

    # a kill leaves the partial copy: the next ingest sweeps it
    partial = home.events_dir / "event_date=2026-01-10" / ".copy-ingest-x-0.parquet"
    partial.write_bytes(b"PAR1 half a file")
    monkeypatch.undo()
    summary = ingest(home, [events_file(tmp_path, 6, "more.ndjson")], now=NOW)
    assert summary.accepted == 2
    assert not partial.exists()
    assert visible_ids(home) == [f"t{i}" for i in range(6)]
