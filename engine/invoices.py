"""Invoice runs: every contract's started statement periods, all customers at once.

    run(home, con, as_of)            -> RunSummary   (`meterql invoice run --as-of T`)
    regenerate(home, con, invoice)   -> Invoice      (`meterql invoice regenerate ID`)

One run, whatever the number of customers:

1. Python lists the statement periods that have started by `as_of` (engine.periods) of every
   contract, skipping the ones already frozen (finalized or void), and cuts each period into
   usage windows: *segments* at every rate boundary of the contract's rate card (for COUNT and
   SUM products) and the whole *period* (for MAX, UNIQUE, LATEST).  They become ONE windows
   relation, `mq_windows (customer_id, window_id, window_start, window_end, ...)`.
2. Products are grouped by window kind and group keys (plan_usage_groups); each group is ONE
   compiled usage query (metric_compiler.compile_usage: its metrics fused into one scan of the
   events) over that windows relation, for all customers and periods at once.  A SQL metric
   runs once, sandboxed (engine.sql_run), over every whole period.  Python never sees an
   event.
3. engine.rating prices the grouped quantities in SQL (DECIMAL) into line items.
4. The invoices are compared with the stored ones (a content hash) and every change is written
   in ONE catalog transaction, under the home's writer lock.

Invoice rules (SEMANTICS.md section 7; the (ours) decisions are in README "Billing rules"):

- One USAGE invoice per contract, statement period and credit type.  Its id is
  uuid5(contract id, period start) (plus the credit type id for any credit type other than the
  rate card's `fiat_credit_type_id`, default USD cents), so re-runs update rather than
  duplicate.  Every started period (start <= as_of) gets its invoice, even with no line items.
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

import bisect
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
from pydantic import BaseModel
from sqlglot import exp

from engine import invoice_store
from engine.invoice_store import CreditTypeRef, Invoice
from engine.periods import Period, started_periods, utc
from engine.rating import PERIOD, SEGMENT, Pricing, rate, register_pricing
from engine.temp_tables import create_temp
from metric_compiler import Window, compile_usage, metric_properties
from warehouse.catalog import Catalog
from warehouse.errors import UserError
from warehouse.events import EventFile, events_relation
from warehouse.home import Home
from warehouse.models import (
    USD_CENTS_ID,
    AggregationType,
    BillableMetric,
    Contract,
    CreditType,
    Product,
    RateCard,
)

INVOICE_NAMESPACE = uuid.UUID("2b0f4c8e-6a59-5d1e-9f3a-6d6574657271")
GRACE_PERIOD = timedelta(hours=24)


def invoice_id(contract_id: str, period_start: datetime, credit_type_id: str | None = None) -> str:
    """The stable id of a contract's invoice for the period starting at `period_start`."""
    key = f"{contract_id}/{_iso(period_start)}"
    if credit_type_id is not None:
        key += f"/{credit_type_id}"
    return str(uuid.uuid5(INVOICE_NAMESPACE, key))


def regenerated_id(old_id: str) -> str:
    return str(uuid.uuid5(INVOICE_NAMESPACE, f"{old_id}/regenerated"))


def _iso(ts: datetime) -> str:
    return utc(ts).isoformat().replace("+00:00", "Z")


def _naive(ts: datetime) -> datetime:
    return utc(ts).replace(tzinfo=None)


def parse_as_of(value: datetime | str, option: str = "--as-of") -> datetime:
    """An ISO 8601 timestamp (naive means UTC) as an aware UTC datetime."""
    if isinstance(value, datetime):
        return utc(value)
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        raise UserError(
            f"{option} {value!r} is not an ISO 8601 timestamp (expected e.g. "
            "2026-03-15T00:00:00Z; naive timestamps are UTC)"
        ) from None


def plain(value: Decimal) -> Decimal:
    """`value` without trailing zeros (exact: 1500.000000 -> 1500)."""
    return value.normalize() if value else Decimal(0)


# ---------------------------------------------------------------------------------------------
# Summary


class InvoiceCounts(BaseModel):
    created: int = 0
    updated: int = 0
    finalized: int = 0
    unchanged: int = 0
    frozen: int = 0  # finalized or void before this run, started by as_of: left untouched


class CreditTotal(BaseModel):
    credit_type: CreditTypeRef
    invoices: int
    total: Decimal


class UnratedUsage(BaseModel):
    customer_id: str
    contract_id: str
    start_timestamp: datetime
    end_timestamp: datetime
    product_id: str
    product_name: str
    pricing_group_values: dict[str, str | None]
    quantity: Decimal
    reason: str  # not_on_rate_card | no_rate_for_group_values | no_rate_in_effect | ...


