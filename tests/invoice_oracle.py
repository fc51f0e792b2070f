"""An independent, pure-Python biller of USAGE invoices (SEMANTICS.md sections 2, 4-7 and the
README's "Billing rules"), the reference of tests/test_invoice_oracle.py.

It reads the catalog documents `meterql apply` takes (plain dicts; every object carries its
`id`, references may use an id or a name) and the ingest batches (clock, Metronome-shaped event
dicts), and computes what `invoice run --as-of T` should write: every started statement
period's invoices (one per credit type) with their line items and totals, and the unrated
usage.  It imports nothing from engine/ or metric_compiler/: metric quantities come from
tests/evaluator.py, everything else is written here from the documents' words, one event and
one period at a time, in Decimal.  Slow on purpose; for small tests only.

Readings of the rules it takes (each written in SEMANTICS.md or the README):
- periods: boundaries every 1, 3, 12 months on the anchor's day (clamped to a month's last day,
  and back after) and time, or every 7 days; anchors FIRST_OF_MONTH (the 1st of the start
  month; WEEKLY: the Monday of the start week), CONTRACT_START, CUSTOM_DATE; the first period
  from `starting_at`, the last cut at `ending_before`; a period exists when start <= as_of;
  finalized when end + 24 h <= as_of;
- COUNT, SUM: each event is priced by the rate in effect at its timestamp (one line per rate
  segment = the rate's window inside the period); MAX, UNIQUE, LATEST: the period's quantity at
  the rate in effect at the period's last instant (starting_at < end <= ending_before);
- a line's quantity: summed usage, then quantity_conversion (DIVIDE by a factor without a
  finite reciprocal: 12 places, ROUND_HALF_UP), then quantity_rounding;
- tiers: graduated, (lower, lower + size], counted per period and group values from the
  start of the period across rate segments (the positive converted quantities of the earlier
  segments that a rate prices); a quantity <= 0 is priced at the first tier;
- total: quantity x unit price, ROUND_HALF_UP to the credit type's precision; the invoice total
  is the sum of its lines;
- zero lines: a product without pricing keys gets, for each entitled rate segment without
  usage, a line of quantity 0 (presentation values null);
- unrated usage (raw quantity, before conversion): not_on_rate_card, no_rate_for_group_values,
  no_rate_in_effect, unsupported_rate_type (an entitled PERCENTAGE or SUBSCRIPTION rate); a
  rate with entitled false bills nothing and is not reported;
- invoices: one per (contract, period, credit type): the rate card's own (fiat_credit_type_id,
  default USD cents) always, others when they have lines; id uuid5(contract "/" ISO start [ "/"
  credit type id for another credit type]).
"""

from __future__ import annotations

import calendar
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal, localcontext
from typing import Any

from evaluator import Event, evaluate, event_matches, finite_decimal

USD_CENTS = {"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)", "precision": 0}
# The namespace of invoice ids (engine.invoice_ids; the README documents only the names).
INVOICE_NAMESPACE = uuid.UUID("2b0f4c8e-6a59-5d1e-9f3a-6d6574657271")
GRACE = timedelta(hours=24)
TOO_OLD = timedelta(days=34)
SKEW = timedelta(minutes=5)
DIVIDE_PLACES = 12
KINDS = ("credit_types", "billable_metrics", "products", "rate_cards", "customers", "contracts")


@dataclass(frozen=True)
class Line:
    product_id: str
    starting_at: datetime
    ending_before: datetime
    pricing: tuple[tuple[str, str | None], ...]
    presentation: tuple[tuple[str, str | None], ...]
    tier: int | None
    quantity: Decimal
    unit_price: Decimal
    total: Decimal


@dataclass
class Invoice:
    id: str
    customer_id: str
    contract_id: str
    status: str
    start: datetime
    end: datetime
    credit_type_id: str
    credit_type_name: str
    lines: list[Line] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((line.total for line in self.lines), Decimal(0))


@dataclass(frozen=True)
class Unrated:
    customer_id: str
    contract_id: str
    start: datetime
    end: datetime
    product_id: str
    pricing: tuple[tuple[str, str | None], ...]
    reason: str
    quantity: Decimal


@dataclass
class Bill:
    invoices: dict[str, Invoice]
    unrated: list[Unrated]


# ---------------------------------------------------------------------------------------------
# Reading documents and events


