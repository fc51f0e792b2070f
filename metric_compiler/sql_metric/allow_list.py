"""Rule: every node of the query is on the allow-list (SEMANTICS.md section 3).

Allowed: SELECT [DISTINCT] with FROM (one relation: `events`, a CTE or a subquery), WHERE,
GROUP BY, HAVING, WITH (CTEs) and subqueries (in FROM, scalar, IN, EXISTS); the aggregates
COUNT, COUNT(DISTINCT), SUM, MIN, MAX, AVG, ARG_MIN, ARG_MAX (EARLIEST/LATEST by timestamp);
arithmetic, comparisons, BETWEEN, AND/OR/NOT, CASE, IS [NOT] NULL, [NOT] IN, LEAST, GREATEST,
ROUND, CEIL, FLOOR, COALESCE, CAST/TRY_CAST (to exact types), DATE_TRUNC.

Everything else is refused by name, at its place in the text, before anything runs: table
functions and file paths used as tables, other functions (getenv, read_text, glob, duckdb_*,
...), statements other than SELECT anywhere in the tree, JOIN and set operations, and the
constructs that cannot be scoped per customer (window functions, ORDER BY, LIMIT/OFFSET,
QUALIFY, sampling, aggregate FILTER, WITH RECURSIVE).  Float types are refused in CAST: a
metric's numbers are exact.  Table and column *names* are checked by the resolve rule.
"""

from __future__ import annotations

from sqlglot import exp

from metric_compiler.sql_metric.source import SqlSource

AGGREGATES: tuple[type[exp.Expression], ...] = (
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Avg,
    exp.ArgMax,
    exp.ArgMin,
)
SCALAR_FUNCTIONS: tuple[type[exp.Expression], ...] = (
    exp.Least,
    exp.Greatest,
    exp.Round,
    exp.Ceil,
    exp.Floor,
    exp.Coalesce,
    exp.Cast,
    exp.TryCast,
    exp.DateTrunc,
    exp.TimestampTrunc,
    exp.Case,
    exp.If,  # the WHEN branches of CASE (and IF(c, a, b), which is CASE)
)
ALLOWED_FUNCTIONS = AGGREGATES + SCALAR_FUNCTIONS
FUNCTION_NAMES = (
    "count, sum, min, max, avg, arg_min, arg_max, least, greatest, round, ceil, floor, "
    "coalesce, cast, try_cast, date_trunc, CASE"
)

# Nodes that are not functions and are always allowed (names are checked by resolve.py).
STRUCTURE: tuple[type[exp.Expression], ...] = (
    exp.Select,
    exp.From,
    exp.Where,
    exp.Group,
    exp.Having,
    exp.With,
    exp.CTE,
    exp.TableAlias,
    exp.Subquery,
    exp.Table,
    exp.Alias,
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Paren,
    exp.Exists,
    exp.Neg,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.IntDiv,
    exp.Mod,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Between,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Is,
    exp.In,
    exp.DataTypeParam,
)

EXACT_TYPES = frozenset(
    {
        exp.DataType.Type.DECIMAL,
        exp.DataType.Type.TINYINT,
        exp.DataType.Type.SMALLINT,
        exp.DataType.Type.INT,
        exp.DataType.Type.BIGINT,
        exp.DataType.Type.INT128,
        exp.DataType.Type.UTINYINT,
        exp.DataType.Type.USMALLINT,
        exp.DataType.Type.UINT,
        exp.DataType.Type.UBIGINT,
        exp.DataType.Type.UINT128,
        exp.DataType.Type.TEXT,
        exp.DataType.Type.VARCHAR,
        exp.DataType.Type.BOOLEAN,
        exp.DataType.Type.DATE,
        exp.DataType.Type.TIMESTAMPNTZ,
        exp.DataType.Type.TIMESTAMP,
    }
)
FLOAT_TYPES = frozenset({exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE})
ZONED_TYPES = frozenset({exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMPLTZ})
TYPE_NAMES = "DECIMAL(p, s), integer types, VARCHAR, BOOLEAN, DATE, TIMESTAMP"

