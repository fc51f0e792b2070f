"""Compaction: what `meterql warehouse compact` costs, and what it buys the queries.

    python -m benchmarks.bench_compact [--events 2000000] [--batches 20] [--sparse-events 100000]

Data: the Parquet dump of benchmarks.datagen (seed 42, one month, 10,000 customers) cut into
`--batches` consecutive slices, each ingested as its own batch into an empty home: the events
of a slice span the whole month, so every batch writes a file per date (31 x batches small
files).  Then the same for the many-sparse-keys NDJSON dump of benchmarks.bench_ingest (5 of
2,000 keys per event; each key on about 1 in 400 events, so every key is rare: kept in the
bucket maps, warehouse.rare) in `--batches` slices.

Printed, per dump: the ingest of all batches, the compaction (wall and CPU seconds of this
process, all threads; events/s), files before and after, and a query timed before and after
compacting (median of 5, DuckDB threads=2, a fresh connection each time, so no metadata cache
carries over): the reference query (sum of input_tokens per customer and model, llm_request,
January) for the LLM dump, the count per customer of the events holding one sparse key
(`key_7`, read through the events relation as the compiler reads it) for the sparse dump.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from benchmarks.bench_compare import _sql_list
from benchmarks.bench_ingest import Timer, sparse_dump
from benchmarks.bench_invoice import BARE_SCAN, JANUARY
from benchmarks.datagen import environment, generate
from warehouse.compact import compact
from warehouse.events import EventStore, events_relation
from warehouse.home import Home
from warehouse.ingest import ingest
from warehouse.layout import property_column

SPARSE_KEY = "key_7"


def split_parquet(source: Path, batches: int, directory: Path) -> list[Path]:
    table = pq.read_table(source)
    size = -(-len(table) // batches)
    out = []
    for i in range(batches):
        path = directory / f"batch-{i:03d}.parquet"
        pq.write_table(table.slice(i * size, size), path)
        out.append(path)
    return out


def split_lines(source: Path, batches: int, directory: Path) -> list[Path]:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    size = -(-len(lines) // batches)
    out = []
    for i in range(batches):
        path = directory / f"batch-{i:03d}.ndjson"
        path.write_text("".join(lines[i * size : (i + 1) * size]), encoding="utf-8")
        out.append(path)
    return out


def reference_query(home: Home, con: duckdb.DuckDBPyConnection) -> str:
    files = EventStore(home, con).files(None, None)
    return BARE_SCAN.format(files=_sql_list([f.path for f in files]), january=JANUARY)


def sparse_query(home: Home, con: duckdb.DuckDBPyConnection) -> str:
    files = EventStore(home, con).files(None, None)
    events = events_relation(files, [SPARSE_KEY], None, None, resolve_customers=False)
    column = property_column(SPARSE_KEY)
    return (
        f"SELECT customer_id, count(*) AS value FROM ({events.sql('duckdb')}) "  # noqa: S608
        f'WHERE "{column}" IS NOT NULL GROUP BY ALL'
    )


def timed_query(home: Home, build: Callable[[Home, duckdb.DuckDBPyConnection], str]) -> float:
    con = home.connect()
    try:
        sql = build(home, con)
    finally:
        con.close()
    times = []
    for _ in range(6):
        fresh = duckdb.connect()
        fresh.execute("SET threads = 2")
        started = time.perf_counter()
        fresh.execute(f"CREATE TEMP TABLE rows AS {sql}")
        times.append(time.perf_counter() - started)
        fresh.close()
    return statistics.median(times[1:])


def layout(home: Home) -> str:
    con = home.connect()
    try:
        [(files, columns, rare)] = con.execute(
            "SELECT count(*), avg(len(property_columns)), "
            "avg(len(coalesce(rare_properties, []))) FROM event_files"
        ).fetchall()
    finally:
        con.close()
    return f"{files} files, {columns:.0f} property columns and {rare:.0f} keys in maps per file"


def case(
    name: str,
    batches: list[Path],
    events: int,
    now: datetime,
    query: Callable[[Home, duckdb.DuckDBPyConnection], str],
    scratch: Path,
) -> list[str]:
    home = Home(scratch / f"home-{name}")
    home.init()
    with Timer() as ingesting:
        for path in batches:
            ingest(home, [path], now=now)
    before, query_before = layout(home), timed_query(home, query)
    with Timer() as compacting:
        summary = compact(home)
    after, query_after = layout(home), timed_query(home, query)
    assert summary.rows == events, summary
    return [
        f"| {name}: ingest in {len(batches)} batches | {events:,} | {ingesting.wall:.2f} | "
        f"{ingesting.cpu:.2f} | {events / ingesting.wall:,.0f} | {before} |",
        f"| {name}: compact | {events:,} | {compacting.wall:.2f} | {compacting.cpu:.2f} | "
        f"{events / compacting.wall:,.0f} | {after} |",
        f"| {name}: query before -> after compaction | | {query_before:.3f} -> "
        f"{query_after:.3f} | | | {query_before / query_after:.2f}x faster after |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="LLM dump size")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--sparse-events", type=int, default=100_000)
    args = parser.parse_args(argv)
    data = generate(args.events, formats=("parquet",))
    assert data.parquet is not None
    lines = []
    with tempfile.TemporaryDirectory(prefix="meterql-bench-compact-") as tmp:
        scratch = Path(tmp)
        llm = split_parquet(data.parquet, args.batches, scratch)
        lines += case("llm", llm, args.events, data.now, reference_query, scratch)
        if args.sparse_events:
            dump = sparse_dump(args.sparse_events, scratch / "sparse.ndjson")
            sparse = split_lines(dump, args.batches, scratch)
            lines += case(
                "sparse keys", sparse, args.sparse_events, data.now, sparse_query, scratch
            )
    print(f"compaction benchmark ({environment()})")
    print("| case | events | seconds | CPU s | events/s | files |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
