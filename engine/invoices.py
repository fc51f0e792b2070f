"""Invoice runs: every contract's started statement periods, all customers at once.

    run(home, con, as_of)            -> RunSummary   (`meterql invoice run --as-of T`)
    regenerate(home, con, invoice)   -> Invoice      (`meterql invoice regenerate ID`)

One run, whatever the number of customers:

1. plan: the statement periods that have started by `as_of` of every contract, skipping the
   ones already frozen (finalized or void), set-based in DuckDB from the catalog's contract
   rows (engine.invoice_targets, engine.periods); each period cut into usage windows:
   *segments* at every rate boundary of the contract's rate card (for COUNT and SUM products)
   and the whole *period* (for MAX, UNIQUE, LATEST): ONE windows relation, `mq_windows
   (customer_id, window_id, window_start, window_end, ...)` (engine.usage_windows); the
   pricing tables (engine.pricing).  No Python work per contract.
2. usage: products are grouped by window kind and group keys; each group is ONE compiled
   usage query (metric_compiler.compile_usage: its metrics fused into one scan of the events)
   over that windows relation, for all customers and periods at once.  A SQL metric runs once,
   sandboxed (engine.sql_run), over every whole period.  Python never sees an event
   (engine.usage_quantities).
3. rating: engine.rating prices the grouped quantities in SQL (DECIMAL) into line items.
4. invoices: ids, totals and content hashes in SQL, compared with the stored invoices
   (engine.invoice_assembly).
5. write: every change, and nothing when nothing changed, in ONE catalog transaction under
   the home's writer lock, with the run's row in the `invoice_runs` ledger; the run's temp
   tables live and die inside that transaction (engine.invoice_write).  Then the late events
   of finalized invoices (engine.late_events).

Invoice rules (SEMANTICS.md section 7; the (ours) decisions are in README "Billing rules"):

- One USAGE invoice per contract, statement period and credit type.  Its id is
  uuid5(contract id, period start) (plus the credit type id for any credit type other than the
  rate card's `fiat_credit_type_id`, default USD cents), so re-runs update rather than
  duplicate; a stored draft keeps its id and credit type (engine.invoice_assembly), even when
  the contract's card changed credit type.  Every started period (start <= as_of) gets its
  invoice, even with no line items.
- A draft holds every stored event of its period (as_of decides which periods exist and which
  are final; it does not cut usage).  A period whose end + 24 hours is at or before as_of is
  FINALIZED by the run: computed once more from everything stored, then frozen; no later run
  or event changes it.  Periods before a contract's latest frozen period are never recomputed.
- A re-run with the same catalog, events and as_of writes nothing and yields the same JSON; a
  draft whose content changed gets a new revision of line items (earlier revisions are kept).
- Late events: every committed ingest batch is numbered by the first run (or regenerate) that
  sees it; an invoice remembers the number it was computed at.  Events of later batches for a
  finalized invoice's customer and period are its late events, listed in every run summary.
- Regenerate (finalized or void invoices only): a new finalized invoice, new id
  uuid5(old id + "/regenerated"), computed from the current catalog and events, with
  `replaces`; the old one becomes void (if it was not already) with `superseded_by`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import duckdb

from engine import invoice_store
from engine.invoice_assembly import register_invoices, unrated_usage
from engine.invoice_ids import INVOICE_NAMESPACE, invoice_id, regenerated_id
from engine.invoice_store import CreditTypeRef, Invoice
from engine.invoice_summary import (
    CreditTotal,
    InvoiceCounts,
    LateEvents,
    RunSummary,
    UnratedUsage,
)
from engine.invoice_targets import PeriodPlan, Snapshot, plan_periods, register_period
from engine.invoice_write import (
    VOID_STALE,
    RunTransaction,
    record_run,
    stale_drafts,
    write,
)
from engine.late_events import late_events
from engine.periods import Period, iso, naive, parse_timestamp, utc
from engine.pricing import Pricing, register_pricing
from engine.rating import rate
from engine.usage_quantities import compute_quantities
from engine.usage_windows import register_windows
from warehouse.catalog import Catalog
from warehouse.errors import NotFoundError, UserError, first_line
from warehouse.home import Home
from warehouse.models import Contract

__all__ = [
    "INVOICE_NAMESPACE",
    "CreditTotal",
    "InvoiceCounts",
    "LateEvents",
    "RunSummary",
    "UnratedUsage",
    "invoice_id",
    "parse_as_of",
    "regenerate",
    "regenerated_id",
    "run",
]


# An as-of whose grace period starts before the year 1, or by which a statement period (at most
# a year long) may have started that ends after the year 9999, cannot be planned.
_AS_OF_RANGE = (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))


def parse_as_of(value: datetime | str, option: str = "--as-of") -> datetime:
    """An ISO 8601 timestamp (naive means UTC) as an aware UTC datetime, within _AS_OF_RANGE."""
    moment = utc(parse_timestamp(value, option))
    low, high = _AS_OF_RANGE
    if not low <= moment < high:
        raise UserError(
            f"{option} {value!r} is out of range: give one from {iso(low)} to before "
            f"{iso(high)} (the grace period starts 24 hours before it, and a statement period "
            "started by then must end by the year 9999)"
        )
    return moment


class Stopwatch:
    """Seconds spent per stage of a run; each stage also names the progress bar's task."""

    def __init__(self, bar: Any = None, label: str = "invoice run"):
        self.bar = bar
        self.label = label
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.bar is not None:
            self.bar.update(description=f"{self.label}: {name}")
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.seconds[name] = round(self.seconds.get(name, 0.0) + spent, 3)
            if self.bar is not None:
                self.bar.advance(1)


