"""Invoice run benchmark: a whole `invoice run` vs hand-written scan-and-aggregate queries.

    python -m benchmarks.bench_invoice [--events 10000000] [--customers 10000] [--repeat 3]
                                       [--catalog full|light] [--strategies]

Data: benchmarks.datagen (seeded, cached), ingested once into a cached home.  Catalog: 10,000
customers (ids c00000.. as in the generated events), each with a monthly contract from
2026-01-01 on one rate card, and (--catalog full, the default) 6 billable metrics / USAGE
products over the generated events, of 4 event types and 3 groupings:

    Input Tokens      SUM input_tokens, llm_request        price per model (8 FLAT rates),
                                                           line items per region, per 1000
    Output Tokens     SUM output_tokens, llm_request       per model, TIERED (3 tiers), per 1000
    Embedding Tokens  SUM input_tokens, embedding_request  per model, per region
    Images            COUNT image_generation               per model, per region
    API Calls         COUNT api_call                       FLAT, per region
    Active Users      UNIQUE user_id, llm_request          FLAT

or (--catalog light) 3 metrics that read the same events as the bare scan (a) below, all
grouped by model, so they share one scan (fused aggregates):

    Input Tokens      SUM input_tokens, llm_request        per model (8 FLAT rates), per 1000
    Output Tokens     SUM output_tokens, llm_request       per model, TIERED (3 tiers), per 1000
    Requests          COUNT llm_request                    per model, FLAT

The run is `invoice run --as-of 2026-02-02T01:00:00Z`: January is finalized (its grace period
is over), February has just started (a draft): 20,000 invoices, every January line item.

Measured in one process, same DuckDB settings, interleaved, best of --repeat (wall and CPU time
of the process, which counts DuckDB's threads and is less sensitive to other work on the
machine); every query's rows are stored in a temp table, as the run stores its rows:

(a) bare scan: the PERFORMANCE.md reference query, hand-written over the same stored event
    files: sum of input_tokens as DECIMAL per customer and model for the month, llm_request;
(b) one scan: every aggregate the metrics need, hand-written as ONE query reading the events
    ONCE (full: the fastest one-scan formulation we found, the events MATERIALIZED once, feeding
    the three groupings; light: three aggregates per customer and model);
(c) per grouping: the same aggregates as a person would usually write them, one query per
    grouping (full: the sums and counts; the distinct users; light: the same as (b));
    --strategies adds other one-scan formulations (GROUPING SETS, row expansion), measured to
    choose how meterql fuses metrics with different groupings;
- invoice run: `Meterql.invoice_run` on a fresh copy of the catalog (everything: periods,
  usage queries, rating, invoices written in one transaction), and a re-run (nothing changed).

(a) to (c) compute usage only: no windows, no checks of absent properties or of the decimal
text, no rating, nothing written.  Target (PERFORMANCE.md): invoice run / (a) <= 2.0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.datagen import MODELS, data_dir, environment, generate, ingested_home

CATALOG_VERSION = 1  # bump when catalog_document changes (it is part of the cache key)
CATALOGS = ("full", "light")
AS_OF = "2026-02-02T01:00:00Z"


def catalog_document(n_customers: int, catalog: str = "full") -> dict[str, Any]:
    """The benchmark's catalog documents (see the module docstring)."""

    def exists(*names: str) -> list[dict[str, Any]]:
        return [{"name": n, "exists": True} for n in names]

    def metric(name: str, agg: str, event: str, key: str | None, keys: list[str]) -> dict:
        doc: dict[str, Any] = {
            "name": name,
            "aggregation_type": agg,
            "event_type_filter": {"in_values": [event]},
            "property_filters": exists(*([key] if key else []), *keys),
        }
        if key:
            doc["aggregation_key"] = key
        if keys:
            doc["group_keys"] = [keys]
        return doc

    per_thousand = {"conversion_factor": "1000", "operation": "divide"}
    light = catalog == "light"
    keys = ["model"] if light else ["model", "region"]
    metrics = [
        metric("Input Tokens", "sum", "llm_request", "input_tokens", keys),
        metric("Output Tokens", "sum", "llm_request", "output_tokens", keys),
    ]
    products: list[dict[str, Any]] = [
        {
            "name": "Input Tokens",
            "pricing_group_key": ["model"],
            "presentation_group_key": [] if light else ["region"],
            "quantity_conversion": per_thousand,
        },
        {
            "name": "Output Tokens",
            "pricing_group_key": ["model"],
            "quantity_conversion": per_thousand,
        },
    ]
    if light:
        metrics.append(metric("Requests", "count", "llm_request", None, ["model"]))
        products.append({"name": "Requests", "pricing_group_key": ["model"]})
    else:
        metrics += [
            metric("Embedding Tokens", "sum", "embedding_request", "input_tokens", keys),
            metric("Images", "count", "image_generation", None, keys),
            metric("API Calls", "count", "api_call", None, ["region"]),
            metric("Active Users", "unique", "llm_request", "user_id", []),
        ]
        products += [
            {
                "name": "Embedding Tokens",
                "pricing_group_key": ["model"],
                "presentation_group_key": ["region"],
            },
            {
                "name": "Images",
                "pricing_group_key": ["model"],
                "presentation_group_key": ["region"],
            },
            {"name": "API Calls", "presentation_group_key": ["region"]},
            {"name": "Active Users"},
        ]
    for p in products:
        p.update({"type": "usage", "billable_metric_id": p["name"]})
    start = "2025-01-01T00:00:00Z"
    rates: list[dict[str, Any]] = []
    for i, model in enumerate(MODELS):
        per_model: list[dict[str, Any]] = [
            {"product_id": "Input Tokens", "rate_type": "flat", "price": f"{10 + i}.25"},
            {
                "product_id": "Output Tokens",
                "rate_type": "tiered",
                "tiers": [
                    {"size": "100", "price": str(30 + i)},
                    {"size": "1000", "price": str(20 + i)},
                    {"price": "5"},
                ],
            },
        ]
        if light:
            per_model.append(
                {"product_id": "Requests", "rate_type": "flat", "price": f"0.0{i + 1}"}
            )
        else:
            per_model += [
                {"product_id": "Embedding Tokens", "rate_type": "flat", "price": f"0.0{i + 1}"},
                {"product_id": "Images", "rate_type": "flat", "price": str(4 + i)},
            ]
        for r in per_model:
            r.update({"starting_at": start, "pricing_group_values": {"model": model}})
        rates += per_model
    if not light:
        rates += [
            {"product_id": "API Calls", "starting_at": start, "rate_type": "flat", "price": "0.1"},
            {
                "product_id": "Active Users",
                "starting_at": start,
                "rate_type": "flat",
                "price": "50",
            },
        ]
    return {
        "billable_metrics": metrics,
        "products": products,
        "rate_cards": [{"name": "Standard", "rates": rates}],
        "customers": [{"id": f"c{i:05d}", "name": f"Customer {i:05d}"} for i in range(n_customers)],
        "contracts": [
            {
                "name": f"contract-{i:05d}",
                "customer_id": f"c{i:05d}",
                "rate_card_id": "Standard",
                "starting_at": "2026-01-01T00:00:00Z",
                "usage_statement_schedule": {"frequency": "MONTHLY"},
            }
            for i in range(n_customers)
        ],
    }


