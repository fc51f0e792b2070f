"""Compiled usage queries over events with 2,000 sparse property keys: files one column per key
wide, files that keep the rare keys in one MAP column (warehouse.rare, what ingest and
compaction write now), and the same events stored with their few dense properties only.

    python -m benchmarks.bench_wide [--events 10000000] [--keys 2000] [--reps 5]
    (needs numpy: pip install -e '.[bench]')

PERFORMANCE.md asks every compiled metric query to run within 1.10x of hand-written SQL over
plain columns "while events keep arbitrary properties (up to 2,000 keys)".  Data: the ingested
home of benchmarks.datagen (seed 42) and, beside it (cached in benchmarks/data), two copies of
each of its event files with `--keys` extra sparse properties (`extra_0000`...; every event holds
5 of them, seeded), the same rows and row groups (122,880 rows, as ingest writes them): the
"wide" copy with a column per key (as meterql stored them before warehouse.rare), and the
"rare-keys map" copy laid out by warehouse.rare.arrange (the extra keys, each on under 5% of the
rows, in the maps of their buckets).

Timed interleaved, median of --reps after a warm-up, DuckDB threads=2:

    the reference query (sum of input_tokens per customer and model, llm_request, January),
    baseline hand-written DuckDB SQL over the home's dense files:
        hand, wide files                the same SQL over the wide copies
        compiled, dense files           the metric compiled as `meterql usage --group-by model`
                                        compiles it, over the dense files
        compiled, wide files            the same compiled query (metric_compiler over
                                        warehouse.events.events_relation of the files, with
                                        their manifest figures as ingest records them)
        compiled, rare-keys map files   the same over the map copies
        ..., extra_0007 metered         the same over map copies that keep extra_0007 as a
                                        column (a key a metric reads: Catalog.metered_properties)
    a rare key's query (count of those events holding extra_0007, per customer), baseline
    hand-written SQL over the wide copies' column of the key:
        compiled, rare key, wide files / rare-keys map files / map files, the key metered
    ... metadata cache                  all of it again with DuckDB's `parquet_metadata_cache`
                                        on (a second query over the same files in one process)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.bench_compare import _sql_list
from benchmarks.bench_compiler import END, START, bench_metric
from benchmarks.bench_invoice import BARE_SCAN, JANUARY
from benchmarks.datagen import data_dir, environment, generate, ingested_home
from metric_compiler import metric_properties
from warehouse.events import EventFile, EventStore, events_relation, integer_properties
from warehouse.ingest.write import ROW_GROUP_SIZE
from warehouse.layout import PROPERTY_PREFIX, RARE_BUCKETS, property_column
from warehouse.models import BillableMetric

PER_EVENT = 5  # sparse keys each event holds
VALUES = pa.array([f"v{i}" for i in range(97)])


def _extra(k: int) -> str:
    return f"extra_{k:04d}"


def wide_copy(source: Path, target: Path, keys: int, seed: int) -> None:
    """Write `source`'s rows with `keys` sparse properties added (PER_EVENT per event)."""
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
    _write(
        pa.Table.from_arrays([*table.columns, *arrays], names=[*table.column_names, *names]), target
    )


def _write(table: pa.Table, target: Path) -> None:
    """Write `table` to `target` in row groups as ingest writes them, atomically."""
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, compression="snappy")
    tmp.replace(target)


def _cached(
    files: list[EventFile], directory: Path, build: Callable[[EventFile, Path, int], None]
) -> list[Path]:
    """The copies directory/NNNN.parquet of `files`, each built by `build(file, target, i)`
    on first use (cached in benchmarks/data)."""
    directory.mkdir(exist_ok=True)
    targets = []
    for i, f in enumerate(files):
        target = directory / f"{i:04d}.parquet"
        if not target.exists():
            build(f, target, i)
        targets.append(target)
    return targets


def _listed(target: Path, f: EventFile, rare: tuple[str, ...] = ()) -> EventFile:
    """The manifest entry of a copy of `f` (its property columns read from its schema)."""
    names = pq.read_schema(target).names
    props = tuple(n for n in names if n.startswith(PROPERTY_PREFIX))
    ints = tuple(c for c in f.integer_columns or () if c in props)
    return EventFile(str(target), f.row_count, f.min_timestamp, f.max_timestamp, props, ints, rare)


def wide_files(dense: list[EventFile], key: str, keys: int) -> list[EventFile]:
    """The cached wide copies of `dense` (built on first use), as manifest entries."""
    targets = _cached(
        dense,
        data_dir() / f"{key}-wide{keys}",
        lambda f, target, i: wide_copy(Path(f.path), target, keys, seed=i),
    )
    return [_listed(target, f) for target, f in zip(targets, dense, strict=True)]


def rare_files(
    wide: list[EventFile], key: str, keys: int, metered: frozenset[str] = frozenset()
) -> list[EventFile]:
    """The cached copies of the `wide` files laid out as ingest and compaction lay them out
    now (warehouse.rare.arrange: the rare keys in bucket maps, but the `metered` keys, those
    the home's metrics read, as columns), as manifest entries."""
    from warehouse.rare import arrange, held_entries

    suffix = "".join(f"-{k}" for k in sorted(metered))
    targets = _cached(
        wide,
        data_dir() / f"{key}-rare{keys}-b{RARE_BUCKETS}{suffix}",
        lambda f, target, i: _write(arrange(pq.read_table(f.path), metered), target),
    )
    out = []
    for target, f in zip(targets, wide, strict=True):
        held = pc.unique(held_entries(pq.read_table(target)).column("key")).to_pylist()
        out.append(_listed(target, f, tuple(sorted(property_column(k) for k in held))))
    return out


