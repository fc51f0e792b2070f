"""The `meterql` command line: a thin layer over `engine.api` that parses and prints.

Exit codes: 0 success, 1 user error (one line on stderr naming the object and field),
DuckDB out of memory or temp disk space (one line naming the settings to change) or the disk
refusing a write (full, read-only: one line), 2 usage error (typer/click), 128 + the signal's
number when stopped by SIGINT or SIGTERM (one line, see _Stop), anything else is a bug (traceback
and a request to report it).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from engine.cli_options import check_choice, check_format, home_of
from warehouse.duckdb_paths import unescaped
from warehouse.errors import UserError, not_utf8

app = typer.Typer(
    name="meterql",
    help="meterql: SQL-first metering and billing over Parquet events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rendering help with rich imports ~60 ms of rich
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
    from engine.output import print_summary

    format = check_format(format, ("text", "json"))

    with Meterql.open(home_of(ctx)) as mq:
        result = mq.apply(files)
    print_summary(result, format)


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(help="event files (.ndjson .jsonl .json .csv .parquet), dirs, globs"),
    ],
    now: Annotated[
        str | None, typer.Option("--now", help="ingest clock, ISO 8601 (default: wall clock)")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="text|json")] = "text",
) -> None:
    """Validate, deduplicate and store events as one batch; rejects go to <home>/rejects/."""
    from engine.api import Meterql
    from engine.output import print_summary, progress

    format = check_format(format, ("text", "json"))
    with Meterql.open(home_of(ctx)) as mq:
        with progress("ingesting") as bar:
            summary = mq.ingest(paths, now=now, progress=bar)
    print_summary(summary, format)


USAGE_FORMATS = ("json", "table", "csv")
WINDOWS = ("none", "hour", "day")  # the user-facing kinds of metric_compiler.windows


@app.command()
def usage(
    ctx: typer.Context,
    metric: Annotated[str, typer.Option("--metric", help="billable metric id or name")],
    start: Annotated[str, typer.Option("--start", help="ISO 8601, inclusive (naive = UTC)")],
    end: Annotated[str, typer.Option("--end", help="ISO 8601, exclusive (naive = UTC)")],
    customer: Annotated[
        str | None, typer.Option("--customer", help="customer id, name or ingest alias")
    ] = None,
    window: Annotated[str, typer.Option("--window", help="none|hour|day")] = "none",
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by",
            help="group key (repeatable; a subset of one compound key; for a SQL metric all of "
            "its group columns, or omit it)",
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="json|table|csv")] = "table",
) -> None:
    """Usage of one billable metric (or SQL metric) for every customer (or one), per window and
    group."""
    from engine.api import Meterql
    from engine.usage import print_usage

    format = check_format(format, USAGE_FORMATS)
    window = check_choice(window, WINDOWS, "--window")
    with Meterql.open(home_of(ctx)) as mq:
        table = mq.usage(
            metric, start, end, customer=customer, window=window, group_by=group_by or []
        )
    print_usage(table, format, metric)


@app.command("compile")
def compile_(
    ctx: typer.Context,
    metric: Annotated[str, typer.Option("--metric", help="billable metric id or name")],
    dialect: Annotated[
        str,
        typer.Option(
            "--dialect", help="duckdb|spark|trino|bigquery|snowflake|clickhouse (not with --start)"
        ),
    ] = "duckdb",
    start: Annotated[str | None, typer.Option("--start", help="ISO 8601 (optional)")] = None,
    end: Annotated[str | None, typer.Option("--end", help="ISO 8601 (optional)")] = None,
    customer: Annotated[str | None, typer.Option("--customer")] = None,
    window: Annotated[str, typer.Option("--window", help="none|hour|day")] = "none",
    group_by: Annotated[list[str] | None, typer.Option("--group-by")] = None,
) -> None:
    """Print the SQL a usage query of the metric runs.

    With --start and --end: exactly the query `usage` runs over this home's event files.
    Without them: the same query over a relation `events` of the canonical event columns, with
    the period as the parameters $start and $end, in any --dialect (a SQL metric whose query
    returns rows without events also reads `customers`, a column `id`).
    """
    from engine.api import Meterql
    from metric_compiler.dialects import DIALECTS

    window = check_choice(window, WINDOWS, "--window")
    dialect = check_choice(dialect, DIALECTS, "--dialect")
    with Meterql.open(home_of(ctx)) as mq:
        sql = mq.compile(
            metric,
            dialect=dialect,
            start=start,
            end=end,
            customer=customer,
            window=window,
            group_by=group_by or [],
        )
    typer.echo(sql, nl=False)


sql_app = typer.Typer(
    help="Write and try SQL metrics before creating them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(sql_app, name="sql")

SqlFile = Annotated[str, typer.Argument(help="file with the SQL metric's query, or - for stdin")]


def read_sql(path: str) -> str:
    """The SQL text of a file, or of stdin for `-`, as UTF-8."""
    source = "the SQL from stdin (-)" if path == "-" else f"the SQL file {path!r}"
    try:
        if path != "-":
            return Path(path).read_text(encoding="utf-8")
        if sys.stdin is None:
            raise UserError(f"cannot read {source}: standard input is closed")
        return sys.stdin.buffer.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {source}: {error}") from None


@sql_app.command("check")
def sql_check(file: SqlFile) -> None:
    """Check a SQL metric's query: OK and its value column and group keys, or every problem
    with line, column and a caret (exit 1).  Needs no home."""
    from engine.api import Meterql

    result = Meterql.sql_check(read_sql(file))
    if not result.ok:
        raise UserError(result.report())
    typer.echo("OK")
    typer.echo(f"value: {result.value or '(the first column)'}")
    typer.echo(f"group keys: {', '.join(result.group_keys) or '(none)'}")


@sql_app.command("run")
def sql_run(
    ctx: typer.Context,
    file: SqlFile,
    start: Annotated[str, typer.Option("--start", help="ISO 8601, inclusive (naive = UTC)")],
    end: Annotated[str, typer.Option("--end", help="ISO 8601, exclusive (naive = UTC)")],
    customer: Annotated[
        str | None, typer.Option("--customer", help="customer id, name or ingest alias")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="json|table|csv")] = "table",
) -> None:
    """Run a SQL metric's query for every customer (or one) over [start, end), in a sandbox."""
    from engine.api import Meterql
    from engine.output import progress
    from engine.sql_run import SQL_RUN_FORMATS, print_sql_rows

    format = check_format(format, SQL_RUN_FORMATS)
    text = read_sql(file)
    with Meterql.open(home_of(ctx)) as mq:
        with progress("running the SQL metric"):
            table = mq.sql_run(text, start, end, customer=customer)
    print_sql_rows(table, format)


