"""What an invoice run computes: every contract's statement periods started by `as_of` that are
not frozen yet, and the status their invoices get (SEMANTICS.md section 7).

    Snapshot.load(con)                        the catalog objects a run reads (rate cards,
                                              products, metrics, credit types: never contracts)
    plan_periods(con, snap, as_of, notes)     mq_contracts and mq_periods, for all contracts at
                                              once, set-based in DuckDB -> PeriodPlan
    register_period(con, snap, ...)           mq_periods of one given period (regenerate)

mq_periods (period_key, contract_id, customer_id, rate_card_id, period_start, period_end,
status, primary_credit_type_id) holds one row per period to compute, naive UTC, period_key in
the order of contract id and period start.

Contracts are read straight from the catalog's rows into DuckDB (their documents were validated
when applied): no Python object per contract.  The periods come from engine.periods'
STARTED_PERIODS (the SQL form of `started_periods`, checked against it by tests).  A period
whose end + GRACE_PERIOD is at or before `as_of` is finalized by the run; later ones are drafts.
Periods up to a contract's latest finalized (or finalized, then void) period are frozen: never
recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from engine.periods import Period, define_period_macros, naive, started_periods_sql
from engine.temp_tables import create_temp
from warehouse.catalog import Catalog
from warehouse.models import (
    USD_CENTS_ID,
    BillableMetric,
    CreditType,
    Product,
    RateCard,
)

GRACE_PERIOD = timedelta(hours=24)


@dataclass(frozen=True)
class Snapshot:
    """The catalog objects an invoice run reads (stored documents: ids resolved).  Their number
    grows with the catalog's products and rates, not with its customers."""

    rate_cards: dict[str, RateCard]
    products: list[Product]
    metrics: dict[str, BillableMetric]
    credit_types: dict[str, CreditType]

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> Snapshot:
        catalog = Catalog(con)
        return cls(
            rate_cards={c.id: c for c in catalog.all("rate_cards")},  # type: ignore[misc]
            products=catalog.all("products"),  # type: ignore[arg-type]
            metrics={m.id: m for m in catalog.all("billable_metrics")},  # type: ignore[misc]
            credit_types={c.id: c for c in catalog.all("credit_types")},  # type: ignore[misc]
        )

    def primary_credit_type(self, card: RateCard) -> str:
        return card.fiat_credit_type_id or USD_CENTS_ID


@dataclass(frozen=True)
class PeriodPlan:
    """What mq_periods holds."""

    periods: int  # rows of mq_periods
    start: datetime | None  # the earliest period start (naive UTC); None without periods
    end: datetime | None  # the latest period end
    rate_card_ids: tuple[str, ...]  # the rate cards of the periods' contracts, sorted
    contracts: int = 0  # contracts in the catalog (plan_periods)
    started: int = 0  # of them, started by as_of


# Every contract as stored: its schedule from the document, and `since`, the end of its latest
# frozen period (finalized, or voided after it was: a stale draft voided by a run, never
# finalized, freezes nothing).
_CONTRACTS = """
CREATE OR REPLACE TEMP TABLE mq_contracts AS
SELECT c.id AS key, c.customer_id, c.rate_card_id,
       mq_utc(c.d.starting_at) AS starting_at,
       mq_utc(c.d.ending_before) AS ending_before,
       upper(c.d.usage_statement_schedule.frequency) AS frequency,
       upper(coalesce(c.d.usage_statement_schedule.day, 'FIRST_OF_MONTH')) AS day,
       mq_utc(c.d.usage_statement_schedule.billing_anchor_date) AS billing_anchor_date,
       f.since
FROM (SELECT id, customer_id, rate_card_id,
             -- each document parsed once
             json_transform(doc, '{"starting_at": "VARCHAR", "ending_before": "VARCHAR",
                                   "usage_statement_schedule": {"frequency": "VARCHAR",
                                       "day": "VARCHAR", "billing_anchor_date": "VARCHAR"}}')
                 AS d
      FROM contracts) c
LEFT JOIN (SELECT contract_id, max(period_end) AS since
           FROM invoices WHERE finalized_at IS NOT NULL GROUP BY contract_id) f
  ON f.contract_id = c.id
"""

_PERIODS = """
CREATE OR REPLACE TEMP TABLE mq_periods AS
SELECT CAST(row_number() OVER (ORDER BY c.key, s.period_start) - 1 AS BIGINT) AS period_key,
       c.key AS contract_id, c.customer_id, c.rate_card_id, s.period_start, s.period_end,
       CASE WHEN s.period_end <= $finalized_until THEN 'finalized' ELSE 'draft' END AS status,
       r.primary_credit_type_id
FROM ({started}) s
JOIN mq_contracts c ON c.key = s.key
JOIN mq_rate_cards r ON r.rate_card_id = c.rate_card_id
ORDER BY period_key
"""

_SUMMARY = """
SELECT count(*), min(period_start), max(period_end),
       list_sort(list_distinct(list(rate_card_id)))
FROM mq_periods
"""


def _register_rate_cards(con: duckdb.DuckDBPyConnection, snap: Snapshot) -> None:
    """mq_rate_cards (rate_card_id, primary_credit_type_id): the catalog's rate cards."""
    cards = sorted(snap.rate_cards.values(), key=lambda c: c.id or "")
    create_temp(
        con,
        "mq_rate_cards",
        {
            "rate_card_id": ("VARCHAR", [c.id for c in cards]),
            "primary_credit_type_id": ("VARCHAR", [snap.primary_credit_type(c) for c in cards]),
        },
    )


def _summary(con: duckdb.DuckDBPyConnection) -> PeriodPlan:
    [(n, start, end, cards)] = con.execute(_SUMMARY).fetchall()
    return PeriodPlan(periods=n, start=start, end=end, rate_card_ids=tuple(cards or ()))


def plan_periods(
    con: duckdb.DuckDBPyConnection, snap: Snapshot, as_of: datetime, notes: list[str]
) -> PeriodPlan:
    """mq_contracts and mq_periods: the started, unfrozen periods of every contract by `as_of`
    (see the module docstring).  A contract whose rate card is missing gets a note and no
    periods (apply refuses such a contract)."""
    define_period_macros(con)
    con.execute(_CONTRACTS)
    _register_rate_cards(con, snap)
    for key, card in con.execute(
        "SELECT key, rate_card_id FROM mq_contracts "
        "WHERE rate_card_id NOT IN (SELECT rate_card_id FROM mq_rate_cards) ORDER BY key"
    ).fetchall():
        notes.append(f"contract {key}: rate card {card!r} is missing; no invoices")
    con.execute(
        _PERIODS.format(started=started_periods_sql("mq_contracts")),
        {"as_of": naive(as_of), "finalized_until": naive(as_of - GRACE_PERIOD)},
    )
    [(contracts, started)] = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE starting_at <= ?) FROM mq_contracts",
        [naive(as_of)],
    ).fetchall()
    plan = _summary(con)
    return PeriodPlan(
        periods=plan.periods,
        start=plan.start,
        end=plan.end,
        rate_card_ids=plan.rate_card_ids,
        contracts=contracts,
        started=started,
    )


def register_period(
    con: duckdb.DuckDBPyConnection,
    snap: Snapshot,
    *,
    contract_id: str,
    customer_id: str,
    card: RateCard,
    period: Period,
    status: str,
) -> PeriodPlan:
    """mq_periods holding one given period (period_key 0) of a contract."""
    assert card.id is not None
    create_temp(
        con,
        "mq_periods",
        {
            "period_key": ("BIGINT", [0]),
            "contract_id": ("VARCHAR", [contract_id]),
            "customer_id": ("VARCHAR", [customer_id]),
            "rate_card_id": ("VARCHAR", [card.id]),
            "period_start": ("TIMESTAMP", [naive(period.start)]),
            "period_end": ("TIMESTAMP", [naive(period.end)]),
            "status": ("VARCHAR", [status]),
            "primary_credit_type_id": ("VARCHAR", [snap.primary_credit_type(card)]),
        },
    )
    return _summary(con)
