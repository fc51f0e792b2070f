"""The SQL metric checker: every refusal by name with line, column and caret, "did you mean",
all problems at once, the returned columns, and the apply hook (SEMANTICS.md section 3)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.sql_check import check_sql_metric
from metric_compiler.checks import check_metric
from metric_compiler.sql_metric import (
    SqlMetricError,
    check_sql,
    sql_metric_columns,
    sql_problems,
)
from warehouse.models import BillableMetric

SEED = """SELECT count(DISTINCT properties.user_id) as value,
       properties.region
FROM events
WHERE event_type = 'api_request'
GROUP BY properties.region"""


def only_problem(sql: str):
    problems = sql_problems(sql)
    assert len(problems) == 1, [p.format(sql) for p in problems]
    return problems[0]


def where(sql: str, fragment: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, col) of the nth occurrence of `fragment` in `sql`."""
    offset = -1
    for _ in range(nth + 1):
        offset = sql.index(fragment, offset + 1)
    line = sql.count("\n", 0, offset) + 1
    return line, offset - (sql.rfind("\n", 0, offset) + 1) + 1


def test_the_seed_example_passes_with_value_and_region() -> None:
    checked = check_sql(SEED)
    assert (checked.value, checked.group_keys) == ("value", ("region",))
    assert checked.properties == ("user_id", "region")
    assert sql_metric_columns(SEED) == ("value", ("region",))
    assert sql_problems(SEED) == []


def test_first_column_is_the_value_without_a_value_column() -> None:
    sql = (
        "SELECT sum(CAST(properties.tokens AS DECIMAL(38, 12))) AS total, event_type "
        "FROM events GROUP BY event_type"
    )
    assert sql_metric_columns(sql) == ("total", ("event_type",))
    assert sql_metric_columns("SELECT event_type, count(*) AS Value FROM events GROUP BY 1") == (
        "Value",
        ("event_type",),
    )


# -- escapes: refused by name, with line and column -------------------------------------------

ESCAPES = [
    (
        "SELECT count(*) AS value FROM read_csv('/etc/passwd')",
        "table function read_csv",
        "read_csv",
    ),
    (
        "SELECT count(*) AS value FROM '/etc/passwd'",
        "file path '/etc/passwd' used as a table",
        "'/etc",
    ),
    (
        "SELECT count(*) AS value FROM read_text('/etc/passwd')",
        "table function read_text",
        "read_text",
    ),
    (
        "SELECT count(*) AS value FROM read_parquet('x.parquet')",
        "table function read_parquet",
        "read_parquet",
    ),
    ("SELECT count(*) AS value FROM glob('/*')", "table function glob", "glob"),
    (
        "SELECT count(*) AS value FROM duckdb_settings()",
        "table function duckdb_settings",
        "duckdb_settings",
    ),
    ("SELECT getenv('HOME') AS value FROM events", "function getenv is not allowed", "getenv"),
    ("SELECT count(*) AS value FROM customers", "table customers is not allowed", "customers"),
    (
        "SELECT count(*) AS value FROM information_schema.tables",
        "table information_schema.tables is not allowed",
        "information_schema",
    ),
    (
        "SELECT count(*) AS value FROM main.events",
        "table main.events is not allowed",
        "main.events",
    ),
    ("CREATE TABLE t AS SELECT 1", "CREATE statements are not allowed", "CREATE"),
    ("INSERT INTO events VALUES (1)", "INSERT statements are not allowed", "INSERT"),
    ("DROP TABLE events", "DROP statements are not allowed", "DROP"),
    ("DELETE FROM events", "DELETE statements are not allowed", "DELETE"),
    ("UPDATE events SET event_type = 'x'", "UPDATE statements are not allowed", "UPDATE"),
    ("PRAGMA database_list", "PRAGMA statements are not allowed", "PRAGMA"),
    ("SET enable_external_access = true", "SET statements are not allowed", "SET"),
    ("ATTACH '/tmp/x.db' AS x", "ATTACH statements are not allowed", "ATTACH"),
    ("COPY (SELECT 1) TO '/tmp/out.csv'", "COPY statements are not allowed", "COPY"),
    ("INSTALL httpfs", "INSTALL statements are not allowed", "INSTALL"),
    ("LOAD httpfs", "LOAD statements are not allowed", "LOAD"),
    (
        "SELECT count(*) AS value FROM events; DROP TABLE events",
        "a second statement (DROP, statement 2)",
        "DROP",
    ),
    (
        "SELECT 1 AS value;\nSELECT 2 AS value",
        "a second statement (SELECT, statement 2)",
        "SELECT 2",
    ),
]


