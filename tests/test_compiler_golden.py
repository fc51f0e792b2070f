"""Golden SQL of the metric compiler, each query also executed on DuckDB and compared with the
independent evaluator (tests/evaluator.py).

One golden file per aggregation x filter/window shape under tests/golden/.  Regenerate with
`pytest tests/test_compiler_golden.py --update-golden` and review the diff.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from evaluator import (
    FIXTURE_END,
    FIXTURE_START,
    evaluate,
    fixture_events,
    fixture_windows,
    load_events,
    load_windows,
)
from sqlglot import exp

from metric_compiler import Window, compile_usage
from metric_compiler.usage_query import MAX_SLICE_BOUNDARIES
from warehouse.ingest.write import integer_text
from warehouse.models import BillableMetric

GOLDEN = Path(__file__).parent / "golden"
AGGREGATIONS = ("count", "sum", "max", "unique", "latest")


@dataclass(frozen=True)
class Shape:
    event_type_filter: dict[str, Any] | None = None
    property_filters: tuple[dict[str, Any], ...] = ()
    group_keys: tuple[tuple[str, ...], ...] = ()
    group_by: tuple[str, ...] = ()
    window: str = "none"
    customers: tuple[str, ...] | None = None
    filtering: bool = field(default=False)  # the shape must change the result vs no filter


SHAPES: dict[str, Shape] = {
    "no_filter": Shape(),
    "event_type_in": Shape(event_type_filter={"in_values": ["llm_request", "embedding"]},
                           filtering=True),
    "event_type_not_in": Shape(event_type_filter={"not_in_values": ["api_call"]}, filtering=True),
    "exists_true": Shape(property_filters=({"name": "model", "exists": True},), filtering=True),
    "exists_false": Shape(property_filters=({"name": "region", "exists": False},),
                          filtering=True),
    "in_values": Shape(property_filters=({"name": "model", "in_values": ["gpt-4o", "o3"]},),
                       filtering=True),
    "not_in_values": Shape(property_filters=({"name": "region", "not_in_values": ["eu-west-1"]},),
                           filtering=True),
    "compound_group_key": Shape(
        property_filters=({"name": "model", "exists": True},
                          {"name": "region", "in_values": ["us-east-1", "eu-west-1"]},
                          {"name": "user", "exists": True}),
        group_keys=(("model", "region"), ("user",)),
        group_by=("region", "model"),
    ),
    "window_hour": Shape(window="hour"),
    "window_day": Shape(window="day"),
    "window_relation": Shape(window="relation"),
    "window_sliced": Shape(window="sliced"),  # relation windows joined by (customer, slice)
    "one_customer": Shape(customers=("c'4",)),
}  # fmt: skip


def metric_for(agg: str, shape: Shape) -> BillableMetric:
    doc: dict[str, Any] = {
        "id": f"bm-{agg}",
        "name": f"{agg.title()} metric",
        "aggregation_type": agg,
        "property_filters": list(shape.property_filters),
        "group_keys": [list(k) for k in shape.group_keys],
    }
    if agg != "count":
        doc["aggregation_key"] = "tokens"
        doc["property_filters"].append({"name": "tokens", "exists": True})
    if shape.event_type_filter is not None:
        doc["event_type_filter"] = shape.event_type_filter
    return BillableMetric.model_validate(doc)


def window_for(shape: Shape) -> Window:
    if shape.window == "relation":
        return Window.relation(exp.to_table("windows"))
    if shape.window == "sliced":
        times = [t for w in fixture_windows() for t in (w.window_start, w.window_end)]
        return Window.relation(exp.to_table("windows"), boundaries=times)
    return Window.parse(shape.window, FIXTURE_START, FIXTURE_END)


def expected_for(metric: BillableMetric, shape: Shape) -> list[tuple[Any, ...]]:
    return evaluate(
        metric,
        EVENTS,
        window=fixture_windows() if shape.window in ("relation", "sliced") else shape.window,
        start=FIXTURE_START,
        end=FIXTURE_END,
        group_by=shape.group_by,
        customer_ids=shape.customers,
    )


EVENTS = fixture_events()
CASES = [(agg, shape) for agg in AGGREGATIONS for shape in SHAPES]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    load_events(con, EVENTS)
    load_windows(con, fixture_windows())
    return con


def normalise(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Decimals compared by value (DECIMAL(38, 12) scale aside)."""
    return [tuple(v.normalize() if isinstance(v, Decimal) else v for v in r) for r in rows]


