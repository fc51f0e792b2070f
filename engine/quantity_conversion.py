"""Quantity conversion and rounding of a product's line quantities, exact, in SQL (DECIMAL) and
in Python (Decimal, the reference the SQL is checked against).

    converted_quantity(product, raw, scale)   SQL: raw (DECIMAL(38, 12)) -> conversion ->
                                              rounding, as DECIMAL(38, scale)
    convert_quantity(product, quantity)       the same in Python Decimal (reference)
    conversion_scale / stored_scale           the decimal places the results may need
                                              (warehouse.models, which checks them)

The rules (SEMANTICS.md section 4; README "Billing rules", Quantities): the line's summed usage,
then quantity_conversion (MULTIPLY / DIVIDE by the factor), then quantity_rounding.  A DIVIDE
whose factor's reciprocal is a finite decimal (2, 1000, 1e6, 0.25...) is an exact
multiplication; any other DIVIDE (3, 60) is carried to 12 decimal places, ROUND_HALF_UP.
Rounding methods follow Python's decimal module: ROUND_UP away from zero, ROUND_DOWN toward
zero, ROUND_HALF_UP half away from zero.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import assert_never

from sqlglot import exp

from warehouse.models import (
    DIVIDE_SCALE,
    QUANTITY_SCALE,
    ConversionOperation,
    Product,
    RoundingMethod,
    conversion_scale,
    exact_reciprocal,
    scale_of,
)


def dec(value: Decimal | int, scale: int) -> exp.Expression:
    """`CAST('<exact text>' AS DECIMAL(38, scale))`."""
    text = format(Decimal(value), "f")
    return exp.cast(exp.Literal.string(text), exp.DataType.build(f"DECIMAL(38, {scale})"))


def dtype(scale: int) -> exp.DataType:
    return exp.DataType.build(f"DECIMAL(38, {scale})")


def sql_text(expression: exp.Expression) -> str:
    return expression.sql(dialect="duckdb")


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
            value = exp.Mul(this=value, expression=dec(factor, scale_of(factor)))
        elif inverse is not None:
            value = exp.Mul(this=value, expression=dec(inverse, scale_of(inverse)))
        else:
            value = _divide_half_up(value, factor)
        value = exp.cast(value, dtype(conversion_scale(product)))
    rounding = product.quantity_rounding
    if rounding is not None:
        places = rounding.decimal_places
        method = rounding.rounding_method
        if method is RoundingMethod.ROUND_HALF_UP:
            value = exp.Anonymous(this="round", expressions=[value, exp.Literal.number(places)])
        else:
            shifted = exp.Mul(this=value, expression=dec(Decimal(10) ** places, 0))
            if method is RoundingMethod.ROUND_DOWN:
                whole: exp.Expression = exp.Anonymous(this="trunc", expressions=[shifted])
            elif method is RoundingMethod.ROUND_UP:
                whole = exp.Case(
                    ifs=[
                        exp.If(
                            this=exp.GTE(this=value, expression=dec(0, 0)),
                            true=exp.Ceil(this=shifted),
                        )
                    ],
                    default=exp.Floor(this=shifted),
                )
            else:
                assert_never(method)
            value = exp.Mul(this=whole, expression=dec(Decimal(1).scaleb(-places), places))
    return exp.cast(value, dtype(scale))


def _divide_half_up(value: exp.Expression, factor: Decimal) -> exp.Expression:
    """`value / factor` rounded half away from zero to DIVIDE_SCALE places, in exact integer
    arithmetic (DuckDB's DECIMAL division would go through DOUBLE)."""
    numerator, denominator = factor.as_integer_ratio()  # factor = numerator / denominator
    # value has scale 12: n = value * 10^12 is an integer; result = n * denominator / numerator
    # at scale DIVIDE_SCALE (= 12), i.e. round(n * denominator / numerator) / 10^12.
    assert DIVIDE_SCALE == QUANTITY_SCALE
    n = exp.cast(
        exp.Mul(this=exp.cast(value, dtype(QUANTITY_SCALE)), expression=dec(10**12, 0)),
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
        expression=dec(Decimal(1).scaleb(-DIVIDE_SCALE), DIVIDE_SCALE),
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