warehouse_app = typer.Typer(
    help="Maintain the event warehouse.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(warehouse_app, name="warehouse")


@warehouse_app.command("compact")
def warehouse_compact(
    ctx: typer.Context,
    grace_minutes: Annotated[
        float,
        typer.Option("--grace-minutes", help="how long replaced files stay readable"),
    ] = 30,
    format: Annotated[str, typer.Option("--format", help="text|json")] = "text",
) -> None:
    """Merge each date's small event files into few large sorted ones, atomically; running
    readers keep reading the replaced files until the grace period is over."""
    from engine.api import Meterql
    from engine.output import print_summary, progress

    format = check_format(format, ("text", "json"))
    with Meterql.open(home_of(ctx)) as mq:
        with progress("compacting") as bar:
            summary = mq.compact(grace_minutes=grace_minutes, progress=bar)
    print_summary(summary, format)


from engine.invoice_cli import demo, invoice_app  # noqa: E402 - registered after the commands

app.add_typer(invoice_app, name="invoice")
app.command("demo")(demo)


def out_of_resources(error: BaseException) -> str | None:
    """The one-line message for DuckDB running out of memory or temp disk space (not a bug:
    the settings or the input's size are to change), or None for any other error."""
    duckdb = sys.modules.get("duckdb")
    if duckdb is None:
        return None
    text = str(error)
    if not (
        isinstance(error, duckdb.OutOfMemoryException)
        or (isinstance(error, duckdb.IOException) and "No space left on device" in text)
    ):
        return None

    from warehouse.errors import first_line
    from warehouse.home import SETTINGS_ENV

    settings = ", ".join(f"{k}={os.environ[k]}" for k in SETTINGS_ENV if os.environ.get(k))
    return (
        f"DuckDB ran out of memory or temp disk space ({first_line(error)}) with "
        f"{settings or 'the default settings'}; raise METERQL_MEMORY_LIMIT, lower "
        "METERQL_THREADS, give the temp directory (METERQL_TEMP_DIRECTORY, default "
        "<home>/staging/duckdb-tmp) more room or raise METERQL_MAX_TEMP_SIZE, or split the "
        "input into smaller batches; nothing uncommitted was kept"
    )


def disk_refused(error: BaseException) -> str | None:
    """The one-line message for the disk refusing a write (not a bug): full, over a quota or a
    file size limit, read-only, or without permission, from Python or pyarrow (an OSError) or
    from a catalog COMMIT that could not write DuckDB's write-ahead log; None for any other
    error.  A failed command keeps nothing uncommitted: an ingest removes its files and marks
    its batch failed, a compaction's partition and an invoice run are rolled back."""
    import errno

    from warehouse.errors import first_line

    refused = isinstance(error, OSError) and error.errno in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
    )
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(error, duckdb.Error):
        refused = "No space left on device" in str(error)
    if not refused:
        return None
    return (
        f"the disk refused a write ({first_line(error)}); nothing uncommitted was kept: free "
        "disk space or make the home writable, then run the command again"
    )


