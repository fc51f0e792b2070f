"""Reading NDJSON and JSON files into records: (pos, raw text) per line or array element, and
the SELECT that stages them (warehouse.ingest.staging.stage).

- NDJSON (`.ndjson`, `.jsonl`, optionally gzipped) is read as lines (read_csv of one VARCHAR
  column), so a line that is not JSON rejects only itself and keeps its text and line number.
  Blank lines are skipped (they still count for line numbers).  DuckDB's CSV reader drops a line
  longer than its read buffer without an error, so every read is checked against the file's
  size (`lines_bytes`).  Each JSON record is parsed once (json_transform); only a record with an
  unusual field goes through the full reading (`json_staged_select`).
- `.json`: a JSON array of event objects (one record per element), a single event object, or,
  when the whole file is not one JSON document, NDJSON.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse.errors import UserError
from warehouse.ingest import exactjson
from warehouse.ingest.connection import READ_ERRORS, unordered
from warehouse.ingest.normalise import MAX_PROPERTIES, normalised_select, timestamp_sql
from warehouse.ingest.sources import (
    MAX_LINE_BYTES,
    POS_SHIFT,
    READ_BUFFER_BYTES,
    SourceFile,
    open_source,
    pos_sql,
    read_failure,
)
from warehouse.ingest.sqltext import lit, path_list, path_lit
from warehouse.sqlrows import first_row

# NDJSON lines are first read with a smaller buffer, on every thread for a plain file larger
# than one buffer (numbering lines by row_number() keeps a read on one thread), then, if a line
# is too long for it, again with the largest limits.
FAST_LINE_BYTES = 32 * 1024 * 1024
FAST_BUFFER_BYTES = 2 * FAST_LINE_BYTES


def _read_lines(
    file: SourceFile, max_line: int, buffer: int, files: Sequence[SourceFile] = ()
) -> str:
    """SQL: the lines of a text file in file order (a blank line is a NULL or blank text); of
    `files` instead, file after file, with each line's `filename`."""
    if files:
        paths = f"{path_list(f.read_path for f in files)}, filename=true"
    else:
        paths = path_lit(file.read_path)
    return f"""
        read_csv({paths}, columns={{'line': 'VARCHAR'}}, delim={lit(chr(0))},
                 quote='', escape='', header=false, auto_detect=false,
                 max_line_size={int(max_line)}, buffer_size={int(buffer)})
    """


_NOT_BLANK = "line IS NOT NULL AND NOT (ascii(line) IN (9, 11, 12, 13, 32) AND trim(line) = '')"


def _read_failure(file: SourceFile, error: BaseException) -> UserError:
    if "Expected Number of Columns" in str(error):
        return UserError(
            f"cannot read {file.format} file {file.name}: a line holds a NUL byte (the file is "
            "not text)"
        )
    return read_failure(file, error)


def count_lines(path: Path, buffer_size: int = 1 << 24) -> int:
    """The lines of a text file (gzipped when its name ends in .gz) as DuckDB's CSV reader
    reads them: every newline ends one, and a last line without one counts too.  Lines end
    in \\n (or \\r\\n); a file without any \\n ends them in \\r.

    One pass counting \\n into a reused buffer (this runs beside DuckDB's read on a 2-core
    machine, so its CPU is the read's); carriage returns are counted, in a second pass, only
    in a file without any \\n."""
    lf, last = _count_byte(path, b"\n", buffer_size)
    if lf == 0 and last:
        cr, _ = _count_byte(path, b"\r", buffer_size)
        if cr:
            return cr + (last != b"\r")
    return lf + (last not in (b"", b"\n"))


def _count_byte(path: Path, byte: bytes, buffer_size: int) -> tuple[int, bytes]:
    """(occurrences of `byte` in the file's text, its last byte or b"")."""
    buffer = bytearray(buffer_size)
    view = memoryview(buffer)
    count = 0
    last = b""
    with open_source(path) as handle:
        while size := handle.readinto(view):
            count += buffer.count(byte, 0, size)
            last = bytes(buffer[size - 1 : size])
    return count, last


_LONE_CR = re.compile(rb"\r(?!\n|\Z)")  # a last \\r ends the last line