def prepared_home(n_events: int, n_customers: int, seed: int, catalog: str = "full") -> Path:
    """A cached directory: the ingested home's catalog with the benchmark catalog applied, and
    its events directory linked (built once; apply of 10k customers takes a while)."""
    from engine.api import Meterql

    dataset = generate(n_events, n_customers, seed)
    source = ingested_home(dataset)
    kind = "" if catalog == "full" else f"-{catalog}"
    stem = source.path.name.removesuffix(".home")  # the ingested home's key
    target = data_dir() / f"{stem}-invoice{kind}-c{CATALOG_VERSION}.home"
    if (target / "catalog.duckdb").exists():
        return target
    building = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    _link_home(source.path, building)
    doc = building / "catalog.json"
    doc.write_text(json.dumps(catalog_document(n_customers, catalog)))
    mq = Meterql.open(building)
    try:
        mq.apply([doc])
    finally:
        mq.close()
    building.replace(target)
    return target


def _link_home(source: Path, target: Path) -> None:
    """`target` becomes a home with a copy of `source`'s catalog and links to its event files
    (read only in a benchmark), so every timed run starts from the same catalog."""
    for name in ("events", "rejects"):
        link = target / name
        if not link.exists():
            link.symlink_to((source / name).resolve(), target_is_directory=True)
    (target / "staging").mkdir(exist_ok=True)
    shutil.copyfile(source / "catalog.duckdb", target / "catalog.duckdb")


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result): CPU time counts DuckDB's threads
    and is less sensitive to other work on the machine than wall time."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _files(con: duckdb.DuckDBPyConnection, home: Path) -> str:
    paths = [
        str(home / "events" / p)
        for (p,) in con.execute("SELECT path FROM event_files ORDER BY path").fetchall()
    ]
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