class LateEvents(BaseModel):
    invoice_id: str
    customer_id: str
    contract_id: str
    start_timestamp: datetime
    end_timestamp: datetime
    events: int


class RunSummary(BaseModel):
    as_of: datetime
    invoices: InvoiceCounts
    totals: list[CreditTotal]
    unrated_usage: list[UnratedUsage]
    late_events: list[LateEvents]
    notes: list[str]
    elapsed_seconds: float
    stage_seconds: dict[str, float] = {}  # plan, usage, rating, invoices, write, late_events

    def lines(self) -> list[str]:
        c = self.invoices
        out = [
            f"invoice run as of {_iso(self.as_of)}: {c.created} created, {c.updated} updated, "
            f"{c.finalized} finalized, {c.unchanged} unchanged ({c.frozen} already final)"
        ]
        for t in self.totals:
            out.append(
                f"  total {format(t.total, 'f')} {t.credit_type.name} over {t.invoices} invoice(s)"
            )
        if self.unrated_usage:
            out.append(f"UNRATED USAGE ({len(self.unrated_usage)}): not billed, no rate matches")
            for u in self.unrated_usage:
                out.append(
                    f"  customer {u.customer_id} product {u.product_name!r} "
                    f"{json.dumps(u.pricing_group_values, sort_keys=True)} quantity "
                    f"{format(u.quantity, 'f')} in {_iso(u.start_timestamp)}.."
                    f"{_iso(u.end_timestamp)}: {u.reason}"
                )
        if self.late_events:
            out.append(
                f"LATE EVENTS ({len(self.late_events)} finalized invoice(s)): not on the invoice"
            )
            for late in self.late_events:
                out.append(
                    f"  invoice {late.invoice_id} (customer {late.customer_id}, "
                    f"{_iso(late.start_timestamp)}..{_iso(late.end_timestamp)}): "
                    f"{late.events} event(s)"
                )
        out.extend(f"note: {n}" for n in self.notes)
        stages = ", ".join(f"{k} {v:.2f}" for k, v in self.stage_seconds.items())
        out.append(f"elapsed {self.elapsed_seconds:.2f} s" + (f" ({stages})" if stages else ""))
        return out


# ---------------------------------------------------------------------------------------------
# Catalog snapshot and targets


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


@dataclass(frozen=True)
class Target:
    """One (contract, statement period) to compute, and the status its invoices get."""

    contract: Contract
    card: RateCard
    period: Period
    status: str  # draft | finalized


def _targets(
    con: duckdb.DuckDBPyConnection, snap: Snapshot, as_of: datetime, notes: list[str]
) -> list[Target]:
    frozen_until = dict(
        con.execute(
            "SELECT contract_id, max(period_end) FROM invoices WHERE status <> 'draft' "
            "GROUP BY contract_id"
        ).fetchall()
    )
    targets: list[Target] = []
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
            targets.append(Target(contract, card, period, "finalized" if final else "draft"))
    return targets


# ---------------------------------------------------------------------------------------------
# Computing: periods, windows, quantities, rating


def _register_periods(
    con: duckdb.DuckDBPyConnection, snap: Snapshot, targets: Sequence[Target]
) -> None:
    naive: dict[datetime, datetime] = {}  # periods repeat across contracts: convert each once

    def plain_ts(ts: datetime) -> datetime:
        found = naive.get(ts)
        return found if found is not None else naive.setdefault(ts, _naive(ts))

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


