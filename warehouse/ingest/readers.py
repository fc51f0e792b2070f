"""Reading the source files into the `staged` table, with DuckDB's readers (no per-event Python).

`inspect_sources` looks at every CSV and Parquet file's columns first and raises a `UserError`
naming the file, the column, its type and what was expected, before anything is written.
`stage` then fills one temporary table `staged` (columns: `staged_columns`) with one row per
record, already checked by `normalise`:

- NDJSON and JSON files: their records (lines, array elements) by warehouse.ingest.json_records.
- CSV (all columns read as text, exactly as sent) and Parquet: the four event fields plus the
  properties as a `properties` column (a MAP, a STRUCT, or JSON text) or as extra columns (every
  column beyond the four fields is a property).

Positions: every record gets `pos = source index << 40 | record number` (sources.pos_sql), so
ordering by `pos` is input order (file order, then line/row order) and the first copy of a
duplicate wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow.parquet as pq

from warehouse.errors import UserError, first_line, suggest
from warehouse.ingest import exactjson
from warehouse.ingest.connection import is_read_error, unordered
from warehouse.ingest.json_records import (
    FAST_BUFFER_BYTES,
    json_staged_select,
    load_json_file,
    load_lines,
    load_small_files,
)
from warehouse.ingest.normalise import MAX_PROPERTIES, normalised_select
from warehouse.ingest.sources import (
    MAX_LINE_BYTES,
    POS_SHIFT,
    READ_BUFFER_BYTES,
    SourceFile,
    pos_sql,
)
from warehouse.ingest.sqltext import ident, int_lit, lit, lit_list
from warehouse.layout import property_column
from warehouse.sqlrows import first_row

FIELDS = ("transaction_id", "customer_id", "event_type", "timestamp")
PROPERTIES = "properties"

_INTEGER_TYPES = frozenset(
    {"tinyint", "smallint", "integer", "bigint", "hugeint"}
    | {"utinyint", "usmallint", "uinteger", "ubigint", "uhugeint"}
)
_TIMESTAMP_TYPES = frozenset(
    {"timestamp", "timestamp with time zone", "timestamp_ms", "timestamp_s"}
    | {"timestamp_ns", "timestamptz_ns"}  # cut to the microsecond: _NANOSECOND_TYPES
)
# Nanosecond timestamps (pandas writes them) are stored to the microsecond by flooring, never
# rounding (DuckDB's cast rounds: an event at 23:59:59.9999996 would move to the next day and
# maybe the next billing period).
_NANOSECOND_TYPES = frozenset({"timestamp_ns", "timestamptz_ns"})
_KIND = {"csv": "CSV", "parquet": "Parquet"}  # a tabular file's format, as messages name it
_NESTED_TYPES = frozenset({"struct", "list", "map", "array", "union"})
_UNSUPPORTED_VALUE_TYPES = frozenset({"blob", "bit", "varint", "bignum", "geometry"})

# DuckDB errors that mean "this file cannot be read as that format" (others are bugs)

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
    # every column's (DuckDB name, DuckDB type, name as written): files of one signature are
    # read together (stage)
    signature: tuple[tuple[str, str, str], ...] = ()
    # Parquet only: read just the rows [first, end) (a chunk of a large batch:
    # warehouse.ingest.chunks); None: every row
    rows: tuple[int, int] | None = None


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


def _csv_args(file: SourceFile, *, header: bool, files: Sequence[SourceFile] = ()) -> str:
    """read_csv's arguments for `file` (or `files`, read together)."""
    paths = lit_list(f.name for f in files) if files else lit(file.name)
    return (
        f"{paths}, header={'true' if header else 'false'}, all_varchar=true, "
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
            f"cannot read {file.format} file {file.name}: {first_line(error)}"
        ) from None
    if len(written) != len(names):
        written = names  # DuckDB and the file disagree on the header: trust DuckDB's reading
    return names, types, written


def _type_name(dtype: Any) -> str:
    return str(dtype)


def _check_value_type(file: SourceFile, where: str, dtype: Any) -> None:
    if dtype.id in _UNSUPPORTED_VALUE_TYPES:
        raise UserError(
            f"{_KIND[file.format]} file {file.name}: {where} has type {_type_name(dtype)}; "
            "expected text, a number, a boolean, a date/time, or a nested value (stored as JSON "
            "text)"
        )


def _inspect_table(con: duckdb.DuckDBPyConnection, file: SourceFile) -> TableSource:
    names, types, written = _relation_columns(con, file)
    table = _classify(file, names, types, written)
    table.columns = list(zip(names, written, strict=True))
    table.signature = tuple(zip(names, map(str, types), written, strict=True))
    return table


