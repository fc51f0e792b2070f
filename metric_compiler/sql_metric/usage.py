"""Usage of a SQL metric: which windows it is evaluated over, its --group-by rule, its query.

    sql_group_by(metric, group_keys, group_by) -> keys     the --group-by rule (below)
    rows_without_events(checked) -> bool                   may a window without events have rows?
    usage_windows(window, events=, customers=, customer_ids=, every_window=) -> SELECT
        the windows relation (customer_id, window_id, window_start, window_end)
    compile_sql_usage(metric, source, window=, customers=, ...) -> CompiledQuery
        `meterql compile` of a SQL metric: windows + scoped query, in any dialect

**Windows.**  A SQL metric is evaluated, for every customer and window, exactly as its query
would be over that customer's events in that window (scope.py).  For `--window none` the window
is [start, end); for `hour`/`day`, every UTC hour/day overlapping [start, end), clipped to it.
A window without events gives what the query gives over no events: no row for a grouped query
(`GROUP BY`: no groups), but one row for an aggregate without GROUP BY (count 0, sum NULL), the
same as `sql run` and invoices, where every customer of the period gets that row.  So:

- when the query can return rows over no events (`rows_without_events`), the windows are every
  customer's (the `customers` relation) x every window: a count-0 row for each, as written;
- otherwise (the usual grouped query) the windows are only those in which the customer has at
  least one event (any event: the query decides which ones it counts); the other windows
  would return nothing, so the result is the same, computed over far fewer windows.

`rows_without_events` is decided from the query's shape and errs only on the safe side (True
when unsure: more windows, same rows): a block returns no rows over no events when it reads a
relation that has none and is not an aggregate without GROUP BY.

**--group-by** (ours).  A SQL metric's value cannot be re-aggregated: count(DISTINCT user) of two
regions is not the sum of each region's count, and an average of averages is not the average.
So `--group-by` is either omitted (every group column the query returns, in its order) or names
exactly all of them (in any order: the `group` object follows that order); a subset, or a name
that is not a returned column, is refused with the reason.  Invoices follow the same rule (a
product's pricing + presentation keys must be exactly the returned group columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from sqlglot import exp

from metric_compiler import expressions as sx
from metric_compiler.dialects import dialect_name, rewrite, transpile
from metric_compiler.sql_metric.check import CheckedSql, check_sql
from metric_compiler.sql_metric.names import EVENTS_TABLE, VALUE_COLUMN
from metric_compiler.sql_metric.scope import _is_aggregate, scoped_query
from metric_compiler.usage_query import CompiledQuery
from metric_compiler.windows import Window, WindowKind
from sql_templates import SqlComment, render_comment
from warehouse.errors import UserError, suggest
from warehouse.layout import property_column
from warehouse.models import BillableMetric

RESULT = "r"


def _label(metric: BillableMetric) -> str:
    return f"SQL metric {metric.name!r}" + (f" (id {metric.id!r})" if metric.id else "")


def sql_group_by(
    metric: BillableMetric, group_keys: Sequence[str], group_by: Sequence[str]
) -> tuple[str, ...]:
    """The group keys of a SQL metric's usage rows under `--group-by` (module docstring)."""
    if not group_by:
        return tuple(group_keys)
    duplicates = sorted({k for k in group_by if list(group_by).count(k) > 1})
    if duplicates:
        raise UserError(f"--group-by lists {', '.join(map(repr, duplicates))} more than once")
    returned = ", ".join(map(repr, group_keys)) or "none"
    for key in group_by:
        if key not in group_keys:
            raise UserError(
                f"--group-by {key!r} is not a group column of {_label(metric)}; its query "
                f"returns the group columns: {returned}" + suggest(key, group_keys)
            )
    if len(group_by) < len(group_keys):
        missing = ", ".join(repr(k) for k in group_keys if k not in group_by)
        raise UserError(
            f"--group-by {list(group_by)} leaves out {missing} of {_label(metric)}: a SQL "
            "metric's value cannot be re-aggregated over fewer group columns (e.g. a distinct "
            "count of two groups is not the sum of their counts); give all of its group "
            f"columns ({returned}) or omit --group-by"
        )
    return tuple(group_by)


