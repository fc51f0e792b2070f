"""Invoice ids: stable for (contract, statement period, credit type), so re-runs update rather
than duplicate (SEMANTICS.md section 7).

    invoice_id(contract, period start[, credit type])  uuid5(contract id "/" ISO start
                                                        ["/" credit type id])
    regenerated_id(old id)                             uuid5(old id "/regenerated")

The credit type id is part of the name only for a credit type other than the rate card's own
(`fiat_credit_type_id`, default USD cents).  An invoice run computes the ids in SQL, for all
invoices at once, with the macros of `define_id_macros` (tests/test_invoice_ids.py checks that
they agree with `invoice_id`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from engine.periods import iso

if TYPE_CHECKING:
    import duckdb

INVOICE_NAMESPACE = uuid.UUID("2b0f4c8e-6a59-5d1e-9f3a-6d6574657271")


def invoice_id(contract_id: str, period_start: datetime, credit_type_id: str | None = None) -> str:
    """The stable id of a contract's invoice for the period starting at `period_start`."""
    key = f"{contract_id}/{iso(period_start)}"
    if credit_type_id is not None:
        key += f"/{credit_type_id}"
    return str(uuid.uuid5(INVOICE_NAMESPACE, key))


def regenerated_id(old_id: str) -> str:
    return str(uuid.uuid5(INVOICE_NAMESPACE, f"{old_id}/regenerated"))


def define_id_macros(con: duckdb.DuckDBPyConnection) -> None:
    """mq_iso(ts): `iso` of a naive UTC timestamp; mq_uuid5(name): uuid5(INVOICE_NAMESPACE,
    name) as text (SHA-1 of the namespace bytes and the UTF-8 name, version 5, RFC 4122
    variant)."""
    namespace = "".join(f"\\x{b:02X}" for b in INVOICE_NAMESPACE.bytes)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP MACRO mq_iso(ts) AS (
            strftime(ts, '%Y-%m-%dT%H:%M:%S')
            || CASE WHEN microsecond(ts) % 1000000 = 0 THEN ''
                    ELSE '.' || lpad((microsecond(ts) % 1000000)::VARCHAR, 6, '0') END
            || 'Z');
        CREATE OR REPLACE TEMP MACRO mq_uuid5_hex(h) AS (
            substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-5' || substr(h, 14, 3) || '-'
            || substr('89ab', (('0x' || substr(h, 17, 1))::INTEGER & 3) + 1, 1)
            || substr(h, 18, 3) || '-' || substr(h, 21, 12));
        CREATE OR REPLACE TEMP MACRO mq_uuid5(name) AS (
            mq_uuid5_hex(sha1('{namespace}'::BLOB || encode(name))));
        """
    )