def _register_windows(
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
        cols["window_start"].append(naive.get(lo) or naive.setdefault(lo, _naive(lo)))
        cols["window_end"].append(naive.get(hi) or naive.setdefault(hi, _naive(hi)))
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


def _windows_of(kind: str) -> exp.Select:
    select = exp.select("customer_id", "window_id", "window_start", "window_end").from_(
        "mq_windows"
    )
    if kind == SEGMENT:
        return select.where(exp.column("is_segment"))
    if kind == PERIOD:
        return select.where(exp.column("is_period"))
    assert kind == ALL_WINDOWS
    return select


def _values_list(columns: Sequence[str]) -> exp.Expression:
    return exp.cast(
        exp.Array(expressions=[exp.column(c, quoted=True) for c in columns]),
        exp.DataType.build("VARCHAR[]"),
    )


@dataclass(frozen=True)
class UsageGroup:
    """One usage query: metrics sharing a scan, grouped by `keys` over the windows of `kind`;
    each product takes its rows, rolled up to its own keys when they are fewer."""

    kind: str
    keys: tuple[str, ...]
    products: tuple[Product, ...]


_ADDITIVE = (AggregationType.COUNT, AggregationType.SUM)


def plan_usage_groups(
    products: Sequence[Product],
    metrics: dict[str, BillableMetric],
    kinds: dict[str, str],
) -> list[UsageGroup]:
    """Group products into as few usage queries as the compiler allows.

    A product needs its metric grouped by its pricing + presentation keys, over the windows of
    its kind.  Products with the same (kind, keys) share one query.  A group whose metrics are
    all COUNT or SUM (additive: finer groups sum up exactly) also joins a group of the same
    kind grouped by more keys, when those keys lie within a compound group key of each of its
    metrics: one scan less, its rows rolled up.
    """
    exact: dict[tuple[str, tuple[str, ...]], list[Product]] = defaultdict(list)
    for product in products:
        assert product.id
        keys = tuple(sorted({*product.pricing_group_key, *product.presentation_group_key}))
        exact[(kinds[product.id], keys)].append(product)

    def fits(keys: tuple[str, ...], group: list[Product]) -> bool:
        for product in group:
            metric = metrics[product.id or ""]
            if metric.aggregation_type not in _ADDITIVE:
                return False
            if not any(set(keys) <= set(compound) for compound in metric.group_keys):
                return False
        return True

    merged = {key: list(group) for key, group in exact.items()}
    for key in sorted(exact, key=lambda k: (len(k[1]), k)):
        kind, keys = key
        hosts = [
            other
            for other in merged
            if other != key
            and other[0] == kind
            and set(keys) < set(other[1])
            and fits(other[1], merged[key])
        ]
        if hosts:
            host = max(hosts, key=lambda h: (len(merged[h]), -len(h[1]), h))
            merged[host].extend(merged.pop(key))
    return [
        UsageGroup(kind, keys, tuple(sorted(group, key=lambda p: p.id or "")))
        for (kind, keys), group in sorted(merged.items())
    ]


def _compute_quantities(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    pricing: Pricing,
    targets: Sequence[Target],
    notes: list[str],
    *,
    multi_segment: bool,
) -> None:
    """mq_quantities: one compiled usage query per usage group (plan_usage_groups), each over
    the one windows relation, all customers at once; its metrics share one scan."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE mq_quantities (window_id BIGINT, product_id VARCHAR, "
        "pricing_values VARCHAR[], presentation_values VARCHAR[], quantity DECIMAL(38, 12))"
    )
    billable: list[Product] = []
    sql_products: list[Product] = []
    for _pid, product in sorted(pricing.products.items()):
        (sql_products if pricing.metrics[_pid].sql is not None else billable).append(product)
    if not targets:
        return
    if sql_products:
        _sql_metric_quantities(con, home, pricing, sql_products, notes)
    if not billable:
        return
    kinds = {pid: (kind if multi_segment else ALL_WINDOWS) for pid, kind in pricing.kinds.items()}
    metrics = {pid: pricing.metrics[pid] for pid in pricing.products}
    lo = min(t.period.start for t in targets)
    hi = max(t.period.end for t in targets)
    # every window starts and ends at one of these: events join windows by (customer, slice)
    boundaries = [
        t
        for (t,) in con.execute(
            "SELECT window_start FROM mq_windows UNION SELECT window_end FROM mq_windows"
        ).fetchall()
    ]
    for group in plan_usage_groups(billable, metrics, kinds):
        used = list({metrics[p.id].id: metrics[p.id] for p in group.products}.values())  # type: ignore[index]
        properties = list(
            dict.fromkeys(prop for m in used for prop in metric_properties(m, group.keys))
        )
        files = event_files(con, home, lo, hi, event_types_of(used))
        compiled = compile_usage(
            used,
            events_relation(files, properties, lo, hi),
            window=Window.relation(_windows_of(group.kind), boundaries=boundaries),
            group_by=list(group.keys),
            ordered=False,
            customer_column=False,  # a window is one customer's
        )
        selects: list[exp.Expression] = []
        for product in group.products:
            pricing_cols = [compiled.group_columns[k] for k in product.pricing_group_key]
            present_cols = [compiled.group_columns[k] for k in product.presentation_group_key]
            rollup = len(pricing_cols) + len(present_cols) < len(group.keys)
            value: exp.Expression = exp.column("value")
            select = (
                exp.select(
                    exp.column("window_id"),
                    exp.Literal.string(product.id or ""),
                    _values_list(pricing_cols),
                    _values_list(present_cols),
                    exp.Sum(this=value) if rollup else value,
                )
                .from_("mq_usage")
                .where(
                    exp.EQ(
                        this=exp.column("metric_id"),
                        expression=exp.Literal.string(metrics[product.id].id or ""),  # type: ignore[index]
                    )
                )
            )
            if rollup:
                select = select.group_by(
                    exp.column("window_id"),
                    *(exp.column(c, quoted=True) for c in pricing_cols),
                    *(exp.column(c, quoted=True) for c in present_cols),
                )
            selects.append(select)
        # one statement per usage group: the usage rows go straight into mq_quantities (kept
        # once, MATERIALIZED, when several products read them)
        hint = "MATERIALIZED " if len(selects) > 1 else ""
        products = " UNION ALL ".join(s.sql(dialect="duckdb") for s in selects)
        con.execute(f"INSERT INTO mq_quantities WITH mq_usage AS {hint}({compiled.sql}) {products}")


def event_types_of(metrics: Sequence[BillableMetric]) -> list[str] | None:
    """The event types that events of `metrics` can have (None: any, when some metric has no
    `event_type_filter.in_values`)."""
    types: set[str] = set()
    for metric in metrics:
        etf = metric.event_type_filter
        if etf is None or etf.in_values is None:
            return None
        types |= set(etf.in_values) - set(etf.not_in_values or ())
    return sorted(types)


def event_files(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    start: datetime,
    end: datetime,
    event_types: Sequence[str] | None,
) -> list[EventFile]:
    """The committed event files (the manifest) that may hold events in [start, end) of one of
    `event_types` (None: any type): files are pruned by their timestamp range and by the event
    types they hold, before DuckDB opens any of them (inside a file, row groups are pruned by
    the same filters: files are sorted by event type, customer and timestamp)."""
    rows = con.execute(
        """
        SELECT path, row_count, min_timestamp, max_timestamp, property_columns
        FROM event_files
        WHERE max_timestamp >= ? AND min_timestamp < ?
          AND (?::VARCHAR[] IS NULL OR list_has_any(event_types, ?::VARCHAR[]))
        ORDER BY path
        """,
        [_naive(start), _naive(end), event_types, event_types],
    ).fetchall()
    root = home.events_dir
    return [
        EventFile(str(root / path), count, lo, hi, tuple(props))
        for path, count, lo, hi, props in rows
    ]


def _sql_metric_quantities(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    pricing: Pricing,
    products: Sequence[Product],
    notes: list[str],
) -> None:
    """Quantities of products on SQL metrics (SEMANTICS.md section 3): each SQL metric runs
    once, sandboxed (engine.sql_run), over the whole period windows of every customer; the
    products are priced at the rate in effect at the period's last instant (kind PERIOD).  A
    product's pricing + presentation keys must be exactly the query's group columns (a SQL
    value cannot be rolled up)."""
    from engine.sql_run import run_sql_metric
    from metric_compiler.sql_metric import sql_metric_columns

    windows = con.sql(
        "SELECT customer_id, window_id, window_start, window_end FROM mq_windows WHERE is_period"
    ).to_arrow_table()
    by_metric: dict[str, list[Product]] = defaultdict(list)
    for product in products:
        by_metric[pricing.metrics[product.id].id or ""].append(product)  # type: ignore[index]
    for metric_id, group in sorted(by_metric.items()):
        metric = pricing.metrics[group[0].id]  # type: ignore[index]
        assert metric.sql is not None
        _value, keys = sql_metric_columns(metric.sql)
        usable = []
        for product in group:
            wanted = {*product.pricing_group_key, *product.presentation_group_key}
            if wanted != set(keys):
                notes.append(
                    f"product {product.name!r} ({product.id}): its pricing + presentation keys "
                    f"{sorted(wanted)} are not the group columns {list(keys)} of SQL metric "
                    f"{metric.name!r}; a SQL value cannot be regrouped, so it is not billed"
                )
                con.execute(
                    "UPDATE mq_products SET computed = false WHERE product_id = ?", [product.id]
                )
                continue
            usable.append(product)
        if not usable:
            continue
        try:
            table = run_sql_metric(home, con, metric.sql, windows)
        except UserError as error:
            raise UserError(f"billable metric {metric.name!r} ({metric_id}): {error}") from None
        con.register("mq_sql_usage_arrow", table)
        try:
            for product in usable:

                def values(names: Sequence[str]) -> exp.Expression:
                    return exp.cast(
                        exp.Array(
                            expressions=[
                                exp.cast(exp.column(n, quoted=True), exp.DataType.build("VARCHAR"))
                                for n in names
                            ]
                        ),
                        exp.DataType.build("VARCHAR[]"),
                    )

                select = exp.select(
                    exp.column("window_id"),
                    exp.Literal.string(product.id or ""),
                    values(product.pricing_group_key),
                    values(product.presentation_group_key),
                    exp.cast(exp.column("value"), exp.DataType.build("DECIMAL(38, 12)")),
                ).from_("mq_sql_usage_arrow")
                con.execute("INSERT INTO mq_quantities " + select.sql(dialect="duckdb"))
        finally:
            con.unregister("mq_sql_usage_arrow")


def _compute(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    snap: Snapshot,
    targets: Sequence[Target],
    notes: list[str],
    watch: Stopwatch,
) -> Pricing:
    pricing = register_pricing(
        con,
        products=snap.products,
        metrics=snap.metrics,
        rate_cards=[snap.rate_cards[i] for i in sorted({t.card.id for t in targets if t.card.id})],
        credit_types=snap.credit_types.values(),
    )
    notes.extend(pricing.unsupported)
    with watch.stage("plan"):
        _register_periods(con, snap, targets)
        multi_segment = _register_windows(con, targets, set(pricing.kinds.values()))
    with watch.stage("usage"):
        _compute_quantities(con, home, pricing, targets, notes, multi_segment=multi_segment)
    with watch.stage("rating"):
        rate(con, pricing, multi_segment=multi_segment)
    return pricing


# ---------------------------------------------------------------------------------------------
# Invoices from rated lines


# The content hash of an invoice: the line count and two combinations (sum and xor) of the
# 64-bit hashes of its lines (lines are distinct, so their order does not matter).  A line's
# hash covers its product's name, metric and keys too.  Lines are grouped by (period, credit
# type), the key of an invoice, so the 1M-row line table is not joined with the invoices here.
_LINE_FIELDS = """l.product_id, l.rate_type, l.rate_card_id, l.rate_index, l.pricing_values,
                  l.presentation_values, l.starting_at, l.ending_before, l.tier_index,
                  l.tier_lower, l.tier_size, l.quantity, l.unit_price, l.total, pr.product_hash"""

_INVOICE_TOTALS = f"""
CREATE OR REPLACE TEMP TABLE mq_invoice_totals AS
WITH products AS (
    SELECT product_id,
           hash(product_name, billable_metric_id, pricing_keys, presentation_keys) AS product_hash
    FROM mq_products
), per_line AS (
    SELECT l.period_key, l.credit_type_id, l.total, hash({_LINE_FIELDS}) AS h
    FROM mq_lines l
    JOIN products pr ON pr.product_id = l.product_id
), per_key AS (
    SELECT period_key, credit_type_id, sum(total)::DECIMAL(38, 12) AS total,
           count(*) AS line_count, sum(h) % 18446744073709551616 AS h1, bit_xor(h) AS h2
    FROM per_line
    GROUP BY period_key, credit_type_id
)
SELECT i.invoice_id,
       coalesce(p.total, 0)::DECIMAL(38, 12) AS subtotal,
       coalesce(p.total, 0)::DECIMAL(38, 12) AS total,
       CAST(coalesce(p.line_count, 0) AS INTEGER) AS line_count,
       -- the text printf('%d-%d-%d', ...) gave, ~35x cheaper (printf of a HUGEINT is slow)
       coalesce(p.line_count, 0)::VARCHAR || '-' || coalesce(p.h1, 0)::VARCHAR || '-'
           || coalesce(p.h2, 0)::VARCHAR AS content_hash
FROM mq_invoices i
LEFT JOIN per_key p ON p.period_key = i.period_key AND p.credit_type_id = i.credit_type_id
"""  # noqa: S608 - fixed SQL

_OUTCOMES = """
CREATE OR REPLACE TEMP TABLE mq_outcomes AS
SELECT n.invoice_id, n.period_key, n.credit_type_id, n.credit_type_name, n.credit_precision,
       n.status, n.replaces, t.subtotal, t.total, t.line_count, t.content_hash,
       s.status AS old_status, s.revision AS old_revision,
       CASE WHEN s.id IS NULL THEN 'created'
            WHEN n.status = 'finalized' THEN 'finalized'
            WHEN s.content_hash <> t.content_hash THEN 'updated'
            ELSE 'unchanged' END AS outcome,
       CASE WHEN s.id IS NULL THEN 1
            WHEN s.content_hash <> t.content_hash THEN s.revision + 1
            ELSE s.revision END AS revision
FROM mq_invoices n
JOIN mq_invoice_totals t ON t.invoice_id = n.invoice_id
LEFT JOIN invoices s ON s.id = n.invoice_id
"""

_INSERT_INVOICES = """
INSERT INTO invoices
SELECT o.invoice_id, p.contract_id, p.customer_id, 'USAGE', p.period_start, p.period_end,
       o.credit_type_id, o.credit_type_name, o.credit_precision, o.status, o.revision,
       o.content_hash, o.subtotal, o.total, o.line_count, $seq, $as_of, o.replaces, NULL,
       now()::TIMESTAMP, now()::TIMESTAMP,
       CASE WHEN o.status = 'finalized' THEN now()::TIMESTAMP END, NULL
FROM mq_outcomes o JOIN mq_periods p ON p.period_key = o.period_key
WHERE o.outcome = 'created'
ORDER BY p.customer_id, p.period_start, o.invoice_id
"""

_UPDATE_INVOICES = """
UPDATE invoices SET
    status = o.status, revision = o.revision, content_hash = o.content_hash,
    subtotal = o.subtotal, total = o.total, line_count = o.line_count,
    data_seq = $seq, computed_as_of = $as_of, updated_at = now()::TIMESTAMP,
    finalized_at = CASE WHEN o.status = 'finalized' THEN now()::TIMESTAMP END
FROM mq_outcomes o
WHERE invoices.id = o.invoice_id AND o.outcome IN ('updated', 'finalized')
"""

# Lines and product snapshots of the invoices that are new or got a new revision.
_INSERT_LINES = """
INSERT INTO invoice_line_items
SELECT o.invoice_id, o.revision, l.product_id, l.rate_type, l.rate_card_id, l.rate_index,
       l.pricing_values, l.presentation_values, l.starting_at, l.ending_before, l.tier_index,
       l.tier_lower, l.tier_size, l.quantity, l.unit_price, l.total
FROM mq_lines l
JOIN mq_outcomes o ON o.period_key = l.period_key AND o.credit_type_id = l.credit_type_id
WHERE o.outcome = 'created' OR o.revision <> o.old_revision
"""

_INSERT_PRODUCTS = """
INSERT INTO invoice_products
SELECT o.invoice_id, o.revision, pr.product_id, pr.product_name, pr.billable_metric_id,
       pr.pricing_keys, pr.presentation_keys
FROM (SELECT DISTINCT period_key, credit_type_id, product_id FROM mq_lines) x
JOIN mq_outcomes o ON o.period_key = x.period_key AND o.credit_type_id = x.credit_type_id
JOIN mq_products pr ON pr.product_id = x.product_id
WHERE o.outcome = 'created' OR o.revision <> o.old_revision
"""


# The invoices of the targets (see _register_invoices), ids computed in SQL exactly as
# invoice_id() computes them in Python (tests/test_invoices_support.py checks both agree).
_INVOICES = """
CREATE OR REPLACE TEMP TABLE mq_invoices AS
WITH pairs AS (
    SELECT period_key, primary_credit_type_id AS credit_type_id FROM mq_periods
    UNION
    SELECT period_key, credit_type_id FROM mq_lines
    UNION
    SELECT p.period_key, s.credit_type_id
    FROM invoices s JOIN mq_periods p
      ON s.contract_id = p.contract_id AND s.period_start = p.period_start
    WHERE s.status = 'draft'
)
SELECT mq_uuid5(p.contract_id || '/' || mq_iso(p.period_start)
                || CASE WHEN x.credit_type_id = p.primary_credit_type_id THEN ''
                        ELSE '/' || x.credit_type_id END) AS invoice_id,
       x.period_key, x.credit_type_id,
       coalesce(c.credit_type_name, x.credit_type_id) AS credit_type_name,
       coalesce(c.credit_precision, 0) AS credit_precision,
       p.status, NULL::VARCHAR AS replaces
FROM pairs x
JOIN mq_periods p ON p.period_key = x.period_key
LEFT JOIN mq_credit_types c ON c.credit_type_id = x.credit_type_id
ORDER BY x.period_key, x.credit_type_id
"""


def _define_id_macros(con: duckdb.DuckDBPyConnection) -> None:
    """mq_iso(ts): `_iso` of a naive UTC timestamp; mq_uuid5(name): uuid5(INVOICE_NAMESPACE,
    name) as text (SHA-1 of the namespace bytes and the UTF-8 name, version 5, RFC 4122
    variant)."""
    namespace = "".join(f"\\x{b:02X}" for b in INVOICE_NAMESPACE.bytes)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP MACRO mq_iso(ts) AS (
            strftime(ts, '%Y-%m-%dT%H:%M:%S')
            || CASE WHEN microsecond(ts) % 1000000 = 0 THEN ''
                    ELSE '.' || lpad((microsecond(ts) % 1000000)::VARCHAR, 6, '0') END
            || 'Z');
        CREATE OR REPLACE TEMP MACRO mq_uuid5_hex(h) AS (
            substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-5' || substr(h, 14, 3) || '-'
            || substr('89ab', (('0x' || substr(h, 17, 1))::INTEGER & 3) + 1, 1)
            || substr(h, 18, 3) || '-' || substr(h, 21, 12));
        CREATE OR REPLACE TEMP MACRO mq_uuid5(name) AS (
            mq_uuid5_hex(sha1('{namespace}'::BLOB || encode(name))));
        """
    )


