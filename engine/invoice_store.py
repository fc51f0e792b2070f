"""Invoices as stored in the catalog (migration 0003), and their JSON shape.

    Invoice {"id", "customer_id", "contract_id", "status" (draft|finalized|void), "type",
             "start_timestamp", "end_timestamp", "credit_type": {"id", "name"}, "subtotal",
             "total", "line_items": [LineItem, ...], "replaces", "superseded_by"}
    LineItem {"name", "product_id", "type", "quantity", "unit_price", "total",
              "pricing_group_values", "presentation_group_values", "starting_at",
              "ending_before", "billable_metric_id", "rate_type", "tier"}

Decimals print as exact strings (quantities and unit prices without trailing zeros, totals at
the credit type's precision); timestamps as ISO 8601 UTC with `Z`.  An invoice holds no
wall-clock field, so the same inputs give byte-identical JSON.

Reads (`get`, `find`), and `void` live here; computing and writing invoices is engine.invoices.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from warehouse.errors import NotFoundError, UserError, suggest

if TYPE_CHECKING:
    import duckdb

STATUSES = ("draft", "finalized", "void")


class CreditTypeRef(BaseModel):
    id: str
    name: str


class TierRef(BaseModel):
    index: int
    starting_at: Decimal  # the quantity the tier starts after (exclusive)
    size: Decimal | None  # None: unbounded


class LineItem(BaseModel):
    name: str
    product_id: str
    type: str = "usage"
    quantity: Decimal
    unit_price: Decimal
    total: Decimal
    pricing_group_values: dict[str, str | None]
    presentation_group_values: dict[str, str | None]
    starting_at: datetime
    ending_before: datetime
    billable_metric_id: str | None
    rate_type: str
    tier: TierRef | None = None


class Invoice(BaseModel):
    id: str
    customer_id: str
    contract_id: str
    status: str
    type: str
    start_timestamp: datetime
    end_timestamp: datetime
    credit_type: CreditTypeRef
    subtotal: Decimal
    total: Decimal
    line_items: list[LineItem]
    replaces: str | None = None
    superseded_by: str | None = None


def money(value: Decimal, precision: int) -> Decimal:
    """A stored total (DECIMAL(38, 12)) written at the credit type's precision (exact: totals
    are already rounded to it)."""
    quantum = Decimal(1).scaleb(-precision)
    out = value.quantize(quantum)
    assert out == value, f"total {value} has more than {precision} decimal places"
    return out


def exact(value: Decimal) -> Decimal:
    """A stored quantity, unit price or tier bound (DECIMAL(38, 18)) without trailing zeros."""
    return value.normalize() if value else Decimal(0)


_HEADER = """
SELECT id, customer_id, contract_id, status, type, period_start, period_end, credit_type_id,
       credit_type_name, credit_precision, subtotal, total, replaces, superseded_by, revision
FROM invoices
"""

_LINES = """
SELECT l.invoice_id, p.product_name, l.product_id, l.quantity, l.unit_price, l.total,
       p.pricing_group_keys, l.pricing_group_values, p.presentation_group_keys,
       l.presentation_group_values, l.starting_at, l.ending_before, p.billable_metric_id,
       l.rate_type, l.tier_index, l.tier_starting_at, l.tier_size
FROM invoice_line_items l
JOIN invoices i ON i.id = l.invoice_id AND i.revision = l.revision
JOIN invoice_products p
  ON p.invoice_id = l.invoice_id AND p.revision = l.revision AND p.product_id = l.product_id
WHERE l.invoice_id IN (SELECT unnest(?::VARCHAR[]))
ORDER BY l.invoice_id, p.product_name, l.product_id, l.pricing_group_values,
         l.presentation_group_values, l.starting_at, l.tier_index NULLS FIRST
