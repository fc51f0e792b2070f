"""Usage windows of an invoice run: one windows relation for all customers, built in DuckDB
from mq_periods (engine.invoice_targets).

    register_windows(con, cards, kinds) -> multi_segment     mq_windows
    windows_of(kind)                                         the windows a usage query reads

A COUNT or SUM product is rated per *segment* (its period cut at every rate boundary of the
contract's rate card: each rate prices the usage inside its own window); MAX, UNIQUE, LATEST
and SQL metrics per *period* (engine.pricing.window_kind).  A period with a single segment has
one window that is both, so metrics of both kinds share one scan.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
from sqlglot import exp

from engine.periods import naive
from engine.pricing import PERIOD, SEGMENT
from engine.temp_tables import create_temp
from warehouse.models import RateCard

# The edges of every period: its start and (with $segment) each rate boundary of its rate card
# strictly inside it; consecutive edges make its segments.  A period of several segments also
# gets its whole-period window (with $period).  Window ids follow (period, segments first,
# start).
_WINDOWS = """
CREATE OR REPLACE TEMP TABLE mq_windows AS
WITH edges AS (
    SELECT period_key, period_start AS edge FROM mq_periods
    UNION
    SELECT p.period_key, c.at
    FROM mq_periods p
    JOIN mq_rate_cuts c
      ON c.rate_card_id = p.rate_card_id AND c.at > p.period_start AND c.at < p.period_end
    WHERE $segment
), segments AS (
    SELECT e.period_key, p.customer_id, e.edge AS window_start,
           coalesce(lead(e.edge) OVER (PARTITION BY e.period_key ORDER BY e.edge),
                    p.period_end) AS window_end,
           count(*) OVER (PARTITION BY e.period_key) AS pieces
    FROM edges e JOIN mq_periods p ON p.period_key = e.period_key
), windows AS (
    SELECT period_key, customer_id, window_start, window_end,
           pieces > 1 OR $segment AS is_segment, pieces = 1 AND $period AS is_period
    FROM segments
    UNION ALL
    SELECT period_key, customer_id, period_start, period_end, false, true
    FROM mq_periods
    WHERE $period AND period_key IN (SELECT period_key FROM segments WHERE pieces > 1)
)
SELECT CAST(row_number() OVER (ORDER BY period_key, is_period, window_start) - 1 AS BIGINT)
           AS window_id,
       period_key, customer_id, window_start, window_end, is_segment, is_period
FROM windows
"""


def register_windows(
    con: duckdb.DuckDBPyConnection, cards: Iterable[RateCard], kinds: set[str]
) -> bool:
    """mq_windows (window_id, period_key, customer_id, window_start, window_end, is_segment,
    is_period): the segments of every period of mq_periods (cut at every rate boundary of its
    rate card, among `cards`; `is_segment`) and its whole period (`is_period`), for the window
    kinds in use.  Returns whether any period has several segments."""
    cuts = sorted(
        {
            (card.id, naive(at))
            for card in cards
            for rate in card.rates
            for at in (rate.starting_at, rate.ending_before)
            if at is not None and card.id is not None
        }
    )
    create_temp(
        con,
        "mq_rate_cuts",
        {
            "rate_card_id": ("VARCHAR", [card for card, _ in cuts]),
            "at": ("TIMESTAMP", [at for _, at in cuts]),
        },
    )
    con.execute(_WINDOWS, {"segment": SEGMENT in kinds, "period": PERIOD in kinds})
    [(multi_segment,)] = con.execute(
        "SELECT count(*) > count(DISTINCT period_key) FROM mq_windows WHERE is_segment"
    ).fetchall()
    return bool(multi_segment)


ALL_WINDOWS = "all"  # both kinds share every window (no period has several segments)


def windows_of(kind: str) -> exp.Select:
    select = exp.select("customer_id", "window_id", "window_start", "window_end").from_(
        "mq_windows"
    )
    if kind == SEGMENT:
        return select.where(exp.column("is_segment"))
    if kind == PERIOD:
        return select.where(exp.column("is_period"))
    assert kind == ALL_WINDOWS
    return select
