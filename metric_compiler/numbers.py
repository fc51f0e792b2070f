"""How a property value is read as an exact number.

Property values are strings.  SUM, MAX and LATEST read the aggregation property as

    DECIMAL(38, 12): up to 26 integer digits and 12 fractional digits, exact.

A value counts only when its text is a plain finite decimal within that precision:

    an optional sign, then digits with an optional fraction, or a fraction alone:
    [+-]? ( [0-9]{1,26} ( . [0-9]{0,12} )? | . [0-9]{1,12} )

Everything else (`1e5`, `  3`, `NaN`, `Infinity`, `1_000`, `0x10`, an empty string, more than 12
fractional digits, more than 26 integer digits) is not a finite decimal of the metric: the event
is excluded from that metric (never rounded, never an error, never a NULL total).  The text is
checked with a regular expression before `TRY_CAST`, because DuckDB's cast alone would accept
whitespace, exponents and underscores and would round extra fractional digits.
"""

from __future__ import annotations

from sqlglot import exp

PRECISION = 38
SCALE = 12
INTEGER_DIGITS = PRECISION - SCALE

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
