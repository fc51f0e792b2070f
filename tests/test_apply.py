"""`meterql apply`: validation, identity, idempotence, references and all-or-nothing writes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from engine.api import Meterql
from warehouse.errors import DocumentError, HomeError

QUICKSTART = """
billable_metrics:
  - name: API Calls
    aggregation_type: count
    event_type_filter: {in_values: [api_call]}
  - name: Input Tokens
    aggregation_type: SUM
    aggregation_key: input_tokens
    event_type_filter: {in_values: [llm_request]}
    property_filters:
      - {name: model, exists: true}
      - {name: input_tokens, exists: true}
      - {name: user_id, exists: true}
    group_keys: [[model], [user_id], [model, user_id]]
products:
  - name: Input Tokens
    type: usage
    billable_metric_id: Input Tokens
    pricing_group_key: [model]
    presentation_group_key: [user_id]
rate_cards:
  - name: Standard Pricing
    rates:
      - product_id: Input Tokens
        starting_at: "2026-03-01T00:00:00Z"
        rate_type: flat
        price: 1.50
        pricing_group_values: {model: gpt-5}
      - product_id: Input Tokens
        starting_at: "2026-03-01T00:00:00Z"
        rate_type: FLAT
        price: 0.30
        pricing_group_values: {model: gpt-5-mini}
customers:
  - name: Test Customer
    ingest_aliases: [my-internal-customer-id]
contracts:
  - customer_id: Test Customer
    rate_card_id: Standard Pricing
    starting_at: 2026-03-01T00:00:00Z
    usage_statement_schedule: {frequency: monthly}
"""


@pytest.fixture
def mq(tmp_path: Path) -> Meterql:
    m = Meterql.init(tmp_path / "home")
    yield m
    m.close()


def write(tmp_path: Path, text: str, name: str = "doc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def snapshot(mq: Meterql) -> dict[str, list]:
    tables = ["billable_metrics", "products", "rate_cards", "customers", "customer_keys"]
    return {t: sorted(mq.con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}  # noqa: S608


def problems_of(excinfo: pytest.ExceptionInfo[DocumentError]) -> str:
    return "\n".join(excinfo.value.problems)


def test_apply_quickstart_then_again_changes_nothing(mq: Meterql, tmp_path: Path) -> None:
    doc = write(tmp_path, QUICKSTART)
    first = mq.apply([doc])
    assert first.counts() == {"created": 6, "updated": 0, "unchanged": 0}
    before = snapshot(mq)
    second = mq.apply([doc])
    assert second.counts() == {"created": 0, "updated": 0, "unchanged": 6}
    assert snapshot(mq) == before


def test_references_are_resolved_and_numbers_exact(mq: Meterql, tmp_path: Path) -> None:
    mq.apply([write(tmp_path, QUICKSTART)])
    product = mq.catalog.product("Input Tokens")
    metric = mq.catalog.metric("Input Tokens")
    assert product.billable_metric_id == metric.id
    card = mq.catalog.get("rate_cards", "Standard Pricing")
    prices = sorted(r.price for r in card.rates)
    assert prices == [Decimal("0.30"), Decimal("1.50")]
    assert all(r.product_id == product.id for r in card.rates)
    assert all(r.credit_type_id == "2714e483-4ff1-48e4-9e25-ac732e8f24f2" for r in card.rates)
    customer = mq.catalog.customer("my-internal-customer-id")
    assert customer.name == "Test Customer"
    (contract,) = mq.catalog.all("contracts")
    assert contract.customer_id == customer.id and contract.rate_card_id == card.id


def test_given_ids_are_kept_and_references_accept_them(mq: Meterql, tmp_path: Path) -> None:
    doc = {
        "customers": [{"id": "cust-1", "name": "Acme"}],
        "rate_cards": [{"id": "rc-1", "name": "Card"}],
        "contracts": [
            {
                "customer_id": "cust-1",
                "rate_card_id": "Card",
                "starting_at": "2026-01-01",
                "usage_statement_schedule": {"frequency": "MONTHLY"},
            }
        ],
    }
    mq.apply([write(tmp_path, json.dumps(doc), "doc.json")])
    (contract,) = mq.catalog.all("contracts")
    assert (contract.customer_id, contract.rate_card_id) == ("cust-1", "rc-1")
    assert mq.catalog.customer("Acme").id == "cust-1"


def test_unknown_field_is_named_with_a_suggestion(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace("aggregation_key: input_tokens", "agregation_key: input_tokens")
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    message = problems_of(excinfo)
    assert "unknown field 'agregation_key'; did you mean 'aggregation_key'?" in message
    assert "billable_metrics[1] 'Input Tokens'" in message
    assert "doc.yaml:6" in message  # the line where the object starts
    assert snapshot(mq)["billable_metrics"] == []


def test_a_number_where_text_is_expected_says_to_quote_it(mq: Meterql, tmp_path: Path) -> None:
    text = "customers:\n  - name: Num\n    ingest_aliases: [123, 0123]\n"
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    message = problems_of(excinfo)
    assert "field 'ingest_aliases[0]': Input should be a valid string (got 123); write it in " in (
        message
    )
    assert "ingest_aliases[1]" not in message  # 0123 is text (YAML 1.1 read it as octal 83)


def test_unknown_nested_field_and_top_level_key(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace("{name: model, exists: true}", "{name: model, exist: true}")
    text += "customer:\n  - name: x\n"
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    message = problems_of(excinfo)
    assert "in 'property_filters[0]': unknown field 'exist'; did you mean 'exists'?" in message
    assert "unknown top-level key 'customer'; did you mean 'customers'?" in message


def test_bad_enum_lists_allowed_values(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace("aggregation_type: count", "aggregation_type: average")
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    message = problems_of(excinfo)
    assert "aggregation_type" in message and "'AVERAGE'" in message
    for allowed in ("COUNT", "SUM", "MAX", "UNIQUE", "LATEST"):
        assert allowed in message


def test_every_enum_is_accepted_in_any_letter_case(mq: Meterql, tmp_path: Path) -> None:
    """SEMANTICS.md: "Enum values are accepted in any letter case" (stored upper case)."""
    doc = """