# -- which windows --------------------------------------------------------------------------------


def _grouped(select: exp.Select) -> bool:
    group = select.args.get("group")
    if group is None:
        return False
    return any(not (isinstance(e, exp.Tuple) and not e.expressions) for e in group.expressions)


def _empty_without_events(select: exp.Select, ctes: dict[str, exp.Expression]) -> bool:
    """True when the block surely returns no rows if `events` has none."""
    ctes = dict(ctes)
    with_ = select.args.get("with_")
    for cte in with_.expressions if with_ else []:
        ctes[cte.alias.casefold()] = cte.this
    from_ = select.args.get("from_")
    if from_ is None:
        return False  # one row
    if _is_aggregate(select) and not _grouped(select):
        return False  # one row per window (unless HAVING drops it: unsure, so False)
    source = from_.this
    if isinstance(source, exp.Subquery):
        inner = source.this
        return isinstance(inner, exp.Select) and _empty_without_events(inner, ctes)
    if isinstance(source, exp.Table) and not source.db:
        name = source.name.casefold()
        if name in ctes:
            inner = ctes[name]
            return isinstance(inner, exp.Select) and _empty_without_events(inner, ctes)
        return name == EVENTS_TABLE
    return False


def rows_without_events(checked: CheckedSql) -> bool:
    """May the query return rows for a customer and window without events?  (True if unsure.)"""
    return not _empty_without_events(checked.tree, {})


def usage_windows(
    window: Window,
    *,
    events: exp.Expression,
    customers: exp.Expression,
    customer_ids: Sequence[str] | None = None,
    every_window: bool,
) -> exp.Select:
    """The windows relation (customer_id, window_id, window_start, window_end) of a SQL
    metric's usage over `window` (none, hour or day; module docstring): from `events` (the
    canonical event columns; customer_id resolved) the windows holding events, or with
    `every_window` every customer of `customers` (a relation with the column `id`) x every
    window.  window_id is the window's start."""
    assert window.start is not None and window.end is not None, window
    start, end = sx.bound(window.start), sx.bound(window.end)
    kind = window.kind
    unit: exp.Expression | None
    if kind is WindowKind.NONE:
        unit = None
    elif kind is WindowKind.HOUR or kind is WindowKind.DAY:
        unit = exp.var(kind.value.upper())
    elif kind is WindowKind.RELATION:
        raise ValueError("a SQL metric's usage windows are none, hour or day")
    else:
        assert_never(kind)

    def columns(customer: exp.Expression, bucket: exp.Expression | None) -> list[exp.Expression]:
        if bucket is None or unit is None:
            first, last = start.copy(), end.copy()
        else:
            step = exp.Interval(this=sx.string("1"), unit=unit.copy())
            first = exp.Greatest(this=bucket.copy(), expressions=[start.copy()], ignore_nulls=True)
            last = exp.Least(
                this=exp.Add(this=bucket.copy(), expression=step),
                expressions=[end.copy()],
                ignore_nulls=True,
            )
        return [
            sx.alias(customer, "customer_id"),
            sx.alias(first.copy(), "window_id"),
            sx.alias(first, "window_start"),
            sx.alias(last, "window_end"),
        ]

    def only(column: exp.Expression) -> list[exp.Expression]:
        if customer_ids is None:
            return []
        return [exp.In(this=column, expressions=[sx.string(c) for c in customer_ids])]

    if not every_window:
        e = "e"
        ts = sx.col("timestamp", e)
        bucket = None if unit is None else exp.TimestampTrunc(this=ts.copy(), unit=unit.copy())
        where = [
            exp.GTE(this=ts.copy(), expression=start.copy()),
            exp.LT(this=ts.copy(), expression=end.copy()),
            *only(sx.col("customer_id", e)),
        ]
        return (
            exp.select(*columns(sx.col("customer_id", e), bucket))
            .distinct()
            .from_(_aliased(events, e))
            .where(exp.and_(*where))
        )

    c = "c"
    select = exp.select(*columns(sx.col("id", c), None if unit is None else sx.col("bucket")))
    select = select.from_(_aliased(customers, c))
    conditions = only(sx.col("id", c))
    if unit is not None:
        series = exp.GenerateSeries(
            start=exp.TimestampTrunc(this=start.copy(), unit=unit.copy()),
            end=end.copy(),
            step=exp.Interval(this=sx.string("1"), unit=unit.copy()),
        )
        unnest = exp.Unnest(
            expressions=[series],
            alias=exp.TableAlias(this=sx.ident("s"), columns=[sx.ident("bucket")]),
        )
        select = select.join(unnest, join_type="CROSS")
        conditions.append(exp.LT(this=sx.col("bucket"), expression=end.copy()))
    return select.where(exp.and_(*conditions)) if conditions else select


