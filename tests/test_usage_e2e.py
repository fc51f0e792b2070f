"""`meterql usage` and `meterql compile` end to end: a home with applied catalog documents and
ingested events, all customers in one query, compared with the independent evaluator."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from evaluator import Event, evaluate
from layouts import LAYOUTS, home_stored_as
from typer.testing import CliRunner

from engine.api import Meterql
from engine.cli import app
from warehouse.errors import NotFoundError, UserError

START = datetime(2026, 3, 1)
END = datetime(2026, 3, 3)

CATALOG = """
billable_metrics:
  - id: bm-tokens
    name: Input Tokens
    aggregation_type: SUM
    aggregation_key: input_tokens
    event_type_filter: {in_values: [llm_request]}
    property_filters:
      - {name: model, exists: true}
      - {name: input_tokens, exists: true}
      - {name: region, exists: true}
      - {name: user_id, exists: true}
    group_keys: [[model, region], [user_id]]
  - id: bm-calls
    name: API Calls
    aggregation_type: count
customers:
  - {id: cust-acme, name: Acme, ingest_aliases: [acme-internal]}
  - {id: cust-globex, name: Globex}
"""


def make_events() -> list[Event]:
    """Events as sent: customer ids, an alias, and an unknown customer."""
    rows = []
    senders = ["cust-acme", "acme-internal", "cust-globex", "stranger"]
    models = ["gpt-5", "gpt-5-mini", "o3"]
    tokens = ["100", "250", "12.5", "1e3", "NaN", "7", "0.000000000001"]
    for i in range(120):
        props = {"user_id": f"u{i % 4}", "region": ["us", "eu"][i % 2]}
        if i % 9:
            props["model"] = models[i % 3]
        if i % 11:
            props["input_tokens"] = tokens[i % len(tokens)]
        rows.append(
            Event(
                transaction_id=f"tx-{i:04d}",
                customer_id=senders[i % 4],
                event_type="llm_request" if i % 5 else "api_call",
                timestamp=START - timedelta(hours=3) + timedelta(minutes=37 * i),
                properties=props,
            )
        )
    return rows


def write_ndjson(path: Path, events: list[Event]) -> None:
    """Events as Metronome-shaped NDJSON, the way a sender dumps them."""
    with path.open("w") as out:
        for e in events:
            row = {
                "transaction_id": e.transaction_id,
                "customer_id": e.customer_id,
                "event_type": e.event_type,
                "timestamp": e.timestamp.isoformat() + "Z",
                "properties": e.properties,
            }
            out.write(json.dumps(row) + "\n")


EVENTS = make_events()
RESOLVED = {"cust-acme": "cust-acme", "acme-internal": "cust-acme", "cust-globex": "cust-globex"}
# What the read API hands the compiler: catalog customer ids, unknown customers dropped.
KNOWN = [
    replace(e, customer_id=RESOLVED[e.customer_id]) for e in EVENTS if e.customer_id in RESOLVED
]


@pytest.fixture(scope="module", params=LAYOUTS)
def home(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The events stored a column per key, or (second run of every test) with every key in the
    maps of rare keys (warehouse.rare): usage is the same either way."""
    return home_stored_as(request.param, lambda: _home(tmp_path_factory))


def _home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("usage") / "home"
    mq = Meterql.init(path)
    doc = path.parent / "catalog.yaml"
    doc.write_text(CATALOG)
    mq.apply([doc])
    dump = path.parent / "events.ndjson"
    write_ndjson(dump, EVENTS)
    summary = mq.ingest([dump], now=max(e.timestamp for e in EVENTS) + timedelta(hours=1))
    assert summary.accepted == len(EVENTS)
    mq.close()
    return path


@pytest.fixture
def mq(home: Path):
    m = Meterql.open(home)
    yield m
    m.close()


def metric_def(mq: Meterql, ref: str):
    return mq.catalog.metric(ref)


def table_rows(table: pa.Table, group_by: list[str]) -> list[tuple]:
    out = []
    for r in table.to_pylist():
        out.append(
            (
                r["customer_id"],
                r["metric_id"],
                r["window_start"],
                r["window_end"],
                *(r["group"][k] for k in group_by),
                r["value"].normalize(),
            )
        )
    return out