JANUARY = """"timestamp" >= TIMESTAMP '2026-01-01' AND "timestamp" < TIMESTAMP '2026-02-01'"""

# (a) The PERFORMANCE.md reference: one sum per customer and model.
BARE_SCAN = """
SELECT customer_id, p_model, sum(TRY_CAST(p_input_tokens AS DECIMAL(38, 12))) AS value
FROM read_parquet({files}, union_by_name = true)
WHERE event_type = 'llm_request' AND {january}
GROUP BY ALL
"""

# (b) Every aggregate the 6 metrics need, in ONE query and ONE scan of the events, written as
# fast as we could by hand (measured: GROUPING SETS and row expansion are slower, see
# STRATEGIES): the events once, MATERIALIZED, feeding the three groupings the metrics need.
ONE_SCAN = """
WITH ev AS MATERIALIZED (
    SELECT customer_id, event_type, p_model, p_region, p_user_id,
           TRY_CAST(p_input_tokens AS DECIMAL(38, 12)) AS input_tokens,
           TRY_CAST(p_output_tokens AS DECIMAL(38, 12)) AS output_tokens
    FROM read_parquet({files}, union_by_name = true)
    WHERE {january}
)
SELECT customer_id, p_model, p_region,
       sum(CASE WHEN event_type = 'llm_request' THEN input_tokens END) AS input_tokens,
       sum(CASE WHEN event_type = 'llm_request' THEN output_tokens END) AS output_tokens,
       sum(CASE WHEN event_type = 'embedding_request' THEN input_tokens END) AS embeddings,
       count(CASE WHEN event_type = 'image_generation' THEN 1 END) AS images,
       NULL::BIGINT AS api_calls, NULL::BIGINT AS users
FROM ev WHERE event_type IN ('llm_request', 'embedding_request', 'image_generation')
GROUP BY ALL
UNION ALL
SELECT customer_id, NULL, p_region, NULL, NULL, NULL, NULL, count(*), NULL
FROM ev WHERE event_type = 'api_call' GROUP BY ALL
UNION ALL
SELECT customer_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, count(DISTINCT p_user_id)
FROM ev WHERE event_type = 'llm_request' GROUP BY ALL
"""

# (c) The same aggregates as a person would usually write them: one query per grouping
# (the sums and counts per customer, model and region; the distinct users per customer).
HAND_WRITTEN = (
    """
SELECT customer_id, p_model, p_region,
       sum(TRY_CAST(p_input_tokens AS DECIMAL(38, 12))) FILTER (event_type = 'llm_request'),
       sum(TRY_CAST(p_output_tokens AS DECIMAL(38, 12))) FILTER (event_type = 'llm_request'),
       sum(TRY_CAST(p_input_tokens AS DECIMAL(38, 12))) FILTER (event_type = 'embedding_request'),
       count(*) FILTER (event_type = 'image_generation'),
       count(*) FILTER (event_type = 'api_call')
FROM read_parquet({files}, union_by_name = true)
WHERE {january}
GROUP BY ALL
""",
    """
SELECT customer_id, count(DISTINCT p_user_id)
FROM read_parquet({files}, union_by_name = true)
WHERE {january} AND event_type = 'llm_request'
GROUP BY ALL
""",
)

# --catalog light: the 3 metrics' aggregates, one query (one grouping, so (b) = (c)).
LIGHT_ONE_SCAN = """
SELECT customer_id, p_model,
       sum(TRY_CAST(p_input_tokens AS DECIMAL(38, 12))),
       sum(TRY_CAST(p_output_tokens AS DECIMAL(38, 12))),
       count(*)
FROM read_parquet({files}, union_by_name = true)
WHERE event_type = 'llm_request' AND {january}
GROUP BY ALL
"""

