"""`meterql apply`: catalog documents -> validated, resolved objects -> one transaction.

Every object of every file is validated first and all problems are reported together; only a
fully valid set is written, in one catalog transaction (all or nothing).

Identity: an object's `id` is the one it gives; without one, an existing object of the same kind
and name keeps its id, and a new object gets a UUID derived from its kind and name (for a
contract without a name: its customer, rate card and start), so applying the same document twice
changes nothing.  References (`billable_metric_id`, `product_id`, `composite_product_ids`,
`rate_card_id`, `customer_id`, `credit_type_id`) accept an id or a name, of an object in the same
documents or in the catalog; stored documents carry resolved ids.

Refused: a changed billable metric (metrics are immutable: archive it and create a new one), a
new product on an archived metric (or an existing product switching to one), an ingest alias
claimed by two customers, a product whose group keys are not within one of its metric's compound
keys, two rates for the same product and pricing group values whose time ranges overlap,
references to missing objects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import BaseModel

from warehouse.catalog import SINGULAR, TABLES, Catalog
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
    ingest_keys,
)
from warehouse.sqlrows import rollback

ID_NAMESPACE = uuid.UUID("6f0c6f5e-3d1b-4f59-9a57-6d6574657271")  # meterql object ids
ORDER = ("credit_types", "billable_metrics", "products", "rate_cards", "customers", "contracts")


class AppliedObject(BaseModel):
    kind: str
    id: str
    name: str
    action: str  # created | updated | unchanged


class ApplyResult(BaseModel):
    objects: list[AppliedObject] = []
    notes: list[str] = []

    def counts(self) -> dict[str, int]:
        out = {"created": 0, "updated": 0, "unchanged": 0}
        for obj in self.objects:
            out[obj.action] += 1
        return out

    def lines(self) -> list[str]:
        lines = [f"{o.action:9} {SINGULAR[o.kind]} {o.name!r} ({o.id})" for o in self.objects]
        c = self.counts()
        lines.append(f"{c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged")
        lines.extend(f"note: {n}" for n in self.notes)
        return lines


@dataclass
class _Pending:
    loaded: LoadedObject
    id: str = ""
    doc: dict[str, Any] = field(default_factory=dict)
    name: str = ""


class _Resolver:
    """Resolves ids and names of every kind, over the documents and the catalog (indexed, so
    applying many objects stays linear)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        invalid_refs: dict[str, set[str]],
    ):
        self.invalid_refs = invalid_refs
        self.sql_check: SqlCheck | None = None
        self.existing: dict[str, dict[str, dict[str, Any]]] = {}
        self._existing_names: dict[str, dict[str, str]] = {}
        self._pending: dict[str, dict[str, _Pending]] = {kind: {} for kind in TABLES}
        self._pending_names: dict[str, list[str]] = {kind: [] for kind in TABLES}
        for kind in TABLES:
            rows = con.execute(f"SELECT id, doc FROM {kind}").fetchall()  # noqa: S608 - fixed names
            self.existing[kind] = {i: json.loads(d) for i, d in rows}
            self._existing_names[kind] = {
                doc["name"]: i for i, doc in self.existing[kind].items() if "name" in doc
            }

    def register(self, p: _Pending) -> None:
        """Make a document object (its id and name assigned) resolvable."""
        index = self._pending[p.loaded.kind]
        index.setdefault(p.id, p)
        index.setdefault(p.name, p)
        self._pending_names[p.loaded.kind].append(p.name)

    def existing_by_name(self, kind: str, name: str) -> str | None:
        return self._existing_names[kind].get(name)

    def resolve(self, kind: str, ref: str) -> str | None:
        found = self._pending[kind].get(ref)
        if found is not None:
            return found.id
        if ref in self.existing[kind]:
            return ref
        return self.existing_by_name(kind, ref)

    def names(self, kind: str) -> list[str]:
        return self._pending_names[kind] + list(self._existing_names[kind])

    def doc(self, kind: str, object_id: str) -> dict[str, Any] | None:
        found = self._pending[kind].get(object_id)
        if found is not None and found.id == object_id:
            return found.doc
        return self.existing[kind].get(object_id)


def _derived_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{kind}/{key}"))


def _dump(model: Model) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


# A SQL metric's problems that only DuckDB finds (binding its query: types), one string each;
# given by the engine (engine.sql_check), which owns the sandbox the query is bound in.
SqlCheck = Callable[[str], list[str]]


