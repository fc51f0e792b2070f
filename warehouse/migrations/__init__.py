"""Ordered catalog migrations: `NNNN_name.sql` files applied once each, in order, recorded in
`schema_version`.  Later features add a file; existing homes pick it up on their next open."""

from __future__ import annotations

from importlib import resources

import duckdb

from warehouse.errors import HomeError
from warehouse.sqlrows import first_row, rollback


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files(__package__).iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two catalog migrations share a number: {sorted(versions)}")
    return found


LATEST = max(v for v, _, _ in _migrations())


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    (version,) = first_row(con, "SELECT coalesce(max(version), 0) FROM schema_version")
    return int(version)


def pending_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The catalog's schema version when migrations are pending (None: up to date), without
    writing (for read-only connections)."""
    [(exists,)] = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version' "
        "AND database_name = current_database() AND schema_name = 'main'"
    ).fetchall()
    if not exists:
        return 0
    [(version,)] = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()
    return None if int(version) >= LATEST else int(version)


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every pending migration, each in its own transaction.  Returns the names applied."""
    version = current_version(con)
    if version > LATEST:
        raise HomeError(
            f"this catalog is at schema version {version}, newer than this meterql "
            f"understands ({LATEST}); upgrade meterql"
        )
    applied = []
    for number, name, sql in _migrations():
        if number <= version:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute(
                "INSERT INTO schema_version VALUES (?, ?, now()::TIMESTAMP)", [number, name]
            )
            con.execute("COMMIT")
        except Exception:
            rollback(con)
            raise
        applied.append(name)
    return applied