def _classify(
    file: SourceFile, names: list[str], types: list[Any], written: list[str]
) -> TableSource:
    by_written = {w: (n, t) for n, t, w in zip(names, types, written, strict=True)}
    kind = _KIND[file.format]
    repeated = _repeated(written)
    if repeated:
        raise UserError(
            f"{kind} file {file.name}: its header names column {repeated!r} more than once; "
            "each event field and each property needs exactly one column"
        )
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
            repeated = _repeated(written_names)
            if repeated:
                raise UserError(
                    f"{kind} file {file.name}: column properties has the field {repeated!r} "
                    "more than once; each property needs exactly one field"
                )
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


def _repeated(names: list[str]) -> str | None:
    """The first name that `names` holds more than once, if any (as written: `Model` and
    `model` are two names)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


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


def _create_tables(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    columns = ", ".join(f"{ident(n)} {t}" for n, t in staged_columns(plan).items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE staged ({columns})")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE record_texts "
        "(pos BIGINT, raw VARCHAR, q VARCHAR, marked BOOLEAN)"
    )


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


def _table_source(table: TableSource, group: Sequence[TableSource] = ()) -> tuple[str, str]:
    """SQL: (the rows of a CSV or Parquet file (of its range), their positions).  `group`:
    Parquet files of `table`'s signature read with it in one read (`_groups`)."""
    file = table.file
    if file.format == "csv" and group:
        # numbered in file order (the order kept), each file's rows from its first
        number, in_list, position = (
            _free_name(table, name) for name in ("record_number", "source_file", "position")
        )
        args = _csv_args(file, header=True, files=[t.file for t in group])
        numbered = (
            f"SELECT *, file_index AS {in_list}, row_number() OVER () AS {number} "  # noqa: S608
            f"FROM read_csv({args})"
        )
        indexes = "[" + ", ".join(int_lit(t.file.index) for t in group) + "]"
        source = f"""(
            SELECT *, (({indexes})[CAST({in_list} AS BIGINT) + 1]::BIGINT << {POS_SHIFT})
                      + {number} - min({number}) OVER (PARTITION BY {in_list}) + 1 AS {position}
            FROM ({numbered})
        )"""  # noqa: S608 - names and paths rendered by sqlglot
        return source, position
    if file.format == "csv":
        return f"read_csv({_csv_args(file, header=True)})", pos_sql(file, "row_number() OVER ()")
    if group:
        paths = lit_list(t.file.name for t in group)
        indexes = "[" + ", ".join(int_lit(t.file.index) for t in group) + "]"
        source = f"read_parquet({paths}, file_row_number=true)"
        # file_index: a DuckDB virtual column, the file's place in the list
        return source, (
            f"(({indexes})[CAST(file_index AS BIGINT) + 1]::BIGINT << {POS_SHIFT}) "
            "+ file_row_number + 1"
        )
    if _hides_row_numbers(table):
        # numbered in file order (the order kept, as for CSV), the range by that number
        name = _free_name(table, "record_number")
        source = f"(SELECT row_number() OVER () AS {name}, * FROM read_parquet({lit(file.name)}))"  # noqa: S608
        if table.rows is not None:
            first, end = table.rows
            source = (
                f"(SELECT * FROM {source} WHERE {name} > {int_lit(first)} "  # noqa: S608
                f"AND {name} <= {int_lit(end)})"
            )
        return source, pos_sql(file, name)
    source = f"read_parquet({lit(file.name)}, file_row_number=true)"
    if table.rows is not None:  # DuckDB skips the row groups outside the range
        first, end = table.rows
        source = (
            f"(SELECT * FROM {source} WHERE file_row_number >= {int_lit(first)} "  # noqa: S608
            f"AND file_row_number < {int_lit(end)})"
        )
    return source, pos_sql(file, "file_row_number + 1")


# Column names that would hide DuckDB's virtual columns of a multi-file read
_VIRTUAL = frozenset({"file_index", "file_row_number", "filename"})


def _hides_row_numbers(table: TableSource) -> bool:
    """A Parquet file with a column of the name of DuckDB's row numbers (`file_row_number`,
    which its option then refuses: names are case-insensitive)."""
    return any(name.lower() == "file_row_number" for name, _, _ in table.signature)


def keeps_order(table: TableSource) -> bool:
    """Whether reading `table` must keep the rows in file order (they are numbered by
    row_number() OVER (): CSV, and Parquet files that hide the row numbers)."""
    return table.file.format == "csv" or _hides_row_numbers(table)


