"""The content hash of an invoice: how a run knows a draft it recomputes has not changed.

A line's hash is DuckDB's 64-bit `hash()` of its fields as stored and of its product's snapshot
(LINE_HASH, PRODUCT_HASH: rating computes it for every line it prices); an invoice's content hash
is its line count and the sum (mod 2^64) and xor of its lines' hashes, as text
(`content_hash_text`).  DuckDB does not promise that `hash()` gives the same values in another
release, so every invoice records the SCHEME its hash was computed under (meterql's formula and
the DuckDB version), and a run first recomputes, from their stored lines and product snapshots,
the hashes of the drafts of any other scheme (`refresh_stale_hashes`).  An upgrade of DuckDB
thus never makes an unchanged draft look changed (a spurious revision).
"""

from __future__ import annotations

import duckdb

from warehouse.sqlrows import first_row

SCHEME = f"meterql-1/duckdb-{duckdb.__version__}"

# Over columns named as rating names them (engine.rating._LINES).
PRODUCT_HASH = "hash(product_name, billable_metric_id, pricing_keys, presentation_keys)"
LINE_HASH = (
    "hash(product_id, rate_type, rate_card_id, rate_index, pricing_values, presentation_values,"
    " starting_at, ending_before, tier_index, tier_lower, tier_size, quantity, unit_price, total,"
    " product_hash)"
)

TWO_TO_64 = "18446744073709551616"


def content_hash_text(line_count: str, h1: str, h2: str) -> str:
    """SQL text of an invoice's content hash from its line count, the sum of its lines' hashes
    (any width: taken mod 2^64 here) and their xor (NULL when it has no lines)."""
    return (
        f"coalesce({line_count}, 0)::VARCHAR || '-' || coalesce(({h1}) % {TWO_TO_64}, 0)::VARCHAR"
        f" || '-' || coalesce({h2}, 0)::VARCHAR"
    )


_STALE = "status = 'draft' AND hash_scheme IS DISTINCT FROM $scheme"

# The stored lines and product snapshots of the stale drafts, renamed as rating names them.
_REFRESH = f"""
UPDATE invoices SET content_hash = r.content_hash, hash_scheme = $scheme
FROM (
    WITH stale AS (SELECT id, revision FROM invoices WHERE {_STALE}),
    products AS (
        SELECT p.invoice_id, p.revision, p.product_id, {PRODUCT_HASH} AS product_hash
        FROM (SELECT p.invoice_id, p.revision, p.product_id, p.product_name,
                     p.billable_metric_id, p.pricing_group_keys AS pricing_keys,
                     p.presentation_group_keys AS presentation_keys
              FROM invoice_products p
              JOIN stale s ON s.id = p.invoice_id AND s.revision = p.revision) p
    ),
    lines AS (
        SELECT invoice_id, {LINE_HASH} AS line_hash
        FROM (SELECT l.invoice_id, l.product_id, l.rate_type, l.rate_card_id, l.rate_index,
                     l.pricing_group_values AS pricing_values,
                     l.presentation_group_values AS presentation_values, l.starting_at,
                     l.ending_before, l.tier_index, l.tier_starting_at AS tier_lower,
                     l.tier_size, l.quantity, l.unit_price, l.total, p.product_hash
              FROM invoice_line_items l
              JOIN products p ON p.invoice_id = l.invoice_id AND p.revision = l.revision
               AND p.product_id = l.product_id)
    )
    SELECT s.id,
           {content_hash_text("count(l.line_hash)", "sum(l.line_hash)", "bit_xor(l.line_hash)")}
               AS content_hash
    FROM stale s LEFT JOIN lines l ON l.invoice_id = s.id
    GROUP BY s.id
) r
WHERE invoices.id = r.id
"""  # noqa: S608 - fixed SQL


def refresh_stale_hashes(con: duckdb.DuckDBPyConnection) -> int:
    """Recompute under SCHEME the content hash of every draft computed under another scheme
    (inside the caller's transaction); returns how many drafts it updated (0: it wrote
    nothing)."""
    (stale,) = first_row(con, f"SELECT count(*) FROM invoices WHERE {_STALE}", {"scheme": SCHEME})  # noqa: S608
    if stale:
        con.execute(_REFRESH, {"scheme": SCHEME})
    return int(stale)
