"""Diagnostics: the events a SUM, MAX or LATEST metric leaves out because their value is not a
finite decimal (SEMANTICS.md section 2: such an event does not count and is reported).

    invalid_values_query(metric, source, windows) -> exp.Select | None

`source` is a relation with the read API's columns (metric_compiler.usage_query: transaction_id,
customer_id as sent, event_type, "timestamp", the encoded property columns), `windows` a
relation (customer_id, window_start, window_end) of the customers and windows the metric is
computed for.  The query returns one row: how many distinct events pass every filter of the
metric but carry an aggregation value that is not a finite decimal (metric_compiler.numbers),
and the smallest such transaction id (NULL when there is none).  None for a metric that reads
no number (COUNT, UNIQUE).
"""

from __future__ import annotations

from sqlglot import exp

from metric_compiler import numbers
from metric_compiler.expressions import col, condition_sql, conjunction, subject_column
from metric_compiler.plan import IsDecimal, Operand, Present, plan_metric
from warehouse.models import BillableMetric


def invalid_values_query(
    metric: BillableMetric, source: exp.Expression, windows: exp.Expression
) -> exp.Select | None:
    plan = plan_metric(metric)
    key = plan.measure.prop
    if plan.measure.operand is not Operand.DECIMAL or key is None:
        return None
    filters = [condition_sql(c, "e") for c in plan.conditions if c != IsDecimal(key)]
    value = subject_column(key, "e")
    invalid = [condition_sql(Present(key), "e"), exp.not_(numbers.is_decimal_text(value))]
    in_window = conjunction(
        [
            exp.EQ(this=col("customer_id", "w"), expression=col("customer_id", "e")),
            exp.LTE(this=col("window_start", "w"), expression=col("timestamp", "e")),
            exp.LT(this=col("timestamp", "e"), expression=col("window_end", "w")),
        ]
    )
    # an event in several windows (a customer with several contracts) is one event
    matched = (
        exp.select(col("transaction_id", "e"))
        .distinct()
        .from_(exp.Subquery(this=source.copy(), alias=exp.TableAlias(this=exp.to_identifier("e"))))
        .join(
            exp.Subquery(this=windows.copy(), alias=exp.TableAlias(this=exp.to_identifier("w"))),
            on=in_window,
        )
        .where(conjunction([*filters, *invalid]))
    )
    return exp.select(exp.Count(this=exp.Star()), exp.Min(this=col("transaction_id"))).from_(
        matched.subquery("m")
    )
