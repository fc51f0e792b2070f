"""Defence in depth: the connection user SQL runs in reaches no file and changes no setting, even
when the checker is bypassed; and escapes through `sql run` are refused before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_sql_metric_run import END, START, home  # noqa: F401 - the `home` fixture

from engine import sandbox as sandbox_module
from engine.api import Meterql
from engine.sandbox import open_sandbox, sandbox
from metric_compiler.sql_metric import SqlMetricError
from warehouse.home import Home

CANARY_TEXT = "canary: this must never be read"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside any warehouse with a canary text file and a Parquet file."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "canary.txt").write_text(CANARY_TEXT)
    pq.write_table(pa.table({"secret": [CANARY_TEXT]}), directory / "canary.parquet")
    return directory


def escapes(outside: Path, scratch: Path | None) -> list[str]:
    """Statements that try to read, write or reconfigure, with the paths filled in."""
    templates = [
        "SELECT * FROM read_text('CANARY')",
        "SELECT * FROM read_csv('CANARY')",
        "SELECT * FROM read_parquet('PARQUET')",
        "SELECT * FROM 'PARQUET'",
        "SELECT * FROM read_json_auto('CANARY')",
        "SELECT * FROM glob('OUTSIDE/*')",
        "SELECT * FROM parquet_metadata('PARQUET')",
        "COPY (SELECT 1) TO 'OUTSIDE/written.csv'",
        "COPY (SELECT 1) TO 'OUTSIDE/written.csv' (FORMAT csv, USE_TMP_FILE false)",
        "COPY (SELECT 1) TO 'PARQUET' (FORMAT parquet, USE_TMP_FILE false)",
        "COPY (SELECT 1) TO 'CWD/:memory:' (USE_TMP_FILE false)",
        "EXPORT DATABASE 'OUTSIDE/export'",
        "ATTACH 'OUTSIDE/x.duckdb' AS x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET allowed_directories = ['OUTSIDE']",
        "SET allowed_paths = ['CANARY']",
        "SET lock_configuration = false",
        "SET autoload_known_extensions = true",
        "PRAGMA enable_profiling",
        "SELECT getenv('HOME')",
        "SELECT * FROM python_secret",  # a Python variable in scope: no replacement scans
    ]
    if scratch is not None:
        templates.append("SELECT * FROM read_text('SCRATCH_PARENT/*')")
    places = {
        "CANARY": outside / "canary.txt",
        "PARQUET": outside / "canary.parquet",
        "OUTSIDE": outside,
        "CWD": Path.cwd(),
        "SCRATCH_PARENT": scratch.parent if scratch is not None else outside,
    }
    filled = []
    for template in templates:
        for name, path in places.items():
            template = template.replace(name, str(path))
        filled.append(template)
    return filled


def test_the_raw_sandbox_refuses_every_escape_and_touches_no_file(
    outside: Path, tmp_path: Path
) -> None:
    python_secret = pa.table({"s": [CANARY_TEXT]})  # noqa: F841 - bait for replacement scans
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = snapshot(tmp_path)
    cwd_before = set(os.listdir(Path.cwd()))
    con = open_sandbox(scratch, threads=1)
    try:
        settings = con.execute(
            "SELECT current_setting('enable_external_access'), "
            "current_setting('lock_configuration'), current_setting('allowed_paths'), "
            "current_setting('allowed_directories'), "
            "current_setting('autoload_known_extensions'), "
            "current_setting('autoinstall_known_extensions')"
        ).fetchone()
        assert settings == (False, True, [], [f"{scratch}/"], False, False)
        for statement in escapes(outside, scratch):
            with pytest.raises(duckdb.Error) as refused:
                con.execute(statement).fetchall()
            assert CANARY_TEXT not in str(refused.value), statement
    finally:
        con.close()
    assert snapshot(tmp_path) == before
    assert set(os.listdir(Path.cwd())) == cwd_before


def test_the_sandbox_sees_no_catalog_and_cleans_its_scratch_directory(home: Home) -> None:  # noqa: F811
    staging = set(home.staging_dir.iterdir())
    with sandbox(home) as con:
        scratch = [p for p in home.staging_dir.iterdir() if p not in staging]
        assert len(scratch) == 1 and scratch[0].name.startswith("sql-sandbox-")
        for statement in (
            "SELECT * FROM customers",
            "SELECT * FROM customer_keys",
            "SELECT * FROM read_parquet('EVENTS/*/*.parquet')".replace(
                "EVENTS", str(home.events_dir)
            ),
            "ATTACH 'CATALOG' AS catalog (READ_ONLY)".replace("CATALOG", str(home.catalog_path)),
        ):
            with pytest.raises(duckdb.Error):
                con.execute(statement).fetchall()
    assert set(home.staging_dir.iterdir()) == staging


def test_the_scratch_directory_of_a_killed_sandbox_is_removed_by_the_next_one(
    home: Home,  # noqa: F811
) -> None:
    """A process killed inside its sandbox (an OOM kill of a spilling query) runs no clean-up:
    its scratch directory stays, spill files and all; the next sandbox of the home removes it
    and leaves the directory of a running process alone."""
    script = (
        "import os, sys\n"
        "from engine.sandbox import sandbox\n"
        "from warehouse.home import Home\n"
        "with sandbox(Home.resolve(sys.argv[1])):\n"
        "    os._exit(137)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(home.path)], check=False)
    assert killed.returncode == 137
    [left] = [p for p in home.staging_dir.iterdir() if p.name.startswith("sql-sandbox-")]
    (left / "duckdb_temp_1_0_storage_DEFAULT-0.tmp").write_bytes(b"spilled")
    running = home.staging_dir / f"sql-sandbox-{os.getpid()}-running"
    running.mkdir()
    with sandbox(home):
        pass
    assert not left.exists()
    assert running.is_dir()


def test_reads_of_one_row_leave_the_connection_usable_by_the_relation_api(
    home: Home,  # noqa: F811
) -> None:
    # DuckDB 2.0: a result read with fetchone() is unfinished, and the connection's next
    # relation (con.sql) then fails with "connection has an unfinished result"
    from warehouse.catalog import Catalog
    from warehouse.errors import NotFoundError

    con = home.connect()
    try:
        with sandbox(home, con) as box:  # reads the connection's settings
            assert box.sql("SELECT 1").fetchall() == [(1,)]
        assert con.sql("SELECT 2").fetchall() == [(2,)]
        assert Catalog(con).customer("acme-internal").id == "cust-acme"
        assert con.sql("SELECT 3").fetchall() == [(3,)]
        with pytest.raises(NotFoundError):
            Catalog(con).customer("nobody")
        assert con.sql("SELECT 4").fetchall() == [(4,)]
    finally:
        con.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) AS value FROM read_text('{canary}')",
        "SELECT count(*) AS value FROM '{canary}'",
        "WITH x AS (SELECT content FROM read_text('{canary}')) SELECT count(*) AS value FROM x",
        "SELECT count(*) AS value FROM events "
        "WHERE event_type IN (SELECT content FROM read_text('{canary}'))",
        "SELECT count(*) AS value FROM glob('{outside}/*')",
        "SELECT getenv('HOME') AS value",
        "COPY (SELECT 1) TO '{outside}/written.csv'",
        "SELECT count(*) AS value FROM events; COPY (SELECT 1) TO '{outside}/written.csv'",
        "ATTACH '{outside}/x.duckdb'",
        "SELECT count(*) AS value FROM customers",
    ],
)
def test_sql_run_refuses_escapes_before_anything_runs(
    sql: str,
    home: Home,  # noqa: F811
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_sandbox(*args, **kwargs):
        raise AssertionError("a refused query must not reach DuckDB")

    monkeypatch.setattr(sandbox_module, "open_sandbox", no_sandbox)
    before = snapshot(home.path.parent)
    mq = Meterql.open(home)
    try:
        with pytest.raises(SqlMetricError) as refused:
            mq.sql_run(sql.format(canary=outside / "canary.txt", outside=outside), START, END)
    finally:
        mq.close()
    assert "not allowed" in str(refused.value)
    assert CANARY_TEXT not in str(refused.value)
    after = snapshot(home.path.parent)
    assert {k: v for k, v in after.items() if not k.endswith(".wal")} == {
        k: v for k, v in before.items() if not k.endswith(".wal")
    }
