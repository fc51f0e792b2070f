"""Jinja templates of the query skeletons, and their loader.

Templates give a query its readable shape; they never see a user value as text.  `render`
accepts only sqlglot expressions (rendered here with `.sql(dialect=...)`), `SqlComment`s
(rendered by sqlglot's comment sanitiser), booleans, None, and lists/dicts of those; a plain
string or number is refused.  The rendered text is parsed back with sqlglot by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

TEMPLATE_DIR = Path(__file__).parent


@dataclass(frozen=True)
class SqlComment:
    """A block comment; its text is sanitised by sqlglot (`*/` cannot end it early)."""

    text: str


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_comment(comment: SqlComment, dialect: str = "duckdb") -> str:
    """`/* text */`, sanitised by sqlglot (the text cannot end the comment early)."""
    generator = Dialect.get_or_raise(dialect).generator()
    return generator.maybe_comment("", comments=[comment.text]).strip()


def _prepare(value: Any, dialect: str, path: str) -> Any:
    if isinstance(value, exp.Expression):
        return value.sql(dialect=dialect)
    if isinstance(value, SqlComment):
        return render_comment(value, dialect)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        return {k: _prepare(v, dialect, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_prepare(v, dialect, f"{path}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"template parameter {path} is a {type(value).__name__}; templates take only "
        "sqlglot expressions, SqlComment, bool and None"
    )


def render(template: str, /, dialect: str = "duckdb", **params: Any) -> str:
    """Render `sql_templates/<template>` with `params` pre-rendered by sqlglot."""
    prepared = {name: _prepare(value, dialect, name) for name, value in params.items()}
    return _environment().get_template(template).render(**prepared)
