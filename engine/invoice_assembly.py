"""Invoices from rated lines: which invoices the periods of mq_periods have, their totals and
content hash, and what the run does with each (created, updated, finalized, unchanged).

    register_invoices(con, snap)            mq_line_groups, mq_invoices, mq_invoice_totals,
                                            mq_outcomes
    unrated_usage(con, pricing)             the run summary's unrated usage (mq_unrated)

One USAGE invoice per (period, credit type): the rate card's own credit type always, others
when they have line items, and any existing draft of the period (so a draft that lost all its
lines is updated, not forgotten).  Ids are computed in SQL (engine.invoice_ids).  A stored
invoice whose content hash equals the computed one is unchanged: a re-run writes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import duckdb

from engine.content_hash import content_hash_text, refresh_stale_hashes
from engine.invoice_ids import define_id_macros
from engine.invoice_store import exact
from engine.invoice_summary import UnratedUsage
from engine.invoice_targets import Snapshot
from engine.pricing import Pricing
from engine.temp_tables import create_temp

# The lines of each (period, credit type, product): the key of an invoice and a product, the
# grain of its product snapshots.  Its total, line count and two combinations (sum and xor) of
# the 64-bit content hashes of its lines (rating's line_hash: lines are distinct, so their
# order does not matter).  One pass over the line table; everything after reads this one.
_LINE_GROUPS = """
CREATE OR REPLACE TEMP TABLE mq_line_groups AS
SELECT period_key, credit_type_id, product_id, sum(total) AS total, count(*) AS line_count,
       sum(line_hash) AS h1, bit_xor(line_hash) AS h2
FROM mq_lines
GROUP BY period_key, credit_type_id, product_id
"""

# The content hash of an invoice (engine.content_hash): its line count and the sum (mod 2^64)
# and xor of its lines' hashes, as text.
_INVOICE_TOTALS = """
CREATE OR REPLACE TEMP TABLE mq_invoice_totals AS
WITH per_key AS (
    SELECT period_key, credit_type_id, sum(total)::DECIMAL(38, 12) AS total,
           sum(line_count) AS line_count, sum(h1) AS h1, bit_xor(h2) AS h2
    FROM mq_line_groups
    GROUP BY period_key, credit_type_id
)
SELECT i.invoice_id,
       coalesce(p.total, 0)::DECIMAL(38, 12) AS subtotal,
       coalesce(p.total, 0)::DECIMAL(38, 12) AS total,
       CAST(coalesce(p.line_count, 0) AS INTEGER) AS line_count,
       -- the text printf('%d-%d-%d', ...) gave, ~35x cheaper (printf of a HUGEINT is slow)
       {content_hash} AS content_hash
FROM mq_invoices i
LEFT JOIN per_key p ON p.period_key = i.period_key AND p.credit_type_id = i.credit_type_id
""".format(content_hash=content_hash_text("p.line_count", "p.h1", "p.h2"))  # noqa: S608 - fixed SQL

_OUTCOMES = """
CREATE OR REPLACE TEMP TABLE mq_outcomes AS
SELECT n.invoice_id, n.period_key, n.credit_type_id, n.credit_type_name, n.credit_precision,
       n.status, n.replaces, p.customer_id, p.period_end, t.subtotal, t.total, t.line_count,
       t.content_hash,
       s.status AS old_status, s.revision AS old_revision,
       CASE WHEN s.id IS NULL THEN 'created'
            WHEN n.status = 'finalized' THEN 'finalized'
            WHEN s.content_hash <> t.content_hash THEN 'updated'
            -- the header changes: its credit type renamed or given another precision, its
            -- period cut (or no longer cut) by the contract's ending_before, or its contract
            -- moved to another customer
            WHEN s.credit_type_name <> n.credit_type_name
              OR s.credit_precision <> n.credit_precision
              OR s.period_end <> p.period_end
              OR s.customer_id <> p.customer_id THEN 'updated'
            ELSE 'unchanged' END AS outcome,
       CASE WHEN s.id IS NULL THEN 1
            WHEN s.content_hash <> t.content_hash THEN s.revision + 1
            ELSE s.revision END AS revision
