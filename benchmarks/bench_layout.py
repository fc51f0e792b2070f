"""The property layout decision, measured: plain columns vs a MAP column vs a JSON column.

    python -m benchmarks.bench_layout [--events 10000000] [--reps 3]

The same generated events (benchmarks.datagen) are stored three ways, one Parquet file each:

    columns   one VARCHAR column per property (what meterql stores, warehouse/layout.py)
    map       properties in one MAP(VARCHAR, VARCHAR) column
    json      properties in one VARCHAR column holding a JSON object

and the PERFORMANCE.md query runs on each: the sum of `input_tokens` as DECIMAL(38, 6) per
customer and model, for one month, `event_type = 'llm_request'` only.  Each query runs once to
warm up, then `--reps` times; the table shows the median seconds and the ratio to `columns`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import duckdb

from benchmarks.datagen import MONTH_END, MONTH_START, PROPERTIES, data_dir, environment, generate
from warehouse.ingest.sqltext import lit

LAYOUTS = ("columns", "map", "json")


def _value(layout: str, name: str) -> str:
    if layout == "columns":
        return name
    if layout == "map":
        return f"props[{lit(name)}]"
    return f"json_extract_string(props, {lit('$.' + name)})"


def layout_files(source: Path, key: str) -> dict[str, Path]:
    """The three layouts of the dump `source` (cached beside it)."""
    paths = {"columns": source}
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    fixed = 'transaction_id, customer_id, event_type, "timestamp"'
    entries = ", ".join(f"{lit(p)}: {p}" for p in PROPERTIES)
    shapes = {
        "map": "map_from_entries(list_filter(["
        + ", ".join(f"{{'key': {lit(p)}, 'value': {p}}}" for p in PROPERTIES)
        + "], lambda e: e.value IS NOT NULL))",
        "json": f"CAST(json_object({entries.replace(': ', ', ')}) AS VARCHAR)",
    }
    for layout, expr in shapes.items():
        target = data_dir() / f"{key}-layout-{layout}.parquet"
        if not target.exists():
            tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
            con.execute(
                f"COPY (SELECT {fixed}, {expr} AS props FROM read_parquet({lit(str(source))})) "  # noqa: S608
                f"TO {lit(str(tmp))} (FORMAT parquet)"
            )
            tmp.replace(target)
        paths[layout] = target
    con.close()
    return paths


def query(layout: str, path: Path) -> str:
    model, tokens = _value(layout, "model"), _value(layout, "input_tokens")
    start = MONTH_START.strftime("%Y-%m-%d %H:%M:%S")
    end = MONTH_END.strftime("%Y-%m-%d %H:%M:%S")
    return f"""
        SELECT customer_id, {model} AS model, sum(CAST({tokens} AS DECIMAL(38, 6))) AS tokens
        FROM read_parquet({lit(str(path))})
        WHERE event_type = 'llm_request'
          AND "timestamp" >= TIMESTAMPTZ {lit(start + "+00")}
          AND "timestamp" < TIMESTAMPTZ {lit(end + "+00")}
        GROUP BY ALL
    """  # noqa: S608 - our own cache paths and constants


def run(n_events: int, reps: int) -> list[tuple[str, float, int]]:
    data = generate(n_events, formats=("parquet",))
    assert data.parquet is not None
    files = layout_files(data.parquet, data.key)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    results = []
    for layout in LAYOUTS:
        sql = query(layout, files[layout])
        con.execute(sql).fetchall()  # warm-up
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            rows = con.execute(sql).fetchall()
            times.append(time.perf_counter() - started)
        results.append((layout, statistics.median(times), len(rows)))
    con.close()
    return results


def report(n_events: int, results: list[tuple[str, float, int]]) -> None:
    base = results[0][1]
    print(f"property layout benchmark: {n_events:,} events ({environment()})")
    print("query: sum(input_tokens::DECIMAL(38,6)) per customer and model, llm_request, one month")
    print(f"| {'layout':<8} | {'seconds':>8} | {'vs columns':>10} | {'groups':>7} |")
    print(f"|{'-' * 10}|{'-' * 10}|{'-' * 12}|{'-' * 9}|")
    for layout, seconds, groups in results:
        print(f"| {layout:<8} | {seconds:>8.3f} | {seconds / base:>9.2f}x | {groups:>7,} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    report(args.events, run(args.events, args.reps))


if __name__ == "__main__":
    main()
