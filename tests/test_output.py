"""Printing results (engine.output): exact JSON written fast, tables that keep every value."""

from __future__ import annotations

import json
import re
import sys
import typing
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import PlainSerializer

from engine import invoice_store, output
from engine.invoice_store import CreditTypeRef, Invoice, InvoiceSummary, LineItem, TierRef
from engine.output import ExactJson, dumps, print_table, to_jsonable


def _exact_json_models() -> list[type[ExactJson]]:
    seen, todo = [], list(ExactJson.__subclasses__())
    while todo:
        model = todo.pop()
        seen.append(model)
        todo.extend(model.__subclasses__())
    return seen


def test_every_exact_json_model_writes_its_decimals_and_timestamps_as_to_jsonable_does():
    models = _exact_json_models()
    assert {Invoice, InvoiceSummary, LineItem, TierRef, CreditTypeRef} <= set(models)
    for model in models:
        hints = typing.get_type_hints(model, include_extras=True)
        for name, hint in hints.items():
            leaves = [hint, *typing.get_args(hint)]
            plain = [t for t in leaves if t in (Decimal, datetime)]
            serialized = any(
                isinstance(m, PlainSerializer)
                for t in leaves
                for m in getattr(t, "__metadata__", ())
            )
            assert not plain or serialized, f"{model.__name__}.{name} is a bare {plain[0]}"


def _invoice(n: int) -> Invoice:
    line = LineItem(
        name='Tokens — ünïcode \u2028 "quoted" [red]',
        product_id="p",
        quantity=Decimal("1E+3"),  # normalised: JSON must say 1000, not 1E+3
        unit_price=Decimal("0.000000000000000001"),
        total=Decimal("-0.50"),
        pricing_group_values={"model": None, "region": "eu"},
        presentation_group_values={},
        starting_at=datetime(2026, 3, 1, 0, 0, 0, 123, tzinfo=UTC),
        ending_before=datetime(2026, 3, 2, 1, 0, tzinfo=timezone(timedelta(hours=2))),
        billable_metric_id=None,
        rate_type="TIERED",
        tier=TierRef(index=1, starting_at=Decimal("100"), size=None),
    )
    return Invoice(
        id=f"inv-{n}",
        customer_id="c",
        contract_id="k",
        status="draft",
        type="USAGE",
        start_timestamp=datetime(2026, 3, 1),
        end_timestamp=datetime(2026, 4, 1),
        credit_type=CreditTypeRef(id="usd", name="USD (cents)"),
        subtotal=Decimal("12345678901234567890.5"),
        total=Decimal(0),
        line_items=[line, line.model_copy(update={"tier": None})] if n % 2 else [],
        replaces=None if n % 3 else "old",
    )


@pytest.mark.parametrize("value", [[_invoice(n) for n in range(4)], _invoice(1), []])
def test_dumps_of_exact_json_models_is_the_generic_text(value):
    generic = json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)
    assert dumps(value) == generic
    if value:
        assert '"quantity": "1000"' in generic and '"unit_price": "0.000000000000000001"' in generic
        assert '"starting_at": "2026-03-01T00:00:00.000123Z"' in generic
        assert '"ending_before": "2026-03-01T23:00:00Z"' in generic


def test_dumps_of_plain_values_is_the_generic_text():
    value = {"a": [1, 2**70, None, True, "é😀\u2028\x00", Decimal("1.50")], "b": {}}
    assert dumps(value) == json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def test_a_table_off_a_terminal_is_plain_columns_with_whole_values(capsys):
    long_id = "43c7bd75-0b9f-59c2-a3c3-d1bbe3fa5231"
    print_table(
        "2 row(s)", ["id", "customer", "total"], [[long_id, "[/]", Decimal("1E+2")], ["x", None, 1]]
    )
    assert capsys.readouterr().out.splitlines() == [
        "2 row(s)",
        "id                                    customer  total",
        "------------------------------------  --------  -----",
        f"{long_id}  [/]       100",
        "x                                               1",
    ]


def test_a_table_on_a_terminal_is_rich_and_prints_markup_as_text(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    print_table("[b]title[/b]", ["[i]col[/i]"], [["[/]"], ["[red]x[/red]"]])  # rich markup
    out = capsys.readouterr().out
    assert "┃" in out  # rich's box
    for text in ("[b]title[/b]", "[i]col[/i]", "[/]", "[red]x[/red]"):
        assert text in out


@pytest.mark.parametrize("terminal", [False, True])
def test_control_characters_in_table_cells_are_shown_not_sent(capsys, monkeypatch, terminal):
    """A customer id sent as "acme\\x1b[2J" would clear the operator's screen, a tab or a
    newline would break the columns: tables show them as \\xNN (CSV and JSON keep the data)."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    print_table("id\x07", ["customer"], [["acme\x1b[2J"], ["a\tb\nc\x9bd"]])
    out = re.sub("\x1b\\[[0-9;]*m", "", capsys.readouterr().out)  # rich's own styles
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\t" not in out
    for shown in ("id\\x07", "acme\\x1b[2J", "a\\x09b\\x0ac\\x9bd"):
        assert shown in out


def test_a_long_table_on_a_terminal_is_plain_columns(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(output, "RICH_TABLE_ROWS", 2)
    print_table(None, ["n"], [[1], [2], [3]])
    assert capsys.readouterr().out.splitlines() == ["n", "-", "1", "2", "3"]


def test_a_progress_bar_on_a_terminal_stderr_leaves_a_redirected_stdout_alone(capsys, monkeypatch):
    # `meterql sql run q.sql --format csv > out.csv` in a terminal: the bar is drawn on stderr,
    # and the CSV does not start with the blank line the bar's console wrote into stdout
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with output.progress("working", total=2) as bar:
        bar.advance(1)
    print("customer_id,value")
    assert capsys.readouterr().out == "customer_id,value\n"


def test_invoice_store_reads_decimals_exactly_from_their_text():
    assert invoice_store.money("2250.000000000000", 0) == Decimal("2250")
    assert str(invoice_store.exact("0.000000000000000001")) == "1E-18"
    assert invoice_store.exact("0E-18") == 0
