"""Reading one row of a DuckDB result, and rolling back after a failure (light: imports duckdb
only, so start-up paths may use it).

DuckDB 2.0 leaves a result read with `fetchone()` unfinished, and the connection's next
relation (`con.sql(...)`) then fails with "connection has an unfinished result": one-row reads
go through `first_row`, which reads the result to its end.
"""

from __future__ import annotations

from typing import Any

import duckdb


def first_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> tuple:
    """The first row of a query (or an empty tuple), with the result read to its end."""
    rows = con.execute(sql, params or []).fetchall()
    return tuple(rows[0]) if rows else ()


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the connection's transaction after a failure inside it (call it in the handler,
    then re-raise).  A COMMIT that failed (e.g. no space left on the device for the catalog's
    write-ahead log) has already ended the transaction, and a ROLLBACK then raises "no
    transaction is active" over the error that says what went wrong: that error is the one to
    report, so the ROLLBACK's own failure is dropped."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass
