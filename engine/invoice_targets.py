"""What an invoice run computes: every contract's statement periods started by `as_of` that are
not frozen yet, and the status their invoices get (SEMANTICS.md section 7).

    Snapshot.load(con)                        the catalog objects a run reads
    list_targets(con, snap, as_of, notes)     [Target(contract, card, period, status)]
    register_periods(con, snap, targets)      mq_periods, one row per target (its period_key
                                              is the target's position)

A period whose end + GRACE_PERIOD is at or before `as_of` is finalized by the run; later ones
are drafts.  Periods up to a contract's latest finalized (or void) period are frozen: they are
never recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from engine.periods import Period, naive, started_periods
from engine.temp_tables import create_temp
from warehouse.catalog import Catalog
from warehouse.models import (
    USD_CENTS_ID,
    BillableMetric,
    Contract,
    CreditType,
    Product,
    RateCard,
)

GRACE_PERIOD = timedelta(hours=24)


@dataclass(frozen=True)
class Snapshot:
    """The catalog objects an invoice run reads (stored documents: ids resolved)."""

    contracts: list[Contract]
    rate_cards: dict[str, RateCard]
    products: list[Product]
    metrics: dict[str, BillableMetric]
    credit_types: dict[str, CreditType]

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> Snapshot:
        catalog = Catalog(con)
        return cls(
            contracts=sorted(catalog.all("contracts"), key=lambda c: c.id or ""),  # type: ignore[arg-type, return-value]
            rate_cards={c.id: c for c in catalog.all("rate_cards")},  # type: ignore[misc]
            products=catalog.all("products"),  # type: ignore[arg-type]
            metrics={m.id: m for m in catalog.all("billable_metrics")},  # type: ignore[misc]
            credit_types={c.id: c for c in catalog.all("credit_types")},  # type: ignore[misc]
        )

    def primary_credit_type(self, card: RateCard) -> str:
        return card.fiat_credit_type_id or USD_CENTS_ID


@dataclass(frozen=True)
class Target:
    """One (contract, statement period) to compute, and the status its invoices get."""

    contract: Contract
    card: RateCard
    period: Period
    status: str  # draft | finalized


def list_targets(
    con: duckdb.DuckDBPyConnection, snap: Snapshot, as_of: datetime, notes: list[str]
) -> list[Target]:
    """The periods of every contract started by `as_of` and not frozen, in contract order."""
    frozen_until = dict(
        con.execute(
            "SELECT contract_id, max(period_end) FROM invoices WHERE status <> 'draft' "
            "GROUP BY contract_id"
        ).fetchall()
    )
    out: list[Target] = []
    # contracts often share a schedule and a start (e.g. monthly from the 1st): compute each
    # distinct schedule's periods once
    cache: dict[tuple[Any, ...], list[Period]] = {}
    for contract in snap.contracts:
        assert contract.id
        card = snap.rate_cards.get(contract.rate_card_id)
        if card is None:  # apply refuses this
            notes.append(
                f"contract {contract.id}: rate card {contract.rate_card_id!r} is missing; "
                "no invoices"
            )
            continue
        since = frozen_until.get(contract.id)
        schedule = contract.usage_statement_schedule
        key = (
            schedule.frequency,
            schedule.day,
            schedule.billing_anchor_date,
            contract.starting_at,
            contract.ending_before,
            since,
        )
        if key not in cache:
            cache[key] = started_periods(
                schedule, contract.starting_at, contract.ending_before, as_of, since=since
            )
        for period in cache[key]:
            final = period.end + GRACE_PERIOD <= as_of
            out.append(Target(contract, card, period, "finalized" if final else "draft"))
    return out


def register_periods(
    con: duckdb.DuckDBPyConnection, snap: Snapshot, targets: Sequence[Target]
) -> None:
    """mq_periods (period_key, contract_id, customer_id, rate_card_id, period_start,
    period_end, status, primary_credit_type_id): the targets' periods, naive UTC."""
    converted: dict[datetime, datetime] = {}  # periods repeat across contracts: convert once

    def plain_ts(ts: datetime) -> datetime:
        found = converted.get(ts)
        return found if found is not None else converted.setdefault(ts, naive(ts))

    create_temp(
        con,
        "mq_periods",
        {
            "period_key": ("BIGINT", range(len(targets))),
            "contract_id": ("VARCHAR", [t.contract.id for t in targets]),
            "customer_id": ("VARCHAR", [t.contract.customer_id for t in targets]),
            "rate_card_id": ("VARCHAR", [t.card.id for t in targets]),
            "period_start": ("TIMESTAMP", [plain_ts(t.period.start) for t in targets]),
            "period_end": ("TIMESTAMP", [plain_ts(t.period.end) for t in targets]),
            "status": ("VARCHAR", [t.status for t in targets]),
            "primary_credit_type_id": (
                "VARCHAR",
                [snap.primary_credit_type(t.card) for t in targets],
            ),
        },
    )
