"""Invoice run benchmark: a whole `invoice run` vs ONE bare hand-written scan-and-aggregate.

    python -m benchmarks.bench_invoice [--events 10000000] [--customers 10000] [--repeat 3]

Data: benchmarks.datagen (seeded, cached), ingested once into a cached home.  Catalog: 10,000
customers (ids c00000.. as in the generated events), each with a monthly contract from
2026-01-01 on one rate card, and 6 billable metrics / USAGE products over the generated events:

    Input Tokens      SUM input_tokens, llm_request        price per model (8 FLAT rates),
                                                           line items per region, per 1000
    Output Tokens     SUM output_tokens, llm_request       per model, TIERED (3 tiers), per 1000
    Embedding Tokens  SUM input_tokens, embedding_request  per model, per region
    Images            COUNT image_generation               per model, per region
    API Calls         COUNT api_call                       FLAT, per region
    Active Users      UNIQUE user_id, llm_request          FLAT

The run is `invoice run --as-of 2026-02-02T01:00:00Z`: January is finalized (its grace period
is over), February has just started (a draft): 20,000 invoices, every January line item.

Measured in one process, same DuckDB settings, best of --repeat:

- bare scan: the PERFORMANCE.md reference query, hand-written over the same stored event files:
  sum of input_tokens as DECIMAL per customer and model for the month, llm_request only;
- hand-written usage: every aggregate the 6 metrics need, as a person would write it (one
  fused query for the sums and counts, one for the distinct users): the usage part of an
  invoice run without windows, filters on absent properties, decimal checks or rating;
- invoice run: `Meterql.invoice_run` on a fresh copy of the catalog (everything: periods,
  usage queries, rating, invoices written in one transaction), and a re-run (nothing changed).

Target (PERFORMANCE.md): invoice run / bare scan <= 2.0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.datagen import MODELS, data_dir, generate, ingested_home

CATALOG_VERSION = 1  # bump when catalog_document changes (it is part of the cache key)
AS_OF = "2026-02-02T01:00:00Z"


def catalog_document(n_customers: int) -> dict[str, Any]:
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

    metrics = [
        metric("Input Tokens", "sum", "llm_request", "input_tokens", ["model", "region"]),
        metric("Output Tokens", "sum", "llm_request", "output_tokens", ["model", "region"]),
        metric("Embedding Tokens", "sum", "embedding_request", "input_tokens", ["model", "region"]),
        metric("Images", "count", "image_generation", None, ["model", "region"]),
        metric("API Calls", "count", "api_call", None, ["region"]),
        metric("Active Users", "unique", "llm_request", "user_id", []),
    ]
    per_thousand = {"conversion_factor": "1000", "operation": "divide"}
    products = [
        {
            "name": "Input Tokens",
            "pricing_group_key": ["model"],
            "presentation_group_key": ["region"],
            "quantity_conversion": per_thousand,
        },
        {
            "name": "Output Tokens",
            "pricing_group_key": ["model"],
            "quantity_conversion": per_thousand,
        },
        {
            "name": "Embedding Tokens",
            "pricing_group_key": ["model"],
            "presentation_group_key": ["region"],
        },
        {"name": "Images", "pricing_group_key": ["model"], "presentation_group_key": ["region"]},
        {"name": "API Calls", "presentation_group_key": ["region"]},
        {"name": "Active Users"},
    ]
    for p in products:
        p.update({"type": "usage", "billable_metric_id": p["name"]})
    start = "2025-01-01T00:00:00Z"
    rates: list[dict[str, Any]] = []
    for i, model in enumerate(MODELS):
        values = {"model": model}
        rates += [
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
            {"product_id": "Embedding Tokens", "rate_type": "flat", "price": f"0.0{i + 1}"},
            {"product_id": "Images", "rate_type": "flat", "price": str(4 + i)},
        ]
        for r in rates[-4:]:
            r.update({"starting_at": start, "pricing_group_values": values})
    rates += [
        {"product_id": "API Calls", "starting_at": start, "rate_type": "flat", "price": "0.1"},
        {"product_id": "Active Users", "starting_at": start, "rate_type": "flat", "price": "50"},
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


def prepared_home(n_events: int, n_customers: int, seed: int) -> Path:
    """A cached directory: the ingested home's catalog with the benchmark catalog applied, and
    its events directory linked (built once; apply of 10k customers takes a while)."""
    from engine.api import Meterql

    dataset = generate(n_events, n_customers, seed)
    source = ingested_home(dataset)
    target = data_dir() / f"{dataset.key}-invoice-c{CATALOG_VERSION}.home"
    if (target / "catalog.duckdb").exists():
        return target
    building = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    _link_home(source.path, building)
    doc = building / "catalog.json"
    doc.write_text(json.dumps(catalog_document(n_customers)))
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


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def _files(con: duckdb.DuckDBPyConnection, home: Path) -> str:
    paths = [
        str(home / "events" / p)
        for (p,) in con.execute("SELECT path FROM event_files ORDER BY path").fetchall()
    ]
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


BARE_SCAN = """
SELECT customer_id, p_model, sum(TRY_CAST(p_input_tokens AS DECIMAL(38, 12))) AS value
FROM read_parquet({files}, union_by_name = true)
WHERE event_type = 'llm_request'
  AND "timestamp" >= TIMESTAMP '2026-01-01' AND "timestamp" < TIMESTAMP '2026-02-01'