# Other ways to compute the 6 metrics' aggregates in ONE scan (--strategies), measured to
# choose how meterql fuses metrics with different groupings.
EVENTS = """
    SELECT customer_id, event_type, p_model, p_region, p_user_id,
           TRY_CAST(p_input_tokens AS DECIMAL(38, 12)) AS input_tokens,
           TRY_CAST(p_output_tokens AS DECIMAL(38, 12)) AS output_tokens
    FROM read_parquet({files}, union_by_name = true)
    WHERE {january}"""
STRATEGIES = {
    "GROUPING SETS ((customer, model, region), (customer, region), (customer))": """
WITH ev AS ({events})
SELECT customer_id, p_model, p_region, GROUPING(p_model, p_region) AS g,
       sum(CASE WHEN event_type = 'llm_request' THEN input_tokens END),
       sum(CASE WHEN event_type = 'llm_request' THEN output_tokens END),
       sum(CASE WHEN event_type = 'embedding_request' THEN input_tokens END),
       count(CASE WHEN event_type = 'image_generation' THEN 1 END),
       count(CASE WHEN event_type = 'api_call' THEN 1 END),
       count(DISTINCT p_user_id) FILTER (event_type = 'llm_request')
FROM ev
GROUP BY GROUPING SETS ((customer_id, p_model, p_region), (customer_id, p_region), (customer_id))
""",
    "row expansion (unnest of the groupings each event feeds), one hash table": """
WITH ev AS ({events}),
x AS (
    SELECT *, unnest(CASE event_type WHEN 'llm_request' THEN [0, 2] WHEN 'api_call' THEN [1]
                                      ELSE [0] END) AS g
    FROM ev
)
SELECT customer_id, g, CASE WHEN g = 0 THEN p_model END AS m,
       CASE WHEN g IN (0, 1) THEN p_region END AS r,
       sum(CASE WHEN g = 0 AND event_type = 'llm_request' THEN input_tokens END),
       sum(CASE WHEN g = 0 AND event_type = 'llm_request' THEN output_tokens END),
       sum(CASE WHEN g = 0 AND event_type = 'embedding_request' THEN input_tokens END),
       count(CASE WHEN g = 0 AND event_type = 'image_generation' THEN 1 END),
       count(CASE WHEN g = 1 THEN 1 END),
       count(DISTINCT p_user_id) FILTER (g = 2)
FROM x GROUP BY ALL
""",
}


def run(
    n_events: int,
    n_customers: int,
    seed: int,
    repeat: int,
    strategies: bool,
    catalog: str = "full",
) -> dict[str, Any]:
    from engine.api import Meterql

    prepared = prepared_home(n_events, n_customers, seed, catalog)
    results: dict[str, Any] = {"events": n_events, "customers": n_customers, "catalog": catalog}
    with tempfile.TemporaryDirectory(prefix="meterql-bench-invoice-") as tmp:
        work = Path(tmp) / "home"
        work.mkdir()

        def fresh() -> Meterql:
            (work / "catalog.duckdb").unlink(missing_ok=True)
            _link_home(prepared, work)
            return Meterql.open(work)

        mq = fresh()
        files = _files(mq.con, work)
        fill = {"files": files, "january": JANUARY}
        events = EVENTS.format(**fill)
        light = [LIGHT_ONE_SCAN.format(**fill)]
        queries: dict[str, list[str]] = {
            "bare": [BARE_SCAN.format(**fill)],
            "one_scan": light if catalog == "light" else [ONE_SCAN.format(**fill)],
            "hand": light if catalog == "light" else [q.format(**fill) for q in HAND_WRITTEN],
        }
        if strategies and catalog == "full":
            for name, q in STRATEGIES.items():
                queries[name] = [q.format(events=events)]

        def run_queries(qs: list[str]) -> None:
            for q in qs:  # stored, as the run stores its rows (no Python conversion)
                mq.con.execute(f"CREATE OR REPLACE TEMP TABLE bench_rows AS {q}")

        times: dict[str, list[tuple[float, float]]] = defaultdict(list)
        summaries = []
        run_queries(queries["bare"])  # warm the OS cache
        for _ in range(repeat):  # interleaved: every side sees the same machine state
            for name, qs in queries.items():
                wall, cpu, _ = _timed(lambda qs=qs: run_queries(qs))
                times[name].append((wall, cpu))
            wall, cpu, summary = _timed(lambda mq=mq: mq.invoice_run(AS_OF))
            times["run"].append((wall, cpu))
            summaries.append(summary)
            [(lines,)] = mq.con.execute("SELECT count(*) FROM invoice_line_items").fetchall()
            results["line_items"] = lines
            wall, cpu, _ = _timed(lambda mq=mq: mq.invoice_run(AS_OF))
            times["rerun"].append((wall, cpu))
            mq.close()
            mq = fresh()
        [(threads, memory)] = mq.con.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')"
        ).fetchall()
        results["threads"], results["memory_limit"] = threads, memory
        mq.close()
    for name, pairs in times.items():  # best of --repeat, wall and CPU separately
        results[f"{name}_s"] = min(w for w, _ in pairs)
        results[f"{name}_cpu_s"] = min(c for _, c in pairs)
    best = summaries[[w for w, _ in times["run"]].index(results["run_s"])]
    results["stages_s"] = best.stage_seconds
    results["invoices"] = best.invoices.created
    results["strategies"] = list(STRATEGIES) if strategies and catalog == "full" else []
    for base in ("bare", "one_scan", "hand"):
        results[f"ratio_run_vs_{base}"] = results["run_s"] / results[f"{base}_s"]
        results[f"cpu_ratio_run_vs_{base}"] = results["run_cpu_s"] / results[f"{base}_cpu_s"]
    results["spread_run_s"] = statistics.pstdev([w for w, _ in times["run"]])
    return results


