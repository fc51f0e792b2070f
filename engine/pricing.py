"""Pricing tables of an invoice run: the catalog's products, rates, tiers and credit types as
small temp tables that engine.rating joins with the grouped quantities.

    register_pricing(con, products=..., metrics=..., rate_cards=..., credit_types=...) -> Pricing

builds mq_products, mq_rates, mq_tiers and mq_credit_types (rows per product, rate and tier,
never per customer) and checks that the prices and conversions in use fit the stored DECIMAL
scales.  `window_kind` says how a product's usage is cut into windows for rating:

- SEGMENT (COUNT, SUM): the period is cut at every rate boundary of the contract's rate card,
  each piece's usage priced by the rate in effect over it;
- PERIOD (MAX, UNIQUE, LATEST, SQL metrics): the whole period's quantity at the rate in effect
  at the period's last instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import assert_never

import duckdb

from engine.temp_tables import create_temp
from warehouse.models import (
    QUANTITY_SCALE,
    USD_CENTS_ID,
    AggregationType,
    BillableMetric,
    CreditType,
    Product,
    ProductType,
    RateCard,
    RateType,
    scale_of,
    stored_scale,
)

SEGMENT = "segment"  # COUNT, SUM: each rate prices the usage inside its own window
PERIOD = "period"  # MAX, UNIQUE, LATEST, SQL: the rate in effect at the period's last instant

RATED_TYPES = (RateType.FLAT, RateType.TIERED)


def window_kind(metric: BillableMetric) -> str:
    """How a metric's usage is cut into windows for rating (see the module docstring)."""
    agg = metric.aggregation_type
    if agg is None:  # a SQL metric
        return PERIOD
    if agg in (AggregationType.COUNT, AggregationType.SUM):
        return SEGMENT
    if agg in (AggregationType.MAX, AggregationType.UNIQUE, AggregationType.LATEST):
        return PERIOD
    assert_never(agg)


@dataclass(frozen=True)
class Pricing:
    """What `register_pricing` built: the scales used and the products it can rate."""

    quantity_scale: int  # scale of converted quantities and tier bounds
    price_scale: int  # scale of unit prices
    precisions: tuple[int, ...]  # the credit type precisions in use
    products: Mapping[str, Product]
    metrics: Mapping[str, BillableMetric]  # by product id
    kinds: Mapping[str, str]  # product id -> SEGMENT | PERIOD
    unsupported: tuple[str, ...]  # notes: products or rates meterql does not bill yet


def _naive(ts: datetime | None) -> datetime | None:
    if ts is None or ts.tzinfo is None:
        return ts
    return ts.astimezone(UTC).replace(tzinfo=None)


