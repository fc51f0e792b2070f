"""SQL metrics end to end: the seed's example, as written, through apply -> ingest -> usage
(every window kind, --customer, --group-by, JSON) -> a product priced by `region` -> invoice
run, compared with an independent Python computation; windows without events; the --group-by
rule; compile."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from layouts import LAYOUTS, home_stored_as
from typer.testing import CliRunner

from engine.api import Meterql
from engine.cli import app
from warehouse.errors import UserError

# The seed's example (metronome-api-quickstart.md, "SQL billable metrics"), exactly as written.
SEED_SQL = """SELECT count(DISTINCT properties.user_id) as value,
       properties.region
FROM events
WHERE event_type = 'api_request'
GROUP BY properties.region"""

REQUESTS_SQL = "SELECT count(*) AS value FROM events WHERE event_type = 'api_request'"
NOTHING_SQL = (
    "SELECT sum(CAST(properties.n AS DECIMAL(38, 12))) AS value FROM events "
    "WHERE event_type = 'never_sent'"
)
TWO_KEYS_SQL = (
    "SELECT count(DISTINCT properties.user_id) AS value, properties.region, properties.plan "
    "FROM events WHERE event_type = 'api_request' GROUP BY properties.region, properties.plan"
)

CATALOG = {
    "billable_metrics": [
        {"id": "bm-users", "name": "Unique users per region", "sql": SEED_SQL},
        {"id": "bm-requests", "name": "API requests", "sql": REQUESTS_SQL},
        {"id": "bm-nothing", "name": "Nothing", "sql": NOTHING_SQL},
        {"id": "bm-two", "name": "Users per region and plan", "sql": TWO_KEYS_SQL},
    ],
    "products": [
        {
            "name": "Active users",
            "type": "usage",
            "billable_metric_id": "Unique users per region",
            "pricing_group_key": ["region"],
        }
    ],
    "rate_cards": [
        {
            "name": "Users card",
            "rates": [
                {
                    "product_id": "Active users",
                    "starting_at": "2026-01-01T00:00:00Z",
                    "rate_type": "flat",
                    "price": "100",
                    "pricing_group_values": {"region": "us"},
                },
                {
                    "product_id": "Active users",
                    "starting_at": "2026-01-01T00:00:00Z",
                    "rate_type": "flat",
                    "price": "2.5",
                    "pricing_group_values": {"region": "eu"},
                },
            ],
        }
    ],
    "customers": [
        {"id": "cust-acme", "name": "Acme", "ingest_aliases": ["acme-internal"]},
        {"id": "cust-globex", "name": "Globex"},
        {"id": "cust-initech", "name": "Initech"},  # no events at all
    ],
    "contracts": [
        {
            "name": f"{c}-monthly",
            "customer_id": c,
            "rate_card_id": "Users card",
            "starting_at": "2026-03-01T00:00:00Z",
            "usage_statement_schedule": {"frequency": "MONTHLY"},
        }
        for c in ("Acme", "Globex", "Initech")
    ],
}

START = datetime(2026, 3, 1, 6, 30)  # not on an hour: the first hour/day window is clipped
END = datetime(2026, 3, 4)
RESOLVED = {"cust-acme": "cust-acme", "acme-internal": "cust-acme", "cust-globex": "cust-globex"}


@dataclass(frozen=True)
class Sent:
    tx: str
    customer: str  # as sent
    event_type: str
    at: datetime
    properties: dict[str, str]


def make_events() -> list[Sent]:
    rng = random.Random(5)
    senders = ["cust-acme", "acme-internal", "cust-globex", "stranger"]
    out = []
    for i in range(240):
        props: dict[str, str] = {}
        if rng.random() < 0.9:
            props["user_id"] = f"u{rng.randrange(7)}"
        if rng.random() < 0.93:
            props["region"] = rng.choice(["us", "eu", "apac"])
        props["plan"] = rng.choice(["free", "pro"])
        out.append(
            Sent(
                tx=f"tx-{i:04d}",
                customer=senders[i % 4] if i % 17 else "cust-globex",
                event_type="api_request" if rng.random() < 0.75 else "llm_request",
                at=datetime(2026, 3, 1) + timedelta(minutes=rng.randrange(4 * 24 * 60)),
                properties=props,
            )
        )
    return out


EVENTS = make_events()


@pytest.fixture(scope="module", params=LAYOUTS)
def home(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The events stored a column per key, or (second run of every test) with every key in the
    maps of rare keys (warehouse.rare): a SQL metric reads them the same either way."""
    return home_stored_as(request.param, lambda: _home(tmp_path_factory))