@contextmanager
def _amounts_fit() -> Iterator[None]:
    """A DECIMAL overflow while rating or totalling (a quantity below 10^26 times a price below
    10^20 may not fit DECIMAL(38, x)) as a user error: the run is rolled back."""
    try:
        yield
    except duckdb.OutOfRangeException as error:
        raise UserError(
            "invoice run: an amount does not fit DuckDB's DECIMAL(38) "
            f"({first_line(error)}): a line's quantity x unit price, or an invoice's total, "
            "needs more than 38 digits; check the rate card's prices and the metric's "
            "quantities (nothing was written)"
        ) from None


def _compute(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    snap: Snapshot,
    plan: PeriodPlan,
    notes: list[str],
    watch: Stopwatch,
) -> Pricing:
    """Windows, pricing tables, quantities and rated lines of the periods of mq_periods."""
    with watch.stage("plan"):
        cards = [snap.rate_cards[i] for i in plan.rate_card_ids]
        pricing = register_pricing(
            con,
            products=snap.products,
            metrics=snap.metrics,
            rate_cards=cards,
            credit_types=snap.credit_types.values(),
        )
        notes.extend(pricing.unsupported)
        multi_segment = register_windows(con, cards, set(pricing.kinds.values()))
    with watch.stage("usage"):
        compute_quantities(con, home, pricing, plan, notes, multi_segment=multi_segment)
    with watch.stage("rating"), _amounts_fit():
        rate(con, pricing, multi_segment=multi_segment)
    return pricing


def run(
    home: Home, con: duckdb.DuckDBPyConnection, as_of: datetime, *, progress: Any = None
) -> RunSummary:
    """`meterql invoice run --as-of T` (the caller holds the home's writer lock)."""
    from engine.output import progress as progress_bar

    started, started_at = time.perf_counter(), datetime.now(UTC)
    as_of = utc(as_of)
    notes: list[str] = []
    watch = Stopwatch()
    counts = InvoiceCounts()
    totals: list[CreditTotal] = []
    unrated: list[UnratedUsage] = []
    run_id = None
    with RunTransaction(con) as tx:
        with watch.stage("plan"):
            snap = Snapshot.load(con)
            plan = plan_periods(con, snap, as_of, notes)
            [(counts.frozen,)] = con.execute(
                "SELECT count(*) FROM invoices "
                "WHERE finalized_at IS NOT NULL AND period_start <= ?",
                [naive(as_of)],
            ).fetchall()
            stale = stale_drafts(con, as_of)
            if stale:
                notes.append(_stale_note(stale))
            voids = [(VOID_STALE, [])] if stale else []

        def finish(*, outcomes: bool) -> str | None:
            """Write (the outcomes, the stale drafts' voids), record the run if it wrote,
            commit; the ledger row's id."""
            counts.voided = len(stale)
            seq = write(con, as_of, voids, outcomes=outcomes)
            written = None
            if seq is not None:
                written = record_run(
                    con,
                    as_of=as_of,
                    seq=seq,
                    started_at=started_at,
                    counts=counts,
                    summary=_ledger_summary(totals, unrated, notes),
                )
            tx.commit()
            return written

        if not plan.periods:
            if not plan.started:
                notes.append(
                    f"no contract has started by {iso(as_of)}; no invoices"
                    if plan.contracts
                    else "the catalog has no contracts; no invoices"
                )
            with watch.stage("write"):
                # nothing to compute, but new batches are numbered (their late events count),
                # and stale drafts voided
                run_id = finish(outcomes=False)
        else:
            bar_cm = progress if progress is not None else progress_bar("invoice run", total=6)
            with bar_cm as bar:
                watch.bar = bar
                pricing = _compute(con, home, snap, plan, notes, watch)
                with watch.stage("invoices"), _amounts_fit():
                    rehashed = register_invoices(con, snap)
                    if rehashed:
                        notes.append(
                            f"the content hashes of {rehashed} stored draft(s) were computed by "
                            "another DuckDB version or meterql release; they were recomputed "
                            "from the drafts' stored lines"
                        )
                    unrated = unrated_usage(con, pricing)
                    counts, totals = _outcomes(con, counts.frozen)
                with watch.stage("write"):
                    run_id = finish(outcomes=True)
                watch.bar = None
    with watch.stage("late_events"):
        late = late_events(con, home)
    return RunSummary(
        as_of=as_of,
        invoices=counts,
        totals=totals,
        unrated_usage=unrated,
        late_events=late,
        notes=notes,
        elapsed_seconds=round(time.perf_counter() - started, 3),
        stage_seconds=watch.seconds,
        run_id=run_id,
    )


