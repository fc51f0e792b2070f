"""Invoice runs end to end: catalog documents + committed events -> invoices in the catalog.

Lifecycle (draft, finalized at end + 24 h, frozen), stable ids, identical re-runs, revisions,
late events, void and regenerate, every started period, several customers and contracts at
once against an independent Python computation, crash safety, and the CLI."""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from test_invoices_support import apply_docs, commit_events, event, ts
from typer.testing import CliRunner

from engine.api import Meterql
from engine.cli import app
from engine.content_hash import SCHEME
from engine.invoice_ids import INVOICE_NAMESPACE, invoice_id
from engine.output import dumps
from warehouse.errors import UserError


def catalog(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "billable_metrics": [
            {
                "name": "Input Tokens",
                "aggregation_type": "sum",
                "aggregation_key": "input_tokens",
                "event_type_filter": {"in_values": ["llm_request"]},
                "property_filters": [
                    {"name": "model", "exists": True},
                    {"name": "input_tokens", "exists": True},
                    {"name": "user_id", "exists": True},
                ],
                "group_keys": [["model", "user_id"]],
            },
            {
                "name": "API Calls",
                "aggregation_type": "count",
                "event_type_filter": {"in_values": ["api_call"]},
            },
        ],
        "products": [
            {
                "name": "Input Tokens",
                "type": "usage",
                "billable_metric_id": "Input Tokens",
                "pricing_group_key": ["model"],
                "presentation_group_key": ["user_id"],
            },
            {"name": "API Calls", "type": "usage", "billable_metric_id": "API Calls"},
        ],
        "rate_cards": [
            {
                "name": "Standard",
                "rates": [
                    {
                        "product_id": "Input Tokens",
                        "starting_at": "2026-01-01T00:00:00Z",
                        "rate_type": "flat",
                        "price": "1.50",
                        "pricing_group_values": {"model": "gpt-5"},
                    },
                    {
                        "product_id": "Input Tokens",
                        "starting_at": "2026-01-01T00:00:00Z",
                        "rate_type": "flat",
                        "price": "0.30",
                        "pricing_group_values": {"model": "gpt-5-mini"},
                    },
                    {
                        "product_id": "API Calls",
                        "starting_at": "2026-01-01T00:00:00Z",
                        "rate_type": "flat",
                        "price": "2",
                    },
                ],
            }
        ],
        "customers": [
            {"name": "Acme", "ingest_aliases": ["acme"]},
            {"name": "Beta", "ingest_aliases": ["beta"]},
        ],
        "contracts": [
            {
                "name": "acme-monthly",
                "customer_id": "Acme",
                "rate_card_id": "Standard",
                "starting_at": "2026-03-01T00:00:00Z",
                "usage_statement_schedule": {"frequency": "MONTHLY"},
            },
            {
                "name": "beta-monthly",
                "customer_id": "Beta",
                "rate_card_id": "Standard",
                "starting_at": "2026-03-01T00:00:00Z",
                "usage_statement_schedule": {"frequency": "MONTHLY"},
            },
        ],
    }
    doc.update(overrides)
    return doc


def acme_contract(**fields: Any) -> dict[str, Any]:
    """The catalog's acme-monthly contract, with `fields` changed (a contract edited after its
    drafts were computed)."""
    contract = {
        "name": "acme-monthly",
        "customer_id": "Acme",
        "rate_card_id": "Standard",
        "starting_at": "2026-03-01T00:00:00Z",
        "usage_statement_schedule": {"frequency": "MONTHLY"},
    }
    contract.update(fields)
    return contract


@pytest.fixture
def mq(tmp_path: Path):
    m = Meterql.init(tmp_path / "home")
    apply_docs(m, tmp_path, catalog())
    yield m
    m.close()


def tokens(tx: str, customer: str, when: str, model: str, n: str, user: str = "u1"):
    return event(tx, customer, when, model=model, input_tokens=n, user_id=user)


def by_customer(mq: Meterql, name: str):
    return mq.invoices(customer=name)


def lines_of(invoice) -> list[tuple]:
    return [
        (
            li.name,
            dict(li.pricing_group_values),
            dict(li.presentation_group_values),
            li.quantity,
            li.unit_price,
            li.total,
        )
        for li in invoice.line_items
    ]


# -- the basic run -----------------------------------------------------------------------------


def test_draft_invoice_for_each_customer_with_exact_lines(mq):
    commit_events(
        mq,
        [
            tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "1500", "user_1"),
            tokens("a2", "acme", "2026-03-09T12:01:00Z", "gpt-5-mini", "800", "user_2"),
            tokens("a3", "acme", "2026-03-10T00:00:00Z", "gpt-5", "1", "user_1"),
            event("c1", "acme", "2026-03-10T00:00:00Z", "api_call"),
            event("c2", "acme", "2026-03-11T00:00:00Z", "api_call"),
        ],
    )
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert summary.invoices.created == 2 and summary.unrated_usage == []
    [acme] = by_customer(mq, "Acme")
    assert acme.status == "draft"
    assert acme.start_timestamp.isoformat() == "2026-03-01T00:00:00"
    assert acme.end_timestamp.isoformat() == "2026-04-01T00:00:00"
    assert lines_of(acme) == [
        ("API Calls", {}, {}, Decimal(2), Decimal(2), Decimal(4)),
        ("Input Tokens", {"model": "gpt-5"}, {"user_id": "user_1"}, 1501, Decimal("1.5"), 2252),
        ("Input Tokens", {"model": "gpt-5-mini"}, {"user_id": "user_2"}, 800, Decimal("0.3"), 240),
    ]
    assert acme.total == acme.subtotal == Decimal(2496)
    # Beta has no usage: the ungrouped product still appears, with quantity 0
    [beta] = by_customer(mq, "beta")
    assert lines_of(beta) == [("API Calls", {}, {}, 0, Decimal(2), 0)]
    assert beta.total == 0


def test_invoice_ids_are_stable_uuid5_of_contract_and_period(mq):
    mq.invoice_run("2026-03-15T00:00:00Z")
    [acme] = by_customer(mq, "Acme")
    contract = mq.catalog.get("contracts", "acme-monthly")
    expected = str(uuid.uuid5(INVOICE_NAMESPACE, f"{contract.id}/2026-03-01T00:00:00Z"))
    assert acme.id == expected == invoice_id(contract.id, ts("2026-03-01T00:00:00Z"))


def test_a_rerun_with_the_same_inputs_changes_nothing_and_prints_identical_json(mq):
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "1500")])
    mq.invoice_run("2026-03-15T00:00:00Z")
    first = dumps(mq.invoices())
    rows_before = mq.con.execute("SELECT count(*) FROM invoice_line_items").fetchall()
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert summary.invoices.model_dump() == {
        "created": 0,
        "updated": 0,
        "finalized": 0,
        "unchanged": 2,
        "frozen": 0,
        "voided": 0,
    }
    assert dumps(mq.invoices()) == first
    assert mq.con.execute("SELECT count(*) FROM invoice_line_items").fetchall() == rows_before
    assert len(ledger(mq)) == 1  # only the first run wrote


def mq_runs(home: Path) -> list[tuple]:
    with Meterql.open(home) as mq:
        return mq.con.execute("SELECT run_id FROM invoice_runs").fetchall()


