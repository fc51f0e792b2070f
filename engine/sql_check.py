"""`meterql sql check`: every problem of a SQL metric's query, before anything runs.

    check_sql_metric(text) -> SqlCheck     static checks, then DuckDB binds the scoped query over
                                           no events in the sandbox (engine.sandbox)

Imports neither pyarrow nor a home: the command stays fast (README "Performance", start-up).
"""

from __future__ import annotations

from dataclasses import replace

import duckdb
import sqlglot
from pydantic import BaseModel
from sqlglot import exp

from engine.sandbox import sandbox
from metric_compiler.sql_metric import (
    CheckedSql,
    ScopedQuery,
    SqlProblem,
    check_sql,
    scoped_query,
    sql_problems,
)
from metric_compiler.sql_metric.problems import whole_query_problem
from metric_compiler.sql_metric.source import SqlSource
from warehouse.errors import first_line
from warehouse.events import events_relation

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


def empty_windows() -> exp.Select:
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


def checked_text(scoped: ScopedQuery, tree: exp.Expression) -> str:
    """The SQL of a generated tree, after checking it parses back to the same SQL."""
    text = tree.sql("duckdb", comments=False)
    again = sqlglot.parse_one(text, read="duckdb").sql("duckdb", comments=False)
    if again != text:  # pragma: no cover - a sqlglot round-trip bug; never run such SQL
        raise AssertionError(f"the scoped query of {scoped.value!r} does not round-trip")
    return text


_CAST_HINT = "property values are strings: cast them, e.g. CAST(properties.x AS DECIMAL(38, 12))"


def _strings_hint(message: str) -> str:
    """A hint for DuckDB's type errors about strings (the usual cause: an uncast property)."""
    return f" ({_CAST_HINT})" if "VARCHAR" in message else ""


# The expressions a bind error is looked for in (not columns, literals, names or query blocks).
_EXPRESSIONS = (exp.Func, exp.Binary, exp.Unary, exp.Cast, exp.Case, exp.In, exp.Between)


def extent(source: SqlSource, node: exp.Expression) -> tuple[int, int] | None:
    """[start, end) of `node`'s text, including the names of the functions it calls (sqlglot
    locates some calls only by their arguments)."""
    span = source.span(node)
    if span is None:
        return None
    start, end = span
    for call in filter(None, map(source.call, node.find_all(exp.Func))):
        start, end = min(start, call[0]), max(end, call[1])
    return start, end


def _bind_error_place(
    checked: CheckedSql, sandbox: duckdb.DuckDBPyConnection, message: str
) -> SqlProblem | None:
    """Where in the author's text DuckDB's bind error `message` comes from (DuckDB reports it
    against the scoped query, without a place in the author's text): the innermost expression
    of the query that DuckDB refuses with the same message when bound alone over an empty
    `events` (its properties a STRUCT of strings, so `properties.x` binds as written).  None
    when no single expression reproduces it (e.g. it involves a CTE's or an alias's column)."""
    base = events_relation([], [], None, None).subquery("e")
    columns: list[exp.Expression] = [exp.Star()]
    if checked.properties:
        fields = [
            exp.PropertyEQ(this=exp.to_identifier(name), expression=exp.cast(exp.null(), "VARCHAR"))
            for name in checked.properties
        ]
        columns.append(exp.alias_(exp.Struct(expressions=fields), "properties"))
    events = exp.select(*columns).from_(base)
    source = SqlSource(checked.text)
    # reversed pre-order: every node comes after the nodes under it
    for node in reversed(list(checked.tree.dfs())):
        if not isinstance(node, _EXPRESSIONS) or node.find(exp.Select) is not None:
            continue
        span = extent(source, node)
        if span is None:
            continue
        probe = exp.select(node.copy()).from_(events.subquery("events"))
        try:
            sandbox.sql(probe.sql("duckdb")).types  # noqa: B018 - binds it
        except duckdb.Error as error:
            if first_line(error) == message:
                return source.at(*span, f"DuckDB cannot evaluate this: {message}")
    return None


def value_problems(
    checked: CheckedSql, scoped: ScopedQuery, sandbox: duckdb.DuckDBPyConnection
) -> list[SqlProblem]:
    """Bind the scoped query (nothing runs) and check the value column is a number."""
    try:
        relation = sandbox.sql(checked_text(scoped, scoped.probe))
    except duckdb.Error as error:
        message = first_line(error)
        located = _bind_error_place(checked, sandbox, message)
        if located is not None:
            return [replace(located, message=located.message + _strings_hint(message))]
        return [
            whole_query_problem(
                f"DuckDB cannot evaluate the query: {message}{_strings_hint(message)}"
            )
        ]
    value_type = str(relation.types[-1]).upper()
    if value_type in NUMERIC_TYPES or value_type.startswith("DECIMAL"):
        return []
    node = checked.tree.expressions[checked.outputs.value_index]
    name = checked.value or "the first column"
    source = SqlSource(checked.text)
    if isinstance(node, exp.Alias) and source.span(node.this) is not None:
        node = node.this
    hint = f"; {_CAST_HINT}" if value_type in ("VARCHAR", "NULL") else ""
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
        bind = value_problems(checked, scoped_query(checked, source, empty_windows()), box)
    if bind:
        return SqlCheck(ok=False, problems=[p.format(text) for p in bind])
    return SqlCheck(ok=True, value=checked.value, group_keys=list(checked.group_keys))
