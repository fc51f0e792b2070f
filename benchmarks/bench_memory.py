"""Peak memory of an invoice run: peak RSS of a fresh process running `invoice run`.

    python -m benchmarks.bench_memory [--events 10000000,30000000] [--customers 10000]
                                      [--memory-limit default,2GB] [--threads default]

For each event count: the invoice benchmark's cached home (benchmarks.bench_invoice: datagen
seed 42, 10,000 customers, 6 metrics, one month; generated and ingested once under
benchmarks/data/), a fresh copy of its catalog, and ONE `invoice run --as-of
2026-02-02T01:00:00Z` in a new Python process, which reports its own peak resident set size
(`getrusage(RUSAGE_SELF).ru_maxrss`: Python, DuckDB's buffer pool and everything else) and the
DuckDB settings it ran with.  `--memory-limit` and `--threads` set METERQL_MEMORY_LIMIT and
METERQL_THREADS for the run ("default" leaves them unset: meterql's defaults, see
warehouse.home).  Target (PERFORMANCE.md): <= 4 GiB at 100M events.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_invoice import AS_OF, _link_home, prepared_home
from benchmarks.datagen import environment

# Runs in the child process: one invoice run on the prepared copy, then its own numbers.
CHILD = """
import json, resource, sys, time
from engine.api import Meterql
mq = Meterql.open(sys.argv[1])
started = time.perf_counter()
summary = mq.invoice_run(sys.argv[2])
seconds = time.perf_counter() - started
[(threads, limit, temp)] = mq.con.execute(
    "SELECT current_setting('threads'), current_setting('memory_limit'), "
    "current_setting('temp_directory')"
).fetchall()
[(lines,)] = mq.con.execute("SELECT count(*) FROM invoice_line_items").fetchall()
mq.close()
print(json.dumps({
    "seconds": seconds,
    "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "threads": threads, "memory_limit": limit, "temp_directory": temp,
    "invoices": summary.invoices.created, "line_items": lines,
    "stages": summary.stage_seconds,
}))
"""


def measure(n_events: int, n_customers: int, memory_limit: str, threads: str) -> dict[str, Any]:
    prepared = prepared_home(n_events, n_customers, 42)
    env = dict(os.environ)
    for name, value in (("METERQL_MEMORY_LIMIT", memory_limit), ("METERQL_THREADS", threads)):
        env.pop(name, None)
        if value != "default":
            env[name] = value
    with tempfile.TemporaryDirectory(prefix="meterql-bench-memory-") as tmp:
        work = Path(tmp) / "home"
        work.mkdir()
        _link_home(prepared, work)
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(work), AS_OF],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"invoice run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(events=n_events, customers=n_customers, requested_limit=memory_limit)
    return result


def table(results: list[dict[str, Any]]) -> str:
    out = [
        f"invoice run peak memory ({environment()})",
        "",
        "| events | METERQL_MEMORY_LIMIT | DuckDB memory_limit | threads | run (s) | line items "
        "| peak RSS (GiB) |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        out.append(
            f"| {r['events']:,} | {r['requested_limit']} | {r['memory_limit']} | {r['threads']} "
            f"| {r['seconds']:.2f} | {r['line_items']:,} | {r['peak_rss_kib'] / 2**20:.2f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="10000000", help="comma-separated event counts")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--memory-limit", default="default", help="comma-separated, or default")
    parser.add_argument("--threads", default="default")
    args = parser.parse_args(argv)
    results = []
    for n in [int(x) for x in str(args.events).split(",")]:
        for limit in args.memory_limit.split(","):
            results.append(measure(n, args.customers, limit, args.threads))
            print(
                f"  {n:,} events, limit {limit}: {results[-1]['peak_rss_kib'] / 2**20:.2f} GiB",
                flush=True,
            )
    print(table(results))
    return results


if __name__ == "__main__":
    main()
