"""Pydantic models of the Metronome-shaped catalog objects.

These are the shapes of the catalog documents (`meterql apply`), of what the catalog stores, and
of what the compiler and the engine read.  Field names and enum values are Metronome's; enum
values are accepted in any letter case.  Numbers are `Decimal`, never float: the document loader
hands YAML/JSON numbers over as `Decimal` built from their source text.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Annotated, Any, assert_never

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

USD_CENTS_ID = "2714e483-4ff1-48e4-9e25-ac732e8f24f2"
USD_CENTS_NAME = "USD (cents)"


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _utc(value: Any) -> Any:
    """Naive timestamps mean UTC; aware ones are converted to UTC."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # pydantic reports only ValueError with the field's name
            raise ValueError(f"{value.isoformat()} is outside the years 1 to 9999 in UTC") from None
    return value


def _exact_text(value: Any) -> Any:
    """Property values are strings; numbers and booleans keep their exact text (a plain
    decimal's digits as written: `format(..., "f")`, as str() writes 0.0000001 as 1E-7)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    return value


def _not_a_boolean(value: Any) -> Any:
    """pydantic reads `true` as the integer 1: a number of decimal places must be a number."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number of decimal places, not a boolean")
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_utc)]
DecimalPlaces = Annotated[int, BeforeValidator(_not_a_boolean), Field(ge=0, le=12)]
PropertyValue = Annotated[str, BeforeValidator(_exact_text)]

# ---------------------------------------------------------------------------------------------
# Decimal places: what line quantities, unit prices and tier bounds may need (engine.rating
# stores them as DECIMAL(38, STORED_SCALE)); checked when a document is applied, so a run never
# meets a price or a product it cannot rate.

QUANTITY_SCALE = 12  # the scale of metric values (metric_compiler.numbers)
STORED_SCALE = 18  # line quantities, unit prices and tier bounds are stored as DECIMAL(38, 18)
DIVIDE_SCALE = 12  # a DIVIDE by a factor without a finite reciprocal keeps this many places
MAX_SCALE = 38


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


# Prices and tier sizes are stored as DECIMAL(38, 18): at most 20 digits before the point.
_PRICE_LIMIT = Decimal(10) ** 20


def _storable(value: Decimal) -> Decimal:
    if not value.is_finite() or abs(value) >= _PRICE_LIMIT:
        raise ValueError(
            f"{value} does not fit: a price or tier size must be below 10^20 in magnitude "
            "(meterql stores them as DECIMAL(38, 18))"
        )
    if scale_of(value) > STORED_SCALE:
        raise ValueError(
            f"{value} has {scale_of(value)} decimal places; a price or tier size may have at "
            f"most {STORED_SCALE}"
        )
    return value


Amount = Annotated[Decimal, AfterValidator(_storable)]
NonEmptyValues = Annotated[list[PropertyValue], Field(min_length=1)]


class AggregationType(enum.StrEnum):
    COUNT = "COUNT"
    SUM = "SUM"
    MAX = "MAX"
    UNIQUE = "UNIQUE"
    LATEST = "LATEST"


class ProductType(enum.StrEnum):
    USAGE = "USAGE"
    SUBSCRIPTION = "SUBSCRIPTION"
    COMPOSITE = "COMPOSITE"
    FIXED = "FIXED"


class ConversionOperation(enum.StrEnum):
    MULTIPLY = "MULTIPLY"
    DIVIDE = "DIVIDE"


class RoundingMethod(enum.StrEnum):
    ROUND_UP = "ROUND_UP"
    ROUND_DOWN = "ROUND_DOWN"
    ROUND_HALF_UP = "ROUND_HALF_UP"


class RateType(enum.StrEnum):
    FLAT = "FLAT"
    TIERED = "TIERED"
    PERCENTAGE = "PERCENTAGE"
    SUBSCRIPTION = "SUBSCRIPTION"


class Frequency(enum.StrEnum):
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    ANNUAL = "ANNUAL"
    WEEKLY = "WEEKLY"


class AnchorDay(enum.StrEnum):
    FIRST_OF_MONTH = "FIRST_OF_MONTH"
    CONTRACT_START = "CONTRACT_START"
    CUSTOM_DATE = "CUSTOM_DATE"


def _ci(enum_cls: type[enum.StrEnum]) -> Any:
    return Annotated[enum_cls, BeforeValidator(_upper)]