def ledger(mq) -> list[tuple]:
    return mq.con.execute(
        "SELECT as_of, data_seq, created, updated, finalized, unchanged, summary, "
        "started_at <= finished_at FROM invoice_runs ORDER BY started_at"
    ).fetchall()


def test_values_that_are_not_finite_decimals_are_reported_not_counted(mq):
    """SEMANTICS.md section 2: such an event does not count for a SUM, MAX or LATEST metric and
    is reported (the run summary's notes); an event of no contract's period is not."""
    commit_events(
        mq,
        [
            tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "1500"),
            tokens("a2", "acme", "2026-03-09T13:00:00Z", "gpt-5", "1e5"),
            tokens("a3", "acme", "2026-03-09T14:00:00Z", "gpt-5", "lots"),
            tokens("a0", "acme", "2026-02-09T14:00:00Z", "gpt-5", "lots"),  # before the contract
            tokens("x1", "stranger", "2026-03-09T14:00:00Z", "gpt-5", "lots"),  # no customer
        ],
        now="2026-03-10T00:00:00Z",
    )
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    [note] = [n for n in summary.notes if "not a finite decimal" in n]
    metric = mq.catalog.metric("Input Tokens")
    assert note == (
        f"billable metric 'Input Tokens' ({metric.id}): 2 event(s) in this run's periods whose "
        "'input_tokens' value is not a finite decimal are not counted (first: transaction a2)"
    )
    [acme] = by_customer(mq, "Acme")
    assert [line[3] for line in lines_of(acme) if line[0] == "Input Tokens"] == [Decimal(1500)]


def test_every_run_that_writes_is_recorded_in_the_ledger(mq):
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "1500")])
    first = mq.invoice_run("2026-03-15T00:00:00Z")
    assert mq.invoice_run("2026-03-15T00:00:00Z").run_id is None  # wrote nothing
    commit_events(mq, [tokens("a2", "acme", "2026-03-10T12:00:00Z", "gpt-5", "10")])
    mq.invoice_run("2026-03-16T00:00:00Z")  # Acme's draft changed
    mq.invoice_run("2026-04-02T01:00:00Z")  # March finalized, April drafts
    query = "SELECT run_id FROM invoice_runs ORDER BY started_at"
    ids = [i for (i,) in mq.con.execute(query).fetchall()]
    assert ids[0] == first.run_id and len(set(ids)) == 3
    runs = ledger(mq)
    assert [r[:6] for r in runs] == [
        (datetime(2026, 3, 15), 1, 2, 0, 0, 0),
        (datetime(2026, 3, 16), 2, 0, 1, 0, 1),
        (datetime(2026, 4, 2, 1), 2, 2, 0, 2, 0),
    ]
    assert all(r[7] for r in runs)
    summary = json.loads(runs[0][6])
    assert summary["unrated_usage"] == 0 and summary["notes"] == []
    [usd] = summary["totals"]
    assert usd["invoices"] == 2 and usd["total"] == "2250"


def test_the_content_hash_is_the_hash_of_the_stored_lines_and_product_snapshots(mq):
    """The content hash (change detection of drafts) is computed while rating, before anything
    is stored; it must stay the hash of what is stored, or every stored draft would look
    changed once (a spurious revision)."""
    commit_events(
        mq,
        [
            tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "1500", user="u1"),
            tokens("a2", "acme", "2026-03-10T12:00:00Z", "gpt-5-mini", "800", user="u2"),
            event("c1", "beta", "2026-03-11T00:00:00Z", "api_call"),
        ],
    )
    mq.invoice_run("2026-03-15T00:00:00Z")
    rows = mq.con.execute(
        """
        SELECT i.id, i.content_hash,
               coalesce(count(l.product_id), 0)::VARCHAR || '-'
               || coalesce(sum(hash(l.product_id, l.rate_type, l.rate_card_id, l.rate_index,
                                    l.pricing_group_values, l.presentation_group_values,
                                    l.starting_at, l.ending_before, l.tier_index,
                                    l.tier_starting_at, l.tier_size, l.quantity, l.unit_price,
                                    l.total,
                                    hash(p.product_name, p.billable_metric_id,
                                         p.pricing_group_keys, p.presentation_group_keys)))
                           % 18446744073709551616, 0)::VARCHAR || '-'
               || coalesce(bit_xor(hash(l.product_id, l.rate_type, l.rate_card_id,
                                        l.rate_index, l.pricing_group_values,
                                        l.presentation_group_values, l.starting_at,
                                        l.ending_before, l.tier_index, l.tier_starting_at,
                                        l.tier_size, l.quantity, l.unit_price, l.total,
                                        hash(p.product_name, p.billable_metric_id,
                                             p.pricing_group_keys,
                                             p.presentation_group_keys))), 0)::VARCHAR
        FROM invoices i
        LEFT JOIN invoice_line_items l ON l.invoice_id = i.id AND l.revision = i.revision
        LEFT JOIN invoice_products p
          ON p.invoice_id = l.invoice_id AND p.revision = l.revision
         AND p.product_id = l.product_id
        GROUP BY i.id, i.content_hash
        """
    ).fetchall()
    assert len(rows) == 2
    assert all(stored == recomputed for _id, stored, recomputed in rows), rows
    assert all(not stored.startswith("0-") for _id, stored, _ in rows)


def test_a_draft_hashed_by_another_duckdb_is_rehashed_from_its_stored_lines_not_revised(mq):
    """DuckDB's hash() may give other values in another release: drafts whose content hash was
    computed under another scheme (or before schemes were recorded: NULL) are rehashed from
    their stored lines and product snapshots, so an upgrade revises no unchanged draft."""
    commit_events(
        mq,
        [
            tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "1500", user="u1"),
            event("c1", "beta", "2026-03-11T00:00:00Z", "api_call"),
        ],
    )
    mq.invoice_run("2026-03-15T00:00:00Z")

    def state() -> list[tuple]:
        return mq.con.execute(
            "SELECT c.name, i.revision, i.content_hash, i.hash_scheme FROM invoices i "
            "JOIN customers c ON c.id = i.customer_id ORDER BY c.name"
        ).fetchall()

    def line_rows() -> int:
        return mq.con.execute("SELECT count(*) FROM invoice_line_items").fetchall()[0][0]

    before, lines = state(), line_rows()
    assert [row[3] for row in before] == [SCHEME, SCHEME]
    # as an older DuckDB's hash() and a meterql before hash schemes would have left them
    mq.con.execute(
        "UPDATE invoices SET content_hash = '1-123-456', hash_scheme = CASE WHEN customer_id = "
        "(SELECT id FROM customers WHERE name = 'Acme') THEN 'meterql-1/duckdb-1.9.0' END"
    )
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert (summary.invoices.unchanged, summary.invoices.updated) == (2, 0)
    assert state() == before and line_rows() == lines
    assert any("content hashes of 2 stored draft(s)" in note for note in summary.notes)
    assert not mq.invoice_run("2026-03-15T00:00:00Z").notes  # once
    # a real change is still one
    commit_events(mq, [tokens("a2", "acme", "2026-03-12T12:00:00Z", "gpt-5", "10", user="u1")])
    mq.con.execute("UPDATE invoices SET hash_scheme = NULL")
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert (summary.invoices.unchanged, summary.invoices.updated) == (1, 1)
    after = state()
    assert [(c, r) for c, r, _, _ in after] == [("Acme", 2), ("Beta", 1)]
    assert after[1] == before[1] and after[0][2] != before[0][2]
    assert {row[3] for row in after} == {SCHEME}


