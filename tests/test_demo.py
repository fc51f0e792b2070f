"""`meterql demo`: the Metronome API quickstart end to end, and its documents."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from engine.demo import DEMO_FILES, demo_documents, run_demo
from warehouse.models import USD_CENTS_ID

REPO = Path(__file__).resolve().parents[1]


def test_the_packaged_documents_are_the_examples():
    packaged = demo_documents()
    for name in DEMO_FILES:
        assert packaged[name] == (REPO / "examples" / "quickstart" / name).read_bytes(), name


def test_the_quickstart_invoice():
    result = run_demo()
    invoice = result.invoice
    assert invoice.status == "draft"
    assert invoice.credit_type.id == USD_CENTS_ID and invoice.credit_type.name == "USD (cents)"
    assert invoice.start_timestamp.isoformat() == "2026-03-01T00:00:00"
    assert invoice.end_timestamp.isoformat() == "2026-04-01T00:00:00"
    lines = [
        (
            li.name,
            li.pricing_group_values,
            li.presentation_group_values,
            li.quantity,
            li.unit_price,
            li.total,
        )
        for li in invoice.line_items
    ]
    assert lines == [
        ("Input Tokens", {"model": "gpt-5"}, {"user_id": "user_1"}, 1500, Decimal("1.50"), 2250),
        ("Input Tokens", {"model": "gpt-5-mini"}, {"user_id": "user_2"}, 800, Decimal("0.30"), 240),
    ]
    assert invoice.subtotal == invoice.total == Decimal(2490)
    assert result.summary.unrated_usage == [] and result.summary.invoices.created == 1


def test_meterql_demo_prints_the_invoice():
    table = CliRunner().invoke(app, ["demo"], catch_exceptions=False)
    assert table.exit_code == 0
    assert "Test Customer" in table.output  # the apply step names it
    for text in ("gpt-5-mini", "user_2", "1500", "2250", "240", "2490", "draft"):
        assert text in table.output, text
    as_json = CliRunner().invoke(app, ["demo", "--format", "json"], catch_exceptions=False)
    assert as_json.exit_code == 0
    invoice = json.loads(as_json.output)
    assert invoice["total"] == "2490"
    assert [li["total"] for li in invoice["line_items"]] == ["2250", "240"]
