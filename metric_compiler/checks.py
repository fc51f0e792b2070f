"""Apply-time checks of a billable metric (SEMANTICS.md section 2).

`check_metric(metric)` returns every problem of one metric together, each as a sentence that
names the field and the value and says what is expected (an empty list means the metric is
fine).  `meterql apply` prefixes each problem with the metric's name and file location.  The
compiler calls the same function and refuses a metric with problems, so nothing that fails here
ever reaches SQL.

Unknown fields and aggregation types are refused earlier, by the pydantic models.  A SQL metric
(`sql` set) gets the problems of metric_compiler.sql_metric (each `sql: line L, col C: ...` with
the source line and a caret under the place).
"""

from __future__ import annotations

from collections import defaultdict

from warehouse.models import AggregationType, BillableMetric, PropertyFilter

# Aggregations that read a property value, and so need an aggregation_key.
KEYED_AGGREGATIONS = frozenset(
    {AggregationType.SUM, AggregationType.MAX, AggregationType.UNIQUE, AggregationType.LATEST}
)


def _requires_presence(filters: list[PropertyFilter]) -> bool:
    """Whether the filters on one property make it required (exists: true or in_values)."""
    return any(f.exists is True or f.in_values is not None for f in filters)


def check_metric(metric: BillableMetric) -> list[str]:
    """Every apply-time problem of `metric`, in field order; [] when it is fine."""
    if metric.sql is not None:
        from metric_compiler.sql_metric import format_problems, sql_problems

        return [f"sql: {p}" for p in format_problems(metric.sql, sql_problems(metric.sql))]
    problems: list[str] = []
    agg = metric.aggregation_type
    key = metric.aggregation_key

    # -- aggregation ---------------------------------------------------------------------------
    if agg is AggregationType.COUNT:
        if key is not None:
            problems.append(
                f"aggregation_key {key!r} is not allowed with aggregation_type COUNT (COUNT "
                "counts events); remove aggregation_key or use SUM, MAX, UNIQUE or LATEST"
            )
    elif agg in KEYED_AGGREGATIONS:
        if key is None:
            problems.append(
                f"aggregation_type {agg.value} needs an aggregation_key (the property whose "
                "value it aggregates)"
            )
    else:  # pragma: no cover - pydantic refuses other values; None means a SQL metric
        raise AssertionError(f"unhandled aggregation type {agg!r}")

    # -- event type filter ---------------------------------------------------------------------
    etf = metric.event_type_filter
    if etf is not None:
        if etf.in_values is None and etf.not_in_values is None:
            problems.append(
                "event_type_filter has neither in_values nor not_in_values; give at least one "
                "or remove event_type_filter"
            )
        elif etf.in_values is not None and etf.not_in_values is not None:
            if set(etf.in_values) <= set(etf.not_in_values):
                problems.append(
                    f"event_type_filter can match no event: every value of in_values "
                    f"{etf.in_values} is also in not_in_values {etf.not_in_values}"
                )

    # -- property filters ----------------------------------------------------------------------
    by_name: dict[str, list[PropertyFilter]] = defaultdict(list)
    for i, pf in enumerate(metric.property_filters):
        by_name[pf.name].append(pf)
        where = f"property_filters[{i}] (property {pf.name!r})"
        if pf.exists is None and pf.in_values is None and pf.not_in_values is None:
            problems.append(f"{where} has no condition; give exists, in_values or not_in_values")
    for name, filters in by_name.items():
        problems.extend(_contradictions(name, filters))

    # -- presence of the aggregation key and group keys ----------------------------------------
    if (
        key is not None
        and agg is not AggregationType.COUNT
        and not _requires_presence(by_name.get(key, []))
    ):
        problems.append(
            f"aggregation_key {key!r} needs a property_filter on {key!r} with exists: true or "
            f"in_values (add {{name: {key!r}, exists: true}} to property_filters)"
        )

    seen_keys: dict[frozenset[str], int] = {}
    missing: list[str] = []
    for i, group_key in enumerate(metric.group_keys):
        repeated = sorted({p for p in group_key if group_key.count(p) > 1})
        if repeated:
            problems.append(
                f"group_keys[{i}] {group_key} lists {', '.join(map(repr, repeated))} more than once"
            )
        as_set = frozenset(group_key)
        if as_set in seen_keys:
            problems.append(
                f"group_keys[{i}] {group_key} duplicates group_keys[{seen_keys[as_set]}] "
                f"{metric.group_keys[seen_keys[as_set]]}; list each compound key once"
            )
        else:
            seen_keys[as_set] = i
        for prop in group_key:
            if prop not in missing and not _requires_presence(by_name.get(prop, [])):
                missing.append(prop)
    for prop in missing:
        problems.append(
            f"group key property {prop!r} needs a property_filter on {prop!r} with exists: true "
            f"or in_values (add {{name: {prop!r}, exists: true}} to property_filters)"
        )
    return problems


def _contradictions(name: str, filters: list[PropertyFilter]) -> list[str]:
    """Conditions on one property (possibly spread over several filters) that no event meets."""
    exists = {f.exists for f in filters if f.exists is not None}
    in_sets = [set(f.in_values) for f in filters if f.in_values is not None]
    not_in = set().union(*(f.not_in_values for f in filters if f.not_in_values is not None))
    problems: list[str] = []
    if exists == {True, False}:
        problems.append(
            f"property_filters on {name!r} say both exists: true and exists: false; no event "
            "can match"
        )
    if False in exists and in_sets:
        problems.append(
            f"property_filters on {name!r} combine exists: false with in_values "
            f"{sorted(set().union(*in_sets))}; in_values requires the property to be present, "
            "so no event can match"
        )
    if in_sets:
        allowed = set.intersection(*in_sets) - not_in
        if not allowed:
            problems.append(
                f"property_filters on {name!r} can match no value: no value is in every "
                f"in_values list and outside not_in_values {sorted(not_in)}"
            )
    return problems
