"""The CLI contract for init and apply: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()


def meterql(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console entry point in a subprocess (real exit codes and stderr)."""
    return subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_init_then_apply_json(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert "initialised" in runner.invoke(app, ["--home", home, "init"]).output
    doc = tmp_path / "c.yaml"
    doc.write_text("customers: [{name: Acme, ingest_aliases: [acme]}]\n")
    result = runner.invoke(app, ["--home", home, "apply", str(doc), "--format", "json"])
    assert result.exit_code == 0, result.output
    (obj,) = json.loads(result.output)["objects"]
    assert (obj["kind"], obj["name"], obj["action"]) == ("customers", "Acme", "created")


def test_user_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert meterql("--home", home, "init").returncode == 0
    doc = tmp_path / "c.yaml"
    doc.write_text("customers: [{name: Acme, ingest_alias: [acme]}]\n")
    result = meterql("--home", home, "apply", str(doc))
    assert result.returncode == 1
    assert result.stderr.startswith("error: 1 problem(s)")
    assert "unknown field 'ingest_alias'; did you mean 'ingest_aliases'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_uninitialised_home_exit_1(tmp_path: Path) -> None:
    doc = tmp_path / "c.yaml"
    doc.write_text("customers: []\n")
    result = meterql("--home", str(tmp_path / "nope"), "apply", str(doc))
    assert result.returncode == 1
    assert "is not initialised" in result.stderr and "init" in result.stderr


def test_home_from_environment(tmp_path: Path) -> None:
    result = meterql("init", env={"METERQL_HOME": str(tmp_path / "envhome")})
    assert result.returncode == 0
    assert (tmp_path / "envhome" / "catalog.duckdb").is_file()


def test_an_empty_home_is_refused_not_taken_as_not_given(tmp_path: Path) -> None:
    """`meterql --home "$HOME_DIR" invoice run` with the variable unset must not run on
    $METERQL_HOME or ./.meterql."""
    other = tmp_path / "envhome"
    assert meterql("init", env={"METERQL_HOME": str(other)}).returncode == 0
    result = meterql("--home", "", "invoice", "list", env={"METERQL_HOME": str(other)})
    assert result.returncode == 1
    assert result.stderr.startswith("error: --home is empty; give the home's directory")


def test_usage_error_exit_2(tmp_path: Path) -> None:
    result = meterql("--home", str(tmp_path), "apply")
    assert result.returncode == 2


def test_apply_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    doc = tmp_path / "c.yaml"
    doc.write_text("customers: []\n")
    result = meterql("--home", str(tmp_path), "apply", str(doc), "--format", "yaml")
    assert result.returncode == 2 and "'yaml' is not one of text, json" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "usage",
                "--metric",
                "m",
                "--start",
                "2026-03-01",
                "--end",
                "2026-04-01",
                "--window",
                "days",
            ],
            "Invalid value for --window: 'days' is not one of none, hour, day",
        ),
        (
            ["compile", "--metric", "m", "--window", "week"],
            "Invalid value for --window: 'week' is not one of none, hour, day",
        ),
        (
            ["invoice", "list", "--status", "paid"],
            "Invalid value for --status: 'paid' is not one of draft, finalized, void",
        ),
    ],
)
def test_a_bad_choice_option_is_a_usage_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Like a bad --format: exit 2, click's message (before the home is opened)."""
    assert meterql("--home", str(tmp_path), "init").returncode == 0
    result = meterql("--home", str(tmp_path), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_choice_options_take_any_letter_case(tmp_path: Path) -> None:
    """As enum values in documents: `--format JSON`, `--status DRAFT`, `--window Day`."""
    home = str(tmp_path)
    assert meterql("--home", home, "init").returncode == 0
    listed = meterql("--home", home, "invoice", "list", "--status", "DRAFT", "--format", "JSON")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])
    doc = tmp_path / "m.yaml"
    doc.write_text("billable_metrics: [{name: Calls, aggregation_type: count}]\n")
    assert meterql("--home", home, "apply", str(doc), "--format", "Text").returncode == 0
    usage = meterql(
        "--home",
        home,
        "usage",
        "--metric",
        "Calls",
        "--start",
        "2026-03-01",
        "--end",
        "2026-03-02",
        "--window",
        "Day",
        "--format",
        "JSON",
    )
    assert (usage.returncode, json.loads(usage.stdout)) == (0, []), usage.stderr


def test_the_api_object_closes_its_catalog_connection_as_a_context_manager(
    tmp_path: Path,
) -> None:
    # every CLI command opens the home with `with Meterql.open(...)`: the catalog file is free
    # for another process as soon as the command's work is done
    from engine.api import Meterql

    home = tmp_path / "home"
    with Meterql.init(home) as mq:
        mq.con.execute("SELECT 1")
    assert mq._con is None
    probe = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('SELECT 1')"
    opened = subprocess.run(
        [sys.executable, "-c", probe, str(home / "catalog.duckdb")],
        capture_output=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr


def test_corrupt_catalog_is_a_user_error_not_a_bug(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "catalog.duckdb").write_text("garbage\n")
    doc = tmp_path / "c.yaml"
    doc.write_text("customers: []\n")
    for args in (["apply", str(doc)], ["invoice", "list"], ["init"]):
        result = meterql("--home", str(home), *args)
        assert result.returncode == 1, (args, result.stderr)
        assert "cannot open its catalog" in result.stderr and "catalog.duckdb" in result.stderr
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_a_home_path_that_is_not_utf8_is_a_user_error(tmp_path: Path) -> None:
    home = os.fsencode(tmp_path) + b"/h\xff"
    result = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", "init"],
        capture_output=True,
        text=True,
        env={**os.environ, "METERQL_HOME": os.fsdecode(home)},
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: meterql home ") and "is not UTF-8 text" in result.stderr