def test_every_started_period_gets_an_invoice(mq):
    summary = mq.invoice_run("2026-05-01T00:00:00Z")  # March, April (final), May (just started)
    invoices = by_customer(mq, "Acme")
    assert [(i.start_timestamp.month, i.status) for i in invoices] == [
        (3, "finalized"),
        (4, "draft"),  # ended 2026-05-01, grace runs until 2026-05-02
        (5, "draft"),
    ]
    assert summary.invoices.created == 6


def test_grace_period_is_24_hours_after_the_period_end(mq):
    mq.invoice_run("2026-04-01T23:59:59.999999Z")
    assert [i.status for i in by_customer(mq, "Acme")] == ["draft", "draft"]
    summary = mq.invoice_run("2026-04-02T00:00:00Z")
    assert [i.status for i in by_customer(mq, "Acme")] == ["finalized", "draft"]
    assert summary.invoices.finalized == 2


# -- drafts change, finalized invoices do not ------------------------------------------------


def test_a_draft_is_recomputed_with_a_new_revision_and_old_lines_are_kept(mq):
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    mq.invoice_run("2026-03-15T00:00:00Z")
    [before] = by_customer(mq, "Acme")
    commit_events(mq, [tokens("a2", "acme", "2026-03-12T00:00:00Z", "gpt-5", "100")])
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert (summary.invoices.updated, summary.invoices.unchanged) == (1, 1)  # Beta unchanged
    [after] = by_customer(mq, "Acme")
    assert after.id == before.id
    assert before.total == 150 and after.total == 300
    revisions = mq.con.execute(
        "SELECT revision, count(*) FROM invoice_line_items WHERE invoice_id = ? "
        "GROUP BY revision ORDER BY revision",
        [after.id],
    ).fetchall()
    assert revisions == [(1, 2), (2, 2)]  # nothing deleted


def test_a_finalized_invoice_never_changes_and_late_events_are_reported(mq):
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    mq.invoice_run("2026-04-05T00:00:00Z")
    [march, april] = by_customer(mq, "Acme")
    assert march.status == "finalized"
    frozen = dumps(march)
    # two late events in March (and one in April, which is a draft and picks it up)
    commit_events(
        mq,
        [
            tokens("late1", "acme", "2026-03-20T00:00:00Z", "gpt-5", "1000"),
            tokens("late2", "acme", "2026-03-21T00:00:00Z", "gpt-5-mini", "1000"),
            tokens("apr1", "acme", "2026-04-02T00:00:00Z", "gpt-5", "10"),
        ],
    )
    summary = mq.invoice_run("2026-05-10T00:00:00Z")
    [march2, april2, may] = by_customer(mq, "Acme")
    assert dumps(march2) == frozen
    assert april2.status == "finalized" and april2.total == 15
    assert [(x.invoice_id, x.events) for x in summary.late_events] == [(march.id, 2)]
    assert summary.invoices.frozen == 2  # Acme's and Beta's March
    # the report stands on later runs, and April is not late (it saw its event)
    again = mq.invoice_run("2026-05-10T00:00:00Z")
    assert [(x.invoice_id, x.events) for x in again.late_events] == [(march.id, 2)]
    assert again.invoices.unchanged == 2 and again.invoices.frozen == 4


def test_a_late_batch_that_changes_no_draft_is_still_numbered_and_reported(mq):
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    mq.invoice_run("2026-04-05T00:00:00Z")
    [march, april] = by_customer(mq, "Acme")
    drafts = dumps(mq.invoices(status="draft"))
    commit_events(mq, [tokens("late", "acme", "2026-03-20T00:00:00Z", "gpt-5", "1")])
    summary = mq.invoice_run("2026-04-05T00:00:00Z")
    assert summary.invoices.unchanged == 2 and summary.invoices.created == 0
    assert dumps(mq.invoices(status="draft")) == drafts
    assert [(x.invoice_id, x.events) for x in summary.late_events] == [(march.id, 1)]
    assert mq.con.execute("SELECT max(seq) FROM invoice_event_batches").fetchall() == [(2,)]


def test_late_events_are_reported_when_every_period_is_final(mq, tmp_path):
    """A run with no period to compute (both contracts ended, every period finalized) still
    numbers the batches it sees first: their events in a finalized period are late events."""
    ended = [
        {
            "name": f"{name.lower()}-monthly",
            "customer_id": name,
            "rate_card_id": "Standard",
            "starting_at": "2026-03-01T00:00:00Z",
            "ending_before": "2026-04-01T00:00:00Z",
            "usage_statement_schedule": {"frequency": "MONTHLY"},
        }
        for name in ("Acme", "Beta")
    ]
    apply_docs(mq, tmp_path, {"contracts": ended})
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    mq.invoice_run("2026-04-03T00:00:00Z")
    [march] = by_customer(mq, "Acme")
    assert march.status == "finalized"
    commit_events(
        mq,
        [tokens("late", "acme", "2026-03-20T00:00:00Z", "gpt-5", "1")],
        now="2026-04-04T00:00:00Z",
    )
    summary = mq.invoice_run("2026-04-05T00:00:00Z")
    assert summary.invoices.frozen == 2 and summary.invoices.created == 0
    assert [(x.invoice_id, x.events) for x in summary.late_events] == [(march.id, 1)]
    assert summary.run_id is not None  # it numbered the batch: a row in the ledger
    assert mq.con.execute("SELECT max(seq) FROM invoice_event_batches").fetchall() == [(2,)]
    again = mq.invoice_run("2026-04-06T00:00:00Z")
    assert again.run_id is None  # nothing new: nothing written
    assert [(x.invoice_id, x.events) for x in again.late_events] == [(march.id, 1)]