def _aliased(relation: exp.Expression, name: str) -> exp.Expression:
    if isinstance(relation, exp.Table):
        table = relation.copy()
        table.set("alias", exp.TableAlias(this=sx.ident(name)))
        return table
    query = relation.this if isinstance(relation, exp.Subquery) else relation
    assert isinstance(query, exp.Query), type(relation)
    return query.subquery(sx.ident(name), copy=True)


# -- the usage query of a SQL metric (`meterql compile`) ------------------------------------------


def compile_sql_usage(
    metric: BillableMetric,
    source: exp.Expression,
    *,
    window: Window,
    customers: exp.Expression,
    group_by: Sequence[str] = (),
    customer_ids: Sequence[str] | None = None,
    dialect: str = "duckdb",
) -> CompiledQuery:
    """One query computing a SQL metric's usage rows for every customer (or `customer_ids`):
    customer_id, metric_id, window_start, window_end, the group keys (in --group-by order),
    value DECIMAL(38, 12); ordered by customer, window and group values.

    `source` has the canonical event columns (the properties the query reads among them) and
    `customers` a column `id` (read only when windows without events have rows)."""
    assert metric.sql is not None, metric
    target = dialect_name(dialect)
    checked = check_sql(metric.sql, subject=_label(metric))
    keys = sql_group_by(metric, checked.group_keys, group_by)
    every = rows_without_events(checked)
    windows = usage_windows(
        window, events=source, customers=customers, customer_ids=customer_ids, every_window=every
    )
    scoped = scoped_query(checked, source, windows).tree
    with_ = scoped.args.get("with_")
    scoped.set("with_", None)
    metric_id = metric.id or metric.name
    out = [
        sx.col("customer_id", RESULT),
        sx.alias(sx.string(metric_id), "metric_id"),
        sx.col("window_start", RESULT),
        sx.col("window_end", RESULT),
        *(sx.col(k, RESULT) for k in keys),
        sx.col(VALUE_COLUMN, RESULT),
    ]
    order = [sx.col(n) for n in ("customer_id", "window_start", *keys)]
    query = (
        exp.select(*out)
        .from_(scoped.subquery(sx.ident(RESULT)), copy=False)
        .order_by(*(exp.Ordered(this=o, nulls_first=True) for o in order))
    )
    query.set("with_", with_)
    note = (
        "every customer's (the query returns a row without events)"
        if every
        else "those holding events of the customer"
    )
    header = SqlComment(
        f"meterql usage: {_label(metric)}; window {window.kind.value}; group by {list(keys)}; "
        f"windows: {note}"
    )
    columns = ("customer_id", "metric_id", "window_start", "window_end", *keys, VALUE_COLUMN)
    text_columns = {property_column(p) for p in checked.properties}
    text = transpile(query, target, text_columns=text_columns)
    return CompiledQuery(
        tree=rewrite(query, target, text_columns=text_columns),  # type: ignore[arg-type]
        sql=render_comment(header, target) + "\n" + text,
        columns=columns,
        group_columns={k: k for k in keys},
        metric_ids=(metric_id,),
        properties=checked.properties,
        dialect=target,
    )
