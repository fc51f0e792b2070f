"""Writing an invoice run: every change of mq_outcomes in ONE catalog transaction (the caller
holds the home's writer lock).

    write(con, as_of, extra) -> data_seq

New invoices are inserted; drafts that changed get a new revision of line items and product
snapshots (earlier revisions stay); drafts the run finalizes are updated.  Line items go from
the temp tables straight into the catalog (INSERT ... SELECT), never through Python.  Every
committed ingest batch not seen before is numbered (invoice_event_batches) in the same
transaction: an invoice remembers the number it was computed at (late events, see
engine.late_events).  A failure rolls everything back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb

from engine.periods import naive

_INSERT_INVOICES = """
INSERT INTO invoices
SELECT o.invoice_id, p.contract_id, p.customer_id, 'USAGE', p.period_start, p.period_end,
       o.credit_type_id, o.credit_type_name, o.credit_precision, o.status, o.revision,
       o.content_hash, o.subtotal, o.total, o.line_count, $seq, $as_of, o.replaces, NULL,
       now()::TIMESTAMP, now()::TIMESTAMP,
       CASE WHEN o.status = 'finalized' THEN now()::TIMESTAMP END, NULL
FROM mq_outcomes o JOIN mq_periods p ON p.period_key = o.period_key
WHERE o.outcome = 'created'
ORDER BY p.customer_id, p.period_start, o.invoice_id
"""

_UPDATE_INVOICES = """
UPDATE invoices SET
    status = o.status, revision = o.revision, content_hash = o.content_hash,
    subtotal = o.subtotal, total = o.total, line_count = o.line_count,
    data_seq = $seq, computed_as_of = $as_of, updated_at = now()::TIMESTAMP,
    finalized_at = CASE WHEN o.status = 'finalized' THEN now()::TIMESTAMP END
FROM mq_outcomes o
WHERE invoices.id = o.invoice_id AND o.outcome IN ('updated', 'finalized')
"""

# Lines and product snapshots of the invoices that are new or got a new revision.
_INSERT_LINES = """
INSERT INTO invoice_line_items
SELECT o.invoice_id, o.revision, l.product_id, l.rate_type, l.rate_card_id, l.rate_index,
       l.pricing_values, l.presentation_values, l.starting_at, l.ending_before, l.tier_index,
       l.tier_lower, l.tier_size, l.quantity, l.unit_price, l.total
FROM mq_lines l
JOIN mq_outcomes o ON o.period_key = l.period_key AND o.credit_type_id = l.credit_type_id
WHERE o.outcome = 'created' OR o.revision <> o.old_revision
"""

_INSERT_PRODUCTS = """
INSERT INTO invoice_products
SELECT o.invoice_id, o.revision, pr.product_id, pr.product_name, pr.billable_metric_id,
       pr.pricing_keys, pr.presentation_keys
FROM (SELECT DISTINCT period_key, credit_type_id, product_id FROM mq_lines) x
JOIN mq_outcomes o ON o.period_key = x.period_key AND o.credit_type_id = x.credit_type_id
JOIN mq_products pr ON pr.product_id = x.product_id
WHERE o.outcome = 'created' OR o.revision <> o.old_revision
"""


def next_seq(con: duckdb.DuckDBPyConnection) -> int:
    """Number the committed batches not seen before; returns the data sequence number that
    describes every committed batch (inside the caller's transaction)."""
    [(current,)] = con.execute("SELECT coalesce(max(seq), 0) FROM invoice_event_batches").fetchall()
    con.execute(
        """
        INSERT INTO invoice_event_batches
        SELECT DISTINCT batch_id, ? FROM event_files
        WHERE batch_id NOT IN (SELECT batch_id FROM invoice_event_batches)
        """,
        [current + 1],
    )
    [(seq,)] = con.execute("SELECT coalesce(max(seq), 0) FROM invoice_event_batches").fetchall()
    return int(seq)


def write(
    con: duckdb.DuckDBPyConnection, as_of: datetime, extra: Sequence[tuple[str, list]]
) -> int:
    """Write mq_outcomes in one transaction (plus `extra` statements); returns data_seq."""
    con.execute("BEGIN TRANSACTION")
    try:
        seq = next_seq(con)
        params = {"seq": seq, "as_of": naive(as_of)}
        con.execute(_INSERT_INVOICES, params)
        con.execute(_UPDATE_INVOICES, params)
        con.execute(_INSERT_LINES)
        con.execute(_INSERT_PRODUCTS)
        for statement, args in extra:
            con.execute(statement, args)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return seq
