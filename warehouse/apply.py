"""`meterql apply`: catalog documents -> validated, resolved objects -> one transaction.

Every object of every file is validated first and all problems are reported together; only a
fully valid set is written, in one catalog transaction (all or nothing).

Identity: an object's `id` is the one it gives; without one, an existing object of the same kind
and name keeps its id, and a new object gets a UUID derived from its kind and name (for a
contract without a name: its customer, rate card and start), so applying the same document twice
changes nothing.  References (`billable_metric_id`, `product_id`, `rate_card_id`, `customer_id`,
`credit_type_id`) accept an id or a name, of an object in the same documents or in the catalog;
stored documents carry resolved ids.

Refused: a changed billable metric (metrics are immutable: archive it and create a new one), a
new product on an archived metric, an ingest alias claimed by two customers, a product whose
group keys are not within one of its metric's compound keys, two rates for the same product and
pricing group values whose time ranges overlap, references to missing objects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from pydantic import BaseModel

from warehouse.catalog import SINGULAR, TABLES
from warehouse.documents import LoadedObject, load_files
from warehouse.errors import DocumentError, suggest
from warehouse.models import (
    USD_CENTS_ID,
    BillableMetric,
    Contract,
    CreditType,
    Customer,
    Model,
    Product,
    ProductType,
    Rate,
    RateCard,
)

ID_NAMESPACE = uuid.UUID("6f0c6f5e-3d1b-4f59-9a57-6d6574657271")  # meterql object ids
ORDER = ("credit_types", "billable_metrics", "products", "rate_cards", "customers", "contracts")


class AppliedObject(BaseModel):
    kind: str
    id: str
    name: str
    action: str  # created | updated | unchanged


class ApplyResult(BaseModel):
    objects: list[AppliedObject] = []

    def counts(self) -> dict[str, int]:
        out = {"created": 0, "updated": 0, "unchanged": 0}
        for obj in self.objects:
            out[obj.action] += 1
        return out

    def lines(self) -> list[str]:
        lines = [f"{o.action:9} {SINGULAR[o.kind]} {o.name!r} ({o.id})" for o in self.objects]
        c = self.counts()
        lines.append(f"{c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged")
        return lines


@dataclass
class _Pending:
    loaded: LoadedObject
    id: str = ""
    doc: dict[str, Any] = field(default_factory=dict)
    name: str = ""


class _Resolver:
    """Resolves ids and names of every kind, over the documents and the catalog."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        pending: list[_Pending],
        invalid_refs: dict[str, set[str]],
    ):
        self.con = con
        self.pending = pending
        self.invalid_refs = invalid_refs
        self.existing: dict[str, dict[str, dict[str, Any]]] = {}
        for kind in TABLES:
            rows = con.execute(f"SELECT id, doc FROM {kind}").fetchall()  # noqa: S608 - fixed names
            self.existing[kind] = {i: json.loads(d) for i, d in rows}

    def existing_by_name(self, kind: str, name: str) -> str | None:
        for object_id, doc in self.existing[kind].items():
            if doc.get("name") == name:
                return object_id
        return None

    def resolve(self, kind: str, ref: str) -> str | None:
        for p in self.pending:
            if p.loaded.kind == kind and ref in (p.id, p.name):
                return p.id
        if ref in self.existing[kind]:
            return ref
        return self.existing_by_name(kind, ref)

    def names(self, kind: str) -> list[str]:
        names = [p.name for p in self.pending if p.loaded.kind == kind]
        names += [d.get("name", i) for i, d in self.existing[kind].items()]
        return names

    def doc(self, kind: str, object_id: str) -> dict[str, Any] | None:
        for p in self.pending:
            if p.loaded.kind == kind and p.id == object_id:
                return p.doc
        return self.existing[kind].get(object_id)


def _derived_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{kind}/{key}"))


