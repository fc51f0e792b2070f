"""Usage queries: one metric, all customers (or one), one query.

    table = usage(catalog, events, metric="Input Tokens", start=..., end=...,
                  window="day", group_by=["model"])

The metric is compiled (metric_compiler) against the read API's relation of just the
properties it needs, and DuckDB runs it once for every customer and window; Python never loops
over customers or events.  A SQL metric is scoped (metric_compiler.sql_metric) and run in the
sandbox of engine.sql_run over a windows relation built by one DuckDB query (see
metric_compiler.sql_metric.usage for which windows, and the --group-by rule).  The result is a
pyarrow Table with the columns

    customer_id string, metric_id string, window_start timestamp[us], window_end timestamp[us],
    group struct<{property name}: string, ...>, value decimal128(38, 12)

ordered by customer, window and group values (for a SQL metric, group values have the types
its query returns, and a value is null where the query gives NULL).  `usage_rows` turns it
into the JSON rows of the CLI contract (`{"customer_id", "metric_id", "window_start",
"window_end", "group", "value"}`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from datetime import datetime
from decimal import Context, Decimal
from typing import Any

import pyarrow as pa
from sqlglot import exp

from engine.periods import parse_timestamp
from metric_compiler import CompiledQuery, Window, compile_usage, metric_properties
from metric_compiler.dialects import DUCKDB, dialect_name
from metric_compiler.sql_metric import CheckedSql, check_sql
from metric_compiler.sql_metric.usage import (
    compile_sql_usage,
    rows_without_events,
    sql_group_by,
    usage_windows,
)
from warehouse.catalog import Catalog
from warehouse.errors import UserError
from warehouse.events import EventStore, events_relation, integer_properties
from warehouse.layout import property_column
from warehouse.models import BillableMetric

TimestampInput = datetime | str
_EXACT = Context(prec=80)  # wide enough that normalising never rounds a DECIMAL(38, 12)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds") + "Z"


def _period(start: TimestampInput, end: TimestampInput) -> tuple[datetime, datetime]:
    lo, hi = parse_timestamp(start, "--start"), parse_timestamp(end, "--end")
    if lo >= hi:
        raise UserError(
            f"--start {_iso(lo)} is not before --end {_iso(hi)}; the usage period "
            "[start, end) would be empty"
        )
    return lo, hi


def compile_metric_usage(
    catalog: Catalog,
    events: EventStore,
    *,
    metric: str,
    start: TimestampInput | None,
    end: TimestampInput | None,
    customer: str | None = None,
    window: str = "none",
    group_by: Sequence[str] = (),
    dialect: str = "duckdb",
) -> tuple[CompiledQuery, list[str]]:
    """The compiled usage query and the group-by property names.

    With `start` and `end`, the query reads the home's committed event files (what `usage`
    runs).  Without them, it reads a relation named `events` of the canonical shape and takes
    the bounds as the parameters `$start` and `$end` (what `meterql compile` shows); a SQL
    metric whose query returns rows without events also reads `customers` (a column `id`).
    `dialect` (metric_compiler.dialects) writes the query for another engine; only without
    `start`/`end` (this home's files are read through DuckDB).
    """
    definition = catalog.metric(metric)
    if (start is None) != (end is None):
        missing = "--end" if end is None else "--start"
        raise UserError(f"{missing} is missing; give both --start and --end, or neither")
    target = dialect_name(dialect)
    if target != DUCKDB and start is not None:
        raise UserError(
            f"--dialect {target} cannot be combined with --start/--end: with them the query "
            "reads this home's Parquet files through DuckDB; omit them to get the query over a "
            "table `events` (the period as the parameters start and end)"
        )
    customer_ids = [catalog.customer(customer).id] if customer is not None else None
    group_by = list(group_by)
    if definition.sql is not None:
        checked = check_sql(definition.sql, subject=f"SQL metric {definition.name!r}")
        properties: Sequence[str] = checked.properties
    else:
        properties = metric_properties(definition, group_by)
    integers: set[str] = set()
    if start is None or end is None:
        source: exp.Expression = exp.to_table("events")
        lo: Any = exp.Placeholder(this="start")
        hi: Any = exp.Placeholder(this="end")
        window_spec = Window.parse(window, lo, hi)
    else:
        lo, hi = _period(start, end)
        window_spec = Window.parse(window, lo, hi)
        files = events.files(lo, hi)
        source = events_relation(files, properties, lo, hi)
        integers = integer_properties(files, properties)
    if definition.sql is not None:
        compiled = compile_sql_usage(
            definition,
            source,
            window=window_spec,
            customers=exp.to_table("customers"),
            group_by=group_by,
            customer_ids=customer_ids,
            dialect=target,
        )
        return compiled, list(compiled.group_columns)
    compiled = compile_usage(
        definition,
        source,
        window=window_spec,
        group_by=group_by,
        customer_ids=customer_ids,
        dialect=target,
        integer_properties=integers,
    )
    return compiled, group_by


def usage(
    catalog: Catalog,
    events: EventStore,
    *,
    metric: str,
    start: TimestampInput,
    end: TimestampInput,
    customer: str | None = None,
    window: str = "none",
    group_by: Sequence[str] = (),
) -> pa.Table:
    """Usage of one metric for every customer (or one), as a pyarrow Table (module doc)."""
    definition = catalog.metric(metric)
    if definition.sql is not None:
        return _sql_usage(
            catalog,
            events,
            definition,
            start=start,
            end=end,
            customer=customer,
            window=window,
            group_by=group_by,
        )
    compiled, names = compile_metric_usage(
        catalog,
        events,
        metric=metric,
        start=start,
        end=end,
        customer=customer,
        window=window,
        group_by=group_by,
    )
    raw = events.con.sql(compiled.sql).to_arrow_table()
    group_arrays = [raw.column(property_column(name)).combine_chunks() for name in names]
    if names:
        group = pa.StructArray.from_arrays(group_arrays, names=names)
    else:
        group = pa.repeat(pa.scalar({}, type=pa.struct([])), raw.num_rows)
    return pa.table(
        {
            "customer_id": raw.column("customer_id"),
            "metric_id": raw.column("metric_id"),
            "window_start": raw.column("window_start"),
            "window_end": raw.column("window_end"),
            "group": group,
            "value": raw.column("value"),
        }
    )


def _sql_usage(
    catalog: Catalog,
    events: EventStore,
    definition: BillableMetric,
    *,
    start: TimestampInput,
    end: TimestampInput,
    customer: str | None,
    window: str,
    group_by: Sequence[str],
) -> pa.Table:
    """A SQL metric's usage: one DuckDB query builds the windows of every customer (or one),
    then the scoped query runs once, sandboxed, over all of them (engine.sql_run)."""
    from engine.sql_run import run_sql_metric

    assert definition.sql is not None
    label = f"billable metric {definition.name!r} ({definition.id})"
    lo, hi = _period(start, end)
    window_spec = Window.parse(window, lo, hi)
    checked: CheckedSql = check_sql(definition.sql, subject=f"SQL metric {definition.name!r}")
    keys = sql_group_by(definition, checked.group_keys, group_by)
    customer_ids = [catalog.customer(customer).id] if customer is not None else None
    windows_query = usage_windows(
        window_spec,
        events=events.relation((), lo, hi),
        customers=exp.to_table("customers"),
        customer_ids=customer_ids,
        every_window=rows_without_events(checked),
    )
    windows = events.con.sql(windows_query.sql(dialect="duckdb")).to_arrow_table()
    try:
        flat = run_sql_metric(events.home, events.con, checked, windows)
    except UserError as error:
        raise UserError(f"{label}: {error}") from None
    if keys:
        arrays = [flat.column(k).combine_chunks() for k in keys]
        group = pa.StructArray.from_arrays(arrays, names=list(keys))
    else:
        group = pa.repeat(pa.scalar({}, type=pa.struct([])), flat.num_rows)
    return pa.table(
        {
            "customer_id": flat.column("customer_id"),
            "metric_id": pa.repeat(pa.scalar(definition.id, pa.string()), flat.num_rows),
            "window_start": flat.column("window_start"),
            "window_end": flat.column("window_end"),
            "group": group,
            "value": flat.column("value"),
        }
    )


def exact(value: Decimal) -> Decimal:
    """A metric value without the scale's trailing zeros (`1500.000000000000` -> `1500`)."""
    return value.normalize(_EXACT)


def usage_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The JSON rows of the CLI contract (values exact Decimals, timestamps naive UTC; a SQL
    metric's value is None where its query gives NULL)."""
    rows = table.to_pylist()
    for row in rows:
        if row["value"] is not None:
            row["value"] = exact(row["value"])
    return rows


def print_usage(table: pa.Table, fmt: str, metric: str) -> None:
    """Print usage rows of `metric` (as the user named it) as JSON (the CLI contract), a table,
    or CSV (one column per group key; refused when a group key has a fixed column's name)."""
    from engine.output import cell_text, print_json, print_table

    rows = usage_rows(table)
    if fmt == "json":
        print_json(rows)
        return
    keys = [field.name for field in table.schema.field("group").type]
    fixed = ["customer_id", "metric_id", "window_start", "window_end", "value"]
    if clashes := [k for k in keys if k in fixed]:
        raise UserError(
            f"--format {fmt}: group key(s) {', '.join(map(repr, clashes))} of metric {metric!r} "
            f"have the names of columns every usage row has ({', '.join(fixed)}), so the "
            "output would hold two columns of one name; use --format json, whose `group` "
            "object keeps them apart"
        )
    columns = [*fixed[:4], *keys, "value"]
    flat = [
        [
            row["customer_id"],
            row["metric_id"],
            row["window_start"],
            row["window_end"],
            *(row["group"][k] for k in keys),
            row["value"],
        ]
        for row in rows
    ]
    if fmt == "table":
        print_table(None, columns, flat)
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[cell_text(v) for v in r] for r in flat])
    else:
        raise UserError(f"--format {fmt!r} is not one of json, table, csv")