class RecordingConnection:
    """A catalog connection that records the SQL it runs."""

    def __init__(self, con):
        self.con = con
        self.statements: list[str] = []

    def execute(self, sql, *args):
        self.statements.append(" ".join(sql.split()))
        return self.con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_a_run_is_one_transaction_that_writes_only_what_changed_and_leaves_no_temp_tables(mq):
    from engine import invoices

    def writes(statements: list[str]) -> list[str]:
        catalog = ("INSERT INTO invoice", "UPDATE invoices")  # not the run's temp tables
        return [s.split(" SELECT")[0] for s in statements if s.startswith(catalog)]

    def temp_tables() -> list[str]:
        return [
            name
            for (name,) in mq.con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE temporary"
            ).fetchall()
        ]

    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    recorded = RecordingConnection(mq.con)
    invoices.run(mq.home, recorded, ts("2026-04-05T00:00:00Z"))
    assert [s for s in recorded.statements if s in ("BEGIN TRANSACTION", "COMMIT")] == [
        "BEGIN TRANSACTION",
        "COMMIT",
    ]
    assert writes(recorded.statements) == [
        "INSERT INTO invoice_event_batches",
        "INSERT INTO invoices",
        "UPDATE invoices SET status = o.status, revision = o.revision, content_hash = "
        "o.content_hash, credit_type_name = o.credit_type_name, credit_precision = "
        "o.credit_precision, customer_id = o.customer_id, period_end = o.period_end, "
        "hash_scheme = $scheme, subtotal = "
        "o.subtotal, total = o.total, "
        "line_count = o.line_count, "
        "data_seq = $seq, computed_as_of = $as_of, updated_at = now()::TIMESTAMP, "
        "finalized_at = CASE WHEN o.status = 'finalized' THEN now()::TIMESTAMP END FROM "
        "mq_outcomes o WHERE invoices.id = o.invoice_id AND o.outcome IN ('updated', "
        "'finalized')",
        "INSERT INTO invoice_line_items",
        "INSERT INTO invoice_products",
        "INSERT INTO invoice_runs (run_id, as_of, data_seq, started_at, finished_at, created, "
        "updated, finalized, unchanged, summary, kind) VALUES ($run_id, $as_of, $seq, "
        "$started_at, $finished_at, $created, $updated, $finalized, $unchanged, $summary, $kind)",
    ]
    assert temp_tables() == []  # the rating tables are dropped, never committed
    # nothing changed: nothing written
    recorded = RecordingConnection(mq.con)
    summary = invoices.run(mq.home, recorded, ts("2026-04-05T00:00:00Z"))
    assert summary.invoices.unchanged == 2
    assert writes(recorded.statements) == []
    assert temp_tables() == []


def test_a_run_whose_commit_fails_reports_its_own_error_and_writes_nothing(mq):
    """The catalog's COMMIT fails (no space left for its write-ahead log): that error is
    raised, not the ROLLBACK's "no transaction is active" after it; a re-run writes it all."""
    import duckdb
    from full_disk import CommitFails

    from engine import invoices

    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    with pytest.raises(duckdb.TransactionException, match="No space left on device"):
        invoices.run(mq.home, CommitFails(mq.con), ts("2026-04-05T00:00:00Z"))
    assert mq.invoices() == [] and ledger(mq) == []
    assert invoices.run(mq.home, mq.con, ts("2026-04-05T00:00:00Z")).invoices.created == 4


def test_an_earlier_as_of_never_unfinalizes(mq):
    mq.invoice_run("2026-04-05T00:00:00Z")
    mq.invoice_run("2026-03-05T00:00:00Z")
    assert [i.status for i in by_customer(mq, "Acme")] == ["finalized", "draft"]


# -- void and regenerate -----------------------------------------------------------------------


def test_void_a_finalized_invoice_keeps_it(mq):
    mq.invoice_run("2026-04-05T00:00:00Z")
    [march, april] = by_customer(mq, "Acme")
    with pytest.raises(UserError, match="only finalized invoices can be voided") as err:
        mq.void_invoice(april.id)
    assert april.id in str(err.value) and "draft" in str(err.value)
    voided = mq.void_invoice(march.id)
    assert voided.status == "void" and voided.total == march.total
    with pytest.raises(UserError, match="already void"):
        mq.void_invoice(march.id)
    assert [i.id for i in mq.invoices(status="void")] == [march.id]
    # a later run leaves the void invoice alone and makes no new one for that period
    mq.invoice_run("2026-04-06T00:00:00Z")
    assert [(i.id, i.status) for i in by_customer(mq, "Acme")][0] == (march.id, "void")
    assert len(by_customer(mq, "Acme")) == 2


def test_regenerate_makes_a_new_invoice_from_current_data(mq):
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    mq.invoice_run("2026-04-05T00:00:00Z")
    [march, _] = by_customer(mq, "Acme")
    commit_events(mq, [tokens("late", "acme", "2026-03-20T00:00:00Z", "gpt-5", "100")])
    new = mq.regenerate_invoice(march.id)
    assert new.id != march.id and new.replaces == march.id
    assert new.status == "finalized" and new.total == 300  # includes the late event
    old = mq.invoice(march.id)
    assert old.status == "void" and old.superseded_by == new.id and old.total == 150
    # the ledger: the run, then the regenerate (what it made and replaced, its totals)
    rows = mq.con.execute(
        "SELECT kind, created, updated, finalized, summary FROM invoice_runs ORDER BY started_at"
    ).fetchall()
    assert [r[:4] for r in rows] == [("run", 4, 0, 0), ("regenerate", 1, 0, 0)]
    regenerated = json.loads(rows[1][4])
    assert (regenerated["invoice"], regenerated["replaces"]) == (new.id, march.id)
    [usd] = regenerated["totals"]
    assert (usd["invoices"], usd["total"]) == (1, "300")
    with pytest.raises(UserError, match="already regenerated"):
        mq.regenerate_invoice(march.id)
    # the regenerated invoice saw the late event: no late events any more
    summary = mq.invoice_run("2026-04-05T00:00:00Z")
    assert summary.late_events == []
    draft = next(i for i in by_customer(mq, "Acme") if i.status == "draft")
    with pytest.raises(UserError, match="draft"):
        mq.regenerate_invoice(draft.id)
    # the run after wrote nothing; the refusals recorded nothing
    assert len(mq.con.execute("SELECT * FROM invoice_runs").fetchall()) == 2


def test_a_metric_counts_events_sent_before_it_existed_and_after_it_was_archived(mq, tmp_path):
    """SEMANTICS.md section 2: a metric applies to every stored event, including those sent
    before it was created; an archived metric's existing products keep working."""
    commit_events(mq, [event("s1", "acme", "2026-03-02T00:00:00Z", event_type="search")])
    doc = catalog()
    doc["billable_metrics"].append(
        {
            "name": "Searches",
            "aggregation_type": "count",
            "event_type_filter": {"in_values": ["search"]},
        }
    )
    doc["products"].append({"name": "Searches", "type": "usage", "billable_metric_id": "Searches"})
    doc["rate_cards"][0]["rates"].append(
        {
            "product_id": "Searches",
            "starting_at": "2026-01-01T00:00:00Z",
            "rate_type": "flat",
            "price": "4",
        }
    )
    apply_docs(mq, tmp_path, doc)
    commit_events(mq, [event("s2", "acme", "2026-03-03T00:00:00Z", event_type="search")])
    doc["billable_metrics"][-1]["archived"] = True
    apply_docs(mq, tmp_path, doc)
    commit_events(mq, [event("s3", "acme", "2026-03-04T00:00:00Z", event_type="search")])
    mq.invoice_run("2026-03-15T00:00:00Z")
    [acme] = by_customer(mq, "Acme")
    assert ("Searches", {}, {}, Decimal(3), Decimal(4), Decimal(12)) in lines_of(acme)


# -- many customers and contracts at once -------------------------------------------------------


