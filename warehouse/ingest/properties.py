"""From the staged properties to one VARCHAR column per property key (warehouse.layout).

Staged rows hold their properties in up to three shapes, depending on the source: a JSON object
text (`props_json`, from NDJSON/JSON and JSON-text columns), a `props_map` MAP(VARCHAR, VARCHAR)
(Parquet MAP columns), and one column per property (Parquet/CSV extra columns and STRUCT
fields).  `discover_keys` finds, with one DuckDB query per shape, the keys the accepted events
carry; `property_values` gives, for each key, the SQL of its value: the first shape that has it.

Values are text: JSON strings unescaped, JSON numbers and booleans as their exact text (see
exactjson), nested objects and arrays as compact JSON text.  A JSON `null` value, like a NULL in a
MAP, STRUCT or extra column, means the property is absent.
"""

from __future__ import annotations

import duckdb

from warehouse.ingest import exactjson
from warehouse.ingest.readers import Plan
from warehouse.ingest.sqltext import ident, json_pointer, lit
from warehouse.layout import property_column

JSON_VALUES = "__prop_values"  # the list column json_extract_string fills, one item per key


def key_counts(con: duckdb.DuckDBPyConnection, plan: Plan, accepted: str) -> dict[str, int]:
    """How many events of the `accepted` relation hold each JSON or MAP property key."""
    counts: dict[str, int] = {}
    for shape, keys_of in (("json", "json_keys(props_json)"), ("map", "map_keys(props_map)")):
        if not (plan.has_json if shape == "json" else plan.has_map):
            continue
        column = "props_json" if shape == "json" else "props_map"
        rows = con.execute(
            f"SELECT k, count(*) FROM (SELECT unnest({keys_of}) AS k FROM {accepted} "  # noqa: S608
            f"WHERE {column} IS NOT NULL) GROUP BY k"
        ).fetchall()
        for key, n in rows:
            counts[key] = counts.get(key, 0) + int(n)
    return counts


def discover_keys(
    con: duckdb.DuckDBPyConnection, plan: Plan, accepted: str, *, columns: bool = True
) -> list[str]:
    """Every property key present in the `accepted` relation, sorted (with `columns=False`,
    only the keys held in JSON or MAP properties)."""
    keys: set[str] = set(plan.column_properties) if columns else set()
    keys.update(key_counts(con, plan, accepted))
    return sorted(keys)


def json_values_sql(plan: Plan, keys: list[str]) -> str | None:
    """SQL of the `JSON_VALUES` list column (one json_extract_string for all keys), if needed."""
    if not plan.has_json or not keys:
        return None
    paths = "[" + ", ".join(lit(json_pointer(k)) for k in keys) + "]"
    values = f"json_extract_string(props_json, {paths})"
    # marks are removed once per list (not once per key: the SQL stays small with many keys)
    unmarked = f"list_transform({values}, lambda v: {exactjson.unmark_value('v', 'true')})"
    return f"CASE WHEN props_marked THEN {unmarked} ELSE {values} END"


def property_values(plan: Plan, keys: list[str], row: str) -> list[tuple[str, str]]:
    """(quoted column name, value SQL) per key, reading the staged row alias `row`."""
    columns = set(plan.column_properties)
    out = []
    for i, key in enumerate(keys, start=1):
        column = property_column(key)
        shapes = []
        if key in columns:
            shapes.append(f"{row}.{ident(column)}")
        if plan.has_map:
            shapes.append(f"{row}.props_map[{lit(key)}]")
        if plan.has_json:
            shapes.append(f"{row}.{JSON_VALUES}[{i}]")
        expr = shapes[0] if len(shapes) == 1 else "coalesce(" + ", ".join(shapes) + ")"
        out.append((ident(column), expr))
    return out


def json_entry_value(kind: str, value: str, text: str, marked_sql: str) -> str:
    """SQL: the stored text of a json_each entry of a props_json object, given its JSON `kind`,
    its JSON `value` and, for a string, its unquoted `text` (columns computed beforehand: the
    same text `property_values` gives for that key); NULL for a JSON null."""
    nested = f"CASE WHEN {marked_sql} THEN {exactjson.unmark_text(value)} ELSE {value} END"
    return (
        f"CASE WHEN {kind} = 'VARCHAR' THEN {exactjson.unmark_value(text, marked_sql)} "
        f"WHEN {kind} IN ('OBJECT', 'ARRAY') THEN {nested} WHEN {kind} <> 'NULL' THEN {value} END"
    )