def when(value: Any) -> datetime:
    """Naive UTC from ISO text or a datetime (naive means UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


class Catalog:
    """The documents' objects by kind and id; references by id or name."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        self.objects["credit_types"][USD_CENTS["id"]] = USD_CENTS
        for doc in documents:
            for kind in KINDS:
                for obj in doc.get(kind, []):
                    self.objects[kind][obj["id"]] = obj

    def ref(self, kind: str, key: str) -> dict[str, Any]:
        found = self.objects[kind].get(key)
        if found is not None:
            return found
        [named] = [o for o in self.objects[kind].values() if o["name"] == key]
        return named


def stored_events(batches: list[tuple[datetime, list[dict[str, Any]]]]) -> list[Event]:
    """The events ingest keeps: inside the clock's window, first accepted copy of an id."""
    seen: set[str] = set()
    out = []
    for clock, events in batches:
        for e in events:
            ts = when(e["timestamp"])
            if ts < clock - TOO_OLD or ts > clock + SKEW or e["transaction_id"] in seen:
                continue
            seen.add(e["transaction_id"])
            props = {k: text(v) for k, v in (e.get("properties") or {}).items() if v is not None}
            out.append(
                Event(e["transaction_id"], text(e["customer_id"]), e["event_type"], ts, props)
            )
    return out


# ---------------------------------------------------------------------------------------------
# Statement periods


def add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last))


def periods(contract: dict[str, Any], as_of: datetime) -> list[tuple[datetime, datetime]]:
    schedule = contract["usage_statement_schedule"]
    frequency = schedule["frequency"].upper()
    day = schedule.get("day", "FIRST_OF_MONTH").upper()
    start = when(contract["starting_at"])
    stop = when(contract["ending_before"]) if contract.get("ending_before") else None
    if day == "CONTRACT_START":
        anchor = start
    elif day == "CUSTOM_DATE":
        anchor = when(schedule["billing_anchor_date"])
    elif frequency == "WEEKLY":
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        anchor = midnight - timedelta(days=midnight.weekday())
    else:
        anchor = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    def boundary(k: int) -> datetime:
        if frequency == "WEEKLY":
            return anchor + timedelta(days=7 * k)
        return add_months(anchor, k * {"MONTHLY": 1, "QUARTERLY": 3, "ANNUAL": 12}[frequency])

    k = 0
    while boundary(k) > start:
        k -= 1
    while boundary(k) <= start:
        k += 1
    out = []
    lo = start
    while lo <= as_of and (stop is None or lo < stop):
        hi = boundary(k) if stop is None else min(boundary(k), stop)
        out.append((lo, hi))
        lo, k = hi, k + 1
    return out


def iso(moment: datetime) -> str:
    out = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return out + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"


# ---------------------------------------------------------------------------------------------
# Quantities, tiers, money