def lone_carriage_return(path: Path) -> int | None:
    """The line (from 1) of the first carriage return that does not end a line (\\r not
    before \\n) in a text file whose lines end in \\n; None when there is none, or when the
    file has no \\n (its lines end in \\r).  DuckDB's line reader takes such a \\r as a line end
    (cutting the line in two, or failing), so the file cannot be read line by line.  A plain
    file is searched in place (memory-mapped: one memchr pass when it holds no \\r); a gzipped
    one as it is decompressed, block by block."""
    if path.name.lower().endswith(".gz"):
        with open_source(path) as handle:
            return _lone_cr_in_blocks(handle)
    if path.stat().st_size == 0:
        return None
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _lone_cr_line(data)


def _lone_cr_line(data: Any) -> int | None:
    first = data.find(b"\r")
    if first < 0 or data.find(b"\n") < 0:
        return None
    found = _LONE_CR.search(data, first)
    if found is None:
        return None
    return data[: found.start()].count(b"\n") + 1


def _lone_cr_in_blocks(handle: Any, block_size: int = 1 << 24) -> int | None:
    """`_lone_cr_line` over a stream read `block_size` bytes at a time (a \\r that ends a
    block waits for the next one's first byte)."""
    newlines = 0
    found: int | None = None
    carry = b""
    while block := handle.read(block_size):
        data = carry + block
        # a \\r ending the data is judged with the next block (here \\Z spares it)
        body, carry = (data[:-1], b"\r") if data.endswith(b"\r") else (data, b"")
        if found is None and (match := _LONE_CR.search(data)) is not None:
            found = newlines + data.count(b"\n", 0, match.start()) + 1
        newlines += body.count(b"\n")
        if found is not None and newlines:
            return found
    return None  # none, or a file without any \\n


def _lone_cr_error(file: SourceFile, line: int) -> UserError:
    return UserError(
        f"cannot read {file.format} file {file.name}: line {file.lines_before + line} holds a "
        "carriage return (\\r) that does not end the line, in a file whose lines end in \\n; "
        "DuckDB's line reader would cut that line in two: remove the \\r (JSON needs none "
        "outside its strings)"
    )


def load_lines(con: duckdb.DuckDBPyConnection, file: SourceFile) -> str | None:
    """Read a file's lines, numbered, and make sure none was left out (`_all_lines_read`).

    A plain file larger than one read buffer goes to its own table `lines_<index>`, read on
    every thread in file order (its row ids are the line numbers); returns the SQL of its
    records, for the `records` view.  Other files go into `record_texts` (None)."""
    gzipped = file.gzipped
    parallel = file.size > FAST_BUFFER_BYTES and not gzipped
    table = f"lines_{int(file.index)}_{int(file.span[0]) if file.span else 0}"
    if not gzipped and (line := lone_carriage_return(file.read_path)) is not None:
        raise _lone_cr_error(file, line)  # a gzipped file fails the count below
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="meterql-lines") as pool:
        # a gzipped file is read by DuckDB on one thread: its lines are counted on the other
        counted = pool.submit(count_lines, file.read_path) if gzipped else None
        for max_line, buffer in (
            (FAST_LINE_BYTES, FAST_BUFFER_BYTES),
            (MAX_LINE_BYTES, READ_BUFFER_BYTES),
        ):
            lines = _read_lines(file, max_line, buffer)
            number = "" if parallel else "row_number() OVER () AS ln, "
            numbered = f"SELECT {number}line FROM {lines}"  # noqa: S608 - path rendered by sqlglot
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {numbered}")
            # DuckDB's parallel reader may refuse a line longer than its buffer
            except (*READ_ERRORS, duckdb.NotImplementedException) as failure:
                error = failure
                continue
            read, text_bytes = first_row(
                con,
                f"SELECT count(*), coalesce(sum(strlen(line)), 0) FROM {table}",  # noqa: S608
            )
            if _all_lines_read(file.read_path, read, text_bytes, counted):
                break
            error = None  # a line longer than the buffer was left out: read it again
        else:
            if gzipped and (line := lone_carriage_return(file.read_path)) is not None:
                raise _lone_cr_error(file, line)
            if error is not None:
                raise _read_failure(file, error) from None
            raise UserError(
                f"cannot read {file.format} file {file.name}: a line is longer than "
                f"{MAX_LINE_BYTES // 2**20} MiB"
            )
    if parallel:
        pos = pos_sql(file, "rowid + 1")
        return f"SELECT {pos} AS pos, line AS raw, NULL::VARCHAR AS q, false AS marked FROM {table} WHERE {_NOT_BLANK}"  # noqa: S608, E501
    with unordered(con):
        con.execute(
            f"INSERT INTO record_texts SELECT {pos_sql(file, 'ln')}, line, NULL, false "  # noqa: S608
            f"FROM {table} WHERE {_NOT_BLANK}"
        )
    con.execute(f"DROP TABLE {table}")
    return None


