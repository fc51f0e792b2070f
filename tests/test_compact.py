"""Compaction (warehouse.compact): same rows after, sorted files, dedup kept, idempotent, crash
safety before and after the commit, readers keep reading during the grace period, late events
still found, hostile property names, and the `meterql warehouse compact` command."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from test_invoices_support import apply_docs, commit_events, event
from typer.testing import CliRunner

import warehouse.compact as compact_mod
from engine.api import Meterql
from engine.cli import app
from engine.output import dumps
from warehouse.errors import UserError
from warehouse.events import EventStore, events_relation
from warehouse.ingest import ingest

HOSTILE = ["Model", "model", 'a"b', "x y", "'; DROP TABLE event_files; --", "p_%41", "ünï"]
PROPS = ["input_tokens", "user_id", *HOSTILE]
DATES = ["2026-03-02", "2026-03-03", "2026-03-04"]


class Crash(BaseException):
    """Stands for the process dying (nothing of ours handles it)."""


def catalog() -> dict[str, Any]:
    return {
        "billable_metrics": [
            {
                "name": "Input Tokens",
                "aggregation_type": "sum",
                "aggregation_key": "input_tokens",
                "event_type_filter": {"in_values": ["llm_request"]},
                "property_filters": [
                    {"name": "input_tokens", "exists": True},
                    {"name": "Model", "exists": True},
                ],
                "group_keys": [["Model"]],
            },
            {"name": "Calls", "aggregation_type": "count"},
        ],
        "products": [
            {
                "name": "Input Tokens",
                "type": "usage",
                "billable_metric_id": "Input Tokens",
                "pricing_group_key": ["Model"],
            },
            {"name": "Calls", "type": "usage", "billable_metric_id": "Calls"},
        ],
        "rate_cards": [
            {
                "name": "Standard",
                "rates": [
                    {
                        "product_id": "Input Tokens",
                        "starting_at": "2026-01-01T00:00:00Z",
                        "rate_type": "flat",
                        "price": "1.5",
                        "pricing_group_values": {"Model": m},
                    }
                    for m in ("m0", "m1")
                ]
                + [
                    {
                        "product_id": "Calls",
                        "starting_at": "2026-01-01T00:00:00Z",
                        "rate_type": "flat",
                        "price": "2",
                    }
                ],
            }
        ],
        "customers": [{"name": n, "ingest_aliases": [n.lower()]} for n in ("Acme", "Beta")],
        "contracts": [
            {
                "name": f"{n}-monthly",
                "customer_id": n,
                "rate_card_id": "Standard",
                "starting_at": "2026-03-01T00:00:00Z",
                "usage_statement_schedule": {"frequency": "MONTHLY"},
            }
            for n in ("Acme", "Beta")
        ],
    }


def batch(k: int, n: int = 12) -> list[dict[str, Any]]:
    """n events of batch k over DATES, two customers, two event types, hostile properties."""
    out = []
    for i in range(n):
        props = {"input_tokens": str(10 * k + i), "user_id": f"u{i % 3}"}
        props.update({name: f"{name}-v{(i + k) % 2}" for name in HOSTILE[2:]})
        props["Model"] = f"m{(i + k) % 2}"
        if i % 2:
            props["model"] = "lower"
        out.append(
            event(
                f"b{k}-{i}",
                ("acme", "beta")[i % 2],
                f"{DATES[i % 3]}T{(5 * i + k) % 24:02d}:{k:02d}:00Z",
                ("llm_request", "api_call")[i % 4 == 3],
                **props,
            )
        )
    return out


@pytest.fixture
def mq(tmp_path: Path):
    m = Meterql.init(tmp_path / "home")
    apply_docs(m, tmp_path, catalog())
    for k in range(3):
        commit_events(m, batch(k), now="2026-03-05T00:00:00Z")
    yield m
    m.close()


def rows(mq: Meterql, files=None) -> list[tuple]:
    """Every stored event with every column, sorted (the relation readers get)."""
    store = EventStore(mq.home, mq.con)
    relation = (
        store.relation(PROPS, resolve_customers=False)
        if files is None
        else events_relation(files, PROPS, None, None, resolve_customers=False)
    )
    return sorted(mq.con.execute(relation.sql("duckdb")).fetchall(), key=repr)


def manifest(mq: Meterql) -> list[tuple]:
    return mq.con.execute(
        "SELECT path, batch_id, event_date, row_count FROM event_files ORDER BY path"
    ).fetchall()


def event_files_on_disk(mq: Meterql) -> set[str]:
    root = mq.home.events_dir
    return {str(p.relative_to(root)) for p in root.glob("*/*.parquet")}


def test_compaction_keeps_exactly_the_rows_in_one_sorted_file_per_date(mq):
    before = rows(mq)
    assert len(manifest(mq)) == 9  # 3 batches x 3 dates
    summary = mq.compact()
    assert summary.compaction_id is not None
    assert [str(p.event_date) for p in summary.partitions] == DATES
    assert (summary.files_before, summary.files_after, summary.rows) == (9, 3, 36)
    assert rows(mq) == before  # every column, batch_id and ingested_at of each row included
    listed = manifest(mq)
    assert len(listed) == 3
    assert {b for _, b, _, _ in listed} == {summary.compaction_id}
    for path, _, event_date, count in listed:
        assert path.startswith(f"event_date={event_date}/")
        table = pq.read_table(mq.home.events_dir / path)
        assert table.num_rows == count
        keys = list(
            zip(
                *(table.column(c).to_pylist() for c in compact_mod.SORT_KEY),
                strict=True,
            )
        )
        assert keys == sorted(keys)
        assert "p_x%20y" in table.column_names and "p_%4Dodel" in table.column_names
    [(status, sources, accepted)] = mq.con.execute(
        "SELECT status, sources, accepted FROM ingest_batches WHERE batch_id = ?",
        [summary.compaction_id],
    ).fetchall()
    assert (status, len(sources), accepted) == ("compacted", 9, 36)


def test_usage_and_invoices_are_the_same_after_compaction(mq):
    usage_before = mq.usage("Input Tokens", "2026-03-01", "2026-04-01", group_by=["Model"])
    mq.invoice_run("2026-03-10T00:00:00Z")
    invoices_before = dumps(mq.invoices())
    mq.compact()
    usage_after = mq.usage("Input Tokens", "2026-03-01", "2026-04-01", group_by=["Model"])
    assert usage_after.to_pylist() == usage_before.to_pylist()
    assert usage_before.num_rows == 4  # 2 customers x 2 models
    again = mq.invoice_run("2026-03-10T00:00:00Z")
    assert again.invoices.unchanged == 2 and again.invoices.updated == 0
    assert dumps(mq.invoices()) == invoices_before


def test_reingesting_after_compaction_finds_every_event_a_duplicate(mq, tmp_path):
    mq.compact()
    path = tmp_path / "again.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for k in range(3) for e in batch(k)))
    summary = ingest(mq.home, [path], now=datetime(2026, 3, 5), con=mq.con)
    assert (summary.accepted, summary.duplicates) == (0, 36)


def test_compaction_keeps_the_ingest_time_dedup_window(tmp_path):
    """Dedup reads the files of batches ingested within 35 days of a batch's clock (see
    warehouse.ingest.dedup): a compacted file counts as ingested when its newest rows were,
    not earlier (here the batches' clock is ahead of the wall clock the compaction runs at)."""
    clock = datetime(2027, 6, 1)
    mq = Meterql.init(tmp_path / "home")
    events = [
        {"transaction_id": tid, "customer_id": "c", "event_type": "e", "timestamp": ts}
        for tid, ts in (("retry", "2027-04-29T00:00:00Z"), ("other", "2027-04-29T01:00:00Z"))
    ]
    for i, e in enumerate(events):  # two batches: two files of one date, to compact
        path = tmp_path / f"b{i}.ndjson"
        path.write_text(json.dumps(e) + "\n")
        assert ingest(mq.home, [path], now=clock, con=mq.con).accepted == 1
    assert len(mq.compact(grace_minutes=0).partitions) == 1
    retry = tmp_path / "retry.ndjson"  # 6 days later, stamped then: 39 days after the first
    retry.write_text(json.dumps({**events[0], "timestamp": "2027-06-07T00:00:00Z"}) + "\n")
    summary = ingest(mq.home, [retry], now=clock + timedelta(days=6), con=mq.con)
    assert (summary.accepted, summary.duplicates) == (0, 1)
    mq.close()


def test_a_second_compaction_does_nothing(mq):
    first = mq.compact()
    listed = manifest(mq)
    second = mq.compact()
    assert second.compaction_id is None and second.partitions == []
    assert second.lines() == ["nothing to compact"]
    assert manifest(mq) == listed
    assert first.files_after == len(listed)


def test_target_rows_splits_a_date_into_sorted_files_and_is_idempotent(mq):
    before = rows(mq)
    assert mq.compact(target_rows=4).partitions == []  # 3 files of 4 rows: nothing to gain
    summary = mq.compact(target_rows=8)
    assert rows(mq) == before
    listed = manifest(mq)
    assert [c for *_, c in listed] == [8, 4] * 3
    for event_date in DATES:
        paths = [p for p, _, d, _ in listed if str(d) == event_date]
        keys = []
        for path in sorted(paths, key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0])):
            table = pq.read_table(mq.home.events_dir / path)
            keys += zip(*(table.column(c).to_pylist() for c in compact_mod.SORT_KEY), strict=True)
        assert keys == sorted(keys)
    assert summary.files_after == 6
    assert mq.compact(target_rows=8).partitions == []


