"""The many-keys write path: events whose properties are many sparse keys.

Sorting rows that carry one column per key would move every absent value too (measured: 26 s
for 100k events with 2,000 sparse keys), and extracting every key from every row costs
rows x keys in DuckDB.  So the accepted events are sorted with their properties still in their
staged shape (into the temp table `sorted_events`, in order); then per date, DuckDB gives the
date's rows in that order (fixed columns and column properties) and its other property values
in long form (row, key, value: only the values present), and `_pivot` makes them columns, or
entries of the MAP column of rare keys (warehouse.rare).  The cost follows the values present
rather than rows x keys.  Each date's rows are then handed to `write.write_sorted` as pieces.
"""

from __future__ import annotations

from collections.abc import Iterator, Set
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.ingest.properties import discover_keys, json_entry_value
from warehouse.ingest.readers import Plan
from warehouse.ingest.sqltext import ident, lit
from warehouse.ingest.write import BATCH_ROWS, Piece
from warehouse.layout import is_property_column, property_column
from warehouse.rare import rare_maps, split_keys

DATE_COLUMN = "__event_date"


def sparse_pieces(
    work: duckdb.DuckDBPyConnection, plan: Plan, kept: Set[str] = frozenset()
) -> Iterator[Piece]:
    """The accepted events, sorted, as pieces of one date each (fixed columns, one column per
    property that has a value on that date, the rare keys in maps; `kept`: the keys that are
    columns whatever their share, warehouse.rare.split_keys)."""
    work.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE sorted_events AS
        SELECT s.*, CAST(s.ts AS DATE) AS {DATE_COLUMN}
        FROM accepted s
        JOIN dims d ON d.event_type = s.event_type AND d.customer_id = s.customer_id
        ORDER BY {DATE_COLUMN}, d.k, s.ts, s.pos
        """  # noqa: S608 - fixed SQL
    )
    dates = [
        d
        for (d,) in work.execute(
            f"SELECT DISTINCT {DATE_COLUMN} FROM sorted_events ORDER BY 1"  # noqa: S608
        ).fetchall()
    ]
    # the keys of the whole batch, numbered once (a bound list, not SQL text per date:
    # measured, rendering and scanning a literal of ~800 keys per date was a third of a small
    # batch's write)
    keys = discover_keys(work, plan, "sorted_events", columns=False)
    work.execute(
        "CREATE OR REPLACE TEMP TABLE sparse_keys AS "
        "SELECT unnest($keys::VARCHAR[]) AS name, unnest(range(len($keys::VARCHAR[]))) AS key",
        {"keys": keys},
    )
    for event_date in dates:
        rows_sql, long_sql = _date_query(plan, event_date, bool(keys))
        table = work.sql(rows_sql).to_arrow_table()
        if long_sql is not None:
            long = work.sql(long_sql).to_arrow_table()
            table = _pivot(table, long, keys, set(plan.column_properties) | kept)
        empty = [
            n
            for n, column in zip(table.column_names, table.columns, strict=True)
            if is_property_column(n) and column.null_count == len(table)
        ]
        for batch in table.drop_columns(empty).to_batches(BATCH_ROWS):
            yield event_date, batch


def _date_query(plan: Plan, event_date: date, any_keys: bool) -> tuple[str, str | None]:
    """For one date of `sorted_events`: the SQL of its rows in order with the fixed columns and
    the column properties, and (if the batch has JSON or MAP keys) the SQL of its JSON and MAP
    property values in long form (row, key index in `sparse_keys`, value; NULL for a JSON null
    or a NULL in a MAP), sorted by key, row and the value's place in its object or map (a key
    sent twice: `_first_values`)."""
    day = f"DATE {lit(event_date.isoformat())}"
    rows = f"(SELECT * FROM sorted_events WHERE {DATE_COLUMN} = {day})"  # noqa: S608
    columns = "".join(f", {ident(property_column(n))}" for n in plan.column_properties)
    fixed = 'transaction_id, customer_id, event_type, ts AS "timestamp"'
    rows_sql = f"SELECT {fixed} {columns} FROM {rows} s"  # noqa: S608
    if not any_keys:
        return rows_sql, None
    numbered = f"(SELECT row_number() OVER () - 1 AS rn, * FROM {rows} s)"  # noqa: S608
    parts = []
    if plan.has_json:
        value = json_entry_value("kind", "value", "text", "marked")
        parts.append(
            f"""
            SELECT row, name, entry, {value} AS value
            FROM (
                SELECT s.rn AS row, s.props_marked AS marked, e.key AS name, e.id AS entry,
                       e.type AS kind, CAST(e.value AS VARCHAR) AS value,
                       CASE WHEN e.type = 'VARCHAR' THEN json_extract_string(e.value, '$') END
                           AS text
                FROM {numbered} s, json_each(s.props_json) e
                WHERE s.props_json IS NOT NULL
            )
            """  # noqa: S608 - fixed SQL
        )
    if plan.has_map:
        parts.append(
            f"""
            SELECT rn AS row, e.key AS name, entry, e.value AS value
            FROM (SELECT rn, unnest(map_entries(props_map)) AS e,
                         generate_subscripts(map_entries(props_map), 1) AS entry
                  FROM {numbered} s WHERE props_map IS NOT NULL)
            """  # noqa: S608 - fixed SQL
        )
    long_sql = f"""
        SELECT v.row, k.key, v.value
        FROM ({" UNION ALL ".join(parts)}) v
        JOIN sparse_keys k ON k.name = v.name
        ORDER BY k.key, v.row, v.entry
    """  # noqa: S608 - fixed SQL
    return rows_sql, long_sql


def _pivot(table: pa.Table, long: pa.Table, keys: list[str], columns: set[str]) -> pa.Table:
    """Add the values of `long` (row, key, value), sorted by key then row, to `table`: each
    key that warehouse.rare.split_keys makes a column (and every key of `columns`: the
    properties `table` already has a column of, and the metered properties) as a column, the
    rare keys in the MAP columns of their buckets.  A key's column has its values at their rows
    and NULL elsewhere; a property column of the same name keeps its values and takes the
    key's where it has none.

    All column keys at once: every value is scattered to (its key's rank) x rows + its row of
    one array, and each key's column is a zero-copy slice of it (measured, 100k events with
    2,000 sparse keys over 31 dates: 1.1 s, against 4.0 s with a hash lookup of every row per
    key, which cost rows x keys, and 2.9 s with one scatter call per key)."""
    long = _first_values(long.combine_chunks())
    if not len(long):
        return table
    n = len(table)
    tallied = pc.value_counts(long.column("key"))
    counts = dict(
        zip(
            (keys[i] for i in tallied.field("values").to_pylist()),
            tallied.field("counts").to_pylist(),
            strict=True,
        )
    )
    _, rare = split_keys(counts, n)
    rare -= columns
    if rare:
        is_rare = pc.is_in(
            long.column("key"), pa.array([i for i, k in enumerate(keys) if k in rare], pa.int64())
        )
        entries = long.filter(is_rare)
        long = long.filter(pc.invert(is_rare))
        names = pa.array(keys, pa.string()).take(entries.column("key"))
        for name, column in rare_maps(n, entries.column("row"), names, entries.column("value")):
            table = table.append_column(name, column)
    if not len(long):
        return table
    key = long.column("key")
    present = pc.unique(key).to_pylist()  # in order: `long` is sorted by key
    rank = pc.subtract(pc.rank(key, tiebreaker="dense"), 1)
    slots = pc.add(pc.multiply(pc.cast(rank, pa.int64()), n), long.column("row"))
    spread = pc.scatter(long.column("value"), slots, max_index=len(present) * n - 1)
    names = list(table.column_names)
    arrays = list(table.columns)
    where = {name: i for i, name in enumerate(names)}
    for i, key_index in enumerate(present):
        column = spread.slice(i * n, n)
        name = property_column(keys[key_index])
        if name in where:
            arrays[where[name]] = pc.coalesce(arrays[where[name]], column)
        else:
            where[name] = len(names)
            names.append(name)
            arrays.append(column)
    return pa.table(arrays, names=names)


def _first_values(long: pa.Table) -> pa.Table:
    """The values of `long` that hold a property: for a key an event's JSON object or MAP holds
    twice, only the first value counts, as on the other write path (json_extract_string and a
    map lookup take the first; a first value that is null makes the property absent), and a
    rare-key map never holds a key twice (DuckDB cannot read such a map)."""
    if len(long) > 1:
        key, row = long.column("key").combine_chunks(), long.column("row").combine_chunks()
        last = len(long) - 1
        repeated = pc.and_(
            pc.equal(key.slice(1), key.slice(0, last)), pc.equal(row.slice(1), row.slice(0, last))
        )
        if pc.any(repeated).as_py():
            long = long.filter(pa.concat_arrays([pa.array([True]), pc.invert(repeated)]))
    if long.column("value").null_count:
        long = long.filter(pc.is_valid(long.column("value")))
    return long
