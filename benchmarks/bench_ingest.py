"""Ingest throughput, and the cost of validation + dedup relative to a plain DuckDB COPY.

    python -m benchmarks.bench_ingest [--events 10000000] [--ndjson-events N] [--no-reingest]
                                      [--sparse-events N] [--rejected-events N]
                                      [--memory-events 100000000]

Data: benchmarks.datagen (seeded LLM-like events, one month, 10,000 customers): a Parquet dump of
`--events` events (extra-columns layout) and an NDJSON dump of `--ndjson-events` (default
events / 5) events.  For each dump, in the same run:

    copy      plain DuckDB `COPY (SELECT * FROM read_parquet|read_json(dump)) TO x.parquet`
              (no checks, no dedup, no sort, no partitions): the floor to compare with
    ingest    `warehouse.ingest.ingest` into an empty home: every rule checked, deduplicated,
              sorted by (date, event_type, customer_id, timestamp), one file per date, committed
    reingest  the same dump again into that home (Parquet only): every event is a duplicate,
              found by an anti-join against the stored transaction ids

    sparse    an NDJSON dump whose events carry 5 of 2,000 property keys each (`--sparse-events`,
              default events / 100): the many-keys write path; the table shows the property
              columns per written file (each file holds only the keys present in its rows)
    rejected  a Parquet dump of `--rejected-events` (default events / 10) ingested with a clock
              a year after its events: every event rejected as too old, so the time is reading,
              checking and writing the rejects file (in sorted slices of 1M rejects)

Ratios are ingest seconds / copy seconds, wall and CPU (the process's CPU time over all its
threads).  Targets (PERFORMANCE.md): Parquet >= 2M events/s, NDJSON >= 500k events/s.  Phase
times come from the ingest summary.  Every ingest runs with meterql's default DuckDB settings
(METERQL_* unset: 3 GiB memory limit, all cores) unless the environment sets them.

    memory    `--memory-events N`: ONE ingest of the N-event Parquet dump (or NDJSON dump:
              `--memory-format ndjson`; one file either way) as one batch into an empty home,
              in a fresh Python process that reports its peak resident set size (Linux
              VmHWM), the bytes it wrote to disk (event files and DuckDB's spill) and the
              DuckDB memory limit it ran with (the 100M dump: ~2 minutes, about 7 GB written
              under the system's temp directory; --memory-events 0 skips it)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from benchmarks.datagen import environment, formula_ndjson, generate
from warehouse.home import Home
from warehouse.ingest import ingest
from warehouse.ingest.sqltext import lit


class Timer:
    """Wall and CPU seconds (all threads of this process) of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def plain_copy(source: Path, fmt: str, target: Path) -> Timer:
    reader = "read_parquet" if fmt == "parquet" else "read_json"
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    with Timer() as timer:
        con.execute(
            f"COPY (SELECT * FROM {reader}({lit(str(source))})) TO {lit(str(target))} "  # noqa: S608
            "(FORMAT parquet)"
        )
    con.close()
    target.unlink()
    return timer


def _row(case: str, events: int, timer: Timer, base: Timer, phases: dict) -> dict:
    return {
        "case": case,
        "events": events,
        "seconds": timer.wall,
        "cpu": timer.cpu,
        "ratio": timer.wall / base.wall,
        "cpu_ratio": timer.cpu / base.cpu,
        "phases": phases,
    }


SPARSE_KEYS = 2_000


def sparse_dump(n_events: int, target: Path) -> Path:
    """NDJSON events with 5 of SPARSE_KEYS property keys each (seeded arithmetic, no Python
    loop), one month, 100 customers."""
    quote = "'\"'"  # the SQL literal '"'
    props = ", ".join(
        f"{quote} || 'key_' || ((i * 7919) % {SPARSE_KEYS // 5} + {j * SPARSE_KEYS // 5}) "
        f"|| {quote} || ':' || {quote} || (i % 997) || {quote}"
        for j in range(5)
    )
    return formula_ndjson(
        target,
        n_events,
        tid_prefix="s",
        customers=100,
        event_type_sql="'e'",
        days=31,
        properties_sql=f"concat_ws(',', {props})",
    )


SMALL_FILE_EVENTS = 100


def small_files(source: Path, n_files: int, target: Path, fmt: str) -> tuple[Path, Path]:
    """The first n_files x SMALL_FILE_EVENTS lines of an NDJSON dump as ONE file and as
    n_files files of SMALL_FILE_EVENTS events in a directory (hourly or per-customer dumps), as
    NDJSON or Parquet (the properties as JSON text)."""
    one, many = target / f"one.{fmt}", target / f"many-{fmt}"
    many.mkdir(parents=True)
    lines = target / "lines.ndjson"
    if not lines.exists():
        with source.open("rb") as dump, lines.open("wb") as out:
            for _ in range(n_files * SMALL_FILE_EVENTS):
                out.write(dump.readline())
    if fmt == "ndjson":
        shutil.copyfile(lines, one)
        with lines.open("rb") as dump:
            for i in range(n_files):
                part = b"".join(dump.readline() for _ in range(SMALL_FILE_EVENTS))
                (many / f"part-{i:05d}.ndjson").write_bytes(part)
        return one, many
    columns = "{'transaction_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'event_type': 'VARCHAR', "
    columns += "'timestamp': 'VARCHAR', 'properties': 'JSON'}"
    query = f"SELECT * FROM read_json({lit(str(lines))}, columns = {columns})"  # noqa: S608
    table = duckdb.sql(query).to_arrow_table()
    pq.write_table(table, one)
    for i in range(n_files):
        part = table.slice(i * SMALL_FILE_EVENTS, SMALL_FILE_EVENTS)
        pq.write_table(part, many / f"part-{i:05d}.parquet")
    return one, many


