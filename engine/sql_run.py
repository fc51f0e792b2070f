"""Running SQL metrics: the author's query, scoped, in a locked-down DuckDB connection.

    check_sql_metric(text) -> SqlCheck                 static checks + DuckDB binds the query
    run_sql_metric(home, con, text, windows) -> Table  one row per (customer, window, group)
    sql_run(home, con, catalog, text, start, end)      `meterql sql run`: shaped like usage
    open_sandbox(...) / sandbox(...)                   the connection user SQL runs in

Defence in depth.  The checker (metric_compiler.sql_metric) refuses everything outside the
allow-list before anything runs, and what runs is the SQL that sqlglot generates from the checked
and scoped tree (parsed back and compared first), never the author's text.  Even so, user SQL
runs only in a sandbox connection: in-memory, `enable_external_access=false` with empty
`allowed_paths` and `allowed_directories`, extension auto-install/auto-load and community
extensions off, and `lock_configuration=true` set last, so a checker bug still cannot read or
write a file, load an extension, or change a setting (tests/test_sql_metric_sandbox.py tries each
escape on the raw connection, bypassing the checker).

What was verified in DuckDB 2.0, and why the events stream in as Arrow:
- `read_parquet` does read files under `allowed_directories` with external access off, but
  `COPY ... TO` can then also write there (new files, and overwrite with USE_TMP_FILE false);
  `allowed_paths` has the same hole for the listed files.  So the sandbox gets no event path:
  the read API's relation (warehouse.events.EventStore.relation: manifest files pruned to the
  windows' span, customer ids resolved through customer_keys) runs on the normal connection and
  its Arrow record batches stream into the sandbox, registered before the query runs (explicit
  registration works with external access off; replacement scans of Python variables do not).
  Nothing is materialised in Python; when the query reads `events` more than once the scoped
  query materialises the events CTE (a stream is read once).
- DuckDB adds its temp directory and the cwd-relative paths `./:memory:*` to the allowed lists
  at start-up (a `COPY ... TO './:memory:'` would succeed); the sandbox empties both lists before
  turning external access off, and checks them.  The temp directory stays allowed whenever one is
  set, so the sandbox spills to a private, empty directory under the home's staging area that is
  deleted afterwards (no home: no spilling).
- `lock_configuration=true` refuses every later SET/RESET/PRAGMA that changes a setting.
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from pydantic import BaseModel
from sqlglot import exp

from engine.usage import exact, parse_timestamp
from metric_compiler.sql_metric import (
    CheckedSql,
    ScopedQuery,
    SqlMetricError,
    SqlProblem,
    check_sql,
    scoped_query,
    sql_problems,
)
from metric_compiler.sql_metric.problems import whole_query_problem
from metric_compiler.sql_metric.source import SqlSource
from metric_compiler.windows import Window
from warehouse.catalog import Catalog
from warehouse.errors import UserError
from warehouse.events import EventStore, events_relation
from warehouse.home import Home

STREAM = "__mq_stream"
WINDOW_ROWS = "__mq_window_rows"
BATCH_ROWS = 1 << 17

# DuckDB types a value column may have (they convert exactly, or DOUBLE by its shortest text).
NUMERIC_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "FLOAT",
        "DOUBLE",
    }
)

WINDOWS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("window_id", pa.int64()),
        ("window_start", pa.timestamp("us")),
        ("window_end", pa.timestamp("us")),
    ]
)


class SqlCheck(BaseModel):
    """The result of `meterql sql check`."""

    ok: bool
    value: str | None = None  # the value column as written ("" for an unnamed first column)
    group_keys: list[str] = []
    problems: list[str] = []

    def report(self) -> str:
        """`N problem(s) in the SQL metric` and each problem (with its source line and caret)."""
        lines = [f"{len(self.problems)} problem(s) in the SQL metric"]
        for problem in self.problems:
            first, *rest = problem.split("\n")
            lines += [f"  - {first}", *(f"    {line}" for line in rest)]
        return "\n".join(lines)


def open_sandbox(
    scratch: Path | None = None, *, threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that can reach no file and change no setting.

    `scratch` is a private, empty directory DuckDB may spill to (None: no spilling); DuckDB
    always allows its temp directory, so it is the only path the connection can touch, and
    `sandbox()` deletes it afterwards.
    """
    config: dict[str, object] = {
        "temp_directory": str(scratch) if scratch is not None else "",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
    }
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET enable_progress_bar = false")
    # DuckDB allows the temp directory and the (cwd-relative!) ":memory:" database paths by
    # default; empty both lists before turning external access off.
    con.execute("SET allowed_paths = []")
    con.execute("SET allowed_directories = []")
    con.execute("SET enable_external_access = false")
    allowed = con.execute(
        "SELECT current_setting('allowed_directories'), current_setting('allowed_paths')"
    ).fetchone()
    expected = ([str(scratch).rstrip("/") + "/"] if scratch is not None else [], [])
    if allowed != expected:  # pragma: no cover - a DuckDB change; never run user SQL then
        con.close()
        raise AssertionError(f"the sandbox would allow file access: {allowed}")
    con.execute("SET lock_configuration = true")  # last: nothing can be changed after this
    return con


