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


def not_utf8(text: str) -> str | None:
    """Why `text` (from the OS: an argument, a variable, a file name, where bytes that are not
    UTF-8 arrive as surrogates) is no UTF-8 text, naming it and the first such byte; None when
    it is.  DuckDB takes only UTF-8 text."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as error:
        char = ord(text[error.start])
        if not 0xDC80 <= char <= 0xDCFF:  # a surrogate that stands for no byte
            return f"{text!r} is not UTF-8 text (character U+{char:04X})"
        raw = text.encode("utf-8", "surrogateescape")
        shown = raw.decode("utf-8", "backslashreplace")
        return f"{shown!r} is not UTF-8 text (byte 0x{char - 0xDC00:02X})"


# C0 and C1 control characters and DEL, as \xNN (a tab or a newline would break a table's
# columns; an escape sequence in a customer id would drive the reader's terminal)
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def visible(text: str) -> str:
    """`text` for a human reading a terminal or a table: control characters as \\xNN."""
    return text if text.isprintable() else text.translate(_CONTROLS)