def _register_invoices(
    con: duckdb.DuckDBPyConnection,
    snap: Snapshot,
    targets: Sequence[Target],
    *,
    ids: dict[tuple[int, str], str] | None = None,
    replaces: str | None = None,
) -> None:
    """mq_invoices: the invoices of the targets, one per period and credit type (the rate card's
    own credit type always; others when they have line items; and any existing draft of the
    period, so a draft that lost all its lines is updated, not forgotten)."""
    if ids is None:
        _define_id_macros(con)
        con.execute(_INVOICES)
    else:
        rows: dict[str, list[Any]] = defaultdict(list)
        for (key, credit), the_id in sorted(ids.items()):
            ctype = snap.credit_types.get(credit)
            rows["invoice_id"].append(the_id)
            rows["period_key"].append(key)
            rows["credit_type_id"].append(credit)
            rows["credit_type_name"].append(ctype.name if ctype else credit)
            rows["credit_precision"].append(ctype.precision if ctype else 0)
            rows["status"].append(targets[key].status)
            rows["replaces"].append(replaces)
        create_temp(
            con,
            "mq_invoices",
            {
                "invoice_id": ("VARCHAR", rows["invoice_id"]),
                "period_key": ("BIGINT", rows["period_key"]),
                "credit_type_id": ("VARCHAR", rows["credit_type_id"]),
                "credit_type_name": ("VARCHAR", rows["credit_type_name"]),
                "credit_precision": ("INTEGER", rows["credit_precision"]),
                "status": ("VARCHAR", rows["status"]),
                "replaces": ("VARCHAR", rows["replaces"]),
            },
        )
    con.execute(_INVOICE_TOTALS)
    con.execute(_OUTCOMES)
    frozen = con.execute(
        "SELECT invoice_id, old_status FROM mq_outcomes WHERE old_status NOT IN ('draft')"
    ).fetchall()
    assert not frozen, f"refusing to recompute frozen invoices: {frozen[:3]}"


