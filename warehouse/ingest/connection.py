"""The private DuckDB connection an ingest or a compaction does its work in.

In memory, with the resources of the home's catalog connection (`Home.connect_work`:
METERQL_THREADS, METERQL_MEMORY_LIMIT with its 3 GiB default, and spilling under
METERQL_TEMP_DIRECTORY or `<home>/staging/duckdb-tmp`), so a batch larger than the memory limit
spills to disk instead of growing; times in UTC; no progress bar on the terminal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from warehouse.home import Home, memory_bytes
from warehouse.ingest.sqltext import ident


def open_work(home: Home, name: str) -> duckdb.DuckDBPyConnection:
    """A new work connection for the command `name` (a batch or compaction id)."""
    work = home.connect_work(name)
    try:
        work.execute("SET TimeZone = 'UTC'")
        work.execute("SET enable_progress_bar = false")
    except BaseException:
        work.close()
        raise
    return work


def memory_limit(con: duckdb.DuckDBPyConnection) -> int | None:
    """The connection's DuckDB memory limit in bytes (None if DuckDB's text is not a size)."""
    [(text,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
    return memory_bytes(str(text))


def clear(con: duckdb.DuckDBPyConnection, prefix: str = "") -> None:
    """Drop the temp views and tables of a connection whose names start with `prefix` (all of
    them by default: between the chunks of a batch, each chunk's tables are its own; the
    invoice engine drops its `mq_` tables before its commit)."""
    for kind, catalog in (("VIEW", "duckdb_views()"), ("TABLE", "duckdb_tables()")):
        column = "view_name" if kind == "VIEW" else "table_name"
        names = con.execute(
            f"SELECT {column} FROM {catalog} WHERE temporary AND NOT internal "  # noqa: S608
            f"AND starts_with({column}, ?) ORDER BY {column}",
            [prefix],
        ).fetchall()
        for (name,) in names:
            con.execute(f"DROP {kind} IF EXISTS temp.main.{ident(name)}")


# What DuckDB raises when a source file cannot be read (not a bug of ours).
READ_ERRORS = (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException)


def is_read_error(error: BaseException) -> bool:
    """One of READ_ERRORS, or a plain `duckdb.Error` (of no subclass): what DuckDB's Parquet
    reader raises for a corrupt page ("TProtocolException: Invalid data", "don't know what
    type")."""
    return isinstance(error, READ_ERRORS) or type(error) is duckdb.Error


@contextmanager
def unordered(con: duckdb.DuckDBPyConnection, active: bool = True) -> Iterator[None]:
    """Let DuckDB insert rows in any order (faster: no ordered batch insert)."""
    if not active:
        yield
        return
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute("SET preserve_insertion_order = true")