def _all_lines_read(
    path: Path, read: int, text_bytes: int, counted: Future[int] | None = None
) -> bool:
    """Whether DuckDB's reading of the text file at `path` gave every line: `read` lines
    holding `text_bytes` bytes of text (blank lines none).  DuckDB's CSV reader (2.0) drops a
    line longer than its read buffer without an error (the first, the last or, at a buffer
    boundary, one in between), so this is checked:

    - gzipped: `read` is the number of lines `counted` (count_lines, on another thread);
    - plain: the lines' bytes, their line ends and a byte order mark make up the file's size
      (`lines_bytes`: a line left out, or one cut in two, breaks the sum); only when they do
      not, the lines are counted, as for a gzipped file (one Python pass: 0.25 CPU-seconds for
      2M lines, which the sum saves).  Compared over thousands of generated files with long
      lines, blank lines, byte order marks and the three kinds of line ends, both tests agree
      (tests/test_ingest_lines.py)."""
    if counted is not None:
        return read == counted.result()
    if lines_bytes(path, read, text_bytes) == path.stat().st_size:
        return True
    return read == count_lines(path)


_BOM = b"\xef\xbb\xbf"


def lines_bytes(path: Path, lines: int, text_bytes: int) -> int:
    """The size of a plain text file of `lines` lines holding `text_bytes` bytes of text (as
    DuckDB's CSV reader gives them: without line ends and a leading byte order mark), given its
    line end (`\\r\\n`, `\\n` or `\\r`: that of the first line) and whether its last line has
    one.  Reads the file's first line and its last byte."""
    with path.open("rb") as handle:
        head = handle.read(len(_BOM))
        bom = len(_BOM) if head == _BOM else 0
        handle.seek(bom)
        end = 1
        while chunk := handle.read(1 << 16):
            found = [i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0]
            if not found:
                continue
            at = min(found)
            if chunk[at : at + 1] == b"\r":
                following = chunk[at + 1 : at + 2] or handle.read(1)
                end = 2 if following == b"\n" else 1
            break
        size = handle.seek(0, os.SEEK_END)
        last = b""
        if size:
            handle.seek(size - 1)
            last = handle.read(1)
    unterminated = lines > 0 and last not in (b"\n", b"\r")
    return bom + text_bytes + (lines - unterminated) * end


SMALL_GZIP_BYTES = 8 << 20  # a gzipped NDJSON file this small is read with the others
SMALL_GZIP_BUFFER = 1 << 20  # its lines are counted through a buffer this large


def small_file(file: SourceFile) -> bool:
    """An NDJSON file `load_small_files` reads with the others: plain and at most one first
    read buffer, or gzipped and at most SMALL_GZIP_BYTES."""
    if file.format != "ndjson" or file.size == 0:
        return False
    return file.size <= (SMALL_GZIP_BYTES if file.gzipped else FAST_BUFFER_BYTES)


