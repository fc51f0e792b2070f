"""Running SQL metrics: the author's query, scoped, in a locked-down DuckDB connection.

    run_sql_metric(home, con, text, windows) -> Table  one row per (customer, window, group)
    sql_run(home, con, catalog, text, start, end)      `meterql sql run`: shaped like usage

The checks are engine.sql_check's (`meterql sql check` needs neither pyarrow nor a home); the
connection is engine.sandbox's (why the events stream in as Arrow: see there).
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

from engine.periods import iso, parse_timestamp
from engine.sandbox import sandbox
from engine.sql_check import empty_windows, extent, value_problems
from engine.usage import exact
from metric_compiler.sql_metric import (
    CheckedSql,
    SqlMetricError,
    check_sql,
    scoped_query,
)
from metric_compiler.sql_metric.problems import SqlProblem, whole_query_problem
from metric_compiler.sql_metric.source import SqlSource
from metric_compiler.windows import Window
from warehouse.catalog import Catalog
from warehouse.errors import UserError, first_line
from warehouse.events import EventStore, events_relation
from warehouse.home import Home
from warehouse.layout import is_property_column, property_name

STREAM = "__mq_stream"
WINDOW_ROWS = "__mq_window_rows"
BATCH_ROWS = 1 << 17

WINDOWS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("window_id", pa.int64()),
        ("window_start", pa.timestamp("us")),
        ("window_end", pa.timestamp("us")),
    ]
)


@dataclass(frozen=True)
class WindowRow:
    customer_id: str
    window_id: int
    window_start: datetime
    window_end: datetime


def windows_table(rows: Sequence[WindowRow]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "customer_id": r.customer_id,
                "window_id": r.window_id,
                "window_start": r.window_start,
                "window_end": r.window_end,
            }
            for r in rows
        ],
        schema=WINDOWS_SCHEMA,
    )


def single_window(customer_ids: Sequence[str], start: datetime, end: datetime) -> pa.Table:
    """One window [start, end) per customer (naive means UTC)."""
    window = Window.none(start, end)
    assert isinstance(window.start, datetime) and isinstance(window.end, datetime)
    return windows_table([WindowRow(c, 0, window.start, window.end) for c in customer_ids])


def run_sql_metric(
    home: Home,
    con: duckdb.DuckDBPyConnection,
    text: str | CheckedSql,
    windows: pa.Table,
) -> pa.Table:
    """The metric for every (customer_id, window_id) of `windows` (columns customer_id,
    window_id of any type, window_start, window_end as naive UTC timestamps): a table with those
    columns, the group keys and value (DECIMAL(38, 12)), ordered by customer, window and group.
    Events are read from the home's committed files for the windows' overall span."""
    checked = text if isinstance(text, CheckedSql) else check_sql(text)
    windows = windows.select(list(WINDOWS_SCHEMA.names))
    with sandbox(home, con) as box:
        # Bind first, over no events: type errors are reported before any event is read.
        empty = events_relation([], checked.properties, None, None)
        bind = value_problems(checked, scoped_query(checked, empty, empty_windows()), box)
        if bind:
            raise SqlMetricError(checked.text, bind)
        if windows.num_rows == 0:
            return _ordered(box, checked, _empty_result(checked))
        span_start = pc.min(windows.column("window_start")).as_py()
        span_end = pc.max(windows.column("window_end")).as_py()
        relation = EventStore(home, con).relation(checked.properties, span_start, span_end)
        reader = con.sql(relation.sql("duckdb")).to_arrow_reader(BATCH_ROWS)
        box.register(STREAM, reader)
        box.register(WINDOW_ROWS, windows)
        scoped = scoped_query(checked, exp.table_(STREAM), exp.table_(WINDOW_ROWS))
        try:
            return _ordered(box, checked, scoped.tree)
        except duckdb.Error as error:
            message = first_line(error)
            problem = _conversion_problem(con, checked, relation, message) or whole_query_problem(
                f"DuckDB could not evaluate the query: {message}"
            )
            raise SqlMetricError(checked.text, [problem]) from None


# DuckDB's message for a CAST of a property value that is not of the type cast to
_NOT_CONVERTED = re.compile(
    r"Could not convert string '(?P<value>.*)' to \w+ when casting from source column "
    r"(?P<column>\w+)$"
)
SHOWN_EVENTS = 3


def _conversion_problem(
    con: duckdb.DuckDBPyConnection, checked: CheckedSql, relation: exp.Select, message: str
) -> SqlProblem | None:
    """A CAST of a property value that does not convert (a client sent text where the author
    expected a number): the CAST in the author's text, the value, and the events that carry it
    (a few), so the operator can act; None for any other error."""
    match = _NOT_CONVERTED.search(message)
    if match is None or not is_property_column(match["column"]):
        return None
    name = property_name(match["column"])
    casts = [
        c
        for c in checked.tree.find_all(exp.Cast)
        if not isinstance(c, exp.TryCast)
        and any(col.table == "properties" and col.name == name for col in c.find_all(exp.Column))
    ]
    query = (
        exp.select("transaction_id", "customer_id", exp.column("timestamp", quoted=True))
        .from_(relation.subquery("e"))
        .where(exp.column(match["column"], quoted=True).eq(exp.Placeholder()))
        .order_by(exp.column("timestamp", quoted=True), "transaction_id")
        .limit(SHOWN_EVENTS)
    )
    events = con.execute(query.sql("duckdb"), [match["value"]]).fetchall()
    shown = ", ".join(f"{tid} (customer {customer}, {iso(ts)})" for tid, customer, ts in events)
    text = (
        f"{message}: property {name!r} is {match['value']!r} in event(s) "
        f"{shown or '(none found)'}; "
        "property values are text sent by clients: TRY_CAST leaves out a value that does not "
        "convert (a billable metric is immutable: archive it and create one that uses TRY_CAST)"
    )
    source = SqlSource(checked.text)
    span = extent(source, casts[0]) if casts else None
    return source.at(*span, text) if span is not None else whole_query_problem(text)


def _empty_result(checked: CheckedSql) -> exp.Select:
    empty = events_relation([], checked.properties, None, None)
    return scoped_query(checked, empty, empty_windows()).tree


def _ordered(sandbox: duckdb.DuckDBPyConnection, checked: CheckedSql, tree: exp.Select) -> pa.Table:
    keys = ["customer_id", "window_start", "window_id", *checked.group_keys]
    query = (
        exp.select(exp.Star())
        .from_(exp.Subquery(this=tree, alias=exp.TableAlias(this=exp.to_identifier("r"))))
        .order_by(*(exp.Ordered(this=exp.column(k, quoted=True), nulls_first=True) for k in keys))
    )
    text = query.sql("duckdb", comments=False)
    again = sqlglot.parse_one(text, read="duckdb").sql("duckdb", comments=False)
    if again != text:  # pragma: no cover
        raise AssertionError("the scoped query does not round-trip through sqlglot")
    return sandbox.sql(text).to_arrow_table()


# -- `meterql sql run`: authoring a SQL metric before it exists ----------------------------------


def sql_run(
    home: Home,
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    text: str,
    start: datetime | str,
    end: datetime | str,
    *,
    customer: str | None = None,
) -> pa.Table:
    """The query for every catalog customer (or one: id, name or ingest alias) over the window
    [start, end), shaped like `usage`: customer_id, window_start, window_end, group (struct of
    the group keys), value.  An aggregate without GROUP BY has a row for every customer."""
    begin, finish = parse_timestamp(start, "--start"), parse_timestamp(end, "--end")
    checked = check_sql(text)
    if customer is not None:
        ids = [str(catalog.customer(customer).id)]
    else:
        ids = [row[0] for row in con.execute("SELECT id FROM customers ORDER BY id").fetchall()]
    flat = run_sql_metric(home, con, checked, single_window(ids, begin, finish))
    keys = list(checked.group_keys)
    if keys:
        arrays = [flat.column(k).combine_chunks() for k in keys]
        group = pa.StructArray.from_arrays(arrays, names=keys)
    else:
        group = pa.repeat(pa.scalar({}, type=pa.struct([])), flat.num_rows)
    return pa.table(
        {
            "customer_id": flat.column("customer_id"),
            "window_start": flat.column("window_start"),
            "window_end": flat.column("window_end"),
            "group": group,
            "value": flat.column("value"),
        }
    )


def sql_rows(table: pa.Table) -> list[dict[str, object]]:
    """JSON rows of `meterql sql run` (as `usage --format json`, without metric_id); a value is
    null where the query gives NULL (e.g. SUM over no events)."""
    rows = table.to_pylist()
    for row in rows:
        if row["value"] is not None:
            row["value"] = exact(row["value"])
    return rows


SQL_RUN_FORMATS = ("json", "table", "csv")


def print_sql_rows(table: pa.Table, fmt: str) -> None:
    from engine.output import cell_text, print_json, print_table

    if fmt not in SQL_RUN_FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(SQL_RUN_FORMATS)}")
    rows = sql_rows(table)
    if fmt == "json":
        print_json(rows)
        return
    keys = [field.name for field in table.schema.field("group").type]
    columns = ["customer_id", "window_start", "window_end", *keys, "value"]
    flat = [
        [r["customer_id"], r["window_start"], r["window_end"], *(r["group"][k] for k in keys)]
        + [r["value"]]
        for r in rows
    ]
    if fmt == "table":
        print_table(None, columns, flat)
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[cell_text(v) for v in r] for r in flat])