def _next_seq(con: duckdb.DuckDBPyConnection) -> int:
    """Number the committed batches not seen before; returns the data sequence number that
    describes every committed batch (inside the caller's transaction)."""
    [(current,)] = con.execute("SELECT coalesce(max(seq), 0) FROM invoice_event_batches").fetchall()
    con.execute(
        """
        INSERT INTO invoice_event_batches
        SELECT DISTINCT batch_id, ? FROM event_files
        WHERE batch_id NOT IN (SELECT batch_id FROM invoice_event_batches)
        """,
        [current + 1],
    )
    [(seq,)] = con.execute("SELECT coalesce(max(seq), 0) FROM invoice_event_batches").fetchall()
    return int(seq)


def _write(
    con: duckdb.DuckDBPyConnection, as_of: datetime, extra: Sequence[tuple[str, list]]
) -> int:
    """Write mq_outcomes in one transaction (plus `extra` statements); returns data_seq."""
    con.execute("BEGIN TRANSACTION")
    try:
        seq = _next_seq(con)
        params = {"seq": seq, "as_of": _naive(as_of)}
        con.execute(_INSERT_INVOICES, params)
        con.execute(_UPDATE_INVOICES, params)
        con.execute(_INSERT_LINES)
        con.execute(_INSERT_PRODUCTS)
        for statement, args in extra:
            con.execute(statement, args)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return seq