def load_small_files(con: duckdb.DuckDBPyConnection, files: list[SourceFile]) -> list[SourceFile]:
    """Read many small NDJSON files (plain or gzipped: `small_file`) in ONE read of DuckDB's
    reader into `record_texts` (a statement per file cost about 4 ms, 19 ms gzipped: 1,000
    files of 100 events took 4.4 s and 18.9 s to read).  Each file's lines are numbered in file
    order, and each file is checked as `load_lines` checks it (the largest limits cost nothing
    here: 0.30 s with the first ones, 0.36 s with the largest for those 1,000 files).  Returns
    the files to read one by one instead: those whose check failed (so a gzipped file with a
    carriage return inside a line gets its message there), or all of them when the one read
    fails (so the error names its file)."""
    if len(files) < 2:
        return files
    for file in files:
        if file.gzipped:
            continue  # its line count below finds it
        if (line := lone_carriage_return(file.read_path)) is not None:
            raise _lone_cr_error(file, line)
    reader = _read_lines(files[0], MAX_LINE_BYTES, READ_BUFFER_BYTES, files)
    # in file order, then line order (the order is kept: row_number() OVER () numbers it)
    numbered = f"""
        CREATE OR REPLACE TEMP TABLE small_lines AS
        SELECT filename, row_number() OVER () AS n, line FROM {reader}
    """  # noqa: S608 - paths rendered by sqlglot
    try:
        con.execute(numbered)
    except (*READ_ERRORS, duckdb.NotImplementedException):
        return files
    try:
        read = {
            name: (int(lines), int(text_bytes), int(first))
            for name, lines, text_bytes, first in con.execute(
                "SELECT filename, count(*), coalesce(sum(strlen(line)), 0), min(n) "
                "FROM small_lines GROUP BY filename"
            ).fetchall()
        }
        done, again = [], []
        for f in files:
            counts = read.get(str(f.read_path))
            if counts is None:
                ok = False
            elif f.gzipped:
                ok = counts[0] == count_lines(f.read_path, SMALL_GZIP_BUFFER)
            else:
                ok = _all_lines_read(f.read_path, counts[0], counts[1])
            (done if ok else again).append(f)
        if done:
            # one list parameter per column (executemany took 0.5 ms a row)
            con.execute(
                "CREATE OR REPLACE TEMP TABLE small_files AS SELECT unnest($1::VARCHAR[]) AS "
                "filename, unnest($2::BIGINT[]) AS src, unnest($3::BIGINT[]) AS first_n, "
                "unnest($4::BIGINT[]) AS lines_before",
                [
                    [str(f.read_path) for f in done],
                    [f.index for f in done],
                    [read[str(f.read_path)][2] for f in done],
                    [f.lines_before for f in done],
                ],
            )
            line_number = "s.lines_before + l.n - s.first_n + 1"
            with unordered(con):
                con.execute(
                    f"INSERT INTO record_texts SELECT (s.src << {POS_SHIFT}) + {line_number}, "  # noqa: S608
                    "l.line, NULL, false FROM small_lines l JOIN small_files s USING (filename) "
                    f"WHERE {_NOT_BLANK}"
                )
            con.execute("DROP TABLE small_files")
    finally:
        con.execute("DROP TABLE small_lines")
    return again


def _json_document(file: SourceFile) -> str:
    """SQL: the text of a `.json` file as `content`, without a leading byte order mark (which
    JSON parsers refuse; Windows tools write one)."""
    bom = lit("\ufeff")
    return (
        f"(SELECT CASE WHEN starts_with(content, {bom}) THEN substr(content, 2) ELSE content END "  # noqa: S608
        f"AS content FROM read_text({path_lit(file.name)}))"
    )


def load_json_file(con: duckdb.DuckDBPyConnection, file: SourceFile, parts: list[str]) -> str:
    """A `.json` file: an array of events, one event object, or else NDJSON, into
    `record_texts` (or `parts`, see `load_lines`).  Returns what a record of the file is called
    in messages (element, record, line)."""
    document = _json_document(file)
    try:
        row = first_row(con, f"SELECT try(json_type(content)) FROM {document}")  # noqa: S608
    except READ_ERRORS as error:  # e.g. text that is not UTF-8
        raise read_failure(file, error) from None
    kind = row[0] if row else None
    if kind is None:
        part = load_lines(con, file)
        if part is not None:
            parts.append(part)
        return "line"
    if kind == "ARRAY":
        # The whole document is parsed at once; its numbers are marked first when DuckDB would
        # not keep their text (exactjson), and each element keeps that marked text in `q`.
        con.execute(
            f"""
            INSERT INTO record_texts
            SELECT {pos_sql(file, "i")}, CASE WHEN m THEN {exactjson.unmark_text("e")} ELSE e END,
                   e, m
            FROM (
                -- a null element comes out of json_transform as NULL: its text is null
                SELECT m, coalesce(unnest(els), 'null') AS e, generate_subscripts(els, 1) AS i
                FROM (
                    SELECT m, json_transform(CASE WHEN m THEN {exactjson.mark("content")}
                                                  ELSE content END, '["JSON"]') AS els
                    FROM (SELECT content, {exactjson.needs_mark("content")} AS m
                          FROM {document})
                )
            )
            """  # noqa: S608 - path rendered by sqlglot
        )
        return "element"
    con.execute(
        f"""
        INSERT INTO record_texts
        SELECT {pos_sql(file, "1")}, content, NULL, false FROM {document}
        """  # noqa: S608 - path rendered by sqlglot
    )
    return "record"