@pytest.mark.parametrize(("sql", "message", "at"), ESCAPES, ids=[e[2] for e in ESCAPES])
def test_escapes_are_refused_by_name_at_their_place(sql: str, message: str, at: str) -> None:
    problem = only_problem(sql)
    assert message in problem.message
    assert (problem.line, problem.col) == where(sql, at)


INSIDE = [
    "read_csv('/etc/passwd')",
    "read_text('/etc/passwd')",
    "glob('/*')",
    "duckdb_settings()",
    "'/etc/passwd'",
    "customers",
    "information_schema.tables",
]


@pytest.mark.parametrize("relation", INSIDE)
def test_escapes_inside_a_cte_or_a_subquery_are_refused_too(relation: str) -> None:
    for template in (
        "WITH x AS (SELECT count(*) AS n FROM RELATION) SELECT max(n) AS value FROM x",
        "SELECT count(*) AS value FROM (SELECT 1 AS one FROM RELATION)",
        "SELECT count(*) AS value FROM events WHERE event_type IN (SELECT 'a' FROM RELATION)",
        "SELECT (SELECT count(*) FROM RELATION) AS value",
    ):
        sql = template.replace("RELATION", relation)
        problem = only_problem(sql)
        assert "not allowed" in problem.message and "reads only the table events" in problem.message
        assert (problem.line, problem.col) == where(sql, relation.split("(")[0])


def test_statements_and_functions_nested_in_a_query_are_refused() -> None:
    sql = "WITH x AS (DELETE FROM events RETURNING *) SELECT count(*) AS value FROM x"
    problem = only_problem(sql)
    assert "DELETE is not allowed" in problem.message
    assert (problem.line, problem.col) == where(sql, "DELETE")
    sql = "SELECT count(*) AS value FROM events WHERE event_type = getenv('USER')"
    assert "function getenv is not allowed" in only_problem(sql).message


def test_a_column_of_another_table_is_refused() -> None:
    sql = "SELECT count(*) AS value FROM events WHERE customers.name = 'x'"
    problem = only_problem(sql)
    assert "customers.name: there is no table customers in this query" in problem.message
    assert (problem.line, problem.col) == where(sql, "customers")


def test_hidden_columns_are_explained() -> None:
    problem = only_problem("SELECT count(*) AS value FROM events WHERE customer_id = 'c'")
    assert "customer_id is not a column of events in a SQL metric" in problem.message
    assert "meterql evaluates it for every customer" in problem.message
    assert (
        "ingested_at is not a column"
        in only_problem("SELECT max(ingested_at) AS value FROM events").message
    )


# -- constructs that cannot be scoped ---------------------------------------------------------

UNSCOPABLE = [
    (
        "SELECT row_number() OVER () AS value FROM events",
        "a window function (OVER) is not allowed",
        "row_number",
    ),
    (
        "SELECT count(*) AS value FROM events GROUP BY event_type ORDER BY 1",
        "ORDER BY is not allowed",
        "ORDER",
    ),
    ("SELECT count(*) AS value FROM events LIMIT 1", "LIMIT is not allowed", "LIMIT"),
    (
        "SELECT count(*) AS value FROM (SELECT event_type FROM events LIMIT 5)",
        "LIMIT is not allowed",
        "LIMIT",
    ),
    (
        "SELECT count(*) AS value FROM events e "
        "JOIN events f ON e.transaction_id = f.transaction_id",
        "JOIN is not allowed",
        "JOIN",
    ),
    ("SELECT count(*) AS value FROM events UNION ALL SELECT 1", "UNION is not allowed", "UNION"),
    (
        "SELECT count(*) FILTER (WHERE event_type = 'a') AS value FROM events",
        "aggregate FILTER is not allowed",
        "FILTER",
    ),
    (
        "SELECT count(*) AS value FROM events GROUP BY ALL",
        "GROUP BY ALL is not allowed",
        "GROUP BY ALL",
    ),
    (
        "SELECT count(*) AS value FROM events GROUP BY ROLLUP (event_type)",
        "ROLLUP is not allowed",
        "ROLLUP",
    ),
    (
        "SELECT DISTINCT ON (event_type) event_type AS value FROM events",
        "DISTINCT ON is not allowed",
        "event_type)",
    ),
    (
        "WITH RECURSIVE r AS (SELECT 1 AS n) SELECT n AS value FROM r",
        "WITH RECURSIVE is not allowed",
        "WITH",
    ),
    (
        "SELECT count(*) AS value FROM events WHERE timestamp > (SELECT max(e2.timestamp) "
        "FROM events e2 WHERE e2.event_type = events.event_type)",
        "correlated subquery",
        "events.event_type",
    ),
    (
        "SELECT count(*) AS value FROM events QUALIFY count(*) > 1",
        "QUALIFY is not allowed",
        "QUALIFY",
    ),
    ("SELECT count(*) AS value FROM events USING SAMPLE 10%", "sampling is not allowed", "10"),
]