# ---------------------------------------------------------------------------------------------
# Run


def _unrated(con: duckdb.DuckDBPyConnection, pricing: Pricing) -> list[UnratedUsage]:
    rows = con.execute(
        """
        SELECT customer_id, contract_id, period_start, period_end, product_id, pricing_values,
               sum(quantity) AS quantity, reason
        FROM mq_unrated
        GROUP BY ALL
        ORDER BY customer_id, period_start, contract_id, product_id, pricing_values, reason
        """
    ).fetchall()
    out = []
    for customer, contract, start, end, pid, values, quantity, reason in rows:
        product = pricing.products[pid]
        out.append(
            UnratedUsage(
                customer_id=customer,
                contract_id=contract,
                start_timestamp=start,
                end_timestamp=end,
                product_id=pid,
                product_name=product.name,
                pricing_group_values=dict(zip(product.pricing_group_key, values, strict=True)),
                quantity=plain(quantity),
                reason=reason,
            )
        )
    return out


def late_events(con: duckdb.DuckDBPyConnection, home: Home) -> list[LateEvents]:
    """Events of batches newer than a finalized invoice's computation, inside its customer and
    period (see the module docstring).  Reads only the files of such batches."""
    files = [
        EventFile(str(home.events_dir / path), count, lo, hi, tuple(props))
        for path, count, lo, hi, props in con.execute(
            """
            SELECT f.path, f.row_count, f.min_timestamp, f.max_timestamp, f.property_columns
            FROM event_files f JOIN invoice_event_batches b ON b.batch_id = f.batch_id
            WHERE EXISTS (
                SELECT 1 FROM invoices i
                WHERE i.status = 'finalized' AND b.seq > i.data_seq
                  AND f.max_timestamp >= i.period_start AND f.min_timestamp < i.period_end)
            ORDER BY f.path
            """
        ).fetchall()
    ]
    if not files:
        return []
    events = events_relation(files, (), None, None).sql(dialect="duckdb")
    rows = con.execute(
        f"""
        SELECT i.id, i.customer_id, i.contract_id, i.period_start, i.period_end, count(*)
        FROM ({events}) e
        JOIN invoice_event_batches b ON b.batch_id = e.batch_id
        JOIN invoices i
          ON i.customer_id = e.customer_id
         AND e."timestamp" >= i.period_start AND e."timestamp" < i.period_end
         AND b.seq > i.data_seq
        WHERE i.status = 'finalized'
        GROUP BY ALL
        ORDER BY i.customer_id, i.period_start, i.id
        """  # noqa: S608 - the events relation is built by sqlglot from manifest paths
    ).fetchall()
    return [
        LateEvents(
            invoice_id=i,
            customer_id=c,
            contract_id=k,
            start_timestamp=s,
            end_timestamp=e,
            events=n,
        )
        for i, c, k, s, e, n in rows
    ]


