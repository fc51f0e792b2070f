"""Run the benchmarks: `python -m benchmarks [--events N] [--only NAME]...`.

Every benchmark is a module of this package with a `main(argv: list[str] | None)` that accepts
`--events N` (and its own defaults otherwise).  To add one, add a line to `BENCHMARKS`.
`--events` is passed on to every module; other arguments after `--` go to them unchanged.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

# name -> module (each has main(argv) accepting --events N)
BENCHMARKS: dict[str, str] = {
    "ingest": "benchmarks.bench_ingest",
    "layout": "benchmarks.bench_layout",
    "wide": "benchmarks.bench_wide",
    "key_shapes": "benchmarks.bench_key_shapes",
    "compact": "benchmarks.bench_compact",
    "compiler": "benchmarks.bench_compiler",
    "invoice": "benchmarks.bench_invoice",
    "history": "benchmarks.bench_history",
    "compare": "benchmarks.bench_compare",
    "sql_metric": "benchmarks.bench_sql_metric",
    "memory": "benchmarks.bench_memory",
    "startup": "benchmarks.bench_startup",
}


def main(argv: list[str] | None = None) -> None:
    args_in = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, passthrough = args_in[:cut], args_in[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--events", type=int, help="events per benchmark (module default if absent)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        help="run only this benchmark (repeatable)",
    )
    args = parser.parse_args(args_in)
    chosen = args.only or list(BENCHMARKS)
    forwarded = (["--events", str(args.events)] if args.events else []) + passthrough
    for name in chosen:
        module = importlib.import_module(BENCHMARKS[name])
        started = time.perf_counter()
        print(f"== {name} ({BENCHMARKS[name]}) ==", flush=True)
        module.main(forwarded)
        print(f"== {name} done in {time.perf_counter() - started:.1f}s ==\n", flush=True)


if __name__ == "__main__":
    main()
