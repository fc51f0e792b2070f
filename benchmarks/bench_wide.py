"""Compiled usage queries over event files 2,000 property columns wide vs the same events stored
with their few dense properties only.

    python -m benchmarks.bench_wide [--events 10000000] [--keys 2000] [--reps 5]
    (needs numpy: pip install -e '.[bench]')

PERFORMANCE.md asks every compiled metric query to run within 1.10x of hand-written SQL over
plain columns "while events keep arbitrary properties (up to 2,000 keys)".  meterql stores
every property as its own column, and a file holds the columns its rows have a value of
(README "Performance"): events with many sparse keys make files as wide as the keys a date's
events hold.  Data: the ingested home of benchmarks.datagen (seed 42) and, beside it (cached in
benchmarks/data), a copy of each of its event files with `--keys` extra sparse properties
(`p_extra_0000`...; every event holds 5 of them, seeded), the same rows and row groups (122,880
rows, as ingest writes them).

The query is the reference one (sum of input_tokens per customer and model, llm_request,
January), timed interleaved, median of --reps after a warm-up, DuckDB threads=2:

    hand, dense files     hand-written DuckDB SQL over the home's files (the baseline: 1.00)
    hand, wide files      the same SQL over the wide copies
    compiled, wide files  the metric compiled as `meterql usage --group-by model` compiles it
                          (metric_compiler over warehouse.events.events_relation of the wide
                          files, their manifest figures as ingest records them)
    ... metadata cache    the same three with DuckDB's `parquet_metadata_cache` on (a second
                          query over the same files in one process)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.bench_compare import _sql_list
from benchmarks.bench_compiler import END, START, bench_metric
from benchmarks.bench_invoice import BARE_SCAN, JANUARY
from benchmarks.datagen import data_dir, environment, generate, ingested_home
from warehouse.events import EventFile, EventStore, events_relation, integer_properties
from warehouse.ingest.write import ROW_GROUP_SIZE
from warehouse.layout import property_column

PER_EVENT = 5  # sparse keys each event holds
VALUES = pa.array([f"v{i}" for i in range(97)])


def _extra(k: int) -> str:
    return f"extra_{k:04d}"


def wide_copy(source: Path, target: Path, keys: int, seed: int) -> list[str]:
    """Write `source`'s rows with `keys` sparse properties added (PER_EVENT per event); returns
    the added column names."""
    import numpy as np  # the `bench` extra

    table = pq.read_table(source)
    n = len(table)
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, keys, size=n * PER_EVENT)
    rows = np.repeat(np.arange(n), PER_EVENT)
    order = np.argsort(chosen, kind="stable")
    chosen, rows = chosen[order], rows[order]
    bounds = np.searchsorted(chosen, np.arange(keys + 1))
    names, arrays = [], []
    for k in range(keys):
        held = rows[bounds[k] : bounds[k + 1]]
        if len(held) == 0:
            continue
        index = np.zeros(n, np.int32)
        index[held] = held % len(VALUES)
        absent = np.ones(n, bool)
        absent[held] = False
        arrays.append(pa.DictionaryArray.from_arrays(pa.array(index, mask=absent), VALUES))
        names.append(property_column(_extra(k)))
    wide = pa.Table.from_arrays([*table.columns, *arrays], names=[*table.column_names, *names])
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    pq.write_table(wide, tmp, row_group_size=ROW_GROUP_SIZE, compression="snappy")
    tmp.replace(target)
    return names


def wide_files(dense: list[EventFile], key: str, keys: int) -> list[EventFile]:
    """The cached wide copies of `dense` (built on first use), as manifest entries."""
    directory = data_dir() / f"{key}-wide{keys}"
    directory.mkdir(exist_ok=True)
    out = []
    for i, f in enumerate(dense):
        target = directory / f"{i:04d}.parquet"
        if not target.exists():
            wide_copy(Path(f.path), target, keys, seed=i)
        added = tuple(
            n for n in pq.read_schema(target).names if n.startswith(property_column("extra_"))
        )
        out.append(
            EventFile(
                str(target),
                f.row_count,
                f.min_timestamp,
                f.max_timestamp,
                f.property_columns + added,
                f.integer_columns,
            )
        )
    return out


def compiled(files: list[EventFile]) -> str:
    """The "sum" metric of the compiler benchmark (input_tokens of llm_request by model)
    compiled as `meterql usage --group-by model` compiles it over `files`."""
    from metric_compiler import Window, compile_usage

    props = ["input_tokens", "model"]
    return compile_usage(
        bench_metric("sum"),
        events_relation(files, props, START, END, resolve_customers=False),
        window=Window.none(START, END),
        group_by=["model"],
        integer_properties=integer_properties(files, props),
    ).sql


def _paths(files: list[EventFile]) -> str:
    return _sql_list([f.path for f in files])


def run(n_events: int, keys: int, reps: int) -> list[tuple[str, float, float]]:
    dataset = generate(n_events)
    home = ingested_home(dataset)
    con = home.connect(read_only=True)
    try:
        dense = EventStore(home, con).files(None, None)
    finally:
        con.close()
    wide = wide_files(dense, home.path.name.removesuffix(".home"), keys)
    queries = {
        "hand, dense files": BARE_SCAN.format(files=_paths(dense), january=JANUARY),
        "hand, wide files": BARE_SCAN.format(files=_paths(wide), january=JANUARY),
        "compiled, wide files": compiled(wide),
    }
    results = []
    for cache in (False, True):
        con = duckdb.connect()
        con.execute("SET threads = 2")
        con.execute(f"SET parquet_metadata_cache = {str(cache).lower()}")
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in queries}
        seen = set()
        for sql in queries.values():  # warm-up (and, with the cache on, fill it)
            con.execute(f"CREATE OR REPLACE TEMP TABLE rows AS {sql}")
            seen.add(con.execute("SELECT count(*), sum(value) FROM rows").fetchone())
        assert len(seen) == 1, f"the queries disagree: {seen}"
        for _ in range(reps):
            for name, sql in queries.items():
                wall, cpu = time.perf_counter(), time.process_time()
                con.execute(f"CREATE OR REPLACE TEMP TABLE rows AS {sql}")
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
        con.close()
        suffix = ", metadata cache" if cache else ""
        for name, pairs in times.items():
            wall = statistics.median(w for w, _ in pairs)
            cpu = statistics.median(c for _, c in pairs)
            results.append((name + suffix, wall, cpu))
    return results


def report(n_events: int, keys: int, results: list[tuple[str, float, float]]) -> None:
    base_wall, base_cpu = results[0][1], results[0][2]
    print(
        f"wide files benchmark: {n_events:,} events, {keys:,} sparse keys ({PER_EVENT} per "
        f"event) added to the wide copies; {environment()}"
    )
    print("query: sum(input_tokens) per customer and model, llm_request, January")
    print("| query | seconds | vs hand, dense | CPU s | CPU vs hand, dense |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, wall, cpu in results:
        print(
            f"| {name} | {wall:.3f} | {wall / base_wall:.2f}x | {cpu:.3f} | {cpu / base_cpu:.2f}x |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--keys", type=int, default=2_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    report(args.events, args.keys, run(args.events, args.keys, args.reps))


if __name__ == "__main__":
    main()