def expected(mq: Meterql, ref: str, **kwargs) -> list[tuple]:
    rows = evaluate(metric_def(mq, ref), KNOWN, start=START, end=END, **kwargs)
    return [(*r[:-1], r[-1].normalize()) for r in rows]


@pytest.mark.parametrize("window", ["none", "hour", "day"])
@pytest.mark.parametrize("group_by", [[], ["model"], ["region", "model"], ["user_id"]])
def test_usage_matches_evaluator_for_all_customers(
    mq: Meterql, window: str, group_by: list[str]
) -> None:
    table = mq.usage("Input Tokens", START, END, window=window, group_by=group_by)
    assert table.column_names == [
        "customer_id", "metric_id", "window_start", "window_end", "group", "value",
    ]  # fmt: skip
    assert table.schema.field("value").type == pa.decimal128(38, 12)
    assert [f.name for f in table.schema.field("group").type] == group_by
    want = expected(mq, "bm-tokens", window=window, group_by=group_by)
    assert want and table_rows(table, group_by) == want
    assert {r["customer_id"] for r in table.to_pylist()} == {"cust-acme", "cust-globex"}


def test_alias_events_count_for_their_customer_and_unknown_customers_never_appear(
    mq: Meterql,
) -> None:
    table = mq.usage("bm-calls", START, END)
    counts = {r["customer_id"]: r["value"] for r in table.to_pylist()}
    in_period = [e for e in EVENTS if START <= e.timestamp < END]
    acme = sum(1 for e in in_period if e.customer_id in ("cust-acme", "acme-internal"))
    assert counts == {
        "cust-acme": Decimal(acme),
        "cust-globex": Decimal(sum(1 for e in in_period if e.customer_id == "cust-globex")),
    }
    assert any(e.customer_id == "stranger" for e in in_period)


@pytest.mark.parametrize("ref", ["cust-acme", "Acme", "acme-internal"])
def test_one_customer_by_id_name_or_alias(mq: Meterql, ref: str) -> None:
    table = mq.usage("Input Tokens", START, END, customer=ref, group_by=["model"])
    want = [r for r in expected(mq, "bm-tokens", group_by=["model"]) if r[0] == "cust-acme"]
    assert want and table_rows(table, ["model"]) == want


def test_not_in_values_lets_an_absent_property_pass_unless_it_must_exist(tmp_path: Path) -> None:
    """SEMANTICS.md section 2 (ours): `not_in_values` passes an event without the property,
    unless an `exists: true` filter requires it; values compare exactly (case-sensitive)."""
    doc = tmp_path / "catalog.yaml"
    doc.write_text(
        "billable_metrics:\n"
        "  - {name: Outside EU, aggregation_type: count,\n"
        "     property_filters: [{name: region, not_in_values: [eu]}]}\n"
        "  - {name: Outside EU present, aggregation_type: count,\n"
        "     property_filters: [{name: region, exists: true, not_in_values: [eu]}]}\n"
        "customers: [{id: c, name: C}]\n"
    )
    events = tmp_path / "events.ndjson"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "transaction_id": f"t{i}",
                    "customer_id": "c",
                    "event_type": "call",
                    "timestamp": "2026-03-01T10:00:00Z",
                    "properties": props,
                }
            )
            + "\n"
            for i, props in enumerate([{"region": "us"}, {"region": "eu"}, {"region": "EU"}, {}])
        )
    )
    with Meterql.init(tmp_path / "home") as mq:
        mq.apply([doc])
        assert mq.ingest([events], now="2026-03-01T11:00:00Z").accepted == 4
        values = [
            mq.usage(name, START, END).column("value").to_pylist()
            for name in ("Outside EU", "Outside EU present")
        ]
    assert values == [[Decimal(3)], [Decimal(2)]]


def test_usage_json_contract(home: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "--home", str(home), "usage", "--metric", "Input Tokens",
            "--start", "2026-03-01T00:00:00Z", "--end", "2026-03-03",
            "--window", "day", "--group-by", "model", "--format", "json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows and set(rows[0]) == {
        "customer_id", "metric_id", "window_start", "window_end", "group", "value",
    }  # fmt: skip
    first = rows[0]
    assert first["metric_id"] == "bm-tokens"
    assert first["window_start"] == "2026-03-01T00:00:00Z"
    assert first["window_end"] == "2026-03-02T00:00:00Z"
    assert set(first["group"]) == {"model"}
    assert isinstance(first["value"], str) and Decimal(first["value"]) > 0
    assert "E" not in "".join(r["value"] for r in rows)  # exact, no exponent
    assert any("." in r["value"] for r in rows)  # 12.5 and 1e-12 survive exactly
    keys = [(r["customer_id"], r["window_start"], r["group"]["model"]) for r in rows]
    assert keys == sorted(keys)


