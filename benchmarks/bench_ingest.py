"""Ingest throughput, and the cost of validation + dedup relative to a plain DuckDB COPY.

    python -m benchmarks.bench_ingest [--events 10000000] [--ndjson-events N] [--no-reingest]

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

Ratios are ingest seconds / copy seconds.  Targets (PERFORMANCE.md): Parquet >= 2M events/s,
NDJSON >= 500k events/s.  Phase times come from the ingest summary.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from benchmarks.datagen import environment, generate
from warehouse.home import Home
from warehouse.ingest import ingest
from warehouse.ingest.sqltext import lit


def plain_copy(source: Path, fmt: str, target: Path) -> float:
    reader = "read_parquet" if fmt == "parquet" else "read_json"
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    started = time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM {reader}({lit(str(source))})) TO {lit(str(target))} "  # noqa: S608
        "(FORMAT parquet)"
    )
    elapsed = time.perf_counter() - started
    con.close()
    target.unlink()
    return elapsed


SPARSE_KEYS = 2_000


def sparse_dump(n_events: int, target: Path) -> Path:
    """NDJSON events with 5 of SPARSE_KEYS property keys each (seeded arithmetic, no Python
    loop), one month, 100 customers."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    quote = "'\"'"  # the SQL literal '"'
    props = ", ".join(
        f"{quote} || 'key_' || ((i * 7919) % {SPARSE_KEYS // 5} + {j * SPARSE_KEYS // 5}) "
        f"|| {quote} || ':' || {quote} || (i % 997) || {quote}"
        for j in range(5)
    )
    con.execute(
        f"""
        COPY (
            SELECT '{{"transaction_id":"s' || i || '","customer_id":"c' || (i % 100)
                || '","event_type":"e","timestamp":"2026-01-'
                || lpad((1 + i % 31)::VARCHAR, 2, '0') || 'T00:00:00Z","properties":{{'
                || concat_ws(',', {props}) || '}}}}' AS line
            FROM range({int(n_events)}) r(i)
        ) TO {lit(str(target))} (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
        """  # noqa: S608 - integers and our own scratch path
    )
    con.close()
    return target


def run(n_events: int, n_ndjson: int, n_sparse: int = 0, reingest: bool = True) -> list[dict]:
    parquet = generate(n_events, formats=("parquet",))
    ndjson = generate(n_ndjson, formats=("ndjson",))
    rows = []
    with tempfile.TemporaryDirectory(prefix="meterql-bench-ingest-") as tmp:
        scratch = Path(tmp)
        for fmt, data in (("parquet", parquet), ("ndjson", ndjson)):
            source = data.parquet if fmt == "parquet" else data.ndjson
            assert source is not None
            copy_s = plain_copy(source, fmt, scratch / "copy.parquet")
            rows.append(
                {
                    "case": f"{fmt}: plain DuckDB COPY",
                    "events": data.n_events,
                    "seconds": copy_s,
                    "ratio": 1.0,
                    "phases": {},
                }
            )
            home = Home(scratch / f"home-{fmt}")
            home.init()
            started = time.perf_counter()
            summary = ingest(home, [source], now=data.now)
            seconds = time.perf_counter() - started
            assert summary.accepted == data.n_events, summary
            rows.append(
                {
                    "case": f"{fmt}: meterql ingest",
                    "events": data.n_events,
                    "seconds": seconds,
                    "ratio": seconds / copy_s,
                    "phases": summary.phases,
                }
            )
            if reingest and fmt == "parquet":
                started = time.perf_counter()
                again = ingest(home, [source], now=data.now)
                seconds = time.perf_counter() - started
                assert again.duplicates == data.n_events, again
                rows.append(
                    {
                        "case": f"{fmt}: ingest again (all duplicates)",
                        "events": data.n_events,
                        "seconds": seconds,
                        "ratio": seconds / copy_s,
                        "phases": again.phases,
                    }
                )
            shutil.rmtree(home.path)
        if n_sparse:
            source = sparse_dump(n_sparse, scratch / "sparse.ndjson")
            copy_s = plain_copy(source, "ndjson", scratch / "copy.parquet")
            rows.append(
                {
                    "case": "sparse keys: plain DuckDB COPY",
                    "events": n_sparse,
                    "seconds": copy_s,
                    "ratio": 1.0,
                    "phases": {},
                }
            )
            home = Home(scratch / "home-sparse")
            home.init()
            started = time.perf_counter()
            summary = ingest(home, [source], now=generate(1).now)
            seconds = time.perf_counter() - started
            assert summary.accepted == n_sparse, summary
            con = home.connect()
            (width,) = con.execute("SELECT avg(len(property_columns)) FROM event_files").fetchall()[
                0
            ]
            con.close()
            rows.append(
                {
                    "case": f"sparse keys: ingest ({width:.0f} columns/file)",
                    "events": n_sparse,
                    "seconds": seconds,
                    "ratio": seconds / copy_s,
                    "phases": summary.phases,
                }
            )
    return rows


def report(rows: list[dict]) -> None:
    print(f"ingest benchmark ({environment()})")
    print(f"| {'case':<40} | {'events':>11} | {'seconds':>8} | {'events/s':>11} | {'vs COPY':>7} |")
    print(f"|{'-' * 42}|{'-' * 13}|{'-' * 10}|{'-' * 13}|{'-' * 9}|")
    for r in rows:
        rate = r["events"] / r["seconds"]
        print(
            f"| {r['case']:<40} | {r['events']:>11,} | {r['seconds']:>8.2f} | {rate:>11,.0f} | "
            f"{r['ratio']:>6.2f}x |"
        )
    for r in rows:
        if r["phases"]:
            phases = ", ".join(f"{k} {v:.2f}s" for k, v in r["phases"].items() if v >= 0.01)
            print(f"  {r['case']}: {phases}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="Parquet dump size")
    parser.add_argument("--ndjson-events", type=int, help="NDJSON dump size (default events/5)")
    parser.add_argument("--sparse-events", type=int, help="sparse dump size (default events/100)")
    parser.add_argument("--no-reingest", action="store_true", help="skip the all-duplicates run")
    args = parser.parse_args(argv)
    n_ndjson = args.ndjson_events or max(1, args.events // 5)
    n_sparse = args.sparse_events if args.sparse_events is not None else args.events // 100
    report(run(args.events, n_ndjson, n_sparse, reingest=not args.no_reingest))


if __name__ == "__main__":
    main()
