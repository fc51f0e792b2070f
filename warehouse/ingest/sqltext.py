"""Rendering user values into ingest SQL: only through sqlglot identifiers and literals.

The ingest statements are fixed SQL skeletons in Python; every name or value that comes from the
input (file paths, column and property names, the batch id) is placed into them by these
helpers, which render a sqlglot identifier or literal (quotes doubled, nothing interpreted).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlglot import exp

DIALECT = "duckdb"


def ident(name: str) -> str:
    """A quoted identifier: `x"y` -> `"x""y"`."""
    return exp.to_identifier(name, quoted=True).sql(DIALECT)


def lit(value: str) -> str:
    """A string literal: `it's` -> `'it''s'`."""
    return exp.Literal.string(value).sql(DIALECT)


def lit_list(values: Iterable[str]) -> str:
    """A list of string literals: `['a', 'b']` (an empty list is typed VARCHAR[])."""
    items = [exp.Literal.string(v) for v in values]
    if not items:
        return "[]::VARCHAR[]"
    return exp.Array(expressions=items).sql(DIALECT)


def int_lit(value: int) -> str:
    return exp.Literal.number(int(value)).sql(DIALECT)


def json_pointer(key: str) -> str:
    """The RFC 6901 pointer of a top-level key (`~` -> `~0`, `/` -> `~1`); any other character,
    quotes and dots included, stands for itself."""
    return "/" + key.replace("~", "~0").replace("/", "~1")
