"""Rating: grouped quantities x rate cards -> priced line items, in DuckDB, DECIMAL throughout.

Rating runs as a few SQL statements over every customer at once.  Python only builds the small
pricing tables from the catalog (products, rates, tiers, credit types) and the per-product
conversion expressions; it never touches a quantity row.  (Measured: see README "Invoice
benchmarks"; rating is a small part of an invoice run.)

Inputs: temp tables on the connection, made by the caller (engine.invoices)

    mq_periods     (period_key BIGINT, contract_id, customer_id, rate_card_id VARCHAR,
                    period_start, period_end TIMESTAMP)          the statement periods to rate
    mq_windows     (window_id BIGINT, period_key BIGINT, kind VARCHAR,
                    window_start, window_end TIMESTAMP)          the usage windows of the periods
    mq_quantities  (window_id BIGINT, product_id VARCHAR, pricing_values VARCHAR[],
                    presentation_values VARCHAR[], quantity DECIMAL(38, 12))
                   one row per window, product and group values; the values follow the order
                   of the product's pricing_group_key / presentation_group_key

and the pricing tables made by `register_pricing` (mq_products, mq_rates, mq_tiers,
mq_credit_types).  `rate` writes mq_lines (priced line items) and mq_unrated (usage no rate
prices).

The rules (SEMANTICS.md sections 4-5; the (ours) decisions are in README "Billing rules"):

- Window kinds.  A product whose metric is COUNT or SUM is rated per *segment*: its period is
  cut at every rate boundary of the contract's rate card, each piece's usage is priced by the
  rate in effect over it, and the pieces of one rate form one line item (starting_at /
  ending_before = that rate's window inside the period).  MAX, UNIQUE, LATEST (and SQL metrics)
  are rated per *period*: the whole period's quantity at the rate in effect at the period's
  last instant.
- Matching: same rate card, same product, pricing group values equal (exact, case-sensitive).
  A rate with `entitled: false` bills nothing.  Usage no rate matches goes to mq_unrated with a
  reason (not_on_rate_card, no_rate_for_group_values, no_rate_in_effect,
  unsupported_rate_type); it is never dropped silently.
- Quantity: the line's summed usage, then quantity_conversion (MULTIPLY / DIVIDE by the factor),
  then quantity_rounding.  A DIVIDE whose factor's reciprocal is a finite decimal (2, 1000,
  1e6, 0.25...) is an exact multiplication; any other DIVIDE (3, 60) is carried to 12 decimal
  places, ROUND_HALF_UP.  Rounding methods follow Python's decimal module: ROUND_UP away from
  zero, ROUND_DOWN toward zero, ROUND_HALF_UP half away from zero.
- FLAT: one line, quantity x price.  TIERED (graduated): tier i covers the quantities
  (lower_i, lower_i + size_i] (last tier unbounded when its size is absent); the quantity is
  split across tiers, one line per tier it reaches.  Tiers count from the start of the billing
  period, separately for each product, pricing group values and presentation group values,
  across rate segments: a segment starts where the earlier segments of the period left off.
  A zero or negative quantity is priced at the first tier and does not move the tier position.
- Money: line total = quantity x unit price, rounded once, ROUND_HALF_UP, to the credit type's
  precision.  Quantities and unit prices are never rounded.
- A product without pricing keys that is on the rate card (an entitled rate in effect) appears
  with quantity 0 for each rate segment it has no usage in; products with pricing keys appear
  only for group values with usage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import assert_never

import duckdb
from sqlglot import exp

from engine.temp_tables import create_temp
from warehouse.errors import UserError
from warehouse.models import (
    USD_CENTS_ID,
    AggregationType,
    BillableMetric,
    ConversionOperation,
    CreditType,
    Product,
    ProductType,
    RateCard,
    RateType,
    RoundingMethod,
)

QUANTITY_SCALE = 12  # the scale of metric values (metric_compiler.numbers)
STORED_SCALE = 18  # line quantities, unit prices and tier bounds are stored as DECIMAL(38, 18)
DIVIDE_SCALE = 12  # a DIVIDE by a factor without a finite reciprocal keeps this many places
MAX_SCALE = 38

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


def scale_of(value: Decimal) -> int:
    """Decimal places needed to write `value` exactly (0 for integers)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int), f"not a finite decimal: {value}"
    if exponent >= 0:
        return 0
    normal = value.normalize().as_tuple().exponent
    assert isinstance(normal, int)
    return max(0, -normal)


