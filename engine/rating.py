"""Rating: grouped quantities x rate cards -> priced line items, in DuckDB, DECIMAL throughout.

Rating runs as a few SQL statements over every customer at once.  Python only builds the small
pricing tables from the catalog (engine.pricing) and the per-product conversion expressions
(engine.quantity_conversion); it never touches a quantity row.  (Measured: see README "Invoice
benchmarks"; rating is a small part of an invoice run.)

Inputs: temp tables on the connection, made by the caller (engine.invoices)

    mq_periods     (period_key BIGINT, contract_id, customer_id, rate_card_id VARCHAR,
                    period_start, period_end TIMESTAMP, ...)     the statement periods to rate
                                                                 (engine.invoice_targets)
    mq_windows     (window_id BIGINT, period_key BIGINT, window_start, window_end TIMESTAMP,
                    is_segment, is_period BOOLEAN, ...)          the usage windows of the periods
                                                                 (engine.usage_windows)
    mq_quantities  (window_id BIGINT, product_id VARCHAR, pricing_values VARCHAR[],
                    presentation_values VARCHAR[], quantity DECIMAL(38, 12))
                   one row per window, product and group values; the values follow the order
                   of the product's pricing_group_key / presentation_group_key
                   (engine.usage_quantities)

and the pricing tables made by engine.pricing.register_pricing (mq_products, mq_rates,
mq_tiers, mq_credit_types).  `rate` writes mq_lines (priced line items, each with its content
hash; read them whole with LINE_ITEMS) and mq_unrated (usage no rate prices).

The rules (SEMANTICS.md sections 4-5; the (ours) decisions are in README "Billing rules"):

- Window kinds.  A product whose metric is COUNT or SUM is rated per *segment*: its period is
  cut at every rate boundary of the contract's rate card, each piece's usage is priced by the
  rate in effect over it, and the pieces of one rate form one line item (starting_at /
  ending_before = that rate's window inside the period).  MAX, UNIQUE, LATEST (and SQL metrics)
  are rated per *period*: the whole period's quantity at the rate in effect at the period's
  last instant.
- Matching: same rate card, same product, pricing group values equal (exact, case-sensitive).
  A rate with `entitled: false` bills nothing and is not reported, whatever its type.  Usage
  no rate matches (or an entitled rate of a type not billed yet) goes to mq_unrated with a
  reason (not_on_rate_card, no_rate_for_group_values, no_rate_in_effect,
  unsupported_rate_type); it is never dropped silently.
- Quantity: the line's summed usage, then quantity_conversion, then quantity_rounding
  (engine.quantity_conversion).
- FLAT: one line, quantity x price.  TIERED (graduated): tier i covers the quantities
  (lower_i, lower_i + size_i] (last tier unbounded when its size is absent); the quantity is
  split across tiers, one line per tier it reaches.  Tiers count from the start of the billing
  period, separately for each product, pricing group values and presentation group values,
  across rate segments: a segment starts where the earlier segments of the period left off.
  A zero or negative quantity is priced at the first tier and does not move the tier position.
  `tier_split` is the same rule in Python Decimal (the reference of the tests).
- Money: line total = quantity x unit price, rounded once, ROUND_HALF_UP, to the credit type's
  precision.  Quantities and unit prices are never rounded.
- A product without pricing keys that is on the rate card (an entitled rate in effect) appears
  with quantity 0 for each rate segment it has no usage in; products with pricing keys appear
  only for group values with usage.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import duckdb
from sqlglot import exp

from engine.content_hash import LINE_HASH, PRODUCT_HASH
from engine.pricing import Pricing
from engine.quantity_conversion import converted_quantity, dec, dtype, sql_text
from warehouse.models import STORED_SCALE


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
    plain = exp.cast(column, dtype(scale))
    if not ifs:
        return sql_text(plain)
    return sql_text(exp.Case(ifs=ifs, default=plain))


def _total_case(pricing: Pricing, amount: str) -> str:
    """`amount` rounded half away from zero to the line's credit type precision (constant per
    CASE branch, as DuckDB needs), as DECIMAL(38, 12)."""
    column = exp.column(amount)
    ifs = [
        exp.If(
            this=exp.EQ(this=exp.column("credit_precision"), expression=exp.Literal.number(p)),
            true=exp.cast(
                exp.Anonymous(this="round", expressions=[column, exp.Literal.number(p)]),
                dtype(12),
            ),
        )
        for p in pricing.precisions
    ]
    if not ifs:
        return sql_text(exp.cast(exp.null(), dtype(12)))
    return sql_text(exp.Case(ifs=ifs))


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
WHERE m.rate_key IS NULL OR (r.entitled AND r.rate_type NOT IN ('FLAT', 'TIERED'))
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
SELECT period_key, credit_type_id, product_id, rate_key, tier_index, pricing_values,
       presentation_values, starting_at, ending_before, quantity, total,
       -- the line's content hash (engine.content_hash): its fields as stored, and its
       -- product's name, metric and keys
       {line_hash} AS line_hash
FROM (
    SELECT x.period_key, x.credit_type_id, x.product_id, x.rate_type, x.rate_key,
           x.rate_card_id, x.rate_index, x.pricing_values, x.presentation_values,
           x.seg_start AS starting_at, x.seg_end AS ending_before,
           x.tier_index, CAST(x.tier_lower AS {stored}) AS tier_lower,
           CAST(x.tier_size AS {stored}) AS tier_size,
           CAST(x.line_quantity AS {stored}) AS quantity,
           CAST(x.unit_price AS {stored}) AS unit_price,
           {total} AS total,
           pr.product_hash
    FROM (SELECT *, line_quantity * unit_price AS amount
          FROM priced
          WHERE rate_type = 'FLAT' OR line_quantity > {zero}
             OR (quantity <= {zero} AND tier_index = 0)) x
    JOIN mq_credit_types ct ON ct.credit_type_id = x.credit_type_id
    JOIN (SELECT product_id,
                 {product_hash} AS product_hash
          FROM mq_products) pr
      ON pr.product_id = x.product_id
) y
"""