@pytest.mark.parametrize(("sql", "message", "at"), UNSCOPABLE, ids=[u[1][:30] for u in UNSCOPABLE])
def test_unscopable_constructs_are_refused_with_a_reason(sql: str, message: str, at: str) -> None:
    problem = only_problem(sql)
    assert message in problem.message
    assert (problem.line, problem.col) == where(sql, at)


def test_functions_types_and_operators_outside_the_allow_list_are_refused() -> None:
    cases = [
        (
            "SELECT sum(CAST(properties.t AS DOUBLE)) AS value FROM events",
            "type DOUBLE is not allowed: floating point is not exact",
        ),
        (
            "SELECT sum(TRY_CAST(properties.t AS FLOAT)) AS value FROM events",
            "type REAL is not allowed: floating point is not exact",
        ),
        (
            "SELECT count(*) AS value FROM events "
            "WHERE timestamp > CAST('2024-01-01' AS TIMESTAMPTZ)",
            "it depends on the session time zone",
        ),
        (
            "SELECT count(*) AS value FROM events WHERE properties.a LIKE 'x%'",
            "LIKE is not allowed",
        ),
        ("SELECT upper(event_type) AS value FROM events", "function upper is not allowed"),
        (
            "SELECT count(*) AS value FROM events WHERE timestamp > now() - INTERVAL 1 DAY",
            "function now is not allowed",
        ),
        (
            "SELECT string_agg(event_type, ',') AS value FROM events",
            "function string_agg is not allowed",
        ),
        (
            "SELECT count(*) AS value FROM events WHERE event_type = $1",
            "query parameters is not allowed",
        ),
        ("SELECT * FROM events", "* is not allowed"),
        (
            "SELECT count(*) AS value FROM events WHERE properties.a || 'x' = 'y'",
            "|| (string concatenation) is not allowed",
        ),
    ]
    for sql, message in cases:
        messages = [p.message for p in sql_problems(sql)]
        assert any(message in m for m in messages), (sql, messages)


def test_ceil_and_floor_to_digits_are_refused_not_computed_in_floating_point() -> None:
    # DuckDB's ceil/floor take one argument; sqlglot would rewrite ceil(x, 2) into
    # ROUND(CEIL(x * POWER(10, 2)) / POWER(10, 2), 2), in DOUBLE: ceil(1.10, 2) gave 1.11 and
    # floor(0.29, 2) gave 0.28
    for function in ("ceil", "floor", "CEILING"):
        sql = (
            f"SELECT {function}(sum(CAST(properties.t AS DECIMAL(10, 2))), 2) AS value\nFROM events"
        )
        problem = only_problem(sql)
        assert f"{function}(x, n) is not allowed" in problem.message, problem.message
        assert "takes one argument" in problem.message
        assert (problem.line, problem.col) == where(sql, function)
    assert sql_problems("SELECT ceil(count(*) / 2) AS value FROM events") == []


def test_aggregates_returning_a_list_of_the_n_greatest_or_smallest_are_refused() -> None:
    # max(x, n), min(x, n), arg_max(x, t, n) and arg_min(x, t, n) return DuckDB lists; as a
    # group key the list reached usage rows ({"top": ["4", "3"]})
    for call, name in [
        ("max(properties.x, 2)", "max"),
        ("MIN(properties.x, 3)", "MIN"),
        ("arg_max(properties.x, timestamp, 2)", "arg_max"),
        ("arg_min(properties.x, timestamp, 2)", "arg_min"),
        ("max_by(properties.x, timestamp, 2)", "max_by"),
    ]:
        sql = f"SELECT count(*) AS value,\n  {call} AS top FROM events"  # noqa: S608
        problem = only_problem(sql)
        assert f"{name}(..., n) is not allowed: it returns a list" in problem.message, (
            problem.message
        )
        assert (problem.line, problem.col) == where(sql, call)
    assert sql_problems("SELECT count(*) AS value, max(properties.x) AS top FROM events") == []