billable_metrics:
  - name: Peak
    aggregation_type: mAx
    aggregation_key: n
    property_filters: [{name: n, exists: true}]
products:
  - name: Peak
    type: Usage
    billable_metric_id: Peak
    quantity_conversion: {conversion_factor: 1000, operation: Divide}
    quantity_rounding: {decimal_places: 0, rounding_method: Round_Half_Up}
rate_cards:
  - name: Card
    rates:
      - {product_id: Peak, starting_at: 2026-03-01T00:00:00Z, rate_type: Tiered,
         tiers: [{price: 1}]}
customers: [{name: A}]
contracts:
  - name: quarterly
    customer_id: A
    rate_card_id: Card
    starting_at: 2026-03-01T00:00:00Z
    usage_statement_schedule:
      {frequency: Quarterly, day: cUsToM_dAtE, billing_anchor_date: 2026-01-31T00:00:00Z}
  - {name: weekly, customer_id: A, rate_card_id: Card, starting_at: 2026-03-01T00:00:00Z,
     usage_statement_schedule: {frequency: wEEKLY, day: Contract_Start}}
  - {name: annual, customer_id: A, rate_card_id: Card, starting_at: 2026-03-01T00:00:00Z,
     usage_statement_schedule: {frequency: annual, day: first_of_month}}
"""
    mq.apply([write(tmp_path, doc)])
    metric = mq.catalog.metric("Peak")
    product = mq.catalog.get("products", "Peak")
    (rate,) = mq.catalog.get("rate_cards", "Card").rates
    schedules = [
        mq.catalog.get("contracts", ref).usage_statement_schedule
        for ref in ("quarterly", "weekly", "annual")
    ]
    assert (metric.aggregation_type, product.type, rate.rate_type) == ("MAX", "USAGE", "TIERED")
    assert product.quantity_conversion.operation == "DIVIDE"
    assert product.quantity_rounding.rounding_method == "ROUND_HALF_UP"
    assert [(s.frequency, s.day) for s in schedules] == [
        ("QUARTERLY", "CUSTOM_DATE"),
        ("WEEKLY", "CONTRACT_START"),
        ("ANNUAL", "FIRST_OF_MONTH"),
    ]


def test_product_and_schedule_shapes_are_checked(mq: Meterql, tmp_path: Path) -> None:
    """SEMANTICS.md sections 4 and 6: USAGE needs billable_metric_id, group keys are for USAGE
    products only, and CUSTOM_DATE (only it) takes a billing_anchor_date."""
    doc = """
products:
  - {name: P1, type: usage}
  - {name: P2, type: fixed, pricing_group_key: [a]}
customers: [{name: A}]
rate_cards: [{name: C}]
contracts:
  - {name: k1, customer_id: A, rate_card_id: C, starting_at: 2026-03-01T00:00:00Z,
     usage_statement_schedule: {frequency: monthly, day: custom_date}}
  - {name: k2, customer_id: A, rate_card_id: C, starting_at: 2026-03-01T00:00:00Z,
     usage_statement_schedule: {frequency: monthly, billing_anchor_date: 2026-03-05T00:00:00Z}}