GROUP BY ALL
"""

# What a person would write by hand for the 6 metrics: one fused scan for the five sums and
# counts per customer, model and region, and one for the distinct users per customer.
HAND_WRITTEN = (
    """
SELECT customer_id, p_model, p_region,
       sum(TRY_CAST(p_input_tokens AS DECIMAL(38, 12))) FILTER (event_type = 'llm_request'),
       sum(TRY_CAST(p_output_tokens AS DECIMAL(38, 12))) FILTER (event_type = 'llm_request'),
       sum(TRY_CAST(p_input_tokens AS DECIMAL(38, 12))) FILTER (event_type = 'embedding_request'),
       count(*) FILTER (event_type = 'image_generation'),
       count(*) FILTER (event_type = 'api_call')
FROM read_parquet({files}, union_by_name = true)
WHERE "timestamp" >= TIMESTAMP '2026-01-01' AND "timestamp" < TIMESTAMP '2026-02-01'
GROUP BY ALL
""",
    """
SELECT customer_id, count(DISTINCT p_user_id)
FROM read_parquet({files}, union_by_name = true)
WHERE "timestamp" >= TIMESTAMP '2026-01-01' AND "timestamp" < TIMESTAMP '2026-02-01'
  AND event_type = 'llm_request'
GROUP BY ALL
""",
)


def run(n_events: int, n_customers: int, seed: int, repeat: int) -> dict[str, Any]:
    from engine.api import Meterql

    prepared = prepared_home(n_events, n_customers, seed)
    results: dict[str, Any] = {"events": n_events, "customers": n_customers}
    with tempfile.TemporaryDirectory(prefix="meterql-bench-invoice-") as tmp:
        work = Path(tmp) / "home"
        work.mkdir()

        def fresh() -> Meterql:
            (work / "catalog.duckdb").unlink(missing_ok=True)
            _link_home(prepared, work)
            return Meterql.open(work)

        mq = fresh()
        files = _files(mq.con, work)
        bare = BARE_SCAN.format(files=files)
        hand = [q.format(files=files) for q in HAND_WRITTEN]
        runs, reruns, summaries = [], [], []
        for _ in range(repeat):
            mq.con.execute(bare).fetchall()  # warm the OS cache like the run below
            started = time.perf_counter()
            summary = mq.invoice_run(AS_OF)
            runs.append(time.perf_counter() - started)
            summaries.append(summary)
            [(lines,)] = mq.con.execute("SELECT count(*) FROM invoice_line_items").fetchall()
            results["line_items"] = lines
            started = time.perf_counter()
            mq.invoice_run(AS_OF)
            reruns.append(time.perf_counter() - started)
            mq.close()
            mq = fresh()
        results["bare_scan_s"], _ = _best(lambda: mq.con.execute(bare).fetchall(), repeat)
        results["fused_scan_s"], _ = _best(
            lambda: [mq.con.execute(q).fetchall() for q in hand], repeat
        )
        results["invoice_run_s"] = min(runs)
        results["invoice_rerun_s"] = min(reruns)
        best = summaries[runs.index(min(runs))]
        results["stages_s"] = best.stage_seconds
        results["invoices"] = best.invoices.created
        [(threads, memory)] = mq.con.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')"
        ).fetchall()
        results["threads"], results["memory_limit"] = threads, memory
        mq.close()
    results["ratio_run_vs_bare"] = results["invoice_run_s"] / results["bare_scan_s"]
    results["ratio_run_vs_fused"] = results["invoice_run_s"] / results["fused_scan_s"]
    results["spread_run_s"] = statistics.pstdev(runs) if len(runs) > 1 else 0.0
    return results


def table(r: dict[str, Any]) -> str:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items())
    rows = [
        ("bare scan-and-aggregate (sum input_tokens per customer and model)", r["bare_scan_s"]),
        ("hand-written usage of the 6 metrics (2 queries, no rating)", r["fused_scan_s"]),
        (
            f"meterql invoice run ({r['invoices']:,} invoices, {r['line_items']:,} line items)",
            r["invoice_run_s"],
        ),
        ("meterql invoice re-run (nothing changed)", r["invoice_rerun_s"]),
    ]
    out = [
        f"invoice benchmark: {r['events']:,} events, {r['customers']:,} customers, 6 metrics; "
        f"{os.cpu_count()} cores, DuckDB {duckdb.__version__} (threads {r['threads']}, "
        f"memory {r['memory_limit']}), Python {platform.python_version()}",
        "",
        "| measure | seconds |",
        "| --- | --- |",
        *(f"| {label} | {seconds:.2f} |" for label, seconds in rows),
        f"| **invoice run / bare scan** (target <= 2.0) | **{r['ratio_run_vs_bare']:.2f}** |",
        f"| invoice run / hand-written usage of the 6 metrics | {r['ratio_run_vs_fused']:.2f} |",
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
    args = parser.parse_args(argv)
    results = run(args.events, args.customers, args.seed, args.repeat)
    print(table(results))
    return results


if __name__ == "__main__":
    main()
