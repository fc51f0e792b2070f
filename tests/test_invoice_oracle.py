"""Invoice runs against an independent biller (tests/invoice_oracle.py): random small catalogs
and events, ingested through the real ingest and billed by `Meterql.invoice_run`; every invoice,
line item and unrated usage must equal the oracle's, exactly.

Each example builds its own home (about 1-2 s under load), so examples are few and not shrunk
(a failure prints its whole, already small, example); ORACLE_EXAMPLES=200 runs more by hand."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from invoice_oracle import bill, when

from engine.api import Meterql

SETTINGS = settings(
    max_examples=int(os.environ.get("ORACLE_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)

VALUES = {"model": ["a", "b", "c"], "region": ["x", "y"], "user": ["u1", "u2", "u3"]}
NUMBERS = ["1", "2", "10", "25", "2.5", "120.5", "-3", "0", "0.000000000001", "7.25", "abc", "1e3"]
COMPOUND_KEYS = [[], [["model", "region"]], [["model"], ["region"]], [["model", "region", "user"]]]
CREDIT_TYPES = [{"id": "eur", "name": "EUR", "precision": 2}]
OTHER_CREDIT = {None: "eur", "eur": "2714e483-4ff1-48e4-9e25-ac732e8f24f2"}
CONVERSIONS = [
    None,
    {"conversion_factor": 2, "operation": "multiply"},
    {"conversion_factor": 1000, "operation": "DIVIDE"},
    {"conversion_factor": 3, "operation": "DIVIDE"},
    {"conversion_factor": "0.5", "operation": "MULTIPLY"},
]
ROUNDINGS = [
    None,
    {"decimal_places": 0, "rounding_method": "ROUND_UP"},
    {"decimal_places": 1, "rounding_method": "round_half_up"},
    {"decimal_places": 0, "rounding_method": "ROUND_DOWN"},
]
PRICES = ["1.5", "3", "0.25", "0.125", "2", "0.3"]
TIERS = [
    [{"size": 2, "price": 3}, {"price": 1}],
    [{"size": "2.5", "price": "1.5"}, {"size": 10, "price": 1}, {"price": "0.25"}],
    [{"price": "0.5"}],
]
# rate windows of one (product, pricing values): [start, end) pairs, never overlapping
TIMELINES = [
    [("2025-12-01", None)],
    [("2025-12-01", "2026-02-10"), ("2026-02-10", None)],
    [("2026-01-20T06:00:00", None)],
    [("2025-12-01", "2026-03-05")],
    [("2025-12-01", "2026-01-15T12:00:00"), ("2026-02-01", None)],
]
STARTS = ["2026-01-01", "2026-01-15T12:00:00", "2026-02-03", "2025-12-31", "2026-02-20T06:00:00"]
ENDS = [None, None, "2026-03-10", "2026-02-20T06:00:00"]
ANCHORS = ["2025-11-30T08:00:00", "2026-01-31", "2026-02-04"]
SPECIAL_TIMES = [
    "2026-02-10T00:00:00",
    "2026-02-09T23:59:59.999999",
    "2026-02-01T00:00:00",
    "2026-01-15T12:00:00",
    "2026-03-01T00:00:00",
    "2026-01-20T06:00:00",
    "2026-03-05T00:00:00",
    "2026-03-10T00:00:00",
    "2026-02-20T06:00:00",
    "2026-02-20T05:59:59.999999",
    "2026-02-03T00:00:00",
    "2026-02-04T00:00:00",
    "2026-01-01T00:00:00",
]
AS_OF = ["2026-02-15T00:00:00", "2026-03-02T00:00:00", "2026-04-12T00:00:00"]
BASE = datetime(2025, 12, 15)
BATCH_DAYS = 30


def z(moment: str | None) -> str | None:
    if moment is None:
        return None
    return moment + ("T00:00:00Z" if "T" not in moment else "Z")


@st.composite
def metric(draw: st.DrawFn, index: int) -> dict[str, Any]:
    agg = draw(st.sampled_from(["count", "SUM", "max", "UNIQUE", "latest"]))
    doc: dict[str, Any] = {"id": f"m{index}", "name": f"Metric {index}", "aggregation_type": agg}
    group_keys = draw(st.sampled_from(COMPOUND_KEYS))
    required = [k for key in group_keys for k in key]
    if agg.upper() in ("SUM", "MAX", "LATEST"):
        doc["aggregation_key"] = "n"
    elif agg.upper() == "UNIQUE":
        doc["aggregation_key"] = draw(st.sampled_from(["n", "user"]))
    if "aggregation_key" in doc:
        required.append(doc["aggregation_key"])
    filters = []
    for name in dict.fromkeys(required):
        if name in VALUES and draw(st.booleans()):
            pool = VALUES[name]
            filters.append(
                {
                    "name": name,
                    "in_values": draw(st.sets(st.sampled_from(pool), min_size=1).map(sorted)),
                }
            )
        else:
            filters.append({"name": name, "exists": True})
    if "user" not in required and draw(st.booleans()):
        filters.append({"name": "user", "not_in_values": ["u3"]})
    doc["property_filters"] = filters
    etf = draw(st.sampled_from([None, {"in_values": ["llm"]}, {"not_in_values": ["call"]}]))
    if etf:
        doc["event_type_filter"] = etf
    if group_keys:
        doc["group_keys"] = group_keys
    return doc


def subset(draw: st.DrawFn, keys: list[str]) -> list[str]:
    return [k for k in keys if draw(st.booleans())]


@st.composite
def product(draw: st.DrawFn, index: int, metric_doc: dict[str, Any]) -> dict[str, Any]:
    compound = draw(st.sampled_from(metric_doc.get("group_keys") or [[]]))
    pricing = subset(draw, compound)
    shown = subset(draw, [k for k in compound if k not in pricing])
    doc: dict[str, Any] = {
        "id": f"p{index}",
        "name": f"Product {index}",
        "type": draw(st.sampled_from(["usage", "USAGE"])),
        "billable_metric_id": draw(st.sampled_from([metric_doc["id"], metric_doc["name"]])),
    }
    if pricing:
        doc["pricing_group_key"] = pricing
    if shown:
        doc["presentation_group_key"] = shown
    conversion = draw(st.sampled_from(CONVERSIONS))
    if conversion:
        doc["quantity_conversion"] = conversion
    rounding = draw(st.sampled_from(ROUNDINGS))
    if rounding:
        doc["quantity_rounding"] = rounding
    return doc


@st.composite
def rates(draw: st.DrawFn, product_doc: dict[str, Any], fiat: str | None) -> list[dict]:
    keys = product_doc.get("pricing_group_key", [])
    combos: list[dict[str, str]] = [{}]
    for k in keys:
        combos = [{**c, k: v} for c in combos for v in VALUES[k]]
    chosen = [c for c in combos if draw(st.integers(0, 3)) > 0]
    out = []
    for values in chosen:
        for start, end in draw(st.sampled_from(TIMELINES)):
            rate: dict[str, Any] = {
                "product_id": draw(st.sampled_from([product_doc["id"], product_doc["name"]])),
                "starting_at": z(start),
            }
            if end:
                rate["ending_before"] = z(end)
            kind = draw(st.sampled_from(["flat", "tiered", "flat", "tiered", "percentage"]))
            if kind != "tiered":
                rate["rate_type"] = kind
                rate["price"] = draw(st.sampled_from(PRICES))
            else:
                rate["rate_type"] = "TIERED"
                rate["tiers"] = draw(st.sampled_from(TIERS))
            if draw(st.integers(0, 6)) == 0:
                rate["entitled"] = False
            if draw(st.integers(0, 4)) == 0:
                rate["credit_type_id"] = OTHER_CREDIT[fiat]
            if values:
                rate["pricing_group_values"] = values
            out.append(rate)
    return out


@st.composite
def contract(draw: st.DrawFn, index: int, customer: str, cards: list[str]) -> dict[str, Any]:
    start = draw(st.sampled_from(STARTS))
    end = draw(st.sampled_from(ENDS))
    schedule: dict[str, Any] = {
        "frequency": draw(st.sampled_from(["MONTHLY", "monthly", "quarterly", "WEEKLY", "ANNUAL"]))
    }
    day = draw(st.sampled_from([None, "FIRST_OF_MONTH", "contract_start", "CUSTOM_DATE"]))
    if day:
        schedule["day"] = day
    if day == "CUSTOM_DATE":
        schedule["billing_anchor_date"] = z(draw(st.sampled_from(ANCHORS)))
    doc = {
        "id": f"k{index}",
        "customer_id": customer,
        "rate_card_id": draw(st.sampled_from(cards)),
        "starting_at": z(start),
        "usage_statement_schedule": schedule,
    }
    if end is not None and when(z(end)) > when(z(start)):
        doc["ending_before"] = z(end)
    return doc


@st.composite
def catalog(draw: st.DrawFn) -> dict[str, Any]:
    metrics = [draw(metric(i)) for i in range(draw(st.integers(1, 3)))]
    products = [draw(product(i, m)) for i, m in enumerate(metrics)]
    cards = []
    for c in range(draw(st.integers(1, 2))):
        fiat = draw(st.sampled_from([None, "eur"]))
        card: dict[str, Any] = {"id": f"card{c}", "name": f"Card {c}", "rates": []}
        if fiat:
            card["fiat_credit_type_id"] = draw(st.sampled_from(["eur", "EUR"]))
        for p in products:
            if draw(st.integers(0, 4)) > 0:
                card["rates"] += draw(rates(p, fiat))
        cards.append(card)
    customers = [
        {"id": "c1", "name": "Acme", "ingest_aliases": ["acme-alias"]},
        {"id": "c2", "name": "Beta", "ingest_aliases": ["beta-1", "beta-2"]},
        {"id": "c3", "name": "Gamma", "external_id": "gamma-ext"},
    ]
    card_refs = [c["id"] for c in cards] + [c["name"] for c in cards]
    contracts = [
        draw(contract(i, customer, card_refs))
        for i, customer in enumerate(["c1", "Beta", "c3", "c1"][: draw(st.integers(1, 4))])
    ]
    return {
        "credit_types": CREDIT_TYPES,
        "billable_metrics": metrics,
        "products": products,
        "rate_cards": cards,
        "customers": customers,
        "contracts": contracts,
    }


SENDERS = ["c1", "c1", "acme-alias", "c2", "beta-1", "beta-2", "c3", "gamma-ext", "Beta", "ghost"]


@st.composite
def events(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 60))):
        if out and draw(st.integers(0, 9)) == 0:  # a duplicate id, sent again within two days
            first = draw(st.sampled_from(out))
            at = when(first["timestamp"]) + timedelta(hours=draw(st.integers(0, 48)))
            tx = first["transaction_id"]
        else:
            tx = f"tx-{i}"
            if draw(st.booleans()):
                at = when(z(draw(st.sampled_from(SPECIAL_TIMES))))
            else:
                at = BASE + timedelta(
                    days=draw(st.integers(12, 90)), hours=draw(st.integers(0, 23))
                )
        props: dict[str, Any] = {}
        for name, pool in VALUES.items():
            if draw(st.integers(0, 9)) > 0:
                props[name] = draw(st.sampled_from(pool))
        if draw(st.integers(0, 9)) > 0:
            props["n"] = draw(st.sampled_from(NUMBERS))
            if draw(st.integers(0, 4)) == 0 and props["n"].lstrip("-").isdigit():
                props["n"] = int(props["n"])  # a JSON number: stored as its text
        out.append(
            {
                "transaction_id": tx,
                "customer_id": draw(st.sampled_from(SENDERS)),
                "event_type": draw(st.sampled_from(["llm", "call"])),
                "timestamp": at.isoformat() + "Z",
                "properties": props,
            }
        )
    return out


def batches(sent: list[dict[str, Any]]) -> list[tuple[datetime, list[dict[str, Any]]]]:
    """The events in 30-day batches by timestamp, each ingested with the clock at its end (so
    the 34-day window takes them all), in the order sent."""
    by_batch: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in sent:
        by_batch[(when(e["timestamp"]) - BASE).days // BATCH_DAYS].append(e)
    return [(BASE + timedelta(days=BATCH_DAYS * (i + 1)), by_batch[i]) for i in sorted(by_batch)]


def engine_bill(home: Path, runs: list[tuple[datetime, dict]], batched: list) -> tuple:
    """Apply the first catalog without its ingest aliases and ingest the events; then, for each
    run, apply its catalog (the aliases are added after their events) and run at its as-of.
    Returns the invoices and the last run's unrated usage."""
    mq = Meterql.init(home)
    first = runs[0][1]
    early = {**first, "customers": [{**c, "ingest_aliases": []} for c in first["customers"]]}
    try:
        for n, (as_of, doc) in enumerate([(None, early), *runs]):
            path = home.parent / f"catalog-{n}.yaml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            mq.apply([path])
            for m, (clock, sent) in enumerate(batched if as_of is None else []):
                path = home.parent / f"events-{m}.ndjson"
                path.write_text("".join(json.dumps(e) + "\n" for e in sent))
                summary = mq.ingest([path], now=clock)
                assert summary.accepted + summary.duplicates == len(sent), summary.lines()
            if as_of is not None:
                run = mq.invoice_run(as_of)
        return mq.invoices(), run.unrated_usage
    finally:
        mq.close()