"""
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, doc)])
    message = problems_of(excinfo)
    assert "products[0] 'P1': a USAGE product needs `billable_metric_id`" in message
    assert "products[1] 'P2': pricing_group_key apply only to USAGE products" in message
    assert "contracts[0] 'k1': field 'usage_statement_schedule': day CUSTOM_DATE needs " in message
    assert "contracts[1] 'k2': field 'usage_statement_schedule': `billing_anchor_date` " in message


def test_all_problems_are_reported_together(mq: Meterql, tmp_path: Path) -> None:
    text = (
        QUICKSTART.replace("billable_metric_id: Input Tokens", "billable_metric_id: Input Tokenz")
        .replace("rate_card_id: Standard Pricing", "rate_card_id: Missing Card")
        .replace("frequency: monthly", "frequency: fortnightly")
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    message = problems_of(excinfo)
    assert len(excinfo.value.problems) >= 2
    assert "frequency" in message and "'FORTNIGHTLY'" in message


def test_missing_references_are_named(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace(
        "billable_metric_id: Input Tokens", "billable_metric_id: Input Tokenz"
    ).replace("rate_card_id: Standard Pricing", "rate_card_id: Standard Pricng")
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    message = problems_of(excinfo)
    assert (
        "field 'billable_metric_id': no billable metric with id or name 'Input Tokenz'; "
        "did you mean 'Input Tokens'?" in message
    )
    assert "field 'rate_card_id': no rate card with id or name 'Standard Pricng'" in message
    assert snapshot(mq)["products"] == []


def test_composite_product_ids_are_resolved_references(mq: Meterql, tmp_path: Path) -> None:
    """A COMPOSITE product's `composite_product_ids` accept ids or names like every reference;
    they were neither resolved nor checked (a typo stayed in the catalog unnoticed)."""
    text = QUICKSTART.replace(
        "rate_cards:",
        "  - {name: Platform fee, type: composite, composite_product_ids: [Input Tokens]}\n"
        "rate_cards:",
        1,
    )
    mq.apply([write(tmp_path, text)])
    tokens = mq.catalog.product("Input Tokens")
    assert mq.catalog.product("Platform fee").composite_product_ids == [tokens.id]
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text.replace("[Input Tokens]", "[Input Tokenz]"))])
    assert (
        "field 'composite_product_ids': no product with id or name 'Input Tokenz'; "
        "did you mean 'Input Tokens'?"
    ) in problems_of(excinfo)


def test_rate_for_missing_product_is_refused(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace(
        "product_id: Input Tokens\n        starting_at", "product_id: Nope\n        starting_at", 1
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    assert "field 'rates[0].product_id': no product with id or name 'Nope'" in problems_of(excinfo)


def test_contract_on_a_rate_card_missing_from_the_catalog(mq: Meterql, tmp_path: Path) -> None:
    mq.apply([write(tmp_path, "customers: [{name: A}]\n", "a.yaml")])
    doc = (
        "contracts:\n  - customer_id: A\n    rate_card_id: Gold\n"
        "    starting_at: 2026-01-01\n    usage_statement_schedule: {frequency: MONTHLY}\n"
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, doc, "b.yaml")])
    assert "no rate card with id or name 'Gold'" in problems_of(excinfo)


def test_changed_metric_is_refused_as_immutable(mq: Meterql, tmp_path: Path) -> None:
    mq.apply([write(tmp_path, QUICKSTART)])
    before = snapshot(mq)
    changed = QUICKSTART.replace("in_values: [api_call]", "in_values: [api_call, api_request]")
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, changed)])
    message = problems_of(excinfo)
    assert "'API Calls'" in message and "immutable" in message and "event_type_filter" in message
    assert snapshot(mq) == before


def test_archiving_a_metric_is_allowed_and_blocks_new_products(mq: Meterql, tmp_path: Path) -> None:
    mq.apply([write(tmp_path, QUICKSTART)])
    archived = QUICKSTART.replace(
        "    event_type_filter: {in_values: [api_call]}",
        "    event_type_filter: {in_values: [api_call]}\n    archived: true",
    )
    assert mq.apply([write(tmp_path, archived)]).counts()["updated"] == 1
    assert mq.catalog.metric("API Calls").archived
    new_product = "products:\n  - {name: Calls, type: usage, billable_metric_id: API Calls}\n"
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, new_product, "p.yaml")])
    assert "'API Calls' is archived; new products cannot use it" in problems_of(excinfo)


def test_an_existing_product_cannot_switch_to_an_archived_metric(
    mq: Meterql, tmp_path: Path
) -> None:
    calls = "products:\n  - {name: Calls, type: usage, billable_metric_id: API Calls}\n"
    mq.apply([write(tmp_path, QUICKSTART.replace("products:\n", calls, 1))])
    archived = QUICKSTART.replace(
        "    event_type_filter: {in_values: [api_call]}",
        "    event_type_filter: {in_values: [api_call]}\n    archived: true",
    )
    mq.apply([write(tmp_path, archived)])
    before = snapshot(mq)
    switched = "products: [{name: Input Tokens, type: usage, billable_metric_id: API Calls}]\n"
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, switched, "switch.yaml")])
    assert (
        "products[0] 'Input Tokens': field 'billable_metric_id': billable metric 'API Calls' "
        "is archived; new products cannot use it"
    ) in problems_of(excinfo)
    assert snapshot(mq) == before
    # a product that used the metric before it was archived keeps working and may change
    kept = (
        "products: [{name: Calls, type: usage, billable_metric_id: API Calls, "
        "custom_fields: {team: core}}]\n"
    )
    assert mq.apply([write(tmp_path, kept, "kept.yaml")]).counts()["updated"] == 1


def test_alias_claimed_by_two_customers_names_both(mq: Meterql, tmp_path: Path) -> None:
    mq.apply([write(tmp_path, "customers: [{name: A, ingest_aliases: [shared]}]\n", "a.yaml")])
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, "customers: [{name: B, ingest_aliases: [shared]}]\n", "b.yaml")])
    message = problems_of(excinfo)
    assert "ingest alias 'shared'" in message and "'A'" in message and "'B'" in message
    assert mq.catalog.customer("shared").name == "A"


def test_alias_moves_between_customers_in_one_apply(mq: Meterql, tmp_path: Path) -> None:
    mq.apply([write(tmp_path, "customers: [{name: A, ingest_aliases: [k]}, {name: B}]\n")])
    mq.apply([write(tmp_path, "customers: [{name: A}, {name: B, ingest_aliases: [k]}]\n")])
    assert mq.catalog.customer("k").name == "B"


def test_external_id_is_an_ingest_key_like_an_alias(mq: Meterql, tmp_path: Path) -> None:
    """Metronome's customer `external_id` (deprecated) is "an alias that can be used to refer
    to this customer in usage events": it was stored and ignored, so events sent under it were
    never billed to the customer."""
    mq.apply([write(tmp_path, "customers: [{name: A, external_id: ext-a}]\n", "a.yaml")])
    assert mq.catalog.customer("ext-a").name == "A"
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, "customers: [{name: B, ingest_aliases: [ext-a]}]\n", "b.yaml")])
    message = problems_of(excinfo)
    assert "ingest alias 'ext-a'" in message and "'A'" in message and "'B'" in message
    # also listed as an ingest alias of the same customer: one key
    both = "customers: [{name: A, external_id: ext-a, ingest_aliases: [ext-a, other]}]\n"
    mq.apply([write(tmp_path, both, "c.yaml")])
    assert mq.catalog.customer("other").name == "A"
    assert mq.catalog.customer("ext-a").name == "A"
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, f"customers: [{{name: C, external_id: {'x' * 129}}}]\n")])
    assert "external_id" in problems_of(excinfo)


def test_external_ids_applied_before_become_keys_on_upgrade(tmp_path: Path) -> None:
    """Migration 0009: customers stored with an external_id before it was a key get it (unless
    another customer holds that key, or two customers give it)."""
    m = Meterql.init(tmp_path / "home")
    doc = (
        "customers: [{name: A, external_id: ext-a}, {name: B, external_id: taken},\n"
        "            {name: C, ingest_aliases: [taken]}, {name: D}]\n"
    )
    try:
        with pytest.raises(DocumentError):  # `taken` is B's and C's
            m.apply([write(tmp_path, doc)])
        m.apply([write(tmp_path, doc.replace("external_id: taken", "ingest_aliases: [b]"))])
        # as a home of migration 0008 stored them: B's external_id set, A's not a key
        m.con.execute(
            'UPDATE customers SET doc = json_merge_patch(doc, \'{"external_id": "taken"}\') '
            "WHERE name = 'B'"
        )
        m.con.execute("DELETE FROM customer_keys WHERE key = 'ext-a'")
        m.con.execute("DELETE FROM schema_version WHERE version = 9")
    finally:
        m.close()
    m = Meterql.open(tmp_path / "home")
    try:
        assert m.catalog.customer("ext-a").name == "A"
        assert m.catalog.customer("taken").name == "C"
    finally:
        m.close()


def test_alias_too_long_is_refused(mq: Meterql, tmp_path: Path) -> None:
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, f"customers: [{{name: A, ingest_aliases: [{'x' * 129}]}}]\n")])
    assert "ingest_aliases[0]" in problems_of(excinfo)


def test_an_alias_is_1_to_128_characters(mq: Meterql, tmp_path: Path) -> None:
    """Characters, not bytes: 128 two-byte characters are an alias; an empty one is not."""
    longest = "é" * 128
    mq.apply([write(tmp_path, f"customers: [{{name: A, ingest_aliases: [{longest}]}}]\n")])
    assert mq.catalog.customer(longest).name == "A"
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, "customers: [{name: B, ingest_aliases: ['']}]\n")])
    assert "ingest_aliases[0]" in problems_of(excinfo)


def test_filter_value_lists_must_not_be_empty(mq: Meterql, tmp_path: Path) -> None:
    doc = """