def table(r: dict[str, Any]) -> str:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items())
    light = r["catalog"] == "light"
    what = "3 metrics on llm_request by model" if light else "6 metrics"
    rows = [
        ("(a) bare scan-and-aggregate: sum of input_tokens per customer and model", "bare"),
        (f"(b) hand-written, all {what}' aggregates, one query, one scan", "one_scan"),
        *(
            []
            if light
            else [("(c) hand-written, all 6 metrics' aggregates, one query per grouping", "hand")]
        ),
        *((f"one scan by {name}", name) for name in r["strategies"]),
        (
            f"meterql invoice run ({r['invoices']:,} invoices, {r['line_items']:,} line items)",
            "run",
        ),
        ("meterql invoice re-run (nothing changed)", "rerun"),
    ]
    out = [
        f"invoice benchmark: {r['events']:,} events, {r['customers']:,} customers, "
        f"--catalog {r['catalog']} ({what}); "
        f"best of {r.get('repeat', '?')}; DuckDB threads {r['threads']}, memory "
        f"{r['memory_limit']}; {environment()}",
        "",
        "| measure | wall (s) | CPU (s) |",
        "| --- | ---: | ---: |",
        *(f"| {label} | {r[f'{k}_s']:.2f} | {r[f'{k}_cpu_s']:.2f} |" for label, k in rows),
        "",
        "| ratio | wall | CPU |",
        "| --- | ---: | ---: |",
        f"| invoice run / (a) bare scan (PERFORMANCE.md target <= 2.0) "
        f"| {r['ratio_run_vs_bare']:.2f} | {r['cpu_ratio_run_vs_bare']:.2f} |",
        f"| invoice run / (b) hand-written one-scan query of the {what} "
        f"| {r['ratio_run_vs_one_scan']:.2f} | {r['cpu_ratio_run_vs_one_scan']:.2f} |",
        *(
            []
            if light
            else [
                f"| invoice run / (c) hand-written query per grouping "
                f"| {r['ratio_run_vs_hand']:.2f} | {r['cpu_ratio_run_vs_hand']:.2f} |"
            ]
        ),
        "",
        f"invoice run stages (s): {stages}",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--catalog", choices=CATALOGS, default="full")
    parser.add_argument(
        "--strategies", action="store_true", help="also time other one-scan formulations (full)"
    )
    args = parser.parse_args(argv)
    results = run(
        args.events, args.customers, args.seed, args.repeat, args.strategies, args.catalog
    )
    results["repeat"] = args.repeat
    print(table(results))
    return results


if __name__ == "__main__":
    main()
