"""`meterql sql check` / `meterql sql run` and the engine behind them: a home with stored events,
the seed example as written, customer resolution, windows, and the errors a user sees."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from engine.api import Meterql
from engine.cli import app
from engine.sql_run import run_sql_metric, single_window
from metric_compiler.sql_metric import SqlMetricError
from warehouse.errors import NotFoundError, UserError
from warehouse.home import Home
from warehouse.layout import property_column

runner = CliRunner()
START = datetime(2026, 3, 1)
END = datetime(2026, 3, 2)

SEED = """SELECT count(DISTINCT properties.user_id) as value,
       properties.region
FROM events
WHERE event_type = 'api_request'
GROUP BY properties.region
"""

CUSTOMERS = """
customers:
  - {id: cust-acme, name: Acme, ingest_aliases: [acme-internal]}
  - {id: cust-globex, name: Globex}
  - {id: cust-quiet, name: Quiet}
"""


def seed_events() -> list[dict]:
    """Events as sent: ids, an alias, an unknown customer, and events outside the window."""
    senders = ["cust-acme", "acme-internal", "cust-globex", "stranger"]
    events = []
    for i in range(48):
        events.append(
            {
                "transaction_id": f"tx-{i:03d}",
                "customer_id": senders[i % 4],
                "event_type": "api_request" if i % 6 else "login",
                "timestamp": START - timedelta(hours=2) + timedelta(minutes=40 * i),
                "properties": {"user_id": f"u{i % 5}", "region": ["us", "eu", "ap"][i % 3]},
            }
        )
    return events


def store_events(home: Home, events: list[dict], batch_id: str = "b1") -> None:
    """Write events as stored Parquet (one file per day) and list them in the manifest."""
    names = sorted({k for e in events for k in e["properties"]})
    con = home.connect()
    try:
        days: dict[str, list[dict]] = {}
        for e in events:
            days.setdefault(e["timestamp"].date().isoformat(), []).append(e)
        for day, rows in sorted(days.items()):
            columns = {
                "transaction_id": pa.array([e["transaction_id"] for e in rows]),
                "customer_id": pa.array([e["customer_id"] for e in rows]),
                "event_type": pa.array([e["event_type"] for e in rows]),
                "timestamp": pa.array([e["timestamp"] for e in rows], pa.timestamp("us")),
                "ingested_at": pa.array([END] * len(rows), pa.timestamp("us")),
                "batch_id": pa.array([batch_id] * len(rows)),
            }
            for name in names:
                columns[property_column(name)] = pa.array(
                    [e["properties"].get(name) for e in rows], pa.string()
                )
            relative = f"event_date={day}/{batch_id}-0.parquet"
            (home.events_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(columns), home.events_dir / relative)
            con.execute(
                "INSERT INTO event_files (path, batch_id, event_date, row_count, min_timestamp, "
                "max_timestamp, property_columns, event_types) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    relative,
                    batch_id,
                    day,
                    len(rows),
                    min(e["timestamp"] for e in rows),
                    max(e["timestamp"] for e in rows),
                    [property_column(n) for n in names],
                    sorted({e["event_type"] for e in rows}),
                ],
            )
    finally:
        con.close()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    mq = Meterql.init(tmp_path / "home")
    doc = tmp_path / "customers.yaml"
    doc.write_text(CUSTOMERS)
    mq.apply([doc])
    mq.close()
    store_events(mq.home, seed_events())
    return mq.home


def expected_seed(events: list[dict]) -> dict[tuple[str, str], Decimal]:
    """Distinct users of api_request events in [START, END) per (customer, region)."""
    owner = {"cust-acme": "cust-acme", "acme-internal": "cust-acme", "cust-globex": "cust-globex"}
    users: dict[tuple[str, str], set[str]] = {}
    for e in events:
        customer = owner.get(e["customer_id"])
        if customer and e["event_type"] == "api_request" and START <= e["timestamp"] < END:
            key = (customer, e["properties"]["region"])
            users.setdefault(key, set()).add(e["properties"]["user_id"])
    return {k: Decimal(len(v)) for k, v in users.items()}


def test_the_seed_example_runs_as_written_for_all_customers(home: Home) -> None:
    mq = Meterql.open(home)
    table = mq.sql_run(SEED, "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z")
    mq.close()
    rows = table.to_pylist()
    got = {(r["customer_id"], r["group"]["region"]): r["value"] for r in rows}
    assert got == expected_seed(seed_events())
    assert {r["window_start"] for r in rows} == {START} and {r["window_end"] for r in rows} == {END}
    assert table.column_names == ["customer_id", "window_start", "window_end", "group", "value"]


def test_one_customer_by_name_or_alias(home: Home) -> None:
    mq = Meterql.open(home)
    by_name = mq.sql_run(SEED, START, END, customer="Acme").to_pylist()
    by_alias = mq.sql_run(SEED, START, END, customer="acme-internal").to_pylist()
    assert by_name == by_alias and {r["customer_id"] for r in by_name} == {"cust-acme"}
    with pytest.raises(NotFoundError, match="no customer with id or name 'Acme Corp'"):
        mq.sql_run(SEED, START, END, customer="Acme Corp")
    mq.close()


def test_an_aggregate_without_group_by_has_a_row_for_every_customer(home: Home) -> None:
    mq = Meterql.open(home)
    rows = mq.sql_run("SELECT count(*) AS value FROM events", START, END).to_pylist()
    mq.close()
    counts = {r["customer_id"]: r["value"] for r in rows}
    in_window = [e for e in seed_events() if START <= e["timestamp"] < END]
    acme = sum(e["customer_id"] in ("cust-acme", "acme-internal") for e in in_window)
    globex = sum(e["customer_id"] == "cust-globex" for e in in_window)
    assert counts == {"cust-acme": acme, "cust-globex": globex, "cust-quiet": 0}


def test_windows_of_the_engine_are_half_open_and_per_customer(home: Home) -> None:
    con = home.connect()
    try:
        first = START - timedelta(hours=2)  # the first event's timestamp
        windows = pa.concat_tables(
            [
                single_window(["cust-acme"], first, first + timedelta(minutes=40)),
                single_window(["cust-acme"], first + timedelta(minutes=1), END),
            ]
        )
        windows = windows.set_column(1, "window_id", pa.array([1, 2], pa.int64()))
        table = run_sql_metric(
            home, con, "SELECT min(transaction_id) AS first, count(*) AS value FROM events", windows
        )
    finally:
        con.close()
    rows = table.to_pylist()
    assert (
        [(r["window_id"], r["first"], r["value"]) for r in rows]
        == [
            (1, "tx-000", Decimal(1)),  # tx-001 (alias of Acme) at +40 min is outside [start, end)
            (
                2,
                "tx-001",
                Decimal(
                    sum(
                        1
                        for e in seed_events()[1:]
                        if e["customer_id"] in ("cust-acme", "acme-internal")
                        and e["timestamp"] < END
                    )
                ),
            ),
        ]
    )


def test_hostile_and_case_variant_property_names_end_to_end(home: Home) -> None:
    hostile = 'x"; DROP TABLE events; --'
    extra = [
        {
            "transaction_id": f"odd-{i}",
            "customer_id": "cust-globex",
            "event_type": "odd",
            "timestamp": START + timedelta(minutes=i),
            "properties": {hostile: str(i), "Model": "big", "model": ["a", "b"][i % 2]},
        }
        for i in range(1, 5)
    ]
    store_events(home, extra, batch_id="b2")
    quoted = hostile.replace('"', '""')
    sql = (
        f'SELECT sum(CAST(properties."{quoted}" AS INTEGER)) AS value, '  # noqa: S608
        "properties.Model AS upper_m, properties.model AS lower_m "
        "FROM events WHERE event_type = 'odd' GROUP BY 2, 3"
    )
    mq = Meterql.open(home)
    rows = mq.sql_run(sql, START, END).to_pylist()
    mq.close()
    got = {
        (r["customer_id"], r["group"]["upper_m"], r["group"]["lower_m"]): r["value"] for r in rows
    }
    assert got == {("cust-globex", "big", "a"): Decimal(6), ("cust-globex", "big", "b"): Decimal(4)}


def test_type_and_evaluation_errors_are_user_errors(home: Home) -> None:
    mq = Meterql.open(home)
    with pytest.raises(SqlMetricError) as raised:
        mq.sql_run("SELECT max(properties.user_id) AS value FROM events", START, END)
    message = str(raised.value)
    assert "line 1, col 12: the value column value is VARCHAR; it must be a number" in message
    assert "CAST(properties.x AS DECIMAL(38, 12))" in message
    with pytest.raises(SqlMetricError, match=r"sum\(VARCHAR\)"):
        mq.sql_run("SELECT sum(properties.user_id) AS value FROM events", START, END)
    with pytest.raises(SqlMetricError, match="Division by zero"):
        mq.sql_run("SELECT count(*) // (count(*) - count(*)) AS value FROM events", START, END)
    with pytest.raises(UserError, match="--start 'yesterday' is not an ISO 8601 timestamp"):
        mq.sql_run(SEED, "yesterday", END)
    with pytest.raises(UserError, match="is not before end"):
        mq.sql_run(SEED, END, START)
    mq.close()


def test_a_property_value_a_cast_cannot_convert_names_the_events(home: Home) -> None:
    """One client sent text where the author casts to a number: the error points at the CAST
    and names the value and the events that carry it (the operator can act), and says how to
    leave such values out."""
    sql = "SELECT sum(CAST(properties.user_id AS INTEGER)) AS value\nFROM events"
    mq = Meterql.open(home)
    with pytest.raises(SqlMetricError) as raised:
        mq.sql_run(sql, START, END)
    message = str(raised.value)
    # which value DuckDB meets first depends on its threads
    found = re.search(
        r"line 1, col 12: Conversion Error: Could not convert string '(u\d)' to INT32 when "
        rf"casting from source column {property_column('user_id')}: property 'user_id' is "
        r"'\1' in event\(s\) (.*); property values are text sent by clients: TRY_CAST leaves out",
        message,
    )
    assert found is not None, message
    value, listed = found.groups()
    owner = {"cust-acme": "cust-acme", "acme-internal": "cust-acme", "cust-globex": "cust-globex"}
    carriers = [  # the events read: of known customers (resolved), in the window
        e
        for e in seed_events()
        if e["properties"]["user_id"] == value
        and START <= e["timestamp"] < END
        and e["customer_id"] in owner
    ][:3]
    assert listed == ", ".join(
        f"{e['transaction_id']} (customer {owner[e['customer_id']]}, {e['timestamp'].isoformat()}Z)"
        for e in carriers
    )
    assert "SELECT sum(CAST(properties.user_id AS INTEGER)) AS value\n" in message
    assert (
        "\n" + " " * 17 + "^" * len("CAST(properties.user_id AS INTEGER)") + "\n" in message + "\n"
    )
    del raised  # its traceback holds DuckDB objects until exit
    table = mq.sql_run(sql.replace("CAST(", "TRY_CAST("), START, END)
    assert table.num_rows == 3  # a row per customer, every user_id left out: NULL sums
    mq.close()


def test_sql_check_needs_no_home_and_reports_columns_or_problems() -> None:
    ok = Meterql.sql_check(SEED)
    assert (ok.ok, ok.value, ok.group_keys, ok.problems) == (True, "value", ["region"], [])
    bad = Meterql.sql_check("SELECT max(properties.user_id) AS value FROM events")
    assert not bad.ok and "is VARCHAR; it must be a number" in bad.problems[0]
    assert "^^^^" in bad.problems[0]


# -- the CLI ----------------------------------------------------------------------------------


def meterql(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ},
        check=False,
    )


def test_cli_sql_check_prints_ok_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "m.sql"
    path.write_text(SEED)
    result = runner.invoke(app, ["sql", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == "OK\nvalue: value\ngroup keys: region\n"


def test_cli_sql_check_prints_every_problem_and_exits_1() -> None:
    sql = (
        "SELECT count(*) AS value, event_typ FROM events\n"
        "WHERE event_type IN (SELECT 'a' FROM read_csv('/etc/passwd'))"
    )
    result = meterql("sql", "check", "-", stdin=sql)
    assert result.returncode == 1
    assert result.stderr.startswith("error: 2 problem(s) in the SQL metric\n")
    assert "line 1, col 27: column event_typ does not exist" in result.stderr
    assert "did you mean 'event_type'?" in result.stderr
    assert "line 2, col 38: table function read_csv is not allowed" in result.stderr
    assert (
        "      WHERE event_type IN (SELECT 'a' FROM read_csv('/etc/passwd'))\n"
        "                                           ^^^^^^^^^^^^^^^^^^^^^^^\n"
    ) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [
        (b"SELECT count(*) AS value FROM events WHERE event_type = '\xff'", "invalid start byte"),
        (None, "standard input is closed"),  # `meterql sql check - <&-`
    ],
)
def test_cli_sql_from_stdin_that_is_not_utf8_or_closed_is_a_user_error(
    stdin: bytes | None, needle: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", "sql", "check", "-"],
        capture_output=True,
        input=stdin,
        preexec_fn=None if stdin is not None else (lambda: os.close(0)),
        check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert stderr.startswith("error: cannot read the SQL from stdin (-): ") and needle in stderr


def test_cli_sql_check_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sql", "check", str(tmp_path / "nope.sql")])
    assert isinstance(result.exception, UserError)
    assert "cannot read the SQL file" in str(result.exception) and "nope.sql" in str(
        result.exception
    )


def test_cli_sql_run_json_like_usage(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "m.sql"
    path.write_text(SEED)
    args = ["--home", str(home.path), "sql", "run", str(path)]
    result = runner.invoke(
        app, [*args, "--start", "2026-03-01", "--end", "2026-03-02T00:00:00Z", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    expected = expected_seed(seed_events())
    assert {(r["customer_id"], r["group"]["region"]): r["value"] for r in rows} == {
        k: str(v) for k, v in expected.items()
    }
    first = rows[0]
    assert set(first) == {"customer_id", "window_start", "window_end", "group", "value"}
    assert (first["window_start"], first["window_end"]) == (
        "2026-03-01T00:00:00Z",
        "2026-03-02T00:00:00Z",
    )


def test_cli_sql_run_stdin_one_customer_and_table(home: Home) -> None:
    home_args = ["--home", str(home.path), "sql", "run", "-", "--start", "2026-03-01"]
    result = runner.invoke(
        app,
        [*home_args, "--end", "2026-03-02", "--customer", "Globex", "--format", "csv"],
        input="SELECT count(*) AS value, event_type FROM events GROUP BY event_type",
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().split("\n")
    assert lines[0] == "customer_id,window_start,window_end,event_type,value"
    prefix = "cust-globex,2026-03-01T00:00:00Z,2026-03-02T00:00:00Z,"
    assert len(lines) == 3 and all(line.startswith(prefix) for line in lines[1:])
    table = runner.invoke(app, [*home_args, "--end", "2026-03-02"], input=SEED)
    assert table.exit_code == 0 and "region" in table.output and "cust-acme" in table.output


def test_cli_sql_run_boolean_groups_are_json_text_in_csv_and_table(home: Home) -> None:
    # `true`, as in the JSON rows, not Python's `True`
    home_args = ["--home", str(home.path), "sql", "run", "-", "--start", "2026-03-01"]
    query = "SELECT count(*) AS value, event_type = 'api_request' AS api FROM events GROUP BY 2"
    for fmt in ("json", "csv", "table"):
        result = runner.invoke(
            app, [*home_args, "--end", "2026-03-02", "--format", fmt], input=query
        )
        assert result.exit_code == 0, result.output
        assert "true" in result.output and "True" not in result.output, fmt


def test_cli_sql_run_errors_are_one_clear_message(home: Home) -> None:
    args = ["--home", str(home.path), "sql", "run", "-", "--start", "2026-03-01", "--end"]
    bad_format = runner.invoke(app, [*args, "2026-03-02", "--format", "xml"], input=SEED)
    assert bad_format.exit_code == 2 and "'xml' is not one of json, table, csv" in bad_format.output
    refused = meterql(*args, "2026-03-02", stdin="SELECT * FROM read_text('/etc/passwd')")
    assert refused.returncode == 1 and "table function read_text is not allowed" in refused.stderr
    assert "Traceback" not in refused.stderr
