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

from warehouse.home import Home


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


# What DuckDB raises when a source file cannot be read (not a bug of ours).
READ_ERRORS = (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException)


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
