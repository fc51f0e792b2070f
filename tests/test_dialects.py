"""Usage queries written for other engines (metric_compiler.dialects).

For each dialect x {each standard aggregation, a day window, relation windows, a fused query,
SQL metrics (the seed's, an aggregate without GROUP BY, LATEST by timestamp)}: golden SQL under
tests/golden/dialects/<dialect>/ (regenerate with `pytest tests/test_dialects.py
--update-golden` and review the diff), and the text parses back in its dialect.  DuckDB's output
is exactly the query the engine runs (the existing golden files).  The decimal check's regular
expressions accept exactly the GLOB check's language (run on DuckDB), and, when chdb is
installed, the ClickHouse queries run on the fixture events and give DuckDB's rows.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from evaluator import (
    FIXTURE_END,
    FIXTURE_START,
    fixture_events,
    fixture_windows,
    load_events,
    load_windows,
)
from sqlglot import exp
from test_compiler_golden import SHAPES, Shape, metric_for, window_for

from metric_compiler import Window, compile_usage, numbers
from metric_compiler.dialects import (
    DIALECTS,
    DIFFERENCES,
    DialectError,
    _decimal_check,
    dialect_name,
)
from metric_compiler.sql_metric.usage import compile_sql_usage
from warehouse.errors import UserError
from warehouse.models import BillableMetric

GOLDEN = Path(__file__).parent / "golden"
DIALECT_GOLDEN = GOLDEN / "dialects"
AGGREGATIONS = ("count", "sum", "max", "unique", "latest")

SEED_SQL = (
    "SELECT count(DISTINCT properties.user_id) as value, properties.region FROM events "
    "WHERE event_type = 'api_request' GROUP BY properties.region"
)
SQL_METRICS = {
    "seed": SEED_SQL,
    "no_group_by": "SELECT count(*) AS value, sum(TRY_CAST(properties.tokens AS DECIMAL(38, 12))) "
    "AS total FROM events WHERE event_type = 'api_request'",
    "latest": "SELECT arg_max(TRY_CAST(properties.tokens AS DECIMAL(38, 12)), timestamp) AS "
    "value, properties.model FROM events WHERE event_type = 'api_request' AND properties.model "
    "IS NOT NULL GROUP BY properties.model",
}
START, END = exp.Placeholder(this="start"), exp.Placeholder(this="end")


def sql_metric(name: str) -> BillableMetric:
    return BillableMetric.model_validate(
        {"id": f"bm-sql-{name}", "name": name, "sql": SQL_METRICS[name]}
    )


def standard_case(name: str, dialect: str) -> str:
    if name == "fused__three_metrics":
        shape = SHAPES["event_type_in"]
        metrics = [
            metric_for("count", Shape()),
            metric_for("sum", shape),
            metric_for("latest", shape),
        ]
        window = Window.relation(exp.to_table("windows"))
        return compile_usage(metrics, exp.to_table("events"), window=window, dialect=dialect).sql
    agg, shape_name = name.split("__")
    shape = SHAPES[shape_name]
    return compile_usage(
        metric_for(agg, shape),
        exp.to_table("events"),
        window=window_for(shape),
        group_by=shape.group_by,
        customer_ids=shape.customers,
        dialect=dialect,
    ).sql


def sql_case(name: str, dialect: str, window: str = "day", start: Any = START, end: Any = END):
    metric_name = name.removeprefix("sql__").split("__")[0]
    return compile_sql_usage(
        sql_metric(metric_name),
        exp.to_table("events"),
        window=Window.parse(window, start, end),
        customers=exp.to_table("customers"),
        dialect=dialect,
    )


STANDARD = [f"{agg}__compound_group_key" for agg in AGGREGATIONS] + [
    "sum__window_day",
    "latest__window_relation",
    "fused__three_metrics",
]
SQL = ["sql__seed__day", "sql__no_group_by__none", "sql__latest__day"]
CASES = [(d, c) for d in DIALECTS for c in [*STANDARD, *SQL]]


def case_sql(dialect: str, case: str) -> str:
    if case.startswith("sql__"):
        return sql_case(case, dialect, window=case.split("__")[2]).sql
    return standard_case(case, dialect)


@pytest.mark.parametrize(("dialect", "case"), CASES, ids=[f"{d}-{c}" for d, c in CASES])
def test_golden_sql_per_dialect_parses_back(
    dialect: str, case: str, request: pytest.FixtureRequest
) -> None:
    sql = case_sql(dialect, case)
    path = DIALECT_GOLDEN / dialect / f"{case}.sql"
    if request.config.getoption("--update-golden"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql)
    assert path.exists(), f"no golden file {path}; run pytest with --update-golden"
    assert sql == path.read_text(), f"{path} differs; review, then --update-golden"
    parsed = sqlglot.parse(sql, read=dialect)
    assert len(parsed) == 1 and isinstance(parsed[0], exp.Query)
    if dialect != "duckdb":
        assert "GLOB" not in sql.upper() and "MATERIALIZED" not in sql.upper()
    if not DIFFERENCES[dialect].filter_clause:
        assert "FILTER(" not in sql.replace(" ", "").upper()
    if not DIFFERENCES[dialect].column_alias_lists:
        assert ' AS "__mq_q"(' not in sql and " AS `__mq_q`(" not in sql


def test_every_dialect_golden_file_belongs_to_a_case() -> None:
    names = {f"{d}/{c}.sql" for d, c in CASES}
    found = {f"{p.parent.name}/{p.name}" for p in DIALECT_GOLDEN.glob("*/*.sql")}
    assert found == names


@pytest.mark.parametrize("case", STANDARD)
def test_duckdb_output_is_exactly_what_the_engine_runs(case: str) -> None:
    """--dialect duckdb is the default compiler output, byte for byte (tests/golden/)."""
    assert standard_case(case, "duckdb") == (GOLDEN / f"{case}.sql").read_text()


def test_dialect_names_and_errors() -> None:
    assert dialect_name(" BigQuery ") == "bigquery"
    with pytest.raises(UserError) as raised:
        dialect_name("postgres")
    assert "--dialect 'postgres' is not a supported SQL dialect; expected one of duckdb, spark, " \
        "trino, bigquery, snowflake, clickhouse" in str(raised.value)  # fmt: skip
    with pytest.raises(UserError, match="did you mean 'trino'"):
        dialect_name("trinoo")


@pytest.mark.parametrize("dialect", ["snowflake", "clickhouse"])
def test_every_customer_hour_windows_are_refused_where_no_series_is_written(dialect: str) -> None:
    with pytest.raises(DialectError) as raised:
        sql_case("sql__no_group_by", dialect, window="hour")
    message = str(raised.value)
    assert f"cannot write a series of timestamps (the hour/day windows of every customer) in " \
        f"{dialect}" in message and "--window none" in message  # fmt: skip
    # a grouped SQL metric's windows come from the events: no series needed
    assert "__mq_events" in sql_case("sql__seed", dialect, window="hour").sql


def test_bigquery_and_snowflake_specifics() -> None:
    bigquery = sql_case("sql__latest", "bigquery").sql
    assert "BIGNUMERIC(38, 12)" in bigquery and "NUMERIC(38, 12)" not in bigquery.replace(
        "BIGNUMERIC(38, 12)", ""
    )
    assert "ARRAY_AGG(" in bigquery and "IGNORE NULLS" in bigquery and "SAFE_OFFSET(0)" in bigquery
    assert "TIMESTAMP_ADD(" in bigquery and "@start" in bigquery
    snowflake = standard_case("latest__compound_group_key", "snowflake")
    assert "WITHIN GROUP (ORDER BY" in snowflake and "TRY_CAST(" in snowflake
    assert "REGEXP_INSTR(" in snowflake and "DESC NULLS LAST" in snowflake
    clickhouse = sql_case("sql__no_group_by", "clickhouse", window="none").sql
    assert 'SETTINGS "join_use_nulls" = 1' in clickhouse
    assert "{start: DateTime64(6, 'UTC')}" in clickhouse


# -- the decimal check's regular expressions accept exactly the GLOB check's language ------------


def test_regex_decimal_check_accepts_exactly_the_glob_language() -> None:
    texts = ["".join(p) for n in range(5) for p in itertools.product("01.+-", repeat=n)]
    texts += [
        " 3", "3 ", "3\n", "\n3", "1e5", "1E5", "1_000", "NaN", "inf", "0x10", "1,5", "\uff11",
        "\u0663", "1." + "0" * 12, "1." + "0" * 13, "." + "5" * 12, "." + "5" * 13,
        "9" * 18, "9" * 19, "-" + "9" * 18, "+.5", "5.", "-.", "1.2.3", "--1", "1-", "",
    ]  # fmt: skip
    con = duckdb.connect()
    con.execute("CREATE TABLE t (x VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[t] for t in texts] + [[None]])
    column = exp.column("x")
    glob_check = numbers.is_decimal_text(column)
    search = replace(DIFFERENCES["spark"])  # REGEXP_LIKE searches, as DuckDB's regexp_matches
    regex_check = _decimal_check(glob_check.copy(), search, "spark")
    assert "GLOB" not in regex_check.sql("duckdb").upper()
    rows = con.execute(
        f"SELECT x, coalesce({glob_check.sql('duckdb')}, false), "  # noqa: S608 - built by sqlglot
        f"coalesce({regex_check.sql('duckdb')}, false) FROM t"
    ).fetchall()
    differ = [(x, g, r) for x, g, r in rows if g != r]
    assert differ == []
    assert sum(1 for _, g, _ in rows if g) > 50  # the language is exercised on both sides


# -- ClickHouse, executed (when chdb is installed) ----------------------------------------------


def _chdb_session():
    """An in-process ClickHouse (chdb, an optional test dependency): skipped when absent."""
    pytest.importorskip("chdb", reason="chdb runs ClickHouse SQL locally")
    from chdb import session

    return session.Session()


EVENTS = fixture_events()
# The seed's names (api_request, user_id); tokens are plain integers here, because a SQL metric's
# own TRY_CAST follows each engine's rules for odd text (DuckDB reads '  3' and '1_000',
# ClickHouse does not), unlike the compiled standard metrics' exact decimal check.
SEED_EVENTS = [
    replace(
        e,
        event_type="api_request" if e.event_type == "llm_request" else e.event_type,
        properties={
            ("user_id" if k == "user" else k): (str(i % 50) if k == "tokens" else v)
            for k, v in e.properties.items()
        },
    )
    for i, e in enumerate(EVENTS)
]
PROPERTIES = sorted({k for e in [*EVENTS, *SEED_EVENTS] for k in e.properties})


@pytest.fixture(scope="module")
def engines():
    """The fixture events (with the seed's property names added) in DuckDB and ClickHouse."""
    import pyarrow as pa

    from warehouse.layout import property_column

    click = _chdb_session()
    duck = duckdb.connect()
    events_all = EVENTS + [
        replace(e, transaction_id=e.transaction_id + "-seed") for e in SEED_EVENTS
    ]
    load_events(duck, events_all, PROPERTIES)
    load_windows(duck, fixture_windows())
    customers = sorted({e.customer_id for e in events_all} | {"nobody"})
    duck.execute("CREATE TABLE customers AS SELECT unnest(?::VARCHAR[]) AS id", [customers])

    data = duck.sql("SELECT * FROM events").to_arrow_table()  # read by chdb: Python(data)
    types = {
        "transaction_id": "String", "customer_id": "String", "event_type": "String",
        "timestamp": "DateTime64(6, 'UTC')",
        **{property_column(p): "Nullable(String)" for p in PROPERTIES},
    }  # fmt: skip
    columns = ", ".join(f'"{name}" {types[name]}' for name in data.schema.names)
    click.query(f"CREATE TABLE events ({columns}) ENGINE = Memory")
    click.query("INSERT INTO events SELECT * FROM Python(data)")
    windows = duck.sql("SELECT * FROM windows").to_arrow_table()  # noqa: F841 - read by chdb
    click.query(
        "CREATE TABLE windows (customer_id String, window_id String, "
        "window_start DateTime64(6, 'UTC'), window_end DateTime64(6, 'UTC')) ENGINE = Memory"
    )
    click.query("INSERT INTO windows SELECT * FROM Python(windows)")
    ids = pa.table({"id": pa.array(customers, pa.string())})  # noqa: F841 - read by chdb
    click.query("CREATE TABLE customers (id String) ENGINE = Memory")
    click.query("INSERT INTO customers SELECT * FROM Python(ids)")
    yield duck, click
    click.close()
    duck.close()


def _normal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def _click_rows(click, sql: str) -> list[tuple]:
    table = click.query(sql, "ArrowTable")
    return [tuple(_normal(v) for v in row.values()) for row in table.to_pylist()]


def _duck_rows(duck, sql: str) -> list[tuple]:
    return [tuple(_normal(v) for v in row) for row in duck.execute(sql).fetchall()]


CLICKHOUSE_STANDARD = [
    (agg, shape) for agg in AGGREGATIONS for shape in ("compound_group_key", "event_type_in",
    "not_in_values", "window_day", "window_hour", "window_relation", "one_customer")
]  # fmt: skip


@pytest.mark.parametrize(
    ("agg", "shape_name"), CLICKHOUSE_STANDARD, ids=[f"{a}-{s}" for a, s in CLICKHOUSE_STANDARD]
)
def test_clickhouse_standard_queries_give_duckdbs_rows(engines, agg: str, shape_name: str) -> None:
    duck, click = engines
    shape = SHAPES[shape_name]
    compiled = {
        d: compile_usage(
            metric_for(agg, shape),
            exp.to_table("events"),
            window=window_for(shape),
            group_by=shape.group_by,
            customer_ids=shape.customers,
            dialect=d,
        ).sql
        for d in ("duckdb", "clickhouse")
    }
    want = _duck_rows(duck, compiled["duckdb"])
    assert want
    assert _click_rows(click, compiled["clickhouse"]) == want


def test_clickhouse_fused_query_gives_duckdbs_rows(engines) -> None:
    duck, click = engines
    assert _click_rows(click, standard_case("fused__three_metrics", "clickhouse")) == _duck_rows(
        duck, standard_case("fused__three_metrics", "duckdb")
    )


@pytest.mark.parametrize(
    ("name", "window"),
    [("seed", "none"), ("seed", "day"), ("seed", "hour"), ("no_group_by", "none"),
     ("latest", "day")],
)  # fmt: skip
def test_clickhouse_sql_metrics_give_duckdbs_rows(engines, name: str, window: str) -> None:
    duck, click = engines
    bounds = (FIXTURE_START, FIXTURE_END)
    want = _duck_rows(duck, sql_case(f"sql__{name}", "duckdb", window, *bounds).sql)
    got = _click_rows(click, sql_case(f"sql__{name}", "clickhouse", window, *bounds).sql)
    assert want and got == want
    if name == "no_group_by":
        assert ("nobody", f"bm-sql-{name}") in {(r[0], r[1]) for r in got}  # a count-0 row
