"""Read access to the catalog objects, and reference resolution (by id or by name)."""

from __future__ import annotations

import json
from collections.abc import Set
from datetime import date
from functools import lru_cache

import duckdb
from pydantic import ValidationError

from warehouse.documents import format_validation_error
from warehouse.errors import NotFoundError, UserError, suggest_sql
from warehouse.models import KINDS, BillableMetric, Customer, Model, Product
from warehouse.sqlrows import first_row

# kind (document key and table name) -> model
TABLES: dict[str, type[Model]] = KINDS

SINGULAR = {
    "credit_types": "credit type",
    "billable_metrics": "billable metric",
    "products": "product",
    "rate_cards": "rate card",
    "customers": "customer",
    "contracts": "contract",
}


def _stored(kind: str, doc: str) -> Model:
    """A stored document as its model.  One that this meterql's checks refuse (applied by an
    earlier release that checked less) is a user error naming it, not a traceback."""
    data = json.loads(doc)
    try:
        return TABLES[kind].model_validate(data)
    except ValidationError as error:
        problems = "; ".join(format_validation_error(TABLES[kind], error))
        raise UserError(
            f"the catalog's {SINGULAR[kind]} {data.get('name')!r} (id {data.get('id')}) does not "
            f"pass this meterql's checks: {problems}; apply a corrected document for it (same "
            "id or name)"
        ) from None


class Catalog:
    """Typed reads over a catalog connection.  Stored documents always carry their id."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def all(self, kind: str) -> list[Model]:
        if kind not in TABLES:  # the table name below is one of TABLES
            raise KeyError(kind)
        rows = self.con.execute(f"SELECT doc FROM {kind} ORDER BY name, id").fetchall()  # noqa: S608 - kind is one of TABLES
        return [_stored(kind, doc) for (doc,) in rows]

    def get(self, kind: str, ref: str) -> Model:
        """The object whose id or name is `ref`; a NotFoundError naming close names otherwise."""
        row = first_row(
            self.con,
            f"SELECT doc FROM {kind} WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",  # noqa: S608
            [ref, ref, ref],
        )
        if not row:
            hint = suggest_sql(self.con, kind, "name", ref)
            raise NotFoundError(f"no {SINGULAR[kind]} with id or name {ref!r}{hint}")
        return _stored(kind, row[0])

    def metric(self, ref: str) -> BillableMetric:
        return self.get("billable_metrics", ref)  # type: ignore[return-value]

    def metrics(self) -> list[BillableMetric]:
        return self.all("billable_metrics")  # type: ignore[return-value]

    def metered_properties(self) -> set[str]:
        """The event properties billable metrics (archived ones too: their invoices may be
        computed again) and products read: each metric's aggregation key, property filters and
        group keys, a SQL metric's properties, a product's pricing and presentation keys.
        Ingest and compaction keep them as columns in every file (warehouse.rare)."""
        from metric_compiler import metric_properties

        keys: set[str] = set()
        for metric in self.metrics():
            if metric.sql is None:
                keys.update(metric_properties(metric))
                keys.update(k for group in metric.group_keys for k in group)
            else:
                keys.update(_sql_metric_properties(metric.sql))
        for product in self.all("products"):
            assert isinstance(product, Product)
            keys.update(product.pricing_group_key, product.presentation_group_key)
        return keys

    def metered_in_maps(self, kept: Set[str] | None = None) -> dict[date, list[str]]:
        """The event dates whose files hold metered properties (`kept`, default
        `metered_properties()`) in their rare-key maps, each with those properties' names:
        files written before the metric or product that reads them (see warehouse.rare;
        compaction rewrites these dates with a column for each)."""
        from warehouse.layout import property_column, property_name

        if kept is None:
            (any_maps,) = first_row(
                self.con, "SELECT count(*) > 0 FROM event_files WHERE len(rare_properties) > 0"
            )
            kept = self.metered_properties() if any_maps else set()
        if not kept:
            return {}
        rows = self.con.execute(
            """
            SELECT event_date, list_sort(list_distinct(list(p)))
            FROM (SELECT event_date, unnest(coalesce(rare_properties, [])) AS p FROM event_files)
            WHERE list_contains($keys::VARCHAR[], p)
            GROUP BY event_date ORDER BY event_date
            """,
            {"keys": sorted(property_column(k) for k in kept)},
        ).fetchall()
        return {d: [property_name(p) for p in ps] for d, ps in rows}

    def product(self, ref: str) -> Product:
        return self.get("products", ref)  # type: ignore[return-value]

    def customer(self, ref: str) -> Customer:
        """A customer by id, name, or ingest alias."""
        row = first_row(self.con, "SELECT customer_id FROM customer_keys WHERE key = ?", [ref])
        return self.get("customers", row[0] if row else ref)  # type: ignore[return-value]


@lru_cache(maxsize=1024)
def _sql_metric_properties(sql: str) -> frozenset[str]:
    """The properties a SQL metric's text reads (parsed once per process and text: ingest,
    compaction and apply ask on every call).  A text that no longer checks (it was checked when
    applied) reads nothing."""
    from metric_compiler.sql_metric.check import check_sql
    from metric_compiler.sql_metric.problems import SqlMetricError

    try:
        return frozenset(check_sql(sql).properties)
    except SqlMetricError:
        return frozenset()
