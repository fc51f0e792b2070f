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
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb

from warehouse.errors import HomeError, first_line, not_utf8
from warehouse.migrations import LATEST, migrate, pending_version

_T = TypeVar("_T")

DEFAULT_HOME = ".meterql"
# How long a command waits for the home another meterql process holds (its writer lock, or the
# catalog file, which DuckDB lets one process open at a time) before it gives up.
LOCK_TIMEOUT_ENV = "METERQL_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 60.0  # seconds
DEFAULT_MEMORY_LIMIT = "3GiB"  # see Home.connect
SETTINGS_ENV = (
    "METERQL_THREADS",
    "METERQL_MEMORY_LIMIT",
    "METERQL_TEMP_DIRECTORY",
    "METERQL_MAX_TEMP_SIZE",
)
CATALOG_FILE = "catalog.duckdb"
UNUSABLE_PATH_CHARACTERS = frozenset("?\\")  # see Home._check_path


@dataclass(frozen=True)
class Home:
    path: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Home:
        """`--home`, else `$METERQL_HOME`, else `./.meterql`.  An empty `--home` (an unset shell
        variable in a script) is refused rather than taken as not given."""
        if home is not None and not os.fspath(home):
            raise HomeError(
                "--home is empty; give the home's directory (or leave --home out to use "
                "$METERQL_HOME, else ./.meterql)"
            )
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

    @property
    def default_temp_dir(self) -> Path:
        """Where DuckDB spills unless METERQL_TEMP_DIRECTORY says otherwise."""
        return self.staging_dir / "duckdb-tmp"

    def is_initialised(self) -> bool:
        return self.catalog_path.is_file()

    def init(self) -> bool:
        """Create the home (idempotent).  Returns True when it was newly created."""
        self._check_path()
        if self.path.exists() and not self.path.is_dir():
            raise HomeError(f"meterql home {self.path} exists and is not a directory")
        created = not self.is_initialised()
        for directory in (self.path, self.events_dir, self.rejects_dir, self.staging_dir):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:  # no permission, a parent is a file, read-only file system
                raise HomeError(
                    f"cannot create meterql home {self.path}: {error.strerror or error} "
                    f"({error.filename or directory})"
                ) from None
        con = self._connect(str(self.catalog_path), {}, with_settings=False)
        try:
            self._migrate(con)
        finally:
            con.close()
        return created

    def _check_path(self) -> None:
        """DuckDB opens a catalog under a path holding `?` but puts its WAL elsewhere (it reads
        `?` as the start of options), and reads a backslash as a directory separator; the file
        system may refuse the path itself (a name too long); DuckDB takes only UTF-8 paths."""
        if (problem := not_utf8(str(self.path))) is not None:
            raise HomeError(f"meterql home {problem}; choose another directory")
        held = sorted(UNUSABLE_PATH_CHARACTERS & set(str(self.path)))
        if held:
            raise HomeError(
                f"meterql home {self.path}: its path holds {' and '.join(map(repr, held))}, "
                "under which DuckDB cannot keep the catalog; choose another directory"
            )
        try:
            self.catalog_path.exists()
        except OSError as error:
            raise HomeError(f"meterql home {self.path}: {error.strerror or error}") from None

    def require(self) -> None:
        self._check_path()
        if not self.is_initialised():
            raise HomeError(
                f"meterql home {self.path} is not initialised (no {CATALOG_FILE}); "
                f"run `meterql --home {self.path} init` first"
            )

    def connect(self, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the catalog, applying pending migrations (so older homes keep working).

        DuckDB resources come from the environment: `METERQL_THREADS` (default: all cores),
        `METERQL_MEMORY_LIMIT` (default: DEFAULT_MEMORY_LIMIT, 3 GiB, or DuckDB's own default
        when that is lower: 80% of the RAM or of the container's limit; e.g. `8GiB`), and
        spilling goes to `<home>/staging/duckdb-tmp` unless `METERQL_TEMP_DIRECTORY` says
        otherwise, up to `METERQL_MAX_TEMP_SIZE` (default: DuckDB's, 90% of the free disk
        space) per connection.  Measured (README "Performance"): an invoice run's peak RSS
        stays near 1.1-1.3 GiB from 10M to 100M events and runs as fast with a 512 MiB limit,
        so 3 GiB costs it nothing and keeps every command under 4 GiB on a shared machine;
        beyond the limit DuckDB spills to the temp directory instead of growing.
        """
        self.require()
        self._remove_dead_spill_files()
        con = self._open(str(self.catalog_path), self._temp_directory(), read_only=read_only)
        if not read_only:
            self._migrate(con)
            return con
        version = pending_version(con)
        if version is not None:
            con.close()
            raise HomeError(
                f"meterql home {self.path}: its catalog is at schema version {version}, this "
                f"meterql reads version {LATEST}; it cannot be migrated read-only: run any "
                f"meterql command on it once (e.g. `meterql --home {self.path} init`, which is "
                "safe to run again) to migrate it"
            )
        return con

    def _remove_dead_spill_files(self) -> None:
        """Remove the spill files (`duckdb_temp_<pid>_...`) that catalog connections of
        processes no longer running left in the home's default temp directory: DuckDB removes
        them when the connection closes, so a killed invoice run or query that spilled left them
        for good, and no later connection removes them."""
        for path in self.default_temp_dir.glob("duckdb_temp_*"):
            pid = path.name.removeprefix("duckdb_temp_").split("_", 1)[0]
            if path.is_file() and pid.isdigit() and not process_running(int(pid)):
                path.unlink(missing_ok=True)

    def connect_work(self, name: str) -> duckdb.DuckDBPyConnection:
        """A private in-memory DuckDB connection for one command's own work over the events
        (ingest, compaction), with the resources `connect` takes from the environment (the
        same settings and defaults).  It spills into `<temp directory>/<name>`, a directory of
        its own that DuckDB creates and removes when the connection closes."""
        self.require()
        base = Path(self._temp_directory())
        base.mkdir(parents=True, exist_ok=True)
        return self._open(":memory:", str(base / name))

    def _temp_directory(self) -> str:
        return os.environ.get("METERQL_TEMP_DIRECTORY") or str(self.default_temp_dir)

    def _open(
        self, database: str, temp_directory: str, *, read_only: bool = False
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the METERQL_* resource settings (see `connect`)."""
        config = {"temp_directory": temp_directory}
        if os.environ.get("METERQL_THREADS"):
            config["threads"] = os.environ["METERQL_THREADS"]
        if os.environ.get("METERQL_MEMORY_LIMIT"):
            config["memory_limit"] = os.environ["METERQL_MEMORY_LIMIT"]
        if os.environ.get("METERQL_MAX_TEMP_SIZE"):
            config["max_temp_directory_size"] = os.environ["METERQL_MAX_TEMP_SIZE"]

        con = self._connect(database, config, read_only=read_only)
        if "memory_limit" not in config:
            _cap_memory(con, DEFAULT_MEMORY_LIMIT)
        # Parquet footers decoded once per process, not once per query: an invoice run reads
        # the same files in several queries.  Files are never rewritten under the same name, so
        # a cached footer cannot go stale; DuckDB counts the cache in its memory limit and
        # evicts from it (measured: 97 MiB for 31 files of 2,009 columns, 91 MiB under a 100 MB
        # limit).  Measured on such wide files: a query 2.2x the dense files' time without it,
        # 1.25x with it (README "Performance").
        con.execute("SET parquet_metadata_cache = true")
        # DuckDB draws its own progress bar on stdout for a query longer than 2 s, which would
        # land in the middle of `usage --format json > out.json` (meterql's own bar is on
        # stderr, and only on a terminal: engine.output.progress).
        con.execute("SET enable_progress_bar = false")
        con.execute("SET enable_progress_bar_print = false")  # also if a SET turns it back on
        return con

    def _connect(
        self,
        database: str,
        config: dict[str, str],
        *,
        read_only: bool = False,
        with_settings: bool = True,
    ) -> duckdb.DuckDBPyConnection:
        """duckdb.connect, waiting (Home._waiting) while another process holds the file; any
        other failure as `_open_error` words it."""

        def attempt() -> duckdb.DuckDBPyConnection | None:
            try:
                return duckdb.connect(database, read_only=read_only, config=config)
            except duckdb.Error as error:
                if database != ":memory:" and _held_by_another_process(error):
                    return None
                raise self._open_error(database, error, with_settings=with_settings) from None

        return self._waiting(attempt, "its catalog is in use by another process")

    def _open_error(
        self, database: str, error: duckdb.Error, *, with_settings: bool = True
    ) -> Exception:
        """The error to raise for a DuckDB connection that could not be opened: a HomeError
        when another process holds the catalog, when METERQL_* settings are given, or when the
        catalog file itself cannot be read (not a DuckDB database, written by a newer DuckDB, a
        directory, no permission); the DuckDB error itself otherwise (a bug)."""
        if _held_by_another_process(error):
            return HomeError(
                f"meterql home {self.path}: the catalog is in use by another process ({error})"
            )
        settings = {k: v for k, v in os.environ.items() if k in SETTINGS_ENV}
        what = "the catalog" if database != ":memory:" else "a DuckDB work connection"
        if settings and with_settings:
            return HomeError(f"cannot open {what} with settings {settings}: {error}")
        if database == str(self.catalog_path):
            return HomeError(
                f"meterql home {self.path}: cannot open its catalog {self.catalog_path}: "
                f"{first_line(error)}"
            )
        return error

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        """Apply pending migrations; on failure the connection is closed (it would keep the
        catalog locked) and a HomeError (e.g. a catalog newer than this meterql) names the
        home."""
        try:
            migrate(con)
        except HomeError as error:
            con.close()
            raise HomeError(f"meterql home {self.path}: {error}") from None
        except BaseException:
            con.close()
            raise

    def _waiting(self, attempt: Callable[[], _T | None], why: str) -> _T:
        """`attempt()` until it returns a value, while another process holds the home (it
        returns None), for up to METERQL_LOCK_TIMEOUT seconds (default 60; 0: not at all): a
        nightly `invoice run` waits for a running `usage` or ingest instead of failing.  Says
        so once on stderr when it is a terminal; a HomeError naming the wait after it."""
        timeout = lock_timeout()
        started = time.monotonic()
        pause = 0.05
        told = False
        while (result := attempt()) is None:
            waited = time.monotonic() - started
            if waited >= timeout:
                raise HomeError(
                    f"meterql home {self.path}: {why}; gave up after {waited:.1f} s "
                    f"({LOCK_TIMEOUT_ENV}={timeout:g}); run this command when the other one "
                    "has finished, or wait longer"
                )
            if not told and sys.stderr.isatty():
                sys.stderr.write(f"meterql home {self.path}: {why}; waiting...\n")
                told = True
            time.sleep(min(pause, timeout - waited))
            pause = min(pause * 2, 1.0)
        return result

    @contextmanager
    def catalog(
        self, con: duckdb.DuckDBPyConnection | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """`con`, the caller's open catalog connection (left open), or a new one closed on
        leaving the block."""
        if con is not None:
            yield con
            return
        own = self.connect()
        try:
            yield own
        finally:
            own.close()

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive lock for commands that write the warehouse or the catalog."""
        self.require()
        lock_path = self.path / ".lock"
        with open(lock_path, "a+") as handle:

            def attempt() -> bool | None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return None
                return True

            self._waiting(attempt, "it is locked by another running meterql command")
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def lock_timeout() -> float:
    """METERQL_LOCK_TIMEOUT in seconds (see Home._waiting)."""
    text = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 <= value < float("inf")):
        raise HomeError(
            f"{LOCK_TIMEOUT_ENV}={text!r} is not a number of seconds (expected e.g. 60, or 0 "
            "to fail at once when another command holds the home)"
        )
    return value


def process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, another user's
        return True
    return True


def _held_by_another_process(error: duckdb.Error) -> bool:
    """DuckDB could not open a database file because another process has it open."""
    return "lock" in str(error).lower()


_UNITS = {
    "": 1,
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def memory_bytes(text: str) -> int | None:
    """Bytes of a DuckDB memory size ("18.8 GiB", "3GiB", "512 MB"); None if not one."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _cap_memory(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """Lower DuckDB's memory_limit to `limit` unless its own default is already lower."""
    [(current,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
    have, cap = memory_bytes(str(current)), memory_bytes(limit)
    if cap is not None and (have is None or have > cap):
        con.execute(f"SET memory_limit = '{limit}'")