def compiled(files: list[EventFile], metric: BillableMetric, group_by: list[str]) -> str:
    """`metric` compiled as `meterql usage --group-by ...` compiles it over `files`."""
    from metric_compiler import Window, compile_usage

    props = metric_properties(metric, group_by)
    return compile_usage(
        metric,
        events_relation(files, props, START, END, resolve_customers=False),
        window=Window.none(START, END),
        group_by=group_by,
        integer_properties=integer_properties(files, props),
    ).sql


def _paths(files: list[EventFile]) -> str:
    return _sql_list([f.path for f in files])


# A rare key's query: the events of llm_request in January holding one of the sparse keys,
# per customer (about 1 in 400 events each), by hand over the wide files' column of the key.
RARE_KEY = _extra(7)
RARE_SCAN = f"""
SELECT customer_id, count(*) AS value
FROM read_parquet({{files}}, union_by_name = true)
WHERE event_type = 'llm_request' AND {JANUARY} AND {property_column(RARE_KEY)} IS NOT NULL
GROUP BY ALL
"""  # noqa: S608 - benchmark constants
RARE_METRIC = BillableMetric.model_validate(
    {
        "id": "bench-rare",
        "name": "bench rare",
        "aggregation_type": "count",
        "event_type_filter": {"in_values": ["llm_request"]},
        "property_filters": [{"name": RARE_KEY, "exists": True}],
    }
)


def run(n_events: int, keys: int, reps: int) -> list[tuple[str, float, float, str]]:
    dataset = generate(n_events)
    home = ingested_home(dataset)
    con = home.connect(read_only=True)
    try:
        dense = EventStore(home, con).files(None, None)
    finally:
        con.close()
    key = home.path.name.removesuffix(".home")
    wide = wide_files(dense, key, keys)
    rare = rare_files(wide, key, keys)
    metered = rare_files(wide, key, keys, frozenset({RARE_KEY}))
    reference = "hand, dense files"
    by_key = "hand, rare key, wide files"
    # (name, SQL, the name of its baseline); each group's rows must agree
    groups = [
        [
            (reference, BARE_SCAN.format(files=_paths(dense), january=JANUARY), reference),
            ("hand, wide files", BARE_SCAN.format(files=_paths(wide), january=JANUARY), reference),
            ("compiled, dense files", compiled(dense, bench_metric("sum"), ["model"]), reference),
            ("compiled, wide files", compiled(wide, bench_metric("sum"), ["model"]), reference),
            (
                "compiled, rare-keys map files",
                compiled(rare, bench_metric("sum"), ["model"]),
                reference,
            ),
            (
                "compiled, map files, extra_0007 metered",
                compiled(metered, bench_metric("sum"), ["model"]),
                reference,
            ),
        ],
        [
            (by_key, RARE_SCAN.format(files=_paths(wide)), by_key),
            ("compiled, rare key, wide files", compiled(wide, RARE_METRIC, []), by_key),
            ("compiled, rare key, rare-keys map files", compiled(rare, RARE_METRIC, []), by_key),
            (
                "compiled, rare key, map files, the key metered",
                compiled(metered, RARE_METRIC, []),
                by_key,
            ),
        ],
    ]
    results = []
    for cache in (False, True):
        con = duckdb.connect()
        con.execute("SET threads = 2")
        con.execute(f"SET parquet_metadata_cache = {str(cache).lower()}")
        times: dict[str, list[tuple[float, float]]] = {}
        for group in groups:  # warm-up (and, with the cache on, fill it)
            seen = set()
            for name, sql, _ in group:
                times[name] = []
                con.execute(f"CREATE OR REPLACE TEMP TABLE rows AS {sql}")
                seen.add(con.execute("SELECT count(*), sum(value) FROM rows").fetchone())
            assert len(seen) == 1, f"the queries disagree: {seen}"
        for _ in range(reps):
            for name, sql, _ in (q for group in groups for q in group):
                wall, cpu = time.perf_counter(), time.process_time()
                con.execute(f"CREATE OR REPLACE TEMP TABLE rows AS {sql}")
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
        con.close()
        suffix = ", metadata cache" if cache else ""
        for name, _, base in (q for group in groups for q in group):
            wall = statistics.median(w for w, _ in times[name])
            cpu = statistics.median(c for _, c in times[name])
            results.append((name + suffix, wall, cpu, base + suffix))
    return results


def report(n_events: int, keys: int, results: list[tuple[str, float, float, str]]) -> None:
    seconds = {name: (wall, cpu) for name, wall, cpu, _ in results}
    print(
        f"wide files benchmark: {n_events:,} events, {keys:,} sparse keys ({PER_EVENT} per "
        f"event) added to the wide copies; {environment()}"
    )
    print(
        "queries: sum(input_tokens) per customer and model, llm_request, January; and (rare "
        f"key) the count of those events holding {RARE_KEY} per customer"
    )
    print("| query | seconds | vs baseline | CPU s | CPU vs baseline | baseline |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, wall, cpu, base in results:
        base_wall, base_cpu = seconds[base]
        print(
            f"| {name} | {wall:.3f} | {wall / base_wall:.2f}x | {cpu:.3f} | "
            f"{cpu / base_cpu:.2f}x | {base} |"
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