_JSON_FIELDS = ["transaction_id", "customer_id", "event_type", "timestamp", "properties"]
_JSON_PATHS = [f"/{name}" for name in _JSON_FIELDS]
# One parse of a record: the four fields as text (strings unescaped, other values as their
# text), the properties as JSON text.  DuckDB's json_transform reads the object once, for about
# 60% of the two path lookups (json_type + json_extract_string) it replaces.
_JSON_STRUCT = json.dumps(
    {name: "JSON" if name == "properties" else "VARCHAR" for name in _JSON_FIELDS},
    separators=(",", ":"),
)
# First characters of the text json_transform gives for a value that is not a JSON string:
# numbers (`-`, digits), arrays, objects; `true`, `false` and DuckDB's `nan`, `inf`,
# `infinity` (any case) are told by their whole text.
_NOT_STRING_STARTS = "(45, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 91, 123)"


def _maybe_not_string(text_sql: str) -> str:
    """SQL: TRUE unless `text_sql` (a field as json_transform gave it as VARCHAR) can only be
    the text of a JSON string; such fields are typed by json_type instead (exactly, slower)."""
    return (
        f"CASE WHEN {text_sql} IS NULL OR ascii({text_sql}) IN {_NOT_STRING_STARTS} THEN true "
        f"WHEN strlen({text_sql}) > 8 THEN false "
        f"ELSE {text_sql} IN ('true', 'false') "
        f"OR lower({text_sql}) IN ('nan', 'inf', 'infinity') END"
    )


