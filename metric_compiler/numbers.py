"""How a property value is read as an exact number.

Property values are strings.  SUM, MAX and LATEST read the aggregation property as an exact
DECIMAL(38, 12), and every metric value (also COUNT and UNIQUE) is a DECIMAL(38, 12).

A value counts only when its text is a plain finite decimal of at most 18 integer digits and
12 fractional digits:

    an optional sign, then digits with an optional fraction, or a fraction alone:
    [+-]? ( [0-9]{1,18} ( . [0-9]{0,12} )? | . [0-9]{1,12} )

Everything else (`1e5`, `  3`, `NaN`, `Infinity`, `1_000`, `0x10`, an empty string, more than 12
fractional digits, more than 18 integer digits) is not a finite decimal of the metric: the event
is excluded from that metric (never rounded, never an error, never a NULL total).

Why 18 integer digits for a value when the type holds 26: the 8 digits of headroom are for
totals.  A SUM fails only above 10^26, which takes more than 10^8 events of the largest value
accepted (10^18, about the largest 64-bit integer); DuckDB has no wider exact decimal.  The text is
checked with a regular expression before `TRY_CAST`, because DuckDB's cast alone would accept
whitespace, exponents and underscores and would round extra fractional digits.
"""

from __future__ import annotations

from sqlglot import exp

PRECISION = 38
SCALE = 12
INTEGER_DIGITS = 18  # per value; totals have 8 more digits of headroom (module doc)

DECIMAL_PATTERN = rf"[+-]?([0-9]{{1,{INTEGER_DIGITS}}}(\.[0-9]{{0,{SCALE}}})?|\.[0-9]{{1,{SCALE}}})"


def decimal_type() -> exp.DataType:
    """The SQL type of every metric value: DECIMAL(38, 12)."""
    return exp.DataType.build(f"DECIMAL({PRECISION}, {SCALE})")


def is_decimal_text(column: exp.Expression) -> exp.Expression:
    """`regexp_full_match(column, '<DECIMAL_PATTERN>')`: the text is a finite decimal."""
    return exp.RegexpFullMatch(this=column, expression=exp.Literal.string(DECIMAL_PATTERN))


def decimal_value(column: exp.Expression) -> exp.Expression:
    """`TRY_CAST(column AS DECIMAL(38, 12))`; meaningful where `is_decimal_text` holds."""
    return exp.TryCast(this=column, to=decimal_type())
