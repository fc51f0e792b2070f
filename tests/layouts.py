"""Storing the same events in both property layouts, for tests that must read the same either
way: a column per key, or every key in the maps of rare keys (warehouse.rare)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from warehouse import rare
from warehouse.catalog import Catalog
from warehouse.ingest import pipeline

LAYOUTS = ["columns", "rare keys"]


def every_key_rare(patch: pytest.MonkeyPatch) -> None:
    """Ingest and compaction keep every key in the maps of rare keys, the metered ones too."""
    patch.setattr(Catalog, "metered_properties", lambda self: set())
    patch.setattr(pipeline, "DENSE_KEYS", 0)  # the write path that splits keys
    patch.setattr(pipeline, "SPARSE_DENSITY", 2.0)
    patch.setattr(rare, "NARROW_KEYS", 0)
    patch.setattr(rare, "COLUMN_SHARE", 2.0)


@contextmanager
def stored_as(layout: str) -> Iterator[None]:
    """Ingest (and compact) inside the block with `layout`, one of LAYOUTS."""
    with pytest.MonkeyPatch.context() as patch:
        if layout == "rare keys":
            every_key_rare(patch)
        yield


def layout_of(con) -> str:
    """The layout the manifest says the stored files have."""
    [(columns, in_maps)] = con.execute(
        "SELECT flatten(list(property_columns)), flatten(list(rare_properties)) FROM event_files"
    ).fetchall()
    assert not (columns and in_maps), "both layouts at once"
    return "rare keys" if in_maps else "columns"


def home_stored_as(layout: str, build: Callable[[], Path]) -> Path:
    """The home `build()` makes (ingesting its events) with `layout`, checked to have it."""
    from engine.api import Meterql

    with stored_as(layout):
        path = build()
    mq = Meterql.open(path)
    try:
        assert layout_of(mq.con) == layout
    finally:
        mq.close()
    return path
