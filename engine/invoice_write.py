"""Writing an invoice run: every change of mq_outcomes in ONE catalog transaction (the caller
holds the home's writer lock).

    with RunTransaction(con) as tx:     the run's one transaction: its temp tables and its
        ...                             catalog changes
        write(con, as_of, extra)        -> data_seq (None: nothing to write)
        record_run(con, ...)            a run (or regenerate) that wrote: its row in the
                                        invoice_runs ledger
        tx.commit()                     drops the run's temp tables, commits

New invoices are inserted; drafts that changed get a new revision of line items and product
snapshots (earlier revisions stay); drafts the run finalizes are updated.  Line items go from
the temp tables straight into the catalog (INSERT ... SELECT), never through Python.  Every
committed ingest batch not seen before is numbered (invoice_event_batches) in the same
transaction: an invoice remembers the number it was computed at (late events, see
engine.late_events).  A failure rolls everything back.

Why the temp tables live inside the transaction: DuckDB checkpoints (compresses) its temporary
database at the first commit after more than `checkpoint_threshold` (16 MiB) of temp data was
committed: 0.15 s for the ~0.5 GB of temp tables of a 10M-event run (README "Invoice
benchmarks"), for tables thrown away anyway.  Created and dropped inside one transaction, they
are never committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType

import duckdb

from engine.content_hash import SCHEME
from engine.invoice_summary import InvoiceCounts
from engine.periods import naive
from engine.rating import LINE_ITEMS
from warehouse.ingest.connection import clear
from warehouse.sqlrows import rollback

_INSERT_INVOICES = """
INSERT INTO invoices
SELECT o.invoice_id, p.contract_id, p.customer_id, 'USAGE', p.period_start, p.period_end,
       o.credit_type_id, o.credit_type_name, o.credit_precision, o.status, o.revision,
       o.content_hash, o.subtotal, o.total, o.line_count, $seq, $as_of, o.replaces, NULL,
       now()::TIMESTAMP, now()::TIMESTAMP,
       CASE WHEN o.status = 'finalized' THEN now()::TIMESTAMP END, NULL, $scheme
FROM mq_outcomes o JOIN mq_periods p ON p.period_key = o.period_key
WHERE o.outcome = 'created'
ORDER BY p.customer_id, p.period_start, o.invoice_id
"""

_UPDATE_INVOICES = """
UPDATE invoices SET
    status = o.status, revision = o.revision, content_hash = o.content_hash,
    credit_type_name = o.credit_type_name, credit_precision = o.credit_precision,
    customer_id = o.customer_id, period_end = o.period_end, hash_scheme = $scheme,
    subtotal = o.subtotal, total = o.total, line_count = o.line_count,
    data_seq = $seq, computed_as_of = $as_of, updated_at = now()::TIMESTAMP,
    finalized_at = CASE WHEN o.status = 'finalized' THEN now()::TIMESTAMP END
FROM mq_outcomes o
WHERE invoices.id = o.invoice_id AND o.outcome IN ('updated', 'finalized')
"""

# Lines and product snapshots of the invoices that are new or got a new revision.
_INSERT_LINES = f"""
INSERT INTO invoice_line_items
SELECT o.invoice_id, o.revision, l.product_id, l.rate_type, l.rate_card_id, l.rate_index,
       l.pricing_values, l.presentation_values, l.starting_at, l.ending_before, l.tier_index,
       l.tier_lower, l.tier_size, l.quantity, l.unit_price, l.total
FROM ({LINE_ITEMS}) l
JOIN mq_outcomes o ON o.period_key = l.period_key AND o.credit_type_id = l.credit_type_id
WHERE o.outcome = 'created' OR o.revision <> o.old_revision
"""  # noqa: S608 - fixed SQL

_INSERT_PRODUCTS = """
INSERT INTO invoice_products
SELECT o.invoice_id, o.revision, pr.product_id, pr.product_name, pr.billable_metric_id,
       pr.pricing_keys, pr.presentation_keys
FROM mq_line_groups x
JOIN mq_outcomes o ON o.period_key = x.period_key AND o.credit_type_id = x.credit_type_id
JOIN mq_products pr ON pr.product_id = x.product_id
WHERE o.outcome = 'created' OR o.revision <> o.old_revision
"""


# Drafts whose period is no longer a statement period of their contract (its starting_at or
# schedule changed after they were computed): not recomputed, never finalized, and their usage
# is now billed by the contract's new periods.  They are voided (kept, as every invoice).  Only
# contracts planned by this run (mq_contracts, rate card present) and periods started by as_of
# (a draft of a later period, from a run with a later as_of, is left alone).
_STALE_DRAFTS = """
CREATE OR REPLACE TEMP TABLE mq_stale AS
SELECT s.id, s.contract_id, s.period_start, s.period_end
FROM invoices s
JOIN mq_contracts c ON c.key = s.contract_id
WHERE s.status = 'draft' AND s.period_start <= $as_of
  AND c.rate_card_id IN (SELECT rate_card_id FROM mq_rate_cards)
  AND NOT EXISTS (SELECT 1 FROM mq_periods p
                  WHERE p.contract_id = s.contract_id AND p.period_start = s.period_start)