@pytest.mark.parametrize(("agg", "shape_name"), CASES, ids=[f"{a}-{s}" for a, s in CASES])
def test_golden_sql_and_result(
    agg: str, shape_name: str, con: duckdb.DuckDBPyConnection, request: pytest.FixtureRequest
) -> None:
    shape = SHAPES[shape_name]
    metric = metric_for(agg, shape)
    compiled = compile_usage(
        metric,
        exp.to_table("events"),
        window=window_for(shape),
        group_by=shape.group_by,
        customer_ids=shape.customers,
    )
    path = GOLDEN / f"{agg}__{shape_name}.sql"
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(compiled.sql)
    assert path.exists(), f"no golden file {path.name}; run pytest with --update-golden"
    assert compiled.sql == path.read_text(), f"{path.name} differs; review, then --update-golden"

    # The golden query, run on DuckDB, agrees with the independent evaluator.
    got = con.execute(path.read_text()).fetchall()
    expected = expected_for(metric, shape)
    assert expected, "the fixture must produce rows for every case"
    assert normalise(got) == normalise(expected)
    assert compiled.columns == tuple(d[0] for d in con.execute(compiled.sql).description)
    assert f"metric 'bm-{agg}' ('{agg.title()} metric')" in compiled.sql
    if shape.filtering:  # the filter is exercised: it changes the result
        assert normalise(expected) != normalise(expected_for(metric_for(agg, Shape()), shape))


def test_every_golden_file_belongs_to_a_case() -> None:
    names = {f"{agg}__{shape}.sql" for agg, shape in CASES} | {
        "fused__three_metrics.sql",
        "fused__integer_sliced.sql",
        "events__rare_keys.sql",  # tests/test_rare_properties.py
    }
    assert {p.name for p in GOLDEN.glob("*.sql")} == names


def test_fused_golden_one_scan_many_metrics(
    con: duckdb.DuckDBPyConnection, request: pytest.FixtureRequest
) -> None:
    shape = SHAPES["event_type_in"]
    metrics = [metric_for("count", Shape()), metric_for("sum", shape), metric_for("latest", shape)]
    window = Window.relation(exp.to_table("windows"))
    compiled = compile_usage(metrics, exp.to_table("events"), window=window)
    path = GOLDEN / "fused__three_metrics.sql"
    if request.config.getoption("--update-golden"):
        path.write_text(compiled.sql)
    assert compiled.sql == path.read_text()
    assert compiled.sql.count("FROM events") == 1  # one scan of the events
    for i in (1, 2):  # each metric aggregates only its own events (expressions.filtered)
        assert compiled.sql.count(f'"m{i}_match"') >= 2  # defined in "events", used in "usage"
    assert '"m0_match"' not in compiled.sql  # the count has no condition: every event counts
    got = con.execute(compiled.sql).fetchall()
    expected = sorted(
        (
            row
            for m in metrics
            for row in evaluate(m, EVENTS, window=fixture_windows(), start=None, end=None)
        ),
        key=lambda r: (r[0], r[2], r[1]),
    )
    assert normalise(got) == normalise(expected)


def test_fused_golden_invoice_run_shape_over_integer_text(request: pytest.FixtureRequest) -> None:
    # the invoice run's usage query: sliced windows, no customer column, and the aggregation
    # key known to hold integer text only (the manifest's integer_columns): SUM and MAX read
    # it as BIGINT without the decimal check or a presence test of their own
    events = [
        replace(e, properties={**e.properties, "tokens": str(len(e.properties["tokens"]))})
        if "tokens" in e.properties and not integer_text(pa.array([e.properties["tokens"]]))
        else e
        for e in EVENTS
    ]
    metrics = [metric_for("count", Shape()), metric_for("sum", Shape()), metric_for("max", Shape())]
    metrics[2] = metrics[2].model_copy(update={"id": "bm-max"})
    window = window_for(SHAPES["window_sliced"])
    compiled = compile_usage(
        metrics,
        exp.to_table("events"),
        window=window,
        customer_column=False,
        integer_properties={"tokens"},
    )
    path = GOLDEN / "fused__integer_sliced.sql"
    if request.config.getoption("--update-golden"):
        path.write_text(compiled.sql)
    assert compiled.sql == path.read_text()
    assert "GLOB" not in compiled.sql and "AS BIGINT)" in compiled.sql
    assert '"m1_match"' not in compiled.sql and '"m2_match"' not in compiled.sql
    con = duckdb.connect()
    load_events(con, events)
    load_windows(con, fixture_windows())
    got = con.execute(compiled.sql).fetchall()
    expected = [
        row[1:]
        for m in metrics
        for row in evaluate(m, events, window=fixture_windows(), start=None, end=None)
    ]
    assert expected and sorted(normalise(got), key=repr) == sorted(normalise(expected), key=repr)


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_relation_windows_without_the_customer_column(
    con: duckdb.DuckDBPyConnection, agg: str
) -> None:
    # the invoice run's shape: window ids belong to one customer, so grouping by window_id
    # alone gives the same rows, without customer_id (metric_compiler.compile_usage)
    shape = SHAPES["window_relation"]
    metrics = [metric_for(agg, shape), metric_for("count", Shape())]
    metrics[1] = metrics[1].model_copy(update={"id": "bm-other"})
    window = Window.relation(exp.to_table("windows"))
    full = compile_usage(metrics, exp.to_table("events"), window=window)
    lean = compile_usage(metrics, exp.to_table("events"), window=window, customer_column=False)
    assert lean.columns == full.columns[1:]
    assert '"customer_id" AS' not in lean.sql.split('"usage" AS')[0].split("SELECT", 1)[1]
    want = sorted(row[1:] for row in con.execute(full.sql).fetchall())
    assert want and sorted(con.execute(lean.sql).fetchall()) == want


