"""Scoping: the rewritten query, run once for every customer and window, returns exactly what the
author's query returns when it is run alone over each customer's events in each window.

The oracle is independent of the rewrite: for each (customer, window) it loads that customer's
events of that window into a table `events` (properties as a STRUCT, so `properties.x` is plain
DuckDB field access) and runs the author's text verbatim.
"""

from __future__ import annotations

import gc
import itertools
import random
from datetime import datetime, timedelta
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from metric_compiler.sql_metric import check_sql, scoped_query
from metric_compiler.sql_metric.scope import exact_value
from warehouse.layout import property_column

PROPERTIES = ["user_id", "region", "tokens", 'a b"c']
T0 = datetime(2024, 1, 1)
DAY = timedelta(days=1)

# (customer, window_id, start, end): overlapping windows, a window without events, a customer
# without events, and a customer with several windows.
WINDOWS = [
    ("c1", 0, T0, T0 + 2 * DAY),
    ("c1", 1, T0 + DAY, T0 + 3 * DAY),
    ("c2", 0, T0, T0 + 4 * DAY),
    ("c3", 0, T0 + 3 * DAY + timedelta(hours=23), T0 + 4 * DAY),
    ("c3", 7, T0 + 10 * DAY, T0 + 11 * DAY),
    ("c4", 0, T0, T0 + 4 * DAY),
]


def random_events(seed: int, count: int = 240) -> list[dict]:
    """Events with distinct timestamps (so arg_max/arg_min have no ties to break)."""
    rnd = random.Random(seed)
    stamps = rnd.sample(range(4 * 86_400 * 1000), count)
    events = []
    for i, ms in enumerate(stamps):
        events.append(
            {
                "transaction_id": f"t{i:04d}",
                "customer_id": rnd.choice(["c1", "c2", "c3", "c9"]),
                "event_type": rnd.choice(["api_request", "login", "error"]),
                "timestamp": T0 + timedelta(milliseconds=ms),
                "properties": {
                    "user_id": rnd.choice(["u1", "u2", "u3", "u4", None]),
                    "region": rnd.choice(["eu", "us", "ap", None]),
                    "tokens": rnd.choice(["1", "2", "10", "2.5", "100", "0", None]),
                    'a b"c': rnd.choice(["x", "y", None]),
                },
            }
        )
    return events


def source_table(events: list[dict]) -> pa.Table:
    """The read API's relation: canonical columns plus one column per property."""
    columns = {
        "transaction_id": pa.array([e["transaction_id"] for e in events], pa.string()),
        "customer_id": pa.array([e["customer_id"] for e in events], pa.string()),
        "event_type": pa.array([e["event_type"] for e in events], pa.string()),
        "timestamp": pa.array([e["timestamp"] for e in events], pa.timestamp("us")),
    }
    for name in PROPERTIES:
        columns[property_column(name)] = pa.array(
            [e["properties"].get(name) for e in events], pa.string()
        )
    return pa.table(columns)


def windows_table(windows=WINDOWS) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([w[0] for w in windows], pa.string()),
            "window_id": pa.array([w[1] for w in windows], pa.int64()),
            "window_start": pa.array([w[2] for w in windows], pa.timestamp("us")),
            "window_end": pa.array([w[3] for w in windows], pa.timestamp("us")),
        }
    )


