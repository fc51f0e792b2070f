"""SQL dialects: the DuckDB query meterql runs, written for another engine.

    transpile(tree, dialect, *, text_columns=()) -> str
    dialect_name(value) -> str            "--dialect" checked ("Spark" -> "spark")

meterql compiles every usage query for DuckDB (that is what it runs, and what its tests execute)
and writes it for another engine by sqlglot transpilation plus the small table of differences
below (`DIFFERENCES`, one entry per dialect): engine differences are data, not a fork of the
compiler.  Each difference is one rewrite of the DuckDB tree (one function each, applied in
`REWRITES` order), then sqlglot generates the dialect's text with
`unsupported_level=ErrorLevel.RAISE`: whatever sqlglot cannot express in the dialect raises a
`DialectError` naming the dialect and the construct, instead of emitting wrong SQL.

The differences (DuckDB first):

    FILTER (WHERE)      agg(x) FILTER (WHERE p); BigQuery, Snowflake: agg(CASE WHEN p THEN x END)
                        (count(*): count(CASE WHEN p THEN 1 END)); aggregates skip NULL, so this
                        is the same aggregate over the same events
    composite ordering  LATEST and arg_max(x, timestamp) order by (timestamp, transaction_id):
                        DuckDB arg_max(x, {struct}); Spark max_by(x, STRUCT(...)); Trino
                        max_by(x, ROW(...)) written (a, b); ClickHouse argMax(x, (a, b));
                        BigQuery ARRAY_AGG(x IGNORE NULLS ORDER BY a DESC, b DESC LIMIT
                        1)[SAFE_OFFSET(0)]; Snowflake ARRAY_AGG(x) WITHIN GROUP (ORDER BY a DESC
                        NULLS LAST, b DESC NULLS LAST)[0] (a VARIANT, cast by the query)
    decimal check       DuckDB: two GLOB patterns + TRY_CAST (metric_compiler.numbers).
                        Elsewhere the same language by regular expressions: the text holds
                        no character but [0-9.+-] (searched), at most 12 fractional digits
                        (searched), and the whole text has the shape [+-]?(d+(.d*)?|.d+) (the
                        engine's own cast may be more lenient than DuckDB's, e.g. ClickHouse
                        reads '1e5'; the shape keeps the accepted language exactly the same);
                        Snowflake's REGEXP_LIKE matches whole texts, so searches use
                        REGEXP_INSTR(x, p) > 0
    TRY_CAST            BigQuery SAFE_CAST; ClickHouse CAST(x AS Nullable(...)) (NULL when the
                        text is not a number); Snowflake's TRY_CAST takes only text (property
                        columns are text; anything else is cast to text first)
    DECIMAL(38, 12)     BigQuery: BIGNUMERIC(38, 12) (NUMERIC keeps at most 9 fractional
                        digits); any DECIMAL(p, s) beyond NUMERIC's range becomes BIGNUMERIC
    TIMESTAMP           naive UTC: Spark TIMESTAMP_NTZ, Snowflake TIMESTAMP_NTZ, BigQuery
                        TIMESTAMP (UTC), ClickHouse DateTime64(6, 'UTC'); BigQuery adds an
                        interval with TIMESTAMP_ADD
    AS MATERIALIZED     a DuckDB planner hint: dropped elsewhere (same result)
    column alias lists  `(...) AS t(a, b)`, `WITH t(a, b) AS`: BigQuery has none, so the
                        subquery's own columns are renamed instead
    non-finite values   a SQL metric's DOUBLE value that is NaN or infinite is NULL: its text
                        is compared with the dialect's spelling ('NaN', 'Infinity', ...); the
                        finite value is cast straight to DECIMAL(38, 12) (DuckDB goes through
                        the shortest text of the double; elsewhere a double's binary noise
                        below 10^-12 is rounded by the cast)
    windows of every customer
                        hour/day windows for a SQL metric that returns rows without events
                        need a series of timestamps: DuckDB GENERATE_SERIES, Spark/Trino
                        SEQUENCE, BigQuery GENERATE_TIMESTAMP_ARRAY; Snowflake and ClickHouse:
                        refused (DialectError)
    $start / $end       parameters: Spark, Trino, Snowflake :start; BigQuery @start;
                        ClickHouse {start: DateTime64(6, 'UTC')}
    LEFT JOIN           ClickHouse fills unmatched columns with defaults unless
                        `SETTINGS join_use_nulls = 1`, which the query carries
    identifiers         every identifier is quoted (names are exactly as meterql writes them)

The events relation is a table `events` with the canonical columns (transaction_id,
customer_id: the catalog customer id, event_type, timestamp, and one text column per property
named warehouse.layout.property_column(name)); none of this can be executed here except DuckDB
(and ClickHouse through chdb in tests/test_dialects.py when it is installed).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import ErrorLevel, UnsupportedError

from metric_compiler import numbers
from metric_compiler.sql_metric.allow_list import AGGREGATES
from metric_compiler.sql_metric.scope import NOT_FINITE
from warehouse.errors import UserError, suggest

DUCKDB = "duckdb"
TIMESTAMP_TYPES = (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ)


class CompositeKey(enum.StrEnum):
    """How arg_max/arg_min over (timestamp, transaction_id) is written."""

    STRUCT = "struct"  # max_by(x, STRUCT(a, b))
    TUPLE = "tuple"  # max_by(x, (a, b)): Trino's ROW, ClickHouse's tuple
    ARRAY_AGG_LIMIT = "array_agg_limit"  # BigQuery
    ARRAY_AGG_WITHIN_GROUP = "array_agg_within_group"  # Snowflake
    NATIVE = "native"  # DuckDB


class RegexSearch(enum.StrEnum):
    """How 'the text contains a match of the pattern' is written."""

    REGEXP_LIKE = "regexp_like"  # the dialect's REGEXP_LIKE / RLIKE / match searches
    REGEXP_INSTR = "regexp_instr"  # REGEXP_LIKE matches whole texts: REGEXP_INSTR(x, p) > 0


@dataclass(frozen=True)
class Differences:
    """What one dialect writes differently from DuckDB (module docstring)."""

    filter_clause: bool = True
    composite_key: CompositeKey = CompositeKey.NATIVE
    regex_search: RegexSearch = RegexSearch.REGEXP_LIKE
    decimal_check_by_regex: bool = True
    bignumeric: bool = False
    timestamp_type: str | None = None  # None: sqlglot's own mapping of TIMESTAMP
    timestamp_add_function: bool = False
    materialized_ctes: bool = False
    column_alias_lists: bool = True
    not_finite: tuple[str, ...] = ("nan", "-nan", "inf", "-inf")
    timestamp_series: bool = True
    generate_timestamp_array: bool = False
    text_only_try_cast: bool = False
    typed_placeholders: bool = False
    settings: tuple[tuple[str, int], ...] = ()


DIFFERENCES: dict[str, Differences] = {
    "duckdb": Differences(decimal_check_by_regex=False, materialized_ctes=True),
    "spark": Differences(
        composite_key=CompositeKey.STRUCT,
        not_finite=("NaN", "Infinity", "-Infinity"),
    ),
    "trino": Differences(
        composite_key=CompositeKey.TUPLE,
        not_finite=("NaN", "Infinity", "-Infinity"),
    ),
    "bigquery": Differences(
        filter_clause=False,
        composite_key=CompositeKey.ARRAY_AGG_LIMIT,
        bignumeric=True,
        timestamp_type="TIMESTAMPTZ",  # BigQuery's TIMESTAMP: an instant, shown in UTC
        timestamp_add_function=True,
        column_alias_lists=False,
        not_finite=("nan", "inf", "-inf"),
        generate_timestamp_array=True,
    ),
    "snowflake": Differences(
        filter_clause=False,
        composite_key=CompositeKey.ARRAY_AGG_WITHIN_GROUP,
        regex_search=RegexSearch.REGEXP_INSTR,
        not_finite=("NaN", "inf", "-inf"),
        timestamp_series=False,
        text_only_try_cast=True,
    ),
    "clickhouse": Differences(
        composite_key=CompositeKey.TUPLE,
        timestamp_type="DateTime64(6, 'UTC')",
        not_finite=("nan", "inf", "-inf"),
        timestamp_series=False,
        typed_placeholders=True,
        settings=(("join_use_nulls", 1),),
    ),
}
DIALECTS = tuple(DIFFERENCES)

# The decimal language of metric_compiler.numbers as regular expressions (no backslashes: the
# patterns read the same in every dialect's string literals).
OTHER_CHARACTER = "[^0-9.+-]"
TOO_MANY_FRACTION_DIGITS = f"[.][0-9]{{{numbers.SCALE + 1}}}"
DECIMAL_SHAPE = "^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)$"


class DialectError(UserError):
    """A query that cannot be written in a dialect (names the dialect and the construct)."""


def dialect_name(value: str) -> str:
    """`--dialect` in any case; a UserError listing the dialects otherwise."""
    name = value.strip().lower()
    if name in DIFFERENCES:
        return name
    raise UserError(
        f"--dialect {value!r} is not a supported SQL dialect; expected one of "
        + ", ".join(DIALECTS)
        + suggest(name, DIALECTS)
    )


def _unsupported(dialect: str, construct: str, why: str) -> DialectError:
    return DialectError(f"cannot write {construct} in {dialect}: {why}")


# -- rewrites: one difference each ---------------------------------------------------------------


def _decimal_check(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """GLOB patterns of the decimal check -> the same language by regular expressions."""
    if not d.decimal_check_by_regex:
        return tree

    def search(text: exp.Expression, pattern: str) -> exp.Expression:
        if d.regex_search is RegexSearch.REGEXP_LIKE:
            return exp.RegexpLike(this=text.copy(), expression=exp.Literal.string(pattern))
        return exp.GT(
            this=exp.Anonymous(
                this="REGEXP_INSTR", expressions=[text.copy(), exp.Literal.string(pattern)]
            ),
            expression=exp.Literal.number(0),
        )

    def whole(text: exp.Expression, pattern: str) -> exp.Expression:
        # anchored: a search with ^...$ is a whole-text match in every dialect (the text holds
        # no line break once OTHER_CHARACTER is not found)
        return search(text, pattern)

    for glob in list(tree.find_all(exp.Glob)):
        pattern = glob.expression
        text = glob.this
        if pattern == exp.Literal.string(numbers.ALLOWED_CHARACTERS_GLOB):
            # "holds another character, or is not shaped like a decimal" (under the NOT)
            replacement: exp.Expression = exp.Paren(
                this=exp.or_(search(text, OTHER_CHARACTER), exp.not_(whole(text, DECIMAL_SHAPE)))
            )
        elif pattern == exp.Literal.string(numbers.TOO_MANY_FRACTION_DIGITS_GLOB):
            replacement = search(text, TOO_MANY_FRACTION_DIGITS)
        else:
            raise _unsupported(dialect, "GLOB", "only the decimal check's patterns are known")
        glob.replace(replacement)
    return tree


def _filter_clauses(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """agg(x) FILTER (WHERE p) -> agg(CASE WHEN p THEN x END)."""
    if d.filter_clause:
        return tree
    for node in list(tree.find_all(exp.Filter)):
        aggregate = node.this.copy()
        condition = node.expression.this

        def when(value: exp.Expression, condition: exp.Expression = condition) -> exp.Expression:
            return exp.Case(ifs=[exp.If(this=condition.copy(), true=value)])

        if not isinstance(aggregate, AGGREGATES):
            raise _unsupported(dialect, f"{aggregate.sql('duckdb')} FILTER (WHERE ...)", "")
        argument = aggregate.this
        if isinstance(aggregate, exp.Count) and isinstance(argument, exp.Star):
            aggregate.set("this", when(exp.Literal.number(1)))
        elif isinstance(argument, exp.Distinct):
            argument.set("expressions", [when(e.copy()) for e in argument.expressions])
        else:
            aggregate.set("this", when(argument.copy()))
        node.replace(aggregate)
    return tree


def _key_parts(key: exp.Expression) -> list[exp.Expression]:
    if isinstance(key, exp.Struct):
        return [e.expression if isinstance(e, exp.PropertyEQ) else e for e in key.expressions]
    if isinstance(key, exp.Tuple):
        return list(key.expressions)
    return [key]


def _composite_keys(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """arg_max / arg_min over a composite key, in the dialect's form (module docstring)."""
    if d.composite_key is CompositeKey.NATIVE:
        return tree
    for node in list(tree.find_all(exp.ArgMax, exp.ArgMin)):
        key = node.expression
        parts = [p.copy() for p in _key_parts(key)]
        composite = len(parts) > 1
        style = d.composite_key
        if style is CompositeKey.STRUCT and composite:
            key.replace(exp.Struct(expressions=parts))
        elif style is CompositeKey.TUPLE and composite:
            key.replace(exp.Tuple(expressions=parts))
        elif style in (CompositeKey.ARRAY_AGG_LIMIT, CompositeKey.ARRAY_AGG_WITHIN_GROUP):
            descending = isinstance(node, exp.ArgMax)
            order = [exp.Ordered(this=p, desc=descending, nulls_first=False) for p in parts]
            # arg_max skips rows whose key is NULL, and rows whose value is NULL
            value = exp.Case(
                ifs=[
                    exp.If(
                        this=exp.not_(exp.Is(this=parts[0].copy(), expression=exp.Null())),
                        true=node.this.copy(),
                    )
                ]
            )
            if style is CompositeKey.ARRAY_AGG_LIMIT:
                aggregate = exp.IgnoreNulls(
                    this=exp.ArrayAgg(
                        this=exp.Limit(
                            this=exp.Order(this=value, expressions=order),
                            expression=exp.Literal.number(1),
                        )
                    )
                )
                picked = exp.Bracket(
                    this=aggregate, expressions=[exp.Literal.number(0)], offset=0, safe=True
                )
            else:
                aggregate = exp.WithinGroup(
                    this=exp.ArrayAgg(this=value, nulls_excluded=True),
                    expression=exp.Order(expressions=order),
                )
                picked = exp.Bracket(this=aggregate, expressions=[exp.Literal.number(0)])
            node.replace(picked)
    return tree