def missing_event_file(error: BaseException) -> str | None:
    """The one-line message for an event file the catalog lists but the disk no longer holds
    (deleted or moved by hand, a restore of the catalog without its events): a damaged home,
    not a bug; None for any other error."""
    duckdb = sys.modules.get("duckdb")
    if duckdb is None or not isinstance(error, duckdb.IOException):
        return None
    match = re.search(r'No files found that match the pattern "([^"]+)"', str(error))
    if match is None or "/events/" not in match.group(1):
        return None
    return (
        f"the catalog lists the event file {unescaped(match.group(1))}, which is missing "
        "(deleted or moved outside meterql): the home is damaged; restore its events/ "
        "directory together with its catalog.duckdb from the same backup"
    )


class _Stop:
    """SIGINT (Ctrl-C) and SIGTERM stop a command as a failure does: the first one raises
    KeyboardInterrupt where the command is (DuckDB interrupts a running query), so the
    command's failure handling runs (rollbacks, removal of its staged and placed files) and it
    exits 128 + the signal's number with one line; later ones are ignored while it cleans up
    (SIGKILL still ends it, and the next command sweeps)."""

    def __init__(self) -> None:
        self.received: int | None = None
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, number: int, frame: object) -> None:
        if self.received is None:
            self.received = number
            raise KeyboardInterrupt

    def exit(self) -> NoReturn:
        assert self.received is not None
        name = signal.Signals(self.received).name
        sys.stderr.write(
            f"error: stopped by {name}; what the command had not committed was rolled back and "
            "removed: run it again to complete it\n"
        )
        sys.exit(128 + self.received)


def main() -> None:
    for argument in sys.argv[1:]:
        if (problem := not_utf8(argument)) is not None:
            sys.stderr.write(
                f"error: the argument {problem}; meterql takes names, ids, timestamps and "
                "paths as UTF-8\n"
            )
            sys.exit(1)
    stop = _Stop()
    try:
        app()
    except UserError as error:
        if stop.received is not None:  # the interrupted command's own error
            stop.exit()
        sys.stderr.write(f"error: {error}\n")
        sys.exit(1)
    except SystemExit:
        if stop.received is not None:
            stop.exit()
        raise
    except Exception as error:
        if stop.received is not None:  # DuckDB's error for an interrupted query
            stop.exit()
        resources = out_of_resources(error) or disk_refused(error) or missing_event_file(error)
        if resources is not None:
            sys.stderr.write(f"error: {resources}\n")
            sys.exit(1)
        import traceback

        traceback.print_exc()
        sys.stderr.write("internal error: this is a bug in meterql; please report it\n")
        sys.exit(70)


if __name__ == "__main__":
    main()
