"""Checking a SQL metric: every rule, every problem at once.

    sql_problems(text) -> [SqlProblem]        every problem, in text order ([] when fine)
    check_sql(text) -> CheckedSql              the checked query; SqlMetricError otherwise
    sql_metric_columns(text) -> (value, keys)  the value column's name and the group keys

The rules, in order: parse (one statement, a query), DuckDB's parser agrees, the allow-list of
nodes, functions and types, table and column resolution, and the returned columns.  A problem in
one rule does not stop the others, so the author sees everything that is wrong in one go.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from metric_compiler.sql_metric.allow_list import check_allow_list
from metric_compiler.sql_metric.duckdb_syntax import check_duckdb_syntax
from metric_compiler.sql_metric.outputs import Outputs, check_outputs
from metric_compiler.sql_metric.parse import parse_statement
from metric_compiler.sql_metric.problems import SqlMetricError, SqlProblem
from metric_compiler.sql_metric.resolve import resolve
from metric_compiler.sql_metric.source import SqlSource


@dataclass(frozen=True)
class CheckedSql:
    """A SQL metric that passed every rule."""

    text: str
    tree: exp.Select
    value: str  # the value column's name as written ("" for an unnamed first column)
    group_keys: tuple[str, ...]  # the other returned columns, in order
    properties: tuple[str, ...]  # property names the query reads (the source must have them)
    outputs: Outputs


def _run_rules(text: str) -> tuple[SqlSource, CheckedSql | None]:
    source = SqlSource(text)
    tree = parse_statement(source)
    if not any(p.message.startswith("syntax error") for p in source.problems):
        check_duckdb_syntax(source)
    if tree is None:
        if not source.problems:
            source.problems.append(source.at(0, 1, "the SQL could not be read"))
        return source, None
    check_allow_list(source, tree)
    bound = resolve(source, tree)
    outputs = check_outputs(source, tree)
    if source.problems or outputs is None or not isinstance(tree, exp.Select):
        return source, None
    checked = CheckedSql(
        text=text,
        tree=tree,
        value=outputs.value_name,
        group_keys=outputs.group_keys,
        properties=tuple(bound.properties),
        outputs=outputs,
    )
    return source, checked


def sql_problems(text: str) -> list[SqlProblem]:
    source, _ = _run_rules(text)
    return sorted(set(source.problems))


def check_sql(text: str, subject: str = "SQL metric") -> CheckedSql:
    source, checked = _run_rules(text)
    if checked is None:
        raise SqlMetricError(text, sorted(set(source.problems)), subject)
    return checked


def sql_metric_columns(text: str) -> tuple[str, tuple[str, ...]]:
    """(value column name as written, group keys) of a SQL metric; SqlMetricError if invalid."""
    checked = check_sql(text)
    return checked.value, checked.group_keys
