"""The nightly cron's commands killed for real (SIGKILL, SIGTERM, SIGINT) at seeded random and
chosen points, and two writers at once.

Every command starts from a copy of one prepared home.  After a kill the home must open, agree
with its files (tests/kill_harness.check_home), and re-running the same command must leave
exactly what one uninterrupted run leaves (kill_harness.content).  SIGTERM and SIGINT must stop
a command cleanly: exit 128 + the signal with a one-line message, and the home as it was (or, at
the commit, as one whole run leaves it) with nothing left to sweep.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from kill_harness import (
    Command,
    KillPoint,
    check_home,
    cli,
    content,
    copy_home,
    environment,
    meterql,
    ok,
)

pytestmark = pytest.mark.slow  # about 5 minutes on a loaded machine

SEED = 20261125
EVENTS = 120_000  # a batch of about 1-2 s on a loaded machine
CUSTOMERS = 40
NOW = "2026-03-06T00:00:00Z"  # ingest clock: February and March 1-5 are in the window
USAGE = tuple("--metric Tokens --group-by model --start 2026-01-01 --end 2026-04-01".split())

INGEST = Command(("ingest", "big.ndjson", "big.parquet", "--now", NOW))
INVOICE_RUN = Command(("invoice", "run", "--as-of", "2026-03-10T00:00:00Z"))
COMPACT = Command(("warehouse", "compact", "--grace-minutes", "0"))
APPLY = Command(("apply", "more.yaml"))


def catalog_doc(customers: range) -> dict[str, Any]:
    names = [f"cust-{i}" for i in customers]
    return {
        "billable_metrics": [
            {
                "name": "API Calls",
                "aggregation_type": "count",
                "event_type_filter": {"in_values": ["api_call"]},
            },
            {
                "name": "Tokens",
                "aggregation_type": "sum",
                "aggregation_key": "tokens",
                "event_type_filter": {"in_values": ["llm_request"]},
                "property_filters": [
                    {"name": "tokens", "exists": True},
                    {"name": "model", "exists": True},
                ],
                "group_keys": [["model"]],
            },
        ],
        "products": [
            {"name": "API Calls", "type": "usage", "billable_metric_id": "API Calls"},
            {
                "name": "Tokens",
                "type": "usage",
                "billable_metric_id": "Tokens",
                "pricing_group_key": ["model"],
            },
        ],
        "rate_cards": [
            {
                "name": "Card",
                "rates": [
                    {
                        "product_id": "API Calls",
                        "starting_at": "2026-01-01T00:00:00Z",
                        "rate_type": "flat",
                        "price": "0.25",
                    },
                    *(
                        {
                            "product_id": "Tokens",
                            "starting_at": "2026-01-01T00:00:00Z",
                            "rate_type": "flat",
                            "price": price,
                            "pricing_group_values": {"model": model},
                        }
                        for model, price in (("a", "1.5"), ("b", "0.3"))
                    ),
                ],
            }
        ],
        "customers": [{"name": c, "ingest_aliases": [f"alias-{c}"]} for c in names],
        "contracts": [
            {
                "name": f"{c} contract",
                "customer_id": c,
                "rate_card_id": "Card",
                "starting_at": "2026-01-01T00:00:00Z",
                "usage_statement_schedule": {"frequency": "MONTHLY"},
            }
            for c in names
        ],
    }


def events(first: int, n: int, rng: random.Random) -> list[dict[str, Any]]:
    start = datetime(2026, 2, 1)
    out = []
    for i in range(first, first + n):
        customer = f"cust-{rng.randrange(CUSTOMERS)}"
        at = start + timedelta(seconds=rng.randrange(33 * 86400))
        if rng.random() < 0.5:
            kind, props = "api_call", {"region": rng.choice("xyz")}
        else:
            kind, props = "llm_request", {"model": rng.choice("ab"), "tokens": str(i % 997)}
        out.append(
            {
                "transaction_id": f"tx-{i}",
                "customer_id": customer if i % 2 else f"alias-{customer}",
                "event_type": kind,
                "timestamp": at.isoformat() + "Z",
                "properties": props,
            }
        )
    return out


def write_ndjson(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = ("transaction_id", "customer_id", "event_type", "timestamp")
    table = {c: [r[c] for r in rows] for c in columns}
    table["properties"] = [json.dumps(r["properties"]) for r in rows]
    pq.write_table(pa.table(table), path)


@dataclass(frozen=True)
class Starts:
    """Prepared homes, each the start of one command (files in `folder`, the commands' cwd is
    the repository, so their arguments name files by absolute path)."""

    folder: Path
    apply: Path
    ingest: Path
    invoice_run: Path
    compact: Path


def absolute(command: Command, folder: Path) -> Command:
    return Command(tuple(str(folder / a) if (folder / a).exists() else a for a in command.args))


@pytest.fixture(scope="module")
def starts(tmp_path_factory: pytest.TempPathFactory) -> Starts:
    folder = tmp_path_factory.mktemp("kill-points")
    rng = random.Random(SEED)
    (folder / "catalog.yaml").write_text(yaml.safe_dump(catalog_doc(range(CUSTOMERS))))
    (folder / "more.yaml").write_text(yaml.safe_dump(catalog_doc(range(CUSTOMERS + 300))))
    early = events(0, 2_000, rng)
    big = events(1_000, EVENTS, rng)  # tx-1000 ... tx-1999 are duplicates of early ones
    big[5]["timestamp"] = "not a time"  # a rejected event: a rejects file
    write_ndjson(folder / "early.ndjson", early)
    write_ndjson(folder / "big.ndjson", big[: EVENTS // 2])
    write_parquet(folder / "big.parquet", big[EVENTS // 2 :])

    apply = folder / "start-apply"
    ok(apply, "init")
    ok(apply, "apply", str(folder / "catalog.yaml"))
    ingest = copy_home(apply, folder / "start-ingest")
    ok(ingest, "ingest", str(folder / "early.ndjson"), "--now", NOW)
    ok(ingest, "invoice", "run", "--as-of", "2026-02-20T00:00:00Z")  # January final, February draft
    invoice_run = copy_home(ingest, folder / "start-invoice-run")
    ok(invoice_run, *absolute(INGEST, folder).args)
    compact = copy_home(ingest, folder / "start-compact")
    ok(compact, "ingest", str(folder / "big.ndjson"), "--now", NOW)
    ok(compact, "ingest", str(folder / "big.parquet"), "--now", NOW)
    return Starts(folder, apply, ingest, invoice_run, compact)


# (command, its start, whether it sweeps, the globs whose first new match is a kill point: a
# staged file written, a file renamed into events/, the catalog's WAL written by a commit)
CASES = {
    "ingest": (INGEST, "ingest", True, ("staging/ingest-*/files/*", "events/*/ingest-*")),
    "invoice_run": (INVOICE_RUN, "invoice_run", False, ("catalog.duckdb.wal",)),
    "compact": (COMPACT, "compact", True, ("staging/compact-*/*/files/*", "events/*/compact-*")),
    "apply": (APPLY, "apply", False, ("catalog.duckdb.wal",)),
}


def kill_points(name: str, seconds: float, globs: tuple[str, ...]) -> list[KillPoint]:
    """Seeded random delays spread over the command's measured duration (more of them late,
    where it writes and commits), and short delays after each chosen moment."""
    rng = random.Random(f"{SEED}-{name}")
    spread = [KillPoint(rng.uniform(0.3, 0.8) * seconds)]  # (one: the suite's time)
    late = [KillPoint(rng.uniform(0.8, 1.0) * seconds)]
    chosen = [KillPoint(rng.choice((0.0, 0.002, 0.01, 0.03)), g) for g in globs]
    return spread + late + chosen


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_killed_command_leaves_a_consistent_home_and_its_rerun_the_same_content(
    starts: Starts, tmp_path: Path, name: str
) -> None:
    command, start, sweeps, globs = CASES[name]
    command = absolute(command, starts.folder)
    reference = copy_home(getattr(starts, start), tmp_path / "reference")
    seconds = command.run(reference)
    expected = content(reference, USAGE)
    check_home(reference, swept=sweeps, opens=False)
    for number, point in enumerate(kill_points(name, seconds, globs)):
        home = copy_home(getattr(starts, start), tmp_path / f"killed-{number}")
        stopped = command.stop(home, point, signal.SIGKILL)
        assert stopped.returncode in (0, -signal.SIGKILL), (point, stopped.stderr[-2000:])
        check_home(home, swept=False)
        command.run(home)
        check_home(home, swept=sweeps, opens=False)
        assert content(home, USAGE) == expected, f"{name} killed at {point}"


def _one_line_error(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(stderr.splitlines()) == 1, stderr[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_sigterm_and_sigint_stop_a_command_cleanly(
    starts: Starts, tmp_path: Path, name: str, sig: signal.Signals
) -> None:
    """Stopped as it writes (or commits): exit 128 + the signal's number with one line on
    stderr, and the home exactly as it was or, stopped as it committed, exactly as one whole
    run leaves it, with nothing left behind for a later command to sweep.  Before: SIGTERM
    ended the process where it was (an ingest's staged files stayed), and Ctrl-C during a
    query was an "internal error" with a traceback."""
    command, start, _, globs = CASES[name]
    command = absolute(command, starts.folder)
    before = content(getattr(starts, start), USAGE)
    whole = copy_home(getattr(starts, start), tmp_path / "whole")
    command.run(whole)
    home = copy_home(getattr(starts, start), tmp_path / "stopped")
    stopped = command.stop(home, KillPoint(0.0, globs[0]), sig)
    assert stopped.reached, "the command finished before the signal"
    assert stopped.returncode == 128 + sig, (stopped.returncode, stopped.stderr[-3000:])
    _one_line_error(stopped.stderr)
    assert f"stopped by {sig.name}" in stopped.stderr
    check_home(home, swept=True, opens=False)
    assert content(home, USAGE) in (before, content(whole, USAGE))


def test_a_second_writer_refuses_or_waits_and_never_interleaves(
    starts: Starts, tmp_path: Path
) -> None:
    """A second ingest while one runs fails at once with a one-line error (no wait allowed), or
    waits for it; an invoice run started meanwhile waits and sees the whole batch."""
    ingest = absolute(INGEST, starts.folder)
    reference = copy_home(starts.ingest, tmp_path / "reference")
    ingest.run(reference)
    ok(reference, *INVOICE_RUN.args)
    expected = content(reference, USAGE)

    home = copy_home(starts.ingest, tmp_path / "home")
    first = subprocess.Popen(
        cli(home, *ingest.args), env=environment(), stdout=subprocess.DEVNULL, text=True
    )
    try:
        before = set(home.glob("staging/ingest-*"))
        while first.poll() is None and set(home.glob("staging/ingest-*")) <= before:
            pass
        refused = meterql(home, *ingest.args)
        if refused.returncode == 0:  # the first one had finished (a fast machine): duplicates
            assert first.poll() is not None and " 0 accepted" in refused.stdout, refused.stdout
        else:
            assert refused.returncode == 1, refused.stderr[-2000:]
            _one_line_error(refused.stderr)
            assert "another" in refused.stderr
        waited = meterql(home, *INVOICE_RUN.args, METERQL_LOCK_TIMEOUT="120")
        assert waited.returncode == 0, waited.stderr[-2000:]
    finally:
        assert first.wait(timeout=120) == 0
    check_home(home, swept=False, opens=False)
    assert content(home, USAGE) == expected