def exact_reciprocal(factor: Decimal) -> Decimal | None:
    """1 / factor when it is a finite decimal (factor = 2^a 5^b 10^k), else None."""
    with localcontext() as ctx:
        ctx.prec = 200
        inverse = Decimal(1) / factor
        if inverse * factor == 1 and scale_of(inverse) <= MAX_SCALE:
            return inverse.normalize()
    return None


# ---------------------------------------------------------------------------------------------
# Pricing tables


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


def _dec(value: Decimal | int, scale: int) -> exp.Expression:
    """`CAST('<exact text>' AS DECIMAL(38, scale))`."""
    text = format(Decimal(value), "f")
    return exp.cast(exp.Literal.string(text), exp.DataType.build(f"DECIMAL(38, {scale})"))


def _dtype(scale: int) -> exp.DataType:
    return exp.DataType.build(f"DECIMAL(38, {scale})")


def _sql(expression: exp.Expression) -> str:
    return expression.sql(dialect="duckdb")


def stored_scale(product: Product) -> int:
    """Decimal places of the product's line quantities (after conversion and rounding)."""
    if product.quantity_rounding is not None:
        return min(product.quantity_rounding.decimal_places, conversion_scale(product))
    return conversion_scale(product)


def conversion_scale(product: Product) -> int:
    """Decimal places the converted quantities of `product` may need."""
    conversion = product.quantity_conversion
    scale = QUANTITY_SCALE
    if conversion is not None:
        factor = conversion.conversion_factor
        if conversion.operation is ConversionOperation.MULTIPLY:
            scale += scale_of(factor)
        elif conversion.operation is ConversionOperation.DIVIDE:
            inverse = exact_reciprocal(factor)
            scale = scale + scale_of(inverse) if inverse is not None else DIVIDE_SCALE
        else:
            assert_never(conversion.operation)
    return scale


def converted_quantity(product: Product, raw: exp.Expression, scale: int) -> exp.Expression:
    """SQL for `raw` (DECIMAL(38, 12)) after the product's conversion then rounding, as
    DECIMAL(38, scale)."""
    value: exp.Expression = raw
    conversion = product.quantity_conversion
    if conversion is not None:
        factor = conversion.conversion_factor
        inverse = (
            exact_reciprocal(factor) if conversion.operation is ConversionOperation.DIVIDE else None
        )
        if conversion.operation is ConversionOperation.MULTIPLY:
            value = exp.Mul(this=value, expression=_dec(factor, scale_of(factor)))
        elif inverse is not None:
            value = exp.Mul(this=value, expression=_dec(inverse, scale_of(inverse)))
        else:
            value = _divide_half_up(value, factor)
        value = exp.cast(value, _dtype(conversion_scale(product)))
    rounding = product.quantity_rounding
    if rounding is not None:
        places = rounding.decimal_places
        method = rounding.rounding_method
        if method is RoundingMethod.ROUND_HALF_UP:
            value = exp.Anonymous(this="round", expressions=[value, exp.Literal.number(places)])
        else:
            shifted = exp.Mul(this=value, expression=_dec(Decimal(10) ** places, 0))
            if method is RoundingMethod.ROUND_DOWN:
                whole: exp.Expression = exp.Anonymous(this="trunc", expressions=[shifted])
            elif method is RoundingMethod.ROUND_UP:
                whole = exp.Case(
                    ifs=[
                        exp.If(
                            this=exp.GTE(this=value, expression=_dec(0, 0)),
                            true=exp.Ceil(this=shifted),
                        )
                    ],
                    default=exp.Floor(this=shifted),
                )
            else:
                assert_never(method)
            value = exp.Mul(this=whole, expression=_dec(Decimal(1).scaleb(-places), places))
        value = exp.cast(value, _dtype(scale))
    return exp.cast(value, _dtype(scale))