billable_metrics:
  - name: Calls
    aggregation_type: count
    event_type_filter: {in_values: [], not_in_values: []}
    property_filters: [{name: a, in_values: []}, {name: b, not_in_values: []}]
"""
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, doc)])
    message = problems_of(excinfo)
    for field in (
        "event_type_filter.in_values",
        "event_type_filter.not_in_values",
        "property_filters[0].in_values",
        "property_filters[1].not_in_values",
    ):
        assert f"field '{field}': List should have at least 1 item" in message


def test_a_long_or_nested_value_is_shown_shortened(mq: Meterql, tmp_path: Path) -> None:
    """A problem quotes the value it refuses, shortened: a 100,000-character alias, or YAML
    aliases nesting a million strings, was printed whole (72 MB for the second)."""
    lines = ["x0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    text = "\n".join(lines) + f"\ncustomers:\n  - {{name: A, ingest_aliases: [{'x' * 100_000}]}}\n"
    text += "  - {name: B, ingest_aliases: *a6}\n"
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    message = problems_of(excinfo)
    assert "customers[0] 'A': field 'ingest_aliases[0]': String should have at most 128" in message
    assert "customers[1] 'B': field 'ingest_aliases[9]': Input should be a valid string" in message
    assert max(len(line) for line in excinfo.value.problems) < 400


def test_a_boolean_is_not_a_number_of_decimal_places(mq: Meterql, tmp_path: Path) -> None:
    """`true` was read as 1: a credit type's precision, a product's rounding, silently."""
    text = (
        "credit_types: [{name: Points, precision: true}]\n"
        "billable_metrics: [{name: Calls, aggregation_type: count}]\n"
        "products: [{name: P, type: usage, billable_metric_id: Calls, quantity_rounding: "
        "{decimal_places: false, rounding_method: round_up}}]\n"
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    message = problems_of(excinfo)
    assert "credit_types[0] 'Points': field 'precision': expected a whole number" in message
    assert "field 'quantity_rounding.decimal_places': expected a whole number" in message


def test_overlapping_rates_are_refused_naming_both(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace(
        "pricing_group_values: {model: gpt-5-mini}", "pricing_group_values: {model: gpt-5}"
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    message = problems_of(excinfo)
    assert "rates[0] and rates[1] both price product" in message
    assert "overlapping" in message


def test_consecutive_rates_are_fine(mq: Meterql, tmp_path: Path) -> None:
    head, tail = QUICKSTART.split("customers:")
    head = head.replace(
        '        starting_at: "2026-03-01T00:00:00Z"\n        rate_type: flat\n',
        '        starting_at: "2026-03-01T00:00:00Z"\n        ending_before: "2026-04-01"\n'
        "        rate_type: flat\n",
    )
    head += (
        "      - {product_id: Input Tokens, starting_at: '2026-04-01', rate_type: flat,"
        " price: 2, pricing_group_values: {model: gpt-5}}\n"
    )
    mq.apply([write(tmp_path, head + "customers:" + tail)])
    assert len(mq.catalog.get("rate_cards", "Standard Pricing").rates) == 3


def test_product_keys_must_be_within_one_compound_key(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace(
        "group_keys: [[model], [user_id], [model, user_id]]", "group_keys: [[model], [user_id]]"
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    assert "must be within one compound group key" in problems_of(excinfo)


def test_rate_group_values_must_match_product_pricing_keys(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace("{model: gpt-5-mini}", "{region: us-east-1}")
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    assert "rates[1].pricing_group_values has keys ['region']" in problems_of(excinfo)


def test_tier_shapes_are_checked(mq: Meterql, tmp_path: Path) -> None:
    base = QUICKSTART.split("customers:")[0]
    bad_size = base.replace(
        "rate_type: FLAT\n        price: 0.30",
        "rate_type: TIERED\n        tiers: [{size: 0, price: 1}, {price: 0.5}]",
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, bad_size)])
    assert "tiers[0].size" in problems_of(excinfo)
    unbounded_middle = base.replace(
        "rate_type: FLAT\n        price: 0.30",
        "rate_type: TIERED\n        tiers: [{price: 1}, {size: 10, price: 0.5}]",
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, unbounded_middle)])
    assert "tiers[0] has no size but is not the last tier" in problems_of(excinfo)


def test_contract_ending_before_it_starts_is_refused(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace(
        "    starting_at: 2026-03-01T00:00:00Z\n    usage",
        "    starting_at: 2026-03-01T00:00:00Z\n    ending_before: 2026-02-01\n    usage",
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    assert "contract would end before it starts" in problems_of(excinfo)


def test_a_timestamp_outside_the_calendar_in_utc_is_named(mq: Meterql, tmp_path: Path) -> None:
    text = QUICKSTART.replace(
        "    starting_at: 2026-03-01T00:00:00Z\n    usage",
        "    starting_at: 2026-03-01T00:00:00Z\n    ending_before: 9999-12-31T23:00:00-05:00\n"
        "    usage",
    )
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    assert (
        "contracts[0]: field 'ending_before': 9999-12-31T23:00:00-05:00 is outside the years "
        "1 to 9999 in UTC"
    ) in problems_of(excinfo)


@pytest.mark.parametrize(
    ("written", "shown"),
    [(".inf", "Infinity"), ("-.Inf", "-Infinity"), (".nan", "NaN")],
)
def test_a_non_finite_price_is_shown_as_written(
    mq: Meterql, tmp_path: Path, written: str, shown: str
) -> None:
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, QUICKSTART.replace("price: 1.50", f"price: {written}"))])
    assert (
        f"field 'rates[0].price': Input should be a finite number (got Decimal('{shown}'))"
    ) in problems_of(excinfo)


def test_yaml_scalars_keep_their_text_beyond_json_forms(mq: Meterql, tmp_path: Path) -> None:
    """Plain YAML scalars are read like JSON: only true/false are booleans and only decimal
    numbers are numbers.  YAML 1.1 made `NO` (Norway) the boolean false, `02139` the octal 1121,
    `0x1F` 31 and `1:30` the sexagesimal 90: a property filter `in_values: [NO, SE]` then
    matched "false", silently dropping every Norwegian event from the metric."""
    doc = """