def test_a_customer_with_two_overlapping_contracts_gets_invoices_for_each(mq, tmp_path):
    extra = {
        "name": "acme-weekly",
        "customer_id": "Acme",
        "rate_card_id": "Standard",
        "starting_at": "2026-03-04T00:00:00Z",
        "usage_statement_schedule": {"frequency": "WEEKLY", "day": "CONTRACT_START"},
    }
    apply_docs(mq, tmp_path, {"contracts": [extra]})
    commit_events(mq, [tokens("a1", "acme", "2026-03-05T00:00:00Z", "gpt-5", "10")])
    mq.invoice_run("2026-03-12T00:00:00Z")
    invoices = by_customer(mq, "Acme")
    contracts = {i.contract_id for i in invoices}
    assert len(contracts) == 2
    weekly = [i for i in invoices if i.end_timestamp.day in (11, 18)]
    assert [(i.start_timestamp.day, i.total) for i in weekly] == [(4, 15), (11, 0)]
    monthly = [i for i in invoices if i.start_timestamp.day == 1]
    assert [i.total for i in monthly] == [15]


def test_a_contract_moved_to_a_card_of_another_credit_type_keeps_its_drafts(mq, tmp_path):
    """The rate card's own credit type names the invoice id without a suffix.  When a contract
    moves to a card of another credit type mid-period, each stored draft keeps its id and credit
    type (the one that lost its lines is emptied): none holds lines of another credit type, none
    is left behind with stale lines, and nothing is billed twice."""
    tokens_rate = {
        "product_id": "Input Tokens",
        "starting_at": "2026-01-01T00:00:00Z",
        "rate_type": "flat",
        "price": "0.01",
        "pricing_group_values": {"model": "gpt-5"},
    }
    calls_rate = {"product_id": "API Calls", "starting_at": "2026-01-01T00:00:00Z"}
    contract = acme_contract(rate_card_id="Mixed")
    apply_docs(
        mq,
        tmp_path,
        {
            "credit_types": [{"name": "EUR", "precision": 2}],
            "rate_cards": [
                {
                    "name": "Mixed",  # USD cents, tokens in EUR
                    "rates": [
                        {**calls_rate, "rate_type": "flat", "price": "2"},
                        {**tokens_rate, "credit_type_id": "EUR"},
                    ],
                },
                {
                    "name": "Euro",
                    "fiat_credit_type_id": "EUR",
                    "rates": [{**calls_rate, "rate_type": "flat", "price": "0.5"}, tokens_rate],
                },
            ],
            "contracts": [contract],
        },
    )
    commit_events(
        mq,
        [
            tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "1500"),
            event("c1", "acme", "2026-03-10T00:00:00Z", "api_call"),
        ],
    )
    mq.invoice_run("2026-03-15T00:00:00Z")
    eur = mq.catalog.get("credit_types", "EUR").id
    acme = mq.catalog.get("contracts", "acme-monthly").id
    march = ts("2026-03-01T00:00:00Z")
    usd_id, eur_id = invoice_id(acme, march), invoice_id(acme, march, eur)

    def acme_invoices() -> dict[str, tuple]:
        return {
            i.id: (i.credit_type.name, i.total, len(i.line_items)) for i in by_customer(mq, "Acme")
        }

    assert acme_invoices() == {usd_id: ("USD (cents)", 2, 1), eur_id: ("EUR", Decimal(15), 1)}
    apply_docs(mq, tmp_path, {"contracts": [{**contract, "rate_card_id": "Euro"}]})
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert (summary.invoices.created, summary.invoices.updated) == (0, 2)
    # the USD draft lost its line; the EUR one holds both products: 15.00 + 0.50
    assert acme_invoices() == {
        usd_id: ("USD (cents)", 0, 0),
        eur_id: ("EUR", Decimal("15.50"), 2),
    }
    again = mq.invoice_run("2026-03-15T00:00:00Z")
    assert (again.invoices.created, again.invoices.updated) == (0, 0)


def test_a_draft_follows_its_credit_type_s_precision_and_name(mq, tmp_path):
    """A draft is recomputed by every run, its header too: when its credit type's precision or
    name changes, the draft's totals are rounded to the new precision and its header says so
    (it kept the old precision, and a total with more places than that failed every read)."""
    doc = catalog()
    doc["rate_cards"][0]["fiat_credit_type_id"] = "EUR"
    doc["rate_cards"][0]["rates"][2]["price"] = "0.125"  # API Calls
    apply_docs(mq, tmp_path, {"credit_types": [{"name": "EUR", "precision": 2}], **doc})
    commit_events(mq, [event("c1", "acme", "2026-03-10T00:00:00Z", "api_call")])
    mq.invoice_run("2026-03-15T00:00:00Z")
    [acme] = by_customer(mq, "Acme")
    assert (acme.credit_type.name, acme.total) == ("EUR", Decimal("0.13"))
    eur = mq.catalog.get("credit_types", "EUR").id
    apply_docs(mq, tmp_path, {"credit_types": [{"id": eur, "name": "Euro", "precision": 3}]})
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert summary.invoices.updated == 2  # Acme's total changed; Beta's header only
    [acme] = by_customer(mq, "Acme")
    assert (acme.credit_type.name, acme.total) == ("Euro", Decimal("0.125"))
    assert str(acme.total) == "0.125"
    [beta] = by_customer(mq, "Beta")
    assert (beta.credit_type.name, str(beta.total)) == ("Euro", "0.000")
    assert mq.invoice_run("2026-03-15T00:00:00Z").invoices.unchanged == 2


def test_a_contract_ended_mid_period_cuts_its_draft(mq, tmp_path):
    """A draft follows its period: when the contract gets an `ending_before` inside it, the
    draft's end moves there (it kept the old end while its lines stopped at the new one), and
    so does what counts as a late event of it once final."""
    commit_events(
        mq,
        [
            tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100"),
            tokens("a2", "acme", "2026-03-25T12:00:00Z", "gpt-5", "10"),
        ],
    )
    mq.invoice_run("2026-03-26T00:00:00Z")
    ended = acme_contract(ending_before="2026-03-20T00:00:00Z")
    apply_docs(mq, tmp_path, {"contracts": [ended]})
    summary = mq.invoice_run("2026-03-20T12:00:00Z")
    assert summary.invoices.updated == 1
    [march] = by_customer(mq, "Acme")
    assert march.status == "draft"
    assert march.end_timestamp.isoformat() == "2026-03-20T00:00:00"
    assert [(li.quantity, li.ending_before.day) for li in march.line_items] == [
        (0, 20),  # API Calls
        (100, 20),
    ]
    mq.invoice_run("2026-03-21T00:00:00Z")  # March (ended Mar 20) finalized
    [march] = by_customer(mq, "Acme")
    assert (march.status, march.end_timestamp.day) == ("finalized", 20)
    commit_events(
        mq,
        [tokens("after-end", "acme", "2026-03-22T12:00:00Z", "gpt-5", "1")],
        now="2026-03-26T00:00:00Z",
    )
    assert mq.invoice_run("2026-03-27T00:00:00Z").late_events == []  # after the contract


