"""A year of invoice runs: do the nightly run and the invoice reads slow down as invoices pile up?

    python -m benchmarks.bench_history [--events N] [--customers C] [--months M]

On a copy of the invoice benchmark's light home (benchmarks.bench_invoice: the events of
January 2026, one monthly contract per customer), runs `invoice run` as the nightly job would
over M months: on the 2nd of each month (a new period: the month before is finalized, a new
draft is created) and on the 15th (a re-run: nothing to write but the drafts' recomputation).
Then times the reads a user makes of the year's invoices, as the CLI makes them:

- `invoice list` (the table: one row per invoice, its line count),
- `invoice list --format json` (every invoice with its line items),
- `invoice show ID` for one invoice, and an unknown id (which suggests the closest stored one).

Prints one row per run (its seconds and the invoices stored after it) and the reads' seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_invoice import _link_home, prepared_home
from benchmarks.datagen import environment


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def run(n_events: int, n_customers: int, months: int, seed: int = 42) -> dict[str, Any]:
    from engine.api import Meterql
    from engine.invoice_cli import print_invoice_list
    from engine.output import dumps
    from warehouse.errors import NotFoundError

    prepared = prepared_home(n_events, n_customers, seed, "light")
    runs: list[dict[str, Any]] = []
    reads: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="meterql-bench-history-") as tmp:
        work = Path(tmp) / "home"
        work.mkdir()
        _link_home(prepared, work)
        with Meterql.open(work) as mq:
            for i in range(months):
                year, month = 2026 + (1 + i) // 12, (1 + i) % 12 + 1
                for day in (2, 15):
                    as_of = f"{year}-{month:02d}-{day:02d}T01:00:00Z"
                    seconds, summary = _timed(lambda as_of=as_of: mq.invoice_run(as_of))
                    [(stored,)] = mq.con.execute("SELECT count(*) FROM invoices").fetchall()
                    runs.append(
                        {"as_of": as_of, "seconds": seconds, "stored": stored, "summary": summary}
                    )
            [(lines,)] = mq.con.execute("SELECT count(*) FROM invoice_line_items").fetchall()
            [(some_id,)] = mq.con.execute(
                "SELECT id FROM invoices WHERE line_count > 0 ORDER BY id LIMIT 1"
            ).fetchall()
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                reads["invoice list"], _ = _timed(
                    lambda: print_invoice_list(mq.invoice_summaries())
                )
                reads["invoice list --format json"], _ = _timed(
                    lambda: sink.write(dumps(mq.invoices()))
                )
            reads["invoice show ID"], _ = _timed(lambda: mq.invoice(some_id))
            typo = some_id[:-1] + ("0" if some_id[-1] != "0" else "1")

            def unknown() -> None:
                with contextlib.suppress(NotFoundError):
                    mq.invoice(typo)

            reads["invoice show (unknown id: suggests the closest)"], _ = _timed(unknown)
    return {
        "events": n_events,
        "customers": n_customers,
        "runs": runs,
        "reads": reads,
        "invoices": runs[-1]["stored"] if runs else 0,
        "lines": lines,
    }


def table(r: dict[str, Any]) -> str:
    out = [
        f"invoice history benchmark: {r['events']:,} events, {r['customers']:,} customers, "
        f"light catalog, {len(r['runs']) // 2} months of runs; {environment()}",
        "",
        "| as of | run (s) | created, updated, finalized, unchanged | invoices stored |",
        "| --- | ---: | --- | ---: |",
    ]
    for row in r["runs"]:
        c = row["summary"].invoices
        out.append(
            f"| {row['as_of']} | {row['seconds']:.2f} | {c.created}, {c.updated}, "
            f"{c.finalized}, {c.unchanged} | {row['stored']:,} |"
        )
    out += [
        "",
        f"reads of the {r['invoices']:,} invoices ({r['lines']:,} line items):",
        "",
        "| read | seconds |",
        "| --- | ---: |",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in r["reads"].items()),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=11, help="months of runs after January")
    args = parser.parse_args(argv)
    results = run(args.events, args.customers, args.months)
    print(table(results))
    return results


if __name__ == "__main__":
    main()
