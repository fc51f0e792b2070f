"""Usage quantities of an invoice run: the grouped usage of every product in every window, for
all customers at once, into mq_quantities (the input of engine.rating).

    plan_usage_groups(products, metrics, kinds)   products grouped into as few usage queries
                                                  as the compiler allows
    compute_quantities(con, home, pricing, ...)   one compiled usage query per group, over the
                                                  one windows relation (engine.usage_windows)

Each group is ONE compiled usage query (metric_compiler.compile_usage: its metrics fused into
one scan of the events); a SQL metric runs once, sandboxed (engine.sql_run), over every whole
period.  Python never sees an event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
from sqlglot import exp

from engine.invoice_targets import PeriodPlan
from engine.pricing import Pricing
from engine.usage_windows import ALL_WINDOWS, windows_of
from metric_compiler import Window, compile_usage, metric_properties
from metric_compiler.diagnostics import invalid_values_query
from warehouse.errors import UserError
from warehouse.events import EventStore, events_relation, integer_properties
from warehouse.home import Home
from warehouse.models import AggregationType, BillableMetric, Product


def _values_list(columns: Sequence[str]) -> exp.Expression:
    return exp.cast(
        exp.Array(expressions=[exp.column(c, quoted=True) for c in columns]),
        exp.DataType.build("VARCHAR[]"),
    )


@dataclass(frozen=True)
class UsageGroup:
    """One usage query: metrics sharing a scan, grouped by `keys` over the windows of `kind`;
    each product takes its rows, rolled up to its own keys when they are fewer."""

    kind: str
    keys: tuple[str, ...]
    products: tuple[Product, ...]


_ADDITIVE = (AggregationType.COUNT, AggregationType.SUM)


def plan_usage_groups(
    products: Sequence[Product],
    metrics: dict[str, BillableMetric],
    kinds: dict[str, str],
) -> list[UsageGroup]:
    """Group products into as few usage queries as the compiler allows.

    A product needs its metric grouped by its pricing + presentation keys, over the windows of
    its kind.  Products with the same (kind, keys) share one query.  A group whose metrics are
    all COUNT or SUM (additive: finer groups sum up exactly) also joins a group of the same
    kind grouped by more keys, when those keys lie within a compound group key of each of its
    metrics: one scan less, its rows rolled up.
    """
    exact: dict[tuple[str, tuple[str, ...]], list[Product]] = defaultdict(list)
    for product in products:
        assert product.id
        keys = tuple(sorted({*product.pricing_group_key, *product.presentation_group_key}))
        exact[(kinds[product.id], keys)].append(product)

    def fits(keys: tuple[str, ...], group: list[Product]) -> bool:
        for product in group:
            metric = metrics[product.id or ""]
            if metric.aggregation_type not in _ADDITIVE:
                return False
            if not any(set(keys) <= set(compound) for compound in metric.group_keys):
                return False
        return True

    merged = {key: list(group) for key, group in exact.items()}
    for key in sorted(exact, key=lambda k: (len(k[1]), k)):
        kind, keys = key
        hosts = [
            other
            for other in merged
            if other != key
            and other[0] == kind
            and set(keys) < set(other[1])
            and fits(other[1], merged[key])
        ]
        if hosts:
            host = max(hosts, key=lambda h: (len(merged[h]), -len(h[1]), h))
            merged[host].extend(merged.pop(key))
    return [
        UsageGroup(kind, keys, tuple(sorted(group, key=lambda p: p.id or "")))
        for (kind, keys), group in sorted(merged.items())
    ]


def compute_quantities(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    pricing: Pricing,
    plan: PeriodPlan,
    notes: list[str],
    *,
    multi_segment: bool,
) -> None:
    """mq_quantities: one compiled usage query per usage group (plan_usage_groups), each over
    the one windows relation, all customers at once; its metrics share one scan."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE mq_quantities (window_id BIGINT, product_id VARCHAR, "
        "pricing_values VARCHAR[], presentation_values VARCHAR[], quantity DECIMAL(38, 12))"
    )
    billable: list[Product] = []
    sql_products: list[Product] = []
    for _pid, product in sorted(pricing.products.items()):
        (sql_products if pricing.metrics[_pid].sql is not None else billable).append(product)
    if not plan.periods:
        return
    if sql_products:
        sql_metric_quantities(con, home, pricing, sql_products, notes)
    if not billable:
        return
    kinds = {pid: (kind if multi_segment else ALL_WINDOWS) for pid, kind in pricing.kinds.items()}
    metrics = {pid: pricing.metrics[pid] for pid in pricing.products}
    lo, hi = plan.start, plan.end
    assert lo is not None and hi is not None
    # every window starts and ends at one of these: events join windows by (customer, slice)
    boundaries = [
        t
        for (t,) in con.execute(
            "SELECT window_start FROM mq_windows UNION SELECT window_end FROM mq_windows"
        ).fetchall()
    ]
    diagnosed: set[str] = set()
    for group in plan_usage_groups(billable, metrics, kinds):
        used = list({metrics[p.id].id: metrics[p.id] for p in group.products}.values())  # type: ignore[index]
        properties = list(
            dict.fromkeys(prop for m in used for prop in metric_properties(m, group.keys))
        )
        files = EventStore(home, con).files(lo, hi, event_types_of(used))
        source = events_relation(files, properties, lo, hi, resolve_customers=False)
        integers = integer_properties(files, properties)
        windows = windows_by_key(group.kind)
        compiled = compile_usage(
            used,
            source,
            window=Window.relation(windows, boundaries=boundaries),
            group_by=list(group.keys),
            ordered=False,
            customer_column=False,  # a window is one customer's
            integer_properties=integers,
        )
        for metric in used:
            if metric.id not in diagnosed and metric.aggregation_key not in integers:
                diagnosed.add(metric.id or "")
                notes.extend(_invalid_values(con, metric, source, windows))
        selects: list[exp.Expression] = []
        for product in group.products:
            pricing_cols = [compiled.group_columns[k] for k in product.pricing_group_key]
            present_cols = [compiled.group_columns[k] for k in product.presentation_group_key]
            rollup = len(pricing_cols) + len(present_cols) < len(group.keys)
            value: exp.Expression = exp.column("value")
            select = (
                exp.select(
                    exp.column("window_id"),
                    exp.Literal.string(product.id or ""),
                    _values_list(pricing_cols),
                    _values_list(present_cols),
                    exp.Sum(this=value) if rollup else value,
                )
                .from_("mq_usage")
                .where(
                    exp.EQ(
                        this=exp.column("metric_id"),
                        expression=exp.Literal.string(metrics[product.id].id or ""),  # type: ignore[index]
                    )
                )
            )
            if rollup:
                select = select.group_by(
                    exp.column("window_id"),
                    *(exp.column(c, quoted=True) for c in pricing_cols),
                    *(exp.column(c, quoted=True) for c in present_cols),
                )
            selects.append(select)
        # one statement per usage group: the usage rows go straight into mq_quantities (kept
        # once, MATERIALIZED, when several products read them)
        hint = "MATERIALIZED " if len(selects) > 1 else ""
        products = " UNION ALL ".join(s.sql(dialect="duckdb") for s in selects)
        con.execute(f"INSERT INTO mq_quantities WITH mq_usage AS {hint}({compiled.sql}) {products}")


