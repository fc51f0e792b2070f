"""DuckDB resources of the catalog connection: defaults and the METERQL_* settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.home import DEFAULT_MEMORY_LIMIT, Home, _cap_memory, memory_bytes


def _setting(con, name: str) -> str:
    [(value,)] = con.execute("SELECT current_setting(?)", [name]).fetchall()
    return str(value)


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in ("METERQL_THREADS", "METERQL_MEMORY_LIMIT", "METERQL_TEMP_DIRECTORY"):
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