billable_metrics:
  - name: Calls
    aggregation_type: count
    event_type_filter: {in_values: [api_call]}
    property_filters:
      - {name: country, in_values: [NO, SE, on, y]}
      - {name: zip, in_values: [02139, 0x1F, 1:30, 1:30.5, 1_000, 1e5, 7, -3, 2.50]}
    group_keys: [[country]]
products:
  - {name: Calls, type: usage, billable_metric_id: Calls, pricing_group_key: [country]}
rate_cards:
  - name: Card
    rates:
      - {product_id: Calls, starting_at: 2026-03-01T00:00:00Z, rate_type: flat, price: 010,
         entitled: yes, pricing_group_values: {country: NO}}
      - {product_id: Calls, starting_at: 2026-03-01T00:00:00Z, rate_type: flat, price: 2,
         entitled: false, pricing_group_values: {country: SE}}
"""
    mq.apply([write(tmp_path, doc)])
    metric = mq.catalog.metric("Calls")
    assert [f.in_values for f in metric.property_filters] == [
        ["NO", "SE", "on", "y"],
        ["02139", "0x1F", "1:30", "1:30.5", "1_000", "1e5", "7", "-3", "2.50"],
    ]
    norway, sweden = mq.catalog.get("rate_cards", "Card").rates
    assert (norway.pricing_group_values, norway.price, norway.entitled) == (
        {"country": "NO"},
        Decimal(10),
        True,
    )
    assert (sweden.pricing_group_values, sweden.entitled) == ({"country": "SE"}, False)


def test_a_negative_zero_property_value_keeps_its_text(mq: Meterql, tmp_path: Path) -> None:
    """An event's -0 is stored as "-0"; a filter value -0 was read as the integer 0 ("0")."""
    doc = "billable_metrics: [{name: C, aggregation_type: count,\n"
    doc += "  property_filters: [{name: n, in_values: [-0, 0, -1]}]}]\n"
    mq.apply([write(tmp_path, doc)])
    (n,) = mq.catalog.metric("C").property_filters
    assert n.in_values == ["-0", "0", "-1"]


