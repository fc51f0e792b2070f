"""The normalised plan: a billable metric lowered, in one pass, into a few primitives.

Conditions (all must hold; an event that meets them is a *matching event* of the metric):

    OneOf(subject, values)                  subject present and equal to one of the values
    NoneOf(subject, values, absent_passes)  subject not equal to any value; absent passes or not
    Present(property) / Absent(property)    the property is / is not on the event
    IsDecimal(property)                     present and a finite decimal (metric_compiler.numbers)

Measures (what is computed over the matching events of a group):

    COUNT   -> Measure(COUNT_EVENTS)
    SUM     -> Measure(SUM,            key, DECIMAL)
    MAX     -> Measure(MAX,            key, DECIMAL)
    UNIQUE  -> Measure(COUNT_DISTINCT, key, TEXT)
    LATEST  -> Measure(LAST_BY_TIME,   key, DECIMAL)   greatest (timestamp, transaction_id)

A DECIMAL measure adds `IsDecimal(key)`: an event whose value is not a finite decimal is not a
matching event of that metric (it is excluded, not counted as zero).  Filters on one property
are merged into at most one condition (so `in_values` minus `not_in_values`, `exists: true`
and `not_in_values` into `NoneOf(absent_passes=False)`, ...).  Values are sorted so the SQL is
deterministic.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from metric_compiler.checks import check_metric
from metric_compiler.windows import Window
from warehouse.errors import UserError
from warehouse.models import AggregationType, BillableMetric, PropertyFilter


class SqlMetricNotSupported(UserError):
    """SQL metrics (issue 5) are not compiled yet."""


@dataclass(frozen=True)
class EventType:
    """The event's `event_type` (never absent)."""


@dataclass(frozen=True)
class Property:
    name: str


Subject = EventType | Property


@dataclass(frozen=True)
class OneOf:
    subject: Subject
    values: tuple[str, ...]


@dataclass(frozen=True)
class NoneOf:
    subject: Subject
    values: tuple[str, ...]
    absent_passes: bool


@dataclass(frozen=True)
class Present:
    prop: Property


@dataclass(frozen=True)
class Absent:
    prop: Property


@dataclass(frozen=True)
class IsDecimal:
    prop: Property


Condition = OneOf | NoneOf | Present | Absent | IsDecimal


def condition_subject(condition: Condition) -> Subject:
    if isinstance(condition, OneOf | NoneOf):
        return condition.subject
    if isinstance(condition, Present | Absent | IsDecimal):
        return condition.prop
    assert_never(condition)


class Reducer(enum.StrEnum):
    COUNT_EVENTS = "count_events"
    SUM = "sum"
    MAX = "max"
    COUNT_DISTINCT = "count_distinct"
    LAST_BY_TIME = "last_by_time"


class Operand(enum.StrEnum):
    NONE = "none"  # the measure reads no property
    TEXT = "text"  # the property's string value
    DECIMAL = "decimal"  # the property's value as DECIMAL(38, 12)
    # the property's value as BIGINT: known to be integer text, 1 to 18 ASCII digits
    # (compile_usage's integer_properties), so an exact integer below 10^18; aggregated as
    # BIGINT/HUGEINT and cast to DECIMAL(38, 12) once per result row
    INTEGER = "integer"


@dataclass(frozen=True)
class Measure:
    reducer: Reducer
    operand: Operand
    prop: Property | None = None


@dataclass(frozen=True)
class MetricPlan:
    metric_id: str
    name: str
    aggregation: AggregationType
    measure: Measure
    conditions: tuple[Condition, ...]
    group_keys: tuple[tuple[str, ...], ...]

    @property
    def properties(self) -> tuple[str, ...]:
        """Every event property the metric reads (filters and the aggregation key)."""
        names: list[str] = []
        for condition in self.conditions:
            subject = condition_subject(condition)
            if isinstance(subject, Property):
                names.append(subject.name)
        if self.measure.prop is not None:
            names.append(self.measure.prop.name)
        return tuple(dict.fromkeys(names))

    def describe(self) -> str:
        """One line naming the metric, for SQL comments."""
        what = self.aggregation.value
        if self.measure.prop is not None:
            what += f" of {self.measure.prop.name!r}"
        return f"metric {self.metric_id!r} ({self.name!r}): {what}"


@dataclass(frozen=True)
class UsagePlan:
    """One scan of the events computing one or more metrics over the same grouping."""

    metrics: tuple[MetricPlan, ...]
    group_by: tuple[str, ...]
    window: Window
    customer_ids: tuple[str, ...] | None

    @property
    def properties(self) -> tuple[str, ...]:
        names = [p for m in self.metrics for p in m.properties] + list(self.group_by)
        return tuple(dict.fromkeys(names))

    @property
    def fused(self) -> bool:
        return len(self.metrics) > 1


# ---------------------------------------------------------------------------------------------
# Lowering


