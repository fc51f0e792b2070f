"""Staging: the records of every source into the temporary table `staged`, with DuckDB's
readers (no per-event Python), each record with its input position and its checks
(warehouse.ingest.normalise).

- NDJSON and JSON files: their records (lines, array elements) by warehouse.ingest.json_records
  (small plain NDJSON files in one read, `load_small_files`).
- CSV (all columns read as text, exactly as sent) and Parquet: the four event fields plus the
  properties as a `properties` column (a MAP, a STRUCT, or JSON text) or as extra columns.
  Whole files of one signature (the same columns and types: `_groups`) are read by ONE
  statement (a statement per file cost 16-21 ms: 1,000 small files took 15.8 s (Parquet) and
  20.7 s (CSV) to stage); a Parquet range (a chunk of a large file: warehouse.ingest.chunks)
  alone, its row groups pruned by `file_row_number`.

Positions: every record gets `pos = source index << 40 | record number` (sources.pos_sql), so
ordering by `pos` is input order (file order, then line/row order) and the first copy of a
duplicate wins.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb

from warehouse.errors import UserError
from warehouse.ingest import exactjson
from warehouse.ingest.connection import is_read_error, unordered
from warehouse.ingest.json_records import (
    json_staged_select,
    load_json_file,
    load_lines,
    load_small_files,
    small_file,
)
from warehouse.ingest.normalise import MAX_PROPERTIES, normalised_select
from warehouse.ingest.ragged import first_problem, numbered_source
from warehouse.ingest.ragged import stage as stage_ragged
from warehouse.ingest.readers import (
    FIELDS,
    NANOSECOND_TYPES,
    NESTED_TYPES,
    PROPERTIES,
    Plan,
    TableSource,
    csv_args,
    split_ragged,
    staged_columns,
)
from warehouse.ingest.sources import SourceFile, listed_pos_sql, pos_sql, read_failure
from warehouse.ingest.sqltext import ident, int_lit, lit, path_list, path_lit
from warehouse.layout import property_column


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


def _value_text(value_sql: str, dtype: Any) -> str:
    """SQL: a value of DuckDB type `dtype` as its exact text (nested values as compact JSON)."""
    if dtype.id == "varchar":
        return value_sql
    if dtype.id in NESTED_TYPES:
        return f"CAST(to_json({exact_json_value(value_sql, dtype)}) AS VARCHAR)"
    return f"CAST({value_sql} AS VARCHAR)"


# DuckDB's to_json writes a DECIMAL of at most this many digits through a double (`0.1000` ->
# `0.1`, `0.00000001` -> `1e-8`), a wider one with its exact digits.
_JSON_DOUBLE_DECIMAL_DIGITS = 15


def exact_json_value(value_sql: str, dtype: Any) -> str:
    """SQL: the value `value_sql` of DuckDB type `dtype`, cast so that to_json writes every
    DECIMAL in it with its exact digits (each narrow DECIMAL widened to 18 digits, its scale
    kept); unchanged when it holds no narrow DECIMAL."""
    widened = _widened_type(dtype)
    return value_sql if widened is None else f"CAST({value_sql} AS {widened})"


def _widened_type(dtype: Any) -> str | None:
    """The SQL of `dtype` with every DECIMAL of at most _JSON_DOUBLE_DECIMAL_DIGITS digits
    widened to DECIMAL(18, scale); None when it has none."""
    kind = dtype.id
    if kind == "decimal":
        children = dict(dtype.children)
        if children["precision"] > _JSON_DOUBLE_DECIMAL_DIGITS:
            return None
        return f"DECIMAL(18, {int(children['scale'])})"
    if kind not in NESTED_TYPES:
        return None
    children = list(dtype.children)
    if kind == "union":
        children = children[1:]  # the first child is the tag
    if kind == "array":
        children = children[:1]  # (child, size)
    inner = [_widened_type(child) for _, child in children]
    if all(t is None for t in inner):
        return None
    types = [str(child) if t is None else t for (_, child), t in zip(children, inner, strict=True)]
    if kind == "list":
        return f"{types[0]}[]"
    if kind == "array":
        return f"{types[0]}[{int(dict(dtype.children)['size'])}]"
    if kind == "map":
        return f"MAP({types[0]}, {types[1]})"
    fields = ", ".join(f"{ident(name)} {t}" for (name, _), t in zip(children, types, strict=True))
    return f"{kind.upper()}({fields})"  # STRUCT or UNION


def _table_source(table: TableSource, group: Sequence[TableSource] = ()) -> tuple[str, str]:
    """SQL: (the rows of a CSV or Parquet file (of its range), their positions).  `group`:
    the files of `table`'s signature, read with it in one read (`_groups`)."""
    file = table.file
    if file.format == "csv" and group:
        # numbered in file order (the order kept), each file's rows from its first
        number, in_list, position = (
            _free_name(table, name) for name in ("record_number", "source_file", "position")
        )
        args = csv_args(file, header=True, files=[t.file for t in group])
        numbered = (
            f"SELECT *, file_index AS {in_list}, row_number() OVER () AS {number} "  # noqa: S608
            f"FROM read_csv({args})"
        )
        record = f"{number} - min({number}) OVER (PARTITION BY {in_list}) + 1"
        pos = listed_pos_sql([t.file for t in group], in_list, record)
        source = f"(SELECT *, {pos} AS {position} FROM ({numbered}))"  # noqa: S608
        return source, position
    if file.format == "csv" and table.ragged is not None:
        number, record = (_free_name(table, name) for name in ("copy_number", "record_number"))
        read = f"read_csv({csv_args(file, header=True)})"
        return numbered_source(read, table.ragged, number, record), pos_sql(file, record)
    if file.format == "csv":
        return f"read_csv({csv_args(file, header=True)})", pos_sql(file, "row_number() OVER ()")
    if group:
        source = f"read_parquet({path_list(t.file.name for t in group)}, file_row_number=true)"
        # file_index: a DuckDB virtual column, the file's place in the list
        files = [t.file for t in group]
        return source, listed_pos_sql(files, "file_index", "file_row_number + 1")
    if _hides_row_numbers(table):
        # numbered in file order (the order kept, as for CSV), the range by that number
        name = _free_name(table, "record_number")
        read = f"read_parquet({path_lit(file.name)})"
        source = f"(SELECT row_number() OVER () AS {name}, * FROM {read})"  # noqa: S608
        if table.rows is not None:
            first, end = table.rows
            source = (
                f"(SELECT * FROM {source} WHERE {name} > {int_lit(first)} "  # noqa: S608
                f"AND {name} <= {int_lit(end)})"
            )
        return source, pos_sql(file, name)
    source = f"read_parquet({path_lit(file.name)}, file_row_number=true)"
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
            and table.ragged is None
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
    """SQL: the raw columns of one CSV or Parquet file (or of a `group` of files of its
    signature), and the property columns it fills."""
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
        if ts_type in NANOSECOND_TYPES:
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
        value = _value_text("e.value", value_type)
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
        for column, name, dtype in table.property_columns:
            target = ident(property_column(name))
            props.append(f"{_value_text(parent + ident(column), dtype)} AS {target}")
            filled.append(target)
        if len(table.property_columns) > MAX_PROPERTIES:
            # one flat list, not a chain of additions (past DuckDB's expression depth limit)
            present = ", ".join(
                f"({parent}{ident(c)} IS NOT NULL)::INT" for c, _, _ in table.property_columns
            )
            props_count = f"list_sum([{present}])"
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
    small = [f for f in plan.json_files if small_file(f)]
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
    """Insert the records of one CSV or Parquet file, or of a group of files of one signature
    (read together), into `staged`."""
    table = group[0]
    if table.ragged is not None:
        stage_ragged(con, table.file, table.ragged)
    raw, filled = _table_raw_select(table, group if len(group) > 1 else ())
    try:
        with unordered(con, not keeps_order(table)):
            con.execute("INSERT INTO staged BY NAME " + normalised_select(raw, filled, clock))
    except duckdb.Error as error:
        if not is_read_error(error):
            raise
        if len(group) == 1:
            if table.file.format == "csv" and table.ragged is None:
                problem = first_problem(table.file, FIELDS)
                if problem and table.scratch is None:
                    raise UserError(f"CSV file {table.file.name}: {problem}") from None
                if problem:  # ragged rows past the ones DuckDB's sniffer sampled
                    table.file, table.ragged = split_ragged(table.file, table.scratch)
                    _stage_tables(con, [table], clock)
                    return
            raise read_failure(table.file, error) from None
        for one in group:  # one by one, so the error names its file
            _stage_tables(con, [one], clock)


