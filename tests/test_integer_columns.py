"""Integer text columns: the manifest records which property columns of a file hold only
1 to 18 ASCII digits, and compiled usage queries read those without the decimal text check, with
the same results (warehouse.ingest.write.integer_text, warehouse.events.integer_properties)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from engine.api import Meterql
from warehouse.events import EventFile, integer_properties
from warehouse.ingest.write import FEW_VALUES, integer_text

START = datetime(2026, 3, 1)

CATALOG = """
billable_metrics:
  - id: bm-tokens
    name: Tokens
    aggregation_type: SUM
    aggregation_key: tokens
    property_filters: [{name: tokens, exists: true}]
customers:
  - {id: c1, name: One}
  - {id: c2, name: Two}
"""


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["0", "12", "007", None, "9" * 18], True),
        ([None, None], True),
        (["12", "2.5"], False),
        (["12", "-1"], False),
        (["12", "+1"], False),
        (["12", " 1"], False),
        (["12", ""], False),
        (["12", "1e5"], False),
        (["12", "١٢"], False),  # Arabic-Indic digits are not ASCII digits
        (["9" * 19], False),  # 10^18 or more is not a decimal of the metric
    ],
)
def test_integer_text(values: list[str | None], expected: bool) -> None:
    assert integer_text(pa.array(values, pa.string())) is expected
    assert integer_text(pa.chunked_array([pa.array(values, pa.string())])) is expected
    assert integer_text(pa.array(values, pa.string()).dictionary_encode()) is expected
    # a few values are checked in Python, many by Arrow kernels: the same answer
    many = values * (FEW_VALUES + 1)
    assert len(many) - many.count(None) > FEW_VALUES or not any(many)
    assert integer_text(pa.array(many, pa.string())) is expected
    assert integer_text(pa.array(many, pa.large_string())) is expected


def test_a_dictionary_is_judged_by_its_values() -> None:
    unused = pa.DictionaryArray.from_arrays(pa.array([0, 0]), pa.array(["1", "x"]))
    assert integer_text(unused) is False  # conservative: only costs the check


def _file(columns: tuple[str, ...], integers: tuple[str, ...] | None) -> EventFile:
    return EventFile("f.parquet", 1, START, START, columns, integers)


def test_integer_properties_need_every_file() -> None:
    known = _file(("p_tokens", "p_model"), ("p_tokens",))
    without = _file(("p_model",), ())  # no value of tokens: it cannot hold a bad one
    other = _file(("p_tokens",), ())
    old = _file(("p_tokens",), None)  # written before the manifest recorded it
    assert integer_properties([known, without], ["tokens", "model"]) == {"tokens"}
    assert integer_properties([known, other], ["tokens"]) == set()
    assert integer_properties([known, old], ["tokens"]) == set()
    assert integer_properties([], ["tokens"]) == {"tokens"}


def _ingest(mq: Meterql, path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w") as out:
        for i, (tx, customer, tokens) in enumerate(rows):
            event = {
                "transaction_id": tx,
                "customer_id": customer,
                "event_type": "llm",
                "timestamp": (START + timedelta(hours=i)).isoformat() + "Z",
                "properties": {"tokens": tokens, "model": "m"},
            }
            out.write(json.dumps(event) + "\n")
    mq.ingest([path], now=START + timedelta(days=2))


@pytest.fixture
def mq(tmp_path: Path):
    m = Meterql.init(tmp_path / "home")
    doc = tmp_path / "catalog.yaml"
    doc.write_text(CATALOG)
    m.apply([doc])
    yield m
    m.close()


def test_ingest_records_integer_columns_and_usage_skips_the_check(
    mq: Meterql, tmp_path: Path
) -> None:
    _ingest(mq, tmp_path / "a.ndjson", [("t1", "c1", "10"), ("t2", "c2", "32")])
    [(columns,)] = mq.con.execute("SELECT integer_columns FROM event_files").fetchall()
    assert columns == ["p_tokens"]  # not p_model
    end = START + timedelta(days=1)
    sql = mq.compile("Tokens", start=START, end=end)
    assert "GLOB" not in sql
    rows = mq.usage("Tokens", START, end).to_pylist()
    assert sorted((r["customer_id"], r["value"]) for r in rows) == [
        ("c1", Decimal(10)),
        ("c2", Decimal(32)),
    ]

    # a later batch with a fraction and a bad value: that file is not all integer text, so the
    # query checks again, and the bad value still does not count
    _ingest(mq, tmp_path / "b.ndjson", [("t3", "c1", "2.5"), ("t4", "c2", "1e3")])
    sql = mq.compile("Tokens", start=START, end=end)
    assert "GLOB" in sql
    rows = mq.usage("Tokens", START, end).to_pylist()
    assert sorted((r["customer_id"], r["value"]) for r in rows) == [
        ("c1", Decimal("12.5")),
        ("c2", Decimal(32)),
    ]


def test_files_of_older_homes_keep_the_check(mq: Meterql, tmp_path: Path) -> None:
    _ingest(mq, tmp_path / "a.ndjson", [("t1", "c1", "10")])
    mq.con.execute("UPDATE event_files SET integer_columns = NULL")  # as before migration 0005
    sql = mq.compile("Tokens", start=START, end=START + timedelta(days=1))
    assert "GLOB" in sql