def test_aggregates_of_several_arguments_are_refused_at_their_place() -> None:
    # DuckDB refuses count(DISTINCT a, b); sqlglot read it as the count of distinct (a, b) rows
    # and the metric ran with that meaning; count(a, b) failed only when DuckDB bound it, with
    # no place in the text
    for call in (
        "count(DISTINCT properties.x, event_type)",
        "count(properties.x, event_type)",
        "sum(DISTINCT properties.x, event_type)",
    ):
        sql = f"SELECT {call} AS value\nFROM events"
        problem = only_problem(sql)
        assert "takes one argument" in problem.message, problem.message
        assert (problem.line, problem.col) == where(sql, call)
    assert (
        "SELECT DISTINCT"
        in only_problem(
            "SELECT count(DISTINCT properties.x, event_type) AS value FROM events"
        ).message
    )
    assert sql_problems("SELECT count(DISTINCT properties.x) AS value FROM events") == []


def test_date_trunc_with_a_time_zone_argument_is_refused_not_ignored() -> None:
    # sqlglot drops a third argument of date_trunc: days in Paris time were silently UTC days
    for call in (
        "date_trunc('day', timestamp, 'Europe/Paris')",
        "DATETRUNC('day', timestamp, 'Europe/Paris')",
        "date_trunc('day', (timestamp), 'UTC')",
    ):
        sql = f"SELECT {call} AS day,\n count(*) AS value FROM events GROUP BY 1"  # noqa: S608
        problem = only_problem(sql)
        assert "takes two arguments" in problem.message, problem.message
        assert (problem.line, problem.col) == where(sql, call)
    assert sql_problems("SELECT date_trunc('day', timestamp) AS value FROM events") == []


def test_everything_the_semantics_allow_passes() -> None:
    sql = """
    WITH daily AS (
        SELECT date_trunc('day', timestamp) AS day,
               properties.user_id AS user_id,
               count(*) AS n,
               count(DISTINCT transaction_id) AS tx,
               sum(TRY_CAST(properties.tokens AS DECIMAL(38, 12))) AS tokens,
               min(timestamp) AS first_seen,
               max(timestamp) AS last_seen,
               arg_max(properties.model, timestamp) AS latest_model,
               arg_min(properties.model, timestamp) AS earliest_model
        FROM events
        WHERE event_type IN ('a', 'b') AND event_type NOT IN ('c')
          AND properties.region IS NOT NULL AND NOT (properties.region IS NULL)
          AND timestamp BETWEEN TIMESTAMP '2024-01-01' AND TIMESTAMP '2025-01-01'
        GROUP BY day, user_id
        HAVING count(*) > 0
    )
    SELECT round(avg(tokens), 2) + ceil(max(n) / 2) - floor(min(n) * 1.5) % 7 AS value,
           CASE WHEN count(*) > 1 THEN 'many' ELSE 'one' END AS size,
           coalesce(max(latest_model), 'none') AS model,
           greatest(max(tx), 1) - least(min(tx), 1) AS spread
    FROM daily
    WHERE user_id IN (SELECT properties.user_id FROM events WHERE event_type = 'a')
      AND EXISTS (SELECT 1 FROM events)
      AND n >= (SELECT count(*) // 100 FROM events)
    """
    checked = check_sql(sql)
    assert checked.group_keys == ("size", "model", "spread")
    assert set(checked.properties) == {"user_id", "tokens", "model", "region"}


# -- columns: did you mean, every problem at once ---------------------------------------------


