"""SQL metrics (SEMANTICS.md section 3): check the author's query, then scope it.

    check_sql(text) -> CheckedSql                # SqlMetricError listing every problem
    sql_problems(text) -> [SqlProblem]           # [] when the query is fine
    sql_metric_columns(text) -> (value, keys)    # e.g. ("value", ("region",))
    scoped_query(metric, source, windows) -> ScopedQuery

`scoped_query` is what usage and invoices call for a SQL metric:

    checked = check_sql(metric.sql)
    source = EventStore(home, con).relation(checked.properties, start, end)
    scoped = scoped_query(checked, source, windows)   # windows: (customer_id, window_id,
                                                       #  window_start, window_end)
    scoped.tree   # sqlglot SELECT: customer_id, window_id, window_start, window_end,
                  #   <group keys...>, value DECIMAL(38, 12)
    scoped.sql()  # DuckDB text

User SQL must run in the sandbox connection of engine.sql_run (which also binds the query to
check the value's type); see scope.py for the scoping rules and the value conversion.

Modules, one rule each: parse (one query), duckdb_syntax (DuckDB's parser agrees), allow_list
(node types, functions, types), resolve (tables and columns, "did you mean"), outputs (value
and group keys), check (runs them all), scope (the rewrite); source and problems locate and
print problems with line, column and a caret.
"""

from metric_compiler.sql_metric.check import (
    CheckedSql,
    check_sql,
    sql_metric_columns,
    sql_problems,
)
from metric_compiler.sql_metric.problems import SqlMetricError, SqlProblem, format_problems
from metric_compiler.sql_metric.scope import ScopedQuery, scoped_query

__all__ = [
    "CheckedSql",
    "ScopedQuery",
    "SqlMetricError",
    "SqlProblem",
    "check_sql",
    "format_problems",
    "scoped_query",
    "sql_metric_columns",
    "sql_problems",
]