def apply_files(
    con: duckdb.DuckDBPyConnection, paths: list[Path], *, sql_check: SqlCheck | None = None
) -> ApplyResult:
    loaded = load_files(paths)
    objects = sorted(loaded.objects, key=lambda o: ORDER.index(o.kind))
    return apply_objects(con, objects, loaded.problems, loaded.invalid_refs, sql_check=sql_check)


def apply_objects(
    con: duckdb.DuckDBPyConnection,
    loaded: list[LoadedObject],
    problems: list[str] | None = None,
    invalid_refs: dict[str, set[str]] | None = None,
    *,
    sql_check: SqlCheck | None = None,
) -> ApplyResult:
    """Check and write validated objects; `problems` found while loading are reported with the
    ones found here, and references to `invalid_refs` (objects that failed validation) are not
    reported again as missing.  `sql_check`: DuckDB's problems of a new SQL metric's query."""
    pending = [_Pending(obj) for obj in loaded]
    resolver = _Resolver(con, invalid_refs or {})
    resolver.sql_check = sql_check
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
            resolver.register(p)
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
    changes: dict[str, tuple[list[_Pending], list[_Pending]]] = {k: ([], []) for k in ORDER}
    seen: set[tuple[str, str]] = set()
    for p in pending:
        if (p.loaded.kind, p.id) in seen:
            continue  # the same object twice in the documents (identical: checked above)
        seen.add((p.loaded.kind, p.id))
        before = resolver.existing[p.loaded.kind].get(p.id)
        action = "unchanged" if before == p.doc else "created" if before is None else "updated"
        if action != "unchanged":
            changes[p.loaded.kind][action == "updated"].append(p)
        result.objects.append(
            AppliedObject(kind=p.loaded.kind, id=p.id, name=p.name, action=action)
        )
    con.execute("BEGIN TRANSACTION")
    try:
        for kind, (created, updated) in changes.items():
            _write(con, kind, created, updated)
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    if changes["billable_metrics"] != ([], []) or changes["products"] != ([], []):
        result.notes.extend(_metered_in_maps_note(con))
    return result


def _metered_in_maps_note(con: duckdb.DuckDBPyConnection) -> list[str]:
    """A note when stored files hold properties that metrics or products read in their
    rare-key maps (written before those metrics existed: read correctly, but slower)."""
    dates = Catalog(con).metered_in_maps()
    if not dates:
        return []
    keys = sorted({k for ks in dates.values() for k in ks})
    shown = ", ".join(repr(k) for k in keys[:5])
    if keys[5:]:
        shown += f" and {len(keys) - 5} more"
    return [
        f"{len(dates)} event date(s) ({min(dates)}..{max(dates)}) hold properties that metrics or "
        f"products read ({shown}) in rare-key maps, written before those metrics: read "
        "correctly but slower; `meterql warehouse compact` rewrites them with a column each"
    ]


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
    if isinstance(model, Product):
        if model.billable_metric_id:
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
    static = check_metric(metric)
    for problem in static:
        problems.append(f"{p.loaded.describe()}: {problem}")
    before = resolver.existing["billable_metrics"].get(p.id)
    # (new metrics only: earlier releases did not check these, and a stored metric is immutable)
    if before is None and metric.sql is not None and not static:
        if resolver.sql_check is not None:
            for problem in resolver.sql_check(metric.sql):
                problems.append(f"{p.loaded.describe()}: sql: {problem}")
        if metric.group_keys:
            _check_sql_group_keys(p, metric, problems)
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


def _check_sql_group_keys(p: _Pending, metric: BillableMetric, problems: list[str]) -> None:
    """A SQL metric's group keys are the columns its query returns besides the value; declared
    `group_keys` must be among them (they change nothing: usage and products group by the
    returned columns)."""
    from metric_compiler.sql_metric import SqlMetricError, sql_metric_columns

    try:
        _, returned = sql_metric_columns(metric.sql or "")
    except SqlMetricError:
        return  # the metric's own problems are reported with its sql
    unknown = sorted({k for compound in metric.group_keys for k in compound} - set(returned))
    if unknown:
        problems.append(
            f"{p.loaded.describe()}: field 'group_keys': {unknown} are not group columns "
            f"returned by its sql (a SQL metric's group keys are the columns its query returns "
            f"besides the value: {list(returned) or 'none'}); return them or remove group_keys"
        )