def _divide_half_up(value: exp.Expression, factor: Decimal) -> exp.Expression:
    """`value / factor` rounded half away from zero to DIVIDE_SCALE places, in exact integer
    arithmetic (DuckDB's DECIMAL division would go through DOUBLE)."""
    numerator, denominator = factor.as_integer_ratio()  # factor = numerator / denominator
    # value has scale 12: n = value * 10^12 is an integer; result = n * denominator / numerator
    # at scale DIVIDE_SCALE (= 12), i.e. round(n * denominator / numerator) / 10^12.
    assert DIVIDE_SCALE == QUANTITY_SCALE
    n = exp.cast(
        exp.Mul(this=exp.cast(value, _dtype(QUANTITY_SCALE)), expression=_dec(10**12, 0)),
        exp.DataType.build("HUGEINT"),
    )
    top = exp.Mul(
        this=n, expression=exp.cast(exp.Literal.number(denominator), exp.DataType.build("HUGEINT"))
    )
    two_a = exp.cast(exp.Literal.number(2 * numerator), exp.DataType.build("HUGEINT"))
    a = exp.cast(exp.Literal.number(numerator), exp.DataType.build("HUGEINT"))
    two = exp.Literal.number(2)

    def half_up(x: exp.Expression) -> exp.Expression:  # x >= 0: (2x + a) // 2a
        doubled = exp.Mul(this=two, expression=exp.Paren(this=x))
        return exp.IntDiv(
            this=exp.Paren(this=exp.Add(this=doubled, expression=a)), expression=two_a
        )

    rounded = exp.Case(
        ifs=[
            exp.If(
                this=exp.GTE(this=top, expression=exp.Literal.number(0)),
                true=half_up(top),
            )
        ],
        default=exp.Neg(this=exp.Paren(this=half_up(exp.Neg(this=exp.Paren(this=top))))),
    )
    return exp.Mul(
        this=exp.cast(rounded, exp.DataType.build("DECIMAL(38, 0)")),
        expression=_dec(Decimal(1).scaleb(-DIVIDE_SCALE), DIVIDE_SCALE),
    )


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

    problems: list[str] = []
    quantity_scale = QUANTITY_SCALE
    for pid, product in sorted(usage_products.items()):
        stored = stored_scale(product)
        if conversion_scale(product) > MAX_SCALE - 2:
            problems.append(
                f"product {product.name!r} ({pid}): quantity_conversion factor "
                f"{product.quantity_conversion.conversion_factor} has too many decimal places"  # type: ignore[union-attr]
            )
        elif stored > STORED_SCALE:
            problems.append(
                f"product {product.name!r} ({pid}): quantity_conversion gives quantities with up "
                f"to {stored} decimal places; meterql keeps at most {STORED_SCALE}: add "
                f"quantity_rounding with decimal_places <= {STORED_SCALE}"
            )
        quantity_scale = max(quantity_scale, stored)
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
            if max(scales) > STORED_SCALE:
                problems.append(
                    f"rate card {card.name!r} rates[{index}]: a price has {max(scales)} decimal "
                    f"places; at most {STORED_SCALE} are supported"
                )
            price_scale = max([price_scale, *scales])
            if rate.rate_type not in RATED_TYPES:
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
                if scale_of(tier.size or Decimal(0)) > STORED_SCALE:
                    problems.append(
                        f"rate card {card.name!r} rates[{index}].tiers[{t_index}]: size "
                        f"{tier.size} has more than {STORED_SCALE} decimal places"
                    )
                quantity_scale = max(quantity_scale, scale_of(tier.size or Decimal(0)))
                lower = upper if upper is not None else lower
            rate_key += 1
    for what in sorted(non_usage):
        notes.append(f"{what} is on a rate card; only USAGE products are billed so far")

    if problems:
        raise UserError("; ".join(problems))

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