def test_a_draft_whose_period_left_its_contract_s_schedule_is_voided(mq, tmp_path):
    """A contract moved to start on Mar 5 after its Mar 1 - Apr 1 draft was computed: the old
    draft is no longer a period of the contract; it was left a draft forever, beside the new
    Mar 5 one, and its usage billed twice.  The run voids it (kept, as every invoice), once."""
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    mq.invoice_run("2026-03-15T00:00:00Z")
    [old] = by_customer(mq, "Acme")
    moved = acme_contract(starting_at="2026-03-05T00:00:00Z")
    apply_docs(mq, tmp_path, {"contracts": [moved]})
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert (summary.invoices.created, summary.invoices.voided) == (1, 1)
    assert "1 stale draft(s) voided" in summary.lines()[0]
    assert any(f"invoice {old.id}" in note and "voided" in note for note in summary.notes)
    invoices = {i.id: i for i in by_customer(mq, "Acme")}
    assert invoices[old.id].status == "void"
    [new] = [i for i in invoices.values() if i.id != old.id]
    assert (new.status, new.start_timestamp.day, new.total) == ("draft", 5, old.total)
    again = mq.invoice_run("2026-03-15T00:00:00Z")  # nothing left to void, nothing written
    assert (again.invoices.voided, again.run_id) == (0, None)
    mq.invoice_run("2026-04-02T00:00:00Z")  # the Mar 5 period is finalized, not the void one
    statuses = {
        (i.start_timestamp.month, i.start_timestamp.day, i.status) for i in by_customer(mq, "Acme")
    }
    assert statuses == {(3, 1, "void"), (3, 5, "finalized"), (4, 1, "draft")}


def test_a_contract_extended_after_its_cut_period_was_final_bills_the_rest_of_the_period(
    mq, tmp_path
):
    """March was finalized cut at the contract's end, Mar 15; the contract is then extended
    (no end).  The schedule resumes at Mar 15: a Mar 15 - Apr 1 period.  Before, the next period
    was April, and usage from Mar 15 to Apr 1 was never invoiced or reported."""
    contract = acme_contract(ending_before="2026-03-15T00:00:00Z")
    apply_docs(mq, tmp_path, {"contracts": [contract]})
    commit_events(
        mq,
        [
            tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100"),
            tokens("a2", "acme", "2026-03-20T12:00:00Z", "gpt-5", "10"),
        ],
    )
    mq.invoice_run("2026-03-17T00:00:00Z")  # Mar 1 - Mar 15 finalized
    del contract["ending_before"]
    apply_docs(mq, tmp_path, {"contracts": [contract]})
    mq.invoice_run("2026-03-21T00:00:00Z")
    got = [
        (i.start_timestamp.day, i.end_timestamp.month, i.end_timestamp.day, i.status, i.total)
        for i in by_customer(mq, "Acme")
    ]
    assert got == [(1, 3, 15, "finalized", 150), (15, 4, 1, "draft", 15)]
    mq.invoice_run("2026-04-02T00:00:00Z")
    assert [(i.start_timestamp.day, i.status) for i in by_customer(mq, "Acme")] == [
        (1, "finalized"),
        (15, "finalized"),
        (1, "draft"),  # April
    ]


def test_a_draft_follows_its_contract_to_another_customer(mq, tmp_path):
    """A contract moved to another customer (a customer merge, a data fix) while its period
    is a draft: the draft's customer follows (it kept the old one: listed under it, and its
    late events looked up by the old customer's events)."""
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    mq.invoice_run("2026-03-15T00:00:00Z")
    [draft] = by_customer(mq, "Acme")
    moved = acme_contract(customer_id="Beta")
    apply_docs(mq, tmp_path, {"contracts": [moved]})
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert summary.invoices.updated == 1
    assert by_customer(mq, "Acme") == []
    assert draft.id in [i.id for i in by_customer(mq, "Beta")]
    assert mq.invoice_run("2026-03-15T00:00:00Z").run_id is None  # settled


def test_a_draft_of_a_period_after_as_of_is_not_stale(mq, tmp_path):
    """A run with an earlier as-of than the last one leaves the later drafts alone."""
    mq.invoice_run("2026-04-15T00:00:00Z")
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert summary.invoices.voided == 0
    statuses = [(i.start_timestamp.month, i.status) for i in by_customer(mq, "Acme")]
    assert statuses == [(3, "finalized"), (4, "draft")]  # April: started after this as-of


def test_contracts_of_every_schedule_get_the_periods_of_started_periods(mq, tmp_path):
    """The run plans every contract's periods in SQL, from the stored documents; they are the
    periods engine.periods.started_periods gives for the same contracts (with a frozen part)."""
    from engine.periods import started_periods, utc
    from warehouse.catalog import Catalog

    def contract(name: str, start: str, schedule: dict, end: str | None = None) -> dict:
        doc = {
            "name": name,
            "customer_id": "Acme",
            "rate_card_id": "Standard",
            "starting_at": start,
            "usage_statement_schedule": schedule,
        }
        if end:
            doc["ending_before"] = end
        return doc

    apply_docs(
        mq,
        tmp_path,
        {
            "contracts": [
                contract("weekly-iso", "2026-01-07T10:00:00Z", {"frequency": "weekly"}),
                contract(
                    "quarterly-start",
                    "2025-11-30T06:30:00.250000Z",
                    {"frequency": "QUARTERLY", "day": "contract_start"},
                ),
                contract(
                    "annual-custom",
                    "2025-06-15T00:00:00Z",
                    {
                        "frequency": "ANNUAL",
                        "day": "CUSTOM_DATE",
                        "billing_anchor_date": "2024-02-29T12:00:00Z",
                    },
                ),
                contract(
                    "monthly-ending",
                    "2026-01-31T00:00:00Z",
                    {"frequency": "MONTHLY", "day": "CONTRACT_START"},
                    end="2026-03-10T00:00:00Z",
                ),
            ]
        },
    )
    mq.invoice_run("2026-02-15T00:00:00Z")  # freezes some periods
    as_of = ts("2026-04-20T00:00:00Z")
    mq.invoice_run(as_of)
    got: dict[str, list[tuple]] = defaultdict(list)
    for invoice in mq.invoices():
        got[invoice.contract_id].append((utc(invoice.start_timestamp), utc(invoice.end_timestamp)))
    contracts = Catalog(mq.con).all("contracts")
    assert len(contracts) == 6
    for c in contracts:
        expected = started_periods(
            c.usage_statement_schedule, c.starting_at, c.ending_before, as_of
        )
        assert got[c.id] == [(p.start, p.end) for p in expected], c.name


