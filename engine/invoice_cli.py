"""The `meterql invoice ...` commands and `meterql demo` (registered in engine.cli).

meterql invoice run --as-of TS [--format json]
meterql invoice list [--customer C] [--status S] [--format json]
meterql invoice show ID [--format json]
meterql invoice void ID [--format json]
meterql invoice regenerate ID [--format json]
meterql demo
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli_options import check_choice, check_format, home_of

if TYPE_CHECKING:  # imported lazily: `meterql --help` must not load duckdb or pydantic
    from engine.api import Meterql
    from engine.invoice_store import Invoice, InvoiceSummary

invoice_app = typer.Typer(
    name="invoice",
    help="Compute, list, show, void and regenerate invoices.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

FormatOption = Annotated[str, typer.Option("--format", help="table|json")]


def _opened(ctx: typer.Context) -> Meterql:
    """The home's API object (a context manager: its catalog connection closed after)."""
    from engine.api import Meterql

    return Meterql.open(home_of(ctx))


TABLE_OR_JSON = ("table", "json")


def _group_text(values: dict[str, str | None]) -> str:
    return ", ".join(f"{k}={'(none)' if v is None else v}" for k, v in values.items())


def _span(invoice_or_line_start, end) -> str:  # type: ignore[no-untyped-def]
    from engine.output import to_jsonable

    return f"{to_jsonable(invoice_or_line_start)} .. {to_jsonable(end)}"


def print_invoice(invoice: Invoice) -> None:
    """A readable table of one invoice (rich, on stdout)."""
    from rich.markup import escape
    from rich.table import Table

    from engine.output import print_rich, to_jsonable

    title = escape(
        f"Invoice {invoice.id} [{invoice.status}]\n"
        f"customer {invoice.customer_id}  contract {invoice.contract_id}\n"
        f"period {_span(invoice.start_timestamp, invoice.end_timestamp)}  "
        f"credit type {invoice.credit_type.name}"
    )
    table = Table(title=title, show_footer=True)
    table.add_column("product", footer="total")
    table.add_column("pricing group")
    table.add_column("presentation group")
    table.add_column("rate segment", no_wrap=True)
    table.add_column("tier")
    table.add_column("quantity", justify="right")
    table.add_column("unit price", justify="right")
    table.add_column("total", justify="right", footer=to_jsonable(invoice.total))
    for line in invoice.line_items:
        tier = ""
        if line.tier is not None:
            size = "unbounded" if line.tier.size is None else to_jsonable(line.tier.size)
            tier = f"#{line.tier.index} from {to_jsonable(line.tier.starting_at)} ({size})"
        table.add_row(
            escape(line.name),
            escape(_group_text(line.pricing_group_values)),
            escape(_group_text(line.presentation_group_values)),
            _span(line.starting_at, line.ending_before),
            tier,
            to_jsonable(line.quantity),
            to_jsonable(line.unit_price),
            to_jsonable(line.total),
        )
    if invoice.replaces:
        table.caption = f"replaces {invoice.replaces}"
    if invoice.superseded_by:
        table.caption = f"superseded by {invoice.superseded_by}"
    print_rich(table, min_width=150)


def invoice_html(invoice: Invoice) -> str:
    """A standalone HTML page of one invoice (every value escaped)."""
    from html import escape

    from engine.output import to_jsonable

    def cell(value: object) -> str:
        return escape("" if value is None else str(to_jsonable(value)))

    rows = []
    for line in invoice.line_items:
        tier = "" if line.tier is None else f"#{line.tier.index}"
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{cell(v)}</td>"
                for v in (
                    line.name,
                    _group_text(line.pricing_group_values),
                    _group_text(line.presentation_group_values),
                    f"{to_jsonable(line.starting_at)} .. {to_jsonable(line.ending_before)}",
                    tier,
                )
            )
            + "".join(
                f'<td class="n">{cell(v)}</td>'
                for v in (line.quantity, line.unit_price, line.total)
            )
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "product",
            "pricing group",
            "presentation group",
            "rate segment",
            "tier",
            "quantity",
            "unit price",
            "total",
        )
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>Invoice {cell(invoice.id)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}.n{text-align:right}</style></head><body>"
        f"<h1>Invoice {cell(invoice.id)} ({cell(invoice.status)})</h1>"
        f"<p>customer {cell(invoice.customer_id)}, contract {cell(invoice.contract_id)}<br>"
        f"period {cell(invoice.start_timestamp)} .. {cell(invoice.end_timestamp)}, "
        f"credit type {cell(invoice.credit_type.name)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f'<tfoot><tr><th colspan="7">total</th><td class="n">{cell(invoice.total)}</td></tr>'
        "</tfoot></table></body></html>\n"
    )