# ---------------------------------------------------------------------------------------------
# Rating


def _conversion_case(pricing: Pricing, raw: str, table: str) -> str:
    """CASE product_id WHEN ... THEN <converted raw> ... END, as DECIMAL(38, quantity_scale)."""
    scale = pricing.quantity_scale
    column = exp.column(raw, table=table)
    ifs = [
        exp.If(
            this=exp.EQ(
                this=exp.column("product_id", table=table), expression=exp.Literal.string(pid)
            ),
            true=converted_quantity(product, column, scale),
        )
        for pid, product in sorted(pricing.products.items())
        if product.quantity_conversion is not None or product.quantity_rounding is not None
    ]
    plain = exp.cast(column, _dtype(scale))
    if not ifs:
        return _sql(plain)
    return _sql(exp.Case(ifs=ifs, default=plain))


def _total_case(pricing: Pricing, amount: str) -> str:
    """`amount` rounded half away from zero to the line's credit type precision (constant per
    CASE branch, as DuckDB needs), as DECIMAL(38, 12)."""
    column = exp.column(amount)
    ifs = [
        exp.If(
            this=exp.EQ(this=exp.column("credit_precision"), expression=exp.Literal.number(p)),
            true=exp.cast(
                exp.Anonymous(this="round", expressions=[column, exp.Literal.number(p)]),
                _dtype(12),
            ),
        )
        for p in pricing.precisions
    ]
    if not ifs:
        return _sql(exp.cast(exp.null(), _dtype(12)))
    return _sql(exp.Case(ifs=ifs))


_MATCH = """
CREATE OR REPLACE TEMP TABLE mq_matched AS
SELECT
    w.period_key,
    q.product_id,
    q.pricing_values,
    q.presentation_values,
    r.rate_key,
    CASE WHEN r.rate_key IS NULL THEN w.window_start
         WHEN pr.kind = 'segment' THEN greatest(r.starting_at, p.period_start)
         ELSE p.period_start END AS seg_start,
    CASE WHEN r.rate_key IS NULL THEN w.window_end
         WHEN pr.kind = 'segment' THEN least(coalesce(r.ending_before, p.period_end), p.period_end)
         ELSE p.period_end END AS seg_end,
    {raw_quantity} AS raw_quantity
FROM mq_quantities q
JOIN mq_windows w ON w.window_id = q.window_id
JOIN mq_periods p ON p.period_key = w.period_key
JOIN mq_products pr ON pr.product_id = q.product_id
LEFT JOIN mq_rates r
  ON r.rate_card_id = p.rate_card_id
 AND r.product_id = q.product_id
 AND r.pricing_values = q.pricing_values
 AND ((pr.kind = 'segment'
       AND r.starting_at <= w.window_start
       AND (r.ending_before IS NULL OR r.ending_before >= w.window_end))
   OR (pr.kind = 'period'
       AND r.starting_at < p.period_end
       AND (r.ending_before IS NULL OR r.ending_before >= p.period_end)))
{group_by}
"""

_UNRATED = """
CREATE OR REPLACE TEMP TABLE mq_unrated AS
SELECT
    p.period_key, p.customer_id, p.contract_id, p.period_start, p.period_end,
    m.product_id, m.pricing_values,
    CASE
        WHEN m.rate_key IS NOT NULL THEN 'unsupported_rate_type'
        WHEN NOT EXISTS (SELECT 1 FROM mq_rates x
                         WHERE x.rate_card_id = p.rate_card_id AND x.product_id = m.product_id)
            THEN 'not_on_rate_card'
        WHEN NOT EXISTS (SELECT 1 FROM mq_rates x
                         WHERE x.rate_card_id = p.rate_card_id AND x.product_id = m.product_id
                           AND x.pricing_values = m.pricing_values)
            THEN 'no_rate_for_group_values'
        ELSE 'no_rate_in_effect'
    END AS reason,
    sum(m.raw_quantity) AS quantity
FROM mq_matched m
JOIN mq_periods p ON p.period_key = m.period_key
LEFT JOIN mq_rates r ON r.rate_key = m.rate_key
WHERE m.rate_key IS NULL OR r.rate_type NOT IN ('FLAT', 'TIERED')
GROUP BY ALL
"""

