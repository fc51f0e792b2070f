"""Real commands in real processes, stopped by real signals, and what their home looks like after.

    start = build_start(...)                 a home to copy for every trial
    Command(args).run(home)                  the meterql CLI to completion (a CompletedProcess)
    Command(args).stop(home, at, signal)     started, and sent `signal` at a KillPoint
    check_home(home)                         the catalog agrees with the files on disk
    content(home)                            what a re-run must reproduce exactly

A KillPoint is a delay after the start, or after the moment a new file under the home matches a
glob (a staged file written, a file renamed into events/, the catalog's WAL written by a
commit), polled every millisecond, then a delay after it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
# Wall-clock bookkeeping: new at every run by design, never part of what a re-run reproduces.
WALL_CLOCK = {"created_at", "updated_at", "finalized_at", "voided_at", "applied_at"}


def cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli", "--home", str(home), *args]


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def meterql(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(home, *args), cwd=ROOT, env=environment(**env), capture_output=True, text=True
    )


def ok(home: Path, *args: str) -> str:
    done = meterql(home, *args)
    assert done.returncode == 0, (args, done.returncode, done.stderr[-3000:])
    return done.stdout


@dataclass(frozen=True)
class KillPoint:
    delay: float  # seconds after the start, or after `after` matched
    after: str | None = None  # a glob under the home: its first new match starts the delay

    def __str__(self) -> str:
        return f"{self.delay:.3f}s" + (f" after {self.after}" if self.after else "")


@dataclass(frozen=True)
class Stopped:
    point: KillPoint
    returncode: int
    stderr: str
    reached: bool  # the process was still running when the signal was sent


@dataclass(frozen=True)
class Command:
    args: tuple[str, ...]

    def run(self, home: Path) -> float:
        """Run to completion (exit 0); returns its wall time in seconds."""
        started = time.monotonic()
        ok(home, *self.args)
        return time.monotonic() - started

    def stop(self, home: Path, point: KillPoint, sig: signal.Signals) -> Stopped:
        before = set(home.glob(point.after)) if point.after is not None else set()
        process = subprocess.Popen(
            cli(home, *self.args),
            cwd=ROOT,
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if point.after is not None:
                while process.poll() is None and set(home.glob(point.after)) <= before:
                    time.sleep(0.001)
            deadline = time.monotonic() + point.delay
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            reached = process.poll() is None
            if reached:
                process.send_signal(sig)
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return Stopped(point, process.returncode, stderr, reached)


def copy_home(start: Path, to: Path) -> Path:
    shutil.copytree(start, to, symlinks=True)
    return to


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list:
    return con.execute(sql, params or []).fetchall()


def check_home(home: Path, *, swept: bool, opens: bool = True) -> None:
    """The catalog agrees with the files on disk: every listed file exists and holds the rows,
    times and dates its manifest row says; every invoice shows exactly its stored lines; the
    ledger has no batch between states.  `swept`: after a command that sweeps (ingest,
    compact) no file outside the manifest and no staging directory may remain.  `opens`: check
    that the CLI opens the home (content() does too)."""
    if opens:
        ok(home, "invoice", "list", "--format", "json")
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        listed = _rows(
            con,
            "SELECT path, event_date, row_count, min_timestamp, max_timestamp FROM event_files "
            "ORDER BY path",
        )
        retired = {p for (p,) in _rows(con, "SELECT path FROM retired_event_files")}
        for path, *_ in listed:
            assert (home / "events" / path).is_file(), f"listed file {path} is not on disk"
        if listed:
            found = _rows(
                con,
                "SELECT parse_path(filename)[-2:], count(*), min(timestamp), max(timestamp), "
                "list(DISTINCT CAST(timestamp AS DATE)) FROM read_parquet(?, filename = true, "
                "union_by_name = true, hive_partitioning = false) GROUP BY ALL",
                [[str(home / "events" / p) for p, *_ in listed]],
            )
            stored = {"/".join(p): (n, lo, hi, dates) for p, n, lo, hi, dates in found}
            for path, event_date, rows, lo, hi in listed:
                assert stored[path] == (rows, lo, hi, [event_date]), path
        on_disk = {
            str(p.relative_to(home / "events")) for p in (home / "events").rglob("*.parquet")
        }
        unlisted = on_disk - {p for p, *_ in listed} - retired
        if swept:
            assert not unlisted, f"files outside the manifest: {sorted(unlisted)[:5]}"
            leftovers = [p.name for p in (home / "staging").iterdir() if p.name != "duckdb-tmp"]
            assert not leftovers, f"staging directories left: {leftovers}"
            assert not _rows(con, "SELECT * FROM ingest_batches WHERE status = 'staged'")
            committed = {
                b
                for (b,) in _rows(
                    con, "SELECT batch_id FROM ingest_batches WHERE status = 'committed'"
                )
            }
            for rejects in (home / "rejects").iterdir():
                assert rejects.stem in committed, f"rejects of an uncommitted batch: {rejects}"
        half_written = _rows(
            con,
            """
            SELECT i.id, i.revision, i.line_count, count(l.invoice_id),
                   i.subtotal, coalesce(sum(l.total), 0)
            FROM invoices i
            LEFT JOIN invoice_line_items l ON l.invoice_id = i.id AND l.revision = i.revision
            GROUP BY ALL
            HAVING i.line_count <> count(l.invoice_id) OR i.subtotal <> coalesce(sum(l.total), 0)
            """,
        )
        assert not half_written, f"invoices whose lines do not add up: {half_written[:3]}"
        revisions = _rows(
            con,
            """
            SELECT r.invoice_id, r.revision FROM (
                SELECT invoice_id, revision FROM invoice_line_items
                UNION SELECT invoice_id, revision FROM invoice_products) r
            LEFT JOIN invoices i ON i.id = r.invoice_id
            WHERE i.id IS NULL OR r.revision > i.revision
            """,
        )
        assert not revisions, f"line items of no invoice or of a future revision: {revisions[:3]}"
    finally:
        con.close()


def content(home: Path, usage: tuple[str, ...]) -> dict[str, Any]:
    """What an interrupted command and its re-run must leave exactly as one uninterrupted run
    does: the invoices (JSON), the usage (JSON), every stored event, the catalog objects and
    invoice tables (without wall-clock bookkeeping), the manifest's figures and the events the
    ledger counts as accepted.  Ids of ingest batches and compactions are new at every run by
    design, so the events' batch_id and the manifest's paths are left out."""
    out: dict[str, Any] = {
        "invoices": json.loads(ok(home, "invoice", "list", "--format", "json")),
        "usage": json.loads(ok(home, "usage", *usage, "--format", "json")),
    }
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        for table in (
            "billable_metrics",
            "products",
            "rate_cards",
            "customers",
            "customer_keys",
            "contracts",
            "credit_types",
            "invoices",
            "invoice_line_items",
            "invoice_products",
        ):
            columns = [c for (c, *_) in _rows(con, f"DESCRIBE {table}") if c not in WALL_CLOCK]
            select = ", ".join(f'"{c}"' for c in columns)
            out[table] = _rows(con, f"SELECT {select} FROM {table} ORDER BY ALL")  # noqa: S608
        out["manifest"] = _rows(
            con,
            "SELECT event_date, row_count, min_timestamp, max_timestamp, property_columns, "
            "event_types FROM event_files ORDER BY ALL",
        )
        out["accepted"] = _rows(
            con, "SELECT sum(accepted) FROM ingest_batches WHERE status = 'committed'"
        )
        paths = [str(home / "events" / p) for (p,) in _rows(con, "SELECT path FROM event_files")]
    finally:
        con.close()
    if paths:
        work = duckdb.connect()
        out["events"] = _rows(
            work,
            "SELECT count(*), sum(hash(e)::HUGEINT), sum(hash(e.transaction_id)::HUGEINT) "
            "FROM (SELECT * EXCLUDE (batch_id) FROM read_parquet(?, union_by_name = true, "
            "hive_partitioning = false)) e",
            [paths],
        )
        work.close()
    return out