def test_misspelled_columns_get_did_you_mean_and_every_problem_is_reported_at_once() -> None:
    sql = (
        "SELECT count(*) AS value, event_typ AS kind\n"
        "FROM events\n"
        "WHERE timestmp > TIMESTAMP '2024-01-01' AND region = 'eu'\n"
        "  AND read_text('x') = 'y' AND transaction = '1'"
    )
    problems = sql_problems(sql)
    messages = [p.message for p in problems]
    assert len(problems) == 5, messages
    assert (
        "column event_typ does not exist" in messages[0]
        and "did you mean 'event_type'?" in messages[0]
    )
    assert (problems[0].line, problems[0].col) == (1, 27)
    assert "did you mean 'timestamp'?" in messages[1] and (problems[1].line, problems[1].col) == (
        3,
        7,
    )
    assert "did you mean properties.region?" in messages[2]
    assert "function read_text is not allowed" in messages[3] and problems[3].line == 4
    assert "did you mean 'transaction_id'?" in messages[4]


def test_misspelled_cte_columns_and_tables_get_suggestions() -> None:
    sql = (
        "WITH daily AS (SELECT count(*) AS total FROM events) SELECT max(totl) AS value FROM daily"
    )
    assert "did you mean 'total'?" in only_problem(sql).message
    sql = (
        "WITH daily AS (SELECT count(*) AS total FROM events) SELECT max(total) AS value FROM daly"
    )
    assert "did you mean 'daily'?" in only_problem(sql).message
    assert "did you mean 'events'?" in only_problem("SELECT count(*) AS value FROM event").message
    sql = "SELECT count(*) AS value FROM events WHERE propertes.region = 'eu'"
    assert "did you mean 'properties'?" in only_problem(sql).message


def test_refused_words_sqlglot_does_not_locate_are_pointed_at_too() -> None:
    # parameters, current_timestamp & co. and interval units have no place in sqlglot's tree:
    # they were reported at line 1, col 1
    cases = [
        ("WHERE event_type = $1", "$1", "query parameters"),
        ("WHERE event_type = ?", "?", "query parameters"),
        ("WHERE event_type = $name", "$name", "query parameters"),
        ("WHERE timestamp > current_timestamp", "current_timestamp", "current_timestamp"),
        ("WHERE CAST(timestamp AS DATE) = CURRENT_DATE", "CURRENT_DATE", "current_date"),
        ("WHERE event_type = current_user", "current_user", "current_user"),
        ("WHERE timestamp > TIMESTAMP '2024-01-01' + INTERVAL 1 DAY", "INTERVAL", "INTERVAL"),
        ("WHERE event_type COLLATE nocase = 'x'", "event_type COLLATE", "collate"),
    ]
    for clause, at, message in cases:
        sql = f"SELECT count(*) AS value\nFROM events\n{clause}"
        problems = sql_problems(sql)
        assert problems and all(p.line == 3 for p in problems), (sql, problems)
        first = problems[0]
        assert message in first.message, (sql, first.message)
        assert (first.line, first.col) == where(sql, at), (sql, first)
        assert sql[first.start : first.end] == at.split()[0] or at == "event_type COLLATE"
    # the nth of several is the nth in the text
    sql = "SELECT count(*) AS value FROM events WHERE event_type = ? OR event_type = ?"
    assert [(p.line, p.col) for p in sql_problems(sql)] == [where(sql, "?"), where(sql, "?", 1)]


def test_the_error_prints_every_problem_with_a_caret_under_the_place() -> None:
    sql = "SELECT count(*) AS value\nFROM read_csv('/etc/passwd')\nWHERE getenv('X') = '1'"
    with pytest.raises(SqlMetricError) as raised:
        check_sql(sql)
    text = str(raised.value)
    assert text.startswith("2 problem(s) in the SQL metric")
    assert (
        "  - line 2, col 6: table function read_csv is not allowed; a SQL metric reads only the "
        "table events\n"
        "      FROM read_csv('/etc/passwd')\n"
        "           ^^^^^^^^^^^^^^^^^^^^^^^" in text
    )
    assert "line 3, col 7: function getenv is not allowed" in text
    assert text.endswith("      WHERE getenv('X') = '1'\n            ^^^^^^^^^^^")


def test_syntax_errors_have_a_place_including_ones_sqlglot_would_forgive() -> None:
    problem = only_problem("SELECT count(* AS value FROM events")
    assert problem.message.startswith("syntax error") and problem.line == 1
    problem = only_problem("SELECT event_type,, count(*) AS value FROM events GROUP BY 1")
    assert problem.message == 'syntax error: at or near ","' and problem.col == 19
    problem = only_problem("SELECT count(*) AS value FROM events WHERE event_type = 'open")
    assert "unterminated" in problem.message and problem.col == 57
    problem = only_problem("SELECT 'ä' AS k,, count(*) AS value FROM events")
    assert problem.col == 17  # DuckDB reports byte offsets; the caret is on characters
    assert "the SQL is empty" in only_problem("  \n ").message