# One row per line group: (period, product, rate, pricing values, presentation values).  Rates
# are entitled FLAT or TIERED; products without pricing keys get a zero row per rate segment
# without usage.
_BILLED = """
SELECT m.period_key, m.product_id, m.pricing_values, m.presentation_values, m.rate_key,
       m.seg_start, m.seg_end, m.raw_quantity
FROM mq_matched m
JOIN mq_rates r ON r.rate_key = m.rate_key
WHERE r.entitled AND r.rate_type IN ('FLAT', 'TIERED')
UNION ALL
SELECT p.period_key, r.product_id, r.pricing_values, pr.no_presentation_values, r.rate_key,
       CASE WHEN pr.kind = 'segment' THEN greatest(r.starting_at, p.period_start)
            ELSE p.period_start END,
       CASE WHEN pr.kind = 'segment'
            THEN least(coalesce(r.ending_before, p.period_end), p.period_end)
            ELSE p.period_end END,
       CAST(0 AS DECIMAL(38, 12))
FROM mq_periods p
JOIN mq_rates r ON r.rate_card_id = p.rate_card_id
JOIN mq_products pr ON pr.product_id = r.product_id
WHERE len(pr.pricing_keys) = 0 AND pr.computed
  AND r.entitled AND r.rate_type IN ('FLAT', 'TIERED')
  AND r.starting_at < p.period_end
  AND ((pr.kind = 'segment' AND (r.ending_before IS NULL OR r.ending_before > p.period_start))
    OR (pr.kind = 'period' AND (r.ending_before IS NULL OR r.ending_before >= p.period_end)))
  AND NOT EXISTS (SELECT 1 FROM mq_matched m
                  WHERE m.period_key = p.period_key AND m.rate_key = r.rate_key)
"""

# Tiers count from the start of the period: `prior` is the (non-negative) quantity of the same
# product and group values in the period's earlier segments.  Only TIERED lines of periods with
# several segments need it; everything else has prior 0.
_PRIOR_WINDOW = """coalesce(sum(greatest(quantity, {zero})) OVER (
               PARTITION BY period_key, product_id, pricing_values, presentation_values
               ORDER BY seg_start
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), {zero})"""

_LINES = """
CREATE OR REPLACE TEMP TABLE mq_lines AS
WITH billed AS ({billed}
), converted AS (
    SELECT b.*, r.rate_type, r.credit_type_id, r.price, r.rate_card_id, r.rate_index,
           {converted} AS quantity
    FROM billed b JOIN mq_rates r ON r.rate_key = b.rate_key
), positioned AS (
    SELECT *, {prior} AS prior FROM converted
), priced AS (
    -- FLAT rates have no tiers: one row each, tier columns NULL; TIERED: one row per tier
    SELECT c.*, t.tier_index, t.lower AS tier_lower, t.size AS tier_size,
           CASE WHEN c.rate_type = 'FLAT' THEN c.quantity
                WHEN c.quantity <= {zero}
                    THEN CASE WHEN t.tier_index = 0 THEN c.quantity END
                ELSE greatest({zero},
                              least(coalesce(t.upper, c.prior + c.quantity),
                                    c.prior + c.quantity)
                              - greatest(t.lower, c.prior))
           END AS line_quantity,
           CASE WHEN c.rate_type = 'FLAT' THEN c.price ELSE t.price END AS unit_price
    FROM positioned c
    LEFT JOIN mq_tiers t ON t.rate_key = c.rate_key
)
SELECT x.period_key, x.credit_type_id, x.product_id, x.rate_type, x.rate_key,
       x.rate_card_id, x.rate_index, x.pricing_values, x.presentation_values,
       x.seg_start AS starting_at, x.seg_end AS ending_before,
       x.tier_index, CAST(x.tier_lower AS {stored}) AS tier_lower,
       CAST(x.tier_size AS {stored}) AS tier_size,
       CAST(x.line_quantity AS {stored}) AS quantity,
       CAST(x.unit_price AS {stored}) AS unit_price,
       {total} AS total
FROM (SELECT *, line_quantity * unit_price AS amount
      FROM priced
      WHERE rate_type = 'FLAT' OR line_quantity > {zero}
         OR (quantity <= {zero} AND tier_index = 0)) x
JOIN mq_credit_types ct ON ct.credit_type_id = x.credit_type_id
"""