def convert(product: dict[str, Any], quantity: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 120
        conversion = product.get("quantity_conversion")
        if conversion:
            factor = Decimal(str(conversion["conversion_factor"]))
            if conversion["operation"].upper() == "MULTIPLY":
                quantity = quantity * factor
            else:
                inverse = Decimal(1) / factor
                if inverse * factor == 1:
                    quantity = quantity * inverse
                else:
                    quantity = (quantity / factor).quantize(
                        Decimal(1).scaleb(-DIVIDE_PLACES), rounding=ROUND_HALF_UP
                    )
        rounding = product.get("quantity_rounding")
        if rounding:
            mode = {"ROUND_UP": ROUND_UP, "ROUND_DOWN": ROUND_DOWN, "ROUND_HALF_UP": ROUND_HALF_UP}
            quantity = quantity.quantize(
                Decimal(1).scaleb(-rounding["decimal_places"]),
                rounding=mode[rounding["rounding_method"].upper()],
            )
    return quantity


def priced(rate: dict[str, Any], prior: Decimal, quantity: Decimal) -> list[tuple]:
    """(tier index or None, units, unit price) of `quantity` units after `prior` units."""
    if rate["rate_type"].upper() == "FLAT":
        return [(None, quantity, Decimal(str(rate["price"])))]
    tiers = [
        (None if t.get("size") is None else Decimal(str(t["size"])), Decimal(str(t["price"])))
        for t in rate["tiers"]
    ]
    if quantity <= 0:
        return [(0, quantity, tiers[0][1])]
    out = []
    lower = Decimal(0)
    top = prior + quantity
    for index, (size, price) in enumerate(tiers):
        upper = None if size is None else lower + size
        units = (top if upper is None else min(upper, top)) - max(lower, prior)
        if units > 0:
            out.append((index, units, price))
        if upper is None:
            break
        lower = upper
    return out


def money(amount: Decimal, precision: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 120
        return amount.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------------------------------------
# The biller


def bill(
    documents: list[dict[str, Any]],
    batches: list[tuple[datetime, list[dict[str, Any]]]],
    as_of: datetime,
) -> Bill:
    cat = Catalog(documents)
    owner: dict[str, str] = {}
    for cid, customer in cat.objects["customers"].items():
        for key in [cid, *customer.get("ingest_aliases", []), customer.get("external_id")]:
            if key is not None:
                owner[key] = cid
    events = [
        Event(e.transaction_id, owner[e.customer_id], e.event_type, e.timestamp, e.properties)
        for e in stored_events(batches)
        if e.customer_id in owner
    ]
    out = Bill({}, [])
    for contract_id, contract in sorted(cat.objects["contracts"].items()):
        customer_id = cat.ref("customers", contract["customer_id"])["id"]
        card = cat.ref("rate_cards", contract["rate_card_id"])
        mine = [e for e in events if e.customer_id == customer_id]
        for start, end in periods(contract, as_of):
            _bill_period(cat, out, contract_id, customer_id, card, mine, start, end, as_of)
    return out


@dataclass
class _Period:
    cat: Catalog
    out: Bill
    contract_id: str
    customer_id: str
    card: dict[str, Any]
    start: datetime
    end: datetime
    lines: dict[str, list[Line]] = field(default_factory=lambda: defaultdict(list))

    def credit_type(self, rate: dict[str, Any] | None) -> dict[str, Any]:
        key = (rate or {}).get("credit_type_id") or self.card.get("fiat_credit_type_id")
        return self.cat.ref("credit_types", key or USD_CENTS["id"])

    def rates(self, product_id: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.card.get("rates", [])
            if self.cat.ref("products", r["product_id"])["id"] == product_id
        ]

    def unrated(self, product: dict, pricing: tuple, reason: str, quantity: Decimal) -> None:
        self.out.unrated.append(
            Unrated(
                self.customer_id,
                self.contract_id,
                self.start,
                self.end,
                product["id"],
                pricing,
                reason,
                quantity,
            )
        )

    def reason(self, product: dict[str, Any], pricing: tuple) -> str:
        rates = self.rates(product["id"])
        if not rates:
            return "not_on_rate_card"
        if not [r for r in rates if _values(r) == pricing]:
            return "no_rate_for_group_values"
        return "no_rate_in_effect"

    def add(
        self,
        product: dict[str, Any],
        rate: dict[str, Any],
        span: tuple[datetime, datetime],
        groups: tuple[tuple, tuple],
        prior: Decimal,
        quantity: Decimal,
    ) -> None:
        credit = self.credit_type(rate)
        for tier, units, price in priced(rate, prior, quantity):
            total = money(units * price, credit.get("precision", 0))
            line = Line(product["id"], *span, *groups, tier, units, price, total)
            self.lines[credit["id"]].append(line)


def _values(rate: dict[str, Any]) -> tuple:
    return tuple(sorted((k, text(v)) for k, v in (rate.get("pricing_group_values") or {}).items()))


def _billable(rate: dict[str, Any]) -> bool:
    return rate.get("entitled", True) and rate["rate_type"].upper() in ("FLAT", "TIERED")


def _unsupported(rate: dict[str, Any]) -> bool:
    """An entitled rate of a type meterql does not bill yet: its usage is unrated."""
    return rate.get("entitled", True) and rate["rate_type"].upper() not in ("FLAT", "TIERED")


def _bill_period(
    cat: Catalog,
    out: Bill,
    contract_id: str,
    customer_id: str,
    card: dict[str, Any],
    events: list[Event],
    start: datetime,
    end: datetime,
    as_of: datetime,
) -> None:
    p = _Period(cat, out, contract_id, customer_id, card, start, end)
    inside = [e for e in events if start <= e.timestamp < end]
    for product in cat.objects["products"].values():
        if product["type"].upper() != "USAGE":
            continue
        metric = cat.ref("billable_metrics", product["billable_metric_id"])
        if metric["aggregation_type"].upper() in ("COUNT", "SUM"):
            _bill_segments(p, product, metric, inside)
        else:
            _bill_whole(p, product, metric, inside)
    primary = p.credit_type(None)["id"]
    status = "finalized" if end + GRACE <= as_of else "draft"
    for credit_id in sorted({primary, *p.lines}):
        suffix = "" if credit_id == primary else f"/{credit_id}"
        name = f"{contract_id}/{iso(start)}{suffix}"
        invoice_id = str(uuid.uuid5(INVOICE_NAMESPACE, name))
        credit = cat.ref("credit_types", credit_id)
        out.invoices[invoice_id] = Invoice(
            invoice_id,
            customer_id,
            contract_id,
            status,
            start,
            end,
            credit_id,
            credit["name"],
            p.lines.get(credit_id, []),
        )


def _groups(product: dict[str, Any], props: dict[str, str]) -> tuple[tuple, tuple]:
    pricing = tuple(sorted((k, props.get(k)) for k in product.get("pricing_group_key", [])))
    shown = tuple(sorted((k, props.get(k)) for k in product.get("presentation_group_key", [])))
    return pricing, shown


def _counts(metric: dict[str, Any], event: Event) -> bool:
    if not event_matches(metric, event):
        return False
    if metric["aggregation_type"].upper() in ("SUM", "MAX", "LATEST"):
        return finite_decimal(event.properties.get(metric["aggregation_key"], "")) is not None
    return True


def _quantity(metric: dict[str, Any], members: list[Event]) -> Decimal:
    [row] = evaluate(metric, members, start=datetime.min, end=datetime.max)
    return row[-1]


def _in_effect(rate: dict[str, Any], moment: datetime) -> bool:
    stop = rate.get("ending_before")
    return when(rate["starting_at"]) <= moment and (stop is None or moment < when(stop))


def _bill_segments(p: _Period, product: dict, metric: dict, events: list[Event]) -> None:
    """COUNT, SUM: each event priced by the rate in effect at its timestamp."""
    buckets: dict[tuple, list[Event]] = defaultdict(list)
    rates = p.rates(product["id"])
    for e in events:
        if not _counts(metric, e):
            continue
        groups = _groups(product, e.properties)
        found = [r for r in rates if _values(r) == groups[0] and _in_effect(r, e.timestamp)]
        assert len(found) <= 1, "apply refuses overlapping rates"
        key = (groups, id(found[0]) if found else None)
        buckets[key].append(e)
    used = set()
    prior: dict[tuple, Decimal] = defaultdict(Decimal)
    ordered = []
    for (groups, rate_key), members in buckets.items():
        quantity = _quantity(metric, members)
        if rate_key is None:
            p.unrated(product, groups[0], p.reason(product, groups[0]), quantity)
            continue
        [rate] = [r for r in rates if id(r) == rate_key]
        used.add(rate_key)
        if _unsupported(rate):
            p.unrated(product, groups[0], "unsupported_rate_type", quantity)
        elif _billable(rate):
            span = (max(when(rate["starting_at"]), p.start), _rate_end(rate, p.end))
            ordered.append((span, groups, rate, convert(product, quantity)))
    for span, groups, rate, quantity in sorted(ordered, key=lambda x: x[0]):
        p.add(product, rate, span, groups, prior[groups], quantity)
        prior[groups] += max(quantity, Decimal(0))
    if product.get("pricing_group_key"):
        return
    for rate in rates:
        overlaps = when(rate["starting_at"]) < p.end and (
            rate.get("ending_before") is None or when(rate["ending_before"]) > p.start
        )
        if overlaps and _billable(rate) and id(rate) not in used:
            span = (max(when(rate["starting_at"]), p.start), _rate_end(rate, p.end))
            p.add(product, rate, span, ((), _no_values(product)), Decimal(0), Decimal(0))


def _rate_end(rate: dict[str, Any], end: datetime) -> datetime:
    stop = rate.get("ending_before")
    return end if stop is None else min(when(stop), end)


def _no_values(product: dict[str, Any]) -> tuple:
    return tuple(sorted((k, None) for k in product.get("presentation_group_key", [])))


def _bill_whole(p: _Period, product: dict, metric: dict, events: list[Event]) -> None:
    """MAX, UNIQUE, LATEST: the period's quantity at the rate in effect at its last instant."""
    buckets: dict[tuple, list[Event]] = defaultdict(list)
    for e in events:
        if _counts(metric, e):
            buckets[_groups(product, e.properties)].append(e)
    rates = p.rates(product["id"])
    last = p.end - timedelta(microseconds=1)
    span = (p.start, p.end)
    for groups, members in buckets.items():
        quantity = _quantity(metric, members)
        found = [r for r in rates if _values(r) == groups[0] and _in_effect(r, last)]
        if not found:
            p.unrated(product, groups[0], p.reason(product, groups[0]), quantity)
        elif _unsupported(found[0]):
            p.unrated(product, groups[0], "unsupported_rate_type", quantity)
        elif _billable(found[0]):
            p.add(product, found[0], span, groups, Decimal(0), convert(product, quantity))
    if product.get("pricing_group_key") or buckets:
        return
    for rate in rates:
        if _in_effect(rate, last) and _billable(rate):
            p.add(product, rate, span, ((), _no_values(product)), Decimal(0), Decimal(0))
