"""The locked-down DuckDB connection user SQL (SQL metrics) runs in.

Defence in depth.  The checker (metric_compiler.sql_metric) refuses everything outside the
allow-list before anything runs, and what runs is the SQL that sqlglot generates from the checked
and scoped tree (parsed back and compared first), never the author's text.  Even so, user SQL
runs only in a sandbox connection: in-memory, `enable_external_access=false` with empty
`allowed_paths` and `allowed_directories`, extension auto-install/auto-load and community
extensions off, and `lock_configuration=true` set last, so a checker bug still cannot read or
write a file, load an extension, or change a setting (tests/test_sql_metric_sandbox.py tries each
escape on the raw connection, bypassing the checker).

What was verified in DuckDB 2.0, and why the events stream in as Arrow:
- `read_parquet` does read files under `allowed_directories` with external access off, but
  `COPY ... TO` can then also write there (new files, and overwrite with USE_TMP_FILE false);
  `allowed_paths` has the same hole for the listed files.  So the sandbox gets no event path:
  the read API's relation (warehouse.events.EventStore.relation: manifest files pruned to the
  windows' span, customer ids resolved through customer_keys) runs on the normal connection and
  its Arrow record batches stream into the sandbox, registered before the query runs (explicit
  registration works with external access off; replacement scans of Python variables do not).
  Nothing is materialised in Python; when the query reads `events` more than once the scoped
  query materialises the events CTE (a stream is read once).
- DuckDB adds its temp directory and the cwd-relative paths `./:memory:*` to the allowed lists
  at start-up (a `COPY ... TO './:memory:'` would succeed); the sandbox empties both lists before
  turning external access off, and checks them.  The temp directory stays allowed whenever one is
  set, so the sandbox spills to a private, empty directory under the home's staging area that is
  deleted afterwards (no home: no spilling).  Its name holds the process id: a process killed
  before its clean-up (an OOM kill of a spilling invoice run) leaves it, spill files and all,
  and the next sandbox of the home removes the directories of processes no longer running.
- `lock_configuration=true` refuses every later SET/RESET/PRAGMA that changes a setting.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from warehouse.home import Home, process_running
from warehouse.sqlrows import first_row

SCRATCH_PREFIX = "sql-sandbox-"


def open_sandbox(
    scratch: Path | None = None, *, threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that can reach no file and change no setting.

    `scratch` is a private, empty directory DuckDB may spill to (None: no spilling); DuckDB
    always allows its temp directory, so it is the only path the connection can touch, and
    `sandbox()` deletes it afterwards.
    """
    config: dict[str, object] = {
        "temp_directory": str(scratch) if scratch is not None else "",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
    }
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET enable_progress_bar = false")
    # DuckDB allows the temp directory and the (cwd-relative!) ":memory:" database paths by
    # default; empty both lists before turning external access off.
    con.execute("SET allowed_paths = []")
    con.execute("SET allowed_directories = []")
    con.execute("SET enable_external_access = false")
    allowed = first_row(
        con, "SELECT current_setting('allowed_directories'), current_setting('allowed_paths')"
    )
    expected = ([str(scratch).rstrip("/") + "/"] if scratch is not None else [], [])
    if allowed != expected:  # pragma: no cover - a DuckDB change; never run user SQL then
        con.close()
        raise AssertionError(f"the sandbox would allow file access: {allowed}")
    con.execute("SET lock_configuration = true")  # last: nothing can be changed after this
    return con


@contextmanager
def sandbox(
    home: Home | None = None, con: duckdb.DuckDBPyConnection | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A sandbox connection with the main connection's threads and memory limit, spilling to a
    fresh directory under the home's staging area (deleted afterwards, or by a later sandbox
    if this process is killed first); without a home, no spilling."""
    settings = _settings_of(con) if con is not None else {"threads": 1}
    scratch = None
    if home is not None:
        home.staging_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_scratch(home.staging_dir)
        prefix = f"{SCRATCH_PREFIX}{os.getpid()}-"
        scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=home.staging_dir))
    try:
        box = open_sandbox(scratch, **settings)  # type: ignore[arg-type]
        try:
            yield box
        finally:
            box.close()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _remove_stale_scratch(staging: Path) -> None:
    """Remove the scratch directories of sandboxes whose process no longer runs (killed before
    its clean-up: nothing else ever removes them, nor DuckDB the spill files in them)."""
    for path in staging.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = path.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not process_running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _settings_of(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    threads, memory = first_row(
        con, "SELECT current_setting('threads'), current_setting('memory_limit')"
    )
    return {"threads": int(threads), "memory_limit": str(memory).replace(" ", "")}