def _invalid_values(
    con: duckdb.DuckDBPyConnection,
    metric: BillableMetric,
    source: exp.Select,
    windows: exp.Select,
) -> list[str]:
    """The run summary's note on the events `metric` (SUM, MAX, LATEST) leaves out because
    their value is not a finite decimal (metric_compiler.diagnostics); run only when some
    file's values of its key are not all integer text, so usually never."""
    query = invalid_values_query(metric, source, windows)
    if query is None:
        return []
    [(count, example)] = con.execute(query.sql("duckdb")).fetchall()
    if not count:
        return []
    return [
        f"billable metric {metric.name!r} ({metric.id}): {count} event(s) in this run's periods "
        f"whose {metric.aggregation_key!r} value is not a finite decimal are not counted "
        f"(first: transaction {example})"
    ]


def windows_by_key(kind: str) -> exp.Select:
    """The windows of `kind` once per ingest key of their customer (customer_keys: the id and
    every alias), as `customer_id`: the usage query matches events by the key they were sent
    with, so it resolves no key per event, and with COUNT/SUM/MAX metrics joins the windows
    only after aggregating (metric_compiler.usage_query.DECOMPOSABLE; measured on the light
    benchmark catalog at 10M events: 0.21-0.23 s against 0.25-0.26 s resolving every event's
    key first).  Events of unknown keys meet no window, as they meet no customer_keys row."""
    windows = windows_of(kind).subquery("w")
    return (
        exp.select(
            exp.alias_(exp.column("key", table="k"), "customer_id"),
            *(exp.column(c, table="w") for c in ("window_id", "window_start", "window_end")),
        )
        .from_(windows)
        .join(
            exp.table_("customer_keys", alias="k"),
            on=exp.EQ(
                this=exp.column("customer_id", table="k"),
                expression=exp.column("customer_id", table="w"),
            ),
        )
    )