FROM mq_invoices n
JOIN mq_periods p ON p.period_key = n.period_key
JOIN mq_invoice_totals t ON t.invoice_id = n.invoice_id
LEFT JOIN invoices s ON s.id = n.invoice_id
"""


# The invoices of the periods (see register_invoices), ids computed in SQL exactly as
# invoice_id() computes them in Python (tests/test_invoice_ids.py checks both agree).  A stored
# draft keeps its id and credit type: when the rate card's own credit type changed (the card's,
# or the contract moved to another card), the id without a suffix may be a draft of another
# credit type, and the new invoice takes the id with its credit type's suffix.
_INVOICES = """
CREATE OR REPLACE TEMP TABLE mq_invoices AS
WITH stored AS (
    SELECT p.period_key, s.credit_type_id, s.id
    FROM invoices s JOIN mq_periods p
      ON s.contract_id = p.contract_id AND s.period_start = p.period_start
    WHERE s.status = 'draft'
), pairs AS (
    SELECT period_key, primary_credit_type_id AS credit_type_id FROM mq_periods
    UNION
    SELECT period_key, credit_type_id FROM mq_line_groups
    UNION
    SELECT period_key, credit_type_id FROM stored
), named AS (
    SELECT x.period_key, x.credit_type_id, s.id AS stored_id,
           x.credit_type_id = p.primary_credit_type_id AS is_primary,
           mq_uuid5(p.contract_id || '/' || mq_iso(p.period_start)) AS own_id,
           mq_uuid5(p.contract_id || '/' || mq_iso(p.period_start) || '/' || x.credit_type_id)
               AS suffixed_id
    FROM pairs x
    JOIN mq_periods p ON p.period_key = x.period_key
    LEFT JOIN stored s ON s.period_key = x.period_key AND s.credit_type_id = x.credit_type_id
)
SELECT coalesce(x.stored_id,
                CASE WHEN x.is_primary AND x.own_id NOT IN (SELECT id FROM stored)
                     THEN x.own_id ELSE x.suffixed_id END) AS invoice_id,
       x.period_key, x.credit_type_id,
       coalesce(c.credit_type_name, x.credit_type_id) AS credit_type_name,
       coalesce(c.credit_precision, 0) AS credit_precision,
       p.status, NULL::VARCHAR AS replaces
FROM named x
JOIN mq_periods p ON p.period_key = x.period_key
LEFT JOIN mq_credit_types c ON c.credit_type_id = x.credit_type_id
ORDER BY x.period_key, x.credit_type_id
"""


def register_invoices(
    con: duckdb.DuckDBPyConnection,
    snap: Snapshot,
    *,
    ids: dict[tuple[int, str], str] | None = None,
    replaces: str | None = None,
) -> int:
    """mq_line_groups, and mq_invoices: the invoices of mq_periods, one per period and credit
    type (the rate card's own credit type always; others when they have line items; and any
    existing draft of the period, so a draft that lost all its lines is updated, not
    forgotten); their totals and content hashes (mq_invoice_totals) and what the run does with
    each (mq_outcomes).  Returns how many stored drafts were rehashed first (another hash
    scheme: engine.content_hash)."""
    con.execute(_LINE_GROUPS)
    if ids is None:
        define_id_macros(con)
        con.execute(_INVOICES)
    else:
        statuses = dict(con.execute("SELECT period_key, status FROM mq_periods").fetchall())
        rows: dict[str, list[Any]] = defaultdict(list)
        for (key, credit), the_id in sorted(ids.items()):
            ctype = snap.credit_types.get(credit)
            rows["invoice_id"].append(the_id)
            rows["period_key"].append(key)
            rows["credit_type_id"].append(credit)
            rows["credit_type_name"].append(ctype.name if ctype else credit)
            rows["credit_precision"].append(ctype.precision if ctype else 0)
            rows["status"].append(statuses[key])
            rows["replaces"].append(replaces)
        create_temp(
            con,
            "mq_invoices",
            {
                "invoice_id": ("VARCHAR", rows["invoice_id"]),
                "period_key": ("BIGINT", rows["period_key"]),
                "credit_type_id": ("VARCHAR", rows["credit_type_id"]),
                "credit_type_name": ("VARCHAR", rows["credit_type_name"]),
                "credit_precision": ("INTEGER", rows["credit_precision"]),
                "status": ("VARCHAR", rows["status"]),
                "replaces": ("VARCHAR", rows["replaces"]),
            },
        )
    con.execute(_INVOICE_TOTALS)
    rehashed = refresh_stale_hashes(con)
    con.execute(_OUTCOMES)
    frozen = con.execute(
        "SELECT invoice_id, old_status FROM mq_outcomes WHERE old_status NOT IN ('draft')"
    ).fetchall()
    assert not frozen, f"refusing to recompute frozen invoices: {frozen[:3]}"
    return rehashed


def unrated_usage(con: duckdb.DuckDBPyConnection, pricing: Pricing) -> list[UnratedUsage]:
    rows = con.execute(
        """
        SELECT customer_id, contract_id, period_start, period_end, product_id, pricing_values,
               sum(quantity) AS quantity, reason
        FROM mq_unrated
        GROUP BY ALL
        ORDER BY customer_id, period_start, contract_id, product_id, pricing_values, reason
        """
    ).fetchall()
    out = []
    for customer, contract, start, end, pid, values, quantity, reason in rows:
        product = pricing.products[pid]
        out.append(
            UnratedUsage(
                customer_id=customer,
                contract_id=contract,
                start_timestamp=start,
                end_timestamp=end,
                product_id=pid,
                product_name=product.name,
                pricing_group_values=dict(zip(product.pricing_group_key, values, strict=True)),
                quantity=exact(quantity),
                reason=reason,
            )
        )
    return out
