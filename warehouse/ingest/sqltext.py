"""Rendering user values into ingest SQL: only through sqlglot identifiers and literals.

The ingest statements are fixed SQL skeletons in Python; every name or value that comes from the
input (file paths, column and property names, the batch id) is placed into them by these
helpers, which render a sqlglot identifier or literal (quotes doubled, nothing interpreted).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from sqlglot import exp

from warehouse.duckdb_paths import exact_path

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


def path_lit(path: str | os.PathLike[str]) -> str:
    """The string literal of a file path for a DuckDB reader: that file, never a pattern."""
    return lit(exact_path(path))


def path_list(paths: Iterable[str | os.PathLike[str]]) -> str:
    """The list of string literals of file paths for a DuckDB reader (see `path_lit`)."""
    return lit_list(exact_path(p) for p in paths)


def int_lit(value: int) -> str:
    return exp.Literal.number(int(value)).sql(DIALECT)


def json_pointer(key: str) -> str:
    """The RFC 6901 pointer of a top-level key (`~` -> `~0`, `/` -> `~1`); any other character,
    quotes and dots included, stands for itself."""
    return "/" + key.replace("~", "~0").replace("/", "~1")
