"""The `meterql` command line: a thin layer over `engine.api` that parses and prints.

Exit codes: 0 success, 1 user error (one line on stderr naming the object and field), 2 usage
error (typer/click), anything else is a bug (traceback and a request to report it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from warehouse.errors import UserError

app = typer.Typer(
    name="meterql",
    help="meterql: SQL-first metering and billing over Parquet events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

HomeOption = Annotated[
    str | None,
    typer.Option(
        "--home",
        help="meterql home directory (default: $METERQL_HOME, else ./.meterql)",
        show_default=False,
    ),
]


@app.callback()
def _root(ctx: typer.Context, home: HomeOption = None) -> None:
    ctx.obj = {"home": home}


def home_of(ctx: typer.Context) -> str | None:
    return (ctx.obj or {}).get("home")


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the meterql home (catalog and warehouse); safe to run again."""
    from warehouse.home import Home

    home = Home.resolve(home_of(ctx))
    created = home.init()
    typer.echo(f"{'initialised' if created else 'already initialised'}: {home.path}")


@app.command()
def apply(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="YAML or JSON catalog documents")],
    format: Annotated[str, typer.Option("--format", help="text|json")] = "text",
) -> None:
    """Validate catalog documents and write them all, or nothing, in one transaction."""
    from engine.api import Meterql
    from engine.output import print_json

    result = Meterql.open(home_of(ctx)).apply(files)
    if format == "json":
        print_json(result)
    else:
        for line in result.lines():
            typer.echo(line)


from engine.invoice_cli import demo, invoice_app  # noqa: E402 - registered after the commands

app.add_typer(invoice_app, name="invoice")
app.command("demo")(demo)


def main() -> None:
    try:
        app()
    except UserError as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(1)
    except Exception:
        import traceback

        traceback.print_exc()
        sys.stderr.write("internal error: this is a bug in meterql; please report it\n")
        sys.exit(70)


if __name__ == "__main__":
    main()
