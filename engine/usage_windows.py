"""Usage windows of an invoice run: one windows relation for all customers.

    register_windows(con, targets, kinds) -> multi_segment    mq_windows
    windows_of(kind)                                          the windows a usage query reads

A COUNT or SUM product is rated per *segment* (its period cut at every rate boundary of the
contract's rate card: each rate prices the usage inside its own window); MAX, UNIQUE, LATEST
and SQL metrics per *period* (engine.pricing.window_kind).  A period with a single segment has
one window that is both, so metrics of both kinds share one scan.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb
from sqlglot import exp

from engine.invoice_targets import Target
from engine.periods import naive as to_naive
from engine.periods import utc
from engine.pricing import PERIOD, SEGMENT
from engine.temp_tables import create_temp


def register_windows(
    con: duckdb.DuckDBPyConnection, targets: Sequence[Target], kinds: set[str]
) -> bool:
    """mq_windows: one windows relation for all customers: the segments of every target (its
    period cut at every rate boundary of the contract's rate card; `is_segment`) and its whole
    period (`is_period`).  A period with a single segment has one window that is both, so
    metrics of both kinds can share one scan.  Returns whether any period has several
    segments."""
    cuts: dict[str, list[datetime]] = {}
    cols: dict[str, list[Any]] = defaultdict(list)
    multi_segment = False

    naive: dict[datetime, datetime] = {}

    def add(key: int, customer: str, lo: datetime, hi: datetime, seg: bool, per: bool) -> None:
        cols["window_id"].append(len(cols["window_id"]))
        cols["period_key"].append(key)
        cols["customer_id"].append(customer)
        cols["window_start"].append(naive.get(lo) or naive.setdefault(lo, to_naive(lo)))
        cols["window_end"].append(naive.get(hi) or naive.setdefault(hi, to_naive(hi)))
        cols["is_segment"].append(seg)
        cols["is_period"].append(per)

    for key, target in enumerate(targets):
        card, period = target.card, target.period
        customer = target.contract.customer_id
        edges = [period.start, period.end]
        if SEGMENT in kinds:
            assert card.id
            if card.id not in cuts:
                points = {utc(r.starting_at) for r in card.rates}
                points |= {utc(r.ending_before) for r in card.rates if r.ending_before}
                cuts[card.id] = sorted(points)
            points = cuts[card.id]
            inside = points[
                bisect.bisect_right(points, period.start) : bisect.bisect_left(points, period.end)
            ]
            edges = [period.start, *inside, period.end]
        if len(edges) == 2:
            add(key, customer, period.start, period.end, SEGMENT in kinds, PERIOD in kinds)
            continue
        multi_segment = True
        for lo, hi in zip(edges, edges[1:], strict=False):
            add(key, customer, lo, hi, True, False)
        if PERIOD in kinds:
            add(key, customer, period.start, period.end, False, True)
    create_temp(
        con,
        "mq_windows",
        {
            "window_id": ("BIGINT", cols["window_id"]),
            "period_key": ("BIGINT", cols["period_key"]),
            "customer_id": ("VARCHAR", cols["customer_id"]),
            "window_start": ("TIMESTAMP", cols["window_start"]),
            "window_end": ("TIMESTAMP", cols["window_end"]),
            "is_segment": ("BOOLEAN", cols["is_segment"]),
            "is_period": ("BOOLEAN", cols["is_period"]),
        },
    )
    return multi_segment


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