# mq_lines keeps what differs per line; what a line's rate and tier say (rate type, card and
# index, tier bounds, unit price) is joined back from the pricing tables when the lines are
# read (measured: a fifth less time to materialize the 1M lines of the benchmark).
LINE_ITEMS = f"""
SELECT l.period_key, l.credit_type_id, l.product_id, r.rate_type, l.rate_key, r.rate_card_id,
       r.rate_index, l.pricing_values, l.presentation_values, l.starting_at, l.ending_before,
       l.tier_index, CAST(t.lower AS DECIMAL(38, {STORED_SCALE})) AS tier_lower,
       CAST(t.size AS DECIMAL(38, {STORED_SCALE})) AS tier_size, l.quantity,
       CAST(CASE WHEN r.rate_type = 'FLAT' THEN r.price ELSE t.price END
            AS DECIMAL(38, {STORED_SCALE})) AS unit_price,
       l.total, l.line_hash
FROM mq_lines l
JOIN mq_rates r ON r.rate_key = l.rate_key
LEFT JOIN mq_tiers t ON t.rate_key = l.rate_key AND t.tier_index = l.tier_index
"""  # noqa: S608 - fixed SQL


def rate(con: duckdb.DuckDBPyConnection, pricing: Pricing, *, multi_segment: bool) -> None:
    """Rate mq_quantities into mq_lines (read them with LINE_ITEMS) and mq_unrated (see the
    module docstring).

    `multi_segment`: some period is cut into more than one segment (a rate boundary inside
    it).  Without that, every quantity row is its own line group and no tier position carries
    over, so the grouping and the running sum are skipped (measured: a third of rating time).
    """
    scale = pricing.quantity_scale
    zero = sql_text(dec(0, scale))
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
            stored=sql_text(dtype(STORED_SCALE)),
            prior=_PRIOR_WINDOW.format(zero=zero) if multi_segment else zero,
            total=_total_case(pricing, "amount"),
            line_hash=LINE_HASH,
            product_hash=PRODUCT_HASH,
        )
    )


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