def test_a_crash_before_the_commit_changes_nothing_and_its_files_are_swept(mq, monkeypatch):
    before, listed, on_disk = rows(mq), manifest(mq), event_files_on_disk(mq)

    def crash(*args, **kwargs):
        raise Crash("killed before the commit")

    monkeypatch.setattr(compact_mod, "_commit_partition", crash)
    with pytest.raises(Crash):
        mq.compact()
    # an exception: its new files are removed at once
    assert (manifest(mq), event_files_on_disk(mq), rows(mq)) == (listed, on_disk, before)

    # a kill runs no clean-up: the placed new file stays, unlisted and unread
    monkeypatch.setattr(compact_mod, "remove_quietly", lambda paths: None)
    with pytest.raises(Crash):
        mq.compact()
    orphans = event_files_on_disk(mq) - on_disk
    assert len(orphans) == 1 and all(o.split("/")[1].startswith("compact-") for o in orphans)
    assert (manifest(mq), rows(mq)) == (listed, before)
    monkeypatch.undo()
    summary = mq.compact()
    assert summary.orphan_files_deleted == 1
    assert rows(mq) == before and len(manifest(mq)) == 3
    assert not [p for p in mq.home.staging_dir.iterdir() if p.name.startswith("compact-")]


def test_a_commit_that_fails_reports_its_own_error_and_changes_nothing(mq):
    """The catalog's COMMIT fails (no space left for its write-ahead log): that error is
    raised, not the ROLLBACK's "no transaction is active" after it, and nothing changed."""
    from full_disk import CommitFails

    before, listed, on_disk = rows(mq), manifest(mq), event_files_on_disk(mq)
    with pytest.raises(duckdb.TransactionException, match="No space left on device"):
        compact_mod.compact(mq.home, CommitFails(mq.con))
    assert (manifest(mq), event_files_on_disk(mq), rows(mq)) == (listed, on_disk, before)
    assert mq.compact().files_after == 3


