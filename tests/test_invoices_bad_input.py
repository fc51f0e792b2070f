"""Bad input around rating and invoices: each refused or reported with a message that names the
object, the field and the value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_invoices import catalog, tokens
from test_invoices_support import apply_docs, commit_events
from typer.testing import CliRunner

from engine.api import Meterql
from engine.cli import app
from warehouse.errors import DocumentError, NotFoundError, UserError


@pytest.fixture
def mq(tmp_path: Path):
    m = Meterql.init(tmp_path / "home")
    yield m
    m.close()


def refused(mq: Meterql, tmp_path: Path, doc: dict) -> str:
    with pytest.raises(DocumentError) as err:
        apply_docs(mq, tmp_path, doc)
    return str(err.value)


def card_with(*rates: dict) -> dict:
    doc = catalog()
    doc["rate_cards"][0]["rates"] = list(rates)
    return doc


def rate(**fields) -> dict:
    base = {
        "product_id": "Input Tokens",
        "starting_at": "2026-01-01T00:00:00Z",
        "rate_type": "flat",
        "price": "1",
        "pricing_group_values": {"model": "gpt-5"},
    }
    base.update(fields)
    return base


# -- refused when applied -----------------------------------------------------------------------


def test_two_rates_for_the_same_product_and_values_with_overlapping_times(mq, tmp_path):
    message = refused(
        mq,
        tmp_path,
        card_with(
            rate(ending_before="2026-04-01T00:00:00Z"),
            rate(starting_at="2026-03-15T00:00:00Z", price="2"),
        ),
    )
    assert "rates[0] and rates[1]" in message
    assert "Input Tokens" in message and "gpt-5" in message and "overlapping" in message


def test_a_rate_without_the_pricing_values_its_product_prices_by(mq, tmp_path):
    """Such a rate could price no usage: it was accepted, skipped by rating, and the product's
    usage reported as not on the rate card."""
    message = refused(mq, tmp_path, card_with(rate(pricing_group_values={})))
    assert "rates[0].pricing_group_values has keys none" in message
    assert "product 'Input Tokens' prices by ['model']" in message


def test_a_group_key_listed_twice(mq, tmp_path):
    doc = catalog()
    doc["products"][0]["pricing_group_key"] = ["model", "model"]
    message = refused(mq, tmp_path, doc)
    assert "pricing_group_key lists ['model'] more than once" in message


@pytest.mark.parametrize("size", ["0", "-5"])
def test_a_tier_with_zero_or_negative_size(mq, tmp_path, size):
    tiered = rate(
        rate_type="tiered", price=None, tiers=[{"size": size, "price": "1"}, {"price": "0.5"}]
    )
    tiered.pop("price")
    message = refused(mq, tmp_path, card_with(tiered))
    assert "rate_cards[0] 'Standard'" in message
    assert f"field 'rates[0].tiers[0].size': Input should be greater than 0 (got '{size}')" in (
        message
    )


def test_an_unbounded_tier_followed_by_more_tiers(mq, tmp_path):
    tiered = rate(rate_type="tiered", tiers=[{"price": "1"}, {"size": "10", "price": "0.5"}])
    tiered.pop("price")
    message = refused(mq, tmp_path, card_with(tiered))
    assert "tiers[0] has no size but is not the last tier" in message
    assert "Standard" in message or "rate_cards[0]" in message


def test_a_contract_that_ends_before_it_starts(mq, tmp_path):
    doc = catalog()
    doc["contracts"][0]["ending_before"] = "2026-02-01T00:00:00Z"
    message = refused(mq, tmp_path, doc)
    assert "contracts[0] 'acme-monthly'" in message
    assert "ending_before 2026-02-01T00:00:00+00:00 is not after starting_at" in message
    assert "the contract would end before it starts" in message


def test_a_contract_referencing_a_missing_rate_card(mq, tmp_path):
    doc = catalog()
    doc["contracts"][0]["rate_card_id"] = "Standrad"
    message = refused(mq, tmp_path, doc)
    assert "rate_card_id" in message and "'Standrad'" in message
    assert "did you mean 'Standard'" in message


# -- reported by the run ------------------------------------------------------------------------


def test_as_of_before_every_contract_start_makes_no_invoices_and_says_so(mq, tmp_path):
    apply_docs(mq, tmp_path, catalog())
    home = mq.home.path
    mq.close()
    result = CliRunner().invoke(
        app, ["--home", str(home), "invoice", "run", "--as-of", "2026-02-01T00:00:00Z"]
    )
    assert result.exit_code == 0
    assert "0 created" in result.output
    assert "no contract has started by 2026-02-01T00:00:00Z; no invoices" in result.output


def test_a_catalog_without_contracts_makes_no_invoices_and_says_so(mq):
    summary = mq.invoice_run("2026-02-01T00:00:00Z")
    assert summary.invoices.created == 0
    assert summary.notes == ["the catalog has no contracts; no invoices"]


def test_a_contract_whose_rate_card_is_gone_is_noted_and_the_others_are_invoiced(mq, tmp_path):
    doc = catalog()
    doc["rate_cards"].append({"name": "Other", "rates": []})
    doc["contracts"][1]["rate_card_id"] = "Other"
    apply_docs(mq, tmp_path, doc)
    # apply refuses a contract on a missing rate card; a catalog edited by hand can have one
    [(beta, other)] = mq.con.execute(
        "SELECT id, rate_card_id FROM contracts WHERE name = 'beta-monthly'"
    ).fetchall()
    mq.con.execute("DELETE FROM rate_cards WHERE id = ?", [other])
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    assert summary.notes == [f"contract {beta}: rate card {other!r} is missing; no invoices"]
    [(acme,)] = mq.con.execute("SELECT id FROM contracts WHERE name = 'acme-monthly'").fetchall()
    assert summary.invoices.created == 1
    assert [i.contract_id for i in mq.invoices()] == [acme]


def test_regenerate_of_an_invoice_whose_contract_is_gone_names_it(mq, tmp_path):
    apply_docs(mq, tmp_path, catalog())
    mq.invoice_run("2026-04-05T00:00:00Z")
    march = next(i for i in mq.invoices(customer="Acme") if i.status == "finalized")
    mq.con.execute("DELETE FROM contracts WHERE id = ?", [march.contract_id])
    with pytest.raises(UserError) as err:
        mq.regenerate_invoice(march.id)
    assert str(err.value) == (
        f"invoice {march.id}: its contract {march.contract_id!r} no longer exists"
    )


def test_usage_of_a_product_with_no_rate_on_the_contracts_card_is_reported(mq, tmp_path):
    doc = catalog()
    # the card prices API Calls only from April: March's calls have no rate in effect,
    # and Input Tokens is not on the card at all
    doc["rate_cards"][0]["rates"] = [
        {
            "product_id": "API Calls",
            "starting_at": "2026-04-01T00:00:00Z",
            "rate_type": "flat",
            "price": "2",
        }
    ]
    apply_docs(mq, tmp_path, doc)
    from test_invoices_support import event

    commit_events(
        mq,
        [
            event("c1", "acme", "2026-03-10T00:00:00Z", "api_call"),
            tokens("t1", "acme", "2026-03-10T00:00:00Z", "gpt-5", "42"),
        ],
    )
    summary = mq.invoice_run("2026-03-15T00:00:00Z")
    got = sorted((u.product_name, u.reason, str(u.quantity)) for u in summary.unrated_usage)
    assert got == [
        ("API Calls", "no_rate_in_effect", "1"),
        ("Input Tokens", "not_on_rate_card", "42"),
    ]
    text = "\n".join(summary.lines())
    assert "UNRATED USAGE (2)" in text and "'Input Tokens'" in text and "not_on_rate_card" in text
    acme = mq.catalog.customer("acme").id
    assert all(u.customer_id == acme for u in summary.unrated_usage)


def test_voiding_a_draft_is_a_user_error_naming_it(mq, tmp_path):
    apply_docs(mq, tmp_path, catalog())
    mq.invoice_run("2026-03-15T00:00:00Z")
    draft = mq.invoices(customer="Acme")[0]
    home = mq.home.path
    mq.close()
    result = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()"]
        + ["--home", str(home), "invoice", "void", draft.id],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1  # one line
    assert f"invoice {draft.id} is a draft; only finalized invoices can be voided" in (
        result.stderr
    )
    assert Meterql.open(home).invoice(draft.id).status == "draft"


def test_an_unknown_invoice_id_suggests_a_close_one(mq, tmp_path):
    apply_docs(mq, tmp_path, catalog())
    mq.invoice_run("2026-03-15T00:00:00Z")
    real = mq.invoices(customer="Acme")[0].id
    typo = real[:-1] + ("0" if real[-1] != "0" else "1")
    with pytest.raises(NotFoundError) as err:
        mq.invoice(typo)
    assert f"no invoice with id {typo!r}" in str(err.value) and real in str(err.value)
    assert mq.invoice(real[:8]).id == real  # a unique prefix is accepted
    # in any letter case (UUIDs are often printed in upper case)
    assert mq.invoice(real.upper()).id == real and mq.invoice(real[:8].upper()).id == real


def test_an_ambiguous_invoice_id_prefix_names_the_ids_it_starts(mq, tmp_path):
    apply_docs(mq, tmp_path, catalog())
    mq.invoice_run("2026-03-15T00:00:00Z")
    ids = sorted(i.id for i in mq.invoices())
    # the invoices' stored ids are uuid5s: make two share a prefix
    shared = ids[0][:6]
    mq.con.execute("UPDATE invoices SET id = ? || substr(id, 7) WHERE id = ?", [shared, ids[1]])
    with pytest.raises(NotFoundError) as err:
        mq.invoice(shared)
    message = str(err.value)
    assert f"invoice id prefix {shared!r} is ambiguous" in message
    assert ids[0] in message and "give more characters" in message
    assert mq.invoice(ids[0]).id == ids[0]  # a whole id is never ambiguous


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda m: m.invoice_run("March 5th"), "--as-of 'March 5th' is not an ISO 8601"),
        (
            lambda m: m.invoice_run("0001-01-01T00:00:00+01:00"),
            "--as-of '0001-01-01T00:00:00+01:00' is outside the years 1 to 9999 in UTC",
        ),
        # in range, but its grace period or its periods are not (they crashed the run)
        (
            lambda m: m.invoice_run("0001-01-01T12:00:00Z"),
            "--as-of '0001-01-01T12:00:00Z' is out of range: give one from "
            "0001-01-02T00:00:00Z to before 9999-01-01T00:00:00Z",
        ),
        (
            lambda m: m.invoice_run("9999-12-31T23:59:59Z"),
            "--as-of '9999-12-31T23:59:59Z' is out of range: give one from "
            "0001-01-02T00:00:00Z to before 9999-01-01T00:00:00Z",
        ),
        (
            lambda m: m.usage("API Calls", "2026-01-01", "9999-12-31T23:00:00-05:00"),
            "--end '9999-12-31T23:00:00-05:00' is outside the years 1 to 9999 in UTC",
        ),
        (lambda m: m.invoices(status="paid"), "--status 'paid' is not an invoice status"),
        (lambda m: m.invoices(customer="Nobody"), "no customer with id or name 'Nobody'"),
    ],
)
def test_bad_arguments(mq, tmp_path, call, needle):
    apply_docs(mq, tmp_path, catalog())
    with pytest.raises(UserError) as err:
        call(mq)
    assert needle in str(err.value)


def test_status_filter_accepts_any_letter_case(mq, tmp_path):
    # enum values are accepted in any letter case (SEMANTICS.md); Metronome spells statuses
    # DRAFT, FINALIZED, VOID
    apply_docs(mq, tmp_path, catalog())
    mq.invoice_run("2026-04-05T00:00:00Z")
    finalized = [i.id for i in mq.invoices(status="finalized")]
    assert finalized
    assert [i.id for i in mq.invoices(status="FINALIZED")] == finalized
    assert [i.id for i in mq.invoices(status="Finalized")] == finalized
    drafts = [i.id for i in mq.invoices(status="draft")]
    assert drafts and [i.id for i in mq.invoices(status="DRAFT")] == drafts


@pytest.mark.parametrize("price", ["100000000000000000000", "-1e20", "1e400"])
def test_a_price_too_large_to_store_is_refused_by_apply(mq, tmp_path, price):
    doc = catalog()
    doc["rate_cards"][0]["rates"][0]["price"] = price
    with pytest.raises(DocumentError) as err:
        apply_docs(mq, tmp_path, doc)
    message = str(err.value)
    assert "field 'rates[0].price'" in message and "must be below 10^20" in message
    assert mq.catalog.all("rate_cards") == []  # nothing applied


@pytest.mark.parametrize(
    ("where", "value", "needle"),
    [
        ("price", "0.0000000000000000001", "field 'rates[0].price'"),
        ("tier_size", "1.0000000000000000001", "field 'rates[0].tiers[0].size'"),
        ("tier_price", "1e-19", "field 'rates[0].tiers[0].price'"),
    ],
)
def test_a_price_with_too_many_decimal_places_is_refused_by_apply(
    mq, tmp_path, where, value, needle
):
    """Refused when applied, not by the nightly run (which would fail for every customer)."""
    doc = catalog()
    rate = doc["rate_cards"][0]["rates"][0]
    if where == "price":
        rate["price"] = value
    else:
        del rate["price"]
        rate["rate_type"] = "tiered"
        rate["tiers"] = [{"size": "100", "price": "1"}, {"price": "0.5"}]
        rate["tiers"][0]["size" if where == "tier_size" else "price"] = value
    with pytest.raises(DocumentError) as err:
        apply_docs(mq, tmp_path, doc)
    message = str(err.value)
    assert needle in message
    assert "decimal places; a price or tier size may have at most 18" in message
    assert mq.catalog.all("rate_cards") == []  # nothing applied


def test_a_bounded_last_tier_is_refused_by_apply(mq, tmp_path):
    """Usage beyond a last tier with a size would be priced by no tier: billed by nothing and
    reported nowhere; apply refuses it."""
    doc = catalog()
    rate = doc["rate_cards"][0]["rates"][0]
    del rate["price"]
    rate["rate_type"] = "tiered"
    rate["tiers"] = [{"size": "10", "price": "1"}, {"size": "5", "price": "2"}]
    with pytest.raises(DocumentError) as err:
        apply_docs(mq, tmp_path, doc)
    assert (
        "field 'rates[0]': tiers[1] is the last tier and has a size (5): usage beyond it would "
        "be priced by no tier; remove its size (the last tier is unbounded)"
    ) in str(err.value)
    assert mq.catalog.all("rate_cards") == []


@pytest.mark.parametrize(
    ("conversion", "needle"),
    [
        (
            {"conversion_factor": "1e-25", "operation": "multiply"},
            "quantity_conversion.conversion_factor 1E-25 has too many decimal places",
        ),
        (
            {"conversion_factor": "0.0000001", "operation": "multiply"},
            "gives quantities with up to 19 decimal places; meterql keeps at most 18: add "
            "quantity_rounding",
        ),
    ],
)
def test_a_product_whose_quantities_cannot_be_stored_is_refused_by_apply(
    mq, tmp_path, conversion, needle
):
    doc = catalog()
    doc["products"][1]["quantity_conversion"] = conversion
    with pytest.raises(DocumentError) as err:
        apply_docs(mq, tmp_path, doc)
    assert "product" in str(err.value) and needle in str(err.value)
    assert mq.catalog.all("products") == []
    # with rounding, the same conversion is fine
    doc["products"][1]["quantity_rounding"] = {"decimal_places": 6, "rounding_method": "round_up"}
    if conversion["conversion_factor"] == "0.0000001":
        apply_docs(mq, tmp_path, doc)
        assert len(mq.catalog.all("products")) == 2


def test_an_amount_overflowing_decimal_38_is_a_user_error_and_writes_nothing(mq, tmp_path):
    doc = catalog()
    doc["rate_cards"][0]["rates"][0]["price"] = "1e19"  # storable, but x 10^18 tokens is not
    apply_docs(mq, tmp_path, doc)
    commit_events(mq, [tokens("a1", "acme", "2026-03-09T12:00:00Z", "gpt-5", "999999999999999999")])
    with pytest.raises(UserError) as err:
        mq.invoice_run("2026-03-15T00:00:00Z")
    assert "an amount does not fit DuckDB's DECIMAL(38)" in str(err.value)
    assert mq.invoices() == []
    [(runs,)] = mq.con.execute("SELECT count(*) FROM invoice_runs").fetchall()
    assert runs == 0


def test_a_stored_document_that_no_longer_passes_the_checks_is_named(mq, tmp_path):
    """A document applied by an earlier release that checked less (edited here in the table):
    commands that read it say which one and how to fix it; applying a corrected one does."""
    apply_docs(mq, tmp_path, catalog())
    [(doc,)] = mq.con.execute("SELECT doc FROM rate_cards").fetchall()
    stale = json.loads(doc)
    stale["rates"][0]["price"] = "0.0000000000000000000001"
    mq.con.execute("UPDATE rate_cards SET doc = ?", [json.dumps(stale)])
    with pytest.raises(UserError) as err:
        mq.invoice_run("2026-03-15T00:00:00Z")
    assert str(err.value).startswith(
        f"the catalog's rate card 'Standard' (id {stale['id']}) does not pass this meterql's "
        "checks: field 'rates[0].price': 1E-22 has 22 decimal places"
    )
    assert "apply a corrected document for it" in str(err.value)
    del err  # its traceback holds the run's frames (and DuckDB objects) until exit
    apply_docs(mq, tmp_path, catalog())
    assert mq.invoice_run("2026-03-15T00:00:00Z").invoices.created
