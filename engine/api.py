"""The typed Python API: everything the CLI does, for notebooks and scripts.

    from engine.api import Meterql
    mq = Meterql.open("/path/to/home")          # an initialised home
    mq.apply(["catalog.yaml"])
    mq.ingest(["events.ndjson"], now=...)
    table = mq.usage(metric="Input Tokens", start=..., end=...)   # a pyarrow Table

Tabular results are pyarrow Tables; summaries are pydantic models.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import duckdb

from warehouse.catalog import Catalog
from warehouse.errors import UserError
from warehouse.events import EventStore
from warehouse.home import Home


def _listed(value):  # type: ignore[no-untyped-def]
    """A list of the paths or keys given: one string or path is one item (a str is a Sequence,
    and iterating it would take each character for a path or a key)."""
    if isinstance(value, str | os.PathLike):
        return [value]
    return list(value)


@dataclass
class Meterql:
    home: Home
    _con: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)

    @classmethod
    def open(cls, home: str | os.PathLike[str] | Home | None = None) -> Meterql:
        resolved = home if isinstance(home, Home) else Home.resolve(home)
        resolved.require()
        return cls(resolved)

    @classmethod
    def init(cls, home: str | os.PathLike[str] | None = None) -> Meterql:
        resolved = Home.resolve(home)
        resolved.init()
        return cls(resolved)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = self.home.connect()
        return self._con

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.con)

    @cached_property
    def events(self) -> EventStore:
        return EventStore(self.home, self.con)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Meterql:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- catalog -----------------------------------------------------------------------------

    def apply(self, paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str]):
        """Validate the documents (a path, or a list of them) and write all of them or nothing
        (see warehouse.apply)."""
        from engine.sql_check import check_sql_metric
        from warehouse.apply import apply_files

        def sql_check(text: str) -> list[str]:
            return check_sql_metric(text).problems

        with self.home.writer_lock():
            return apply_files(self.con, [Path(p) for p in _listed(paths)], sql_check=sql_check)

    # -- events ------------------------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        *,
        now: datetime | str | None = None,
        progress=None,
    ):
        """Ingest event files (NDJSON, JSON, CSV, Parquet; a path or a list of files,
        directories or globs) as one batch and return its `warehouse.ingest.IngestSummary`.
        `now` pins the ingest clock (ISO 8601; naive means UTC); default: the wall clock."""
        from engine.periods import parse_timestamp
        from warehouse.ingest import ingest

        clock = parse_timestamp(now, "--now") if now is not None else None
        # the catalog connection if open, else ingest opens one once it holds the writer lock
        # (as every writing command: the lock, then the catalog; the other way round, it held
        # the catalog while waiting for the lock a command holding the lock waited for it with)
        return ingest(self.home, _listed(paths), now=clock, con=self._con, progress=progress)

    def compact(
        self,
        *,
        grace_minutes: float = 30,
        target_rows: int | None = None,
        now: datetime | str | None = None,
        progress=None,
    ):
        """Merge each date's small event files into few large sorted ones (atomically, safe
        for running readers: replaced files stay readable for `grace_minutes`) and return a
        `warehouse.compact.CompactionSummary`.  `now` is the clock that decides which replaced
        files are past their grace period (default: the wall clock)."""
        from datetime import timedelta

        from engine.periods import parse_timestamp
        from warehouse.compact import DEFAULT_TARGET_ROWS, compact

        if math.isnan(grace_minutes):
            raise UserError("--grace-minutes nan is not a number of minutes; expected 0 or more")
        if grace_minutes < 0:
            raise UserError(f"--grace-minutes {grace_minutes} is negative; expected 0 or more")
        try:
            grace = timedelta(minutes=grace_minutes)
        except OverflowError:  # inf, or longer than timedelta reaches: keep retired files
            grace = timedelta.max
        clock = parse_timestamp(now, "--now") if now is not None else None
        return compact(
            self.home,
            self._con,  # if open; else compact opens one under the writer lock (see ingest)
            grace=grace,
            target_rows=target_rows or DEFAULT_TARGET_ROWS,
            now=clock,
            progress=progress,
        )

    # -- usage -------------------------------------------------------------------------------

    def usage(
        self,
        metric: str,
        start: datetime | str,
        end: datetime | str,
        *,
        customer: str | None = None,
        window: str = "none",
        group_by: Sequence[str] | str = (),
    ):
        """Usage of one metric (id or name) for all customers, or one, as a pyarrow Table with
        customer_id, metric_id, window_start, window_end, group (struct), value (see
        engine.usage)."""
        from engine.usage import usage

        return usage(
            self.catalog,
            self.events,
            metric=metric,
            start=start,
            end=end,
            customer=customer,
            window=window,
            group_by=_listed(group_by),
        )

    def compile(
        self,
        metric: str,
        *,
        dialect: str = "duckdb",
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        customer: str | None = None,
        window: str = "none",
        group_by: Sequence[str] | str = (),
    ) -> str:
        """The SQL a usage query of `metric` runs (see engine.usage.compile_metric_usage)."""
        from engine.usage import compile_metric_usage

        compiled, _ = compile_metric_usage(
            self.catalog,
            self.events,
            metric=metric,
            start=start,
            end=end,
            customer=customer,
            window=window,
            group_by=_listed(group_by),
            dialect=dialect,
        )
        return compiled.sql

    # -- SQL metrics -------------------------------------------------------------------------

    @staticmethod
    def sql_check(sql: str):
        """Every problem of a SQL metric's query (line, column, caret), or its value column and
        group keys: an engine.sql_check.SqlCheck.  Needs no home."""
        from engine.sql_check import check_sql_metric

        return check_sql_metric(sql)

    def sql_run(
        self,
        sql: str,
        start: datetime | str,
        end: datetime | str,
        *,
        customer: str | None = None,
    ):
        """A SQL metric's query for every customer (or one) over [start, end), before any
        metric exists: a pyarrow Table like `usage` (customer_id, window_start, window_end,
        group, value), computed in the locked-down sandbox of engine.sandbox."""
        from engine.sql_run import sql_run

        return sql_run(self.home, self.con, self.catalog, sql, start, end, customer=customer)

    # -- invoices ----------------------------------------------------------------------------

    def invoice_run(self, as_of: datetime | str):
        """Compute every contract's invoices for the statement periods started by `as_of`
        (all customers at once) and write them in one transaction; a RunSummary (see
        engine.invoices)."""
        from engine.invoices import parse_as_of, run

        moment = parse_as_of(as_of)
        with self.home.writer_lock():
            return run(self.home, self.con, moment)

    def invoices(self, *, customer: str | None = None, status: str | None = None):
        """Stored invoices (engine.invoice_store.Invoice), optionally of one customer (id,
        name or ingest alias) and status (draft, finalized, void)."""
        from engine import invoice_store

        return invoice_store.find(self.con, customer_id=self._customer_id(customer), status=status)

    def invoice_summaries(self, *, customer: str | None = None, status: str | None = None):
        """`invoices` without their line items (engine.invoice_store.InvoiceSummary: the number
        of lines instead), as `meterql invoice list` prints them."""
        from engine import invoice_store

        return invoice_store.summaries(
            self.con, customer_id=self._customer_id(customer), status=status
        )

    def _customer_id(self, customer: str | None) -> str | None:
        """The catalog id of a customer given by id, name or ingest alias (None: every one)."""
        return self.catalog.customer(customer).id if customer is not None else None

    def invoice(self, invoice_id: str):
        """One invoice by id (a unique prefix of at least 4 characters is accepted)."""
        from engine import invoice_store

        return invoice_store.get(self.con, invoice_id)

    def void_invoice(self, invoice_id: str):
        """Mark a finalized invoice void; it is kept.  Drafts cannot be voided."""
        from engine import invoice_store

        with self.home.writer_lock():
            return invoice_store.void(self.con, invoice_id)

    def regenerate_invoice(self, invoice_id: str):
        """A new finalized invoice (new id) from current data, replacing a finalized or void
        one; the old one becomes void and points to the new one."""
        from engine.invoices import regenerate

        with self.home.writer_lock():
            return regenerate(self.home, self.con, invoice_id)
