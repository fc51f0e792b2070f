"""Reading the source files into the `staged` table, with DuckDB's readers (no per-event Python).

`inspect_sources` looks at every CSV and Parquet file's columns first and raises a `UserError`
naming the file, the column, its type and what was expected, before anything is written.
`stage` then fills one temporary table `staged` (columns: `staged_columns`) with one row per
record, already checked by `normalise`:

- NDJSON (`.ndjson`, `.jsonl`, optionally gzipped) is read as lines (read_csv of one VARCHAR
  column), so a line that is not JSON rejects only itself and keeps its text and line number.
  Blank lines are skipped (they still count for line numbers).  Each JSON record is parsed once
  (json_transform); only a record with an unusual field goes through the full reading
  (`_json_staged_select`).
- `.json`: a JSON array of event objects (one record per element), a single event object, or,
  when the whole file is not one JSON document, NDJSON.
- CSV (all columns read as text, exactly as sent) and Parquet: the four event fields plus the
  properties as a `properties` column (a MAP, a STRUCT, or JSON text) or as extra columns (every
  column beyond the four fields is a property).

Positions: every record gets `pos = source index << 40 | record number`, so ordering by `pos` is
input order (file order, then line/row order) and the first copy of a duplicate wins.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from warehouse.errors import UserError, suggest
from warehouse.ingest import exactjson
from warehouse.ingest.normalise import MAX_PROPERTIES, normalised_select, timestamp_sql
from warehouse.ingest.sources import SourceFile
from warehouse.ingest.sqltext import ident, int_lit, lit
from warehouse.layout import property_column
from warehouse.sqlrows import first_row

FIELDS = ("transaction_id", "customer_id", "event_type", "timestamp")
PROPERTIES = "properties"
POS_SHIFT = 40
# The longest line or CSV row read.  DuckDB's CSV reader (2.0) needs a read buffer larger than
# that (its default, 16 times as large, is 4 GiB: more than the memory limit for a gzipped file),
# and it drops a line longer than its buffer without an error: so reads are checked (below).
MAX_LINE_BYTES = 256 * 1024 * 1024
READ_BUFFER_BYTES = 2 * MAX_LINE_BYTES
# NDJSON lines are first read with a smaller buffer, on every thread for a plain file larger
# than one buffer (numbering lines by row_number() keeps a read on one thread), then, if a line
# is too long for it, again with the largest limits.
FAST_LINE_BYTES = 32 * 1024 * 1024
FAST_BUFFER_BYTES = 2 * FAST_LINE_BYTES

_INTEGER_TYPES = frozenset(
    {"tinyint", "smallint", "integer", "bigint", "hugeint"}
    | {"utinyint", "usmallint", "uinteger", "ubigint", "uhugeint"}
)
_TIMESTAMP_TYPES = frozenset(
    {"timestamp", "timestamp with time zone", "timestamp_ns", "timestamp_ms", "timestamp_s"}
)
_NESTED_TYPES = frozenset({"struct", "list", "map", "array", "union"})
_UNSUPPORTED_VALUE_TYPES = frozenset({"blob", "bit", "varint", "bignum", "geometry"})

# DuckDB errors that mean "this file cannot be read as that format" (others are bugs)
_READ_ERRORS = (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException)

STAGED_FIXED = {
    "pos": "BIGINT",
    "transaction_id": "VARCHAR",
    "tid_hash": "UBIGINT",  # hash(transaction_id), for dedup
    "customer_id": "VARCHAR",
    "event_type": "VARCHAR",
    "ts": "TIMESTAMP",
    "reason": "VARCHAR",
    "field": "VARCHAR",
    "message": "VARCHAR",
    "props_json": "VARCHAR",  # JSON object text (numbers marked when props_marked)
    "props_marked": "BOOLEAN",
    "props_map": "MAP(VARCHAR, VARCHAR)",
    "duplicate": "BOOLEAN",  # set by dedup: a valid event whose transaction_id is already taken
}


@dataclass
class TableSource:
    """A CSV or Parquet file whose columns were checked."""

    file: SourceFile
    fields: dict[str, tuple[str, str]]  # event field -> (DuckDB column name, type id)
    props_kind: str  # none | json | map | struct | columns
    props_column: str | None = None  # DuckDB name of the `properties` column
    props_type: Any = None  # its DuckDB type
    # (DuckDB column or struct field name, property name, type id) of column-kind properties
    property_columns: list[tuple[str, str, str]] = field(default_factory=list)
    # every column: (DuckDB name, name as written in the file)
    columns: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Plan:
    json_files: list[SourceFile]
    tables: list[TableSource]

    @property
    def column_properties(self) -> list[str]:
        """Property names held as columns (extra columns, STRUCT fields), in first-seen order."""
        names: dict[str, None] = {}
        for table in self.tables:
            for _, name, _ in table.property_columns:
                names.setdefault(name, None)
        return list(names)

    @property
    def has_json(self) -> bool:
        return bool(self.json_files) or any(t.props_kind == "json" for t in self.tables)

    @property
    def has_map(self) -> bool:
        return any(t.props_kind == "map" for t in self.tables)


def staged_columns(plan: Plan) -> dict[str, str]:
    """The columns of `staged` for the sources of `plan`: a property shape no source has is
    left out (an all-NULL column still takes memory, and a large batch spills it to disk)."""
    unused = set()
    if not plan.has_json:
        unused |= {"props_json", "props_marked"}
    if not plan.has_map:
        unused.add("props_map")
    columns = {name: kind for name, kind in STAGED_FIXED.items() if name not in unused}
    for name in plan.column_properties:
        columns[property_column(name)] = "VARCHAR"
    return columns


# -- inspecting CSV and Parquet columns ---------------------------------------------------------


def _csv_args(file: SourceFile, *, header: bool) -> str:
    return (
        f"{lit(file.name)}, header={'true' if header else 'false'}, all_varchar=true, "
        f"max_line_size={MAX_LINE_BYTES}, buffer_size={READ_BUFFER_BYTES}"
    )


def _relation_columns(
    con: duckdb.DuckDBPyConnection, file: SourceFile
) -> tuple[list[str], list[Any], list[str]]:
    """(DuckDB column names, DuckDB types, the names as written in the file)."""
    try:
        if file.format == "csv":
            rel = con.sql(f"SELECT * FROM read_csv({_csv_args(file, header=True)})")  # noqa: S608
            names, types = list(rel.columns), list(rel.dtypes)
            first = first_row(
                con,
                f"SELECT * FROM read_csv({_csv_args(file, header=False)}) LIMIT 1",  # noqa: S608
            )
            written = [str(v) if v is not None else "" for v in first]
        else:
            rel = con.sql(f"SELECT * FROM read_parquet({lit(file.name)})")  # noqa: S608
            names, types = list(rel.columns), list(rel.dtypes)
            written = list(pq.read_schema(file.path).names)
    except (duckdb.Error, OSError, ValueError) as error:
        raise UserError(
            f"cannot read {file.format} file {file.name}: {_first_line(error)}"
        ) from None
    if len(written) != len(names):
        written = names  # DuckDB and the file disagree on the header: trust DuckDB's reading
    return names, types, written


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _type_name(dtype: Any) -> str:
    return str(dtype)


def _check_value_type(file: SourceFile, where: str, dtype: Any) -> None:
    if dtype.id in _UNSUPPORTED_VALUE_TYPES:
        raise UserError(
            f"{file.format} file {file.name}: {where} has type {_type_name(dtype)}; expected "
            "text, a number, a boolean, a date/time, or a nested value (stored as JSON text)"
        )


def _inspect_table(con: duckdb.DuckDBPyConnection, file: SourceFile) -> TableSource:
    names, types, written = _relation_columns(con, file)
    table = _classify(file, names, types, written)
    table.columns = list(zip(names, written, strict=True))
    return table


def _classify(
    file: SourceFile, names: list[str], types: list[Any], written: list[str]
) -> TableSource:
    by_written = {w: (n, t) for n, t, w in zip(names, types, written, strict=True)}
    kind = "CSV" if file.format == "csv" else "Parquet"
    missing = [f for f in FIELDS if f not in by_written]
    if missing:
        hints = "".join(suggest(m, written) for m in missing[:1])
        raise UserError(
            f"{kind} file {file.name} has no column {', '.join(missing)} (columns: "
            f"{', '.join(written) or 'none'}); every event needs {', '.join(FIELDS)}{hints}"
        )
    fields: dict[str, tuple[str, str]] = {}
    for name in FIELDS:
        column, dtype = by_written[name]
        if name == "timestamp":
            if dtype.id != "varchar" and dtype.id not in _TIMESTAMP_TYPES:
                raise UserError(
                    f"{kind} file {file.name}: column timestamp has type {_type_name(dtype)}; "
                    "expected a TIMESTAMP or TIMESTAMP WITH TIME ZONE column, or text holding "
                    "RFC 3339 timestamps (e.g. 2024-01-15T10:00:00Z)"
                )
        elif dtype.id != "varchar" and dtype.id not in _INTEGER_TYPES:
            raise UserError(
                f"{kind} file {file.name}: column {name} has type {_type_name(dtype)}; "
                "expected text (VARCHAR) or an integer"
            )
        fields[name] = (column, dtype.id)
    extras = [(n, t, w) for n, t, w in zip(names, types, written, strict=True) if w not in FIELDS]
    if any(w == PROPERTIES for _, _, w in extras):
        others = [w for _, _, w in extras if w != PROPERTIES]
        if others:
            raise UserError(
                f"{kind} file {file.name} has a properties column and extra columns "
                f"({', '.join(others)}); put the properties either in the properties column or "
                "in extra columns, not both"
            )
        column, dtype = by_written[PROPERTIES]
        if dtype.id == "varchar":
            return TableSource(file, fields, "json", column, dtype)
        if dtype.id == "map":
            (_, key_type), (_, value_type) = dtype.children
            if key_type.id not in ("varchar",) and key_type.id not in _INTEGER_TYPES:
                raise UserError(
                    f"{kind} file {file.name}: column properties has type {_type_name(dtype)}; "
                    "a MAP of properties needs text keys"
                )
            _check_value_type(file, "the values of column properties", value_type)
            return TableSource(file, fields, "map", column, dtype)
        if dtype.id == "struct":
            struct_names = [n for n, _ in dtype.children]
            written_names = _struct_written_names(file, struct_names)
            props = []
            for (duck_name, child), prop in zip(dtype.children, written_names, strict=True):
                _check_value_type(file, f"field {prop} of column properties", child)
                props.append((duck_name, prop, child.id))
            return TableSource(file, fields, "struct", column, dtype, props)
        raise UserError(
            f"{kind} file {file.name}: column properties has type {_type_name(dtype)}; expected "
            "a MAP(VARCHAR, ...), a STRUCT, or text holding a JSON object"
        )
    props = []
    for column, dtype, written_name in extras:
        _check_value_type(file, f"column {written_name}", dtype)
        props.append((column, written_name, dtype.id))
    return TableSource(file, fields, "columns" if props else "none", property_columns=props)


def _struct_written_names(file: SourceFile, duck_names: list[str]) -> list[str]:
    """The STRUCT field names as written in the Parquet file (DuckDB renames case duplicates)."""
    if file.format != "parquet":
        return duck_names
    schema = pq.read_schema(file.path)
    struct = schema.field(PROPERTIES).type
    names = [struct.field(i).name for i in range(struct.num_fields)]
    return names if len(names) == len(duck_names) else duck_names


def inspect_sources(con: duckdb.DuckDBPyConnection, files: list[SourceFile]) -> Plan:
    json_files: list[SourceFile] = []
    tables: list[TableSource] = []
    for file in files:
        if file.format in ("ndjson", "json"):
            json_files.append(file)
        elif file.size == 0:
            continue  # an empty file holds no events
        else:
            tables.append(_inspect_table(con, file))
    return Plan(json_files, tables)


# -- staging ------------------------------------------------------------------------------------


def _pos(file: SourceFile, record_sql: str) -> str:
    return f"({int_lit(file.index)}::BIGINT << {POS_SHIFT}) + ({record_sql})"


def _create_tables(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    columns = ", ".join(f"{ident(n)} {t}" for n, t in staged_columns(plan).items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE staged ({columns})")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE record_texts "
        "(pos BIGINT, raw VARCHAR, q VARCHAR, marked BOOLEAN)"
    )


def _read_lines(file: SourceFile, max_line: int, buffer: int) -> str:
    """SQL: the lines of a text file in file order (a blank line is a NULL or blank text)."""
    return f"""
        read_csv({lit(file.name)}, columns={{'line': 'VARCHAR'}}, delim={lit(chr(0))},
                 quote='', escape='', header=false, auto_detect=false,
                 max_line_size={int(max_line)}, buffer_size={int(buffer)})
    """


_NOT_BLANK = "line IS NOT NULL AND NOT (ascii(line) IN (9, 11, 12, 13, 32) AND trim(line) = '')"


def _read_failure(file: SourceFile, error: BaseException) -> UserError:
    text = _first_line(error)
    if "Expected Number of Columns" in str(error):
        text = "a line holds a NUL byte (the file is not text)"
    return UserError(f"cannot read {file.format} file {file.name}: {text}")


def count_lines(path: Path) -> int:
    """The lines of a text file (gzipped when its name ends in .gz) as DuckDB's CSV reader
    reads them: every newline ends one, and a last line without one counts too.  Lines end
    in \\n (or \\r\\n); a file without any \\n ends them in \\r.

    One pass counting \\n into a reused buffer (this runs beside DuckDB's read on a 2-core
    machine, so its CPU is the read's); carriage returns are counted, in a second pass, only
    in a file without any \\n."""
    lf, last = _count_byte(path, b"\n")
    if lf == 0 and last:
        cr, _ = _count_byte(path, b"\r")
        if cr:
            return cr + (last != b"\r")
    return lf + (last not in (b"", b"\n"))


def _count_byte(path: Path, byte: bytes) -> tuple[int, bytes]:
    """(occurrences of `byte` in the file's text, its last byte or b"")."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    buffer = bytearray(1 << 24)
    view = memoryview(buffer)
    count = 0
    last = b""
    with opener(path, "rb") as handle:
        while size := handle.readinto(view):
            count += buffer.count(byte, 0, size)
            last = bytes(buffer[size - 1 : size])
    return count, last


def _load_lines(con: duckdb.DuckDBPyConnection, file: SourceFile) -> str | None:
    """Read a file's lines, numbered, and make sure none was left out (`_all_lines_read`).

    A plain file larger than one read buffer goes to its own table `lines_<index>`, read on
    every thread in file order (its row ids are the line numbers); returns the SQL of its
    records, for the `records` view.  Other files go into `record_texts` (None)."""
    gzipped = file.path.name.lower().endswith(".gz")
    parallel = file.size > FAST_BUFFER_BYTES and not gzipped
    table = f"lines_{int(file.index)}"
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="meterql-lines") as pool:
        # a gzipped file is read by DuckDB on one thread: its lines are counted on the other
        counted = pool.submit(count_lines, file.path) if gzipped else None
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
            except (*_READ_ERRORS, duckdb.NotImplementedException) as failure:
                error = failure
                continue
            read, text_bytes = first_row(
                con,
                f"SELECT count(*), coalesce(sum(strlen(line)), 0) FROM {table}",  # noqa: S608
            )
            if _all_lines_read(file.path, read, text_bytes, counted):
                break
            error = None  # a line longer than the buffer was left out: read it again
        else:
            if error is not None:
                raise _read_failure(file, error) from None
            raise UserError(
                f"cannot read {file.format} file {file.name}: a line is longer than "
                f"{MAX_LINE_BYTES // 2**20} MiB"
            )
    if parallel:
        pos = _pos(file, "rowid + 1")
        return f"SELECT {pos} AS pos, line AS raw, NULL::VARCHAR AS q, false AS marked FROM {table} WHERE {_NOT_BLANK}"  # noqa: S608, E501
    with _unordered(con):
        con.execute(
            f"INSERT INTO record_texts SELECT {_pos(file, 'ln')}, line, NULL, false "  # noqa: S608
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


def _load_json_file(con: duckdb.DuckDBPyConnection, file: SourceFile, parts: list[str]) -> str:
    """A `.json` file: an array of events, one event object, or else NDJSON, into
    `record_texts` (or `parts`, see `_load_lines`).  Returns what a record of the file is called
    in messages (element, record, line)."""
    row = first_row(con, f"SELECT try(json_type(content)) FROM read_text({lit(file.name)})")  # noqa: S608
    kind = row[0] if row else None
    if kind is None:
        part = _load_lines(con, file)
        if part is not None:
            parts.append(part)
        return "line"
    if kind == "ARRAY":
        # The whole document is parsed at once; its numbers are marked first when DuckDB would
        # not keep their text (exactjson), and each element keeps that marked text in `q`.
        con.execute(
            f"""
            INSERT INTO record_texts
            SELECT {_pos(file, "i")}, CASE WHEN m THEN {exactjson.unmark_text("e")} ELSE e END,
                   e, m
            FROM (
                SELECT m, unnest(els) AS e, generate_subscripts(els, 1) AS i
                FROM (
                    SELECT m, json_transform(CASE WHEN m THEN {exactjson.mark("content")}
                                                  ELSE content END, '["JSON"]') AS els
                    FROM (SELECT content, {exactjson.needs_mark("content")} AS m
                          FROM read_text({lit(file.name)}))
                )
            )
            """  # noqa: S608 - path rendered by sqlglot
        )
        return "element"
    con.execute(
        f"""
        INSERT INTO record_texts
        SELECT {_pos(file, "1")}, content, NULL, false FROM read_text({lit(file.name)})
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


def _json_staged_select(source_sql: str, clock: datetime) -> str:
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

    def kind(i: int) -> str:
        # a number marked inside an array document is still a number for the event fields
        return (
            f"CASE WHEN marked AND starts_with(vals[{i}], {lit(exactjson.MARK)}) THEN 'DOUBLE' "
            f"ELSE types[{i + 1}] END"
        )

    def field(i: int, name: str, slow: str) -> tuple[str, str]:
        return (
            f"CASE WHEN {slow} THEN vals[{i}] ELSE j.{name} END",
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
                    THEN 'expected an event object, got ' || CASE types[1]
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
                       CASE WHEN s_ts THEN vals[4] ELSE j.timestamp END AS ts_text,
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


def _null_kind(file: SourceFile) -> str:
    """The kind of a NULL value: in a CSV file an empty cell, reported as a missing field."""
    return "NULL" if file.format == "csv" else "'NULL'"


def _text_field(file: SourceFile, column: str, type_id: str) -> tuple[str, str]:
    """(value SQL, kind SQL) of a text or integer column."""
    col = ident(column)
    value = col if type_id == "varchar" else f"CAST({col} AS VARCHAR)"
    return value, f"CASE WHEN {col} IS NULL THEN {_null_kind(file)} ELSE 'VARCHAR' END"


def _value_text(value_sql: str, type_id: str) -> str:
    """SQL: a typed value as its exact text (nested values as compact JSON)."""
    if type_id == "varchar":
        return value_sql
    if type_id in _NESTED_TYPES:
        return f"CAST(to_json({value_sql}) AS VARCHAR)"
    return f"CAST({value_sql} AS VARCHAR)"


def _table_raw_select(table: TableSource) -> tuple[str, list[str]]:
    """SQL: the raw columns of one CSV or Parquet file, and the property columns it fills."""
    file = table.file
    if file.format == "csv":
        source = f"read_csv({_csv_args(file, header=True)})"
        record = "row_number() OVER ()"
    else:
        source = f"read_parquet({lit(file.name)}, file_row_number=true)"
        record = "file_row_number + 1"
    tid, tid_kind = _text_field(file, *table.fields["transaction_id"])
    cust, cust_kind = _text_field(file, *table.fields["customer_id"])
    et, et_kind = _text_field(file, *table.fields["event_type"])
    ts_column, ts_type = table.fields["timestamp"]
    ts_col = ident(ts_column)
    if ts_type == "varchar":
        ts_cols = (
            f"{ts_col} AS ts_text, NULL::TIMESTAMP AS ts_value, "
            f"CASE WHEN {ts_col} IS NULL THEN {_null_kind(file)} ELSE 'TEXT' END AS ts_type"
        )
    else:
        ts_cols = (
            f"NULL::VARCHAR AS ts_text, CAST({ts_col} AS TIMESTAMP) AS ts_value, "
            f"CASE WHEN {ts_col} IS NULL THEN 'NULL' ELSE 'TIMESTAMP' END AS ts_type"
        )
    props: list[str] = []
    filled: list[str] = []
    props_type = "NULL::VARCHAR"
    props_count = "0"
    if table.props_kind == "json":
        p = ident(table.props_column or PROPERTIES)
        marked = exactjson.needs_mark(p)
        doc = f"CASE WHEN {marked} THEN {exactjson.mark(p)} ELSE {p} END"
        props_type = (
            f"CASE WHEN {p} IS NULL THEN 'NULL' ELSE coalesce(try(json_type({doc})), 'INVALID') END"
        )
        props_count = (
            f"CASE WHEN length({p}) > {MAX_PROPERTIES * 4} "
            f"THEN coalesce(try(len(json_keys({p}))), 0) ELSE 0 END"
        )
        props += [f"{doc} AS props_json", f"{marked} AS props_marked"]
        filled += ["props_json", "props_marked"]
    elif table.props_kind == "map":
        p = ident(table.props_column or PROPERTIES)
        (_, key_type), (_, value_type) = table.props_type.children
        key = "e.key" if key_type.id == "varchar" else "CAST(e.key AS VARCHAR)"
        value = _value_text("e.value", value_type.id)
        if key_type.id == "varchar" and value_type.id == "varchar":
            as_text = p
        else:
            as_text = (
                f"map_from_entries(list_transform(map_entries({p}), "
                f"lambda e: {{'key': {key}, 'value': {value}}}))"
            )
        props_type = f"CASE WHEN {p} IS NULL THEN 'NULL' ELSE 'OBJECT' END"
        props_count = f"coalesce(cardinality({p}), 0)"
        props.append(f"{as_text} AS props_map")
        filled.append("props_map")
    elif table.props_kind in ("struct", "columns"):
        parent = ident(table.props_column) + "." if table.props_kind == "struct" else ""
        for column, name, type_id in table.property_columns:
            target = ident(property_column(name))
            props.append(f"{_value_text(parent + ident(column), type_id)} AS {target}")
            filled.append(target)
        if len(table.property_columns) > MAX_PROPERTIES:
            props_count = " + ".join(
                f"({parent}{ident(c)} IS NOT NULL)::INT" for c, _, _ in table.property_columns
            )
        if table.props_kind == "struct":
            p = ident(table.props_column or PROPERTIES)
            props_type = f"CASE WHEN {p} IS NULL THEN 'NULL' ELSE 'OBJECT' END"
    select = f"""
        SELECT {_pos(file, record)} AS pos, NULL::VARCHAR AS root_problem,
               {tid} AS tid, {tid_kind} AS tid_type,
               {cust} AS cust, {cust_kind} AS cust_type,
               {et} AS et, {et_kind} AS et_type,
               {ts_cols},
               {props_type} AS props_type, {props_count} AS props_count
               {"".join(", " + p for p in props)}
        FROM {source}
    """  # noqa: S608 - names and paths rendered by sqlglot
    return select, filled


def stage(con: duckdb.DuckDBPyConnection, plan: Plan, clock: datetime) -> dict[int, str]:
    """Fill the temp table `staged` (and the view `records`: pos, raw, q, marked of the JSON
    texts) from every source.  Returns, per source index, what its records are called in
    messages (line, element, row)."""
    _create_tables(con, plan)
    units: dict[int, str] = {}
    parts = ["SELECT pos, raw, q, marked FROM record_texts"]
    for file in plan.json_files:
        units[file.index] = "line"
        if file.size == 0:
            continue
        if file.format == "json":
            units[file.index] = _load_json_file(con, file, parts)
        else:
            part = _load_lines(con, file)
            if part is not None:
                parts.append(part)
    con.execute(f"CREATE OR REPLACE TEMP VIEW records AS {' UNION ALL '.join(parts)}")
    if units:
        records = _json_staged_select("SELECT pos, raw, q, marked FROM records", clock)
        with _unordered(con):  # every row carries its position: no need to keep the order
            con.execute(f"INSERT INTO staged BY NAME {records}")
    for table in plan.tables:
        raw, filled = _table_raw_select(table)
        try:
            # CSV rows are numbered by row_number() OVER (), which needs the order kept
            with _unordered(con, table.file.format == "parquet"):
                con.execute("INSERT INTO staged BY NAME " + normalised_select(raw, filled, clock))
        except _READ_ERRORS as error:
            raise UserError(
                f"cannot read {table.file.format} file {table.file.name}: {_first_line(error)}"
            ) from None
    return units


@contextmanager
def _unordered(con: duckdb.DuckDBPyConnection, active: bool = True) -> Iterator[None]:
    """Let DuckDB insert rows in any order (faster: no ordered batch insert)."""
    if not active:
        yield
        return
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute("SET preserve_insertion_order = true")


def record_payload_sql(table: TableSource, positions_table: str) -> str:
    """SQL: (pos, payload) of the rows of a CSV/Parquet file whose pos is in `positions_table`:
    the row as sent, as the JSON text of an object of its columns (CSV values are text)."""
    file = table.file
    pairs = ", ".join(f"{lit(w)}, {ident(n)}" for n, w in table.columns)
    if file.format == "csv":
        source = f"read_csv({_csv_args(file, header=True)})"
        record = "row_number() OVER ()"
    else:
        source = f"read_parquet({lit(file.name)}, file_row_number=true)"
        record = "file_row_number + 1"
    return f"""
        SELECT r.pos, CAST(json_object({pairs}) AS VARCHAR) AS payload
        FROM (SELECT {_pos(file, record)} AS pos, * FROM {source}) r
        SEMI JOIN {positions_table} p ON p.pos = r.pos
    """  # noqa: S608 - names and paths rendered by sqlglot