def _check_product(p: _Pending, resolver: _Resolver, problems: list[str]) -> None:
    product: Product = p.loaded.model  # type: ignore[assignment]
    if product.type is not ProductType.USAGE:
        return
    metric_doc = resolver.doc("billable_metrics", p.doc["billable_metric_id"])
    if metric_doc is None:
        return  # reported as a missing reference
    metric = BillableMetric.model_validate(metric_doc)
    # a product that used the metric before it was archived keeps working; a new product, or
    # an existing one switching to this metric, is a new use
    before = resolver.existing["products"].get(p.id)
    uses_already = before is not None and before.get("billable_metric_id") == metric.id
    if metric.archived and not uses_already:
        problems.append(
            f"{p.loaded.describe()}: field 'billable_metric_id': billable metric {metric.name!r} "
            "is archived; new products cannot use it"
        )
    keys = [*product.pricing_group_key, *product.presentation_group_key]
    if keys and metric.sql is not None:
        from metric_compiler.sql_metric import SqlMetricError, sql_metric_columns

        try:
            _, returned = sql_metric_columns(metric.sql)
        except SqlMetricError:
            return  # the metric's own problems are reported with the metric
        missing = [k for k in keys if k not in returned]
        if missing:
            problems.append(
                f"{p.loaded.describe()}: group key(s) {missing} are not columns returned by SQL "
                f"metric {metric.name!r} (its group columns: {list(returned) or 'none'})"
            )
    elif keys:
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
        if keys != set(product.pricing_group_key):  # such a rate could price no usage
            problems.append(
                f"{p.loaded.describe()}: rates[{i}].pricing_group_values has keys "
                f"{sorted(keys) or 'none'} but product {product.name!r} prices by "
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
        keys = ingest_keys(doc.get("ingest_aliases", []), doc.get("external_id"))
        for key in dict.fromkeys([customer_id, *keys]):
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


def _row(p: _Pending) -> dict[str, Any]:
    """The table row of an object: id, name, the join columns of its kind, and its document."""
    row: dict[str, Any] = {"id": p.id, "name": p.name}
    model = p.loaded.model
    if isinstance(model, BillableMetric):
        row["archived"] = model.archived
    elif isinstance(model, Product):
        row["billable_metric_id"] = p.doc.get("billable_metric_id")
    elif isinstance(model, CreditType):
        row["precision"] = model.precision
    elif isinstance(model, Contract):
        row["customer_id"] = p.doc["customer_id"]
        row["rate_card_id"] = p.doc["rate_card_id"]
    row["doc"] = json.dumps(p.doc, sort_keys=True)
    return row


def _write(
    con: duckdb.DuckDBPyConnection, kind: str, created: list[_Pending], updated: list[_Pending]
) -> None:
    """Insert and update the objects of one kind, set-based (one statement each)."""
    for batch, statement in ((created, _INSERT), (updated, _UPDATE)):
        if not batch:
            continue
        rows = [_row(p) for p in batch]
        staged = pa.Table.from_pylist(rows)
        con.register("__meterql_staged", staged)
        try:
            con.execute(statement(kind, list(rows[0])))
        finally:
            con.unregister("__meterql_staged")
    customers = [p for p in [*created, *updated] if isinstance(p.loaded.model, Customer)]
    if customers:
        keys = pa.Table.from_pylist(
            [
                {"key": key, "customer_id": p.id}
                for p in customers
                for key in dict.fromkeys([p.id, *p.loaded.model.ingest_keys()])
            ]
        )
        con.register("__meterql_keys", keys)
        try:
            con.execute(
                "DELETE FROM customer_keys WHERE customer_id IN "
                "(SELECT customer_id FROM __meterql_keys)"
            )
            con.execute("INSERT INTO customer_keys SELECT key, customer_id FROM __meterql_keys")
        finally:
            con.unregister("__meterql_keys")


def _INSERT(kind: str, columns: list[str]) -> str:
    names = ", ".join(columns)
    return (
        f"INSERT INTO {kind} ({names}, created_at, updated_at) "  # noqa: S608 - fixed names
        f"SELECT {names}, now()::TIMESTAMP, now()::TIMESTAMP FROM __meterql_staged"
    )


def _UPDATE(kind: str, columns: list[str]) -> str:
    sets = ", ".join(f"{c} = s.{c}" for c in columns if c != "id")
    return (
        f"UPDATE {kind} SET {sets}, updated_at = now()::TIMESTAMP "  # noqa: S608 - fixed names
        f"FROM __meterql_staged AS s WHERE {kind}.id = s.id"
    )
