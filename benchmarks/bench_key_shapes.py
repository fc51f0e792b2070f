"""Which ingest write path for which property keys: the rule of warehouse.ingest.pipeline, measured.

    python -m benchmarks.bench_key_shapes [--events 500000] [--shapes 20x5,60x10,120x10,...]

A dump's property keys decide how ingest writes it: with at most `DENSE_KEYS` keys, or when an
event holds on average at least `SPARSE_DENSITY` of them, ONE sorted query extracts every key of
every event into its column (cost: events x keys); otherwise the events are sorted with their
properties in one column and each date's values are listed in long form and pivoted (cost: the
values present; warehouse.ingest.sparse).  This benchmark ingests NDJSON dumps of several shapes
through BOTH paths (forcing each by those two constants) and shows which the rule picks.

A shape `KxE` is K keys in all, E per event: the events are spread over K / E event types, each
with its own E keys (as events of different kinds carry different properties), values of up to
three digits, one month, 1,000 customers.  Each side ingests into an empty home, in the same
process, one after the other; wall and CPU seconds (all threads of the process) and the write
phase from the ingest summary.  `--events` is the dump size of every shape.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchmarks.datagen import environment, formula_ndjson
from warehouse.home import Home
from warehouse.ingest import ingest, pipeline

SHAPES = "20x5,60x10,120x10,200x8,400x8"
NOW = datetime(2026, 2, 1)


def shape_dump(n_events: int, keys: int, per_event: int, target: Path) -> Path:
    """NDJSON events of `keys // per_event` event types, each with its own `per_event` keys."""
    types = max(1, keys // per_event)
    props = ", ".join(
        f"""'"k' || ((i % {types}) * {per_event} + {j}) || '":"' || (i % 997) || '"'"""
        for j in range(per_event)
    )
    return formula_ndjson(
        target,
        n_events,
        tid_prefix="t",
        customers=1000,
        event_type_sql=f"'e' || (i % {types})",
        days=28,
        properties_sql=f"concat_ws(',', {props})",
    )


def _ingest(source: Path, home_dir: Path, path: str) -> tuple[float, float, float]:
    """(wall s, CPU s, write phase s) of one ingest through the forced `path`."""
    saved = pipeline.DENSE_KEYS, pipeline.SPARSE_DENSITY
    pipeline.DENSE_KEYS, pipeline.SPARSE_DENSITY = (10**9, 0.0) if path == "dense" else (0, 2.0)
    try:
        home = Home(home_dir)
        home.init()
        wall, cpu = time.perf_counter(), time.process_time()
        summary = ingest(home, [source], now=NOW)
        return (
            time.perf_counter() - wall,
            time.process_time() - cpu,
            summary.phases.get("write", 0.0),
        )
    finally:
        pipeline.DENSE_KEYS, pipeline.SPARSE_DENSITY = saved


def rule(keys: int, per_event: int) -> str:
    """The path pipeline's rule picks for a dump of this shape."""
    return "many-keys" if pipeline.many_keys_path(keys, per_event, 1) else "dense"


def run(n_events: int, shapes: list[tuple[int, int]]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="meterql-bench-shapes-") as scratch:
        for keys, per_event in shapes:
            folder = Path(scratch) / f"{keys}x{per_event}"
            folder.mkdir()
            source = shape_dump(n_events, keys, per_event, folder / "events.ndjson")
            dense = _ingest(source, folder / "dense", "dense")
            sparse = _ingest(source, folder / "sparse", "many-keys")
            rows.append(
                {"keys": keys, "per_event": per_event, "dense": dense, "sparse": sparse,
                 "rule": rule(keys, per_event)}
            )  # fmt: skip
    return rows


def report(n_events: int, rows: list[dict]) -> None:
    print(f"ingest write paths by key shape: {n_events:,} NDJSON events each ({environment()})")
    print(
        "| keys x per event | density | dense path s (CPU s, write s) "
        "| many-keys path s (CPU s, write s) | faster | the rule picks |"
    )
    print("| --- | ---: | --- | --- | --- | --- |")
    for r in rows:
        d, s = r["dense"], r["sparse"]
        faster = "dense" if d[0] < s[0] else "many-keys"
        print(
            f"| {r['keys']} x {r['per_event']} | {r['per_event'] / r['keys']:.3f} "
            f"| {d[0]:.2f} ({d[1]:.2f}, {d[2]:.2f}) | {s[0]:.2f} ({s[1]:.2f}, {s[2]:.2f}) "
            f"| {faster} | {r['rule']} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000, help="events per shape")
    parser.add_argument("--shapes", default=SHAPES, help="KxE,... (K keys, E per event)")
    args = parser.parse_args(argv)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    report(args.events, run(args.events, shapes))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
