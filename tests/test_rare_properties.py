"""The map of rare property keys (warehouse.rare): the rule, the Arrow building blocks, reading
a key from either place, and compaction moving keys between columns and the map."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from layouts import every_key_rare, stored_as
from test_compact import HOSTILE, PROPS, batch, catalog, rows
from test_invoices_support import apply_docs, commit_events, event

from engine.api import Meterql
from engine.output import dumps
from warehouse import rare
from warehouse.catalog import Catalog
from warehouse.events import EventFile, events_relation, integer_properties
from warehouse.ingest import pipeline
from warehouse.layout import (
    RARE_BUCKETS,
    is_property_column,
    is_rare_column,
    property_column,
    property_name,
    rare_column,
)

GOLDEN = Path(__file__).parent / "golden"


def test_split_keys_keeps_narrow_files_as_columns_and_moves_rare_keys_of_wide_ones() -> None:
    few = {f"k{i}": 1 for i in range(rare.NARROW_KEYS)}
    assert rare.split_keys(few, 1000) == (set(few), set())
    many = {f"k{i}": 1 for i in range(rare.NARROW_KEYS + 1)} | {"dense": 50, "edge": 49}
    columns, rares = rare.split_keys(many, 1000)  # 5% of 1000 rows = 50 values
    assert columns == {"dense"}
    assert rares == set(many) - {"dense"}


def test_split_keys_keeps_the_metered_keys_as_columns_whatever_their_share() -> None:
    many = {f"k{i}": 1 for i in range(rare.NARROW_KEYS + 1)} | {"dense": 50}
    columns, rares = rare.split_keys(many, 1000, kept={"k3", "dense", "absent"})
    assert columns == {"dense", "k3"}
    assert rares == set(many) - {"dense", "k3"}


def test_a_keys_bucket_is_stable_and_spread() -> None:
    # the bucket is part of the stored layout: it must never change between versions
    assert [rare_column(k) for k in ("input_tokens", "Model", "ünï", "")] == [
        "rare_properties_03",
        "rare_properties_13",
        "rare_properties_10",
        "rare_properties_00",
    ]
    spread = {rare_column(f"extra_{i:04d}") for i in range(2000)}
    assert len(spread) == RARE_BUCKETS


entries = st.dictionaries(
    st.tuples(st.integers(0, 6), st.sampled_from(["a", "b", "Model", "model", "x y", "ü", ""])),
    st.one_of(st.none(), st.text(max_size=3)),
    max_size=25,
)


@given(entries)
@settings(max_examples=60, deadline=None)
def test_rare_map_and_map_entries_round_trip(given_entries: dict) -> None:
    rows = 7
    row = pa.array([r for r, _ in given_entries], pa.int64())
    key = pa.array([k for _, k in given_entries], pa.string())
    value = pa.array(list(given_entries.values()), pa.string())
    built = rare.rare_map(rows, row, key, value)
    assert len(built) == rows
    present = {rk: v for rk, v in given_entries.items() if v is not None}
    for r, entry in enumerate(built.to_pylist()):
        mine = sorted((k, v) for (rr, k), v in present.items() if rr == r)
        assert (entry or []) == mine  # ordered by key; NULL where a row has none
        assert (entry is None) == (not mine)
    # across chunks, and over a slice
    back = rare.map_entries(pa.chunked_array([built.slice(0, 3), built.slice(3)]))
    columns = (back.column(c).to_pylist() for c in ("row", "key", "value"))
    got = {(r, k): v for r, k, v in zip(*columns, strict=True)}
    assert got == present


def logical(table: pa.Table) -> list[tuple]:
    """Each row's fixed columns and its properties as a dict, wherever they are kept."""
    maps = [c for c in table.column_names if is_rare_column(c)]
    out = []
    for record in table.to_pylist():
        props = {
            property_name(c): v
            for c, v in record.items()
            if is_property_column(c) and v is not None
        }
        for c in maps:
            for key, value in record[c] or []:
                assert rare_column(key) == c  # each key in its bucket's map
                props[key] = value
        fixed = tuple(v for c, v in record.items() if c in ("transaction_id",))
        out.append((fixed, props))
    return out


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c", "Model", "ü x"]), st.text(max_size=2)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([(0, 0.3), (0, 2.0), (100, 0.3)]),
    st.sets(st.sampled_from(["a", "b", "c", "Model", "ü x"])),
    st.sets(st.sampled_from(["a", "Model", "absent"])),
)
@settings(max_examples=80, deadline=None)
def test_arrange_keeps_every_value_wherever_it_was(
    records: list[dict], rule: tuple[int, float], in_map: set[str], kept: set[str]
) -> None:
    # input: the keys of `in_map` in the map, the others as columns; output by the rule
    n = len(records)
    table = pa.table({"transaction_id": [f"t{i}" for i in range(n)]})
    keys = sorted({k for r in records for k in r})
    for k in keys:
        if k not in in_map:
            table = table.append_column(property_column(k), pa.array([r.get(k) for r in records]))
    held = [(i, k, v) for i, r in enumerate(records) for k, v in r.items() if k in in_map]
    if held:
        row, key, value = (list(x) for x in zip(*held, strict=True))
        for name, column in rare.rare_maps(
            n, pa.array(row, pa.int64()), pa.array(key), pa.array(value)
        ):
            table = table.append_column(name, column)
    narrow, share = rule
    original = (rare.NARROW_KEYS, rare.COLUMN_SHARE)
    rare.NARROW_KEYS, rare.COLUMN_SHARE = narrow, share
    try:
        out = rare.arrange(table, kept)
        counts = {k: sum(k in r for r in records) for k in keys}
        columns, rares = rare.split_keys(counts, n, kept)
    finally:
        rare.NARROW_KEYS, rare.COLUMN_SHARE = original
    assert logical(out) == logical(table)
    assert [c for c in out.column_names if is_property_column(c)] == sorted(
        property_column(k) for k in columns
    )
    assert [c for c in out.column_names if is_rare_column(c)] == sorted(
        {rare_column(k) for k in rares}
    )