# Refused constructs with a specific explanation: (name, why).
NOT_SCOPABLE = "cannot be evaluated per customer"
EXPLAINED: dict[type[exp.Expression], tuple[str, str]] = {
    exp.Window: (
        "a window function (OVER)",
        f"{NOT_SCOPABLE}; use GROUP BY, a subquery, or arg_min/arg_max",
    ),
    exp.Order: (
        "ORDER BY",
        "a metric's result is a set of rows; use arg_min/arg_max for the earliest/latest value",
    ),
    exp.Limit: ("LIMIT", f"{NOT_SCOPABLE}; use arg_min/arg_max or a HAVING condition"),
    exp.Offset: ("OFFSET", NOT_SCOPABLE),
    exp.Fetch: ("FETCH", NOT_SCOPABLE),
    exp.Qualify: ("QUALIFY", NOT_SCOPABLE),
    exp.TableSample: ("sampling", NOT_SCOPABLE),
    exp.Join: (
        "JOIN",
        "a query block reads one relation; use a subquery (IN, EXISTS, or a scalar subquery)",
    ),
    exp.Union: ("UNION", "a SQL metric is one SELECT"),
    exp.Intersect: ("INTERSECT", "a SQL metric is one SELECT"),
    exp.Except: ("EXCEPT", "a SQL metric is one SELECT"),
    exp.Filter: ("aggregate FILTER", "use CASE inside the aggregate"),
    exp.Lateral: ("LATERAL", "a query block reads one relation"),
    exp.Unnest: ("UNNEST", "a query reads only events"),
    exp.Values: ("VALUES", "a query reads only events"),
    exp.Pivot: ("PIVOT", "a query reads only events"),
    exp.Placeholder: ("query parameters", "a metric is complete SQL"),
    exp.Parameter: ("query parameters", "a metric is complete SQL"),
    exp.Interval: ("INTERVAL", "compare timestamps with TIMESTAMP literals or DATE_TRUNC"),
    exp.Like: ("LIKE", "use = or IN"),
    exp.ILike: ("ILIKE", "use = or IN"),
    exp.Dot: ("field access", "read properties as properties.<name>"),
    exp.Bracket: ("subscripts ([])", "property values are strings"),
    exp.Star: ("*", "list the columns you need (count(*) is fine)"),
    exp.DPipe: ("|| (string concatenation)", "compare and group property values as they are"),
    exp.RegexpLike: ("regular expressions", "use = or IN"),
    exp.SimilarTo: ("SIMILAR TO", "use = or IN"),
    exp.Any: ("ANY (...)", "use IN (subquery)"),
    exp.All: ("ALL (...)", "use NOT IN (subquery) or an aggregate"),
    exp.Tuple: ("row values (a, b)", "compare one value at a time"),
    exp.PositionalColumn: ("#n column positions", "name the column"),
    exp.Struct: ("struct values", "a metric returns plain columns"),
    exp.Array: ("list values", "a metric returns plain columns"),
}
# Arguments of allowed functions that are refused, each with what to write instead ({f}: the
# function's name as written).  DuckDB's ceil and floor take one argument: sqlglot would give
# ceil(x, 2) a meaning of its own (ROUND(CEIL(x * POWER(10, 2)) / POWER(10, 2), 2), in DOUBLE:
# ceil(1.10, 2) = 1.11), and count(DISTINCT a, b) a count of distinct (a, b) rows, where DuckDB
# refuses both.  min/max(x, n) and arg_min/arg_max(x, t, n) return a list.
REFUSED_ARGUMENTS: dict[tuple[type[exp.Expression], str], str] = {
    (exp.Ceil, "decimals"): "{f}(x, n) is not allowed: DuckDB's {f} takes one argument; to round "
    "up to n digits scale the value, e.g. {f}(x * 100) / 100",
    (exp.Floor, "decimals"): "{f}(x, n) is not allowed: DuckDB's {f} takes one argument; to round "
    "down to n digits scale the value, e.g. {f}(x * 100) / 100",
    (exp.Count, "expressions"): "{f}(x, y) is not allowed: DuckDB's {f} takes one argument",
    **{
        (kind, "count"): "{f}(..., n) is not allowed: it returns a list of n values, and a metric "
        "returns plain columns; leave out n"
        for kind in (exp.Min, exp.Max, exp.ArgMin, exp.ArgMax)
    },
}
SEVERAL_DISTINCT = (
    "{f}(DISTINCT a, b) is not allowed: DuckDB's {f} takes one argument; to count distinct "
    "combinations count the rows of a subquery: SELECT count(*) FROM (SELECT DISTINCT a, b FROM "
    "events)"
)
# Refused constructs whose parts are not worth reporting separately.
OPAQUE = (
    exp.Order,
    exp.Limit,
    exp.Offset,
    exp.Fetch,
    exp.Qualify,
    exp.TableSample,
    exp.Star,
    exp.Interval,
)
STATEMENT_NAMES: dict[type[exp.Expression], str] = {
    exp.Create: "CREATE",
    exp.Drop: "DROP",
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Merge: "MERGE",
    exp.Alter: "ALTER",
    exp.Pragma: "PRAGMA",
    exp.Set: "SET",
    exp.Attach: "ATTACH",
    exp.Detach: "DETACH",
    exp.Copy: "COPY",
    exp.Install: "INSTALL",
    exp.Use: "USE",
    exp.Describe: "DESCRIBE",
    exp.Command: "command",
    exp.Transaction: "BEGIN",
    exp.Commit: "COMMIT",
    exp.Rollback: "ROLLBACK",
}