def test_usage_without_group_by_has_empty_group_and_csv_and_table(home: Path) -> None:
    base = ["--home", str(home), "usage", "--metric", "bm-calls", "--start", "2026-03-01",
            "--end", "2026-03-03"]  # fmt: skip
    rows = json.loads(CliRunner().invoke(app, [*base, "--format", "json"]).output)
    assert [r["group"] for r in rows] == [{}, {}]
    assert [r["customer_id"] for r in rows] == ["cust-acme", "cust-globex"]
    out = CliRunner().invoke(app, [*base, "--format", "csv", "--group-by", "x"])
    assert out.exit_code != 0  # bm-calls has no group keys
    grouped = ["--home", str(home), "usage", "--metric", "Input Tokens", "--start",
               "2026-03-01", "--end", "2026-03-03", "--group-by", "user_id"]  # fmt: skip
    result = CliRunner().invoke(app, [*grouped, "--format", "csv"])
    assert result.exit_code == 0, result.output
    parsed = list(csv.reader(io.StringIO(result.output)))
    assert parsed[0] == [
        "customer_id", "metric_id", "window_start", "window_end", "user_id", "value",
    ]  # fmt: skip
    assert parsed[1][2] == "2026-03-01T00:00:00Z" and parsed[1][4].startswith("u")
    table = CliRunner().invoke(app, [*grouped, "--format", "table"])
    assert table.exit_code == 0 and "cust-acme" in table.output and "user_id" in table.output
    # not on a terminal (a file, a pipe, a cron job), the table is as wide as its values:
    # none is cut short with an ellipsis
    piped = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *grouped],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        check=True,
    )
    assert "…" not in piped.stdout
    for row in parsed[1:]:
        assert all(cell in piped.stdout for cell in row)


def test_csv_and_table_refuse_a_group_key_named_like_a_fixed_column(tmp_path: Path) -> None:
    """A group key `customer_id` or `value` made a second column of that name: a CSV reader
    took the property's value as the customer (`OTHER`).  JSON keeps the group apart."""
    mq = Meterql.init(tmp_path / "home")
    doc = tmp_path / "doc.yaml"
    doc.write_text(
        "billable_metrics:\n  - {name: M, aggregation_type: count, property_filters: "
        "[{name: value, exists: true}, {name: customer_id, exists: true}], "
        "group_keys: [[value, customer_id]]}\ncustomers:\n  - {id: C1, name: C1}\n"
    )
    mq.apply([doc])
    dump = tmp_path / "e.ndjson"
    write_ndjson(dump, [Event("t1", "C1", "e", START, {"value": "9", "customer_id": "OTHER"})])
    assert mq.ingest([dump], now=START).accepted == 1
    mq.close()
    base = ["--home", str(tmp_path / "home"), "usage", "--metric", "M", "--start", "2026-03-01",
            "--end", "2026-03-03", "--group-by", "value", "--group-by", "customer_id"]  # fmt: skip
    for fmt in ("csv", "table"):
        result = cli(*base, "--format", fmt)
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        assert result.stderr.startswith(
            f"error: --format {fmt}: group key(s) 'value', 'customer_id' of metric 'M' have "
        )
        assert result.stderr.count("\n") == 1 and "use --format json" in result.stderr
    rows = json.loads(CliRunner().invoke(app, [*base, "--format", "json"]).output)
    assert [(r["customer_id"], r["group"], r["value"]) for r in rows] == [
        ("C1", {"value": "9", "customer_id": "OTHER"}, "1")
    ]