def test_a_crash_after_a_commit_keeps_that_partition_compacted(mq, monkeypatch):
    before = rows(mq)
    commit = compact_mod._commit_partition

    def commit_then_crash(*args, **kwargs):
        commit(*args, **kwargs)
        raise Crash("killed after the commit")

    monkeypatch.setattr(compact_mod, "_commit_partition", commit_then_crash)
    monkeypatch.setattr(compact_mod, "remove_quietly", lambda paths: None)
    with pytest.raises(Crash):
        mq.compact()
    monkeypatch.undo()
    listed = manifest(mq)
    assert sorted(str(d) for _, _, d, _ in listed) == [DATES[0], *[DATES[1]] * 3, *[DATES[2]] * 3]
    assert rows(mq) == before
    retired = [p for (p,) in mq.con.execute("SELECT path FROM retired_event_files").fetchall()]
    assert len(retired) == 3
    assert all((mq.home.events_dir / p).is_file() for p in retired)  # in their grace period
    summary = mq.compact(now=datetime.now() + timedelta(hours=2))
    assert [str(p.event_date) for p in summary.partitions] == DATES[1:]
    assert summary.retired_files_deleted == 3 + 6  # the earlier run's, then this run's
    assert rows(mq) == before
    assert event_files_on_disk(mq) == {p for p, *_ in manifest(mq)}