def function_name(source: SqlSource, node: exp.Expression) -> str:
    """The function's name as written (sqlglot may rename: string_agg is GroupConcat)."""
    if isinstance(node, exp.Anonymous):
        return node.name
    meta = node._meta
    if meta and "start" in meta:
        return source.text[meta["start"] : meta["end"] + 1]
    span = source.span(node)
    written = source.name_before(span[0]) if span else None
    if written:
        return written
    return node.sql_name().lower() if isinstance(node, exp.Func) else node.key


def check_allow_list(source: SqlSource, tree: exp.Expression) -> None:
    _visit(source, tree)
    group_all = [n for n in tree.walk() if isinstance(n, exp.Group) and n.args.get("all")]
    for nth, _ in enumerate(group_all):
        start, end = source.sequence(("GROUP", "BY", "ALL"), nth)
        source.problems.append(
            source.at(start, end, "GROUP BY ALL is not allowed: list the grouping columns")
        )


def _visit(source: SqlSource, node: exp.Expression) -> None:
    if not _allowed(source, node):
        return
    for child in node.iter_expressions():
        if isinstance(node, exp.Window) and child is node.this:
            # the windowed function itself is part of the refused window; look inside it
            for grandchild in child.iter_expressions():
                _visit(source, grandchild)
        else:
            _visit(source, child)