ORDER BY s.contract_id, s.period_start, s.id
"""

VOID_STALE = """
UPDATE invoices SET status = 'void', voided_at = now()::TIMESTAMP, updated_at = now()::TIMESTAMP
WHERE id IN (SELECT id FROM mq_stale)
"""


def stale_drafts(con: duckdb.DuckDBPyConnection, as_of: datetime) -> list[tuple]:
    """mq_stale: the drafts to void (see _STALE_DRAFTS), after plan_periods; returns their
    (id, contract_id, period_start, period_end)."""
    con.execute(_STALE_DRAFTS, {"as_of": naive(as_of)})
    return con.execute("SELECT * FROM mq_stale").fetchall()


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


_NEW_BATCHES = """EXISTS (SELECT 1 FROM event_files
                      WHERE batch_id NOT IN (SELECT batch_id FROM invoice_event_batches))"""

# Whether a run has anything to write: an invoice to create or change, or a committed batch
# not numbered yet.
_PENDING = f"""
SELECT EXISTS (SELECT 1 FROM mq_outcomes WHERE outcome <> 'unchanged') OR {_NEW_BATCHES}
"""  # noqa: S608 - fixed SQL


def write(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    extra: Sequence[tuple[str, list]],
    *,
    outcomes: bool = True,
) -> int | None:
    """Write mq_outcomes (plus `extra` statements; only those when not `outcomes`: a run with
    no period to compute) inside the caller's RunTransaction; returns data_seq.  A run that
    changes no invoice and sees no new batch writes nothing (None)."""
    if not extra:
        [(pending,)] = con.execute(_PENDING if outcomes else f"SELECT {_NEW_BATCHES}").fetchall()
        if not pending:
            return None
    seq = next_seq(con)
    if outcomes:
        params = {"seq": seq, "as_of": naive(as_of), "scheme": SCHEME}
        con.execute(_INSERT_INVOICES, params)
        con.execute(_UPDATE_INVOICES, params)
        con.execute(_INSERT_LINES)
        con.execute(_INSERT_PRODUCTS)
    for statement, args in extra:
        con.execute(statement, args)
    return seq


def record_run(
    con: duckdb.DuckDBPyConnection,
    *,
    as_of: datetime,
    seq: int,
    started_at: datetime,
    counts: InvoiceCounts,
    summary: str,
    kind: str = "run",
) -> str:
    """Record an invoice run or regenerate (`kind`) that wrote (`seq`: what `write` returned)
    in the `invoice_runs` ledger, inside its transaction; returns the row's id.  `summary`: its
    totals, unrated usage and notes as JSON."""
    run_id = str(uuid.uuid4())
    con.execute(
        "INSERT INTO invoice_runs (run_id, as_of, data_seq, started_at, finished_at, created, "
        "updated, finalized, unchanged, summary, kind) VALUES ($run_id, $as_of, $seq, "
        "$started_at, $finished_at, $created, $updated, $finalized, $unchanged, $summary, $kind)",
        {
            "run_id": run_id,
            "as_of": naive(as_of),
            "seq": seq,
            "started_at": naive(started_at),
            # not now(): DuckDB's now() is the transaction's start
            "finished_at": naive(datetime.now(UTC)),
            "created": counts.created,
            "updated": counts.updated,
            "finalized": counts.finalized,
            "unchanged": counts.unchanged,
            "summary": summary,
            "kind": kind,
        },
    )
    return run_id


class RunTransaction:
    """The one transaction of an invoice run or regenerate (see the module docstring): begun on
    entry; `commit` drops the run's temp tables and commits; leaving the block without commit
    commits too, and an exception rolls everything back."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.open = False

    def __enter__(self) -> RunTransaction:
        self.con.execute("BEGIN TRANSACTION")
        self.open = True
        return self

    def commit(self) -> None:
        if self.open:
            clear(self.con, prefix="mq_")
            self.con.execute("COMMIT")
            self.open = False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.open:
            return
        if exc_type is None:
            self.commit()
        else:
            self.open = False
            rollback(self.con)