def json_staged_select(source_sql: str, clock: datetime) -> str:
    """SQL: the staged rows of JSON records.

    `source_sql` returns (pos, raw, q, marked): `raw` the record's text as sent; `q`, when not
    NULL, the text to parse instead, whose numbers are already marked when `marked`.

    Each record is parsed once by json_transform (`_JSON_STRUCT`).  A field whose text can only
    be a JSON string's, a timestamp that reads as one, and properties that are an object are
    taken from it.  Anything else (a missing or null field, a number, a value of another kind,
    a text that is not an object, marked numbers) sends the record through the full reading:
    json_type and json_extract_string over every path, as before, so every message and reason
    stays the same."""
    types_paths = "[" + ", ".join(lit(p) for p in ["", *_JSON_PATHS]) + "]"
    value_paths = "[" + ", ".join(lit(p) for p in _JSON_PATHS) + "]"

    def is_marked(i: int) -> str:
        return f"marked AND starts_with(vals[{i}], {lit(exactjson.MARK)})"

    def kind(i: int) -> str:
        # a number marked inside an array document is still a number for the event fields, of
        # the JSON type its text has (an integer is taken as its text, as in any other file)
        return (
            f"CASE WHEN {is_marked(i)} THEN json_type(substr(vals[{i}], 2)) ELSE types[{i + 1}] END"
        )

    def value(i: int) -> str:
        # a marked number's text without the mark (no string of a marked document holds one)
        return f"CASE WHEN {is_marked(i)} THEN substr(vals[{i}], 2) ELSE vals[{i}] END"

    def field(i: int, name: str, slow: str) -> tuple[str, str]:
        return (
            f"CASE WHEN {slow} THEN {value(i)} ELSE j.{name} END",
            f"CASE WHEN {slow} THEN {kind(i)} ELSE 'VARCHAR' END",
        )

    tid, tid_type = field(1, "transaction_id", "s_tid")
    cust, cust_type = field(2, "customer_id", "s_cust")
    et, et_type = field(3, "event_type", "s_et")
    no_fields = " AND ".join(f"j.{name} IS NULL" for name in _JSON_FIELDS)
    raw_select = f"""
        SELECT pos,
               CASE WHEN NOT s_root THEN NULL
                    WHEN types IS NULL THEN 'not valid JSON'
                    WHEN types[1] <> 'OBJECT'
                    -- a number of a marked document is a marked string: typed by its text
                    THEN 'expected an event object, got ' || CASE CASE WHEN marked
                         THEN coalesce(try(json_type(raw)), types[1]) ELSE types[1] END
                         WHEN 'ARRAY' THEN 'an array' WHEN 'VARCHAR' THEN 'a string'
                         WHEN 'BOOLEAN' THEN 'a boolean' WHEN 'NULL' THEN 'null'
                         ELSE 'a number' END
               END AS root_problem,
               tid, tid_type, cust, cust_type, et, et_type,
               ts_text, ts_value, ts_type, props_type,
               CASE WHEN props_type = 'OBJECT' AND strlen(props) > {MAX_PROPERTIES * 4}
                    THEN len(json_keys(props)) ELSE 0 END AS props_count,
               CASE WHEN remark THEN json_extract_string({exactjson.mark("raw")}, '/properties')
                    WHEN props_type = 'OBJECT' THEN props END AS props_json,
               marked OR remark AS props_marked
        FROM (
            SELECT *,
                   q IS NULL AND props_type = 'OBJECT'
                   AND {exactjson.text_changed("props", "raw")} AS remark
            FROM (
                SELECT pos, raw, q, marked, s_root, types,
                       {tid} AS tid, {tid_type} AS tid_type,
                       {cust} AS cust, {cust_type} AS cust_type,
                       {et} AS et, {et_type} AS et_type,
                       CASE WHEN s_ts THEN {value(4)} ELSE j.timestamp END AS ts_text,
                       CASE WHEN NOT s_ts THEN ts_fast END AS ts_value,
                       CASE WHEN NOT s_ts THEN 'TIMESTAMP'
                            WHEN {kind(4)} = 'VARCHAR' THEN 'TEXT' ELSE {kind(4)} END AS ts_type,
                       CASE WHEN s_props THEN types[6] WHEN j.properties IS NULL THEN 'NULL'
                            ELSE 'OBJECT' END AS props_type,
                       CASE WHEN s_props THEN vals[5] ELSE j.properties END AS props
                FROM (
                    SELECT *,
                           CASE WHEN s_any THEN try(json_type(doc, {types_paths})) END AS types,
                           CASE WHEN s_any THEN try(json_extract_string(doc, {value_paths}))
                           END AS vals
                    FROM (
                        SELECT *, s_root OR s_tid OR s_cust OR s_et OR s_ts OR s_props AS s_any
                        FROM (
                            SELECT *,
                                   j IS NULL OR ({no_fields}) AS s_root,
                                   marked OR {_maybe_not_string("j.transaction_id")} AS s_tid,
                                   marked OR {_maybe_not_string("j.customer_id")} AS s_cust,
                                   marked OR {_maybe_not_string("j.event_type")} AS s_et,
                                   marked OR ts_fast IS NULL AS s_ts,
                                   marked OR (j.properties IS NOT NULL
                                              AND NOT starts_with(j.properties, '{{')) AS s_props
                            FROM (
                                SELECT *, {timestamp_sql("j.timestamp")} AS ts_fast
                                FROM (
                                    SELECT pos, raw, q, marked, coalesce(q, raw) AS doc,
                                           try(json_transform(coalesce(q, raw),
                                                              {lit(_JSON_STRUCT)})) AS j
                                    FROM ({source_sql})
                                )
                            )
                        )
                    )
                )
            )
        )
    """  # noqa: S608 - fixed SQL
    return normalised_select(raw_select, ["props_json", "props_marked"], clock)
