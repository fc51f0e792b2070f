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


def run(n_events: int, n_ndjson: int, reingest: bool = True) -> list[dict]:
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
    parser.add_argument("--no-reingest", action="store_true", help="skip the all-duplicates run")
    args = parser.parse_args(argv)
    n_ndjson = args.ndjson_events or max(1, args.events // 5)
    report(run(args.events, n_ndjson, reingest=not args.no_reingest))


if __name__ == "__main__":
    main()