def event_types_of(metrics: Sequence[BillableMetric]) -> list[str] | None:
    """The event types that events of `metrics` can have (None: any, when some metric has no
    `event_type_filter.in_values`)."""
    types: set[str] = set()
    for metric in metrics:
        etf = metric.event_type_filter
        if etf is None or etf.in_values is None:
            return None
        types |= set(etf.in_values) - set(etf.not_in_values or ())
    return sorted(types)


def sql_metric_quantities(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    pricing: Pricing,
    products: Sequence[Product],
    notes: list[str],
) -> None:
    """Quantities of products on SQL metrics (SEMANTICS.md section 3): each SQL metric runs
    once, sandboxed (engine.sql_run), over the whole period windows of every customer; the
    products are priced at the rate in effect at the period's last instant (kind PERIOD).  A
    product's pricing + presentation keys must be exactly the query's group columns (a SQL
    value cannot be rolled up).  A row whose value is NULL (an aggregate over no events, a
    non-finite result) has no quantity: it is left out, so an ungrouped product gets its zero
    line."""
    from engine.sql_run import run_sql_metric
    from metric_compiler.sql_metric import sql_metric_columns

    windows = con.sql(
        "SELECT customer_id, window_id, window_start, window_end FROM mq_windows WHERE is_period"
    ).to_arrow_table()
    by_metric: dict[str, list[Product]] = defaultdict(list)
    for product in products:
        by_metric[pricing.metrics[product.id].id or ""].append(product)  # type: ignore[index]
    for metric_id, group in sorted(by_metric.items()):
        metric = pricing.metrics[group[0].id]  # type: ignore[index]
        assert metric.sql is not None
        _value, keys = sql_metric_columns(metric.sql)
        usable = []
        for product in group:
            wanted = {*product.pricing_group_key, *product.presentation_group_key}
            if wanted != set(keys):
                notes.append(
                    f"product {product.name!r} ({product.id}): its pricing + presentation keys "
                    f"{sorted(wanted)} are not the group columns {list(keys)} of SQL metric "
                    f"{metric.name!r}; a SQL value cannot be regrouped, so it is not billed"
                )
                con.execute(
                    "UPDATE mq_products SET computed = false WHERE product_id = ?", [product.id]
                )
                continue
            usable.append(product)
        if not usable:
            continue
        try:
            table = run_sql_metric(home, con, metric.sql, windows)
        except UserError as error:
            raise UserError(f"billable metric {metric.name!r} ({metric_id}): {error}") from None
        con.register("mq_sql_usage_arrow", table)
        try:
            for product in usable:

                def values(names: Sequence[str]) -> exp.Expression:
                    return exp.cast(
                        exp.Array(
                            expressions=[
                                exp.cast(exp.column(n, quoted=True), exp.DataType.build("VARCHAR"))
                                for n in names
                            ]
                        ),
                        exp.DataType.build("VARCHAR[]"),
                    )

                # a NULL value (SUM over no events, a non-finite result) is no quantity
                select = (
                    exp.select(
                        exp.column("window_id"),
                        exp.Literal.string(product.id or ""),
                        values(product.pricing_group_key),
                        values(product.presentation_group_key),
                        exp.cast(exp.column("value"), exp.DataType.build("DECIMAL(38, 12)")),
                    )
                    .from_("mq_sql_usage_arrow")
                    .where(exp.column("value").is_(exp.null()).not_())
                )
                con.execute("INSERT INTO mq_quantities " + select.sql(dialect="duckdb"))
        finally:
            con.unregister("mq_sql_usage_arrow")