def rate(con: duckdb.DuckDBPyConnection, pricing: Pricing, *, multi_segment: bool) -> None:
    """Rate mq_quantities into mq_lines and mq_unrated (see the module docstring).

    `multi_segment`: some period is cut into more than one segment (a rate boundary inside
    it).  Without that, every quantity row is its own line group and no tier position carries
    over, so the grouping and the running sum are skipped (measured: a third of rating time).
    """
    scale = pricing.quantity_scale
    zero = _sql(_dec(0, scale))
    if multi_segment:
        con.execute(_MATCH.format(raw_quantity="sum(q.quantity)", group_by="GROUP BY ALL"))
    else:
        con.execute(_MATCH.format(raw_quantity="q.quantity", group_by=""))
    con.execute(_UNRATED)
    con.execute(
        _LINES.format(
            billed=_BILLED,
            converted=_conversion_case(pricing, "raw_quantity", "b"),
            zero=zero,
            stored=_sql(_dtype(STORED_SCALE)),
            prior=_PRIOR_WINDOW.format(zero=zero) if multi_segment else zero,
            total=_total_case(pricing, "amount"),
        )
    )


# ---------------------------------------------------------------------------------------------
# Reference arithmetic (the same rules in Python Decimal, for checks and tests)


def convert_quantity(product: Product, quantity: Decimal) -> Decimal:
    """The product's conversion then rounding of `quantity`, in Python Decimal (reference)."""
    from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP

    value = quantity
    conversion = product.quantity_conversion
    with localcontext() as ctx:
        ctx.prec = 200
        if conversion is not None:
            factor = conversion.conversion_factor
            if conversion.operation is ConversionOperation.MULTIPLY:
                value = value * factor
            else:
                inverse = exact_reciprocal(factor)
                if inverse is not None:
                    value = value * inverse
                else:
                    value = (value / factor).quantize(
                        Decimal(1).scaleb(-DIVIDE_SCALE), rounding=ROUND_HALF_UP
                    )
        rounding = product.quantity_rounding
        if rounding is not None:
            mode = {
                RoundingMethod.ROUND_UP: ROUND_UP,
                RoundingMethod.ROUND_DOWN: ROUND_DOWN,
                RoundingMethod.ROUND_HALF_UP: ROUND_HALF_UP,
            }[rounding.rounding_method]
            value = value.quantize(Decimal(1).scaleb(-rounding.decimal_places), rounding=mode)
    return value


def tier_split(
    tiers: Sequence[tuple[Decimal | None, Decimal]], prior: Decimal, quantity: Decimal
) -> list[tuple[int, Decimal, Decimal]]:
    """(tier index, units, price) of `quantity` units after `prior` units, graduated (reference)."""
    if quantity <= 0:
        return [(0, quantity, tiers[0][1])]
    prior = max(prior, Decimal(0))
    out = []
    lower = Decimal(0)
    for index, (size, price) in enumerate(tiers):
        upper = None if size is None else lower + size
        top = prior + quantity if upper is None else min(upper, prior + quantity)
        units = max(Decimal(0), top - max(lower, prior))
        if units > 0:
            out.append((index, units, price))
        if upper is None:
            break
        lower = upper
    return out