@contextmanager
def sandbox(
    home: Home | None = None, con: duckdb.DuckDBPyConnection | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A sandbox connection with the main connection's threads and memory limit, spilling to a
    fresh directory under the home's staging area (deleted afterwards); without a home, no
    spilling."""
    settings = _settings_of(con) if con is not None else {"threads": 1}
    scratch = None
    if home is not None:
        home.staging_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="sql-sandbox-", dir=home.staging_dir))
    try:
        box = open_sandbox(scratch, **settings)  # type: ignore[arg-type]
        try:
            yield box
        finally:
            box.close()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _settings_of(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    threads, memory = con.execute(
        "SELECT current_setting('threads'), current_setting('memory_limit')"
    ).fetchone()
    return {"threads": int(threads), "memory_limit": str(memory).replace(" ", "")}


def _empty_windows() -> exp.Select:
    return exp.select(
        *(
            exp.alias_(exp.cast(exp.null(), str(t)), name, quoted=True)
            for name, t in (
                ("customer_id", "VARCHAR"),
                ("window_id", "BIGINT"),
                ("window_start", "TIMESTAMP"),
                ("window_end", "TIMESTAMP"),
            )
        )
    ).where(exp.false())


def _checked_text(scoped: ScopedQuery, tree: exp.Expression) -> str:
    """The SQL of a generated tree, after checking it parses back to the same SQL."""
    text = tree.sql("duckdb", comments=False)
    again = sqlglot.parse_one(text, read="duckdb").sql("duckdb", comments=False)
    if again != text:  # pragma: no cover - a sqlglot round-trip bug; never run such SQL
        raise AssertionError(f"the scoped query of {scoped.value!r} does not round-trip")
    return text


def _value_problems(
    checked: CheckedSql, scoped: ScopedQuery, sandbox: duckdb.DuckDBPyConnection
) -> list[SqlProblem]:
    """Bind the scoped query (nothing runs) and check the value column is a number."""
    try:
        relation = sandbox.sql(_checked_text(scoped, scoped.probe))
    except duckdb.Error as error:
        message = str(error).split("\n")[0]
        return [whole_query_problem(f"DuckDB cannot evaluate the query: {message}")]
    value_type = str(relation.types[-1]).upper()
    if value_type in NUMERIC_TYPES or value_type.startswith("DECIMAL"):
        return []
    node = checked.tree.expressions[checked.outputs.value_index]
    name = checked.value or "the first column"
    source = SqlSource(checked.text)
    if isinstance(node, exp.Alias) and source.span(node.this) is not None:
        node = node.this
    hint = (
        "; property values are strings: cast them, e.g. CAST(properties.x AS DECIMAL(38, 12))"
        if value_type in ("VARCHAR", "NULL")
        else ""
    )
    return [
        source.problem(node, f"the value column {name} is {value_type}; it must be a number{hint}")
    ]


def check_sql_metric(text: str) -> SqlCheck:
    """Every problem of a SQL metric: the checker's, then DuckDB's when it binds the query over
    an empty events relation (wrong types, e.g. sum of a string, or a value that is not a
    number).  Needs no home."""
    problems = sql_problems(text)
    if problems:
        return SqlCheck(ok=False, problems=[p.format(text) for p in problems])
    checked = check_sql(text)
    with sandbox() as box:
        source = events_relation([], checked.properties, None, None)
        bind = _value_problems(checked, scoped_query(checked, source, _empty_windows()), box)
    if bind:
        return SqlCheck(ok=False, problems=[p.format(text) for p in bind])
    return SqlCheck(ok=True, value=checked.value, group_keys=list(checked.group_keys))


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
        bind = _value_problems(checked, scoped_query(checked, empty, _empty_windows()), box)
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
            message = str(error).split("\n")[0]
            problem = whole_query_problem(f"DuckDB could not evaluate the query: {message}")
            raise SqlMetricError(checked.text, [problem]) from None


def _empty_result(checked: CheckedSql) -> exp.Select:
    empty = events_relation([], checked.properties, None, None)
    return scoped_query(checked, empty, _empty_windows()).tree


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
    from engine.output import print_json, print_table, to_jsonable

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
        writer.writerows([["" if v is None else to_jsonable(v) for v in r] for r in flat])
