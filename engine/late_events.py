"""Late events: events that arrived after a finalized invoice was computed, inside its customer
and period.  They are not billed; every run summary lists them (`invoice regenerate` picks them
up).

Every committed ingest batch is numbered by the first run (or regenerate) that sees it
(invoice_event_batches.seq); an invoice remembers the number it was computed at (data_seq).
Events of batches numbered later than a finalized invoice's data_seq that fall in its customer
and period are its late events.
"""

from __future__ import annotations

import duckdb

from engine.invoice_summary import LateEvents
from warehouse.events import MANIFEST_COLUMNS, events_relation, manifest_files
from warehouse.home import Home


def late_events(con: duckdb.DuckDBPyConnection, home: Home) -> list[LateEvents]:
    """Events of batches newer than a finalized invoice's computation, inside its customer and
    period (see the module docstring).  Reads only the files of such batches."""
    rows = con.execute(
        f"""
        SELECT {MANIFEST_COLUMNS}
        FROM event_files f JOIN invoice_event_batches b ON b.batch_id = f.batch_id
        WHERE EXISTS (
            SELECT 1 FROM invoices i
            WHERE i.status = 'finalized' AND b.seq > i.data_seq
              AND f.max_timestamp >= i.period_start AND f.min_timestamp < i.period_end)
        ORDER BY f.path
        """  # noqa: S608 - a constant column list
    ).fetchall()
    files = manifest_files(home, rows)
    if not files:
        return []
    events = events_relation(files, (), None, None).sql(dialect="duckdb")
    rows = con.execute(
        f"""
        SELECT i.id, i.customer_id, i.contract_id, i.period_start, i.period_end, count(*)
        FROM ({events}) e
        JOIN invoice_event_batches b ON b.batch_id = e.batch_id
        JOIN invoices i
          ON i.customer_id = e.customer_id
         AND e."timestamp" >= i.period_start AND e."timestamp" < i.period_end
         AND b.seq > i.data_seq
        WHERE i.status = 'finalized'
        GROUP BY ALL
        ORDER BY i.customer_id, i.period_start, i.id
        """  # noqa: S608 - the events relation is built by sqlglot from manifest paths
    ).fetchall()
    return [
        LateEvents(
            invoice_id=i,
            customer_id=c,
            contract_id=k,
            start_timestamp=s,
            end_timestamp=e,
            events=n,
        )
        for i, c, k, s, e, n in rows
    ]
