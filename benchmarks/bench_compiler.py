"""Compiled metric queries vs hand-written DuckDB queries over the same stored events.

    python -m benchmarks.bench_compiler [--events 10000000] [--customers 10000] [--reps 5]

For each aggregation (count, sum, max, unique, latest), a metric with an event-type filter
(`llm_request`), a presence filter and the group key `model` is compiled by metric_compiler
against the read API's relation (what `meterql usage --group-by model` runs), and timed against
two hand-written queries over the same Parquet files and the same customer resolution:

    hand (same)   the same semantics written by hand: exact decimal check (GLOB + TRY_CAST),
                  LATEST tie-break on (timestamp, transaction_id); the results are asserted
                  equal to the compiled query's, so the ratio measures the compiler's overhead.
                  The compiler is told, as `meterql usage` tells it, which properties every
                  file holds as integer text only (the manifest's integer_columns; the
                  generated input_tokens are): it then reads them as BIGINT without the check,
                  and so does this query
    hand (naive)  what one writes without those rules: TRY_CAST alone, arg_max by timestamp
                  (shown for the cost of exactness; its results may differ)

Each query runs once to warm up, then `--reps` times interleaved; the table shows median wall
seconds (DuckDB `threads=2`), the ratio compiled / hand (same), and the same ratio in CPU
seconds of the process (less sensitive to other work on the machine).  Target: <= 1.10.
Data: benchmarks.datagen (seeded), ingested once into a cached home; the benchmark's own copy
of the catalog knows the dataset's customers (so customer resolution joins 10k keys, as in use).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import sqlglot
from sqlglot import exp

from benchmarks.datagen import MONTH_END, MONTH_START, Dataset, data_dir, generate, ingested_home
from engine.api import Meterql
from metric_compiler import Window, compile_usage
from metric_compiler.numbers import is_decimal_text
from warehouse.events import EventStore, events_relation, integer_properties
from warehouse.home import Home
from warehouse.models import BillableMetric

START = MONTH_START.astimezone(UTC).replace(tzinfo=None)
END = MONTH_END.astimezone(UTC).replace(tzinfo=None)

KEYS = {
    "count": None,
    "sum": "input_tokens",
    "max": "input_tokens",
    "unique": "user_id",
    "latest": "input_tokens",
}


def bench_metric(agg: str) -> BillableMetric:
    doc: dict = {
        "id": f"bench-{agg}",
        "name": f"bench {agg}",
        "aggregation_type": agg,
        "event_type_filter": {"in_values": ["llm_request"]},
        "property_filters": [{"name": "model", "exists": True}],
        "group_keys": [["model"]],
    }
    if KEYS[agg]:
        doc["aggregation_key"] = KEYS[agg]
        doc["property_filters"].append({"name": KEYS[agg], "exists": True})
    return BillableMetric.model_validate(doc)


def hand_written(agg: str, events_glob: str, *, same: bool, integer: bool = False) -> str:
    """The hand-written query (see the module doc).  `events_glob` is our own cache path.
    `integer`: the stored input_tokens are known to be integer text (the manifest's
    integer_columns, as the compiler is told): the same semantics then read them as BIGINT
    without the decimal check, as the compiled query does."""
    dec = "DECIMAL(38, 12)"
    known = same and integer
    value = f"TRY_CAST(e.p_input_tokens AS {'BIGINT' if known else dec})"
    valid = (
        "e.p_input_tokens IS NOT NULL"
        if known
        else is_decimal_text(exp.column("p_input_tokens", table="e")).sql("duckdb")
    )
    aggregates = {
        "count": "count(*)",
        "sum": f"sum({value})",
        "max": f"max({value})",
        "unique": "count(DISTINCT e.p_user_id)",
        "latest": (
            f"arg_max({value}, {{'t': e.timestamp, 'i': e.transaction_id}})"
            if same
            else f"arg_max({value}, e.timestamp)"
        ),
    }
    where = [
        f"e.timestamp >= TIMESTAMP '{START.isoformat(sep=' ')}'",
        f"e.timestamp < TIMESTAMP '{END.isoformat(sep=' ')}'",
        "e.event_type = 'llm_request'",
        "e.p_model IS NOT NULL",
    ]
    if agg == "unique":
        where.append("e.p_user_id IS NOT NULL")
    elif agg != "count":
        where.append(valid if same else "e.p_input_tokens IS NOT NULL")
    return f"""
        SELECT k.customer_id, e.p_model, CAST({aggregates[agg]} AS {dec}) AS value
        FROM read_parquet('{events_glob}', union_by_name = true, hive_partitioning = false) AS e
        JOIN customer_keys AS k ON k.key = e.customer_id
        WHERE {" AND ".join(where)}
        GROUP BY ALL
        ORDER BY 1, 2
    """  # noqa: S608 - benchmark constants and our own cache path


def bench_home(dataset: Dataset) -> Home:
    """The cached ingested home plus a catalog that knows the dataset's customers.

    The shared cached home (benchmarks.datagen) is left as it is: this home has its own copy of
    the catalog, the customers applied through `Meterql.apply`, and a symlink to the shared
    home's event files.  Built under a temporary name and renamed into place."""
    source = ingested_home(dataset)
    target = data_dir() / f"{source.path.name.removesuffix('.home')}-customers.home"
    if (target / "catalog.duckdb").exists():
        Home(target).connect().close()  # a cached home built by an older meterql: migrated
        return Home(target)
    building = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    shutil.copy2(source.catalog_path, building / "catalog.duckdb")
    (building / "events").symlink_to(source.events_dir.resolve(), target_is_directory=True)
    for sub in ("rejects", "staging"):
        (building / sub).mkdir()
    customers = [{"id": f"c{i:05d}", "name": f"c{i:05d}"} for i in range(dataset.n_customers)]
    doc = building / "staging" / "customers.json"
    doc.write_text(json.dumps({"customers": customers}))
    mq = Meterql.open(building)
    try:
        mq.apply([doc])
    finally:
        mq.close()
    doc.unlink()
    building.replace(target)
    return Home(target)


