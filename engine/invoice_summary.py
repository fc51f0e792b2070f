"""The summary of an invoice run (`meterql invoice run`, text and JSON): counts, totals per
credit type, unrated usage, late events, notes and the seconds spent per stage."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel

from engine.invoice_store import CreditTypeRef
from engine.periods import iso


class InvoiceCounts(BaseModel):
    created: int = 0
    updated: int = 0
    finalized: int = 0
    unchanged: int = 0
    frozen: int = 0  # final before this run (void after), started by as_of: left untouched
    voided: int = 0  # drafts whose period is no longer one of their contract's (engine.invoices)


class CreditTotal(BaseModel):
    credit_type: CreditTypeRef
    invoices: int
    total: Decimal


class UnratedUsage(BaseModel):
    customer_id: str
    contract_id: str
    start_timestamp: datetime
    end_timestamp: datetime
    product_id: str
    product_name: str
    pricing_group_values: dict[str, str | None]
    quantity: Decimal
    reason: str  # not_on_rate_card | no_rate_for_group_values | no_rate_in_effect | ...


class LateEvents(BaseModel):
    invoice_id: str
    customer_id: str
    contract_id: str
    start_timestamp: datetime
    end_timestamp: datetime
    events: int


class RunSummary(BaseModel):
    as_of: datetime
    invoices: InvoiceCounts
    totals: list[CreditTotal]
    unrated_usage: list[UnratedUsage]
    late_events: list[LateEvents]
    notes: list[str]
    elapsed_seconds: float
    stage_seconds: dict[str, float] = {}  # plan, usage, rating, invoices, write, late_events
    run_id: str | None = None  # its row in the invoice_runs ledger; None: the run wrote nothing

    def lines(self) -> list[str]:
        c = self.invoices
        out = [
            f"invoice run as of {iso(self.as_of)}: {c.created} created, {c.updated} updated, "
            f"{c.finalized} finalized, {c.unchanged} unchanged ({c.frozen} already final)"
            + (f"; {c.voided} stale draft(s) voided" if c.voided else "")
        ]
        for t in self.totals:
            out.append(
                f"  total {format(t.total, 'f')} {t.credit_type.name} over {t.invoices} invoice(s)"
            )
        if self.unrated_usage:
            out.append(f"UNRATED USAGE ({len(self.unrated_usage)}): not billed, no rate matches")
            for u in self.unrated_usage:
                out.append(
                    f"  customer {u.customer_id} product {u.product_name!r} "
                    f"{json.dumps(u.pricing_group_values, sort_keys=True)} quantity "
                    f"{format(u.quantity, 'f')} in {iso(u.start_timestamp)}.."
                    f"{iso(u.end_timestamp)}: {u.reason}"
                )
        if self.late_events:
            out.append(
                f"LATE EVENTS ({len(self.late_events)} finalized invoice(s)): not on the invoice"
            )
            for late in self.late_events:
                out.append(
                    f"  invoice {late.invoice_id} (customer {late.customer_id}, "
                    f"{iso(late.start_timestamp)}..{iso(late.end_timestamp)}): "
                    f"{late.events} event(s)"
                )
        out.extend(f"note: {n}" for n in self.notes)
        stages = ", ".join(f"{k} {v:.2f}" for k, v in self.stage_seconds.items())
        out.append(f"elapsed {self.elapsed_seconds:.2f} s" + (f" ({stages})" if stages else ""))
        return out
