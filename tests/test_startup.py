"""Start-up: `meterql --help` and small commands load only what they need (lazy imports).

Timings are measured in benchmarks/bench_startup.py; this test checks the cause, which modules a
command imports, in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("duckdb", "pyarrow", "sqlglot", "pydantic", "rich", "pandas", "jinja2", "yaml")

PROBE = """
import json, sys
sys.argv = ["meterql", *json.loads(sys.argv[1])]
from engine.cli import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write(json.dumps(sorted(m for m in json.loads(sys.argv[-1]) if m in sys.modules)))
"""


def loaded(args: list[str], cwd) -> list[str]:
    """The HEAVY modules `meterql *args` imported."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE.replace("json.loads(sys.argv[-1])", repr(list(HEAVY))),
            json.dumps(args),
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=True,
    )
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_help_loads_no_heavy_module(tmp_path) -> None:
    assert loaded(["--help"], tmp_path) == []


@pytest.mark.parametrize(
    "args", [["invoice", "--help"], ["sql", "--help"], ["warehouse", "--help"]]
)
def test_sub_command_help_loads_only_pydantic(args, tmp_path) -> None:
    # typer builds its parameter converters with pydantic as soon as it builds a command that
    # takes options; nothing of meterql's own is loaded for a help text
    assert loaded(args, tmp_path) in ([], ["pydantic"])


def test_init_loads_duckdb_but_not_the_compiler_or_arrow(tmp_path) -> None:
    # pydantic comes with typer's parameter handling of any command that takes options
    got = loaded(["--home", str(tmp_path / "home"), "init"], tmp_path)
    assert "duckdb" in got
    assert not {"pyarrow", "sqlglot", "rich", "pandas", "jinja2", "yaml"} & set(got)


def test_sql_check_loads_no_arrow(tmp_path) -> None:
    # `meterql sql check` binds the query in the sandbox over no events: no pyarrow, no pandas
    sql = tmp_path / "metric.sql"
    sql.write_text("SELECT count(*) AS value FROM events")
    got = loaded(["sql", "check", str(sql)], tmp_path)
    assert {"duckdb", "sqlglot"} <= set(got)
    assert not {"pyarrow", "pandas"} & set(got)