def run(
    home: Home, con: duckdb.DuckDBPyConnection, as_of: datetime, *, progress: Any = None
) -> RunSummary:
    """`meterql invoice run --as-of T` (the caller holds the home's writer lock)."""
    from engine.output import progress as progress_bar

    started = time.perf_counter()
    as_of = utc(as_of)
    notes: list[str] = []
    watch = Stopwatch()
    with watch.stage("plan"):
        snap = Snapshot.load(con)
        targets = _targets(con, snap, as_of, notes)
    counts = InvoiceCounts()
    [(counts.frozen,)] = con.execute(
        "SELECT count(*) FROM invoices WHERE status <> 'draft' AND period_start <= ?",
        [_naive(as_of)],
    ).fetchall()
    totals: list[CreditTotal] = []
    unrated: list[UnratedUsage] = []
    if not targets:
        if not any(c.starting_at <= as_of for c in snap.contracts):
            notes.append(
                f"no contract has started by {_iso(as_of)}; no invoices"
                if snap.contracts
                else "the catalog has no contracts; no invoices"
            )
    else:
        bar_cm = progress if progress is not None else progress_bar("invoice run", total=6)
        with bar_cm as bar:
            watch.bar = bar
            pricing = _compute(con, home, snap, targets, notes, watch)
            with watch.stage("invoices"):
                _register_invoices(con, snap, targets)
                unrated = _unrated(con, pricing)
            with watch.stage("write"):
                _write(con, as_of, [])
            watch.bar = None
        for outcome, n in con.execute(
            "SELECT outcome, count(*) FROM mq_outcomes GROUP BY outcome"
        ).fetchall():
            setattr(counts, outcome, n)
        for ct_id, ct_name, precision, n, total in con.execute(
            """
            SELECT credit_type_id, credit_type_name, credit_precision, count(*), sum(total)
            FROM mq_outcomes GROUP BY ALL ORDER BY credit_type_name, credit_type_id
            """
        ).fetchall():
            totals.append(
                CreditTotal(
                    credit_type=CreditTypeRef(id=ct_id, name=ct_name),
                    invoices=n,
                    total=invoice_store.money(total, precision),
                )
            )
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
    )


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
    snap = Snapshot.load(con)
    contract = next((c for c in snap.contracts if c.id == old.contract_id), None)
    if contract is None:
        raise UserError(f"invoice {old.id}: its contract {old.contract_id!r} no longer exists")
    card = snap.rate_cards.get(contract.rate_card_id)
    if card is None:
        raise UserError(
            f"invoice {old.id}: rate card {contract.rate_card_id!r} of contract "
            f"{contract.id} no longer exists"
        )
    period = Period(utc(old.start_timestamp), utc(old.end_timestamp))
    target = Target(contract, card, period, "finalized")
    new_id = regenerated_id(old.id)
    notes: list[str] = []
    from engine.output import progress as progress_bar

    with progress_bar("regenerate invoice", total=3) as bar:
        _compute(con, home, snap, [target], notes, Stopwatch(bar, "regenerate invoice"))
    _register_invoices(con, snap, [target], ids={(0, old.credit_type.id): new_id}, replaces=old.id)
    _write(
        con,
        datetime.now(UTC),
        [
            (
                "UPDATE invoices SET status = 'void', superseded_by = ?, "
                "voided_at = coalesce(voided_at, now()::TIMESTAMP), "
                "updated_at = now()::TIMESTAMP WHERE id = ?",
                [new_id, old.id],
            )
        ],
    )
    return invoice_store.get(con, new_id)
