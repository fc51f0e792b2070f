"""Invoice ids computed in SQL (engine.invoice_assembly._INVOICES, with the macros of
engine.invoice_ids.define_id_macros) equal engine.invoice_ids.invoice_id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.invoice_ids import define_id_macros, invoice_id

CON = duckdb.connect()
define_id_macros(CON)

moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@settings(max_examples=200, deadline=None)
@given(contract=st.text(min_size=1, max_size=40), start=moments, credit=st.none() | st.text())
def test_sql_ids_equal_python_ids(contract: str, start: datetime, credit: str | None) -> None:
    name = "mq_uuid5(? || '/' || mq_iso(?::TIMESTAMP)" + (" || '/' || ?)" if credit else ")")
    params = [contract, start.replace(tzinfo=None)] + ([credit] if credit else [])
    [(got,)] = CON.execute(f"SELECT {name}", params).fetchall()
    assert got == invoice_id(contract, start, credit or None)


def test_microseconds_and_month_ends() -> None:
    for start in (
        datetime(2026, 1, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2024, 2, 29, tzinfo=UTC) + timedelta(microseconds=999_999),
    ):
        [(got,)] = CON.execute(
            "SELECT mq_uuid5('c' || '/' || mq_iso(?::TIMESTAMP))", [start.replace(tzinfo=None)]
        ).fetchall()
        assert got == invoice_id("c", start)