@pytest.mark.parametrize("sliced", [True, False], ids=["window-slices", "time-range-join"])
def test_random_usage_for_many_customers_matches_a_python_reference(tmp_path, monkeypatch, sliced):
    # both ways the usage query meets the windows: by (customer key, slice), and by the time
    # range when there are too many window bounds (metric_compiler.usage_query)
    if not sliced:
        monkeypatch.setattr("metric_compiler.usage_query.MAX_SLICE_BOUNDARIES", 1)
    mq = Meterql.init(tmp_path / "home")
    customers = [f"cust-{i}" for i in range(12)]
    doc = catalog(
        customers=[{"name": c, "ingest_aliases": [f"alias-{c}"]} for c in customers],
        contracts=[
            {
                "name": f"contract-{c}",
                "customer_id": c,
                "rate_card_id": "Standard",
                "starting_at": "2026-02-10T00:00:00Z",
                "usage_statement_schedule": {"frequency": "MONTHLY"},
            }
            for c in customers
        ],
    )
    apply_docs(mq, tmp_path, doc)
    rng = random.Random(7)
    ids = {c: mq.catalog.get("customers", c).id for c in customers}
    events = []
    expected: dict[tuple[str, int], dict[tuple, Decimal]] = defaultdict(
        lambda: defaultdict(Decimal)
    )
    price = {"gpt-5": Decimal("1.50"), "gpt-5-mini": Decimal("0.30")}
    for n in range(400):
        customer = rng.choice(customers)
        sender = ids[customer] if rng.random() < 0.5 else f"alias-{customer}"
        day = rng.randrange(10, 28)
        month = rng.choice([2, 3])
        when = f"2026-{month:02d}-{day:02d}T{rng.randrange(24):02d}:00:00Z"
        if rng.random() < 0.3:
            events.append(event(f"e{n}", sender, when, "api_call"))
            expected[(customer, month)][("API Calls", None, None)] += 1
            continue
        model = rng.choice(["gpt-5", "gpt-5-mini", "gpt-4"])  # gpt-4 has no rate
        user = rng.choice(["u1", "u2"])
        amount = Decimal(rng.randrange(1, 10_000)) / Decimal(rng.choice([1, 10, 1000]))
        events.append(tokens(f"e{n}", sender, when, model, str(amount), user))
        expected[(customer, month)][("Input Tokens", model, user)] += amount
    for month in ("2026-02", "2026-03"):  # the 34-day ingest window: one batch per month
        commit_events(mq, [e for e in events if e["timestamp"].startswith(month)])
    summary = mq.invoice_run("2026-03-20T00:00:00Z")
    got: dict[tuple[str, int], Decimal] = {}
    for inv in mq.invoices():
        name = mq.catalog.get("customers", inv.customer_id).name
        got[(name, inv.start_timestamp.month)] = inv.total
    for key, lines in expected.items():
        total = Decimal(0)
        for (product, model, _user), quantity in lines.items():
            unit = Decimal(2) if product == "API Calls" else price.get(model)
            if unit is not None:
                total += (quantity * unit).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        assert got[key] == total, key
    unrated = defaultdict(Decimal)
    for u in summary.unrated_usage:
        assert u.reason == "no_rate_for_group_values"
        assert u.pricing_group_values == {"model": "gpt-4"}
        name = mq.catalog.get("customers", u.customer_id).name
        unrated[(name, u.start_timestamp.month)] += u.quantity
    for key, lines in expected.items():
        assert unrated.get(key, Decimal(0)) == sum(
            (q for (p, m, _), q in lines.items() if m == "gpt-4"), Decimal(0)
        )
    mq.close()


# -- crash safety -------------------------------------------------------------------------------


def test_a_failed_run_writes_nothing(mq, monkeypatch):
    import engine.invoice_write as invoice_write

    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "100")])
    monkeypatch.setattr(invoice_write, "_INSERT_LINES", "INSERT INTO invoice_line_items SELECT 1")
    with pytest.raises(Exception):  # noqa: B017 - any failure inside the write
        mq.invoice_run("2026-03-15T00:00:00Z")
    assert mq.con.execute("SELECT count(*) FROM invoices").fetchall() == [(0,)]
    assert mq.con.execute("SELECT count(*) FROM invoice_event_batches").fetchall() == [(0,)]
    assert ledger(mq) == []
    monkeypatch.undo()
    assert mq.invoice_run("2026-03-15T00:00:00Z").invoices.created == 2


# -- the CLI ------------------------------------------------------------------------------------


def cli(home: Path, *args: str):
    return CliRunner().invoke(app, ["--home", str(home), *args], catch_exceptions=False)


