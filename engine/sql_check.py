"""`meterql sql check`: every problem of a SQL metric's query, before anything runs.

    check_sql_metric(text) -> SqlCheck     static checks, then DuckDB binds the scoped query over
                                           no events in the sandbox (engine.sandbox)

Imports neither pyarrow nor a home: the command stays fast (README "Performance", start-up).
"""

from __future__ import annotations

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


def value_problems(
    checked: CheckedSql, scoped: ScopedQuery, sandbox: duckdb.DuckDBPyConnection
) -> list[SqlProblem]:
    """Bind the scoped query (nothing runs) and check the value column is a number."""
    try:
        relation = sandbox.sql(checked_text(scoped, scoped.probe))
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
        bind = value_problems(checked, scoped_query(checked, source, empty_windows()), box)
    if bind:
        return SqlCheck(ok=False, problems=[p.format(text) for p in bind])
    return SqlCheck(ok=True, value=checked.value, group_keys=list(checked.group_keys))