def _allowed(source: SqlSource, node: exp.Expression) -> bool:
    """Report `node` if it is refused; whether to look at its children."""
    parent = node.parent
    for kind, name in STATEMENT_NAMES.items():
        if isinstance(node, kind):
            if isinstance(node, exp.Command):
                name = str(node.this).upper()
            source.report(
                node, f"{name} is not allowed; a SQL metric is one SELECT over events", name
            )
            return False
    if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
        function = node.this
        written = function_name(source, function) if function is not None else "?"
        source.report(
            function if function is not None else node,
            f"table function {written} is not allowed; a SQL metric reads only the table events",
        )
        return False
    if isinstance(node, exp.Star) and isinstance(parent, exp.Count):
        return True
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Star):
        source.report(node, "* is not allowed; list the columns you need")
        return False
    for kind, (name, why) in EXPLAINED.items():
        if isinstance(node, kind):
            keyword = {
                exp.Order: ("ORDER",),
                exp.Limit: ("LIMIT",),
                exp.Offset: ("OFFSET",),
                exp.Fetch: ("FETCH",),
                exp.Qualify: ("QUALIFY",),
                exp.Join: ("JOIN", ","),
                exp.Filter: ("FILTER",),
                exp.Values: ("VALUES",),
                exp.Interval: ("INTERVAL",),
                exp.Union: ("UNION",),
                exp.Intersect: ("INTERSECT",),
                exp.Except: ("EXCEPT",),
            }.get(kind, ())
            message = f"{name} is not allowed: {why}"
            after = (
                node.args.get("this") if isinstance(node, exp.SetOperation | exp.Filter) else None
            )
            token = None
            if after is not None and keyword:
                after_span = source.span(after)
                token = source.keyword_after(after_span[1], *keyword) if after_span else None
            if token is not None:
                source.problems.append(source.at(token.start, token.end + 1, message))
            else:
                source.report(node, message, *keyword)
            return not isinstance(node, OPAQUE)
    if isinstance(node, exp.With) and node.args.get("recursive"):
        source.report(node, "WITH RECURSIVE is not allowed: a SQL metric is not recursive", "WITH")
        return True
    if isinstance(node, exp.Distinct):
        if node.args.get("on") is not None:
            source.report(node, "DISTINCT ON is not allowed: use GROUP BY with arg_min/arg_max")
            return False
        if isinstance(parent, AGGREGATES) and len(node.expressions) > 1:
            _report_call(source, parent, SEVERAL_DISTINCT)
            return True
        if isinstance(parent, (exp.Select, *AGGREGATES)):
            return True
        source.report(parent or node, "DISTINCT is allowed only in SELECT DISTINCT and aggregates")
        return True
    if isinstance(node, exp.Var):
        if isinstance(parent, exp.DateTrunc | exp.TimestampTrunc) and node.arg_key == "unit":
            return True
        source.report(node, f"{node.name} is not allowed here")
        return False
    if isinstance(node, exp.DataType):
        _check_type(source, node)
        return False
    for (kind, argument), message in REFUSED_ARGUMENTS.items():
        if isinstance(node, kind) and node.args.get(argument):
            _report_call(source, node, message)
    truncation = isinstance(node, exp.DateTrunc | exp.TimestampTrunc)
    if truncation and _written_arguments(source, node) > 2:
        # sqlglot drops the rest (a Postgres-style time zone): DuckDB refuses the call
        _report_call(
            source,
            node,
            "{f} takes two arguments (unit, timestamp): timestamps are UTC, and a time zone "
            "argument is not supported",
        )
    if isinstance(node, ALLOWED_FUNCTIONS + STRUCTURE):
        return True
    if isinstance(node, exp.Func):
        written = function_name(source, node)
        source.report(node, f"function {written} is not allowed (allowed: {FUNCTION_NAMES})")
        return True
    name = node.key.upper()
    source.report(node, f"{name} is not allowed in a SQL metric", name)
    return True


def _report_call(source: SqlSource, node: exp.Expression, message: str) -> None:
    """Report a problem of a function call at the call, `{f}` in `message` being its name as
    written."""
    call = source.call(node)
    start, end, name = call or (*source.locate(node), function_name(source, node))
    source.problems.append(source.at(start, end, message.format(f=name)))


def _written_arguments(source: SqlSource, node: exp.Expression) -> int:
    """How many arguments a call is written with (0 when the text does not tell)."""
    meta = node._meta
    call = source.call(node)
    start = meta["start"] if meta and "start" in meta else call[0] if call else None
    count = source.arguments_written(start) if start is not None else None
    return count or 0


def _check_type(source: SqlSource, node: exp.DataType) -> None:
    kind = node.this
    written = node.sql("duckdb")
    if kind in FLOAT_TYPES:
        source.report(
            node.parent or node,
            f"type {written} is not allowed: floating point is not exact; cast to DECIMAL(p, s), "
            "e.g. DECIMAL(38, 12)",
        )
    elif kind in ZONED_TYPES:
        source.report(
            node.parent or node,
            f"type {written} is not allowed: it depends on the session time zone; timestamps "
            "are UTC, use TIMESTAMP",
        )
    elif kind not in EXACT_TYPES:
        source.report(node.parent or node, f"type {written} is not allowed (allowed: {TYPE_NAMES})")