def test_compile_prints_the_sql_with_a_comment(home: Path) -> None:
    result = CliRunner().invoke(app, ["--home", str(home), "compile", "--metric", "Input Tokens"])
    assert result.exit_code == 0, result.output
    sql = result.output
    assert sql.startswith("/* meterql usage: metric 'bm-tokens' ('Input Tokens'): SUM of")
    assert "FROM events AS" in sql and "$start" in sql and "$end" in sql
    # With a period, it is exactly what `usage` runs: the home's files, read through the manifest
    mq = Meterql.open(home)
    exact_sql = mq.compile("Input Tokens", start=START, end=END)
    assert "read_parquet" in exact_sql.lower() and "customer_keys" in exact_sql
    rows = mq.con.execute(exact_sql).fetchall()
    assert [(r[0], r[-1].normalize()) for r in rows] == [
        (r[0], r[-1]) for r in expected(mq, "bm-tokens")
    ]
    mq.close()


# -- bad input ----------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )


def test_bad_input_is_one_line_exit_1(home: Path) -> None:
    result = cli("--home", str(home), "usage", "--metric", "Input Tokens", "--start",
                 "2026-03-01", "--end", "2026-03-03", "--group-by", "model",
                 "--group-by", "user_id")  # fmt: skip
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in result.stderr
    assert "--group-by ['model', 'user_id'] is not a subset of one compound group key" in line
    assert "['model', 'region'], ['user_id']" in line


@pytest.mark.parametrize(
    ("args", "bad"),
    [
        ([b"usage", b"--metric", b"Input \xffTokens", b"--start", b"2026-03-01"], 2),
        ([b"usage", b"--metric", b"M", b"--customer", b"\xfe", b"--end", b"2026-03-03"], 4),
        ([b"invoice", b"show", b"\xfe\xff\xfe\xff"], 2),
    ],
)
def test_an_argument_that_is_not_utf8_is_named(home: Path, args: list[bytes], bad: int) -> None:
    """Bytes that are not UTF-8 (Python passes them on as surrogates) reached DuckDB, which
    cannot encode them: an internal error."""
    result = cli("--home", str(home), *args)  # type: ignore[arg-type]
    shown = args[bad].decode("utf-8", "backslashreplace")
    byte = next(b for b in args[bad] if b >= 0x80)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr == (
        f"error: the argument {shown!r} is not UTF-8 text (byte 0x{byte:02X}); "
        "meterql takes names, ids, timestamps and paths as UTF-8\n"
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"metric": "Input Tokenz"}, NotFoundError,
         "no billable metric with id or name 'Input Tokenz'; did you mean 'Input Tokens'?"),
        ({"customer": "Acmee"}, NotFoundError, "no customer with id or name 'Acmee'"),
        ({"start": "2026-03-03", "end": "2026-03-01"}, UserError,
         "--start 2026-03-03T00:00:00Z is not before --end 2026-03-01T00:00:00Z"),
        ({"start": "2026-03-01", "end": "2026-03-01"}, UserError, "is not before --end"),
        ({"start": "yesterday"}, UserError, "--start 'yesterday' is not an ISO 8601 timestamp"),
        ({"window": "week"}, UserError,
         "--window 'week' is not a usage window; expected one of none, hour, day"),
        ({"group_by": ["region", "user_id"]}, UserError,
         "its group keys are: ['model', 'region'], ['user_id']"),
    ],
)  # fmt: skip
def test_bad_usage_input_names_the_field_and_value(
    mq: Meterql, kwargs: dict, error: type[Exception], message: str
) -> None:
    args = {"metric": "Input Tokens", "start": "2026-03-01", "end": "2026-03-03", **kwargs}
    with pytest.raises(error) as raised:
        mq.usage(args.pop("metric"), args.pop("start"), args.pop("end"), **args)
    assert message in str(raised.value)


def test_bad_format_and_dialect(home: Path) -> None:
    result = cli("--home", str(home), "usage", "--metric", "API Calls", "--start", "2026-03-01",
                 "--end", "2026-03-02", "--format", "xml")  # fmt: skip
    assert result.returncode == 2  # a usage error, like every bad option value
    assert "Invalid value for --format: 'xml' is not one of json, table, csv" in result.stderr
    result = cli("--home", str(home), "compile", "--metric", "API Calls", "--dialect", "oracle")
    assert result.returncode == 2  # as --format
    assert "Invalid value for --dialect: 'oracle' is not one of duckdb, spark" in result.stderr
    result = cli("--home", str(home), "compile", "--metric", "API Calls", "--start", "2026-03-01")
    assert result.returncode == 1 and "--end is missing" in result.stderr