def repriced(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with every price doubled (the same lines, other totals)."""
    out = copy.deepcopy(doc)
    for card in out["rate_cards"]:
        for rate in card["rates"]:
            if "price" in rate:
                rate["price"] = str(Decimal(str(rate["price"])) * 2)
            if "tiers" in rate:
                rate["tiers"] = [
                    {**t, "price": str(Decimal(str(t["price"])) * 2)} for t in rate["tiers"]
                ]
    return out


def norm(value: Any) -> Any:
    return value.normalize() if isinstance(value, Decimal) else value


def line_key(line: tuple) -> str:
    return repr(tuple(norm(v) for v in line))


def engine_invoice(inv: Any) -> tuple:
    lines = [
        (
            li.product_id,
            li.starting_at,
            li.ending_before,
            tuple(sorted(li.pricing_group_values.items())),
            tuple(sorted(li.presentation_group_values.items())),
            li.tier.index if li.tier is not None else None,
            li.quantity,
            li.unit_price,
            li.total,
        )
        for li in inv.line_items
    ]
    head = (inv.customer_id, inv.contract_id, inv.status, inv.start_timestamp, inv.end_timestamp)
    credit = (inv.credit_type.id, inv.credit_type.name, inv.subtotal, inv.total)
    return (*head, *credit, sorted(lines, key=line_key))


def oracle_invoice(inv: Any) -> tuple:
    lines = [
        (
            li.product_id,
            li.starting_at,
            li.ending_before,
            li.pricing,
            li.presentation,
            li.tier,
            li.quantity,
            li.unit_price,
            li.total,
        )
        for li in inv.lines
    ]
    head = (inv.customer_id, inv.contract_id, inv.status, inv.start, inv.end)
    credit = (inv.credit_type_id, inv.credit_type_name, inv.total, inv.total)
    return (*head, *credit, sorted(lines, key=line_key))


def unrated_totals(rows: list[tuple]) -> dict[tuple, Decimal]:
    out: dict[tuple, Decimal] = defaultdict(Decimal)
    for *key, quantity in rows:
        out[tuple(key)] += quantity
    return dict(out)


@SETTINGS
@given(
    doc=catalog(),
    sent=events(),
    runs=st.lists(st.sampled_from(AS_OF), min_size=1, max_size=2),
    reprice=st.booleans(),
)
def test_invoice_run_equals_the_independent_biller(doc, sent, runs, reprice) -> None:
    # A second run (earlier or later) changes nothing the latest as-of decides: finalized
    # invoices are frozen, an earlier as-of un-finalizes nothing, drafts are recomputed.  With
    # `reprice`, a later second run bills the drafts at the new prices and leaves the first
    # run's finalized invoices as they were.
    moments = [when(r) for r in runs]
    batched = batches(sent)
    changed = reprice and len(moments) == 2 and moments[0] <= moments[1]
    docs = [doc, repriced(doc) if changed else doc][: len(moments)]
    with tempfile.TemporaryDirectory(prefix="meterql-oracle-") as tmp:
        home = Path(tmp) / "home"
        invoices, unrated = engine_bill(home, list(zip(moments, docs, strict=True)), batched)
    expected = bill([docs[-1]], batched, max(moments))
    got = {inv.id: engine_invoice(inv) for inv in invoices}
    want = {i: oracle_invoice(inv) for i, inv in expected.invoices.items()}
    if changed:
        frozen = bill([doc], batched, moments[0]).invoices.items()
        want |= {i: oracle_invoice(inv) for i, inv in frozen if inv.status == "finalized"}
    assert sorted(got) == sorted(want)
    for invoice_id in sorted(want):
        assert got[invoice_id] == want[invoice_id], invoice_id
    if len(moments) > 1:
        return  # a run reports the unrated usage of the periods it computes
    got_unrated = [
        (
            u.customer_id,
            u.contract_id,
            u.start_timestamp,
            u.end_timestamp,
            u.product_id,
            tuple(sorted(u.pricing_group_values.items())),
            u.reason,
            u.quantity,
        )
        for u in unrated
    ]
    want_unrated = [
        (
            u.customer_id,
            u.contract_id,
            u.start,
            u.end,
            u.product_id,
            u.pricing,
            u.reason,
            u.quantity,
        )
        for u in expected.unrated
    ]
    assert unrated_totals(got_unrated) == unrated_totals(want_unrated)