class Model(BaseModel):
    """Base of every document model: unknown fields are errors, objects are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


# ---------------------------------------------------------------------------------------------
# Billable metrics


class EventTypeFilter(Model):
    in_values: NonEmptyValues | None = None
    not_in_values: NonEmptyValues | None = None


class PropertyFilter(Model):
    name: Annotated[str, Field(min_length=1)]
    exists: bool | None = None
    in_values: NonEmptyValues | None = None
    not_in_values: NonEmptyValues | None = None


class BillableMetric(Model):
    id: str | None = None
    name: Annotated[str, Field(min_length=1)]
    aggregation_type: _ci(AggregationType) | None = None
    aggregation_key: Annotated[str, Field(min_length=1)] | None = None
    event_type_filter: EventTypeFilter | None = None
    property_filters: list[PropertyFilter] = []
    group_keys: list[Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]] = []
    sql: Annotated[str, Field(min_length=1)] | None = None
    archived: bool = False
    custom_fields: dict[str, str] = {}

    @model_validator(mode="after")
    def _standard_or_sql(self) -> BillableMetric:
        standard = [
            f
            for f in ("aggregation_type", "aggregation_key", "event_type_filter")
            if getattr(self, f) is not None
        ]
        if self.property_filters:
            standard.append("property_filters")
        if self.sql is not None:
            if standard:
                raise ValueError(
                    f"a SQL metric takes `sql` instead of the aggregation fields; remove "
                    f"{', '.join(standard)}"
                )
        elif self.aggregation_type is None:
            raise ValueError(
                "needs either `aggregation_type` (one of COUNT, SUM, MAX, UNIQUE, LATEST) or `sql`"
            )
        return self

    def definition_key(self) -> dict[str, Any]:
        """The immutable part of the metric (everything but id, name, archived, custom fields)."""
        return self.model_dump(
            mode="json", exclude={"id", "name", "archived", "custom_fields"}, exclude_none=True
        )


# ---------------------------------------------------------------------------------------------
# Products


class QuantityConversion(Model):
    conversion_factor: Annotated[Decimal, Field(gt=0)]
    operation: _ci(ConversionOperation)
    name: str | None = None


class QuantityRounding(Model):
    decimal_places: DecimalPlaces
    rounding_method: _ci(RoundingMethod)


class Product(Model):
    id: str | None = None
    name: Annotated[str, Field(min_length=1)]
    type: _ci(ProductType)
    billable_metric_id: str | None = None
    pricing_group_key: list[str] = []
    presentation_group_key: list[str] = []
    quantity_conversion: QuantityConversion | None = None
    quantity_rounding: QuantityRounding | None = None
    composite_product_ids: list[str] = []
    starting_at: UtcDatetime | None = None
    custom_fields: dict[str, str] = {}

    @model_validator(mode="after")
    def _usage_fields(self) -> Product:
        if self.type is ProductType.USAGE:
            if not self.billable_metric_id:
                raise ValueError("a USAGE product needs `billable_metric_id`")
        else:
            extra = [
                f
                for f in ("billable_metric_id", "pricing_group_key", "presentation_group_key")
                if getattr(self, f)
            ]
            if extra:
                raise ValueError(f"{', '.join(extra)} apply only to USAGE products")
        for name in ("pricing_group_key", "presentation_group_key"):
            keys = getattr(self, name)
            if len(set(keys)) < len(keys):
                repeated = sorted({k for k in keys if keys.count(k) > 1})
                raise ValueError(f"{name} lists {repeated} more than once; list each key once")
        overlap = set(self.pricing_group_key) & set(self.presentation_group_key)
        if overlap:
            raise ValueError(
                f"{sorted(overlap)} is both a pricing and a presentation group key; use it once"
            )
        if self.quantity_conversion is not None:
            factor = self.quantity_conversion.conversion_factor
            if conversion_scale(self) > MAX_SCALE - 2:
                raise ValueError(
                    f"quantity_conversion.conversion_factor {factor} has too many decimal places "
                    f"(a converted quantity would need more than {MAX_SCALE - 2})"
                )
            if stored_scale(self) > STORED_SCALE:
                raise ValueError(
                    f"quantity_conversion by {factor} gives quantities with up to "
                    f"{stored_scale(self)} decimal places; meterql keeps at most {STORED_SCALE}: "
                    "add quantity_rounding"
                )
        return self


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


# ---------------------------------------------------------------------------------------------
# Credit types, rate cards and rates


class CreditType(Model):
    id: str | None = None
    name: Annotated[str, Field(min_length=1)]
    precision: DecimalPlaces = 0


class Tier(Model):
    size: Annotated[Amount, Field(gt=0)] | None = None
    price: Amount


class Rate(Model):
    product_id: Annotated[str, Field(min_length=1)]
    starting_at: UtcDatetime
    ending_before: UtcDatetime | None = None
    entitled: bool = True
    rate_type: _ci(RateType)
    price: Amount | None = None
    tiers: Annotated[list[Tier], Field(min_length=1)] | None = None
    pricing_group_values: dict[str, PropertyValue] = {}
    credit_type_id: str | None = None
    quantity: Decimal | None = None

    @model_validator(mode="after")
    def _price_shape(self) -> Rate:
        if self.ending_before is not None and self.ending_before <= self.starting_at:
            raise ValueError(
                f"ending_before {self.ending_before.isoformat()} is not after starting_at "
                f"{self.starting_at.isoformat()}"
            )
        if self.rate_type is RateType.TIERED:
            if self.tiers is None:
                raise ValueError("a TIERED rate needs `tiers`")
            if self.price is not None:
                raise ValueError("a TIERED rate takes `tiers`, not `price`")
            for i, tier in enumerate(self.tiers[:-1]):
                if tier.size is None:
                    raise ValueError(
                        f"tiers[{i}] has no size but is not the last tier; only the last tier "
                        "may be unbounded"
                    )
            last = len(self.tiers) - 1
            if self.tiers[last].size is not None:
                raise ValueError(
                    f"tiers[{last}] is the last tier and has a size ({self.tiers[last].size}): "
                    "usage beyond it would be priced by no tier; remove its size (the last tier "
                    "is unbounded)"
                )
        else:
            if self.price is None:
                raise ValueError(f"a {self.rate_type.value} rate needs `price`")
            if self.tiers is not None:
                raise ValueError(f"a {self.rate_type.value} rate takes `price`, not `tiers`")
        return self


class RateCard(Model):
    id: str | None = None
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    fiat_credit_type_id: str | None = None
    rates: list[Rate] = []
    custom_fields: dict[str, str] = {}


# ---------------------------------------------------------------------------------------------
# Customers and contracts


Alias = Annotated[str, Field(min_length=1, max_length=128)]


def ingest_keys(aliases: list[str], external_id: str | None) -> list[str]:
    """The keys events may carry for a customer besides its id: its ingest aliases and its
    external id, each once (of a Customer, or of a stored customer document)."""
    return list(dict.fromkeys([*aliases, *([external_id] if external_id is not None else [])]))


class Customer(Model):
    id: str | None = None
    name: Annotated[str, Field(min_length=1)]
    ingest_aliases: list[Alias] = []
    # Metronome: "(deprecated, use ingest_aliases instead) an alias that can be used to refer
    # to this customer in usage events": an ingest key like the aliases.
    external_id: Alias | None = None
    custom_fields: dict[str, str] = {}

    def ingest_keys(self) -> list[str]:
        """The keys events may carry for this customer besides its id (see `ingest_keys`)."""
        return ingest_keys(self.ingest_aliases, self.external_id)

    @field_validator("ingest_aliases")
    @classmethod
    def _unique_aliases(cls, aliases: list[str]) -> list[str]:
        seen = set()
        for alias in aliases:
            if alias in seen:
                raise ValueError(f"ingest alias {alias!r} is listed twice")
            seen.add(alias)
        return aliases


class UsageStatementSchedule(Model):
    frequency: _ci(Frequency)
    day: _ci(AnchorDay) = AnchorDay.FIRST_OF_MONTH
    billing_anchor_date: UtcDatetime | None = None

    @model_validator(mode="after")
    def _anchor(self) -> UsageStatementSchedule:
        if self.day is AnchorDay.CUSTOM_DATE and self.billing_anchor_date is None:
            raise ValueError("day CUSTOM_DATE needs `billing_anchor_date`")
        if self.day is not AnchorDay.CUSTOM_DATE and self.billing_anchor_date is not None:
            raise ValueError("`billing_anchor_date` applies only with day CUSTOM_DATE")
        return self


class Contract(Model):
    id: str | None = None
    name: str | None = None
    customer_id: Annotated[str, Field(min_length=1)]
    rate_card_id: Annotated[str, Field(min_length=1)]
    starting_at: UtcDatetime
    ending_before: UtcDatetime | None = None
    usage_statement_schedule: UsageStatementSchedule
    custom_fields: dict[str, str] = {}

    @model_validator(mode="after")
    def _period(self) -> Contract:
        if self.ending_before is not None and self.ending_before <= self.starting_at:
            raise ValueError(
                f"ending_before {self.ending_before.isoformat()} is not after starting_at "
                f"{self.starting_at.isoformat()}: the contract would end before it starts"
            )
        return self


# ---------------------------------------------------------------------------------------------
# Documents


class CatalogDocument(Model):
    """One catalog document: each top-level key a list of objects."""

    credit_types: list[CreditType] = []
    billable_metrics: list[BillableMetric] = []
    products: list[Product] = []
    rate_cards: list[RateCard] = []
    customers: list[Customer] = []
    contracts: list[Contract] = []


KINDS: dict[str, type[Model]] = {
    "credit_types": CreditType,
    "billable_metrics": BillableMetric,
    "products": Product,
    "rate_cards": RateCard,
    "customers": Customer,
    "contracts": Contract,
}