def _dump(model: Model) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def apply_files(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> ApplyResult:
    loaded = load_files(paths)
    objects = sorted(loaded.objects, key=lambda o: ORDER.index(o.kind))
    return apply_objects(con, objects, loaded.problems, loaded.invalid_refs)


def apply_objects(
    con: duckdb.DuckDBPyConnection,
    loaded: list[LoadedObject],
    problems: list[str] | None = None,
    invalid_refs: dict[str, set[str]] | None = None,
) -> ApplyResult:
    """Check and write validated objects; `problems` found while loading are reported with the
    ones found here, and references to `invalid_refs` (objects that failed validation) are not
    reported again as missing."""
    pending = [_Pending(obj) for obj in loaded]
    resolver = _Resolver(con, pending, invalid_refs or {})
    problems = list(problems or [])

    # 1. Ids and names, per kind in dependency order (contracts key on resolved references).
    for kind in ORDER:
        for p in (p for p in pending if p.loaded.kind == kind):
            model = p.loaded.model
            given = getattr(model, "id", None)
            name = getattr(model, "name", None)
            if kind == "contracts" and not name:
                customer = resolver.resolve("customers", model.customer_id) or model.customer_id
                card = resolver.resolve("rate_cards", model.rate_card_id) or model.rate_card_id
                key = f"{customer}/{card}/{model.starting_at.isoformat()}"
                p.id = given or _derived_id(kind, key)
                p.name = p.id
            else:
                assert name is not None
                p.name = name
                p.id = given or resolver.existing_by_name(kind, name) or _derived_id(kind, name)
                holder = resolver.existing_by_name(kind, name)
                if holder is not None and holder != p.id:
                    problems.append(
                        f"{p.loaded.describe()}: name {name!r} is already used by "
                        f"{SINGULAR[kind]} {holder}"
                    )
    _check_duplicates(pending, problems)

    # 2. Resolve references and build the stored documents.
    for p in pending:
        p.doc = _resolve(p, resolver, problems)

    # 3. Rules that look across objects.
    for p in pending:
        check = _CHECKS.get(p.loaded.kind)
        if check:
            check(p, resolver, problems)
    _check_aliases(pending, resolver, problems)
    if problems:
        raise DocumentError(problems)

    # 4. Write everything in one transaction.
    result = ApplyResult()
    con.execute("BEGIN TRANSACTION")
    try:
        for p in pending:
            action = _write(con, p, resolver)
            result.objects.append(
                AppliedObject(kind=p.loaded.kind, id=p.id, name=p.name, action=action)
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return result


def _check_duplicates(pending: list[_Pending], problems: list[str]) -> None:
    seen: dict[tuple[str, str], _Pending] = {}
    for p in pending:
        for key in {(p.loaded.kind, "id:" + p.id), (p.loaded.kind, "name:" + p.name)}:
            first = seen.get(key)
            if first is None:
                seen[key] = p
            elif first.loaded.model != p.loaded.model:
                what = key[1].split(":", 1)
                problems.append(
                    f"{p.loaded.describe()}: {what[0]} {what[1]!r} is also used by "
                    f"{first.loaded.describe()} with a different definition"
                )


def _ref(
    p: _Pending,
    resolver: _Resolver,
    problems: list[str],
    kind: str,
    field_name: str,
    ref: str,
) -> str:
    resolved = resolver.resolve(kind, ref)
    if resolved is None and ref in resolver.invalid_refs.get(kind, ()):
        return ref  # the referenced object is invalid and already reported
    if resolved is None:
        problems.append(
            f"{p.loaded.describe()}: field {field_name!r}: no {SINGULAR[kind]} with id or name "
            f"{ref!r}{suggest(ref, resolver.names(kind))}"
        )
        return ref
    return resolved


def _resolve(p: _Pending, resolver: _Resolver, problems: list[str]) -> dict[str, Any]:
    model = p.loaded.model
    doc = _dump(model)
    doc["id"] = p.id
    if isinstance(model, Product) and model.billable_metric_id:
        doc["billable_metric_id"] = _ref(
            p,
            resolver,
            problems,
            "billable_metrics",
            "billable_metric_id",
            model.billable_metric_id,
        )
        doc["composite_product_ids"] = [
            _ref(p, resolver, problems, "products", "composite_product_ids", ref)
            for ref in model.composite_product_ids
        ]
    elif isinstance(model, RateCard):
        if model.fiat_credit_type_id:
            doc["fiat_credit_type_id"] = _ref(
                p,
                resolver,
                problems,
                "credit_types",
                "fiat_credit_type_id",
                model.fiat_credit_type_id,
            )
        for i, (rate, rate_doc) in enumerate(zip(model.rates, doc["rates"], strict=True)):
            rate_doc["product_id"] = _ref(
                p, resolver, problems, "products", f"rates[{i}].product_id", rate.product_id
            )
            credit = rate.credit_type_id or model.fiat_credit_type_id or USD_CENTS_ID
            rate_doc["credit_type_id"] = _ref(
                p, resolver, problems, "credit_types", f"rates[{i}].credit_type_id", credit
            )
    elif isinstance(model, Contract):
        doc["customer_id"] = _ref(
            p, resolver, problems, "customers", "customer_id", model.customer_id
        )
        doc["rate_card_id"] = _ref(
            p, resolver, problems, "rate_cards", "rate_card_id", model.rate_card_id
        )
    return doc


# -- cross-object rules -----------------------------------------------------------------------


def _check_metric(p: _Pending, resolver: _Resolver, problems: list[str]) -> None:
    from metric_compiler.checks import check_metric

    metric: BillableMetric = p.loaded.model  # type: ignore[assignment]
    for problem in check_metric(metric):
        problems.append(f"{p.loaded.describe()}: {problem}")
    before = resolver.existing["billable_metrics"].get(p.id)
    if before is not None:
        old = BillableMetric.model_validate(before)
        if old.definition_key() != metric.definition_key():
            changed = sorted(
                k
                for k in set(old.definition_key()) | set(metric.definition_key())
                if old.definition_key().get(k) != metric.definition_key().get(k)
            )
            problems.append(
                f"{p.loaded.describe()}: billable metrics are immutable; this document changes "
                f"{', '.join(changed)} of the existing metric {p.id}. Archive it "
                f"(archived: true) and create a new metric under another name"
            )


def _check_product(p: _Pending, resolver: _Resolver, problems: list[str]) -> None:
    product: Product = p.loaded.model  # type: ignore[assignment]
    if product.type is not ProductType.USAGE:
        return
    metric_doc = resolver.doc("billable_metrics", p.doc["billable_metric_id"])
    if metric_doc is None:
        return  # reported as a missing reference
    metric = BillableMetric.model_validate(metric_doc)
    is_new = p.id not in resolver.existing["products"]
    if metric.archived and is_new:
        problems.append(
            f"{p.loaded.describe()}: field 'billable_metric_id': billable metric {metric.name!r} "
            "is archived; new products cannot use it"
        )
    keys = [*product.pricing_group_key, *product.presentation_group_key]
    if keys and metric.sql is None:
        if not any(set(keys) <= set(compound) for compound in metric.group_keys):
            declared = ", ".join(str(k) for k in metric.group_keys) or "none"
            problems.append(
                f"{p.loaded.describe()}: pricing_group_key + presentation_group_key {keys} must "
                f"be within one compound group key of billable metric {metric.name!r} "
                f"(its group_keys: {declared})"
            )


def _check_rate_card(p: _Pending, resolver: _Resolver, problems: list[str]) -> None:
    card: RateCard = p.loaded.model  # type: ignore[assignment]
    rates: list[tuple[int, Rate, dict[str, Any]]] = list(
        zip(range(len(card.rates)), card.rates, p.doc["rates"], strict=True)
    )
    for i, rate, rate_doc in rates:
        product_doc = resolver.doc("products", rate_doc["product_id"])
        if product_doc is None:
            continue
        product = Product.model_validate(product_doc)
        keys = set(rate.pricing_group_values)
        if keys and keys != set(product.pricing_group_key):
            problems.append(
                f"{p.loaded.describe()}: rates[{i}].pricing_group_values has keys "
                f"{sorted(keys)} but product {product.name!r} prices by "
                f"{product.pricing_group_key or 'no keys'}"
            )
    for a in range(len(rates)):
        for b in range(a + 1, len(rates)):
            (i, ra, da), (j, rb, db) = rates[a], rates[b]
            if da["product_id"] != db["product_id"]:
                continue
            if ra.pricing_group_values != rb.pricing_group_values:
                continue
            if _overlap(ra.starting_at, ra.ending_before, rb.starting_at, rb.ending_before):
                problems.append(
                    f"{p.loaded.describe()}: rates[{i}] and rates[{j}] both price product "
                    f"{rb.product_id!r} with pricing_group_values {dict(ra.pricing_group_values)} "
                    f"over overlapping time ranges ({_span(ra)} and {_span(rb)})"
                )


def _span(rate: Rate) -> str:
    end = rate.ending_before.isoformat() if rate.ending_before else "open end"
    return f"{rate.starting_at.isoformat()} to {end}"


def _overlap(a0: datetime, a1: datetime | None, b0: datetime, b1: datetime | None) -> bool:
    return (a1 is None or b0 < a1) and (b1 is None or a0 < b1)


_CHECKS = {
    "billable_metrics": _check_metric,
    "products": _check_product,
    "rate_cards": _check_rate_card,
}


def _check_aliases(pending: list[_Pending], resolver: _Resolver, problems: list[str]) -> None:
    """Every ingest alias and customer id maps to exactly one customer."""
    final: dict[str, dict[str, Any]] = dict(resolver.existing["customers"])
    where: dict[str, str] = {}
    for p in pending:
        if p.loaded.kind == "customers":
            final[p.id] = p.doc
            where[p.id] = p.loaded.describe()
    claimed: dict[str, str] = {}
    for customer_id, doc in final.items():
        for key in [customer_id, *doc.get("ingest_aliases", [])]:
            other = claimed.get(key)
            if other is not None and other != customer_id:
                first, second = (final[other], doc)
                problems.append(
                    f"{where.get(customer_id) or where.get(other, 'catalog')}: ingest alias "
                    f"{key!r} is claimed by customer {first.get('name')!r} ({other}) and by "
                    f"customer {second.get('name')!r} ({customer_id}); aliases must be unique"
                )
            claimed[key] = customer_id


# -- writing ------------------------------------------------------------------------------------


def _write(con: duckdb.DuckDBPyConnection, p: _Pending, resolver: _Resolver) -> str:
    kind = p.loaded.kind
    before = resolver.existing[kind].get(p.id)
    if before == p.doc:
        return "unchanged"
    text = json.dumps(p.doc, sort_keys=True)
    columns: dict[str, Any] = {"id": p.id, "name": p.name}
    model = p.loaded.model
    if isinstance(model, BillableMetric):
        columns["archived"] = model.archived
    elif isinstance(model, Product):
        columns["billable_metric_id"] = p.doc.get("billable_metric_id")
    elif isinstance(model, CreditType):
        columns["precision"] = model.precision
    elif isinstance(model, Contract):
        columns["customer_id"] = p.doc["customer_id"]
        columns["rate_card_id"] = p.doc["rate_card_id"]
    columns["doc"] = text
    names = list(columns)
    if before is None:
        placeholders = ", ".join("?" for _ in names)
        con.execute(
            f"INSERT INTO {kind} ({', '.join(names)}, created_at, updated_at) "  # noqa: S608
            f"VALUES ({placeholders}, now()::TIMESTAMP, now()::TIMESTAMP)",
            list(columns.values()),
        )
        action = "created"
    else:
        sets = ", ".join(f"{n} = ?" for n in names if n != "id")
        con.execute(
            f"UPDATE {kind} SET {sets}, updated_at = now()::TIMESTAMP WHERE id = ?",  # noqa: S608
            [v for n, v in columns.items() if n != "id"] + [p.id],
        )
        action = "updated"
    if isinstance(model, Customer):
        _write_customer_keys(con, p.id, model.ingest_aliases)
    return action


def _write_customer_keys(
    con: duckdb.DuckDBPyConnection, customer_id: str, aliases: Iterable[str]
) -> None:
    con.execute("DELETE FROM customer_keys WHERE customer_id = ?", [customer_id])
    keys = list(dict.fromkeys([customer_id, *aliases]))
    con.executemany("INSERT INTO customer_keys VALUES (?, ?)", [[k, customer_id] for k in keys])