def test_cli_run_list_show_json_and_table(mq):
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "1500")])
    home = mq.home.path
    mq.close()
    result = cli(home, "invoice", "run", "--as-of", "2026-03-15T00:00:00Z", "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["invoices"]["created"] == 2
    [(run_id,)] = mq_runs(home)
    assert summary["run_id"] == run_id
    assert summary["totals"] == [
        {
            "credit_type": {"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)"},
            "invoices": 2,
            "total": "2250",
        }
    ]
    listed = json.loads(
        cli(home, "invoice", "list", "--customer", "acme", "--format", "json").output
    )
    assert [i["total"] for i in listed] == ["2250"]
    shown = json.loads(cli(home, "invoice", "show", listed[0]["id"], "--format", "json").output)
    assert shown == listed[0]
    assert set(shown) >= {
        "id",
        "customer_id",
        "contract_id",
        "status",
        "type",
        "start_timestamp",
        "end_timestamp",
        "credit_type",
        "subtotal",
        "total",
        "line_items",
    }
    line = shown["line_items"][1]
    assert line["quantity"] == "1500" and line["unit_price"] == "1.5" and line["total"] == "2250"
    assert line["starting_at"] == "2026-03-01T00:00:00Z"
    table = cli(home, "invoice", "show", listed[0]["id"])
    assert table.exit_code == 0 and "Input Tokens" in table.output and "2250" in table.output
    assert "model=gpt-5" in table.output
    page = cli(home, "invoice", "show", listed[0]["id"], "--format", "html").output
    assert page.startswith("<!doctype html>") and "<td>model=gpt-5</td>" in page
    assert '<td class="n">2250</td>' in page
    text = cli(home, "invoice", "run", "--as-of", "2026-03-15T00:00:00Z")
    assert "0 created, 0 updated, 0 finalized, 2 unchanged" in text.output
    rows = cli(home, "invoice", "list").output  # a table: line counts, not the lines
    assert "2 invoice(s)" in rows and listed[0]["id"] in rows
    listed_all = json.loads(cli(home, "invoice", "list", "--format", "json").output)
    assert [i["id"] for i in listed_all] == [i.id for i in Meterql.open(home).invoices()]
    summaries = Meterql.open(home).invoice_summaries(customer="acme")
    assert [(s.id, s.line_count, s.total) for s in summaries] == [
        (listed[0]["id"], len(listed[0]["line_items"]), Decimal(listed[0]["total"]))
    ]


# -- usage query planning -----------------------------------------------------------------------


def _metric(name: str, agg: str, keys: list[list[str]]) -> Any:
    from warehouse.models import BillableMetric

    props = sorted({k for compound in keys for k in compound})
    doc: dict[str, Any] = {
        "id": name,
        "name": name,
        "aggregation_type": agg,
        "property_filters": [{"name": p, "exists": True} for p in props],
        "group_keys": keys,
    }
    if agg != "count":
        doc["aggregation_key"] = props[0]
    return BillableMetric.model_validate(doc)


def _product(name: str, metric: str, pricing: list[str], presentation: list[str]) -> Any:
    from warehouse.models import Product

    return Product(
        id=name,
        name=name,
        type="usage",
        billable_metric_id=metric,
        pricing_group_key=pricing,
        presentation_group_key=presentation,
    )


def test_additive_metrics_join_a_finer_grouped_scan_and_roll_up():
    from engine.usage_quantities import plan_usage_groups

    metrics = {
        "in": _metric("in", "sum", [["model", "region"]]),
        "out": _metric("out", "sum", [["model", "region"]]),
        "calls": _metric("calls", "count", [["region"]]),
        "users": _metric("users", "unique", [["model", "region"]]),
    }
    products = [
        _product("in", "in", ["model"], ["region"]),
        _product("out", "out", ["model"], []),  # joins ("model", "region"), rolled up
        _product("calls", "calls", [], ["region"]),  # its metric has no "model": own scan
        _product("users", "users", [], []),  # UNIQUE cannot be rolled up: own scan
    ]
    kinds = {p.id: "all" for p in products}
    groups = plan_usage_groups(products, metrics, kinds)
    assert [(g.keys, [p.id for p in g.products]) for g in groups] == [
        ((), ["users"]),
        (("model", "region"), ["in", "out"]),
        (("region",), ["calls"]),
    ]
    # a group that also holds a UNIQUE metric stays whole (moving part of it saves no scan)
    products[3] = _product("users", "users", ["model"], [])
    groups = plan_usage_groups(products, metrics, kinds)
    assert [(g.keys, [p.id for p in g.products]) for g in groups][0] == (
        ("model",),
        ["out", "users"],
    )


def test_rolled_up_quantities_are_exact(mq, tmp_path):
    doc = catalog()
    doc["products"].append(
        {
            "name": "Tokens by model",
            "type": "usage",
            "billable_metric_id": "Input Tokens",
            "pricing_group_key": ["model"],
        }
    )
    doc["rate_cards"][0]["rates"].append(
        {
            "product_id": "Tokens by model",
            "starting_at": "2026-01-01T00:00:00Z",
            "rate_type": "flat",
            "price": "1",
            "pricing_group_values": {"model": "gpt-5"},
        }
    )
    apply_docs(mq, tmp_path, doc)
    commit_events(
        mq,
        [
            tokens("a1", "acme", "2026-03-02T00:00:00Z", "gpt-5", "10.5", "u1"),
            tokens("a2", "acme", "2026-03-03T00:00:00Z", "gpt-5", "20.25", "u2"),
            tokens("a3", "acme", "2026-03-04T00:00:00Z", "gpt-5", "1", "u2"),
        ],
    )
    mq.invoice_run("2026-03-15T00:00:00Z")
    [acme] = by_customer(mq, "Acme")
    by_name = [(li.name, li.presentation_group_values, li.quantity) for li in acme.line_items]
    assert ("Tokens by model", {}, Decimal("31.75")) in by_name
    assert ("Input Tokens", {"user_id": "u1"}, Decimal("10.5")) in by_name
    assert ("Input Tokens", {"user_id": "u2"}, Decimal("21.25")) in by_name


# -- SQL metrics --------------------------------------------------------------------------------

USERS_PER_MODEL = (
    "SELECT count(DISTINCT properties.user_id) AS value, properties.model AS model\n"
    "FROM events WHERE event_type = 'llm_request' GROUP BY properties.model"
)


def test_a_sql_metric_is_priced_for_the_period_at_the_last_rate(mq, tmp_path):
    doc = {
        "billable_metrics": [{"name": "Users per model", "sql": USERS_PER_MODEL}],
        "products": [
            {
                "name": "Seats",
                "type": "usage",
                "billable_metric_id": "Users per model",
                "pricing_group_key": ["model"],
            },
            {"name": "Seats total", "type": "usage", "billable_metric_id": "Users per model"},
        ],
        "rate_cards": [
            {
                "name": "Seats card",
                "rates": [
                    {
                        "product_id": "Seats",
                        "starting_at": "2026-01-01T00:00:00Z",
                        "ending_before": "2026-03-20T00:00:00Z",
                        "rate_type": "flat",
                        "price": "100",
                        "pricing_group_values": {"model": "gpt-5"},
                    },
                    {
                        "product_id": "Seats",
                        "starting_at": "2026-03-20T00:00:00Z",
                        "rate_type": "flat",
                        "price": "200",
                        "pricing_group_values": {"model": "gpt-5"},
                    },
                    {
                        "product_id": "Seats total",
                        "starting_at": "2026-01-01T00:00:00Z",
                        "rate_type": "flat",
                        "price": "1",
                    },
                ],
            }
        ],
        "customers": [{"name": "Gamma", "ingest_aliases": ["gamma"]}],
        "contracts": [
            {
                "name": "gamma-monthly",
                "customer_id": "Gamma",
                "rate_card_id": "Seats card",
                "starting_at": "2026-03-01T00:00:00Z",
                "usage_statement_schedule": {"frequency": "MONTHLY"},
            }
        ],
    }
    apply_docs(mq, tmp_path, doc)
    commit_events(
        mq,
        [
            tokens("g1", "gamma", "2026-03-02T00:00:00Z", "gpt-5", "1", "u1"),
            tokens("g2", "gamma", "2026-03-03T00:00:00Z", "gpt-5", "1", "u2"),
            tokens("g3", "gamma", "2026-03-04T00:00:00Z", "gpt-5", "1", "u2"),
        ],
    )
    summary = mq.invoice_run("2026-03-25T00:00:00Z")
    [gamma] = by_customer(mq, "Gamma")
    assert lines_of(gamma) == [("Seats", {"model": "gpt-5"}, {}, 2, 200, 400)]
    assert any(
        "'Seats total'" in n and "not the group columns ['model']" in n for n in summary.notes
    )


def test_a_null_sql_metric_value_is_no_quantity_and_the_run_bills_the_others(mq, tmp_path):
    """An aggregate without GROUP BY gives one row per customer even without events, with a
    NULL sum (README "SQL metrics"): that row has no quantity.  The customer without events gets
    the ungrouped product's zero line; the run does not fail."""
    doc = {
        "billable_metrics": [
            {
                "name": "Token sum",
                "sql": "SELECT sum(CAST(properties.input_tokens AS DECIMAL(38, 6))) AS value "
                "FROM events WHERE event_type = 'llm_request'",
            }
        ],
        "products": [{"name": "Token sum", "type": "usage", "billable_metric_id": "Token sum"}],
        "rate_cards": [
            {
                "name": "Sum card",
                "rates": [
                    {
                        "product_id": "Token sum",
                        "starting_at": "2026-01-01T00:00:00Z",
                        "rate_type": "flat",
                        "price": "2",
                    }
                ],
            }
        ],
        "customers": [{"name": "Gamma", "ingest_aliases": ["gamma"]}, {"name": "Delta"}],
        "contracts": [
            {
                "name": f"{name}-monthly",
                "customer_id": name,
                "rate_card_id": "Sum card",
                "starting_at": "2026-03-01T00:00:00Z",
                "usage_statement_schedule": {"frequency": "MONTHLY"},
            }
            for name in ("Gamma", "Delta")
        ],
    }
    apply_docs(mq, tmp_path, doc)
    commit_events(mq, [tokens("g1", "gamma", "2026-03-02T00:00:00Z", "gpt-5", "2.5", "u1")])
    summary = mq.invoice_run("2026-03-25T00:00:00Z")
    assert [u for u in summary.unrated_usage if u.product_name == "Token sum"] == []
    [gamma] = by_customer(mq, "Gamma")
    assert lines_of(gamma) == [("Token sum", {}, {}, Decimal("2.5"), 2, 5)]
    [delta] = by_customer(mq, "Delta")
    assert lines_of(delta) == [("Token sum", {}, {}, 0, 2, 0)]