def files(rare_properties: tuple[str, ...], columns: tuple[str, ...]) -> list[EventFile]:
    at = datetime(2026, 1, 1)
    return [
        EventFile("/data/a.parquet", 1, at, at, columns, columns, ()),
        EventFile("/data/b.parquet", 1, at, at, (), (), rare_properties),
    ]


def test_the_events_relation_reads_a_key_from_its_column_and_from_the_map(
    request: pytest.FixtureRequest,
) -> None:
    # golden: "it's" is a column in one file and in the map of the other; "only map" only in a
    # map; "nowhere" in no file
    relation = events_relation(
        files((property_column("it's"), property_column("only map")), (property_column("it's"),)),
        ["it's", "only map", "nowhere"],
        None,
        None,
    )
    sql = relation.sql(dialect="duckdb", pretty=True) + "\n"
    golden = GOLDEN / "events__rare_keys.sql"
    if request.config.getoption("--update-golden"):
        golden.write_text(sql)
    assert sql == golden.read_text(), f"{golden.name} differs; review, then --update-golden"


def test_a_key_held_in_a_map_is_not_read_as_integer_text() -> None:
    key = property_column("n")
    assert integer_properties(files((), (key,)), ["n"]) == {"n"}
    assert integer_properties(files((key,), (key,)), ["n"]) == set()


# ---------------------------------------------------------------------------------------------
# Compaction moves keys between columns and the map; the rows, usage and invoices stay the same


def layout(m: Meterql) -> tuple[set[str], set[str]]:
    """The property columns and the map keys of the stored files (manifest and files agree)."""
    columns: set[str] = set()
    keys: set[str] = set()
    for path, listed, held in m.con.execute(
        "SELECT path, property_columns, coalesce(rare_properties, []) FROM event_files"
    ).fetchall():
        table = pq.read_table(m.home.events_dir / path)
        assert [c for c in table.column_names if is_property_column(c)] == listed
        maps = [c for c in table.column_names if is_rare_column(c)]
        in_map = set(rare.held_entries(table).column("key").to_pylist())
        assert sorted(property_column(k) for k in in_map) == held
        assert maps == sorted({rare_column(k) for k in in_map})
        columns.update(listed)
        keys.update(held)
    return columns, keys


@pytest.mark.parametrize("ingested, compacted", [("columns", "rare"), ("rare", "columns")])
def test_compaction_moves_keys_and_keeps_rows_usage_and_invoices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ingested: str, compacted: str
) -> None:
    monkeypatch.setattr(pipeline, "DENSE_KEYS", 0)  # the write path that splits keys
    monkeypatch.setattr(pipeline, "SPARSE_DENSITY", 2.0)
    if ingested == "rare":
        every_key_rare(monkeypatch)
    m = Meterql.init(tmp_path / "home")
    try:
        apply_docs(m, tmp_path, catalog())
        for k in range(3):
            commit_events(m, batch(k), now="2026-03-05T00:00:00Z")
        columns, keys = layout(m)
        everything = {property_column(p) for p in PROPS}
        assert (columns, keys) == (
            (everything, set()) if ingested == "columns" else (set(), everything)
        )
        before = rows(m)
        usage = m.usage("Input Tokens", "2026-03-01", "2026-04-01", group_by=["Model"])
        m.invoice_run("2026-03-10T00:00:00Z")
        invoices = dumps(m.invoices())

        monkeypatch.setattr(rare, "NARROW_KEYS", 64)
        monkeypatch.setattr(rare, "COLUMN_SHARE", 0.05)
        if compacted == "rare":
            every_key_rare(monkeypatch)
        summary = m.compact()
        assert (summary.files_before, summary.files_after) == (9, 3)
        assert layout(m) == ((set(), everything) if compacted == "rare" else (everything, set()))
        assert rows(m) == before
        again = m.usage("Input Tokens", "2026-03-01", "2026-04-01", group_by=["Model"])
        assert again.to_pylist() == usage.to_pylist() and usage.num_rows == 4
        rerun = m.invoice_run("2026-03-10T00:00:00Z")
        assert rerun.invoices.unchanged == 2 and rerun.invoices.updated == 0
        assert dumps(m.invoices()) == invoices
    finally:
        m.close()