def test_a_small_decimal_property_value_keeps_its_text(mq: Meterql, tmp_path: Path) -> None:
    """A filter or pricing value written as a plain decimal is matched against the event's text
    (an event's 0.0000001 is stored as "0.0000001"), so it must keep its digits as written:
    Python's str() of such a Decimal gives "1E-7", which matched no event."""
    doc = """
billable_metrics:
  - name: Calls
    aggregation_type: count
    property_filters:
      - {name: dose, in_values: [0.0000001, 0.00000010, -0.0]}
    group_keys: [[dose]]
products:
  - {name: Calls, type: usage, billable_metric_id: Calls, pricing_group_key: [dose]}
rate_cards:
  - name: Card
    rates:
      - {product_id: Calls, starting_at: 2026-03-01T00:00:00Z, rate_type: flat, price: 1,
         pricing_group_values: {dose: 0.0000001}}
"""
    mq.apply([write(tmp_path, doc)])
    (dose,) = mq.catalog.metric("Calls").property_filters
    assert dose.in_values == ["0.0000001", "0.00000010", "-0.0"]
    (rate,) = mq.catalog.get("rate_cards", "Card").rates
    assert rate.pricing_group_values == {"dose": "0.0000001"}


def test_duplicate_key_and_broken_yaml_point_at_the_line(mq: Meterql, tmp_path: Path) -> None:
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, "customers:\n  - name: A\n    name: B\n")])
    assert "key 'name' is given twice" in problems_of(excinfo)
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, "customers:\n  - name: [A\n")])
    assert "doc.yaml:" in problems_of(excinfo) and "not valid YAML or JSON" in problems_of(excinfo)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("customers:\n  - {name: X, [a]: 2}\n", "doc.yaml:2:15: not valid YAML or JSON: a "),
        ("? [a]\n: b\n", "doc.yaml:1:3: not valid YAML or JSON: a mapping key"),
        # meterql's own limit, or PyYAML's (6.0.4 and later stop at a depth of 1,000 themselves)
        ("customers: " + "[" * 2000 + "]" * 2000, "doc.yaml: nested more than|nesting depth"),
        ('{"customers": ' + "[" * 2000 + "]" * 2000 + "}\t", "doc.yaml: nested more than|depth"),
    ],
)
def test_a_list_as_a_key_or_deep_nesting_is_a_document_error(
    mq: Meterql, tmp_path: Path, text: str, needle: str
) -> None:
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    assert any(n in problems_of(excinfo) for n in needle.split("|")), problems_of(excinfo)