def test_returned_columns_need_names_distinct_and_unreserved() -> None:
    messages = [
        p.message
        for p in sql_problems(
            "SELECT count(*) AS value, properties.a AS customer_id, properties.b AS region, "
            "properties.c AS Region, coalesce(properties.d, 'x'), count(*) AS value FROM events"
        )
    ]
    assert any("a group key cannot be named customer_id" in m for m in messages)
    assert any("group key Region is returned twice (also column 3)" in m for m in messages)
    assert any(
        "column 5 (coalesce(properties.d, 'x')) is a group key and needs a name" in m
        for m in messages
    )
    assert any("more than one column named value" in m for m in messages)


def test_reserved_names_are_refused() -> None:
    for sql in (
        "WITH __mq_events AS (SELECT 1 AS n) SELECT n AS value FROM __mq_events",
        "SELECT count(*) AS __mq_value FROM events",
        "SELECT count(*) AS value FROM events AS __mq_w",
    ):
        assert "is reserved" in only_problem(sql).message, sql
    assert (
        "a CTE cannot be named events"
        in only_problem("WITH events AS (SELECT 1 AS n) SELECT n AS value FROM events").message
    )


def test_properties_need_a_name_and_an_events_relation() -> None:
    assert (
        "properties is a group of columns"
        in only_problem("SELECT count(properties) AS value FROM events").message
    )
    sql = (
        "SELECT sum(n) AS value FROM (SELECT count(*) AS n FROM events) t WHERE properties.x = '1'"
    )
    assert (
        "properties can be read only where the query reads events directly"
        in only_problem(sql).message
    )


def test_names_bind_like_duckdb_and_only_the_having_subtlety_is_refused() -> None:
    # a column wins over a SELECT alias in the select list and GROUP BY, as in DuckDB
    sql = "WITH d AS (SELECT count(*) AS value FROM events) SELECT max(value) AS value FROM d"
    assert sql_problems(sql) == []
    # in HAVING DuckDB prefers the alias unless the column is grouped: refused as ambiguous
    sql = (
        "SELECT properties.kind AS event_type, count(*) AS value FROM events "
        "GROUP BY properties.kind HAVING event_type = 'x'"
    )
    assert "event_type is ambiguous in HAVING" in only_problem(sql).message
    # an alias that names its own column is not ambiguous
    sql = "SELECT event_type AS event_type, count(*) AS value FROM events GROUP BY 1"
    assert sql_problems(sql + " HAVING event_type <> 'x'") == []
    # WHERE never sees SELECT aliases (DuckDB's WHERE does): the problem says so, and does not
    # claim the column is missing nor suggest properties.kind
    sql = "SELECT properties.kind AS kind, count(*) AS value FROM events WHERE kind = 'x'"
    problem = only_problem(sql)
    assert problem.message == (
        "kind is a SELECT alias, which WHERE cannot use in a SQL metric; write its expression "
        "(properties.kind) there instead"
    )
    assert (problem.line, problem.col) == where(sql, "kind", 2)


# -- property names ---------------------------------------------------------------------------


def test_hostile_property_names_via_quoted_identifiers() -> None:
    names = ['a b"c', "x'); DROP TABLE events; --", "Model", "model", "zählung", "a.b", "__mq_x"]
    quoted = [n.replace('"', '""') for n in names]
    columns = ", ".join(f'max(properties."{q}") AS c{i}' for i, q in enumerate(quoted))
    checked = check_sql(f"SELECT count(*) AS value, {columns} FROM events")  # noqa: S608
    assert checked.properties == tuple(names)
    checked = check_sql(
        "SELECT count(*) AS value FROM events AS e "
        "WHERE e.properties.\"a.b\" = '1' AND e.properties.userId = '2'"
    )
    assert checked.properties == ("a.b", "userId")  # property names keep their case


# -- the apply hook ---------------------------------------------------------------------------


