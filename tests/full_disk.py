"""A catalog connection whose COMMIT fails the way DuckDB's does when the disk is full (measured
on a full tmpfs: `TransactionContext Error: Failed to commit: Could not write file
".../catalog.duckdb.wal": No space left on device`, and the transaction is already over, so a
ROLLBACK after it raises "no transaction is active").  It holds no tests."""

from __future__ import annotations

from typing import Any

import duckdb

NO_SPACE = 'Failed to commit: Could not write file "catalog.duckdb.wal": No space left on device'


class CommitFails:
    """Wraps a catalog connection; its first COMMIT ends the transaction and raises."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.failed = False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            self.con.execute("ROLLBACK")
            raise duckdb.TransactionException(f"TransactionContext Error: {NO_SPACE}")
        return self.con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)
