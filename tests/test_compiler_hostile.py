"""Hostile names and values, number parsing, the checked tree, and the compiler's user errors."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pytest
import sqlglot
from evaluator import Event, evaluate, finite_decimal, load_events
from sqlglot import exp

from metric_compiler import Window, compile_usage, metric_properties
from metric_compiler.numbers import DECIMAL_PATTERN, is_decimal_text
from metric_compiler.verify import CompiledQueryError, verify
from sql_templates import SqlComment, render
from warehouse.errors import UserError
from warehouse.models import BillableMetric

START, END = datetime(2026, 1, 1), datetime(2026, 1, 2)
EVENTS_TABLE = exp.to_table("events")

HOSTILE = [
    'x"; DROP TABLE events; --',
    "it's",
    "[bracket]",
    "a.b",
    "with space",
    "zählung ✓",
    "Model",
    "model",
    "p_model",
    "*/ SELECT 1; /*",
]


def metric(**fields: Any) -> BillableMetric:
    return BillableMetric.model_validate({"id": "bm", "name": "hostile", **fields})


def run(sql: str, events: list[Event], properties: list[str]) -> list[tuple]:
    con = duckdb.connect()
    load_events(con, events, properties)
    rows = con.execute(sql).fetchall()
    assert con.execute("SELECT count(*) FROM events").fetchone() == (len(events),)
    return [tuple(v.normalize() if isinstance(v, Decimal) else v for v in r) for r in rows]


def at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


GROUPS = ["Model", 'x"; DROP TABLE events; --', "zählung ✓"]
PAIRS = [(key, group) for key in HOSTILE for group in GROUPS if key != group]


@pytest.mark.parametrize(("key", "group"), PAIRS)
def test_hostile_property_names_are_ordinary_properties(key: str, group: str) -> None:
    bad_value = "'); DROP TABLE events; --"
    events = [
        Event("t1", "c1", "use", at(1), {key: "5", group: "a"}),
        Event("t2", "c1", "use", at(2), {key: "7", group: bad_value}),
        Event("t3", "c1", "use", at(3), {key: "100", group: "b"}),  # excluded by not_in_values
        Event("t4", "c2", "use", at(4), {key: "1", group: "a"}),
        Event("t5", "c2", "use", at(5), {group: "a"}),  # no key: excluded
    ]
    m = metric(
        aggregation_type="sum",
        aggregation_key=key,
        property_filters=[
            {"name": key, "exists": True},
            {"name": group, "exists": True, "not_in_values": ["b"]},
        ],
        group_keys=[[group]],
    )
    compiled = compile_usage(m, EVENTS_TABLE, window=Window.none(START, END), group_by=[group])
    assert set(metric_properties(m, [group])) == {key, group}
    got = run(compiled.sql, events, [key, group])
    expected = evaluate(m, events, start=START, end=END, group_by=[group])
    assert got == [tuple(v.normalize() if isinstance(v, Decimal) else v for v in r)
                   for r in expected]  # fmt: skip
    assert {(r[0], r[-2], r[-1]) for r in got} >= {("c1", "a", Decimal(5)), ("c2", "a", 1)}


def test_model_and_Model_are_different_properties() -> None:
    events = [
        Event("t1", "c1", "use", at(1), {"model": "1", "Model": "10"}),
        Event("t2", "c1", "use", at(2), {"model": "2"}),
        Event("t3", "c1", "use", at(3), {"Model": "20"}),
    ]
    for key, total in (("model", 3), ("Model", 30)):
        m = metric(
            aggregation_type="sum",
            aggregation_key=key,
            property_filters=[{"name": key, "exists": True}],
        )
        sql = compile_usage(m, EVENTS_TABLE, window=Window.none(START, END)).sql
        assert run(sql, events, ["model", "Model"])[0][-1] == total


def test_hostile_filter_values_and_event_types_are_literals() -> None:
    values = ["'", "''", "\\", "%", "_", "a' OR '1'='1", "\n", "ü", "😀"]
    events = [
        Event(f"t{i}", "c1", v, at(i), {"k": v, "n": "1"}) for i, v in enumerate([*values, "z"])
    ]
    m = metric(
        aggregation_type="count",
        event_type_filter={"in_values": values},
        property_filters=[{"name": "k", "in_values": values[:5]}],
    )
    sql = compile_usage(m, EVENTS_TABLE, window=Window.none(START, END)).sql
    assert run(sql, events, ["k", "n"]) == [("c1", "bm", START, END, Decimal(5))]


NUMBERS: list[tuple[str, Decimal | None]] = [
    ("10", Decimal(10)),
    ("-0", Decimal(0)),
    ("+7", Decimal(7)),
    (".5", Decimal("0.5")),
    ("5.", Decimal(5)),
    ("-3.25", Decimal("-3.25")),
    ("0.000000000001", Decimal("0.000000000001")),
    ("0.123456789012", Decimal("0.123456789012")),
    ("999999999999999999.999999999999", Decimal("999999999999999999.999999999999")),  # largest
    ("-999999999999999999", Decimal("-999999999999999999")),
    ("0000000000000000000000001", Decimal(1)),  # leading zeros are fine
    ("1000000000000000000", None),  # 10^18: out of range
    ("0.1234567890123", None),  # 13 fractional digits: excluded, not rounded
    ("1.0000000000000", None),  # also 13, although the value would fit
    ("9999999999999999999", None),
    ("+-1", None),
    ("1-", None),
    ("\t1", None),
    ("１", None),
    ("1e5", None),
    ("1E5", None),
    ("  3", None),
    ("3 ", None),
    ("NaN", None),
    ("nan", None),
    ("Infinity", None),
    ("-Infinity", None),
    ("inf", None),
    ("", None),
    (".", None),
    ("-", None),
    ("1_000", None),
    ("0x10", None),
    ("1,5", None),
    ("١٢", None),
    ("1.2.3", None),
    ("++1", None),
]


@pytest.mark.parametrize(("text", "value"), NUMBERS, ids=[repr(t) for t, _ in NUMBERS])
@pytest.mark.parametrize("agg", ["sum", "max", "latest"])
def test_number_texts_count_exactly_or_exclude_the_event(
    text: str, value: Decimal | None, agg: str
) -> None:
    assert finite_decimal(text) == value  # the evaluator agrees with this table
    assert (re.fullmatch(DECIMAL_PATTERN, text) is not None) >= (value is not None)
    events = [
        Event("t1", "c1", "use", at(1), {"v": text}),
        Event("t0", "c2", "use", at(1), {"v": text}),
        Event("t2", "c2", "use", at(0), {"v": "2"}),
    ]
    m = metric(
        aggregation_type=agg, aggregation_key="v", property_filters=[{"name": "v", "exists": True}]
    )
    sql = compile_usage(m, EVENTS_TABLE, window=Window.none(START, END)).sql
    got = {r[0]: r[-1] for r in run(sql, events, ["v"])}
    if value is None:  # excluded: c1 has no row, c2 counts only its valid event
        assert got == {"c2": Decimal(2)}
    else:
        combined = {"sum": value + 2, "max": max(value, Decimal(2)), "latest": value}[agg]
        assert got == {"c1": value.normalize(), "c2": combined.normalize()}


def test_unique_counts_strings_and_count_ignores_numbers() -> None:
    events = [
        Event("t1", "c1", "use", at(1), {"u": "1"}),
        Event("t2", "c1", "use", at(2), {"u": "1.0"}),
        Event("t3", "c1", "use", at(3), {"u": "NaN"}),
        Event("t4", "c1", "use", at(4), {"u": "1"}),
    ]
    unique = metric(
        aggregation_type="unique",
        aggregation_key="u",
        property_filters=[{"name": "u", "exists": True}],
    )
    count = metric(aggregation_type="count")
    window = Window.none(START, END)
    assert run(compile_usage(unique, EVENTS_TABLE, window=window).sql, events, ["u"])[0][-1] == 3
    assert run(compile_usage(count, EVENTS_TABLE, window=window).sql, events, ["u"])[0][-1] == 4


def test_latest_breaks_timestamp_ties_by_transaction_id() -> None:
    events = [
        Event("b", "c1", "use", at(5), {"v": "2"}),
        Event("c", "c1", "use", at(5), {"v": "3"}),
        Event("a", "c1", "use", at(5), {"v": "1"}),
        Event("z", "c1", "use", at(4), {"v": "9"}),
        Event("zz", "c1", "use", at(6), {"v": "oops"}),  # later but not a number: excluded
    ]
    m = metric(
        aggregation_type="latest",
        aggregation_key="v",
        property_filters=[{"name": "v", "exists": True}],
    )
    sql = compile_usage(m, EVENTS_TABLE, window=Window.none(START, END)).sql
    assert run(sql, events, ["v"])[0][-1] == 3


def test_metric_names_cannot_escape_their_comment() -> None:
    m = BillableMetric.model_validate(
        {
            "id": "*/ DROP TABLE events; /*",
            "name": "a */ DROP TABLE events; --",
            "aggregation_type": "count",
        }
    )
    compiled = compile_usage(m, EVENTS_TABLE, window=Window.none(START, END))
    [tree] = sqlglot.parse(compiled.sql, read="duckdb")
    comments = [c for node in tree.walk() for c in node.comments or []]
    assert comments and all("*/" not in c for c in comments)
    assert "/* metric '* / DROP TABLE events; / *' ('a * / DROP TABLE events; --')" in compiled.sql
    rows = run(compiled.sql, [Event("t", "c1", "use", at(1), {})], [])
    assert rows[0][1] == "*/ DROP TABLE events; /*"  # the id is data, in a string literal


def test_template_loader_refuses_plain_text() -> None:
    with pytest.raises(TypeError, match="template parameter source is a str"):
        render("usage.sql.j2", source="events; DROP TABLE events")
    with pytest.raises(TypeError, match=r"blocks\[0\].where is a int"):
        render("usage.sql.j2", blocks=[{"where": 1}])
    assert render("usage.sql.j2", header=SqlComment("a */ b"), **_params()).startswith(
        "/* a * / b */"
    )


def _params() -> dict[str, Any]:
    col = exp.column("customer_id", quoted=True)
    return {
        "source": exp.to_table("events"),
        "window_slices": None,
        "partial_keys": [],
        "partial_aggregates": [],
        "usage_from": exp.to_table("events"),
        "usage_join": None,
        "usage_on": None,
        "windows": None,
        "window_on": None,
        "scan_columns": [col],
        "where": None,
        "fused": False,
        "keys": [col],
        "aggregates": [],
        "blocks": [{"columns": [col], "where": None}],
        "order_by": [col],
    }


def _verify(sql: str, **overrides: Any) -> None:
    tree = sqlglot.parse_one(sql, read="duckdb")
    args: dict[str, Any] = {
        "inputs": [exp.to_table("events")],
        "fragments": [],
        "cte_names": [],
        "literals": {(True, "a")},
        "comments": set(),
        "columns": ["x"],
        **overrides,
    }
    verify(tree, **args)  # type: ignore[arg-type]


def test_checked_tree_refuses_what_the_compiler_did_not_build() -> None:
    _verify("SELECT 'a' AS x FROM events")
    with pytest.raises(CompiledQueryError, match="unexpected literal 'b'"):
        _verify("SELECT 'b' AS x FROM events")
    with pytest.raises(CompiledQueryError, match="unexpected relation"):
        _verify("SELECT 'a' AS x FROM catalog_secrets")
    with pytest.raises(CompiledQueryError, match="unexpected relation"):
        _verify("SELECT 'a' AS x FROM read_csv('/etc/passwd')")
    with pytest.raises(CompiledQueryError, match="unexpected comments"):
        _verify("SELECT 'a' AS x /* hi */ FROM events")
    with pytest.raises(CompiledQueryError, match="returns columns"):
        _verify("SELECT 'a' AS y FROM events")
    with pytest.raises(CompiledQueryError, match="intact"):
        precedence = exp.or_(exp.true(), exp.false())
        _verify("SELECT 'a' AS x FROM events WHERE 1 = 1 AND TRUE OR FALSE", fragments=[precedence])
    with pytest.raises(CompiledQueryError, match="not a query"):
        from metric_compiler.verify import parse_query

        parse_query("DROP TABLE events")
    with pytest.raises(CompiledQueryError, match="2 statements"):
        from metric_compiler.verify import parse_query

        parse_query("SELECT 1; SELECT 2")


def test_sql_metrics_are_not_supported_yet() -> None:
    m = BillableMetric.model_validate({"name": "s", "sql": "SELECT count(*) AS value FROM events"})
    with pytest.raises(UserError, match="billable metric 's': SQL metrics are not supported yet"):
        compile_usage(m, EVENTS_TABLE, window=Window.none(START, END))


def test_bad_metric_is_refused_with_every_problem() -> None:
    m = BillableMetric.model_validate(
        {"name": "bad", "aggregation_type": "sum", "aggregation_key": "k", "group_keys": [["g"]]}
    )
    with pytest.raises(UserError) as error:
        compile_usage(m, EVENTS_TABLE, window=Window.none(START, END))
    assert "billable metric 'bad'" in str(error.value)
    assert "aggregation_key 'k' needs" in str(error.value)
    assert "group key property 'g' needs" in str(error.value)


def test_group_by_must_be_a_subset_of_one_compound_key() -> None:
    m = metric(
        aggregation_type="count",
        property_filters=[{"name": p, "exists": True} for p in ("model", "region", "user")],
        group_keys=[["model", "region"], ["user"]],
    )
    window = Window.none(START, END)
    compile_usage(m, EVENTS_TABLE, window=window, group_by=["region"])
    with pytest.raises(UserError) as error:
        compile_usage(m, EVENTS_TABLE, window=window, group_by=["model", "user"])
    message = str(error.value)
    assert "--group-by ['model', 'user'] is not a subset of one compound group key" in message
    assert "['model', 'region'], ['user']" in message and "'hostile'" in message
    with pytest.raises(UserError, match="no group_keys"):
        compile_usage(metric(aggregation_type="count"), EVENTS_TABLE, window=window, group_by=["x"])
    with pytest.raises(UserError, match="lists 'user' more than once"):
        compile_usage(m, EVENTS_TABLE, window=window, group_by=["user", "user"])


def test_window_and_dialect_errors() -> None:
    with pytest.raises(UserError, match="--window 'week' is not a usage window; expected one of"):
        Window.parse("week", START, END)
    assert Window.parse("DAY", START, END).kind.value == "day"
    with pytest.raises(UserError, match="start 2026-01-02T00:00:00Z is not before end"):
        Window.hour(END, START)
    m = metric(aggregation_type="count")
    with pytest.raises(
        UserError,
        match="--dialect 'sparkk' is not a supported SQL dialect; expected one of duckdb, spark, "
        "trino, bigquery, snowflake, clickhouse; did you mean 'spark'",
    ):
        compile_usage(m, EVENTS_TABLE, window=Window.none(START, END), dialect="sparkk")


def test_fused_metrics_need_distinct_ids() -> None:
    m = metric(aggregation_type="count")
    with pytest.raises(UserError, match="'bm' is listed twice"):
        compile_usage([m, m], EVENTS_TABLE, window=Window.none(START, END))


def test_decimal_check_accepts_exactly_the_documented_language() -> None:
    """Every string of up to five characters over `01.+-` (and hostile samples): the SQL check
    agrees with the evaluator's reading of the rule."""
    texts = ["".join(p) for n in range(6) for p in itertools.product("01.+-", repeat=n)]
    texts += [t for t, _ in NUMBERS]
    column = exp.column("t", quoted=True)
    check = exp.select(column, is_decimal_text(column)).from_("texts").sql("duckdb")
    con = duckdb.connect()
    con.execute("CREATE TABLE texts AS SELECT unnest(?::VARCHAR[]) AS t", [texts])
    got = {t: bool(ok) for t, ok in con.execute(check).fetchall()}
    assert len(got) == len(set(texts))
    assert {t for t, ok in got.items() if ok} == {t for t in got if finite_decimal(t) is not None}


def test_unordered_output_leaves_out_the_order_by() -> None:
    m = metric(aggregation_type="count")
    ordered = compile_usage(m, EVENTS_TABLE, window=Window.none(START, END))
    unordered = compile_usage(m, EVENTS_TABLE, window=Window.none(START, END), ordered=False)
    assert "ORDER BY" in ordered.sql and "ORDER BY" not in unordered.sql
    events = [Event(f"t{i}", f"c{i % 3}", "use", at(i), {}) for i in range(9)]
    assert sorted(run(unordered.sql, events, [])) == run(ordered.sql, events, [])


@pytest.mark.parametrize("window", ["none", "day"])
def test_parameter_bounds_run_with_bound_values(window: str) -> None:
    """`meterql compile` without a period emits $start/$end; bound, they mean the period."""
    events = [Event(f"t{i}", "c1", "use", START + timedelta(hours=7 * i), {}) for i in range(12)]
    m = metric(aggregation_type="count")
    lo, hi = exp.Placeholder(this="start"), exp.Placeholder(this="end")
    sql = compile_usage(m, EVENTS_TABLE, window=Window.parse(window, lo, hi)).sql
    assert "$start" in sql and "$end" in sql
    con = duckdb.connect()
    load_events(con, events)
    end = START + timedelta(days=2, hours=3)
    got = con.execute(sql, {"start": START, "end": end}).fetchall()
    expected = evaluate(m, events, window=window, start=START, end=end)
    assert [tuple(r) for r in got] == expected
