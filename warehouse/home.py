"""The meterql home: where the catalog and the event warehouse live.

    <home>/catalog.duckdb      catalog objects, ingest ledger, file manifest, invoices
    <home>/events/             hive-partitioned Parquet: event_date=YYYY-MM-DD/<batch>-<n>.parquet
    <home>/rejects/            one NDJSON file of rejected events per ingest batch
    <home>/staging/            scratch space of running commands (temporary names only)

A home must be created with `meterql init` (or `Home.init()`); every other command refuses a
directory that is not an initialised home, so a mistyped --home never silently starts a new,
empty one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.errors import HomeError
from warehouse.migrations import migrate

DEFAULT_HOME = ".meterql"
_SETTINGS_ENV = ("METERQL_THREADS", "METERQL_MEMORY_LIMIT", "METERQL_TEMP_DIRECTORY")
CATALOG_FILE = "catalog.duckdb"


@dataclass(frozen=True)
class Home:
    path: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Home:
        """`--home`, else `$METERQL_HOME`, else `./.meterql`."""
        chosen = home or os.environ.get("METERQL_HOME") or DEFAULT_HOME
        return cls(Path(chosen).expanduser().absolute())

    @property
    def catalog_path(self) -> Path:
        return self.path / CATALOG_FILE

    @property
    def events_dir(self) -> Path:
        return self.path / "events"

    @property
    def rejects_dir(self) -> Path:
        return self.path / "rejects"

    @property
    def staging_dir(self) -> Path:
        return self.path / "staging"

    def is_initialised(self) -> bool:
        return self.catalog_path.is_file()

    def init(self) -> bool:
        """Create the home (idempotent).  Returns True when it was newly created."""
        if self.path.exists() and not self.path.is_dir():
            raise HomeError(f"meterql home {self.path} exists and is not a directory")
        created = not self.is_initialised()
        for directory in (self.path, self.events_dir, self.rejects_dir, self.staging_dir):
            directory.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.catalog_path))
        try:
            migrate(con)
        finally:
            con.close()
        return created

    def require(self) -> None:
        if not self.is_initialised():
            raise HomeError(
                f"meterql home {self.path} is not initialised (no {CATALOG_FILE}); "
                f"run `meterql --home {self.path} init` first"
            )

    def connect(self, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the catalog, applying pending migrations (so older homes keep working).

        DuckDB resources come from the environment: `METERQL_THREADS` (default: all cores),
        `METERQL_MEMORY_LIMIT` (default: DuckDB's, 80% of RAM; e.g. `4GB`), and spilling goes
        to `<home>/staging/duckdb-tmp` unless `METERQL_TEMP_DIRECTORY` says otherwise.
        """
        self.require()
        config = {"temp_directory": os.environ.get("METERQL_TEMP_DIRECTORY")}
        config["temp_directory"] = config["temp_directory"] or str(self.staging_dir / "duckdb-tmp")
        if os.environ.get("METERQL_THREADS"):
            config["threads"] = os.environ["METERQL_THREADS"]
        if os.environ.get("METERQL_MEMORY_LIMIT"):
            config["memory_limit"] = os.environ["METERQL_MEMORY_LIMIT"]
        try:
            con = duckdb.connect(str(self.catalog_path), read_only=read_only, config=config)
        except duckdb.Error as error:
            if "lock" in str(error).lower():
                raise HomeError(
                    f"meterql home {self.path}: the catalog is in use by another process ({error})"
                ) from None
            settings = {k: v for k, v in os.environ.items() if k in _SETTINGS_ENV}
            if settings:
                raise HomeError(
                    f"cannot open the catalog with settings {settings}: {error}"
                ) from None
            raise
        if not read_only:
            migrate(con)
        return con

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive lock for commands that write the warehouse or the catalog."""
        self.require()
        lock_path = self.path / ".lock"
        with open(lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HomeError(
                    f"meterql home {self.path} is locked by another running meterql command"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