def _materialized(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """`AS MATERIALIZED` is a DuckDB planner hint: dropped."""
    if d.materialized_ctes:
        return tree
    for cte in tree.find_all(exp.CTE):
        if cte.args.get("materialized") is not None:
            cte.set("materialized", None)
    return tree


def _column_alias_lists(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """`(...) AS t(a, b)` / `WITH t(a, b) AS (...)` -> the subquery's columns renamed."""
    if d.column_alias_lists:
        return tree
    for alias in list(tree.find_all(exp.TableAlias)):
        columns = alias.columns
        owner = alias.parent
        if not columns or not isinstance(owner, exp.Subquery | exp.CTE):
            continue
        query = owner.this
        if not isinstance(query, exp.Select) or any(
            isinstance(p, exp.Star) for p in query.expressions
        ):
            raise _unsupported(
                dialect, f"the column list of {alias.name}", "the query's columns are not known"
            )
        if len(columns) > len(query.expressions):
            raise _unsupported(dialect, f"the column list of {alias.name}", "too many names")
        renamed = [
            exp.alias_(p.unalias().copy(), columns[i].copy()) if i < len(columns) else p.copy()
            for i, p in enumerate(query.expressions)
        ]
        query.set("expressions", renamed)
        alias.set("columns", None)
    return tree


def _types(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """TIMESTAMP (naive UTC) and BigQuery's decimal limits."""
    for node in list(tree.find_all(exp.DataType)):
        if node.this in TIMESTAMP_TYPES and d.timestamp_type is not None:
            node.replace(exp.DataType.build(d.timestamp_type, dialect=dialect))
        elif node.this == exp.DataType.Type.DECIMAL and d.bignumeric:
            params = [int(p.name) for p in node.expressions]
            precision, scale = (*params, 38, 9)[:2] if len(params) != 1 else (params[0], 0)
            if scale > 9 or precision - scale > 29:
                big = f"BIGNUMERIC({precision}, {scale})"
                node.replace(exp.DataType.build(big, dialect=dialect))
    return tree


def _not_finite(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """A SQL metric's non-finite DOUBLE: the dialect's spelling; finite values cast directly."""
    if dialect == DUCKDB:
        return tree
    wanted = [exp.Literal.string(s) for s in NOT_FINITE]
    for node in list(tree.find_all(exp.In)):
        if node.expressions != wanted:
            continue
        node.set("expressions", [exp.Literal.string(s) for s in d.not_finite])
        case = node.parent.parent if isinstance(node.parent, exp.If) else None
        default = case.args.get("default") if isinstance(case, exp.Case) else None
        if isinstance(default, exp.Cast) and isinstance(default.this, exp.Cast):
            default.set("this", default.this.this.copy())
    return tree


def _try_casts(
    tree: exp.Expression, d: Differences, dialect: str, text_columns: Collection[str]
) -> exp.Expression:
    """Snowflake's TRY_CAST takes only text."""
    if not d.text_only_try_cast:
        return tree
    varchar = exp.DataType.build("VARCHAR")
    for node in list(tree.find_all(exp.TryCast)):
        operand = node.this
        if isinstance(operand, exp.Column) and operand.name in text_columns:
            operand.type = varchar
        elif isinstance(operand, exp.Literal) and operand.is_string:
            operand.type = varchar
        else:
            text = exp.Cast(this=operand.copy(), to=varchar.copy())
            text.type = varchar
            node.set("this", text)
    return tree


def _intervals(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """BigQuery: `x + INTERVAL '1' DAY` -> TIMESTAMP_ADD(x, INTERVAL 1 DAY)."""
    if not d.timestamp_add_function:
        return tree
    for node in list(tree.find_all(exp.Interval)):
        if node.this.is_string and node.this.this.isdigit():
            node.set("this", exp.Literal.number(node.this.this))
    for node in list(tree.find_all(exp.Add)):
        interval = node.expression
        if isinstance(interval, exp.Interval):
            node.replace(
                exp.TimestampAdd(
                    this=node.this.copy(), expression=interval.this.copy(), unit=interval.unit
                )
            )
    return tree


def _series(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """A series of timestamps (every customer's hour/day windows)."""
    for node in list(tree.find_all(exp.GenerateSeries)):
        if not d.timestamp_series:
            raise _unsupported(
                dialect,
                "a series of timestamps (the hour/day windows of every customer)",
                "the dialect has no timestamp series function meterql writes; use --window "
                "none, or a SQL metric with GROUP BY (its windows come from the events)",
            )
        if d.generate_timestamp_array:
            node.replace(
                exp.Anonymous(
                    this="GENERATE_TIMESTAMP_ARRAY",
                    expressions=[node.args["start"].copy(), node.args["end"].copy()]
                    + [node.args["step"].copy()],
                )
            )
    return tree


def _placeholders(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """ClickHouse query parameters carry their type."""
    if not d.typed_placeholders:
        return tree
    kind = d.timestamp_type or "DateTime64(6, 'UTC')"
    for node in list(tree.find_all(exp.Placeholder)):
        node.set("kind", exp.DataType.build(kind, dialect=dialect))
    return tree


def _settings(tree: exp.Expression, d: Differences, dialect: str) -> exp.Expression:
    """Query settings the semantics need (ClickHouse: LEFT JOIN gives NULLs)."""
    if d.settings:
        tree.set(
            "settings",
            [
                exp.EQ(this=exp.column(name), expression=exp.Literal.number(value))
                for name, value in d.settings
            ],
        )
    return tree


Rewrite = Callable[[exp.Expression, Differences, str], exp.Expression]
REWRITES: tuple[Rewrite, ...] = (
    _decimal_check,
    _not_finite,
    _filter_clauses,  # before _composite_keys: a FILTER's aggregate is still an aggregate
    _composite_keys,
    _materialized,
    _column_alias_lists,
    _series,
    _intervals,
    _types,
    _placeholders,
    _settings,
)


def rewrite(
    tree: exp.Expression, dialect: str, *, text_columns: Collection[str] = ()
) -> exp.Expression:
    """A copy of the DuckDB `tree` with the dialect's differences applied."""
    name = dialect_name(dialect)
    d = DIFFERENCES[name]
    out = tree.copy()
    if name == DUCKDB:
        return out
    for step in REWRITES:
        out = step(out, d, name)
    return _try_casts(out, d, name, text_columns)


def transpile(tree: exp.Expression, dialect: str, *, text_columns: Collection[str] = ()) -> str:
    """The DuckDB query `tree` written for `dialect` (pretty, with a final newline).

    `text_columns` are column names known to hold text (the events' property columns).  A
    DialectError names the dialect and the construct it cannot express."""
    name = dialect_name(dialect)
    out = rewrite(tree, name, text_columns=text_columns)
    if name == DUCKDB:
        return out.sql(dialect=name, pretty=True) + "\n"
    try:
        text = out.sql(dialect=name, pretty=True, identify=True, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as error:
        raise _unsupported(name, "the query", str(error)) from None
    return text + "\n"