def print_invoice_list(invoices: Sequence[InvoiceSummary]) -> None:
    from engine.output import print_table

    print_table(
        f"{len(invoices)} invoice(s)",
        ["id", "customer", "status", "period start", "period end", "credit type", "lines", "total"],
        [
            [
                i.id,
                i.customer_id,
                i.status,
                i.start_timestamp,  # print_table writes each cell as its JSON text
                i.end_timestamp,
                i.credit_type.name,
                i.line_count,
                i.total,
            ]
            for i in invoices
        ],
    )


@invoice_app.command("run")
def run_(
    ctx: typer.Context,
    as_of: Annotated[
        str, typer.Option("--as-of", help="ISO 8601 (naive = UTC): the periods started by then")
    ],
    format: Annotated[str, typer.Option("--format", help="text|json")] = "text",
) -> None:
    """Compute the invoices of every contract's statement periods started by --as-of."""
    from engine.output import print_summary

    format = check_format(format, ("text", "json"))
    with _opened(ctx) as mq:
        summary = mq.invoice_run(as_of)
    print_summary(summary, format)


@invoice_app.command("list")
def list_(
    ctx: typer.Context,
    customer: Annotated[
        str | None, typer.Option("--customer", help="customer id, name or ingest alias")
    ] = None,
    status: Annotated[str | None, typer.Option("--status", help="draft|finalized|void")] = None,
    format: FormatOption = "table",
) -> None:
    """List invoices (oldest period first)."""
    from engine.output import print_json

    format = check_format(format, TABLE_OR_JSON)
    if status is not None:
        from engine.invoice_store import STATUSES

        status = check_choice(status, STATUSES, "--status")
    with _opened(ctx) as mq:
        if format == "json":
            print_json(mq.invoices(customer=customer, status=status))
        else:
            print_invoice_list(mq.invoice_summaries(customer=customer, status=status))


@invoice_app.command("show")
def show(
    ctx: typer.Context,
    invoice_id: Annotated[str, typer.Argument(help="invoice id (or a unique prefix)")],
    format: Annotated[str, typer.Option("--format", help="table|json|html")] = "table",
) -> None:
    """Show one invoice with its line items."""
    from engine.output import print_json

    format = check_format(format, ("table", "json", "html"))
    with _opened(ctx) as mq:
        invoice = mq.invoice(invoice_id)
    if format == "json":
        print_json(invoice)
    elif format == "html":
        typer.echo(invoice_html(invoice), nl=False)
    else:
        print_invoice(invoice)


@invoice_app.command("void")
def void(
    ctx: typer.Context,
    invoice_id: Annotated[str, typer.Argument(help="a finalized invoice's id")],
    format: FormatOption = "table",
) -> None:
    """Void a finalized invoice (it is kept, with status void)."""
    from engine.output import print_json

    format = check_format(format, TABLE_OR_JSON)
    with _opened(ctx) as mq:
        invoice = mq.void_invoice(invoice_id)
    if format == "json":
        print_json(invoice)
    else:
        typer.echo(f"voided invoice {invoice.id}")


@invoice_app.command("regenerate")
def regenerate(
    ctx: typer.Context,
    invoice_id: Annotated[str, typer.Argument(help="a finalized or void invoice's id")],
    format: FormatOption = "table",
) -> None:
    """Recompute a finalized or void invoice from current data as a new invoice (new id); the
    old one becomes void and points to it."""
    from engine.output import print_json

    format = check_format(format, TABLE_OR_JSON)
    with _opened(ctx) as mq:
        invoice = mq.regenerate_invoice(invoice_id)
    if format == "json":
        print_json(invoice)
    else:
        typer.echo(f"invoice {invoice.replaces} is void; replaced by {invoice.id}")
        print_invoice(invoice)


def demo(
    format: FormatOption = "table",
) -> None:
    """The Metronome API quickstart end to end in a temporary home: metrics, product, rate card,
    customer, contract, two events, and the draft invoice."""
    from engine.demo import run_demo
    from engine.output import print_json

    format = check_format(format, TABLE_OR_JSON)
    result = run_demo(echo=typer.echo if format == "table" else None)
    if format == "json":
        print_json(result.invoice)
    else:
        print_invoice(result.invoice)
