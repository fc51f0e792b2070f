"""Keeping the exact text of JSON numbers (`0.1000` stays `0.1000`, never via a float).

DuckDB's JSON functions parse numbers and write them back in shortest form (`0.1000` -> `0.1`,
`1E2` -> `100.0`, `-0` -> `0`).  Integers otherwise come back exactly, and so do numbers too big
for a double (kept raw).  So only a text holding a number with a fraction or an exponent, or a
`-0`, needs care.  Two ways to find those texts: `needs_mark` (a regular expression over the
text as sent: whole JSON array documents, JSON text columns) and `text_changed` (over DuckDB's
compact re-serialisation of an NDJSON line's properties, after the normal parse: cheaper, as
that text is short).  Both may also fire on such text inside a string, which is harmless.

Those texts are "marked" before parsing: every number token outside a string is wrapped into a
string that starts with `MARK` (a private-use character), e.g. `{"a":0.10}` ->
`{"a":"\\ue0000.10"}`.  After parsing, `unmark_value` turns a marked string back into the
number's text and removes the marks inside nested objects and arrays (which are stored as their
compact JSON text).  A text that already contains `MARK` is never marked, so a mark is always
ours; such a text (practically never seen) keeps DuckDB's number form.
"""

from __future__ import annotations

from warehouse.ingest.sqltext import lit

MARK = "\ue000"

# A number with a fraction or an exponent as an object value or array element, or a -0.
FLOAT_HINT = r'"\s*:\s*-?[0-9]+[.eE]|[\[,]\s*-?[0-9]+[.eE]|[:\[,]\s*-0([^.eE0-9]|$)'

# Every token that is a string (group 1) or a number (group 2, RFC 8259 grammar).  Scanning for
# either from left to right, a string is always matched from its opening quote as a whole, so a
# number is never found inside a string.
_TOKEN = (
    r'("(?:[^"\\]|\\.)*")'
    r"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
)


_MARK_SQL = lit(MARK)
_HINT_SQL = lit(FLOAT_HINT)
_TOKEN_SQL = lit(_TOKEN)
# a string becomes itself followed by `"<MARK>"` (removed next), a number `"<MARK>number"`
_MARKED_TOKEN_SQL = lit('\\1"' + MARK + '\\2"')
_EMPTY_MARK_SQL = lit('"' + MARK + '"')
_MARKED_STRING_SQL = lit('"' + MARK + '([^"]*)"')
_GROUP_1_SQL = lit("\\1")


def needs_mark(text_sql: str) -> str:
    """SQL: TRUE when `text_sql` holds a number whose text DuckDB would not keep."""
    return f"(NOT contains({text_sql}, {_MARK_SQL}) AND regexp_matches({text_sql}, {_HINT_SQL}))"


# In DuckDB's compact re-serialisation (no whitespace) a number with a fraction or an exponent
# (a DOUBLE) shows as digits followed by `.` or `e` (`100000.0`, `1e-7`, `1e22`: DuckDB writes no
# `E` and no `e+`), and a `-0` sent shows as `0`.  Other numbers keep their text (integers, and
# numbers too big for a double, kept raw).
_DOUBLE_SQL = lit(r"[:,\[]-?[0-9]+[.e]")
_ZERO_SQL = lit(r"[:,\[]0[,\]}]")
# A `-0` token as sent: `-0` not followed by a digit, a fraction or an exponent.
_MINUS_ZERO_SQL = lit(r"-0([^.eE0-9]|$)")
# What a written DOUBLE must contain: a `.`, or an `e` before a digit or `-digit`.
_EXPONENT_SQL = lit("e-?[0-9]")


def text_changed(parsed_sql: str, raw_sql: str) -> str:
    """SQL: TRUE when `parsed_sql`, DuckDB's compact JSON text of a value parsed from the text
    `raw_sql`, may not hold the text of a number as sent: when it holds a fractional or
    exponent number (which DuckDB rewrites), or a zero while the text as sent holds a `-0`.

    Regular expressions whose first character is a class cost about 0.3 microseconds a row
    whatever the text, so each is tried only where a cheap test (a substring, or a pattern
    starting with a fixed character) says it can match: a text without `.` and without `e`
    before a digit holds no DOUBLE, a written zero follows `:`, `[` or `,`, and a zero can only
    have changed where a `-0` was sent.  The (long) text as sent is searched last."""
    parsed, raw = parsed_sql, raw_sql
    zero_gate = " OR ".join(f"contains({parsed}, '{c}0')" for c in ":[,")
    return (
        f"CASE WHEN (contains({parsed}, '.') OR regexp_matches({parsed}, {_EXPONENT_SQL})) "
        f"AND regexp_matches({parsed}, {_DOUBLE_SQL}) THEN NOT contains({raw}, {_MARK_SQL}) "
        f"WHEN ({zero_gate}) AND regexp_matches({raw}, {_MINUS_ZERO_SQL}) "
        f"AND regexp_matches({parsed}, {_ZERO_SQL}) THEN NOT contains({raw}, {_MARK_SQL}) "
        "ELSE false END"
    )


def mark(text_sql: str) -> str:
    """SQL: `text_sql` with every number token turned into a marked string."""
    marked = f"regexp_replace({text_sql}, {_TOKEN_SQL}, {_MARKED_TOKEN_SQL}, 'g')"
    return f"replace({marked}, {_EMPTY_MARK_SQL}, '')"


def unmark_text(text_sql: str) -> str:
    """SQL: a JSON text with its marked strings turned back into the original number tokens."""
    return f"regexp_replace({text_sql}, {_MARKED_STRING_SQL}, {_GROUP_1_SQL}, 'g')"


def unmark_value(value_sql: str, marked_sql: str) -> str:
    """SQL: a value extracted (json_extract_string) from a text that may have been marked."""
    return (
        f"CASE WHEN NOT {marked_sql} OR {value_sql} IS NULL THEN {value_sql} "
        f"WHEN starts_with({value_sql}, {_MARK_SQL}) THEN substr({value_sql}, 2) "
        f"WHEN contains({value_sql}, {_MARK_SQL}) THEN {unmark_text(value_sql)} "
        f"ELSE {value_sql} END"
    )