def _home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    path = tmp_path_factory.mktemp("sqlmetric") / "home"
    mq = Meterql.init(path)
    doc = path.parent / "catalog.yaml"
    doc.write_text(yaml.safe_dump(CATALOG, sort_keys=False))
    mq.apply([doc])
    dump = path.parent / "events.ndjson"
    with dump.open("w") as out:
        for e in EVENTS:
            row = {
                "transaction_id": e.tx,
                "customer_id": e.customer,
                "event_type": e.event_type,
                "timestamp": e.at.isoformat() + "Z",
                "properties": e.properties,
            }
            out.write(json.dumps(row) + "\n")
    summary = mq.ingest([dump], now=max(e.at for e in EVENTS) + timedelta(hours=1))
    assert summary.accepted == len(EVENTS)
    mq.close()
    return path


@pytest.fixture
def mq(home: Path):
    m = Meterql.open(home)
    yield m
    m.close()


# -- the independent computation -------------------------------------------------------------------


def windows_of(at: datetime, window: str, start: datetime, end: datetime) -> tuple[datetime, ...]:
    if window == "none":
        return (start, end)
    step = timedelta(hours=1) if window == "hour" else timedelta(days=1)
    bucket = at.replace(minute=0, second=0, microsecond=0)
    if window == "day":
        bucket = bucket.replace(hour=0)
    return (max(bucket, start), min(bucket + step, end))


def expected_users(window: str, start: datetime = START, end: datetime = END) -> list[tuple]:
    """(customer, window_start, window_end, region, distinct users) for each group with events."""
    users: dict[tuple, set[str]] = defaultdict(set)
    for e in EVENTS:
        if e.customer not in RESOLVED or e.event_type != "api_request":
            continue
        if not start <= e.at < end:
            continue
        key = (RESOLVED[e.customer], *windows_of(e.at, window, start, end))
        group = users[(*key, e.properties.get("region"))]
        if "user_id" in e.properties:
            group.add(e.properties["user_id"])
    rows = [(*k, Decimal(len(v))) for k, v in users.items()]
    return sorted(rows, key=lambda r: (r[0], r[1], r[3] is not None, r[3] or ""))


def rows_of(table) -> list[tuple]:
    return [
        (
            r["customer_id"],
            r["window_start"],
            r["window_end"],
            *r["group"].values(),
            None if r["value"] is None else r["value"].normalize(),
        )
        for r in table.to_pylist()
    ]


# -- usage --------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["none", "hour", "day"])
def test_the_seed_sql_metric_usage_matches_python_for_every_window(mq: Meterql, window: str):
    table = mq.usage("Unique users per region", START, END, window=window)
    assert table.column_names == [
        "customer_id", "metric_id", "window_start", "window_end", "group", "value",
    ]  # fmt: skip
    assert [f.name for f in table.schema.field("group").type] == ["region"]
    assert set(table.column("metric_id").to_pylist()) == {"bm-users"}
    want = expected_users(window)
    assert want and rows_of(table) == want
    assert any(r[3] is None for r in want)  # events without a region: the NULL group
    if window == "hour":  # a group whose events have no user_id: count 0
        assert any(r[4] == 0 for r in want)


def test_group_by_all_group_columns_is_the_same_and_one_customer_by_alias(mq: Meterql):
    full = mq.usage("bm-users", START, END, window="day", group_by=["region"])
    assert rows_of(full) == expected_users("day")
    acme = mq.usage("bm-users", START, END, window="day", customer="acme-internal")
    assert rows_of(acme) == [r for r in expected_users("day") if r[0] == "cust-acme"]


