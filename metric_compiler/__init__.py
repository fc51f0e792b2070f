"""meterql metric compiler: billable metrics in, DuckDB SQL out.  Pure: it never executes.

Stable entry points (the engine, the invoice engine and tests rely on these signatures):

    check_metric(metric) -> list[str]
        every apply-time problem of a metric ([] = fine); see metric_compiler.checks

    metric_properties(metric, group_by=()) -> tuple[str, ...]
        the event properties a usage query of the metric reads; ask the read API for just these:
        EventStore(home, con).relation(metric_properties(m, group_by), start, end)

    compile_usage(metrics, source, *, window, group_by=(), customer_ids=None, dialect="duckdb",
                  ordered=True, customer_column=True, integer_properties=())
        -> CompiledQuery(tree, sql, columns, group_columns, metric_ids, properties)

        metrics       one BillableMetric, or a list of them with the same grouping: compiled
                      into ONE scan of the events (fused; each metric aggregates its own events:
                      `sum(CASE WHEN match THEN x END)`, `count(DISTINCT x) FILTER (WHERE
                      match)`, ...; see metric_compiler.expressions.filtered)
        source        a sqlglot Table or SELECT with the canonical event columns:
                      transaction_id, customer_id (catalog customer id), event_type,
                      "timestamp" (TIMESTAMP, naive UTC), and one VARCHAR column per property
                      named warehouse.layout.property_column(name)
        window        Window.none(start, end)   one window [start, end)
                      Window.hour(start, end)   per UTC hour, clipped to [start, end)
                      Window.day(start, end)    per UTC day, clipped to [start, end)
                      Window.relation(expr)     a relation (customer_id, window_id,
                                                window_start, window_end), range-joined:
                                                window_start <= timestamp < window_end, same
                                                customer; windows may overlap
                      Window.relation(expr, boundaries=[...])
                                                the same, every window bound among the given
                                                times: joined by (customer, slice), COUNT/SUM/MAX
                                                aggregated per slice before the join (DuckDB;
                                                at most 256 times, else range-joined)
        group_by      property names, a subset of one compound group key of every metric
        customer_ids  restrict to these catalog customer ids (None: all customers)
        dialect       duckdb (what meterql runs), or spark, trino, bigquery, snowflake,
                      clickhouse: the verified DuckDB query transpiled with the table of
                      differences in metric_compiler.dialects (DialectError when it cannot be)
        ordered       False leaves out the final ORDER BY (rows to be stored or joined)
        customer_column
                      False (Window.relation only, each window_id one customer's, as in an
                      invoice run): grouped by window_id alone, no customer_id column
        integer_properties
                      properties the caller knows hold only integer text (1-18 ASCII digits)
                      in `source` (warehouse.events.integer_properties): read without the
                      decimal text check

        Output columns, in order:
            customer_id (unless customer_column=False), metric_id,
            window_start, window_end      (window_id instead, for Window.relation)
            one column per group_by property, named property_column(name)
                                          (CompiledQuery.group_columns maps name -> column)
            value DECIMAL(38, 12)
        Rows are ordered by customer_id, window, group values, metric_id (unless ordered=False).
        A row exists only for a (customer, window, group values, metric) with at least one
        matching event.

Semantics (SEMANTICS.md section 2, and decisions):
    - numbers are DECIMAL(38, 12) (metric_compiler.numbers); a value that is not a plain finite
      decimal within that precision excludes the event from that metric (SUM, MAX, LATEST):
      it is not a matching event, so a group whose only events have such values has no row
      (never a NULL, never an error, never rounded);
    - UNIQUE counts distinct values as strings; LATEST takes the value of the event with the
      greatest (timestamp, transaction_id);
    - group values are never NULL for a checked metric (every group key property must have an
      `exists: true` or `in_values` filter);
    - SQL metrics (`sql` set) are not plans: compile_usage raises SqlMetricNotSupported for
      them; they are checked and scoped by metric_compiler.sql_metric, and their usage query
      (windows, --group-by rule, any dialect) is metric_compiler.sql_metric.usage.
"""

from __future__ import annotations

from collections.abc import Sequence

from metric_compiler.checks import check_metric
from metric_compiler.plan import SqlMetricNotSupported, check_group_by, plan_metric
from metric_compiler.usage_query import CompiledQuery, compile_plan, compile_usage
from metric_compiler.windows import Window, WindowKind
from warehouse.models import BillableMetric


def metric_properties(metric: BillableMetric, group_by: Sequence[str] = ()) -> tuple[str, ...]:
    """The event properties a usage query of `metric` grouped by `group_by` reads."""
    plan = plan_metric(metric)
    return tuple(dict.fromkeys([*plan.properties, *group_by]))


__all__ = [
    "CompiledQuery",
    "SqlMetricNotSupported",
    "Window",
    "WindowKind",
    "check_group_by",
    "check_metric",
    "compile_plan",
    "compile_usage",
    "metric_properties",
    "plan_metric",
]
