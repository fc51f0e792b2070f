"""meterql vs other engines: one table, the same stored events and the same query, one run.

    python -m benchmarks.bench_compare [--events 10000000] [--customers 10000] [--repeat 3]
                                       [--sample 20] [--no-ingest]
    python -m benchmarks.bench_compare --scale [--scale-events 10000000,30000000]
                                       [--scale-customers 1000,10000]

Data: benchmarks.datagen (seeded, cached): `--events` events of `--customers` customers, one
month, ingested once into a cached home, with the invoice benchmark's catalog applied
(benchmarks.bench_invoice.prepared_home: 6 metrics, one monthly contract per customer).

The query (PERFORMANCE.md's reference): the sum of `input_tokens` as DECIMAL per customer and
model over January, `llm_request` events only.  Rows of the table, each measured in its own
subprocess (so each has its own peak RSS; best of --repeat after one warm-up run):

    meterql usage         Meterql.usage of the "Input Tokens" metric grouped by model: the
                          compiled query through the engine (customer aliases resolved,
                          decimal checks, property filters)
    meterql invoice run   Meterql.invoice_run over all customers, rating and invoices written
                          (a fresh copy of the catalog each time): the light catalog (3
                          metrics over the reference query's events, one grouping: what
                          PERFORMANCE.md's "run / bare scan <= 2.0" is about) and the full
                          one (6 metrics, 4 event types, 3 groupings, a distinct count)
    6 metrics by hand     bench_invoice's hand-written usage of the 6 metrics (what the invoice
                          run computes before rating; context for the invoice run's ratio)
    DuckDB SQL            the same query hand-written over the same files (the baseline: 1.00)
    Polars lazy scan      pl.scan_parquet over the same files (extra `bench`; skipped if absent)
    ClickHouse (chdb)     ClickHouse's engine over the same files (extra `bench`; skipped if absent)
    light catalog's 3 aggregates, by hand in DuckDB SQL, Polars and chdb: what the light
                          invoice run computes before windows and rating (sums of input and
                          output tokens, a count, per customer and model): "invoice run vs
                          Polars / ClickHouse doing the same aggregation" (PERFORMANCE.md)
    per-customer loop     the hand-written query once per customer (as per-customer billing
                          loops do), timed for --sample customers and extrapolated to all
    ingest Parquet/NDJSON benchmarks.bench_ingest.run: events/s of `meterql ingest` (NDJSON:
                          events / 5 events), compared with a plain DuckDB COPY

Ratios are seconds / DuckDB SQL seconds, all from this one run; every query side also reports
its result (groups and the sum of all values) so the table shows they computed the same thing.

`--scale` runs only the invoice run and the hand-written SQL over a grid of sizes and prints
seconds per 1M events: linear in events means a flat column down a customer count, sub-linear
in customers means it grows less than the customer count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.bench_invoice import (
    AS_OF,
    BARE_SCAN,
    CATALOGS,
    HAND_WRITTEN,
    JANUARY,
    LIGHT_ONE_SCAN,
    _link_home,
    prepared_home,
)

START, END = "2026-01-01", "2026-02-01"
DUCKDB_SIDE = "duckdb"
SIDES: dict[str, str] = {  # side -> table label
    "usage": "meterql usage (compiled query)",
    "invoice_light": "meterql invoice run, light catalog (3 metrics over the same events)",
    "invoice": "meterql invoice run, full catalog (6 metrics, 4 event types, 3 groupings)",
    "fused": "hand-written DuckDB SQL of the 6 metrics' usage (2 queries, no rating)",
    DUCKDB_SIDE: "hand-written DuckDB SQL",
    "polars": "Polars lazy scan",
    "chdb": "ClickHouse engine (chdb)",
    "duckdb_light": "hand-written DuckDB SQL of the light catalog's 3 aggregates (no rating)",
    "polars_light": "Polars lazy scan of the light catalog's 3 aggregates (no rating)",
    "chdb_light": "ClickHouse engine (chdb) of the light catalog's 3 aggregates (no rating)",
    "loop": "per-customer query loop",
}
LIGHT_SIDES = ("duckdb_light", "polars_light", "chdb_light")  # checked against each other
THREADS = 2  # Polars and chdb get as many threads as DuckDB uses here (all cores)


# ---------------------------------------------------------------------------------------------
# Sides (each runs in a child process: `--side NAME`)


def _files(home: Path) -> list[str]:
    con = duckdb.connect(str(home / "catalog.duckdb"), read_only=True)
    try:
        return [
            str(home / "events" / p)
            for (p,) in con.execute("SELECT path FROM event_files ORDER BY path").fetchall()
        ]
    finally:
        con.close()


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _result(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Groups and the exact sum of the last column (to check that sides agree)."""
    total = sum((Decimal(str(r[-1])) for r in rows if r[-1] is not None), Decimal(0))
    return {"groups": len(rows), "sum": format(total.normalize(), "f")}


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm-up: OS cache, imports, first-use costs
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def side_duckdb(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    query = BARE_SCAN.format(files=_sql_list(_files(prepared)), january=JANUARY)
    con = duckdb.connect()
    seconds, rows = _timed(lambda: con.execute(query).fetchall(), args.repeat)
    return {"seconds": seconds, **_result(rows)}


def side_fused(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    """What the invoice run computes, as a person would write it (bench_invoice's queries)."""
    files = _sql_list(_files(prepared))
    queries = [q.format(files=files, january=JANUARY) for q in HAND_WRITTEN]
    con = duckdb.connect()
    seconds, _ = _timed(lambda: [con.execute(q).fetchall() for q in queries], args.repeat)
    return {"seconds": seconds, "groups": None, "sum": None}


def side_loop(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The hand-written query for one customer at a time (bound parameter), for a sample."""
    query = BARE_SCAN.format(files=_sql_list(_files(prepared)), january=JANUARY).replace(
        "WHERE event_type", "WHERE customer_id = $c AND event_type"
    )
    step = max(1, args.customers // args.sample)
    sample = [f"c{i:05d}" for i in range(0, args.customers, step)][: args.sample]
    con = duckdb.connect()

    def loop() -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for customer in sample:
            out += con.execute(query, {"c": customer}).fetchall()
        return out

    seconds, rows = _timed(loop, 1)
    per_customer = seconds / len(sample)
    return {
        "seconds": per_customer * args.customers,
        "note": f"extrapolated: {per_customer * 1000:.1f} ms x {args.customers:,} customers "
        f"(timed {len(sample)})",
        "groups": None,
        "sum": None,
        "sampled_groups": len(rows),
    }


def _fresh(prepared: Path, work: Path):
    from engine.api import Meterql

    (work / "catalog.duckdb").unlink(missing_ok=True)
    _link_home(prepared, work)
    return Meterql.open(work)


def side_usage(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="meterql-bench-compare-") as tmp:
        work = Path(tmp) / "home"
        work.mkdir()
        mq = _fresh(prepared, work)
        try:
            seconds, table = _timed(
                lambda: mq.usage("Input Tokens", START, END, group_by=["model"]), args.repeat
            )
            rows = [(v,) for v in table.column("value").to_pylist()]
        finally:
            mq.close()
    return {"seconds": seconds, **_result(rows)}


def side_invoice_light(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    light = prepared_home(args.events, args.customers, args.seed, "light")
    return side_invoice(light, args)


def side_invoice(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    times = []
    with tempfile.TemporaryDirectory(prefix="meterql-bench-compare-") as tmp:
        work = Path(tmp) / "home"
        work.mkdir()
        for i in range(args.repeat + 1):  # the first run warms up
            mq = _fresh(prepared, work)
            try:
                started = time.perf_counter()
                summary = mq.invoice_run(AS_OF)
                if i:
                    times.append(time.perf_counter() - started)
                [(lines,)] = mq.con.execute("SELECT count(*) FROM invoice_line_items").fetchall()
            finally:
                mq.close()
    return {
        "seconds": min(times),
        "groups": None,
        "sum": None,
        "note": f"{summary.invoices.created:,} invoices, {lines:,} line items",
    }


def side_duckdb_light(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The light catalog's 3 aggregates hand-written (bench_invoice's LIGHT_ONE_SCAN)."""
    query = LIGHT_ONE_SCAN.format(files=_sql_list(_files(prepared)), january=JANUARY)
    con = duckdb.connect()
    seconds, rows = _timed(lambda: con.execute(query).fetchall(), args.repeat)
    return {"seconds": seconds, **_result(rows)}


def side_polars(prepared: Path, args: argparse.Namespace, *, light: bool = False) -> dict:
    os.environ.setdefault("POLARS_MAX_THREADS", str(THREADS))
    import polars as pl

    files = _files(prepared)
    start, end = pl.datetime(2026, 1, 1), pl.datetime(2026, 2, 1)

    def tokens(name: str) -> Any:
        return pl.col(name).cast(pl.Decimal(38, 12), strict=False).sum()

    aggregates = [tokens("p_input_tokens")]
    if light:  # the light catalog's 3 aggregates; the count last (the checked column)
        aggregates += [tokens("p_output_tokens"), pl.len().alias("requests")]

    def query() -> Any:
        return (
            pl.scan_parquet(files, missing_columns="insert")
            .filter(
                (pl.col("event_type") == "llm_request")
                & (pl.col("timestamp") >= start)
                & (pl.col("timestamp") < end)
            )
            .group_by("customer_id", "p_model")
            .agg(*aggregates)
            .collect()
        )

    seconds, frame = _timed(query, args.repeat)
    rows = [(v,) for v in frame.get_column(frame.columns[-1]).to_list()]
    return {"seconds": seconds, **_result(rows), "version": pl.__version__}


def side_polars_light(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    return side_polars(prepared, args, light=True)


def side_chdb(prepared: Path, args: argparse.Namespace, *, light: bool = False) -> dict:
    import chdb
    from chdb import session

    files = _files(prepared)
    # ClickHouse's file() takes one path pattern: the listed files as a {a,b,...} alternation
    # of their names relative to events/ (no commas or braces in meterql's file names)
    relative = [os.path.relpath(f, prepared / "events") for f in files]
    assert not any(set(r) & set(",{}'") for r in relative), relative
    root = str(Path(os.path.realpath(prepared / "events")))
    pattern = root + "/{" + ",".join(relative) + "}"
    value = "sum(toDecimal128OrNull(p_input_tokens, 12)) AS value"
    if light:  # the light catalog's 3 aggregates; the count last (the checked column)
        value = (
            "sum(toDecimal128OrNull(p_input_tokens, 12)), "
            "sum(toDecimal128OrNull(p_output_tokens, 12)), count() AS value"
        )
    sql = f"""
        SELECT customer_id, p_model, {value}
        FROM file('{pattern}', Parquet)
        WHERE event_type = 'llm_request'
          AND "timestamp" >= toDateTime64('{START} 00:00:00', 6, 'UTC')
          AND "timestamp" < toDateTime64('{END} 00:00:00', 6, 'UTC')
        GROUP BY customer_id, p_model
        SETTINGS max_threads = {THREADS}, schema_inference_mode = 'union',
                 session_timezone = 'UTC'
    """  # noqa: S608 - our own benchmark files
    with tempfile.TemporaryDirectory(prefix="meterql-bench-chdb-") as tmp:
        sess = session.Session(tmp)
        try:
            seconds, result = _timed(lambda: sess.query(sql, "CSV"), args.repeat)
        finally:
            sess.close()
    values = [line.rsplit(",", 1)[-1] for line in result.bytes().decode().splitlines()]
    rows = [(None if v in ("\\N", "") else v,) for v in values]
    return {"seconds": seconds, **_result(rows), "version": chdb.__version__}


def side_chdb_light(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    return side_chdb(prepared, args, light=True)


def side_ingest(prepared: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.bench_ingest import run

    rows = run(args.events, max(1, args.events // 5), 0, reingest=False)
    return {"seconds": None, "ingest": rows}


SIDE_FUNCTIONS: dict[str, Callable[[Path, argparse.Namespace], dict[str, Any]]] = {
    "usage": side_usage,
    "invoice_light": side_invoice_light,
    "invoice": side_invoice,
    "fused": side_fused,
    DUCKDB_SIDE: side_duckdb,
    "polars": side_polars,
    "chdb": side_chdb,
    "duckdb_light": side_duckdb_light,
    "polars_light": side_polars_light,
    "chdb_light": side_chdb_light,
    "loop": side_loop,
    "ingest": side_ingest,
}
# side -> module of the `bench` extra
OPTIONAL = {"polars": "polars", "chdb": "chdb", "polars_light": "polars", "chdb_light": "chdb"}


def peak_rss_mib() -> float:
    """This process's peak resident set size.  Linux's VmHWM, not getrusage's ru_maxrss: the
    latter survives fork + exec, so a child of a parent that once held a lot (generating the
    data) would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_side(side: str, args: argparse.Namespace) -> None:
    """Child process: measure one side, print its result as JSON on the last line."""
    prepared = prepared_home(args.events, args.customers, args.seed)
    out = SIDE_FUNCTIONS[side](prepared, args)
    out["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(out, default=str), flush=True)


def measure(side: str, args: argparse.Namespace, *, events: int, customers: int) -> dict:
    """Run one side in a child process (its own peak RSS); {'skipped': reason} when the
    optional package is not installed."""
    module = OPTIONAL.get(side)
    if module is not None:
        import importlib.util

        if importlib.util.find_spec(module) is None:
            return {"skipped": "not installed (pip install -e '.[bench]')"}
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_compare",
        "--side",
        side,
        "--events",
        str(events),
        "--customers",
        str(customers),
        "--seed",
        str(args.seed),
        "--repeat",
        str(args.repeat),
        "--sample",
        str(args.sample),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"skipped": f"failed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Report


def environment() -> str:
    import pyarrow

    def version(module: str) -> str:
        try:
            return __import__(module).__version__
        except ImportError:
            return "not installed"

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {ram:.0f} GiB RAM, {platform.system()} {platform.machine()}; "
        f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
        f"pyarrow {pyarrow.__version__}, polars {version('polars')}, chdb {version('chdb')}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def compare(args: argparse.Namespace) -> str:
    for catalog in CATALOGS:  # build the cached data first
        prepared_home(args.events, args.customers, args.seed, catalog)
    sides = [s for s in SIDES if s not in args.skip]
    results = {s: measure(s, args, events=args.events, customers=args.customers) for s in sides}
    base = results.get(DUCKDB_SIDE, {}).get("seconds")
    reference = {k: results[DUCKDB_SIDE].get(k) for k in ("groups", "sum")} if base else {}
    light = results.get("duckdb_light", {})
    light_reference = {k: light.get(k) for k in ("groups", "sum")}
    out = [
        f"meterql vs other engines: {args.events:,} events, {args.customers:,} customers, "
        f"query = sum(input_tokens) as DECIMAL per customer and model, llm_request, January; "
        f"best of {args.repeat} after a warm-up, each side in its own process",
        f"environment: {environment()}",
        "",
        "| side | seconds | vs DuckDB SQL | peak RSS (MiB) | result (groups / sum) | note |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for side in sides:
        r = results[side]
        label = SIDES[side]
        if "skipped" in r:
            out.append(f"| {label} | - | - | - | - | skipped: {r['skipped']} |")
            continue
        seconds = r["seconds"]
        ratio = f"{seconds / base:.2f}x" if base else "-"
        note = r.get("note", "")
        if r.get("groups") is not None:
            # the light sides' results are checked against each other (their own query)
            expected = light_reference if side in LIGHT_SIDES else reference
            same = {"groups": r["groups"], "sum": r["sum"]} == expected
            result = f"{r['groups']:,} / {r['sum']}" + ("" if same else " (DIFFERS)")
        else:
            result = "-"
        if side in LIGHT_SIDES and "seconds" in results.get("invoice_light", {}):
            note = f"light invoice run / this: {results['invoice_light']['seconds'] / seconds:.2f}x"
        if r.get("version"):
            note = f"{side.removesuffix('_light')} {r['version']}" + (f"; {note}" if note else "")
        out.append(
            f"| {label} | {seconds:.2f} | {ratio} | {r['peak_rss_mib']:,.0f} | {result} | {note} |"
        )
    if "ingest" not in args.skip:
        r = measure("ingest", args, events=args.events, customers=args.customers)
        if "skipped" in r:
            out.append(f"| ingest | - | - | - | - | {r['skipped']} |")
        else:
            copy = {}
            for row in r["ingest"]:
                fmt, case = row["case"].split(": ", 1)
                if case.startswith("plain"):
                    copy[fmt] = row["seconds"]
                    continue
                rate = row["events"] / row["seconds"]
                out.append(
                    f"| meterql ingest, {fmt} ({row['events']:,} events) | {row['seconds']:.2f} "
                    f"| - | {r['peak_rss_mib']:,.0f} | {rate:,.0f} events/s | "
                    f"{row['seconds'] / copy[fmt]:.2f}x a plain DuckDB COPY of the dump |"
                )
    out.append("")
    out.append(
        "Peak RSS is each side's whole process (Python, libraries, data); the ingest row's is "
        "one process ingesting both dumps."
    )
    return "\n".join(out)


def scale(args: argparse.Namespace) -> None:
    """Print the scaling table, a row as soon as it is measured."""
    out = [
        "scaling: meterql invoice run (light and full catalogs) and the hand-written DuckDB SQL "
        "(bare scan); ratios to the bare scan, seconds per 1M events",
        f"environment: {environment()}",
        "",
        "| events | customers | DuckDB SQL s | light run s | light / SQL | full run s | "
        "full / SQL | SQL s per 1M events | light s per 1M | full s per 1M | "
        "full run peak RSS (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(out), flush=True)
    for customers in args.scale_customers:
        for events in args.scale_events:
            for catalog in CATALOGS:
                prepared_home(events, customers, args.seed, catalog)
            sides = ("duckdb", "invoice_light", "invoice")
            r = {side: measure(side, args, events=events, customers=customers) for side in sides}
            failed = {side: m for side, m in r.items() if "skipped" in m}
            if failed:
                print(f"| {events:,} | {customers:,} | failed: {failed} |", flush=True)
                continue
            sql, light, full = (r[side]["seconds"] for side in sides)
            per = events / 1e6
            print(
                f"| {events:,} | {customers:,} | {sql:.2f} | {light:.2f} | {light / sql:.2f} | "
                f"{full:.2f} | {full / sql:.2f} | {sql / per:.3f} | {light / per:.3f} | "
                f"{full / per:.3f} | {r['invoice']['peak_rss_mib']:,.0f} |",
                flush=True,
            )


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sample", type=int, default=20, help="customers timed in the loop")
    parser.add_argument(
        "--skip", action="append", default=[], choices=[*SIDES, "ingest"], help="repeatable"
    )
    parser.add_argument("--no-ingest", action="store_true", help="same as --skip ingest")
    parser.add_argument("--scale", action="store_true", help="the scaling grid instead")
    parser.add_argument("--scale-events", type=_ints, default=[10_000_000, 30_000_000])
    parser.add_argument("--scale-customers", type=_ints, default=[1_000, 10_000])
    parser.add_argument("--side", choices=sorted(SIDE_FUNCTIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.no_ingest:
        args.skip.append("ingest")
    if args.side:
        run_side(args.side, args)
        return
    if args.scale:
        scale(args)
    else:
        print(compare(args), flush=True)


if __name__ == "__main__":
    main()