def test_usage_json_rows_are_shaped_like_standard_metrics(home: Path):
    result = CliRunner().invoke(
        app,
        [
            "--home", str(home), "usage", "--metric", "Unique users per region",
            "--start", "2026-03-01T06:30:00Z", "--end", "2026-03-04", "--window", "day",
            "--format", "json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows and all(
        set(r) == {"customer_id", "metric_id", "window_start", "window_end", "group", "value"}
        for r in rows
    )
    assert rows[0]["window_start"] == "2026-03-01T06:30:00Z"
    assert rows[0]["window_end"] == "2026-03-02T00:00:00Z"
    assert all(set(r["group"]) == {"region"} and isinstance(r["value"], str) for r in rows)
    want = expected_users("day")
    assert [(r["customer_id"], r["group"]["region"], Decimal(r["value"])) for r in rows] == [
        (w[0], w[3], w[4]) for w in want
    ]


def test_an_aggregate_without_group_by_has_a_row_for_every_customer_and_window(mq: Meterql):
    """Windows without events give what the query gives over no events (count 0), for every
    customer, as `sql run` and invoices do."""
    table = mq.usage("API requests", START, END, window="day")
    rows = rows_of(table)
    days = [
        (datetime(2026, 3, 1, 6, 30), datetime(2026, 3, 2)),
        (datetime(2026, 3, 2), datetime(2026, 3, 3)),
        (datetime(2026, 3, 3), datetime(2026, 3, 4)),
    ]
    customers = ["cust-acme", "cust-globex", "cust-initech"]
    assert [(r[0], r[1], r[2]) for r in rows] == [(c, *d) for c in customers for d in days]
    for customer, first, last, value in rows:
        assert value == sum(
            1
            for e in EVENTS
            if RESOLVED.get(e.customer) == customer
            and e.event_type == "api_request"
            and first <= e.at < last
        )
    assert [r[3] for r in rows if r[0] == "cust-initech"] == [0, 0, 0]
    # --window none: the same rows as `sql run` (every customer)
    whole = mq.usage("API requests", START, END)
    ran = mq.sql_run(REQUESTS_SQL, START, END)
    assert [(r[0], r[-1]) for r in rows_of(whole)] == [
        (r["customer_id"], r["value"].normalize()) for r in ran.to_pylist()
    ]


def test_a_null_value_is_null_in_json(home: Path):
    result = CliRunner().invoke(
        app,
        ["--home", str(home), "usage", "--metric", "Nothing", "--start", "2026-03-01",
         "--end", "2026-03-02", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["customer_id"], r["value"]) for r in rows] == [
        ("cust-acme", None), ("cust-globex", None), ("cust-initech", None),
    ]  # fmt: skip


# -- the --group-by rule ------------------------------------------------------------------------


def test_group_by_must_be_all_group_columns_in_any_order_or_omitted(mq: Meterql):
    both = mq.usage("bm-two", START, END, group_by=["plan", "region"])
    assert [f.name for f in both.schema.field("group").type] == ["plan", "region"]
    omitted = mq.usage("bm-two", START, END)
    assert [f.name for f in omitted.schema.field("group").type] == ["region", "plan"]
    assert sorted(rows_of(both), key=str) == sorted(
        [(r[0], r[1], r[2], r[4], r[3], r[5]) for r in rows_of(omitted)], key=str
    )


@pytest.mark.parametrize(
    ("group_by", "message"),
    [
        (["region"], "--group-by ['region'] leaves out 'plan' of SQL metric 'Users per region "
         "and plan' (id 'bm-two'): a SQL metric's value cannot be re-aggregated over fewer "
         "group columns"),
        (["regoin", "plan"], "--group-by 'regoin' is not a group column of SQL metric 'Users "
         "per region and plan' (id 'bm-two'); its query returns the group columns: 'region', "
         "'plan'; did you mean 'region'?"),
        (["plan", "plan"], "--group-by lists 'plan' more than once"),
    ],
)  # fmt: skip
def test_bad_group_by_names_the_metric_the_key_and_why(
    mq: Meterql, group_by: list[str], message: str
):
    with pytest.raises(UserError) as raised:
        mq.usage("bm-two", START, END, group_by=group_by)
    assert message in str(raised.value)


def test_bad_group_by_on_the_cli_is_one_line_exit_1(home: Path):
    result = CliRunner().invoke(
        app,
        ["--home", str(home), "usage", "--metric", "bm-users", "--start", "2026-03-01",
         "--end", "2026-03-02", "--group-by", "model"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--group-by 'model' is not a group column of SQL metric 'Unique users" in str(
        result.exception
    )


# -- compile ------------------------------------------------------------------------------------


def test_compile_of_a_sql_metric_runs_to_the_same_rows_as_usage(mq: Meterql):
    for window in ("none", "day"):
        sql = mq.compile("bm-users", start=START, end=END, window=window)
        assert sql.startswith("/* meterql usage: SQL metric 'Unique users per region'")
        got = [(r[0], r[2], r[3], r[4], r[5].normalize()) for r in mq.con.execute(sql).fetchall()]
        assert got == expected_users(window)
    scalar = mq.compile("API requests", start=START, end=END, window="hour")
    assert len(mq.con.execute(scalar).fetchall()) == 3 * (18 + 24 + 24)  # every customer-hour


def test_compile_without_a_period_reads_events_and_customers_relations(mq: Meterql):
    grouped = mq.compile("bm-users", window="day")
    assert "$start" in grouped and "FROM events AS" in grouped and "customers" not in grouped
    scalar = mq.compile("API requests", window="day")
    assert "FROM customers AS" in scalar and "GENERATE_SERIES" in scalar
    spark = mq.compile("bm-users", dialect="spark")
    assert "`__mq_events`" in spark and "COUNT(DISTINCT" in spark
    with pytest.raises(UserError, match="--dialect spark cannot be combined with --start/--end"):
        mq.compile("bm-users", dialect="spark", start=START, end=END)


# -- invoices -----------------------------------------------------------------------------------


def test_the_seed_metric_prices_a_product_by_region_on_invoices(mq: Meterql):
    summary = mq.invoice_run("2026-04-02T00:00:00Z")  # March is finalized
    prices = {"us": Decimal(100), "eu": Decimal("2.5")}
    march_start, march_end = datetime(2026, 3, 1), datetime(2026, 4, 1)
    want = defaultdict(list)
    for customer, _s, _e, region, users in expected_users("none", march_start, march_end):
        if region in prices:
            total = (users * prices[region]).quantize(Decimal(1), rounding="ROUND_HALF_UP")
            want[customer].append((region, users, prices[region], total))
    for name, customer in (("Acme", "cust-acme"), ("Globex", "cust-globex")):
        [march] = [i for i in mq.invoices(customer=name) if i.start_timestamp.month == 3]
        assert march.status == "finalized"
        lines = [
            (li.pricing_group_values["region"], li.quantity, li.unit_price, li.total)
            for li in march.line_items
            if li.name == "Active users"
        ]
        assert sorted(lines) == sorted(want[customer]) and lines
        assert march.total == sum(line[3] for line in want[customer])
    [initech] = [i for i in mq.invoices(customer="Initech") if i.start_timestamp.month == 3]
    assert [li.name for li in initech.line_items if li.name == "Active users"] == []
    unrated = json.dumps(summary.model_dump(mode="json"))
    assert "apac" in unrated and "no_rate_for_group_values" in unrated


# -- which windows: decided from the query's shape, never wrong --------------------------------


def test_queries_said_to_return_nothing_without_events_return_nothing_without_events():
    """`rows_without_events` False (only windows holding events are evaluated) must mean the
    query gives no row for a window without events; checked by running every scoping test
    query over no events."""
    from test_sql_metric_scope import QUERIES, scoped

    from metric_compiler.sql_metric import check_sql
    from metric_compiler.sql_metric.usage import rows_without_events

    windows = [("c1", 0, datetime(2024, 1, 1), datetime(2024, 1, 2))]
    decided = {name: rows_without_events(check_sql(sql)) for name, sql in QUERIES.items()}
    for name, sql in QUERIES.items():
        if not decided[name]:
            assert scoped(sql, [], windows) == [], name
    assert not decided["seed"] and not decided["date_trunc_groups"]  # grouped over events
    assert not decided["group_having"] and not decided["scalar_subquery_having"]
    assert decided["count_no_group"] and decided["no_from"] and decided["cte_agg_of_agg"]
    assert decided["having_no_group"]  # unsure (HAVING may drop the row): every window
