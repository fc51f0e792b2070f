"""Error classes.  `UserError` and its subclasses are mistakes in input the user can fix: the CLI
prints their message on one line and exits 1.  Anything else is a bug: a traceback and a request
to report it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb


class UserError(Exception):
    """A problem with the user's input: one clear message, exit code 1."""


class HomeError(UserError):
    """The meterql home is missing, not initialised, or locked."""


class NotFoundError(UserError):
    """A reference to a catalog object that does not exist."""


class DocumentError(UserError):
    """One or more problems in catalog documents, all reported together."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        head = f"{len(problems)} problem(s) in the catalog documents; nothing was applied"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def suggest_sql(con: duckdb.DuckDBPyConnection, table: str, column: str, word: str) -> str:
    """`suggest` over a catalog table's column (`table` and `column`: fixed names of the code),
    for tables too large to list in Python (difflib over 120,000 invoice ids took 7 s): DuckDB
    picks the 20 values closest by Jaro-Winkler similarity, and difflib the closest of those."""
    near = con.execute(
        f"SELECT {column} FROM {table} "  # noqa: S608 - fixed names
        f"ORDER BY jaro_winkler_similarity({column}, ?) DESC, {column} LIMIT 20",
        [word],
    ).fetchall()
    return suggest(word, [value for (value,) in near])


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (a library's error may go on for lines), or its
    class name when it has none."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def utf8(text: str) -> bool:
    """Whether `text` is UTF-8 text: not a name of undecodable bytes, which Python gives as
    lone surrogates (`\\udcff` for the byte 0xff) and DuckDB refuses."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
