"""The typed Python API: everything the CLI does, for notebooks and scripts.

    from engine.api import Meterql
    mq = Meterql.open("/path/to/home")          # an initialised home
    mq.apply(["catalog.yaml"])
    mq.ingest(["events.ndjson"], now=...)
    table = mq.usage(metric="Input Tokens", start=..., end=...)   # a pyarrow Table

Tabular results are pyarrow Tables; summaries are pydantic models.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import duckdb

from warehouse.catalog import Catalog
from warehouse.events import EventStore
from warehouse.home import Home


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

    # -- catalog -----------------------------------------------------------------------------

    def apply(self, paths: Sequence[str | os.PathLike[str]]):
        """Validate the documents and write all of them or nothing (see warehouse.apply)."""
        from warehouse.apply import apply_files

        with self.home.writer_lock():
            return apply_files(self.con, [Path(p) for p in paths])