def register_pricing(
    con: duckdb.DuckDBPyConnection,
    *,
    products: Iterable[Product],
    metrics: Mapping[str, BillableMetric],
    rate_cards: Iterable[RateCard],
    credit_types: Iterable[CreditType],
) -> Pricing:
    """Build mq_products, mq_rates, mq_tiers and mq_credit_types from catalog objects (stored
    documents: ids resolved).  Raises a UserError when the prices and conversions in use need
    more than 38 decimal digits between them."""
    usage_products: dict[str, Product] = {}
    product_metrics: dict[str, BillableMetric] = {}
    kinds: dict[str, str] = {}
    notes: list[str] = []
    all_products = {p.id: p for p in products if p.id}
    for pid, product in sorted(all_products.items()):
        if product.type is not ProductType.USAGE:
            continue
        metric = metrics.get(product.billable_metric_id or "")
        if metric is None:  # apply refuses this; keep rating the others
            notes.append(
                f"product {product.name!r} ({pid}): billable metric "
                f"{product.billable_metric_id!r} is missing; not billed"
            )
            continue
        usage_products[pid] = product
        product_metrics[pid] = metric
        kinds[pid] = window_kind(metric)

    # decimal places: checked by warehouse.models when the documents were applied
    quantity_scale = max([QUANTITY_SCALE, *(stored_scale(p) for p in usage_products.values())])
    price_scale = 0
    rate_rows: dict[str, list] = {
        k: []
        for k in (
            "rate_key",
            "rate_card_id",
            "rate_index",
            "product_id",
            "pricing_values",
            "starting_at",
            "ending_before",
            "rate_type",
            "entitled",
            "price",
            "credit_type_id",
        )
    }
    tier_rows: dict[str, list] = {
        k: [] for k in ("rate_key", "tier_index", "lower", "upper", "size", "price")
    }
    rate_key = 0
    non_usage: set[str] = set()
    for card in sorted(rate_cards, key=lambda c: c.id or ""):
        assert card.id
        for index, rate in enumerate(card.rates):
            product = usage_products.get(rate.product_id)
            if product is None:
                other = all_products.get(rate.product_id)
                if other is not None and other.type is not ProductType.USAGE:
                    non_usage.add(f"{other.type.value} product {other.name!r}")
                continue
            keys = product.pricing_group_key
            if set(rate.pricing_group_values) != set(keys):
                continue  # apply refuses this; such a rate can match no usage
            scales = [scale_of(rate.price) if rate.price is not None else 0]
            scales += [scale_of(t.price) for t in rate.tiers or ()]
            price_scale = max([price_scale, *scales])
            if rate.entitled and rate.rate_type not in RATED_TYPES:
                notes.append(
                    f"rate card {card.name!r} rates[{index}]: rate_type {rate.rate_type.value} "
                    f"on USAGE product {product.name!r} is not supported yet; its usage is "
                    "reported as unrated"
                )
            rate_rows["rate_key"].append(rate_key)
            rate_rows["rate_card_id"].append(card.id)
            rate_rows["rate_index"].append(index)
            rate_rows["product_id"].append(product.id)
            rate_rows["pricing_values"].append([rate.pricing_group_values[k] for k in keys])
            rate_rows["starting_at"].append(_naive(rate.starting_at))
            rate_rows["ending_before"].append(_naive(rate.ending_before))
            rate_rows["rate_type"].append(rate.rate_type.value)
            rate_rows["entitled"].append(rate.entitled)
            rate_rows["price"].append(rate.price)
            rate_rows["credit_type_id"].append(
                rate.credit_type_id or card.fiat_credit_type_id or USD_CENTS_ID
            )
            lower = Decimal(0)
            for t_index, tier in enumerate(rate.tiers or ()):
                tier_rows["rate_key"].append(rate_key)
                tier_rows["tier_index"].append(t_index)
                tier_rows["lower"].append(lower)
                upper = None if tier.size is None else lower + tier.size
                tier_rows["upper"].append(upper)
                tier_rows["size"].append(tier.size)
                tier_rows["price"].append(tier.price)
                quantity_scale = max(quantity_scale, scale_of(tier.size or Decimal(0)))
                lower = upper if upper is not None else lower
            rate_key += 1
    for what in sorted(non_usage):
        notes.append(f"{what} is on a rate card; only USAGE products are billed so far")

    q_type = f"DECIMAL(38, {quantity_scale})"
    p_type = f"DECIMAL(38, {price_scale})"
    r = rate_rows
    create_temp(
        con,
        "mq_rates",
        {
            "rate_key": ("BIGINT", r["rate_key"]),
            "rate_card_id": ("VARCHAR", r["rate_card_id"]),
            "rate_index": ("INTEGER", r["rate_index"]),
            "product_id": ("VARCHAR", r["product_id"]),
            "pricing_values": ("VARCHAR[]", r["pricing_values"]),
            "starting_at": ("TIMESTAMP", r["starting_at"]),
            "ending_before": ("TIMESTAMP", r["ending_before"]),
            "rate_type": ("VARCHAR", r["rate_type"]),
            "entitled": ("BOOLEAN", r["entitled"]),
            "price": (p_type, r["price"]),
            "credit_type_id": ("VARCHAR", r["credit_type_id"]),
        },
    )
    t = tier_rows
    create_temp(
        con,
        "mq_tiers",
        {
            "rate_key": ("BIGINT", t["rate_key"]),
            "tier_index": ("INTEGER", t["tier_index"]),
            "lower": (q_type, t["lower"]),
            "upper": (q_type, t["upper"]),
            "size": (q_type, t["size"]),
            "price": (p_type, t["price"]),
        },
    )
    ordered = sorted(usage_products.values(), key=lambda p: p.id or "")
    create_temp(
        con,
        "mq_products",
        {
            "product_id": ("VARCHAR", [p.id for p in ordered]),
            "product_name": ("VARCHAR", [p.name for p in ordered]),
            "billable_metric_id": ("VARCHAR", [product_metrics[p.id].id for p in ordered]),  # type: ignore[index]
            "kind": ("VARCHAR", [kinds[p.id] for p in ordered]),  # type: ignore[index]
            "pricing_keys": ("VARCHAR[]", [list(p.pricing_group_key) for p in ordered]),
            "presentation_keys": ("VARCHAR[]", [list(p.presentation_group_key) for p in ordered]),
            "no_presentation_values": (
                "VARCHAR[]",
                [[None] * len(p.presentation_group_key) for p in ordered],
            ),
            # false for a product whose usage could not be computed (see engine.invoices):
            # it gets no zero lines, which would claim it had no usage
            "computed": ("BOOLEAN", [True] * len(ordered)),
        },
    )
    credit = sorted(credit_types, key=lambda c: c.id or "")
    create_temp(
        con,
        "mq_credit_types",
        {
            "credit_type_id": ("VARCHAR", [c.id for c in credit]),
            "credit_type_name": ("VARCHAR", [c.name for c in credit]),
            "credit_precision": ("INTEGER", [c.precision for c in credit]),
        },
    )
    return Pricing(
        quantity_scale=quantity_scale,
        price_scale=price_scale,
        precisions=tuple(sorted({c.precision for c in credit})),
        products=usage_products,
        metrics=product_metrics,
        kinds=kinds,
        unsupported=tuple(notes),
    )