def test_the_customer_column_is_kept_without_relation_windows() -> None:
    metric = metric_for("sum", Shape())
    with pytest.raises(ValueError, match="customer_column=False needs relation windows"):
        compile_usage(
            metric,
            exp.to_table("events"),
            window=Window.parse("day", FIXTURE_START, FIXTURE_END),
            customer_column=False,
        )


def test_fused_metrics_that_list_their_event_types_scan_only_those(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # every metric lists its event types: the scan keeps those types (one IN, pushed into the
    # Parquet scan) instead of the disjunction of the predicates; each predicate still decides
    # its own metric, so the rows equal each metric computed alone
    shape = SHAPES["event_type_in"]
    metrics = [
        metric_for("sum", shape),
        metric_for("unique", shape),
        metric_for("count", Shape(event_type_filter={"in_values": ["api_call"]})),
        metric_for(
            "latest", replace(SHAPES["in_values"], event_type_filter=shape.event_type_filter)
        ),
    ]
    window = Window.relation(exp.to_table("windows"))
    compiled = compile_usage(metrics, exp.to_table("events"), window=window)
    assert """"e"."event_type" IN ('api_call', 'embedding', 'llm_request')""" in compiled.sql
    got = con.execute(compiled.sql).fetchall()
    expected = sorted(
        (
            row
            for m in metrics
            for row in evaluate(m, EVENTS, window=fixture_windows(), start=None, end=None)
        ),
        key=lambda r: (r[0], r[2], r[1]),
    )
    assert expected and normalise(got) == normalise(expected)


def test_sliced_windows_off_their_boundaries_fail_the_query(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # a caller that gives boundaries missing a window's start or end gets an error, never a
    # silently smaller usage (w2 starts at noon, w4 before the fixture's first boundary)
    metric = metric_for("count", Shape())
    wrong = [FIXTURE_START + timedelta(days=d) for d in range(6)]
    window = Window.relation(exp.to_table("windows"), boundaries=wrong)
    compiled = compile_usage(metric, exp.to_table("events"), window=window)
    with pytest.raises(duckdb.Error, match="usage window starts or ends off its slice boundaries"):
        con.execute(compiled.sql).fetchall()


def test_many_boundaries_or_other_dialects_use_the_time_range_join(
    con: duckdb.DuckDBPyConnection,
) -> None:
    metric = metric_for("sum", Shape())
    times = [t for w in fixture_windows() for t in (w.window_start, w.window_end)]
    extra = [FIXTURE_START + timedelta(minutes=m) for m in range(MAX_SLICE_BOUNDARIES)]
    many = Window.relation(exp.to_table("windows"), boundaries=times + extra)
    few = Window.relation(exp.to_table("windows"), boundaries=times)
    ranged = compile_usage(metric, exp.to_table("events"), window=many)
    sliced = compile_usage(metric, exp.to_table("events"), window=few)
    assert '"slice"' not in ranged.sql and '"slice"' in sliced.sql
    assert con.execute(ranged.sql).fetchall() == con.execute(sliced.sql).fetchall()
    spark = compile_usage(metric, exp.to_table("events"), window=few, dialect="spark")
    assert "slice" not in spark.sql


def test_relation_window_boundaries_need_two_times() -> None:
    with pytest.raises(ValueError, match="at least two distinct times"):
        Window.relation(exp.to_table("windows"), boundaries=[FIXTURE_START, FIXTURE_START])