def run(
    n_events: int,
    n_ndjson: int,
    n_sparse: int = 0,
    reingest: bool = True,
    n_rejected: int = 0,
    n_small_files: int = 0,
) -> list[dict]:
    parquet = generate(n_events, formats=("parquet",))
    ndjson = generate(n_ndjson, formats=("ndjson",))
    rows = []
    with tempfile.TemporaryDirectory(prefix="meterql-bench-ingest-") as tmp:
        scratch = Path(tmp)
        for fmt, data in (("parquet", parquet), ("ndjson", ndjson)):
            source = data.parquet if fmt == "parquet" else data.ndjson
            assert source is not None
            copy = plain_copy(source, fmt, scratch / "copy.parquet")
            rows.append(_row(f"{fmt}: plain DuckDB COPY", data.n_events, copy, copy, {}))
            home = Home(scratch / f"home-{fmt}")
            home.init()
            with Timer() as timer:
                summary = ingest(home, [source], now=data.now)
            assert summary.accepted == data.n_events, summary
            rows.append(_row(f"{fmt}: meterql ingest", data.n_events, timer, copy, summary.phases))
            if reingest and fmt == "parquet":
                with Timer() as timer:
                    again = ingest(home, [source], now=data.now)
                assert again.duplicates == data.n_events, again
                case = f"{fmt}: ingest again (all duplicates)"
                rows.append(_row(case, data.n_events, timer, copy, again.phases))
            shutil.rmtree(home.path)
        if n_rejected:
            # every event rejected (the dump sent with a clock a year later: all too old): what
            # writing the rejects file costs (in sorted slices, warehouse.ingest.rejects)
            data = generate(n_rejected, formats=("parquet",))
            assert data.parquet is not None
            copy = plain_copy(data.parquet, "parquet", scratch / "copy.parquet")
            rows.append(_row("all rejected: plain DuckDB COPY", n_rejected, copy, copy, {}))
            home = Home(scratch / "home-rejected")
            home.init()
            with Timer() as timer:
                summary = ingest(home, [data.parquet], now=data.now + timedelta(days=365))
            assert summary.rejected == n_rejected, summary
            case = "all rejected: ingest (rejects file)"
            rows.append(_row(case, n_rejected, timer, copy, summary.phases))
            shutil.rmtree(home.path)
        for fmt in ("ndjson", "parquet") if n_small_files else ():
            assert ndjson.ndjson is not None
            one, many = small_files(ndjson.ndjson, n_small_files, scratch / "small", fmt)
            n = n_small_files * SMALL_FILE_EVENTS
            timers = {}
            for name, source in (("one", one), ("many", many)):
                home = Home(scratch / f"home-small-{name}")
                home.init()
                with Timer() as timers[name]:
                    summary = ingest(home, [source], now=ndjson.now)
                assert summary.accepted == n, summary
                shutil.rmtree(home.path)
            case = f"small {fmt}: the events as ONE file"
            rows.append(_row(case, n, timers["one"], timers["one"], {}))
            case = f"small {fmt}: {n_small_files:,} files (vs ONE)"
            rows.append(_row(case, n, timers["many"], timers["one"], summary.phases))
        if n_sparse:
            source = sparse_dump(n_sparse, scratch / "sparse.ndjson")
            copy = plain_copy(source, "ndjson", scratch / "copy.parquet")
            rows.append(_row("sparse keys: plain DuckDB COPY", n_sparse, copy, copy, {}))
            home = Home(scratch / "home-sparse")
            home.init()
            with Timer() as timer:
                summary = ingest(home, [source], now=generate(1).now)
            assert summary.accepted == n_sparse, summary
            con = home.connect()
            [(width, rare)] = con.execute(
                "SELECT avg(len(property_columns)), avg(len(coalesce(rare_properties, []))) "
                "FROM event_files"
            ).fetchall()
            con.close()
            case = f"sparse keys: ingest ({width:.0f} cols, {rare:.0f} in maps)"
            rows.append(_row(case, n_sparse, timer, copy, summary.phases))
    return rows


