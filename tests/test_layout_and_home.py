"""Property column encoding, homes, migrations and the read API's contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlglot import exp

from warehouse import migrations
from warehouse.compact import compact
from warehouse.errors import HomeError
from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import ingest
from warehouse.layout import is_property_column, property_column, property_name


@given(st.text(min_size=1, max_size=40))
def test_property_column_round_trips(name: str) -> None:
    column = property_column(name)
    assert is_property_column(column)
    assert property_name(column) == name


@given(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12))
def test_distinct_names_never_collide_case_insensitively(a: str, b: str) -> None:
    if a != b:
        assert property_column(a).lower() != property_column(b).lower()


def test_common_names_stay_readable() -> None:
    assert property_column("input_tokens") == "p_input_tokens"
    assert property_column("Model") == "p_%4Dodel"
    assert property_column('x"; DROP TABLE events; --').startswith("p_x%22%3B%20")


def test_hostile_and_case_variant_columns_live_side_by_side(tmp_path: Path) -> None:
    names = ["model", "Model", 'x"; DROP TABLE events; --', "a.b", "[x]", "zählung", "sp ace"]
    con = duckdb.connect()
    select = exp.select(
        *(
            exp.alias_(exp.Literal.string(str(i)), property_column(n), quoted=True)
            for i, n in enumerate(names)
        )
    )
    path = str(tmp_path / "f.parquet")
    con.sql(select.sql("duckdb")).write_parquet(path)
    columns = [d[0] for d in con.read_parquet(path).description]
    assert [property_name(c) for c in columns] == names


def test_home_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("METERQL_HOME", raising=False)
    assert Home.resolve().path == tmp_path / ".meterql"
    monkeypatch.setenv("METERQL_HOME", str(tmp_path / "env"))
    assert Home.resolve().path == tmp_path / "env"
    assert Home.resolve(tmp_path / "flag").path == tmp_path / "flag"


def test_init_is_idempotent_and_migrations_recorded(tmp_path: Path) -> None:
    home = Home.resolve(tmp_path / "h")
    assert home.init() is True
    assert home.init() is False
    con = home.connect()
    versions = [
        v for (v,) in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
    ]
    assert versions == list(range(1, migrations.LATEST + 1))
    assert migrations.migrate(con) == []


def test_older_home_is_upgraded_on_open(tmp_path: Path) -> None:
    home = Home.resolve(tmp_path / "h")
    home.path.mkdir()
    con = duckdb.connect(str(home.catalog_path))  # a home made by a meterql with migration 1 only
    number, name, sql = migrations._migrations()[0]
    migrations.current_version(con)
    con.execute(sql)
    con.execute("INSERT INTO schema_version VALUES (?, ?, now()::TIMESTAMP)", [number, name])
    con.execute("INSERT INTO customers VALUES ('c1', 'Acme', '{}', now(), now())")
    con.close()
    # read-only, it cannot be migrated: a clear error, not a missing column later
    with pytest.raises(HomeError, match=r"schema version 1, this meterql reads version \d+.*init"):
        home.connect(read_only=True)
    con = home.connect()
    assert migrations.current_version(con) == migrations.LATEST
    assert con.execute("SELECT count(*) FROM event_files").fetchone() == (0,)
    assert con.execute("SELECT name FROM customers").fetchall() == [("Acme",)]
    con.close()
    con = home.connect(read_only=True)  # migrated: read-only opens
    assert con.execute("SELECT name FROM customers").fetchall() == [("Acme",)]
    con.close()


def test_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(HomeError, match="not a directory"):
        Home.resolve(tmp_path / "file").init()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("h?x", r"h\?x: its path holds '\?'"),
        ("h\\x", r"h\\x: its path holds '\\\\'"),
        (os.fsdecode(b"h\xffx"), r"h\\\\xffx' is not UTF-8 text \(byte 0xFF\)"),
    ],
)
def test_a_home_path_duckdb_cannot_open_is_refused_before_anything_is_created(
    tmp_path: Path, name: str, why: str
) -> None:
    """DuckDB opens `h?x/catalog.duckdb` but its WAL as `h.wal?x/...`, `h\\x/...` as
    `h/x/...`, and cannot encode a path that is not UTF-8: such a home is refused by name, not
    an internal error."""
    home = Home.resolve(tmp_path / name)
    for command in (home.init, home.connect):
        with pytest.raises(HomeError, match=f"meterql home .*{why}.*; choose another directory"):
            command()
    assert list(tmp_path.iterdir()) == []


def test_writer_lock_refuses_a_second_writer(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("METERQL_LOCK_TIMEOUT", "0.2")
    home = Home.resolve(tmp_path / "h")
    home.init()
    started = time.monotonic()
    with home.writer_lock(), pytest.raises(HomeError, match="locked by another") as err:
        with home.writer_lock():
            pass
    assert time.monotonic() - started >= 0.2
    assert "gave up after 0.2 s (METERQL_LOCK_TIMEOUT=0.2)" in str(err.value)


def test_a_second_writer_waits_for_the_first(tmp_path: Path, monkeypatch) -> None:
    """A nightly `invoice run` that starts while an ingest writes waits for it, then runs."""
    monkeypatch.setenv("METERQL_LOCK_TIMEOUT", "30")
    home = Home.resolve(tmp_path / "h")
    home.init()
    held = threading.Event()

    def first() -> None:
        with home.writer_lock():
            held.set()
            time.sleep(0.3)

    thread = threading.Thread(target=first)
    thread.start()
    held.wait()
    started = time.monotonic()
    with home.writer_lock():
        waited = time.monotonic() - started
    thread.join()
    assert 0.1 <= waited < 30


_HOLD_CATALOG = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_catalog_another_process_holds_is_waited_for(tmp_path: Path, monkeypatch) -> None:
    """DuckDB lets one process open the catalog at a time: a command started while another
    runs (a dashboard's `usage`, an ingest) waits up to METERQL_LOCK_TIMEOUT, then says so."""
    home = Home.resolve(tmp_path / "h")
    home.init()

    def holder(seconds: float) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", _HOLD_CATALOG, str(home.catalog_path), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline() == "holding\n"
        return process

    # every command opens the catalog; `init` too (safe to run again, e.g. by a deploy script
    # beside a running command)
    for open_home in (lambda: home.connect().close(), home.init):
        monkeypatch.setenv("METERQL_LOCK_TIMEOUT", "0")
        process = holder(30)
        try:
            with pytest.raises(HomeError, match="its catalog is in use by another process; gave"):
                open_home()
        finally:
            process.kill()
            process.wait()
        monkeypatch.setenv("METERQL_LOCK_TIMEOUT", "60")
        process = holder(0.5)
        open_home()  # waits for the holder to exit
        assert process.wait() == 0


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_a_bad_lock_timeout_is_named(tmp_path: Path, monkeypatch, value: str) -> None:
    home = Home.resolve(tmp_path / "h")
    home.init()
    monkeypatch.setenv("METERQL_LOCK_TIMEOUT", value)
    with pytest.raises(HomeError, match=f"METERQL_LOCK_TIMEOUT={value!r} is not a number"):
        with home.writer_lock():
            pass


def test_a_home_path_the_file_system_refuses_is_named(tmp_path: Path) -> None:
    home = Home.resolve(tmp_path / ("h" * 300))
    for command in (home.init, home.connect):
        with pytest.raises(HomeError, match=r"meterql home .*hhh: File name too long"):
            command()


def test_a_home_named_like_a_glob_reads_only_its_own_files(tmp_path: Path) -> None:
    """DuckDB's readers expand `*` in a path: the files of home `h*` would also be read from a
    copy of it beside it (`h-copy`), doubling every event; compaction found the double rows."""
    home = Home.resolve(tmp_path / "h*")
    home.init()
    for i in range(2):
        dump = tmp_path / f"e{i}.ndjson"
        event = {"transaction_id": f"t{i}", "customer_id": "c", "event_type": "e"}
        dump.write_text(json.dumps({**event, "timestamp": "2026-01-30T00:00:00Z"}))
        assert ingest(home, [dump], now=datetime(2026, 2, 1)).accepted == 1
    shutil.copytree(home.path, tmp_path / "h-copy")

    def stored() -> list[str]:
        with home.catalog() as con:
            relation = EventStore(home, con).relation([], resolve_customers=False)
            return sorted(r[0] for r in con.execute(relation.sql("duckdb")).fetchall())

    assert stored() == ["t0", "t1"]
    again = ingest(home, [tmp_path / "e0.ndjson"], now=datetime(2026, 2, 1))
    assert (again.accepted, again.duplicates) == (0, 1)
    assert compact(home, grace=timedelta(0)).rows == 2
    assert stored() == ["t0", "t1"]


def test_read_api_on_an_empty_warehouse_has_the_canonical_columns(tmp_path: Path) -> None:
    home = Home.resolve(tmp_path / "h")
    home.init()
    con = home.connect()
    relation = EventStore(home, con).relation(["model", "Model"])
    result = con.execute(relation.sql("duckdb"))
    assert [d[0] for d in result.description] == [
        "transaction_id",
        "customer_id",
        "event_type",
        "timestamp",
        "ingested_at",
        "batch_id",
        "p_model",
        "p_%4Dodel",
    ]
    assert result.fetchall() == []


def test_duckdb_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home.resolve(tmp_path / "h")
    home.init()
    monkeypatch.setenv("METERQL_THREADS", "1")
    monkeypatch.setenv("METERQL_MEMORY_LIMIT", "1GB")
    con = home.connect()
    threads, temp = con.execute(
        "SELECT current_setting('threads'), current_setting('temp_directory')"
    ).fetchone()
    assert threads == 1 and temp == str(home.staging_dir / "duckdb-tmp")
    con.close()
    monkeypatch.setenv("METERQL_THREADS", "many")
    with pytest.raises(HomeError, match="METERQL_THREADS"):
        home.connect()


@pytest.mark.parametrize("content", [b"", b"not a duckdb file\n" * 100])
def test_a_corrupt_catalog_is_a_home_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    home = Home.resolve(tmp_path / "h")
    home.path.mkdir()
    home.catalog_path.write_bytes(content)
    for open_it in (home.connect, home.init):
        with pytest.raises(HomeError, match=r"cannot open its catalog .*catalog\.duckdb"):
            open_it()


def test_a_catalog_path_that_is_a_directory_is_a_home_error(tmp_path: Path) -> None:
    home = Home.resolve(tmp_path / "h")
    home.catalog_path.mkdir(parents=True)
    with pytest.raises(HomeError, match="cannot open its catalog"):
        home.init()


def test_a_catalog_newer_than_this_meterql_is_a_home_error_and_left_closed(tmp_path: Path) -> None:
    home = Home.resolve(tmp_path / "h")
    home.init()
    con = duckdb.connect(str(home.catalog_path))
    con.execute("INSERT INTO schema_version VALUES (999, '0999_future.sql', now()::TIMESTAMP)")
    con.close()
    for open_it in (home.connect, home.init):
        with pytest.raises(HomeError, match=r"h: this catalog is at schema version 999.*upgrade"):
            open_it()
    # the failed opens closed their connection: the catalog is not left locked
    duckdb.connect(str(home.catalog_path)).close()


def test_a_home_that_cannot_be_created_is_a_home_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(HomeError, match=r"cannot create meterql home .*file/sub: Not a directory"):
        Home.resolve(tmp_path / "file" / "sub").init()


def test_spill_files_of_killed_processes_are_removed_on_connect(tmp_path: Path) -> None:
    """DuckDB removes a catalog connection's spill files from <home>/staging/duckdb-tmp only
    when it closes: a killed invoice run or usage query that spilled left them there for good
    (gigabytes for a large run).  The next connection removes those of processes that no
    longer run, and keeps a running one's."""
    home = Home.resolve(tmp_path / "h")
    home.init()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    spill = home.default_temp_dir
    spill.mkdir(parents=True, exist_ok=True)
    left = [spill / f"duckdb_temp_{dead.pid}_0_owner", spill / f"duckdb_temp_{dead.pid}_0.tmp"]
    live = spill / f"duckdb_temp_{os.getpid()}_0_storage_DEFAULT-0.tmp"
    for path in [*left, live]:
        path.write_bytes(b"spilled")
    home.connect().close()
    assert [p.exists() for p in [*left, live]] == [False, False, True]


def _open_files(pid: int) -> set[str]:
    """The files process `pid` has open (those it closes meanwhile, or all when it exited, are
    left out)."""
    found = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return found
    for descriptor in descriptors:
        try:
            found.add(os.path.realpath(os.readlink(descriptor)))
        except OSError:
            continue
    return found


_LOCK_THEN_CATALOG = """
import sys
from warehouse.home import Home
home = Home.resolve(sys.argv[1])
with home.writer_lock():
    print("locked", flush=True)
    sys.stdin.readline()
    home.connect().close()  # as `invoice run` and `apply` do: the writer lock, then the catalog
"""


@pytest.mark.parametrize(
    "command", [["ingest", "e.ndjson", "--now", "2026-01-02"], ["warehouse", "compact"]]
)
def test_commands_take_the_writer_lock_before_the_catalog(tmp_path: Path, command) -> None:
    """An ingest or compaction started while an invoice run held the writer lock but had not
    opened the catalog yet opened the catalog and then waited for the lock, and the invoice run
    waited for the catalog: a deadlock until one gave up (METERQL_LOCK_TIMEOUT, 60 s: the
    nightly run failed).  Both take the writer lock first, then the catalog."""
    home = Home.resolve(tmp_path / "h")
    home.init()
    (tmp_path / "e.ndjson").write_text(
        '{"transaction_id": "t", "customer_id": "c", "event_type": "e", '
        '"timestamp": "2026-01-01T00:00:00Z", "properties": {}}\n'
    )
    env = {**os.environ, "METERQL_LOCK_TIMEOUT": "3"}
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_THEN_CATALOG, str(home.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    second = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--home", str(home.path), *command],
        cwd=tmp_path,
        env={**env, "METERQL_LOCK_TIMEOUT": "60"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = str(home.path / ".lock")
    while second.poll() is None and lock not in _open_files(second.pid):
        time.sleep(0.01)  # until it waits for the writer lock
    time.sleep(0.2)
    _, held = holder.communicate("go\n", timeout=60)
    assert holder.returncode == 0, held
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr
