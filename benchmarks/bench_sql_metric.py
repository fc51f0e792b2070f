"""A SQL metric scoped to every customer at once vs evaluated customer by customer.

    python -m benchmarks.bench_sql_metric [--events 10000000] [--customers 1000 10000] [--sample 40]

The metric is the seed's example (unique users per region) over `llm_request` events:

    SELECT count(DISTINCT properties.user_id) AS value, properties.region
    FROM events WHERE event_type = 'llm_request' GROUP BY properties.region

Three ways, over the same stored events and one month:

    scoped (engine)     what `meterql usage` / invoices run: the scoped query for all customers,
                        in the locked-down sandbox connection, events streamed in as Arrow
    scoped (direct)     the same scoped query run on the catalog connection (no sandbox hop)
    per customer        the author's query evaluated for one customer at a time (the events
                        relation filtered to that customer, so Parquet row groups are pruned);
                        `--sample` customers are timed and the total is extrapolated to all

The per-customer results of the sampled customers are asserted equal to the scoped results.
The scoped sides run interleaved, best of 3.  Ratios are per-customer (extrapolated) / scoped,
taken in one run.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from sqlglot import exp

from benchmarks.bench_compiler import END, START, bench_home
from benchmarks.datagen import environment, generate
from engine.sql_run import run_sql_metric, single_window
from metric_compiler.sql_metric import check_sql, scoped_query
from warehouse.events import EventStore
from warehouse.home import Home

REPEAT = 3  # scoped runs, engine and direct interleaved, best of
SQL = """
SELECT count(DISTINCT properties.user_id) AS value, properties.region
FROM events WHERE event_type = 'llm_request' GROUP BY properties.region
"""


def _rows(table) -> set[tuple]:
    return {(r["customer_id"], r["region"], r["value"]) for r in table.to_pylist() if r["value"]}


def run(
    n_events: int, n_customers: int, sample: int, out: Callable[[str], None] = print
) -> dict[str, float]:
    dataset = generate(n_events, n_customers)
    home = bench_home(dataset)
    con = Home(home.path).connect(read_only=True)
    con.execute("SET threads = 2")
    checked = check_sql(SQL)
    store = EventStore(home, con)
    ids = [c for (c,) in con.execute("SELECT id FROM customers ORDER BY id").fetchall()]
    windows = single_window(ids, START, END)

    con.register("all_windows", windows)
    relation = store.relation(checked.properties, START, END)
    direct_sql = scoped_query(checked, relation, exp.table_("all_windows")).sql()
    t_engine = t_direct = float("inf")
    for _ in range(REPEAT):  # interleaved, best of REPEAT: neither side pays the cold start
        started = time.perf_counter()
        engine = run_sql_metric(home, con, checked, windows)
        t_engine = min(t_engine, time.perf_counter() - started)
        started = time.perf_counter()
        direct = con.sql(direct_sql).to_arrow_table()
        t_direct = min(t_direct, time.perf_counter() - started)
    assert _rows(direct) == _rows(engine), "the two scoped evaluations differ"

    chosen = random.Random(7).sample(ids, min(sample, len(ids)))
    per_customer: set[tuple] = set()
    started = time.perf_counter()
    for customer in chosen:
        one = relation.copy().where(
            exp.EQ(
                this=exp.column("customer_id", table="k"),
                expression=exp.Literal.string(customer),
            )
        )
        con.register("one_window", single_window([customer], START, END))
        query = scoped_query(checked, one, exp.table_("one_window")).sql()
        per_customer |= _rows(con.sql(query).to_arrow_table())
    t_sample = time.perf_counter() - started
    assert per_customer == {r for r in _rows(engine) if r[0] in set(chosen)}
    t_loop = t_sample / len(chosen) * len(ids)
    con.close()

    out(f"| {n_customers:,} | {t_engine:.2f} | {t_direct:.2f} | {t_sample / len(chosen):.3f} "
        f"| {t_loop:.1f} | {t_loop / t_engine:.0f}x |")  # fmt: skip
    return {"engine": t_engine, "direct": t_direct, "loop": t_loop}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--sample", type=int, default=40)
    args = parser.parse_args(argv)
    print(f"SQL metric scoping benchmark: {args.events:,} events, seed query (unique users per "
          f"region), one month; {environment()}")  # fmt: skip
    print(f"per-customer figures: {args.sample} sampled customers, extrapolated to all")
    print()
    print("| customers | scoped, engine (s) | scoped, direct (s) | per customer (s each) "
          "| per-customer loop, extrapolated (s) | loop / scoped |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n_customers in args.customers:
        run(args.events, n_customers, args.sample)


if __name__ == "__main__":
    main()