def test_check_metric_reports_sql_problems_with_line_col_and_caret() -> None:
    good = BillableMetric(name="Users", sql=SEED)
    assert check_metric(good) == []
    bad = BillableMetric(name="Bad", sql="SELECT count(*) AS value FROM read_csv('/etc/passwd')")
    [problem] = check_metric(bad)
    assert problem.startswith("sql: line 1, col 31: table function read_csv is not allowed")
    assert problem.endswith(
        "\n  SELECT count(*) AS value FROM read_csv('/etc/passwd')"
        "\n                                ^^^^^^^^^^^^^^^^^^^^^^^"
    )


# -- robustness -------------------------------------------------------------------------------

WORDS = [
    "SELECT",
    "FROM",
    "events",
    "e",
    "WHERE",
    "GROUP BY",
    "HAVING",
    "WITH",
    "AS",
    "(",
    ")",
    ",",
    ";",
    "*",
    "count(*)",
    "count(DISTINCT",
    "sum(",
    "arg_max(",
    "properties.x",
    "properties",
    "e.properties.y",
    "event_type",
    "timestamp",
    "value",
    "x",
    "'a'",
    "1",
    "2.5",
    "=",
    ">",
    "AND",
    "OR",
    "NOT",
    "IN",
    "EXISTS",
    "IS NULL",
    "CASE WHEN",
    "THEN",
    "ELSE",
    "END",
    "DISTINCT",
    "CAST(",
    "AS DECIMAL(10, 2))",
    "read_csv('/etc/passwd')",
    "JOIN",
    "ON",
    "UNION",
    "LIMIT",
    "ORDER BY",
    "OVER ()",
    "/",
    '"a b"',
    "--",
    "\n",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=24))
def test_any_text_gets_problems_or_a_checked_query_never_a_crash(words: list[str]) -> None:
    sql = " ".join(words)
    problems = sql_problems(sql)
    assert all(0 <= p.start <= len(sql) and p.message for p in problems)
    result = check_sql_metric(sql)  # also binds the scoped query when the checks pass
    assert result.ok == (not result.problems)
    if problems:
        assert not result.ok


@pytest.mark.parametrize("sql", ["SELECT events events", "SELECT b AS a, a AS b FROM events"])
def test_self_referencing_aliases_are_problems_not_crashes(sql: str) -> None:
    problems = sql_problems(sql)
    assert problems and all("refers back to itself" in p.message for p in problems)


@pytest.mark.parametrize(
    ("sql", "fragment", "message"),
    [
        (
            "SELECT sum(properties.input_tokens) AS value\nFROM events",
            "sum(properties.input_tokens)",
            "No function matches the given name and argument types 'sum(VARCHAR)'",
        ),
        (
            "SELECT count(*) AS value\nFROM events\nWHERE event_type = 'x' AND timestamp > 5",
            "timestamp > 5",
            "Cannot compare values of type TIMESTAMP and type INTEGER_LITERAL",
        ),
        (
            "SELECT count(*) AS value FROM events\n"
            "WHERE properties.m IN (SELECT max(timestamp) + 1 FROM events)",
            "max(timestamp) + 1",
            "'+(TIMESTAMP, INTEGER_LITERAL)'",
        ),
    ],
)
def test_duckdb_type_errors_point_at_the_expression(sql: str, fragment: str, message: str) -> None:
    """DuckDB finds type errors only when it binds the (scoped) query, and says nothing of
    where they are in the author's text: the checker finds the expression that has it."""
    result = check_sql_metric(sql)
    assert not result.ok and len(result.problems) == 1
    line, col = where(sql, fragment)
    head, source, caret = result.problems[0].split("\n")
    assert head.startswith(f"line {line}, col {col}: DuckDB cannot evaluate this: Binder Error: ")
    assert message in head
    assert caret.strip() == "^" * len(fragment)
    assert ("(property values are strings: cast them" in head) == ("VARCHAR" in message)


def test_a_type_error_no_single_expression_shows_is_reported_for_the_whole_query() -> None:
    sql = (
        "WITH x AS (SELECT properties.input_tokens AS t FROM events)\nSELECT sum(t) AS value FROM x"
    )
    [problem] = check_sql_metric(sql).problems
    assert problem.startswith(
        "DuckDB cannot evaluate the query: Binder Error: No function matches the given name and "
        "argument types 'sum(VARCHAR)'"
    )
    assert problem.endswith(
        "(property values are strings: cast them, e.g. CAST(properties.x AS DECIMAL(38, 12)))"
    )