def test_missing_file_is_named(mq: Meterql, tmp_path: Path) -> None:
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([tmp_path / "nope.yaml"])
    assert "nope.yaml: no such file" in problems_of(excinfo)


def test_updates_keep_ids_and_report_updated(mq: Meterql, tmp_path: Path) -> None:
    mq.apply([write(tmp_path, QUICKSTART)])
    product_id = mq.catalog.product("Input Tokens").id
    renamed = QUICKSTART.replace("price: 1.50", "price: 1.75")
    result = mq.apply([write(tmp_path, renamed)])
    assert [(o.kind, o.action) for o in result.objects if o.action != "unchanged"] == [
        ("rate_cards", "updated")
    ]
    assert mq.catalog.product("Input Tokens").id == product_id


def test_two_objects_with_one_name_and_different_bodies(mq: Meterql, tmp_path: Path) -> None:
    text = "customers: [{name: A, ingest_aliases: [x]}, {name: A, ingest_aliases: [y]}]\n"
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    assert "name 'A' is also used by" in problems_of(excinfo)


def test_uninitialised_home_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HomeError, match="not initialised.*meterql --home .* init"):
        Meterql.open(tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_the_same_object_twice_is_applied_once(mq: Meterql, tmp_path: Path) -> None:
    a = write(tmp_path, "customers: [{name: A, ingest_aliases: [x]}]\n", "a.yaml")
    b = write(tmp_path, "customers: [{name: A, ingest_aliases: [x]}]\n", "b.yaml")
    assert mq.apply([a, b]).counts()["created"] == 1
    assert mq.catalog.customer("x").name == "A"


def test_many_objects_apply_in_bulk(mq: Meterql, tmp_path: Path) -> None:
    customers = [{"name": f"c{i}", "ingest_aliases": [f"a{i}"]} for i in range(2000)]
    doc = write(tmp_path, json.dumps({"customers": customers}), "many.json")
    assert mq.apply([doc]).counts()["created"] == 2000
    customers[7]["ingest_aliases"] = ["renamed"]
    doc.write_text(json.dumps({"customers": customers}))
    assert mq.apply([doc]).counts() == {"created": 0, "updated": 1, "unchanged": 1999}
    assert mq.catalog.customer("renamed").name == "c7"
    assert mq.con.execute("SELECT count(*) FROM customer_keys").fetchone() == (4000,)


SQL_METRIC = """
billable_metrics:
  - name: Unique users
    sql: |
      SELECT count(DISTINCT properties.user_id) AS value, properties.region
      FROM events WHERE event_type = 'api_request' GROUP BY properties.region
products:
  - {name: Users, type: usage, billable_metric_id: Unique users, pricing_group_key: [KEY]}
"""


def test_sql_metric_product_keys_are_its_returned_columns(mq: Meterql, tmp_path: Path) -> None:
    mq.apply([write(tmp_path, SQL_METRIC.replace("KEY", "region"))])
    assert mq.catalog.product("Users").pricing_group_key == ["region"]
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, SQL_METRIC.replace("KEY", "regoin"), "b.yaml")])
    assert "['regoin'] are not columns returned by SQL metric 'Unique users'" in problems_of(
        excinfo
    )