def _stale_note(stale: list[tuple]) -> str:
    invoice_id, contract_id, start, end = stale[0]
    return (
        f"{len(stale)} draft(s) no longer match a statement period of their contract (its "
        "starting_at or schedule changed): voided, their usage billed by the contract's current "
        f"periods (first: invoice {invoice_id}, contract {contract_id}, {iso(start)}..{iso(end)})"
    )


def _ledger_summary(
    totals: list[CreditTotal], unrated: list[UnratedUsage], notes: list[str], **extra: str
) -> str:
    """The `summary` of a run's invoice_runs row (JSON): totals per credit type, how many
    usage rows no rate priced, the notes (and `extra`: a regenerate's invoices)."""
    return json.dumps(
        {
            **extra,
            "totals": [t.model_dump(mode="json") for t in totals],
            "unrated_usage": len(unrated),
            "notes": notes,
        }
    )


def _outcomes(
    con: duckdb.DuckDBPyConnection, frozen: int
) -> tuple[InvoiceCounts, list[CreditTotal]]:
    """The run summary's counts and totals per credit type, from mq_outcomes."""
    counts = InvoiceCounts(frozen=frozen)
    for outcome, n in con.execute(
        "SELECT outcome, count(*) FROM mq_outcomes GROUP BY outcome"
    ).fetchall():
        setattr(counts, outcome, n)
    totals = [
        CreditTotal(
            credit_type=CreditTypeRef(id=ct_id, name=ct_name),
            invoices=n,
            total=invoice_store.money(total, precision),
        )
        for ct_id, ct_name, precision, n, total in con.execute(
            """
            SELECT credit_type_id, credit_type_name, credit_precision, count(*), sum(total)
            FROM mq_outcomes GROUP BY ALL ORDER BY credit_type_name, credit_type_id
            """
        ).fetchall()
    ]
    return counts, totals


# ---------------------------------------------------------------------------------------------
# Regenerate


def regenerate(home: Home, con: duckdb.DuckDBPyConnection, ref: str) -> Invoice:
    """A new finalized invoice replacing a finalized or void one (see the module docstring)."""
    old = invoice_store.get(con, ref)
    if old.status == "draft":
        raise UserError(
            f"invoice {old.id} is a draft; drafts are recomputed by every `invoice run`, only "
            "finalized or void invoices can be regenerated"
        )
    if old.superseded_by is not None:
        raise UserError(
            f"invoice {old.id} was already regenerated as {old.superseded_by}; regenerate that one"
        )
    new_id = regenerated_id(old.id)
    notes: list[str] = []
    from engine.output import progress as progress_bar

    started_at = datetime.now(UTC)
    with RunTransaction(con) as tx:
        snap = Snapshot.load(con)
        try:
            contract: Contract = Catalog(con).get("contracts", old.contract_id)  # type: ignore[assignment]
        except NotFoundError:
            raise UserError(
                f"invoice {old.id}: its contract {old.contract_id!r} no longer exists"
            ) from None
        card = snap.rate_cards.get(contract.rate_card_id)
        if card is None:
            raise UserError(
                f"invoice {old.id}: rate card {contract.rate_card_id!r} of contract "
                f"{contract.id} no longer exists"
            )
        assert contract.id is not None
        plan = register_period(
            con,
            snap,
            contract_id=contract.id,
            customer_id=contract.customer_id,
            card=card,
            period=Period(utc(old.start_timestamp), utc(old.end_timestamp)),
            status="finalized",
        )
        with progress_bar("regenerate invoice", total=3) as bar:
            pricing = _compute(con, home, snap, plan, notes, Stopwatch(bar, "regenerate invoice"))
        with _amounts_fit():
            register_invoices(con, snap, ids={(0, old.credit_type.id): new_id}, replaces=old.id)
        counts, totals = _outcomes(con, 0)
        as_of = datetime.now(UTC)
        seq = write(
            con,
            as_of,
            [
                (
                    "UPDATE invoices SET status = 'void', superseded_by = ?, "
                    "voided_at = coalesce(voided_at, now()::TIMESTAMP), "
                    "updated_at = now()::TIMESTAMP WHERE id = ?",
                    [new_id, old.id],
                )
            ],
        )
        assert seq is not None  # `extra` statements: always written
        record_run(
            con,
            as_of=as_of,
            seq=seq,
            started_at=started_at,
            counts=counts,
            summary=_ledger_summary(
                totals, unrated_usage(con, pricing), notes, invoice=new_id, replaces=old.id
            ),
            kind="regenerate",
        )
        tx.commit()
    return invoice_store.get(con, new_id)