def _norm(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.normalize()


def oracle_table(events: list[dict]) -> pa.Table:
    """All events with their properties as one STRUCT column (for the oracle)."""
    struct = pa.struct([(p, pa.string()) for p in PROPERTIES])
    return pa.table(
        {
            "transaction_id": pa.array([e["transaction_id"] for e in events], pa.string()),
            "customer_id": pa.array([e["customer_id"] for e in events], pa.string()),
            "event_type": pa.array([e["event_type"] for e in events], pa.string()),
            "timestamp": pa.array([e["timestamp"] for e in events], pa.timestamp("us")),
            "properties": pa.array(
                [{p: e["properties"].get(p) for p in PROPERTIES} for e in events], struct
            ),
        }
    )


def per_customer(sql: str, events: list[dict], windows=WINDOWS) -> list[tuple]:
    """The oracle: the author's text alone over each customer's events in each window."""
    checked = check_sql(sql)
    count = len(checked.tree.expressions)
    names = ", ".join(f"c{i}" for i in range(count))
    value = exact_value(exp.column(f"c{checked.outputs.value_index}")).sql("duckdb")
    con = duckdb.connect()
    con.register("all_events", oracle_table(events))
    rows = []
    for customer, window_id, start, end in windows:
        con.execute(
            'CREATE OR REPLACE TABLE events AS SELECT transaction_id, event_type, "timestamp", '
            'properties FROM all_events WHERE customer_id = ? AND "timestamp" >= ? '
            'AND "timestamp" < ?',
            [customer, start, end],
        )
        oracle = f"SELECT {value}, {names} FROM ({sql}) AS t({names})"  # noqa: S608
        result = con.execute(oracle).fetchall()
        for row in result:
            groups = tuple(row[1 + i] for i in checked.outputs.group_indexes)
            rows.append((customer, window_id, groups, _norm(row[0])))
    con.close()
    return sorted(rows, key=repr)


def scoped(sql: str, events: list[dict], windows=WINDOWS) -> list[tuple]:
    """The rewritten query, once, over every customer and window."""
    con = duckdb.connect()
    con.register("source_events", source_table(events))
    con.register("windows", windows_table(windows))
    query = scoped_query(sql, exp.table_("source_events"), exp.table_("windows"))
    result = con.execute(query.sql()).fetchall()
    con.close()
    keys = len(query.group_keys)
    return sorted(
        [(r[0], r[1], tuple(r[4 : 4 + keys]), _norm(r[4 + keys])) for r in result], key=repr
    )


QUERIES = {
    "seed": "SELECT count(DISTINCT properties.user_id) as value, properties.region FROM events "
    "WHERE event_type = 'api_request' GROUP BY properties.region",
    "count_no_group": "SELECT count(*) AS value FROM events WHERE event_type = 'error'",
    "sum_no_rows": "SELECT sum(CAST(properties.tokens AS DECIMAL(38, 12))) AS value FROM events "
    "WHERE event_type = 'nope'",
    "coalesce_empty": "SELECT coalesce(max(CAST(properties.tokens AS DECIMAL(10, 2))), 0) AS "
    "value, count(*) AS n FROM events WHERE event_type = 'nope'",
    "group_having": "SELECT avg(CAST(properties.tokens AS DECIMAL(38, 6))) AS value, "
    "properties.region AS r FROM events GROUP BY r HAVING count(*) > 3",
    "having_no_group": "SELECT count(*) AS value FROM events HAVING count(*) > 50",
    "group_by_ordinal": 'SELECT count(*) AS value, properties."a b""c" FROM events GROUP BY 2',
    "distinct": "SELECT DISTINCT CAST(properties.tokens AS DECIMAL(10, 2)) AS value, event_type "
    "FROM events",
    "count_of_distinct_subquery": "SELECT count(*) AS value FROM (SELECT DISTINCT "
    "properties.user_id FROM events)",
    "cte_agg_of_agg": "WITH d AS (SELECT properties.user_id AS u, count(*) AS n FROM events "
    "GROUP BY u) SELECT max(n) AS value FROM d",
    "subquery_agg_of_agg": "SELECT max(n) AS value FROM (SELECT count(*) AS n FROM events "
    "GROUP BY properties.user_id)",
    "nested_ctes": "WITH a AS (SELECT properties.user_id AS u, date_trunc('day', timestamp) AS d "
    "FROM events), b AS (SELECT u, count(DISTINCT d) AS days FROM a GROUP BY u) "
    "SELECT count(*) AS value FROM b WHERE days >= 2",
    "cte_column_list": "WITH d(u, n) AS (SELECT properties.user_id, count(*) FROM events GROUP "
    "BY 1) SELECT max(n) AS value, count(u) AS users FROM d",
    "derived_column_list": "SELECT max(n) AS value FROM (SELECT properties.user_id, count(*) "
    "FROM events GROUP BY 1) AS t(u, n)",
    "derived_where": "SELECT sum(x) AS value FROM (SELECT CAST(properties.tokens AS "
    "DECIMAL(10, 2)) AS x FROM events WHERE event_type <> 'error') t WHERE t.x > 1",
    "latest": "SELECT arg_max(properties.tokens, timestamp) AS value FROM events",
    "earliest_grouped": "SELECT arg_min(CAST(properties.tokens AS INTEGER), timestamp) AS value, "
    "properties.user_id FROM events GROUP BY properties.user_id",
    "latest_aliased": "SELECT arg_max(CAST(e.properties.tokens AS DECIMAL(10,2)), e.timestamp) "
    "AS value, arg_min(e.properties.user_id, timestamp) AS first_user FROM events AS e",
    "in_subquery": "SELECT count(*) AS value FROM events WHERE properties.user_id IN (SELECT "
    "properties.user_id FROM events WHERE event_type = 'error')",
    "not_in_with_nulls": "SELECT count(*) AS value FROM events WHERE event_type = 'login' AND "
    "properties.user_id NOT IN (SELECT properties.user_id FROM events WHERE event_type = 'error')",
    "in_aggregate_subquery": "SELECT count(*) AS value FROM events WHERE properties.user_id IN "
    "(SELECT max(properties.user_id) FROM events)",
    "scalar_subquery_where": "SELECT count(*) AS value FROM events WHERE timestamp > (SELECT "
    "min(timestamp) FROM events WHERE event_type = 'login')",
    "scalar_subquery_ratio": "SELECT count(*) / (SELECT count(*) FROM events WHERE "
    "event_type = 'error') AS value FROM events WHERE event_type = 'login'",
    "scalar_subquery_having": "SELECT count(*) AS value, u FROM (SELECT properties.user_id AS u "
    "FROM events) GROUP BY u HAVING count(*) > (SELECT count(*) / 10 FROM events)",
    "exists": "SELECT count(*) AS value FROM events WHERE EXISTS (SELECT 1 FROM events WHERE "
    "event_type = 'error' AND properties.region = 'ap')",
    "subquery_with_cte": "SELECT count(*) AS value FROM events WHERE properties.user_id IN (WITH "
    "x AS (SELECT properties.user_id AS u FROM events WHERE event_type = 'login') SELECT u FROM x)",
    "no_from": "SELECT 1 AS value",
    "no_from_subqueries": "SELECT (SELECT max(CAST(properties.tokens AS DECIMAL(10, 2))) FROM "
    "events) - (SELECT min(CAST(properties.tokens AS DECIMAL(10, 2))) FROM events) AS value",
    "arithmetic_case": "SELECT CASE WHEN count(*) > 20 THEN 1 ELSE 0 END AS value, "
    "properties.region FROM events GROUP BY properties.region",
    "least_greatest_not_in": "SELECT greatest(count(*), 10) + least(1, 2) AS value FROM events "
    "WHERE properties.region IS NOT NULL AND properties.region NOT IN ('eu')",
    "round_avg": "SELECT round(avg(CAST(properties.tokens AS DECIMAL(10, 2))), 3) AS value "
    "FROM events",
    "date_trunc_groups": "SELECT date_trunc('day', timestamp) AS day, count(*) AS value FROM "
    "events GROUP BY day",
    "hourly_then_sum": "SELECT sum(c) AS value FROM (SELECT count(*) AS c FROM events GROUP BY "
    "date_trunc('hour', timestamp) HAVING count(*) > 2)",
    "lateral_alias": "SELECT count(*) AS n, n * 2 AS value FROM events",
    "alias_named_like_a_column": "SELECT properties.region AS p_user_id, count(*) AS value FROM "
    "events WHERE properties.user_id = 'u1' GROUP BY p_user_id",
    "having_alias_and_subquery": "SELECT count(*) AS value, properties.region AS r FROM events "
    "GROUP BY 2 HAVING r IS NOT NULL AND value > (SELECT count(*) / 5 FROM events)",
    "nested_scalar_without_from": "SELECT (SELECT (SELECT count(*) FROM events WHERE "
    "event_type = 'error')) AS value",
    "nested_scalar_in_where": "SELECT count(*) AS value FROM events WHERE CAST(properties.tokens "
    "AS DECIMAL(10, 2)) > (SELECT avg(CAST(properties.tokens AS DECIMAL(10, 2))) FROM events "
    "WHERE properties.region = (SELECT max(properties.region) FROM events))",
    "subquery_in_scalar_aggregate": "SELECT (SELECT count(*) FROM events) - count(*) AS value, "
    "max(timestamp) AS last FROM events WHERE event_type = 'login' HAVING count(*) >= 0",
    "between_timestamps": "SELECT event_type, count(*) AS value FROM events WHERE timestamp "
    "BETWEEN TIMESTAMP '2024-01-02' AND TIMESTAMP '2024-01-03' GROUP BY event_type",
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", sorted(QUERIES))
def test_scoped_query_equals_per_customer_evaluation(name: str, seed: int) -> None:
    events = random_events(seed)
    expected = per_customer(QUERIES[name], events)
    assert scoped(QUERIES[name], events) == expected
    assert expected  # every case returns rows, so the comparison is never vacuous


HYPOTHESIS_QUERIES = [
    QUERIES["seed"],
    QUERIES["count_no_group"],
    QUERIES["cte_agg_of_agg"],
    QUERIES["scalar_subquery_having"],
    QUERIES["not_in_with_nulls"],
    QUERIES["latest_aliased"],
]
_event = st.fixed_dictionaries(
    {
        "customer_id": st.sampled_from(["c1", "c2", "c3"]),
        "event_type": st.sampled_from(["api_request", "login", "error"]),
        "minute": st.integers(0, 4 * 24 * 60 - 1),
        "user_id": st.sampled_from(["u1", "u2", None]),
        "region": st.sampled_from(["eu", "us", None]),
        "tokens": st.sampled_from(["1", "0.5", "7", None]),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, max_size=30), st.sampled_from(HYPOTHESIS_QUERIES))
def test_scoped_query_equals_per_customer_evaluation_on_generated_events(raw, sql) -> None:
    events = [
        {
            "transaction_id": f"t{i:03d}",
            "customer_id": e["customer_id"],
            "event_type": e["event_type"],
            # distinct timestamps: arg_max/arg_min never see ties here
            "timestamp": T0 + timedelta(minutes=e["minute"], microseconds=i),
            "properties": {
                "user_id": e["user_id"],
                "region": e["region"],
                "tokens": e["tokens"],
                'a b"c': None,
            },
        }
        for i, e in enumerate(raw)
    ]
    assert scoped(sql, events) == per_customer(sql, events)


# -- what the rewrite adds beyond the author's query ------------------------------------------


def test_an_aggregate_without_group_by_has_a_row_for_every_window() -> None:
    rows = scoped("SELECT count(*) AS value FROM events WHERE event_type = 'x'", random_events(3))
    assert rows == sorted([(c, w, (), Decimal(0)) for c, w, _, _ in WINDOWS], key=repr)
    rows = scoped("SELECT sum(CAST(properties.tokens AS INTEGER)) AS value FROM events", [])
    assert [r[3] for r in rows] == [None] * len(WINDOWS)


def test_grouped_queries_have_rows_only_for_groups_with_events() -> None:
    events = random_events(4)
    rows = scoped(QUERIES["seed"], events)
    assert {r[0] for r in rows} == {"c1", "c2", "c3"}  # c4 has no events; c9 has no window
    assert not any(r[:2] == ("c3", 7) for r in rows)


def test_ties_on_timestamp_go_to_the_greatest_transaction_id_for_latest() -> None:
    at = T0 + timedelta(hours=1)
    events = [
        {
            "transaction_id": tid,
            "customer_id": "c2",
            "event_type": "api_request",
            "timestamp": at,
            "properties": {"tokens": tokens},
        }
        for tid, tokens in [("t-b", "2"), ("t-c", "3"), ("t-a", "1")]
    ]
    windows = [("c2", 0, T0, T0 + DAY)]
    sql = (
        "SELECT arg_max(CAST(properties.tokens AS INTEGER), timestamp) AS value, "
        "arg_min(properties.tokens, timestamp) AS earliest FROM events"
    )
    assert scoped(sql, events, windows) == [("c2", 0, ("1",), Decimal(3))]


TIES_THROUGH = [
    # the timestamp in parentheses, through an alias, a CTE, a subquery, two CTEs, a column list
    "SELECT arg_max(CAST(properties.tokens AS INTEGER), (timestamp)) AS value, "
    "arg_min(properties.tokens, ((e.timestamp))) AS earliest FROM events e",
    "WITH t AS (SELECT timestamp, properties.tokens AS v FROM events WHERE event_type <> 'x') "
    "SELECT arg_max(CAST(v AS INTEGER), timestamp) AS value, arg_min(v, timestamp) AS earliest "
    "FROM t",
    "SELECT arg_max(CAST(v AS INTEGER), ts) AS value, arg_min(v, s.ts) AS earliest FROM "
    "(SELECT timestamp AS ts, properties.tokens AS v FROM events) s",
    "WITH a AS (SELECT properties.tokens AS v, timestamp FROM events), b AS (SELECT v, "
    "timestamp AS tt FROM a WHERE v IS NOT NULL) SELECT arg_max(CAST(v AS INTEGER), tt) AS "
    "value, arg_min(v, tt) AS earliest FROM b",
    "SELECT arg_max(CAST(v AS INTEGER), t) AS value, arg_min(v, t) AS earliest FROM (SELECT "
    "properties.tokens, timestamp FROM events) AS s(v, t)",
    "SELECT (SELECT arg_max(CAST(v AS INTEGER), timestamp) FROM (SELECT timestamp, "
    "properties.tokens AS v FROM events)) AS value, (SELECT arg_min(properties.tokens, "
    "timestamp) FROM events) AS earliest",
]


@pytest.mark.parametrize("sql", TIES_THROUGH)
def test_ties_go_to_the_transaction_id_also_through_ctes_subqueries_and_parentheses(
    sql: str,
) -> None:
    # the same events in every order give the same answer: (timestamp) and a timestamp passed
    # on by a CTE or subquery got no tie-break, so DuckDB's read order picked the value
    at = T0 + timedelta(hours=1)
    rows = [("t-b", "2"), ("t-c", "3"), ("t-a", "1")]
    windows = [("c2", 0, T0, T0 + DAY)]
    for order in itertools.permutations(rows):
        events = [
            {
                "transaction_id": tid,
                "customer_id": "c2",
                "event_type": "api_request",
                "timestamp": at,
                "properties": {"tokens": tokens},
            }
            for tid, tokens in order
        ]
        assert scoped(sql, events, windows) == [("c2", 0, ("1",), Decimal(3))], order


def test_values_become_exact_decimals() -> None:
    events = [
        {
            "transaction_id": f"t{i}",
            "customer_id": "c2",
            "event_type": "api_request",
            "timestamp": T0 + timedelta(minutes=i),
            "properties": {"tokens": t},
        }
        for i, t in enumerate(["1.1", "2.2"])
    ]
    windows = [("c2", 0, T0, T0 + DAY)]

    def value(sql: str) -> Decimal | None:
        [(_, _, _, v)] = scoped(sql, events, windows)
        return v

    # AVG and / are DOUBLE in DuckDB: the value is the shortest decimal of that double
    assert value(
        "SELECT avg(CAST(properties.tokens AS DECIMAL(10, 1))) AS value FROM events"
    ) == Decimal("1.65")
    assert value("SELECT count(*) / 3 AS value FROM events") == Decimal("0.666666666667")
    assert value("SELECT 12345678901.23 * count(*) / 2 AS value FROM events") == Decimal(
        "12345678901.23"
    )
    # more than 12 fractional digits are rounded half away from zero
    assert value("SELECT CAST('0.0000000000005' AS DECIMAL(38, 13)) AS value") == Decimal("1E-12")
    # a DOUBLE that is not a finite number is NULL
    assert value("SELECT count(*) / (count(*) - 2) AS value FROM events") is None
    assert value(
        "SELECT sum(CAST(properties.tokens AS DECIMAL(10, 1))) AS value FROM events"
    ) == Decimal("3.3")


def test_result_columns_and_property_columns_of_the_scoped_query() -> None:
    query = scoped_query(
        'SELECT count(*) AS value, properties."a b""c" AS odd, properties.Model FROM events '
        "GROUP BY 2, 3",
        exp.table_("src"),
        exp.table_("win"),
    )
    assert query.columns == (
        "customer_id",
        "window_id",
        "window_start",
        "window_end",
        "odd",
        "Model",
        "value",
    )
    sql = query.sql()
    assert property_column('a b"c') in sql and property_column("Model") in sql
    assert '"p_%4Dodel"' in sql  # case-sensitive property names stay apart
    assert "MATERIALIZED" not in sql  # events read once: streamed, not materialised
    twice = scoped_query(QUERIES["in_subquery"], exp.table_("src"), exp.table_("win")).sql()
    assert '__mq_events" AS MATERIALIZED' in twice


# -- generated queries --------------------------------------------------------------------------

TOKENS = "CAST(properties.tokens AS DECIMAL(10, 2))"
KEYS = ["event_type", "properties.user_id", "properties.region", "date_trunc('day', timestamp)"]
FILTERS = [
    "event_type = 'login'",
    "properties.region IS NOT NULL",
    "properties.user_id IN ('u1', 'u2')",
    f"{TOKENS} > 1",
    "properties.user_id IN (SELECT properties.user_id FROM events WHERE event_type = 'error')",
    "timestamp > (SELECT min(timestamp) FROM events WHERE event_type = 'login')",
    "EXISTS (SELECT 1 FROM events WHERE properties.region = 'ap')",
    f"{TOKENS} >= (SELECT avg({TOKENS}) FROM events)",  # noqa: S608
]
AGGREGATES = [
    "count(*)",
    "count(DISTINCT properties.user_id)",
    f"sum({TOKENS})",
    f"max({TOKENS})",
    f"arg_max({TOKENS}, timestamp)",
    f"coalesce(sum({TOKENS}), 0) + count(*)",
]


@st.composite
def generated_queries(draw) -> str:
    aggregate = draw(st.sampled_from(AGGREGATES))
    key = draw(st.one_of(st.none(), st.sampled_from(KEYS)))
    where = draw(st.one_of(st.none(), st.sampled_from(FILTERS)))
    having = draw(
        st.sampled_from([None, "count(*) > 3", "count(*) > (SELECT count(*) / 20 FROM events)"])
    )
    inner = f"SELECT {aggregate} AS value" + (f", {key} AS k" if key else "") + " FROM events"  # noqa: S608
    inner += f" WHERE {where}" if where else ""
    inner += " GROUP BY k" if key else ""
    inner += f" HAVING {having}" if having else ""
    shape = draw(st.sampled_from(["plain", "cte", "derived"]))
    if shape == "plain" or not key:
        return inner
    outer = draw(st.sampled_from(["max", "sum", "count", "min"]))
    outer_where = draw(st.sampled_from(["", " WHERE value > 1", " WHERE k IS NOT NULL"]))
    if shape == "cte":
        return f"WITH d AS ({inner}) SELECT {outer}(value) AS value FROM d{outer_where}"  # noqa: S608
    return f"SELECT {outer}(value) AS value FROM ({inner}) AS d{outer_where}"  # noqa: S608


GENERATED_EVENTS = random_events(5, count=160)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_queries())
def test_generated_queries_scope_like_per_customer_evaluation(sql: str) -> None:
    assert scoped(sql, GENERATED_EVENTS) == per_customer(sql, GENERATED_EVENTS)


def test_a_new_column_never_takes_the_binding_of_a_replaced_one() -> None:
    """The checker binds columns by node; scoping replaces them by new nodes.  A new node
    created at a freed node's address (CPython reuses it at once) took the freed node's
    binding: a tie-break column was read as the property `tokens` ("Values list t does not
    have a column named p_tokens", seen once in a full run)."""
    from metric_compiler.sql_metric.resolve import resolve
    from metric_compiler.sql_metric.source import SqlSource

    text = "SELECT sum(CAST(properties.tokens AS INT)) AS value FROM events"
    tree = check_sql(text).tree.copy()
    bound = resolve(SqlSource(text), tree)
    [column] = [c for c in tree.find_all(exp.Column) if bound.binding(c) is not None]
    column.replace(exp.column("other"))
    del column  # the tree no longer holds it; its parent links make a cycle: collect it
    gc.collect()
    fresh = [exp.Column() for _ in range(1000)]  # (one is likely to land at its address)
    assert [c for c in fresh if bound.binding(c) is not None] == []