"""


def _invoices(con: duckdb.DuckDBPyConnection, headers: Sequence[tuple[Any, ...]]) -> list[Invoice]:
    ids = [h[0] for h in headers]
    lines: dict[str, list[LineItem]] = {i: [] for i in ids}
    precision = {h[0]: h[9] for h in headers}
    if ids:
        for row in con.execute(_LINES, [ids]).fetchall():
            (invoice_id, name, product_id, quantity, unit_price, total) = row[:6]
            pkeys, pvalues, gkeys, gvalues, start, end = row[6:12]
            metric_id, rate_type, tier_index, tier_start, tier_size = row[12:]
            lines[invoice_id].append(
                LineItem(
                    name=name,
                    product_id=product_id,
                    quantity=exact(quantity),
                    unit_price=exact(unit_price),
                    total=money(total, precision[invoice_id]),
                    pricing_group_values=dict(zip(pkeys, pvalues, strict=True)),
                    presentation_group_values=dict(zip(gkeys, gvalues, strict=True)),
                    starting_at=start,
                    ending_before=end,
                    billable_metric_id=metric_id,
                    rate_type=rate_type,
                    tier=None
                    if tier_index is None
                    else TierRef(
                        index=tier_index,
                        starting_at=exact(tier_start),
                        size=None if tier_size is None else exact(tier_size),
                    ),
                )
            )
    out = []
    for h in headers:
        (invoice_id, customer_id, contract_id, status, kind, start, end, ct_id, ct_name, prec,
         subtotal, total, replaces, superseded_by, _revision) = h  # fmt: skip
        out.append(
            Invoice(
                id=invoice_id,
                customer_id=customer_id,
                contract_id=contract_id,
                status=status,
                type=kind,
                start_timestamp=start,
                end_timestamp=end,
                credit_type=CreditTypeRef(id=ct_id, name=ct_name),
                subtotal=money(subtotal, prec),
                total=money(total, prec),
                line_items=lines[invoice_id],
                replaces=replaces,
                superseded_by=superseded_by,
            )
        )
    return out


def get(con: duckdb.DuckDBPyConnection, invoice_id: str) -> Invoice:
    """One invoice by id; a NotFoundError suggesting a close id otherwise."""
    header = con.execute(_HEADER + " WHERE id = ?", [invoice_id]).fetchall()
    if not header:
        ids = [r[0] for r in con.execute("SELECT id FROM invoices").fetchall()]
        prefixed = [i for i in ids if i.startswith(invoice_id)] if len(invoice_id) >= 4 else []
        if len(prefixed) == 1:  # a unique id prefix is accepted, like git
            return get(con, prefixed[0])
        raise NotFoundError(f"no invoice with id {invoice_id!r}{suggest(invoice_id, ids)}")
    return _invoices(con, header)[0]


def find(
    con: duckdb.DuckDBPyConnection,
    *,
    customer_id: str | None = None,
    status: str | None = None,
) -> list[Invoice]:
    """Invoices, oldest period first, optionally of one customer (catalog id) and status (in
    any letter case, like every enum value)."""
    if status is not None and status.lower() in STATUSES:
        status = status.lower()
    if status is not None and status not in STATUSES:
        raise UserError(
            f"--status {status!r} is not an invoice status; expected one of " + ", ".join(STATUSES)
        )
    headers = con.execute(
        _HEADER
        + """
        WHERE (?::VARCHAR IS NULL OR customer_id = ?)
          AND (?::VARCHAR IS NULL OR status = ?)
        ORDER BY customer_id, period_start, contract_id, credit_type_id, created_at, id
        """,
        [customer_id, customer_id, status, status],
    ).fetchall()
    return _invoices(con, headers)


def void(con: duckdb.DuckDBPyConnection, invoice_id: str) -> Invoice:
    """Mark a finalized invoice void (it stays, with status 'void').  Drafts cannot be voided."""
    invoice = get(con, invoice_id)
    if invoice.status == "draft":
        raise UserError(
            f"invoice {invoice.id} is a draft; only finalized invoices can be voided (drafts are "
            "recomputed by every `invoice run` until they are finalized)"
        )
    if invoice.status == "void":
        raise UserError(f"invoice {invoice.id} is already void")
    con.execute(
        "UPDATE invoices SET status = 'void', voided_at = now()::TIMESTAMP, "
        "updated_at = now()::TIMESTAMP WHERE id = ?",
        [invoice.id],
    )
    return get(con, invoice.id)
