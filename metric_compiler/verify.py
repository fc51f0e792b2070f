"""Checks of a compiled query tree, after the rendered template text was parsed back.

The template renders text, so the text is parsed again and the tree is checked against what the
compiler meant to produce:

- one statement, a query (SELECT or UNION of SELECTs), no DDL/DML/PRAGMA/SET/COPY/ATTACH/...;
- it reads only the relations it was given (the source, the windows) and its own CTEs;
- every expression the compiler handed to the template is found intact in the tree (so the
  template's text did not change what an expression means, e.g. by operator precedence);
- every string literal and every comment in it was built by the compiler (so no value reached
  the SQL as text);
- its output columns are exactly the expected ones, in order;
- printing the tree and parsing the text again gives the same tree.

A failure is a bug in meterql, never a user error: `CompiledQueryError` is an AssertionError.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

FORBIDDEN = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Pragma,
    exp.Set,
    exp.Use,
    exp.Copy,
    exp.Attach,
    exp.Detach,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
)


class CompiledQueryError(AssertionError):
    """The compiled SQL is not what the compiler meant: a bug, please report it."""


def literals_of(expressions: Iterable[exp.Expression]) -> set[tuple[bool, str]]:
    return {(lit.is_string, lit.this) for e in expressions for lit in e.find_all(exp.Literal)}


def comments_of(expressions: Iterable[exp.Expression]) -> set[str]:
    return {c.strip() for e in expressions for node in e.walk() for c in (node.comments or [])}


def table_key(table: exp.Table) -> str:
    bare = table.copy()
    bare.set("alias", None)
    return bare.sql(dialect="duckdb")


def parse_query(text: str, dialect: str = "duckdb") -> exp.Query:
    statements = sqlglot.parse(text, read=dialect)
    if len(statements) != 1 or statements[0] is None:
        raise CompiledQueryError(f"compiled SQL holds {len(statements)} statements, not one")
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.Union):
        raise CompiledQueryError(f"compiled SQL is a {type(tree).__name__}, not a query")
    return tree


def verify(
    tree: exp.Query,
    *,
    inputs: Sequence[exp.Expression],
    fragments: Sequence[exp.Expression],
    cte_names: Iterable[str],
    literals: set[tuple[bool, str]],
    comments: set[str],
    columns: Sequence[str],
    dialect: str = "duckdb",
) -> None:
    """Raise CompiledQueryError unless `tree` is the query the compiler meant (module doc).

    `inputs` are the relations the query may read (their tables and literals are allowed);
    `literals` and `comments` are those the compiler built.
    """
    bad = next((n for n in tree.walk() if isinstance(n, FORBIDDEN)), None)
    if bad is not None:
        raise CompiledQueryError(f"compiled SQL contains a {type(bad).__name__} statement")

    nodes = set(tree.walk())
    for fragment in fragments:
        # the fragment read on its own, in the dialect (types normalise, e.g. TIMESTAMPNTZ)
        alone = sqlglot.parse_one(fragment.sql(dialect=dialect), read=dialect)
        if alone not in nodes:
            raise CompiledQueryError(
                f"compiled SQL does not hold the expression {fragment.sql(dialect=dialect)} "
                "intact (the template changed its meaning)"
            )

    allowed_tables = {table_key(t) for e in inputs for t in e.find_all(exp.Table)}
    ctes = set(cte_names)
    for table in tree.find_all(exp.Table):
        if table.name in ctes and not table.db and isinstance(table.this, exp.Identifier):
            continue
        if table_key(table) not in allowed_tables:
            raise CompiledQueryError(f"compiled SQL reads an unexpected relation {table.sql()}")

    allowed_literals = literals | literals_of(inputs)
    for lit in tree.find_all(exp.Literal):
        if (lit.is_string, lit.this) not in allowed_literals:
            raise CompiledQueryError(f"compiled SQL holds an unexpected literal {lit.sql()}")

    sanitise = Dialect.get_or_raise(dialect).generator().sanitize_comment
    allowed_comments = {sanitise(c).strip() for c in comments} | comments_of(inputs)
    unexpected = comments_of([tree]) - allowed_comments
    if unexpected:
        raise CompiledQueryError(f"compiled SQL holds unexpected comments {sorted(unexpected)}")

    if list(tree.named_selects) != list(columns):
        raise CompiledQueryError(
            f"compiled SQL returns columns {tree.named_selects}, expected {list(columns)}"
        )

    again = parse_query(tree.sql(dialect=dialect), dialect)
    if again != tree:
        raise CompiledQueryError("compiled SQL does not print and parse back to the same tree")
