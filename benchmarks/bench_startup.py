"""Start-up time of the `meterql` command: --help and small commands, in fresh processes.

    python -m benchmarks.bench_startup [--runs 15]

Each command runs `--runs` times as a new process (the installed `meterql` script, run by this
interpreter); the table shows the median and best wall time, the bare interpreter
(`python -c pass`) for reference, and which heavy libraries the command imported (measured
with `python -X importtime`: cumulative milliseconds of each top-level import).  `init` gets a
fresh home every run.  `--events` is accepted (the benchmark runner passes it) and ignored.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.datagen import environment

HEAVY = ("duckdb", "pyarrow", "sqlglot", "pydantic", "rich", "pandas", "jinja2", "yaml", "typer")

COMMANDS: dict[str, list[str]] = {
    "python -c pass (interpreter only)": [],
    "meterql --help": ["--help"],
    "meterql invoice --help": ["invoice", "--help"],
    "meterql init (new home)": ["--home", "{home}", "init"],
    "meterql sql check (a small SQL metric)": ["sql", "check", "{sql}"],
}

SQL_METRIC = "SELECT count(*) AS value FROM events WHERE event_type = 'api_call'\n"


def _argv(args: list[str], home: Path, sql: Path) -> list[str]:
    if not args:
        return [sys.executable, "-c", "pass"]
    filled = [a.format(home=home, sql=sql) for a in args]
    script = Path(sys.executable).parent / "meterql"  # the installed console script
    entry = [str(script)] if script.exists() else ["-m", "engine.cli"]
    return [sys.executable, *entry, *filled]


def _imports(argv: list[str], cwd: Path) -> dict[str, float]:
    """Cumulative import milliseconds of the HEAVY top-level modules the command loaded."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, cwd=cwd
    )
    out: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)$", line)
        if match and match.group(3) in HEAVY:
            out[match.group(3)] = max(out.get(match.group(3), 0.0), int(match.group(1)) / 1000)
    return out


def run(runs: int) -> list[tuple[str, float, float, dict[str, float]]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="meterql-bench-startup-") as tmp:
        root = Path(tmp)
        sql = root / "metric.sql"
        sql.write_text(SQL_METRIC)
        for label, args in COMMANDS.items():
            times = []
            for i in range(runs):
                home = root / f"home-{i}"
                argv = _argv(args, home, sql)
                started = time.perf_counter()
                subprocess.run(argv, capture_output=True, check=True, cwd=root)
                times.append(time.perf_counter() - started)
                shutil.rmtree(home, ignore_errors=True)
            imports = _imports(_argv(args, root / "home-imports", sql), root)
            shutil.rmtree(root / "home-imports", ignore_errors=True)
            results.append((label, statistics.median(times), min(times), imports))
    return results


def table(results: list[tuple[str, float, float, dict[str, float]]], runs: int) -> str:
    out = [
        f"start-up benchmark: {runs} runs each, new process per run ({environment()})",
        "",
        "| command | median (s) | best (s) | heavy imports (cumulative ms) |",
        "| --- | ---: | ---: | --- |",
    ]
    for label, median, best, imports in results:
        loaded = ", ".join(f"{m} {ms:.0f}" for m, ms in sorted(imports.items())) or "none"
        out.append(f"| {label} | {median:.3f} | {best:.3f} | {loaded} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, dict[str, float]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)  # the runner passes it
    args = parser.parse_args(argv)
    os.environ.pop("METERQL_HOME", None)
    results = run(args.runs)
    print(table(results, args.runs))
    return results


if __name__ == "__main__":
    main()