def report(rows: list[dict]) -> None:
    print(f"ingest benchmark ({environment()})")
    print(
        f"| {'case':<40} | {'events':>11} | {'seconds':>8} | {'CPU s':>7} | {'events/s':>11} "
        f"| {'vs COPY':>7} | {'CPU vs COPY':>11} |"
    )
    print(f"|{'-' * 42}|{'-' * 13}|{'-' * 10}|{'-' * 9}|{'-' * 13}|{'-' * 9}|{'-' * 13}|")
    for r in rows:
        rate = r["events"] / r["seconds"]
        print(
            f"| {r['case']:<40} | {r['events']:>11,} | {r['seconds']:>8.2f} | {r['cpu']:>7.2f} "
            f"| {rate:>11,.0f} | {r['ratio']:>6.2f}x | {r['cpu_ratio']:>10.2f}x |"
        )
    for r in rows:
        if r["phases"]:
            phases = ", ".join(f"{k} {v:.2f}s" for k, v in r["phases"].items() if v >= 0.01)
            print(f"  {r['case']}: {phases}")


# Runs in the child process: one ingest into a new home, then its own numbers.
CHILD = """
import json, resource, sys, time
from datetime import datetime
from pathlib import Path
from warehouse.home import Home
from warehouse.ingest import ingest
home = Home(Path(sys.argv[1]))
home.init()
wall, cpu = time.perf_counter(), time.process_time()
summary = ingest(home, [sys.argv[2]], now=datetime.fromisoformat(sys.argv[3]))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) / 2**20
written = 0  # bytes this process wrote to storage: the stored files plus DuckDB's spill
for line in Path("/proc/self/io").read_text().splitlines():
    if line.startswith("write_bytes:"):
        written = int(line.split()[1])
con = home.connect()
[(limit, threads)] = con.execute(
    "SELECT current_setting('memory_limit'), current_setting('threads')"
).fetchall()
con.close()
print(json.dumps({"seconds": wall, "cpu": cpu, "peak_rss_gib": peak, "accepted": summary.accepted,
                  "files": summary.files_written, "phases": summary.phases,
                  "memory_limit": limit, "threads": threads, "written_gib": written / 2**30}))
"""


def measure_memory(n_events: int, fmt: str = "parquet") -> dict[str, Any]:
    """Peak RSS of one ingest of the n-event dump (`fmt`: parquet or ndjson), in a fresh
    process."""
    data = generate(n_events, formats=(fmt,))
    dump = data.parquet if fmt == "parquet" else data.ndjson
    with tempfile.TemporaryDirectory(prefix="meterql-bench-ingest-memory-") as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(Path(tmp) / "home"),
                str(dump),
                data.now.isoformat(),
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"ingest failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["events"], result["format"] = n_events, fmt
    return result


_KIND = {"parquet": "Parquet", "ndjson": "NDJSON"}


def report_memory(r: dict[str, Any]) -> None:
    print(
        f"one ingest of {r['events']:,} {_KIND[r['format']]} events in a fresh process "
        f"({environment()}): "
        f"{r['seconds']:.1f} s wall, {r['cpu']:.1f} s CPU, {r['events'] / r['seconds']:,.0f} "
        f"events/s, {r['files']} files, peak RSS {r['peak_rss_gib']:.2f} GiB, "
        f"{r['written_gib']:.1f} GiB written to disk (files and spill) "
        f"(DuckDB memory_limit {r['memory_limit']}, threads {r['threads']})"
    )
    print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in r["phases"].items() if v >= 0.05))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="Parquet dump size")
    parser.add_argument("--ndjson-events", type=int, help="NDJSON dump size (default events/5)")
    parser.add_argument("--sparse-events", type=int, help="sparse dump size (default events/100)")
    parser.add_argument("--no-reingest", action="store_true", help="skip the all-duplicates run")
    parser.add_argument(
        "--rejected-events", type=int, help="all-rejected Parquet dump size (default events/10)"
    )
    parser.add_argument(
        "--memory-events",
        type=int,
        default=0,
        help="also measure the peak RSS of one ingest of a Parquet dump this large (e.g. 1e8)",
    )
    parser.add_argument(
        "--memory-format",
        choices=sorted(_KIND),
        default="parquet",
        help="the dump format of --memory-events (one file either way)",
    )
    parser.add_argument(
        "--small-files",
        type=int,
        default=0,
        help=f"also ingest N NDJSON files of {SMALL_FILE_EVENTS} events each, against the same "
        "events as one file (from the NDJSON dump; needs N x 100 <= --ndjson-events)",
    )
    args = parser.parse_args(argv)
    n_ndjson = args.ndjson_events or max(1, args.events // 5)
    n_sparse = args.sparse_events if args.sparse_events is not None else args.events // 100
    n_rejected = args.rejected_events if args.rejected_events is not None else args.events // 10
    report(
        run(
            args.events,
            n_ndjson,
            n_sparse,
            reingest=not args.no_reingest,
            n_rejected=n_rejected,
            n_small_files=args.small_files,
        )
    )
    if args.memory_events:
        report_memory(measure_memory(args.memory_events, args.memory_format))


if __name__ == "__main__":
    main()