def test_an_interrupt_just_after_a_commit_keeps_that_partitions_new_files(mq, monkeypatch):
    """Ctrl-C or SIGTERM (engine.cli) landing after a partition's COMMIT returned: its new
    files are listed, so they stay (the failure clean-up removed them: a manifest naming
    missing files)."""
    before = rows(mq)
    commit = compact_mod._commit_partition

    def commit_then_interrupt(*args, **kwargs):
        commit(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(compact_mod, "_commit_partition", commit_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        mq.compact()
    monkeypatch.undo()
    assert {p for p, *_ in manifest(mq)} <= event_files_on_disk(mq)
    assert rows(mq) == before


def test_a_reader_that_listed_before_the_compaction_reads_during_the_grace_period(mq):
    before = rows(mq)
    listed_early = EventStore(mq.home, mq.con).files()
    assert len(listed_early) == 9
    mq.compact(grace_minutes=30)
    assert rows(mq, listed_early) == before  # old files still there
    assert rows(mq) == before
    # past the grace period, the next compaction deletes them: the stale list no longer reads
    later = mq.compact(now=datetime.now() + timedelta(minutes=31))
    assert later.retired_files_deleted == 9
    with pytest.raises(duckdb.IOException):
        rows(mq, listed_early)
    assert event_files_on_disk(mq) == {p for p, *_ in manifest(mq)}


def test_an_ingest_during_the_grace_period_keeps_the_retired_files(mq, tmp_path):
    before = rows(mq)
    listed_early = EventStore(mq.home, mq.con).files()
    mq.compact(grace_minutes=30)
    path = tmp_path / "more.ndjson"
    path.write_text(json.dumps(event("new-1", "acme", "2026-03-04T00:00:00Z", "api_call")) + "\n")
    assert ingest(mq.home, [path], now=datetime(2026, 3, 5), con=mq.con).accepted == 1
    assert rows(mq, listed_early) == before  # the ingest's orphan sweep left them alone


def test_zero_grace_deletes_the_replaced_files_at_once(mq):
    summary = mq.compact(grace_minutes=0)
    assert summary.retired_files_deleted == 9
    assert event_files_on_disk(mq) == {p for p, *_ in manifest(mq)}


def test_rows_that_do_not_match_abort_and_leave_everything_as_it_was(mq, monkeypatch):
    before, listed, on_disk = rows(mq), manifest(mq), event_files_on_disk(mq)
    write = compact_mod.write_event_table
    monkeypatch.setattr(
        compact_mod, "write_event_table", lambda t, path, kept: write(t.slice(1), path, kept)
    )
    with pytest.raises(RuntimeError, match="do not hold the same rows"):
        mq.compact()
    assert (manifest(mq), event_files_on_disk(mq), rows(mq)) == (listed, on_disk, before)
    [(n,)] = mq.con.execute("SELECT count(*) FROM retired_event_files").fetchall()
    assert n == 0


def test_late_events_are_still_found_when_their_batch_was_compacted_before_a_run(
    tmp_path,
):
    """A late batch compacted before any invoice run saw it is still late; the early batches
    compacted with it are not."""
    found = []
    for compact_first in (False, True):
        m = Meterql.init(tmp_path / f"home-{compact_first}")
        apply_docs(m, tmp_path, catalog())
        for k in range(2):
            commit_events(m, batch(k), now="2026-03-05T00:00:00Z")
        m.invoice_run("2026-04-03T00:00:00Z")  # March finalized
        if compact_first:
            m.compact()
        late = [
            event("late-1", "acme", "2026-03-03T09:00:00Z", input_tokens="5", Model="m0"),
            event("late-2", "beta", "2026-03-02T09:00:00Z", input_tokens="5", Model="m1"),
        ]
        commit_events(m, late, now="2026-04-03T00:00:00Z")
        if compact_first:
            assert len(m.compact().partitions) == 2
        summary = m.invoice_run("2026-04-04T00:00:00Z")
        found.append(sorted((x.customer_id, x.events) for x in summary.late_events))
        m.close()
    assert found[0] == found[1]
    assert [n for _, n in found[1]] == [1, 1]


def cli(home: Path, *args: str):
    return CliRunner().invoke(app, ["--home", str(home), *args], catch_exceptions=False)


def test_cli_compact_json_and_text(mq):
    home = mq.home.path
    mq.close()
    result = cli(home, "warehouse", "compact", "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["files_before"] == 9 and out["files_after"] == 3 and out["rows"] == 36
    assert [p["event_date"] for p in out["partitions"]] == DATES
    assert out["grace_seconds"] == 1800
    text = cli(home, "warehouse", "compact")
    assert text.exit_code == 0 and text.output.strip() == "nothing to compact"


def test_cli_bad_format_is_a_usage_error(mq):
    home = mq.home.path
    mq.close()
    result = cli(home, "warehouse", "compact", "--format", "yaml")
    assert result.exit_code == 2 and "'yaml' is not one of text, json" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grace-minutes", "-1"], "--grace-minutes -1.0 is negative"),
        (["--grace-minutes", "nan"], "--grace-minutes nan is not a number of minutes"),
    ],
)
def test_cli_bad_options_are_one_line_user_errors(mq, args, message):

    home = mq.home.path
    mq.close()
    with pytest.raises(UserError, match=message):
        cli(home, "warehouse", "compact", *args)


@pytest.mark.parametrize("grace", ["inf", "1e12"])
def test_cli_a_grace_beyond_the_calendar_keeps_the_replaced_files(mq, grace):
    home = mq.home.path
    mq.close()
    result = cli(home, "warehouse", "compact", "--grace-minutes", grace, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["files_after"] == 3
    again = cli(home, "warehouse", "compact", "--grace-minutes", grace, "--format", "json")
    assert json.loads(again.output)["retired_files_deleted"] == 0
    with pytest.raises(UserError, match="--grace-minutes nan"):
        Meterql.open(home).compact(grace_minutes=float("nan"))
