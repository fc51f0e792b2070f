"""Property tests: random events (hostile values and names included) and random metric
definitions; the compiled SQL run on DuckDB must equal the independent evaluator."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
from evaluator import Event, WindowRow, evaluate, load_events, load_windows
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from metric_compiler import Window, check_metric, compile_usage
from warehouse.models import BillableMetric

START = datetime(2026, 3, 1)
END = datetime(2026, 3, 2, 12)

PROPERTY_NAMES = [
    "tokens",
    "model",
    "Model",
    'x"; DROP TABLE events; --',
    "it's",
    "[br]",
    "a.b",
    "sp ace",
    "zählung",
    "p_tokens",
]
VALUES = [
    "a",
    "b",
    "A",
    "'; DROP TABLE events; --",
    "",
    "10",
    "2.5",
    "-0",
    "+3",
    ".5",
    "7.",
    "1e5",
    "  3",
    "NaN",
    "Infinity",
    "-Infinity",
    "0.1234567890123",
    "0.123456789012",
    "9" * 18,
    "9" * 19,
    "1" + "0" * 30,
    "١",
]
EVENT_TYPES = ["t1", "t2", "T1", "t'3"]
CUSTOMERS = ["c1", "c2", "c'3"]

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def events_strategy(draw: st.DrawFn) -> list[Event]:
    n = draw(st.integers(0, 25))
    events = []
    for i in range(n):
        props = draw(
            st.dictionaries(st.sampled_from(PROPERTY_NAMES), st.sampled_from(VALUES), max_size=5)
        )
        minute = draw(st.sampled_from([-30, 0, 0, 59, 60, 61, 600, 1439, 1440, 2100, 2160, 2200]))
        events.append(
            Event(
                transaction_id=f"{draw(st.sampled_from(['a', 'b', 'c']))}-{i:03d}",
                customer_id=draw(st.sampled_from(CUSTOMERS)),
                event_type=draw(st.sampled_from(EVENT_TYPES)),
                timestamp=START + timedelta(minutes=minute, microseconds=draw(st.integers(0, 2))),
                properties=props,
            )
        )
    return events


values_list = st.lists(st.sampled_from(VALUES), min_size=1, max_size=3, unique=True)


@st.composite
def property_filter(draw: st.DrawFn) -> dict[str, Any]:
    f: dict[str, Any] = {"name": draw(st.sampled_from(PROPERTY_NAMES))}
    kind = draw(st.sampled_from(["exists", "in", "not_in", "exists+not_in", "in+not_in"]))
    if "exists" in kind:
        f["exists"] = draw(st.booleans())
    if kind.startswith("in"):
        f["in_values"] = draw(values_list)
    if "not_in" in kind:
        f["not_in_values"] = draw(values_list)
    return f


@st.composite
def metric_strategy(draw: st.DrawFn, index: int = 0) -> BillableMetric:
    agg = draw(st.sampled_from(["count", "sum", "max", "unique", "latest"]))
    doc: dict[str, Any] = {"id": f"m{index}", "name": f"metric {index}", "aggregation_type": agg}
    filters = draw(st.lists(property_filter(), max_size=3))
    etf = draw(st.sampled_from([None, "in", "not_in", "both"]))
    if etf is not None:
        doc["event_type_filter"] = {}
        if etf in ("in", "both"):
            doc["event_type_filter"]["in_values"] = draw(
                st.lists(st.sampled_from(EVENT_TYPES), min_size=1, max_size=3, unique=True)
            )
        if etf in ("not_in", "both"):
            doc["event_type_filter"]["not_in_values"] = draw(
                st.lists(st.sampled_from(EVENT_TYPES), min_size=1, max_size=2, unique=True)
            )
    required = []
    if agg != "count":
        doc["aggregation_key"] = draw(st.sampled_from(PROPERTY_NAMES))
        required.append(doc["aggregation_key"])
    group_keys = draw(
        st.lists(
            st.lists(st.sampled_from(PROPERTY_NAMES), min_size=1, max_size=3, unique=True),
            max_size=2,
        )
    )
    doc["group_keys"] = group_keys
    required += [p for k in group_keys for p in k]
    for name in dict.fromkeys(required):
        if draw(st.booleans()):
            filters.append({"name": name, "exists": True})
        else:
            filters.append({"name": name, "in_values": draw(values_list)})
    doc["property_filters"] = filters
    metric = BillableMetric.model_validate(doc)
    assume(check_metric(metric) == [])
    return metric


def run(compiled_sql: str, events: list[Event], windows: list[WindowRow]) -> list[tuple]:
    con = duckdb.connect()
    load_events(con, events, PROPERTY_NAMES)
    load_windows(con, windows)
    return con.execute(compiled_sql).fetchall()


def normalise(rows: list[tuple]) -> list[tuple]:
    return [tuple(v.normalize() if isinstance(v, Decimal) else v for v in r) for r in rows]


WINDOWS = [
    WindowRow("c1", "w1", START, START + timedelta(hours=12)),
    WindowRow("c1", "w2", START + timedelta(hours=1), END),
    WindowRow("c'3", "w3", START - timedelta(days=1), END + timedelta(days=1)),
]


def sliced(windows: list[WindowRow]) -> Window:
    """Relation windows with their boundaries: joined to events by (customer, slice)."""
    times = [t for w in windows for t in (w.window_start, w.window_end)]
    return Window.relation(exp.to_table("windows"), boundaries=times)


@SETTINGS
@given(
    events=events_strategy(),
    metric=metric_strategy(),
    window=st.sampled_from(["none", "hour", "day", "relation", "sliced"]),
    data=st.data(),
)
def test_engine_equals_evaluator(
    events: list[Event], metric: BillableMetric, window: str, data: st.DataObject
) -> None:
    keys = metric.group_keys
    group_by: list[str] = []
    if keys:
        key = data.draw(st.sampled_from(keys))
        group_by = data.draw(st.lists(st.sampled_from(key), unique=True))
    spec = (
        Window.relation(exp.to_table("windows"))
        if window == "relation"
        else sliced(WINDOWS)
        if window == "sliced"
        else Window.parse(window, START, END)
    )
    compiled = compile_usage(metric, exp.to_table("events"), window=spec, group_by=group_by)
    got = run(compiled.sql, events, WINDOWS)
    expected = evaluate(
        metric,
        events,
        window=WINDOWS if window in ("relation", "sliced") else window,
        start=START,
        end=END,
        group_by=group_by,
    )
    assert normalise(got) == normalise(expected)


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=events_strategy(),
    metrics=st.integers(2, 3).flatmap(lambda n: st.tuples(*map(metric_strategy, range(n)))),
    relation=st.booleans(),
    slices=st.booleans(),
)
def test_fused_scan_equals_each_metric(
    events: list[Event], metrics: tuple[BillableMetric, ...], relation: bool, slices: bool
) -> None:
    spec = (
        (sliced(WINDOWS) if slices else Window.relation(exp.to_table("windows")))
        if relation
        else Window.none(START, END)
    )
    compiled = compile_usage(list(metrics), exp.to_table("events"), window=spec)
    assert compiled.sql.count("FROM events") == 1
    got = run(compiled.sql, events, WINDOWS)
    expected = [
        row
        for m in metrics
        for row in evaluate(m, events, window=WINDOWS if relation else "none", start=START, end=END)
    ]
    expected.sort(key=lambda r: (r[0], r[2], r[1]))  # customer, window, metric
    assert normalise(got) == normalise(expected)


@SETTINGS
@given(events=events_strategy(), metric=metric_strategy())
def test_integer_properties_skip_only_a_check_that_cannot_fail(
    events: list[Event], metric: BillableMetric
) -> None:
    # the properties whose every value in these events is integer text (as the manifest would
    # record them) are read without the decimal text check: the rows are the evaluator's
    from warehouse.ingest.write import integer_text

    integers = {
        name
        for name in PROPERTY_NAMES
        if integer_text(pa.array([e.properties.get(name) for e in events], pa.string()))
    }
    window = Window.none(START, END)
    compiled = compile_usage(
        metric, exp.to_table("events"), window=window, integer_properties=integers
    )
    got = run(compiled.sql, events, WINDOWS)
    expected = evaluate(metric, events, window="none", start=START, end=END)
    assert normalise(got) == normalise(expected)


def _as_integer_text(value: str) -> str:
    """An integer text (1 to 18 ASCII digits) standing for `value` (itself when it is one)."""
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return value
    return "9" * 18 if len(value) > 18 else str(len(value) * 7)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=events_strategy(),
    metrics=st.integers(1, 3).flatmap(lambda n: st.tuples(*map(metric_strategy, range(n)))),
    window=st.sampled_from(["none", "relation", "sliced"]),
)
def test_fused_metrics_over_integer_properties_equal_each_metric(
    events: list[Event], metrics: tuple[BillableMetric, ...], window: str
) -> None:
    # the aggregation keys of the metrics hold integer text only (as the manifest would record
    # them): SUM, MAX and LATEST read them as BIGINT, SUM and MAX without a presence test of
    # their own; the rows still equal the evaluator's, metric by metric
    from warehouse.ingest.write import integer_text

    keys = {m.aggregation_key for m in metrics if m.aggregation_key}
    events = [
        replace(
            e,
            properties={
                k: _as_integer_text(v) if k in keys else v for k, v in e.properties.items()
            },
        )
        for e in events
    ]
    integers = {
        name
        for name in PROPERTY_NAMES
        if integer_text(pa.array([e.properties.get(name) for e in events], pa.string()))
    }
    assert keys <= integers
    spec = {
        "none": Window.none(START, END),
        "relation": Window.relation(exp.to_table("windows")),
        "sliced": sliced(WINDOWS),
    }[window]
    compiled = compile_usage(
        list(metrics), exp.to_table("events"), window=spec, integer_properties=integers
    )
    assert "GLOB" not in compiled.sql or not keys  # no decimal check of an integer key
    got = run(compiled.sql, events, WINDOWS)
    expected = [
        row
        for m in metrics
        for row in evaluate(
            m, events, window=WINDOWS if window != "none" else "none", start=START, end=END
        )
    ]
    assert sorted(normalise(got), key=repr) == sorted(normalise(expected), key=repr)
