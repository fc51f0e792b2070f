"""engine.temp_tables: small temp tables from Python lists, exact and typed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import duckdb
import pytest

from engine.temp_tables import create_temp


def test_columns_are_typed_exact_and_zipped() -> None:
    con = duckdb.connect()
    create_temp(
        con,
        "t",
        {
            "k": ("BIGINT", [1, 2]),
            "s": ("VARCHAR", ["a'; DROP TABLE t; --", None]),
            "ts": ("TIMESTAMP", [datetime(2026, 1, 1, 12), None]),
            "l": ("VARCHAR[]", [["x", None], []]),
            "d": ("DECIMAL(38, 18)", [Decimal("0.000000000000000001"), Decimal("1E+3")]),
            "b": ("BOOLEAN", [True, False]),
        },
    )
    rows = con.execute("SELECT * FROM t ORDER BY k").fetchall()
    assert rows == [
        (1, "a'; DROP TABLE t; --", datetime(2026, 1, 1, 12), ["x", None], Decimal("1E-18"), True),
        (2, None, None, [], Decimal("1000"), False),
    ]
    types = [
        t
        for (t,) in con.execute(
            "SELECT data_type FROM duckdb_columns() WHERE table_name = 't'"
        ).fetchall()
    ]
    assert types == ["BIGINT", "VARCHAR", "TIMESTAMP", "VARCHAR[]", "DECIMAL(38,18)", "BOOLEAN"]


def test_empty_columns_give_an_empty_typed_table() -> None:
    con = duckdb.connect()
    create_temp(con, "t", {"k": ("BIGINT", []), "l": ("VARCHAR[]", [])})
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    create_temp(con, "t", {"k": ("BIGINT", [7])})  # replaced
    assert con.execute("SELECT * FROM t").fetchall() == [(7,)]


@pytest.mark.parametrize(
    ("name", "columns", "message"),
    [
        ("t; DROP", {"k": ("BIGINT", [1])}, "temp table 't; DROP': names must be plain"),
        ("t", {"K x": ("BIGINT", [1])}, "temp table 't': names must be plain"),
        ("t", {"k": ("BIGINT); --", [1])}, "temp table 't': unexpected column type 'BIGINT); --'"),
        ("t", {"a": ("BIGINT", [1]), "b": ("BIGINT", [])}, "columns of different lengths [0, 1]"),
    ],
)
def test_bad_names_types_and_lengths_are_refused(name, columns, message) -> None:
    with pytest.raises(ValueError) as error:
        create_temp(duckdb.connect(), name, columns)
    assert message in str(error.value)
