"""Shared pytest configuration."""

from __future__ import annotations

import os

import pytest
from layouts import every_key_rare

from warehouse.ingest import pipeline

# A command finding the home held by another one fails at once in the tests (they test that
# error), instead of waiting METERQL_LOCK_TIMEOUT's default 60 s; the tests of the wait set
# their own.  Subprocesses inherit it.
os.environ["METERQL_LOCK_TIMEOUT"] = "0"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the golden SQL files under tests/golden/ from the compiler's output",
    )


@pytest.fixture(params=["dense", "sparse", "rare"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Ingest through each of the three ways of writing: one column per key from a single sorted
    query (few keys), the per-date expansion of the values in long form (many keys,
    warehouse.ingest.sparse), and that expansion with every key rare (kept in the maps of rare
    keys, warehouse.rare)."""
    if request.param == "sparse":
        monkeypatch.setattr(pipeline, "DENSE_KEYS", 0)
        monkeypatch.setattr(pipeline, "SPARSE_DENSITY", 2.0)
    if request.param == "rare":
        every_key_rare(monkeypatch)
    return request.param