def _free_name(table: TableSource, base: str) -> str:
    """An identifier named like `base` that is no column of `table` (case-insensitive)."""
    taken = {name.lower() for name, _, _ in table.signature}
    name = base
    while name in taken:
        name += "_"
    return ident(name)


def _groups(tables: Sequence[TableSource]) -> list[list[TableSource]]:
    """The tables in input order, whole Parquet or CSV files of one signature together (a
    statement per file cost about 16 ms: 1,000 small Parquet files took 15.8 s to stage);
    every other table alone."""
    groups: list[list[TableSource]] = []
    by_signature: dict[tuple, list[TableSource]] = {}
    for table in tables:
        together = (
            table.file.format in ("parquet", "csv")
            and table.rows is None
            and not any(name.lower() in _VIRTUAL for name, _, _ in table.signature)
        )
        if not together:
            groups.append([table])
        elif table.signature in by_signature:
            by_signature[table.signature].append(table)
        else:
            by_signature[table.signature] = [table]
            groups.append(by_signature[table.signature])
    return groups


def _table_raw_select(
    table: TableSource, group: Sequence[TableSource] = ()
) -> tuple[str, list[str]]:
    """SQL: the raw columns of one CSV or Parquet file (or of a `group` of Parquet files of
    its signature), and the property columns it fills."""
    file = table.file
    source, pos = _table_source(table, group)
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
        value = f"CAST({ts_col} AS TIMESTAMP)"
        if ts_type in _NANOSECOND_TYPES:
            ns = f"epoch_ns({ts_col})"
            value = f"make_timestamp(({ns} - ((({ns} % 1000) + 1000) % 1000)) // 1000)"
        ts_cols = (
            f"NULL::VARCHAR AS ts_text, {value} AS ts_value, "
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
        SELECT {pos} AS pos, NULL::VARCHAR AS root_problem,
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
    small = [f for f in plan.json_files if 0 < f.size <= FAST_BUFFER_BYTES and _plain_ndjson(f)]
    read = {id(f) for f in small} - {id(f) for f in load_small_files(con, small)}
    for file in plan.json_files:
        units[file.index] = "line"
        if file.size == 0 or id(file) in read:
            continue
        if file.format == "json":
            units[file.index] = load_json_file(con, file, parts)
        else:
            part = load_lines(con, file)
            if part is not None:
                parts.append(part)
    con.execute(f"CREATE OR REPLACE TEMP VIEW records AS {' UNION ALL '.join(parts)}")
    if units:
        records = json_staged_select("SELECT pos, raw, q, marked FROM records", clock)
        with unordered(con):  # every row carries its position: no need to keep the order
            con.execute(f"INSERT INTO staged BY NAME {records}")
    for group in _groups(plan.tables):
        _stage_tables(con, group, clock)
    return units


def _stage_tables(
    con: duckdb.DuckDBPyConnection, group: list[TableSource], clock: datetime
) -> None:
    """Insert the records of one CSV or Parquet file, or of a group of Parquet files of one
    signature (read together), into `staged`."""
    table = group[0]
    raw, filled = _table_raw_select(table, group if len(group) > 1 else ())
    try:
        with unordered(con, not keeps_order(table)):
            con.execute("INSERT INTO staged BY NAME " + normalised_select(raw, filled, clock))
    except duckdb.Error as error:
        if not is_read_error(error):
            raise
        if len(group) == 1:
            raise UserError(
                f"cannot read {table.file.format} file {table.file.name}: {first_line(error)}"
            ) from None
        for one in group:  # one by one, so the error names its file
            _stage_tables(con, [one], clock)


def _plain_ndjson(file: SourceFile) -> bool:
    return file.format == "ndjson" and not file.path.name.lower().endswith(".gz")


def record_payload_sql(table: TableSource, positions_table: str) -> str:
    """SQL: (pos, payload) of the rows of a CSV/Parquet file whose pos is in `positions_table`:
    the row as sent, as the JSON text of an object of its columns (CSV values are text)."""
    pairs = ", ".join(f"{lit(w)}, {ident(n)}" for n, w in table.columns)
    source, pos = _table_source(table)
    return f"""
        SELECT r.pos, CAST(json_object({pairs}) AS VARCHAR) AS payload
        FROM (SELECT {pos} AS pos, * FROM {source}) r
        SEMI JOIN {positions_table} p ON p.pos = r.pos
    """  # noqa: S608 - names and paths rendered by sqlglot
