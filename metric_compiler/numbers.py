"""How a property value is read as an exact number.

Property values are strings.  SUM, MAX and LATEST read the aggregation property as an exact
DECIMAL(38, 12), and every metric value (also COUNT and UNIQUE) is a DECIMAL(38, 12).

A value counts only when its text is a plain finite decimal:

    an optional sign, then ASCII digits with an optional fraction, or a fraction alone
        [+-]? ( [0-9]+ ( . [0-9]* )? | . [0-9]+ )
    with at most 12 fractional digits (the scale), and a magnitude below 10^18.

Everything else (`1e5`, `  3`, `NaN`, `Infinity`, `1_000`, `0x10`, `1,5`, an empty string,
13 or more fractional digits even if they are zeros, 10^18 or more) is not a finite decimal of the
metric: the event is excluded from that metric (never rounded, never an error, never a NULL
total).

Why below 10^18 when DECIMAL(38, 12) holds up to 10^26: the 8 digits of headroom are for totals.
A SUM fails only above 10^26, which takes more than 10^8 events of the largest accepted value
(10^18 is about the largest 64-bit integer); DuckDB has no wider exact decimal.

How it is checked: DuckDB's `TRY_CAST(text AS DECIMAL(38, 12))` alone accepts too much (spaces,
exponents, underscores) and rounds extra fractional digits, so the text is checked first.  The
check is two GLOB patterns and the cast (`is_decimal_text`):

    NOT text GLOB '*[!0-9.+-]*'                 only digits, '.', '+', '-'
    NOT text GLOB '*.[0-9]...(13 times)*'       at most 12 fractional digits
    abs(TRY_CAST(text AS DECIMAL(38, 12))) < 10^18
                                                well formed (the cast refuses '', '.', '+-1',
                                                '1.2.3', ...) and in range

This accepts exactly the language above (tested against a regular expression over every string
of up to five characters from `01.+-` and hostile samples), and costs about a fifth of
`regexp_full_match` with the equivalent pattern (measured: benchmarks/bench_compiler.py notes).
"""

from __future__ import annotations

from sqlglot import exp

PRECISION = 38
SCALE = 12
LIMIT = "1000000000000000000"  # 10^18: values must be below it in magnitude

ALLOWED_CHARACTERS_GLOB = "*[!0-9.+-]*"  # matches a text holding any other character
TOO_MANY_FRACTION_DIGITS_GLOB = "*." + "[0-9]" * (SCALE + 1) + "*"

# The same language as a regular expression (documentation and tests; not used in queries).
DECIMAL_PATTERN = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"


def decimal_type() -> exp.DataType:
    """The SQL type of every metric value: DECIMAL(38, 12)."""
    return exp.DataType.build(f"DECIMAL({PRECISION}, {SCALE})")


def decimal_value(column: exp.Expression) -> exp.Expression:
    """`TRY_CAST(column AS DECIMAL(38, 12))`; meaningful where `is_decimal_text` holds."""
    return exp.TryCast(this=column.copy(), to=decimal_type())


def integer_value(column: exp.Expression) -> exp.Expression:
    """`TRY_CAST(column AS BIGINT)`, for a column known to hold only integer text of 1 to 18
    ASCII digits (so exact, and below 10^18 like every decimal of the metric; the cast never
    fails on such text).  TRY_CAST, not CAST: over a Parquet scan DuckDB 2.0 took twice as long
    for CAST (measured: 0.18 s against 0.10 s summing 7M values).

    Why: summing BIGINTs (into a HUGEINT) instead of DECIMAL(38, 12) values, and parsing the
    text as an integer, took 17% less time for the invoice benchmark's light usage query at
    100M events (1.46 s against 1.76 s, README "Performance")."""
    return exp.TryCast(this=column.copy(), to=exp.DataType.build("BIGINT"))


def is_decimal_text(column: exp.Expression) -> exp.Expression:
    """The text of `column` is a finite decimal of the metric (module doc); NULL is not."""
    glob = exp.Glob
    return exp.and_(
        exp.not_(glob(this=column.copy(), expression=exp.Literal.string(ALLOWED_CHARACTERS_GLOB))),
        exp.not_(
            glob(this=column.copy(), expression=exp.Literal.string(TOO_MANY_FRACTION_DIGITS_GLOB))
        ),
        exp.LT(
            this=exp.Abs(this=decimal_value(column)),
            expression=exp.cast(exp.Literal.string(LIMIT), decimal_type()),
        ),
        copy=False,
    )
