"""Rule: the text is exactly one statement, and that statement is a query.

    parse_statement(source) -> the sqlglot tree of the one query, or None

sqlglot's parse errors carry the line and column of the offending token; a second statement, or
a statement that is not a query (CREATE, INSERT, PRAGMA, SET, ATTACH, COPY, INSTALL, LOAD, ...),
is reported by name at its first keyword.  Every problem goes to `source.problems`.
"""

from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from metric_compiler.sql_metric.source import SqlSource

ONE_QUERY = "a SQL metric is one SELECT over events"


def _statement_tokens(tokens: list[Token]) -> list[list[Token]]:
    """Tokens of each statement, split at semicolons the way sqlglot splits them."""
    chunks: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type is TokenType.SEMICOLON:
            chunks.append([])
        else:
            chunks[-1].append(token)
    if len(chunks) > 1 and not chunks[-1]:
        chunks.pop()
    return chunks


def _parse(source: SqlSource) -> list[exp.Expression | None] | None:
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "falling back to parsing as a Command" is reported below
    try:
        return sqlglot.parse(source.text, read="duckdb")
    except ParseError as error:
        for item in error.errors:
            line, col = item.get("line") or 1, item.get("col") or 1
            highlight = item.get("highlight") or ""
            line_start = sum(len(t) + 1 for t in source.text.split("\n")[: line - 1])
            start = max(line_start, line_start + col - len(highlight))
            end = start + max(1, len(highlight))
            source.problems.append(source.at(start, end, f"syntax error: {item['description']}"))
        return None
    except TokenError:
        return None  # an unterminated string or identifier; located by the DuckDB syntax rule
    finally:
        logger.setLevel(level)


def parse_statement(source: SqlSource) -> exp.Query | None:
    if not source.text.strip():
        source.problems.append(source.at(0, 1, f"the SQL is empty; {ONE_QUERY}"))
        return None
    statements = _parse(source)
    if statements is None:
        return None
    chunks = _statement_tokens(source.tokens)
    located = [
        (node, chunk) for node, chunk in zip(statements, chunks, strict=False) if node is not None
    ]
    if not located:
        source.problems.append(source.at(0, 1, f"the SQL has no statement; {ONE_QUERY}"))
        return None
    first, *others = located
    for number, (node, chunk) in enumerate(others, start=2):
        name = _name(node, chunk)
        start, end = (chunk[0].start, chunk[0].end + 1) if chunk else (0, 1)
        source.problems.append(
            source.at(
                start,
                end,
                f"a second statement ({name}, statement {number}) is not allowed; {ONE_QUERY}",
            )
        )
    node, chunk = first
    if not isinstance(node, exp.Query):
        start, end = (chunk[0].start, chunk[0].end + 1) if chunk else (0, 1)
        source.problems.append(
            source.at(start, end, f"{_name(node, chunk)} statements are not allowed; {ONE_QUERY}")
        )
        return None
    return node


def _name(node: exp.Expression, chunk: list[Token]) -> str:
    if isinstance(node, exp.Query):
        return "SELECT"
    return chunk[0].text.upper() if chunk else type(node).__name__.upper()
