"""The source files of a batch, inspected before anything is read: which are NDJSON/JSON, and
every CSV and Parquet file's columns (`inspect_sources` -> `Plan`), with a `UserError` naming the
file, the column, its type and what was expected, before anything is written; and the columns
of the `staged` table they fill (`staged_columns`; warehouse.ingest.staging fills it).

CSV (all columns read as text, exactly as sent) and Parquet hold the four event fields plus the
properties as a `properties` column (a MAP, a STRUCT, or JSON text) or as extra columns (every
column beyond the four fields is a property).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from warehouse.errors import UserError, suggest
from warehouse.ingest import ragged as ragged_csv
from warehouse.ingest.ragged import Ragged, first_problem
from warehouse.ingest.sources import (
    MAX_LINE_BYTES,
    READ_BUFFER_BYTES,
    SourceFile,
    read_failure,
)
from warehouse.ingest.sqltext import path_list, path_lit
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
    | {"timestamp_ns", "timestamptz_ns"}  # cut to the microsecond: NANOSECOND_TYPES
)
# Nanosecond timestamps (pandas writes them) are stored to the microsecond by flooring, never
# rounding (DuckDB's cast rounds: an event at 23:59:59.9999996 would move to the next day and
# maybe the next billing period).
NANOSECOND_TYPES = frozenset({"timestamp_ns", "timestamptz_ns"})
_KIND = {"csv": "CSV", "parquet": "Parquet"}  # a tabular file's format, as messages name it
NESTED_TYPES = frozenset({"struct", "list", "map", "array", "union"})
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
    # (DuckDB column or struct field name, property name, DuckDB type) of column-kind properties
    property_columns: list[tuple[str, str, Any]] = field(default_factory=list)
    # every column: (DuckDB name, name as written in the file, DuckDB type)
    columns: list[tuple[str, str, Any]] = field(default_factory=list)
    # every column's (DuckDB name, DuckDB type, name as written): files of one signature are
    # read together (stage)
    signature: tuple[tuple[str, str, str], ...] = ()
    # Parquet only: read just the rows [first, end) (a chunk of a large batch:
    # warehouse.ingest.chunks); None: every row
    rows: tuple[int, int] | None = None
    # CSV only: where a copy without ragged rows may go, and those rows once split off
    # (warehouse.ingest.ragged)
    scratch: Path | None = None
    ragged: Ragged | None = None


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


def csv_args(file: SourceFile, *, header: bool, files: Sequence[SourceFile] = ()) -> str:
    """read_csv's arguments for `file` (or `files`, read together)."""
    paths = path_list(f.read_path for f in files) if files else path_lit(file.read_path)
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
            rel = con.sql(f"SELECT * FROM read_csv({csv_args(file, header=True)})")  # noqa: S608
            names, types = list(rel.columns), list(rel.dtypes)
            first = first_row(
                con,
                f"SELECT * FROM read_csv({csv_args(file, header=False)}) LIMIT 1",  # noqa: S608
            )
            written = [str(v) if v is not None else "" for v in first]
        else:
            rel = con.sql(f"SELECT * FROM read_parquet({path_lit(file.name)})")  # noqa: S608
            names, types = list(rel.columns), list(rel.dtypes)
            written = list(pq.read_schema(file.path).names)
    except (duckdb.Error, OSError, ValueError) as error:
        # a ragged row may fail DuckDB's sniffer outright ("Error when sniffing file": rows
        # ending in \r\n, a quoted value holding a \n) rather than make it misread the header
        if file.format == "csv" and (problem := first_problem(file, FIELDS)):
            raise RaggedCsvError(f"{_KIND[file.format]} file {file.name}: {problem}") from None
        raise read_failure(file, error) from None
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
    table.columns = list(zip(names, written, types, strict=True))
    table.signature = tuple(zip(names, map(str, types), written, strict=True))
    return table


def _classify(
    file: SourceFile, names: list[str], types: list[Any], written: list[str]
) -> TableSource:
    by_written = {w: (n, t) for n, t, w in zip(names, types, written, strict=True)}
    kind = _KIND[file.format]
    missing = [f for f in FIELDS if f not in by_written]
    # before the header's names are checked: DuckDB may have taken a ragged row for it
    if missing and file.format == "csv" and (problem := first_problem(file, FIELDS)):
        raise RaggedCsvError(f"{kind} file {file.name}: {problem}")
    repeated = _repeated(written)
    if repeated:
        raise UserError(
            f"{kind} file {file.name}: its header names column {repeated!r} more than once; "
            "each event field and each property needs exactly one column"
        )
    if missing:
        hints = "".join(suggest(m, written) for m in missing[:1])
        raise UserError(
            f"{kind} file {file.name} has no column {', '.join(missing)} (columns: "
            f"{', '.join(written) or 'none'}); every event needs {', '.join(FIELDS)}{hints}"
        )
    fields: dict[str, tuple[str, str]] = {}
    for name in FIELDS:
        column, dtype = by_written[name]
        if dtype.id == "null":
            pass  # a column of nulls only (pyarrow's null type): every row is rejected for it
        elif name == "timestamp":
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
                props.append((duck_name, prop, child))
            return TableSource(file, fields, "struct", column, dtype, props)
        raise UserError(
            f"{kind} file {file.name}: column properties has type {_type_name(dtype)}; expected "
            "a MAP(VARCHAR, ...), a STRUCT, or text holding a JSON object"
        )
    props = []
    for column, dtype, written_name in extras:
        _check_value_type(file, f"column {written_name}", dtype)
        props.append((column, written_name, dtype))
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


class RaggedCsvError(UserError):
    """A CSV file with rows whose number of fields is not the header's (warehouse.ingest.ragged)."""


def inspect_sources(
    con: duckdb.DuckDBPyConnection, files: list[SourceFile], scratch: Path | None = None
) -> Plan:
    """The plan of a batch.  `scratch`: where a CSV file's copy without its ragged rows goes
    (none: such a file is refused)."""
    json_files: list[SourceFile] = []
    tables: list[TableSource] = []
    for file in files:
        if file.format in ("ndjson", "json"):
            json_files.append(file)
        elif file.size == 0:
            continue  # an empty file holds no events
        elif file.format == "csv":
            tables.append(inspect_csv(con, file, scratch))
        else:
            tables.append(_inspect_table(con, file))
    return Plan(json_files, tables)


def inspect_csv(
    con: duckdb.DuckDBPyConnection, file: SourceFile, scratch: Path | None
) -> TableSource:
    """A CSV file's TableSource; one with ragged rows in the rows DuckDB's sniffer samples is
    read from a copy without them (`split_ragged`)."""
    try:
        table = _inspect_table(con, file)
    except RaggedCsvError:
        if scratch is None:
            raise
        clean, ragged = split_ragged(file, scratch)
        table = _inspect_table(con, clean)
        table.ragged = ragged
    table.scratch = scratch
    return table


def split_ragged(file: SourceFile, scratch: Path) -> tuple[SourceFile, Ragged]:
    """ragged.split, its refusal a UserError naming the file (or, for text that is not UTF-8,
    its line and byte, as when DuckDB reads it)."""
    try:
        return ragged_csv.split(file, FIELDS, scratch)
    except UnicodeDecodeError as error:
        raise read_failure(file, error) from None
    except ValueError as error:
        raise RaggedCsvError(
            f"CSV file {file.name}: {error} (more than {ragged_csv.MAX_RAGGED} rows do not "
            "match the header: check the delimiter and the quoting)"
        ) from None
