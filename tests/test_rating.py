"""Rating in SQL: FLAT and TIERED rates, segments, tiers across segments, conversions, rounding,
unrated usage, entitlement, zero lines.  Quantities are put straight into mq_quantities (the
contract of engine.rating), so these tests need no events; engine.invoices is tested end to end
in test_invoices.py."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import duckdb
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.invoice_targets import Snapshot, register_period
from engine.periods import Period
from engine.pricing import register_pricing
from engine.quantity_conversion import convert_quantity, converted_quantity
from engine.rating import LINE_ITEMS, rate, tier_split
from engine.usage_windows import register_windows
from warehouse.models import (
    USD_CENTS_ID,
    BillableMetric,
    CreditType,
    Product,
    RateCard,
)

USD = CreditType(id=USD_CENTS_ID, name="USD (cents)", precision=0)
MARCH = ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")


def T(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def metric(agg: str = "sum", keys: tuple[str, ...] = ("model", "user_id")) -> BillableMetric:
    filters = [{"name": k, "exists": True} for k in keys]
    if agg == "count":
        return BillableMetric(
            id="m", name="M", aggregation_type="count", group_keys=[list(keys)] if keys else []
        )
    return BillableMetric(
        id="m",
        name="M",
        aggregation_type=agg,
        aggregation_key="tokens",
        property_filters=[{"name": "tokens", "exists": True}, *filters],
        group_keys=[list(keys)] if keys else [],
    )


def product(pricing=("model",), presentation=(), **extra: Any) -> Product:
    return Product(
        id="p",
        name="Tokens",
        type="usage",
        billable_metric_id="m",
        pricing_group_key=list(pricing),
        presentation_group_key=list(presentation),
        **extra,
    )


def flat(price: str, start: str = MARCH[0], end: str | None = None, **extra: Any) -> dict:
    doc = {"product_id": "p", "starting_at": start, "rate_type": "flat", "price": Decimal(price)}
    if end:
        doc["ending_before"] = end
    doc.setdefault("pricing_group_values", {"model": "gpt-5"})
    doc.update(extra)
    return doc


def tiered(tiers: list[tuple[str | None, str]], start: str = MARCH[0], **extra: Any) -> dict:
    doc = {
        "product_id": "p",
        "starting_at": start,
        "rate_type": "tiered",
        "tiers": [
            {"size": None if s is None else Decimal(s), "price": Decimal(p)} for s, p in tiers
        ],
        "pricing_group_values": {"model": "gpt-5"},
    }
    doc.update(extra)
    return doc


def run_rating(
    prod: Product,
    met: BillableMetric,
    rates: list[dict],
    rows: list[dict],
    *,
    credit_types: tuple[CreditType, ...] = (USD,),
    period: tuple[str, str] = MARCH,
    card_extra: dict | None = None,
) -> tuple[list[dict], list[dict]]:
    """Rate `rows` ({qty, pv, gv, window_start?}) and return (lines, unrated) as dicts."""
    con = duckdb.connect()
    card = RateCard(id="card", name="Card", rates=rates, **(card_extra or {}))
    pricing = register_pricing(
        con, products=[prod], metrics={"m": met}, rate_cards=[card], credit_types=credit_types
    )
    register_period(
        con,
        Snapshot(rate_cards={"card": card}, products=[prod], metrics={"m": met}, credit_types={}),
        contract_id="k",
        customer_id="c",
        card=card,
        period=Period(T(period[0]), T(period[1])),
        status="draft",
    )
    multi_segment = register_windows(con, [card], set(pricing.kinds.values()))
    con.execute(
        "CREATE TEMP TABLE mq_quantities (window_id BIGINT, product_id VARCHAR, "
        "pricing_values VARCHAR[], presentation_values VARCHAR[], quantity DECIMAL(38, 12))"
    )
    kind = pricing.kinds["p"]
    for row in rows:
        start = T(row.get("window_start", period[0])).replace(tzinfo=None)
        con.execute(
            "INSERT INTO mq_quantities SELECT window_id, 'p', ?, ?, ? FROM mq_windows "
            "WHERE (CASE WHEN ? = 'segment' THEN is_segment ELSE is_period END) "
            "AND window_start = ?",
            [row.get("pv", ["gpt-5"]), row.get("gv", []), Decimal(row["qty"]), kind, start],
        )
    rate(con, pricing, multi_segment=multi_segment)
    lines = _dicts(
        con,
        f"SELECT * FROM ({LINE_ITEMS}) ORDER BY presentation_values, starting_at, tier_index",  # noqa: S608
    )
    unrated = _dicts(con, "SELECT * FROM mq_unrated ORDER BY pricing_values")
    return lines, unrated


def _dicts(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def q(line: dict) -> tuple[Decimal, Decimal, Decimal]:
    return (line["quantity"], line["unit_price"], line["total"])


# -- FLAT -------------------------------------------------------------------------------------


def test_flat_rates_price_each_group_value_at_its_own_rate():
    lines, unrated = run_rating(
        product(),
        metric(),
        [flat("1.50"), flat("0.30", pricing_group_values={"model": "gpt-5-mini"})],
        [{"qty": "1500", "pv": ["gpt-5"]}, {"qty": "800", "pv": ["gpt-5-mini"]}],
    )
    assert sorted(q(line) for line in lines) == [
        (Decimal(800), Decimal("0.30"), Decimal(240)),
        (Decimal(1500), Decimal("1.50"), Decimal(2250)),
    ]
    assert unrated == []


@pytest.mark.parametrize(
    ("qty", "price", "expected"),
    [
        ("3", "0.5", "2"),  # 1.5 -> 2: half up
        ("5", "0.5", "3"),  # 2.5 -> 3 (not banker's 2)
        ("1", "0.49999", "0"),
        ("-5", "0.5", "-3"),  # half away from zero, like Python's ROUND_HALF_UP
        ("0.000000000001", "1", "0"),
    ],
)
def test_line_totals_round_once_half_up_to_the_credit_precision(qty, price, expected):
    lines, _ = run_rating(product(), metric(), [flat(price)], [{"qty": qty}])
    assert lines[0]["total"] == Decimal(expected)
    assert lines[0]["quantity"] == Decimal(qty)  # never rounded
    assert lines[0]["unit_price"] == Decimal(price)


def test_a_credit_type_with_two_decimal_places():
    usd = CreditType(id="usd", name="USD", precision=2)
    lines, _ = run_rating(
        product(),
        metric(),
        [
            flat("0.125", credit_type_id="usd"),
            flat("0.125", credit_type_id="usd", pricing_group_values={"model": "o3"}),
        ],
        [{"qty": "1", "pv": ["gpt-5"]}, {"qty": "4", "pv": ["o3"]}],
        credit_types=(USD, usd),
    )
    got = sorted((line["total"], line["credit_type_id"]) for line in lines)
    assert got == [(Decimal("0.13"), "usd"), (Decimal("0.50"), "usd")]  # 0.125 -> 0.13


def test_tiny_prices_and_big_quantities_stay_exact():
    lines, _ = run_rating(
        product(),
        metric(),
        [flat("0.000001234567")],
        [{"qty": "98765432109876.123456789012"}],
    )
    exact = Decimal("98765432109876.123456789012") * Decimal("0.000001234567")
    assert lines[0]["total"] == exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)


# -- TIERED ----------------------------------------------------------------------------------

TIERS = [("1000", "2"), ("1000", "1"), (None, "0.5")]


@pytest.mark.parametrize(
    ("qty", "expected"),
    [
        ("500", [(0, "500", "2")]),
        ("1000", [(0, "1000", "2")]),  # upper bound inclusive
        ("1000.5", [(0, "1000", "2"), (1, "0.5", "1")]),  # lower bound exclusive
        ("2500", [(0, "1000", "2"), (1, "1000", "1"), (2, "500", "0.5")]),
        ("0", [(0, "0", "2")]),
    ],
)
def test_graduated_tiers(qty, expected):
    lines, _ = run_rating(product(), metric(), [tiered(TIERS)], [{"qty": qty}])
    got = [(line["tier_index"], line["quantity"], line["unit_price"]) for line in lines]
    assert got == [(i, Decimal(n), Decimal(p)) for i, n, p in expected]
    assert sum(line["total"] for line in lines) == sum(
        (Decimal(n) * Decimal(p)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        for _, n, p in expected
    )


def test_tiers_apply_separately_per_presentation_group_value():
    lines, _ = run_rating(
        product(presentation=("user_id",)),
        metric(),
        [tiered([("1000", "2"), (None, "1")])],
        [{"qty": "800", "gv": ["u1"]}, {"qty": "800", "gv": ["u2"]}],
    )
    assert [(line["presentation_values"], line["tier_index"]) for line in lines] == [
        (["u1"], 0),
        (["u2"], 0),
    ]


def test_tiers_count_from_the_period_start_across_rate_segments():
    rates = [
        tiered([("1000", "2"), (None, "1")], ending_before="2026-03-15T00:00:00Z"),
        tiered([("1000", "3"), (None, "1.5")], start="2026-03-15T00:00:00Z"),
    ]
    lines, _ = run_rating(
        product(),
        metric(),
        rates,
        [
            {"qty": "800"},
            {"qty": "500", "window_start": "2026-03-15T00:00:00Z"},
        ],
    )
    got = [
        (line["starting_at"].isoformat(), line["tier_index"], line["quantity"], line["unit_price"])
        for line in lines
    ]
    assert got == [
        ("2026-03-01T00:00:00", 0, Decimal(800), Decimal(2)),
        ("2026-03-15T00:00:00", 0, Decimal(200), Decimal(3)),  # 800 already in tier 0
        ("2026-03-15T00:00:00", 1, Decimal(300), Decimal("1.5")),
    ]
    assert [line["ending_before"].isoformat() for line in lines] == [
        "2026-03-15T00:00:00",
        "2026-04-01T00:00:00",
        "2026-04-01T00:00:00",
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=Decimal("0.5"), max_value=100, places=1),
            st.decimals(min_value=0, max_value=10, places=2),
        ),
        min_size=1,
        max_size=4,
    ),
    st.decimals(min_value=0, max_value=50, places=1),
    st.decimals(min_value=-5, max_value=500, places=3),
)
def test_tiers_match_the_reference(tiers, first, second):
    spec = [(str(s), str(p)) for s, p in tiers]
    spec[-1] = (None, spec[-1][1])  # the last tier is unbounded (warehouse.models.Rate)
    rates = [
        tiered(spec, ending_before="2026-03-10T00:00:00Z"),
        tiered(spec, start="2026-03-10T00:00:00Z"),
    ]
    lines, _ = run_rating(
        product(),
        metric(),
        rates,
        [{"qty": str(first)}, {"qty": str(second), "window_start": "2026-03-10T00:00:00Z"}],
    )
    ref_tiers = [(None if s is None else Decimal(s), Decimal(p)) for s, p in spec]
    expected = [(0, i, n, p) for i, n, p in tier_split(ref_tiers, Decimal(0), first)]
    expected += [(1, i, n, p) for i, n, p in tier_split(ref_tiers, max(first, 0), second)]
    got = [
        (
            0 if line["starting_at"].day == 1 else 1,
            line["tier_index"],
            line["quantity"],
            line["unit_price"],
        )
        for line in lines
    ]
    assert sorted(got) == sorted(expected)
    for line in lines:
        assert line["total"] == (line["quantity"] * line["unit_price"]).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )


# -- segments, period pricing, entitlement, zero lines ---------------------------------------


def test_each_rate_prices_the_usage_inside_its_window():
    rates = [
        flat("1", ending_before="2026-03-10T00:00:00Z"),
        flat("2", start="2026-03-10T00:00:00Z", end="2026-03-20T00:00:00Z"),
        flat("3", start="2026-03-20T00:00:00Z"),
    ]
    lines, _ = run_rating(
        product(),
        metric(),
        rates,
        [
            {"qty": "10"},
            {"qty": "20", "window_start": "2026-03-10T00:00:00Z"},
            {"qty": "30", "window_start": "2026-03-20T00:00:00Z"},
        ],
    )
    assert [q(line) for line in lines] == [
        (Decimal(10), Decimal(1), Decimal(10)),
        (Decimal(20), Decimal(2), Decimal(40)),
        (Decimal(30), Decimal(3), Decimal(90)),
    ]


def test_max_is_priced_at_the_rate_in_effect_at_the_last_instant():
    rates = [
        flat("1", ending_before="2026-03-20T00:00:00Z"),
        flat("5", start="2026-03-20T00:00:00Z"),
    ]
    lines, _ = run_rating(product(), metric("max"), rates, [{"qty": "7"}])
    assert [q(line) for line in lines] == [(Decimal(7), Decimal(5), Decimal(35))]
    assert lines[0]["starting_at"].isoformat() == "2026-03-01T00:00:00"
    assert lines[0]["ending_before"].isoformat() == "2026-04-01T00:00:00"


def test_a_rate_ending_before_the_period_end_leaves_max_unrated():
    rates = [flat("1", ending_before="2026-03-20T00:00:00Z")]
    lines, unrated = run_rating(product(), metric("latest"), rates, [{"qty": "7"}])
    assert lines == []
    assert [(u["reason"], u["quantity"]) for u in unrated] == [("no_rate_in_effect", Decimal(7))]


@pytest.mark.parametrize("agg", ["sum", "max"])
def test_a_rate_ending_exactly_at_the_period_end_prices_the_period_alone(agg):
    """ending_before is exclusive: a rate ending at the period's end is in effect at its last
    instant, and the next rate, starting at that end, is not part of the period (no line, not
    even a zero line for an ungrouped product)."""
    rates = [
        flat("3", pricing_group_values={}, end=MARCH[1]),
        flat("5", pricing_group_values={}, start=MARCH[1]),
    ]
    lines, unrated = run_rating(product(pricing=()), metric(agg), rates, [{"qty": "7", "pv": []}])
    assert [q(line) for line in lines] == [(Decimal(7), Decimal(3), Decimal(21))]
    assert (lines[0]["starting_at"], lines[0]["ending_before"]) == (
        T(MARCH[0]).replace(tzinfo=None),
        T(MARCH[1]).replace(tzinfo=None),
    )
    assert unrated == []


def test_not_entitled_is_not_billed_and_not_unrated():
    lines, unrated = run_rating(product(), metric(), [flat("1", entitled=False)], [{"qty": "7"}])
    assert lines == [] and unrated == []


@pytest.mark.parametrize("rate_type", ["percentage", "subscription"])
@pytest.mark.parametrize("agg", ["sum", "max"])
def test_not_entitled_is_not_unrated_whatever_its_rate_type(rate_type, agg):
    # entitled false bills nothing and is not reported, even on a rate type not billed yet
    # (before, its usage was reported as unrated: unsupported_rate_type)
    rates = [flat("1", entitled=False, rate_type=rate_type)]
    lines, unrated = run_rating(product(), metric(agg), rates, [{"qty": "7"}])
    assert lines == [] and unrated == []
    card = RateCard(id="card", name="Card", rates=rates)
    pricing = register_pricing(
        duckdb.connect(),
        products=[product()],
        metrics={"m": metric(agg)},
        rate_cards=[card],
        credit_types=[USD],
    )
    assert pricing.unsupported == ()  # no note that its usage is reported as unrated
    entitled = [flat("1", rate_type=rate_type)]
    _, unrated = run_rating(product(), metric(agg), entitled, [{"qty": "7"}])
    assert [(u["reason"], u["quantity"]) for u in unrated] == [
        ("unsupported_rate_type", Decimal(7))
    ]


def test_unrated_usage_is_reported_with_a_reason():
    rates = [flat("1", ending_before="2026-03-10T00:00:00Z")]
    lines, unrated = run_rating(
        product(),
        metric(),
        rates,
        [
            {"qty": "1", "pv": ["gpt5"]},  # the quickstart's missing hyphen
            {"qty": "2", "window_start": "2026-03-10T00:00:00Z"},  # after the rate ended
        ],
    )
    assert [q(line) for line in lines] == []
    assert [(u["pricing_values"], u["reason"], u["quantity"]) for u in unrated] == [
        (["gpt-5"], "no_rate_in_effect", Decimal(2)),
        (["gpt5"], "no_rate_for_group_values", Decimal(1)),
    ]


def test_usage_of_a_product_not_on_the_rate_card_is_unrated():
    other = flat("1")
    other["product_id"] = "elsewhere"
    lines, unrated = run_rating(product(), metric(), [], [{"qty": "4"}])
    assert lines == []
    assert [(u["reason"], u["quantity"]) for u in unrated] == [("not_on_rate_card", Decimal(4))]


def test_product_without_pricing_keys_appears_with_zero_quantity_per_segment():
    rates = [
        flat("1", pricing_group_values={}, ending_before="2026-03-10T00:00:00Z"),
        flat("2", pricing_group_values={}, start="2026-03-10T00:00:00Z"),
    ]
    lines, _ = run_rating(
        product(pricing=(), presentation=("user_id",)),
        metric(),
        rates,
        [{"qty": "5", "pv": [], "gv": ["u1"], "window_start": "2026-03-10T00:00:00Z"}],
    )
    assert [(line["presentation_values"], line["quantity"], line["total"]) for line in lines] == [
        (["u1"], Decimal(5), Decimal(10)),
        ([None], Decimal(0), Decimal(0)),
    ]


def test_grouped_products_appear_only_for_groups_with_usage():
    lines, _ = run_rating(product(), metric(), [flat("1")], [])
    assert lines == []


# -- conversion and rounding -------------------------------------------------------------------


def test_conversion_then_rounding_per_line_quantity():
    prod = product(
        quantity_conversion={"conversion_factor": "1000000", "operation": "divide"},
        quantity_rounding={"decimal_places": 0, "rounding_method": "round_up"},
    )
    # a rate of another model starts mid-month: the gpt-5 usage comes in two windows, which
    # form one line (same rate), and the conversion and rounding apply to the line's quantity
    other = flat("1", start="2026-03-10T00:00:00Z", pricing_group_values={"model": "o3"})
    lines, _ = run_rating(
        prod,
        metric(),
        [flat("150"), other],
        [
            {"qty": "1000000"},
            {"qty": "500001", "window_start": "2026-03-10T00:00:00Z"},
        ],
    )
    # 1,500,001 tokens -> 1.500001 million -> rounded up: 2 (not 1 + 1)
    assert [q(line) for line in lines] == [(Decimal(2), Decimal(150), Decimal(300))]
    assert lines[0]["starting_at"].day == 1 and lines[0]["ending_before"].month == 4


@settings(max_examples=150, deadline=None)
@given(
    quantity=st.decimals(
        min_value=Decimal("-1e13"), max_value=Decimal("1e13"), places=12, allow_nan=False
    ),
    factor=st.one_of(
        st.sampled_from([Decimal(3), Decimal(60), Decimal(7), Decimal("1e6"), Decimal("0.25")]),
        st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100000), places=3),
    ).filter(lambda f: f > 0),
    operation=st.sampled_from(["MULTIPLY", "DIVIDE"]),
    rounding=st.one_of(
        st.none(),
        st.tuples(
            st.integers(min_value=0, max_value=4),
            st.sampled_from(["ROUND_UP", "ROUND_DOWN", "ROUND_HALF_UP"]),
        ),
    ),
)
def test_sql_conversion_matches_the_decimal_reference(quantity, factor, operation, rounding):
    extra: dict[str, Any] = {
        "quantity_conversion": {"conversion_factor": factor, "operation": operation}
    }
    if rounding is not None:
        extra["quantity_rounding"] = {"decimal_places": rounding[0], "rounding_method": rounding[1]}
    try:
        prod = product(**extra)
    except ValidationError as error:  # apply refuses quantities of more than 18 decimal places
        assert "meterql keeps at most 18" in str(error)
        assume(False)
    from sqlglot import exp

    from engine.quantity_conversion import conversion_scale

    scale = conversion_scale(prod)
    raw = exp.cast(exp.Literal.string(format(quantity, "f")), exp.DataType.build("DECIMAL(38,12)"))
    sql = converted_quantity(prod, raw, scale).sql(dialect="duckdb")
    [(got,)] = duckdb.connect().execute(f"SELECT {sql}").fetchall()
    assert got == convert_quantity(prod, quantity)
