"""DuckDB resources of the catalog connection: defaults and the METERQL_* settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse.home import DEFAULT_MEMORY_LIMIT, SETTINGS_ENV, Home, _cap_memory, memory_bytes


def _setting(con, name: str) -> str:
    [(value,)] = con.execute("SELECT current_setting(?)", [name]).fetchall()
    return str(value)


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    home = Home(tmp_path / "home")
    home.init()
    return home


def test_default_memory_limit_is_capped_and_spills_inside_the_home(home) -> None:
    con = home.connect()
    try:
        limit = memory_bytes(_setting(con, "memory_limit"))
        assert limit is not None and limit <= memory_bytes(DEFAULT_MEMORY_LIMIT)
        assert _setting(con, "temp_directory") == str(home.staging_dir / "duckdb-tmp")
    finally:
        con.close()


def test_environment_overrides_the_defaults(home, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("METERQL_MEMORY_LIMIT", "5GiB")
    monkeypatch.setenv("METERQL_THREADS", "1")
    monkeypatch.setenv("METERQL_TEMP_DIRECTORY", str(tmp_path / "spill"))
    con = home.connect()
    try:
        assert memory_bytes(_setting(con, "memory_limit")) == 5 * 2**30
        assert _setting(con, "threads") == "1"
        assert _setting(con, "temp_directory") == str(tmp_path / "spill")
    finally:
        con.close()


def test_a_lower_duckdb_default_is_kept(home) -> None:
    con = home.connect()
    try:
        con.execute("SET memory_limit = '100MiB'")  # e.g. a small container
        _cap_memory(con, DEFAULT_MEMORY_LIMIT)
        assert memory_bytes(_setting(con, "memory_limit")) == 100 * 2**20
    finally:
        con.close()


def test_a_bad_memory_limit_names_the_setting(home, monkeypatch) -> None:
    monkeypatch.setenv("METERQL_MEMORY_LIMIT", "lots")
    with pytest.raises(Exception, match="METERQL_MEMORY_LIMIT.*lots"):
        home.connect()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18.8 GiB", int(18.8 * 2**30)),
        ("3GiB", 3 * 2**30),
        ("512 MB", 512 * 10**6),
        ("0 bytes", 0),
        ("lots", None),
        ("", None),
        ("5 XB", None),
    ],
)
def test_memory_sizes(text: str, expected: int | None) -> None:
    assert memory_bytes(text) == expected


def test_catalog_and_work_connections_cache_parquet_footers(tmp_path: Path) -> None:
    # an invoice run reads the same files in several queries: their footers are decoded once
    home = Home(tmp_path / "home")
    home.init()
    for con in (home.connect(), home.connect_work("probe")):
        try:
            [(cached,)] = con.execute("SELECT current_setting('parquet_metadata_cache')").fetchall()
            assert cached is True
        finally:
            con.close()


def _dump(path: Path, events: int) -> Path:
    lines = (
        json.dumps(
            {
                "transaction_id": f"t{i}",
                "customer_id": f"c{i % 500}",
                "event_type": "e",
                "timestamp": f"2026-01-{1 + i % 28:02d}T00:00:00Z",
                "properties": {"model": f"m{i % 7}", "tokens": str(i)},
            }
        )
        for i in range(events)
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _meterql(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def test_running_out_of_memory_is_a_one_line_error_naming_the_settings(home, tmp_path) -> None:
    dump = _dump(tmp_path / "events.ndjson", 50_000)
    tight = {"METERQL_MEMORY_LIMIT": "8MB", "METERQL_THREADS": "1"}
    args = ("--home", str(home.path), "ingest", str(dump), "--now", "2026-02-01T00:00:00Z")
    failed = _meterql(*args, env=tight)
    assert failed.returncode == 1, failed.stderr
    [message] = failed.stderr.strip().splitlines()
    assert message.startswith("error: DuckDB ran out of memory or temp disk space (Out of Memory")
    assert "with METERQL_THREADS=1, METERQL_MEMORY_LIMIT=8MB;" in message
    assert "split the input into smaller batches" in message
    assert list(home.events_dir.rglob("*.parquet")) == []  # nothing stored
    done = _meterql(*args, env={})
    assert done.returncode == 0, done.stderr
    assert "50000 accepted" in done.stdout


def test_only_memory_and_disk_exhaustion_get_the_resources_message() -> None:
    import duckdb

    from engine.cli import out_of_resources

    full = duckdb.IOException("Could not write file x.tmp: No space left on device")
    assert "No space left on device" in (out_of_resources(full) or "")
    assert out_of_resources(duckdb.IOException("No files found that match x")) is None
    assert out_of_resources(duckdb.BinderException("Referenced column y not found")) is None
    assert out_of_resources(ValueError("bug")) is None


def test_the_disk_refusing_a_write_is_a_one_line_error() -> None:
    import errno

    import duckdb

    from engine.cli import disk_refused

    commit = duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: Could not write file "h/catalog.duckdb.wal": '
        "No space left on device"
    )
    assert "Failed to commit" in (disk_refused(commit) or "")
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        refused = OSError(code, os.strerror(code), "h/events/x.parquet")
        assert os.strerror(code) in (disk_refused(refused) or ""), code
    assert disk_refused(OSError(errno.EBADF, "Bad file descriptor")) is None
    assert disk_refused(duckdb.BinderException("Referenced column y not found")) is None
    assert disk_refused(ValueError("bug")) is None


def test_max_temp_size_setting(home, monkeypatch) -> None:
    monkeypatch.setenv("METERQL_MAX_TEMP_SIZE", "2GiB")
    con = home.connect()
    try:
        assert memory_bytes(_setting(con, "max_temp_directory_size")) == 2 * 2**30
    finally:
        con.close()


def test_duckdb_progress_bar_never_writes_into_stdout(home) -> None:
    # DuckDB draws its own progress bar on stdout for queries longer than progress_bar_time
    # (2 s): `usage --format json > out.json` over many events would hold it.  The catalog
    # and work connections turn it off (meterql's own progress bar is on stderr, on a terminal).
    script = (
        "import sys\n"
        "from warehouse.home import Home\n"
        "home = Home.resolve(sys.argv[1])\n"
        "for con in (home.connect(), home.connect_work('t')):\n"
        "    con.execute('SET progress_bar_time = 0')\n"
        "    n = con.execute('SELECT count(*) FROM range(50000000) t(a) WHERE a % 7 = 3')\n"
        "    print(n.fetchall()[0][0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(home.path)], capture_output=True, text=True, check=True
    )
    assert result.stdout == "7142857\n7142857\n"
