"""`meterql demo`: the Metronome API quickstart, end to end, in a temporary home.

The documents are the package data engine/demo_data/ (catalog.yaml, events.ndjson), the same
files as examples/quickstart/ in the repository (a test keeps them equal), so the demo works from
an installed package.  Steps, as the quickstart writes them:

1. billable metrics "API Calls" (count) and "Input Tokens" (sum, filters, group keys)
2. product "Input Tokens" (USAGE, pricing key model, presentation key user_id)
3. rate card "Standard Pricing" (gpt-5 at 1.50, gpt-5-mini at 0.30 USD cents, from 2026-03-01)
4. customer "Test Customer" (ingest alias my-internal-customer-id) and a monthly contract
5. the two events test-001 and test-002, sent with the alias (ingest clock pinned to
   2026-03-09T12:05:00Z, just after them, so the 34-day window accepts them whenever it runs)
6. `invoice run --as-of 2026-03-15T00:00:00Z`: March has started and is not over, so the
   invoice is a draft: 1500 x 1.50 + 800 x 0.30 = 2490 USD cents.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engine.invoice_store import Invoice
from engine.invoices import RunSummary

DEMO_FILES = ("catalog.yaml", "events.ndjson")
INGEST_NOW = "2026-03-09T12:05:00Z"
AS_OF = "2026-03-15T00:00:00Z"


@dataclass(frozen=True)
class DemoResult:
    summary: RunSummary
    invoice: Invoice


def demo_documents() -> dict[str, bytes]:
    """The packaged quickstart documents, by file name."""
    root = resources.files("engine") / "demo_data"
    return {name: (root / name).read_bytes() for name in DEMO_FILES}


def run_demo(echo: Callable[[str], None] | None = None) -> DemoResult:
    """Run the quickstart in a fresh temporary home (deleted afterwards); returns the run
    summary and the customer's invoice."""
    from engine.api import Meterql
    from engine.invoices import parse_as_of
    from warehouse.ingest import ingest

    say = echo or (lambda _text: None)
    with tempfile.TemporaryDirectory(prefix="meterql-demo-") as tmp:
        folder = Path(tmp)
        for name, data in demo_documents().items():
            (folder / name).write_bytes(data)
        mq = Meterql.init(folder / "home")
        try:
            say(f"meterql demo: the Metronome API quickstart in a temporary home ({folder})")
            applied = mq.apply([folder / "catalog.yaml"])
            for line in applied.lines():
                say(f"  apply: {line}")
            ingested = ingest(
                mq.home, [folder / "events.ndjson"], now=parse_as_of(INGEST_NOW), con=mq.con
            )
            say(f"  ingest (clock {INGEST_NOW}): {_describe(ingested)}")
            summary = mq.invoice_run(AS_OF)
            for line in summary.lines():
                say(f"  {line}")
            customer = mq.catalog.customer("my-internal-customer-id")
            invoices = mq.invoices(customer=customer.id)
            if len(invoices) != 1:  # pragma: no cover - the quickstart makes exactly one
                raise AssertionError(f"expected one invoice, got {len(invoices)}")
            return DemoResult(summary=summary, invoice=invoices[0])
        finally:
            mq.close()


def _describe(result: object) -> str:
    fields = ("accepted", "duplicates", "rejected")
    parts = [f"{name} {getattr(result, name)}" for name in fields if hasattr(result, name)]
    return ", ".join(parts) or str(result)