def _json_text(value_sql: str, dtype: Any) -> str:
    """SQL: the strict JSON text of a value of DuckDB type `dtype` (NULL for NULL), its numbers
    with the digits stored for them: a DECIMAL exactly, a DOUBLE or FLOAT as DuckDB's shortest
    text and, not finite, as that text in a string (`"nan"`, `"inf"`)."""
    kind = dtype.id
    if kind == "decimal":
        return f"CAST({value_sql} AS VARCHAR)"
    if kind in ("float", "double"):
        return (
            f"CASE WHEN isfinite({value_sql}) THEN CAST({value_sql} AS VARCHAR) "
            f"ELSE CAST(to_json(CAST({value_sql} AS VARCHAR)) AS VARCHAR) END"
        )
    return f"CAST(to_json({exact_json_value(value_sql, dtype)}) AS VARCHAR)"


def record_payload_sql(table: TableSource, positions_table: str) -> str:
    """SQL: (pos, payload) of the rows of a CSV/Parquet file whose pos is in `positions_table`:
    the row as sent, as the JSON text of an object of its columns (CSV values are text).  The
    text is put together here: json_object would write numbers through a double."""
    parts = []
    for i, (name, written, dtype) in enumerate(table.columns):
        key = ("{" if i == 0 else ",") + json.dumps(written, ensure_ascii=False) + ":"
        parts += [lit(key), f"coalesce({_json_text('r.' + ident(name), dtype)}, 'null')"]
    payload = f"concat({', '.join(parts)}, '}}')" if parts else "'{}'"
    source, pos = _table_source(table)
    position = _free_name(table, "pos")  # a column of the file may be called pos
    return f"""
        SELECT r.{position} AS pos, {payload} AS payload
        FROM (SELECT {pos} AS {position}, * FROM {source}) r
        SEMI JOIN {positions_table} p ON p.pos = r.{position}
    """  # noqa: S608 - names and paths rendered by sqlglot
