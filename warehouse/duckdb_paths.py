"""File paths as DuckDB's readers take them: one file, never a pattern.

DuckDB's readers (read_parquet, read_csv, read_text, ...) expand `*`, `?` and `[...]` in every
path they are given, and read each file a pattern matches: `a[1].csv` reads `a1.csv`, `b*.csv`
also reads `bb.csv`.  Inside brackets these characters stand for themselves, so `exact_path`
writes each of them as a one-character class.  DuckDB also splits a pattern at a backslash, as
at `/`, so a path holding both a backslash and one of these characters names no file exactly:
`check_exact` refuses it.
"""

from __future__ import annotations

import os
import re

GLOB_CHARACTERS = frozenset("*?[")
_ESCAPED = str.maketrans({c: f"[{c}]" for c in GLOB_CHARACTERS})
_ESCAPE = re.compile(r"\[([*?\[])\]")


def check_exact(path: str | os.PathLike[str]) -> str | None:
    """Why DuckDB cannot read exactly the file at `path`; None when it can."""
    text = os.fspath(path)
    if "\\" in text and GLOB_CHARACTERS & set(text):
        return (
            "its path holds a backslash and one of * ? [, which DuckDB's readers cannot read "
            "as one file; rename it or move it to a directory without them"
        )
    return None


def exact_path(path: str | os.PathLike[str]) -> str:
    """`path` as a DuckDB reader's pattern that matches that file and no other."""
    text = os.fspath(path)
    assert check_exact(text) is None, text
    return text.translate(_ESCAPED)


def unescaped(pattern: str) -> str:
    """The path an `exact_path` pattern names (as DuckDB's messages quote the pattern)."""
    return _ESCAPE.sub(r"\1", pattern)