def lower_measure(metric: BillableMetric) -> Measure:
    agg = metric.aggregation_type
    key = Property(metric.aggregation_key) if metric.aggregation_key is not None else None
    if agg is AggregationType.COUNT:
        return Measure(Reducer.COUNT_EVENTS, Operand.NONE)
    assert key is not None, "checked: keyed aggregations have an aggregation_key"
    if agg is AggregationType.SUM:
        return Measure(Reducer.SUM, Operand.DECIMAL, key)
    if agg is AggregationType.MAX:
        return Measure(Reducer.MAX, Operand.DECIMAL, key)
    if agg is AggregationType.UNIQUE:
        return Measure(Reducer.COUNT_DISTINCT, Operand.TEXT, key)
    if agg is AggregationType.LATEST:
        return Measure(Reducer.LAST_BY_TIME, Operand.DECIMAL, key)
    if agg is None:
        raise AssertionError("a standard metric always has an aggregation_type")
    assert_never(agg)


def _lower_property(
    prop: Property, filters: Sequence[PropertyFilter], needs_decimal: bool
) -> Condition | None:
    """At most one condition equivalent to all `filters` on `prop` (checked: not contradictory)."""
    exists = {f.exists for f in filters if f.exists is not None}
    in_lists = [set(f.in_values) for f in filters if f.in_values is not None]
    forbidden = set().union(*(f.not_in_values for f in filters if f.not_in_values is not None))
    if False in exists:
        return Absent(prop)
    if in_lists:
        # in_values implies presence; a decimal check is added separately for numeric measures
        return OneOf(prop, tuple(sorted(set.intersection(*in_lists) - forbidden)))
    required = True in exists or needs_decimal
    if forbidden:
        return NoneOf(prop, tuple(sorted(forbidden)), absent_passes=not required)
    if needs_decimal:
        return IsDecimal(prop)  # implies presence
    if required:
        return Present(prop)
    return None


def plan_metric(metric: BillableMetric) -> MetricPlan:
    """Check `metric` and lower it; a UserError listing every problem if it does not check."""
    label = f"billable metric {metric.name!r}" + (f" (id {metric.id!r})" if metric.id else "")
    if metric.sql is not None:
        raise SqlMetricNotSupported(f"{label}: SQL metrics are not supported yet")
    problems = check_metric(metric)
    if problems:
        raise UserError(f"{label}: " + "; ".join(problems))

    measure = lower_measure(metric)
    decimal_key = measure.prop if measure.operand is Operand.DECIMAL else None
    conditions: list[Condition] = []

    etf = metric.event_type_filter
    if etf is not None:
        forbidden = set(etf.not_in_values or ())
        if etf.in_values is not None:
            conditions.append(OneOf(EventType(), tuple(sorted(set(etf.in_values) - forbidden))))
        elif forbidden:
            conditions.append(NoneOf(EventType(), tuple(sorted(forbidden)), absent_passes=False))

    by_name: dict[str, list[PropertyFilter]] = {}
    for pf in metric.property_filters:
        by_name.setdefault(pf.name, []).append(pf)
    for name, filters in by_name.items():
        prop = Property(name)
        condition = _lower_property(prop, filters, needs_decimal=prop == decimal_key)
        if condition is not None:
            conditions.append(condition)
        if prop == decimal_key and not isinstance(condition, IsDecimal):
            conditions.append(IsDecimal(prop))

    return MetricPlan(
        metric_id=metric.id or metric.name,
        name=metric.name,
        aggregation=metric.aggregation_type,  # type: ignore[arg-type]  # checked: not None
        measure=measure,
        conditions=tuple(conditions),
        group_keys=tuple(tuple(k) for k in metric.group_keys),
    )


def check_group_by(plan: MetricPlan, group_by: Sequence[str]) -> None:
    """`group_by` must be a subset of one compound group key of the metric."""
    if not group_by:
        return
    duplicates = sorted({k for k in group_by if list(group_by).count(k) > 1})
    if duplicates:
        raise UserError(f"--group-by lists {', '.join(map(repr, duplicates))} more than once")
    if any(set(group_by) <= set(key) for key in plan.group_keys):
        return
    keys = ", ".join("[" + ", ".join(map(repr, k)) + "]" for k in plan.group_keys)
    raise UserError(
        f"--group-by {list(group_by)} is not a subset of one compound group key of billable "
        f"metric {plan.name!r}; its group keys are: " + (keys or "none (it has no group_keys)")
    )


def plan_usage(
    metrics: Sequence[BillableMetric],
    *,
    group_by: Sequence[str] = (),
    window: Window,
    customer_ids: Sequence[str] | None = None,
) -> UsagePlan:
    if not metrics:
        raise ValueError("plan_usage needs at least one metric")
    plans = tuple(plan_metric(m) for m in metrics)
    seen: set[str] = set()
    for plan in plans:
        if plan.metric_id in seen:
            raise UserError(f"billable metric {plan.metric_id!r} is listed twice in one query")
        seen.add(plan.metric_id)
        check_group_by(plan, group_by)
    return UsagePlan(
        metrics=plans,
        group_by=tuple(group_by),
        window=window,
        customer_ids=tuple(customer_ids) if customer_ids is not None else None,
    )