def _timed(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[float, float, list[tuple]]:
    """Wall seconds, CPU seconds of this process (all DuckDB threads), rows.  The rows are
    fetched as an Arrow table, as `meterql usage` fetches them, and converted to Python
    outside the timing: Python objects for the compiled query's two extra window columns
    (80k rows) alone took about 10% of the count query's time."""
    wall, cpu = time.perf_counter(), time.process_time()
    table = con.sql(sql).to_arrow_table()
    elapsed, used = time.perf_counter() - wall, time.process_time() - cpu
    return elapsed, used, [tuple(r.values()) for r in table.to_pylist()]


def run(
    n_events: int, n_customers: int, reps: int, out: Callable[[str], None] = print
) -> list[dict]:
    dataset = generate(n_events, n_customers)
    home = bench_home(dataset)
    con = Home(home.path).connect(read_only=True)
    con.execute("SET threads = 2")
    con.execute("SET enable_progress_bar = false")
    store = EventStore(home, con)
    events_glob = str(home.events_dir / "**" / "*.parquet")
    results = []
    for agg in KEYS:
        metric = bench_metric(agg)
        props = ["model", *([KEYS[agg]] if KEYS[agg] else [])]
        files = store.files(START, END)  # as `meterql usage` compiles (engine.usage)
        integers = integer_properties(files, props)
        compiled = compile_usage(
            metric,
            events_relation(files, props, START, END),
            window=Window.none(START, END),
            group_by=["model"],
            integer_properties=integers,
        ).sql
        queries = {
            "compiled": compiled,
            "same": hand_written(agg, events_glob, same=True, integer="input_tokens" in integers),
            "naive": hand_written(agg, events_glob, same=False),
        }
        times: dict[str, list[float]] = {name: [] for name in queries}
        cpu: dict[str, list[float]] = {name: [] for name in queries}
        rows: dict[str, list[tuple]] = {}
        for name, sql in queries.items():  # warm-up
            _, _, rows[name] = _timed(con, sql)
        got = [(r[0], r[4], Decimal(r[5])) for r in rows["compiled"]]
        want = [(r[0], r[1], Decimal(r[2])) for r in rows["same"]]
        assert got == want, f"{agg}: the compiled and hand-written results differ"
        for _ in range(reps):
            for name, sql in queries.items():
                elapsed, used, _ = _timed(con, sql)
                times[name].append(elapsed)
                cpu[name].append(used)
        median = {name: statistics.median(t) for name, t in times.items()}
        median_cpu = {name: statistics.median(t) for name, t in cpu.items()}
        results.append(
            {
                "aggregation": agg,
                "rows": len(got),
                "compiled": median["compiled"],
                "hand_same": median["same"],
                "hand_naive": median["naive"],
                "ratio": median["compiled"] / median["same"],
                "cpu_ratio": median_cpu["compiled"] / median_cpu["same"],
            }
        )
    con.close()
    _report(results, n_events, n_customers, reps, out)
    return results


def _report(
    results: list[dict], n_events: int, n_customers: int, reps: int, out: Callable[[str], None]
) -> None:
    out(
        f"compiler benchmark: {n_events:,} events, {n_customers:,} customers, metric with "
        f"event-type filter and group key `model`, median of {reps} runs, DuckDB threads=2"
    )
    out(
        f"env: {os.cpu_count()} cores, Python {platform.python_version()}, duckdb "
        f"{duckdb.__version__}, sqlglot {sqlglot.__version__}, {datetime.now(UTC):%Y-%m-%d}"
    )
    out("")
    out("| aggregation | result rows | compiled (s) | hand, same semantics (s) | ratio | "
        "CPU-time ratio | hand, naive (s) |")  # fmt: skip
    out("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        flag = "" if r["ratio"] <= 1.10 else " (above 1.10)"
        out(
            f"| {r['aggregation']} | {r['rows']:,} | {r['compiled']:.3f} | {r['hand_same']:.3f} "
            f"| {r['ratio']:.2f}{flag} | {r['cpu_ratio']:.2f} | {r['hand_naive']:.3f} |"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out("")
    out(f"load average at the end: {load:.2f} (other work on the machine adds noise)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    run(args.events, args.customers, args.reps)


if __name__ == "__main__":
    main()