def test_compaction_checksum_sees_a_value_lost_in_the_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warehouse.ingest.write as write_mod

    m = Meterql.init(tmp_path / "home")
    try:
        apply_docs(m, tmp_path, catalog())
        for k in range(2):
            commit_events(m, batch(k), now="2026-03-05T00:00:00Z")
        every_key_rare(monkeypatch)
        real = rare.arrange

        def lossy(table: pa.Table, kept: set[str]) -> pa.Table:
            out = real(table, kept)
            name = rare_column("user_id")
            maps = out.column(name).to_pylist()
            maps[0] = [e for e in maps[0] if e[0] != "user_id"]  # one value dropped
            return out.set_column(
                out.column_names.index(name), name, pa.array(maps, rare.RARE_TYPE)
            )

        monkeypatch.setattr(write_mod, "arrange", lossy)
        before = rows(m)
        with pytest.raises(RuntimeError, match="do not hold the same rows"):
            m.compact()
        assert rows(m) == before
        assert layout(m)[1] == set()  # nothing changed: the ingested files are listed
    finally:
        m.close()


def test_compaction_checksum_sees_a_value_moved_to_another_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every value is still there, but two rows swapped theirs: the row hash binds a row's
    properties to its fixed columns, so the sums differ."""
    import warehouse.ingest.write as write_mod

    m = Meterql.init(tmp_path / "home")
    try:
        apply_docs(m, tmp_path, catalog())
        for k in range(2):
            commit_events(m, batch(k), now="2026-03-05T00:00:00Z")
        real = rare.arrange

        def swapping(table: pa.Table, kept: set[str]) -> pa.Table:
            out = real(table, kept)
            name = property_column("input_tokens")
            values = out.column(name).to_pylist()
            j = next((j for j, v in enumerate(values) if v != values[0]), None)
            if j is not None:
                values[0], values[j] = values[j], values[0]
            return out.set_column(out.column_names.index(name), name, pa.array(values))

        monkeypatch.setattr(write_mod, "arrange", swapping)
        before = rows(m)
        with pytest.raises(RuntimeError, match="do not hold the same rows"):
            m.compact()
        assert rows(m) == before
    finally:
        m.close()


# ---------------------------------------------------------------------------------------------
# The keys metrics and products read are columns in every file, whatever their share


def metered_catalog() -> dict:
    """test_compact's catalog (its metric reads input_tokens and Model, its product's pricing
    key is Model) plus a SQL metric reading user_id and a metric filtering on one hostile key
    and grouped by another."""
    docs = catalog()
    docs["billable_metrics"] += [
        {
            "name": "Users",
            "sql": "SELECT count(DISTINCT properties.user_id) AS value FROM events",
        },
        {
            "name": "Hostile",
            "aggregation_type": "count",
            "property_filters": [
                {"name": HOSTILE[4], "exists": True},
                {"name": HOSTILE[2], "exists": True},
            ],
            "group_keys": [[HOSTILE[2]]],
        },
    ]
    return docs


METERED = {"input_tokens", "Model", "user_id", HOSTILE[4], HOSTILE[2]}


def test_the_catalog_lists_the_properties_metrics_and_products_read(tmp_path: Path) -> None:
    m = Meterql.init(tmp_path / "home")
    try:
        assert Catalog(m.con).metered_properties() == set()
        apply_docs(m, tmp_path, metered_catalog())
        assert Catalog(m.con).metered_properties() == METERED
        # a stored SQL metric that no longer checks (rules of a later version) reads nothing:
        # the layout ignores it rather than failing every ingest
        m.con.execute(
            "INSERT INTO billable_metrics VALUES ('stale', 'Stale', false, ?, now(), now())",
            [json.dumps({"id": "stale", "name": "Stale", "sql": "SELECT properties.x FROM t"})],
        )
        assert Catalog(m.con).metered_properties() == METERED
    finally:
        m.close()


def test_ingest_keeps_the_metered_keys_as_columns_and_the_others_in_maps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "DENSE_KEYS", 0)  # the write path that splits keys
    monkeypatch.setattr(pipeline, "SPARSE_DENSITY", 2.0)
    monkeypatch.setattr(rare, "NARROW_KEYS", 0)  # every key rare by its share...
    monkeypatch.setattr(rare, "COLUMN_SHARE", 2.0)
    m = Meterql.init(tmp_path / "home")
    try:
        apply_docs(m, tmp_path, metered_catalog())
        for k in range(2):
            commit_events(m, batch(k), now="2026-03-05T00:00:00Z")
        # ... but the metered ones
        assert layout(m) == (
            {property_column(p) for p in METERED},
            {property_column(p) for p in set(PROPS) - METERED},
        )
    finally:
        m.close()


@pytest.mark.parametrize("batches", [3, 1])
def test_compaction_moves_the_keys_of_a_later_metric_out_of_the_maps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batches: int
) -> None:
    # 3 batches: files to merge anyway; 1 batch: one file per date, rewritten only because a
    # metered key is in its maps
    m = Meterql.init(tmp_path / "home")
    try:
        apply_docs(m, tmp_path, catalog())
        with stored_as("rare keys"):  # ingested when no metric read them: all in maps
            for k in range(batches):
                commit_events(m, batch(k), now="2026-03-05T00:00:00Z")
        everything = {property_column(p) for p in PROPS}
        assert layout(m) == (set(), everything)
        before = rows(m)
        usage = m.usage("Input Tokens", "2026-03-01", "2026-04-01", group_by=["Model"])
        applied = apply_docs(m, tmp_path, metered_catalog())  # a metric of user_id comes later
        [note] = applied.notes  # apply says which dates hold it in maps, and what to do
        assert note.startswith("3 event date(s) (2026-03-02..2026-03-04) hold properties")
        assert "(" + ", ".join(repr(k) for k in sorted(METERED)) + ")" in note
        assert "warehouse compact" in note

        monkeypatch.setattr(rare, "NARROW_KEYS", 0)
        monkeypatch.setattr(rare, "COLUMN_SHARE", 2.0)
        summary = m.compact()
        assert (summary.files_before, summary.files_after) == (3 * batches, 3)
        metered = {property_column(p) for p in METERED}
        assert layout(m) == (metered, everything - metered)
        assert rows(m) == before
        again = m.usage("Input Tokens", "2026-03-01", "2026-04-01", group_by=["Model"])
        assert again.to_pylist() == usage.to_pylist()
        assert usage.num_rows == (4 if batches == 3 else 2)
        assert m.compact().files_before == 0  # nothing left to do
        docs = metered_catalog()
        docs["billable_metrics"].append({"name": "More calls", "aggregation_type": "count"})
        assert apply_docs(m, tmp_path, docs).notes == []  # no metered key left in a map
    finally:
        m.close()


def test_with_the_default_rule_a_rare_key_a_metric_sums_is_a_column_and_sums_right(
    tmp_path: Path,
) -> None:
    """No patched thresholds: 100 sparse keys, 3 per event (3% of the rows each, under the 5%
    of the rule); the key a metric sums stays a column, the others go to the maps."""
    docs = catalog()
    docs["billable_metrics"].append(
        {
            "name": "K7",
            "aggregation_type": "sum",
            "aggregation_key": "k007",
            "property_filters": [{"name": "k007", "exists": True}],
        }
    )
    events, expected = [], {"acme": Decimal(0), "beta": Decimal(0)}
    for i in range(600):
        customer = ("acme", "beta")[i % 2]
        keys = {f"k{(7 * i + j * 31) % 100:03d}": str(i + j) for j in range(3)}
        if "k007" in keys:
            expected[customer] += Decimal(keys["k007"])
        events.append(event(f"t{i}", customer, f"2026-03-0{1 + i % 3}T10:00:00Z", **keys))
    assert all(expected.values())  # the key is on both customers' events
    m = Meterql.init(tmp_path / "home")
    try:
        apply_docs(m, tmp_path, docs)
        commit_events(m, events, now="2026-03-05T00:00:00Z")
        columns, in_maps = layout(m)
        assert property_column("k007") in columns and property_column("k007") not in in_maps
        assert len(in_maps) == 99  # every other key, in the maps of their buckets
        usage = m.usage("K7", "2026-03-01", "2026-04-01")
        got = {r["customer_id"]: r["value"] for r in usage.to_pylist()}
        assert got == {m.catalog.customer(c).id: v for c, v in expected.items()}
    finally:
        m.close()