def test_sql_metric_group_keys_must_be_its_returned_columns(mq: Meterql, tmp_path: Path) -> None:
    """A SQL metric groups by the columns its query returns; declared group_keys that are not
    among them would be silently ignored, so apply refuses them."""
    text = SQL_METRIC.replace("KEY", "region")
    bad = text.replace("    sql: |", "    group_keys: [[region, model]]\n    sql: |")
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, bad)])
    assert (
        "field 'group_keys': ['model'] are not group columns returned by its sql (a SQL "
        "metric's group keys are the columns its query returns besides the value: ['region'])"
    ) in problems_of(excinfo)
    assert mq.catalog.metrics() == []
    good = text.replace("    sql: |", "    group_keys: [[region]]\n    sql: |")
    assert mq.apply([write(tmp_path, good, "b.yaml")]).counts()["created"] == 2
    assert mq.apply([write(tmp_path, good, "b.yaml")]).counts()["unchanged"] == 2


def test_a_sql_metric_duckdb_cannot_bind_is_refused_at_apply(mq: Meterql, tmp_path: Path) -> None:
    """Its query's types are wrong (a sum of strings): refused by apply, with the place, not by
    every later invoice run (which computes every metric a product uses, for everyone)."""
    text = """
billable_metrics:
  - name: Tokens
    sql: |
      SELECT sum(properties.tokens) AS value
      FROM events
"""
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text)])
    problems = problems_of(excinfo)
    assert (
        "'Tokens': sql: line 1, col 8: DuckDB cannot evaluate this: Binder Error: No function"
        in problems
    )
    assert "SELECT sum(properties.tokens) AS value\n         ^^^^^^^^^^^^^^^^^^^^^^" in problems
    assert mq.catalog.metrics() == []
    fixed = text.replace(
        "sum(properties.tokens)", "sum(CAST(properties.tokens AS DECIMAL(38, 12)))"
    )
    assert mq.apply([write(tmp_path, fixed, "b.yaml")]).counts()["created"] == 1


def test_sql_metric_problems_are_reported_at_apply(mq: Meterql, tmp_path: Path) -> None:
    text = SQL_METRIC.replace("FROM events", "FROM read_csv('/etc/passwd')")
    with pytest.raises(DocumentError) as excinfo:
        mq.apply([write(tmp_path, text.replace("KEY", "region"))])
    message = problems_of(excinfo)
    assert "'Unique users'" in message and "read_csv" in message and "line 2" in message


def test_the_api_takes_one_path_or_key_as_well_as_a_list(mq: Meterql, tmp_path: Path) -> None:
    # a str is a Sequence: iterated, it was one path (or group key) per character
    doc = write(tmp_path, QUICKSTART)
    assert mq.apply(str(doc)).counts()["created"] == 6
    assert mq.apply(doc).counts()["unchanged"] == 6
    events = tmp_path / "e.ndjson"
    events.write_text(
        json.dumps(
            {
                "transaction_id": "t1",
                "customer_id": "my-internal-customer-id",
                "event_type": "llm_request",
                "timestamp": "2026-03-09T12:00:00Z",
                "properties": {"model": "gpt-5", "input_tokens": "7", "user_id": "u1"},
            }
        )
        + "\n"
    )
    assert mq.ingest(str(events), now="2026-03-10T00:00:00Z").accepted == 1
    table = mq.usage("Input Tokens", "2026-03-01", "2026-04-01", group_by="model")
    assert table.column("group").to_pylist() == [{"model": "gpt-5"}]
    assert "model" in mq.compile("Input Tokens", group_by="model")
