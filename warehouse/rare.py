"""Rare property keys: kept in MAP columns of a file instead of a column each.

A file of events with thousands of sparse keys (each on a small share of the rows) held one
column per key, and every query over such a file, even one reading none of those keys, paid for
its width: DuckDB decodes the footer's metadata of every column in every row group (measured,
README "Performance": 2.2x the same events' query over the file without those columns).  So a
file with more than `NARROW_KEYS` property keys keeps as columns only the keys that have a value
in at least `COLUMN_SHARE` of its rows; the other keys' values go into MAP(VARCHAR, VARCHAR)
columns, one per bucket of keys (`warehouse.layout.rare_column(key)`, 16 buckets: a query of a
rare key reads the map of its bucket, a sixteenth of the rare values, measured 0.5x the time of
one map of all of them); key: the property name as sent; a row without a value in a bucket
holds NULL there.  The manifest lists each file's rare keys (`event_files.rare_properties`,
encoded like `property_columns`), and the events relation reads a property as
`coalesce(p_<key>, rare_properties_NN['<key>'])` where files hold it in either place
(warehouse.events).

The keys that billable metrics and products read (`Catalog.metered_properties`: metric
properties, filters, group keys, SQL metrics' properties, products' pricing and presentation
keys) are kept as columns whatever their share: an invoice run or a metric's usage query then
reads them as cheaply as in a dense file (measured, README "Performance": a rare key's query
over its bucket's map cost 1.1-1.15x wall, 2.4-2.5x with the metadata cache, of the same
query over its column).  A metric created later finds its keys in maps in the files written
before it (read correctly, only slower) until compaction rewrites those files (it rewrites
every date whose files hold a metered key in a map, warehouse.compact).

    split_keys(counts, rows, kept)         which keys are columns and which are rare
    rare_maps(rows, row, key, value)       the bucket map columns of (row, key, value) entries
    held_entries(table)                    the (row, key, value) entries of a table's maps
    arrange(table, kept)                   a table's properties laid out by the rule (compaction)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Set
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from warehouse.layout import (
    is_property_column,
    is_rare_column,
    property_column,
    property_name,
    rare_column,
)

# A file with at most this many property keys keeps every key as a column.
NARROW_KEYS = 64
# Otherwise a key is a column when it has a value in at least this share of the file's rows: a
# file then has at most (values per row) / COLUMN_SHARE property columns.
COLUMN_SHARE = 0.05

RARE_TYPE = pa.map_(pa.string(), pa.string())


def split_keys(
    counts: Mapping[str, int], rows: int, kept: Set[str] = frozenset()
) -> tuple[set[str], set[str]]:
    """(column keys, rare keys) of a file of `rows` rows whose keys have `counts` values; the
    keys of `kept` (metered properties) are columns whatever their share."""
    if len(counts) <= NARROW_KEYS:
        return set(counts), set()
    floor = COLUMN_SHARE * rows
    columns = {k for k, n in counts.items() if n >= floor or k in kept}
    return columns, set(counts) - columns


def rare_map(rows: int, row: pa.Array, key: pa.Array, value: pa.Array) -> pa.MapArray:
    """The MAP column of `rows` rows holding the entries (row, key, value) (at most one per row
    and key; NULL values are left out), each row's entries ordered by key; NULL where a row
    has none."""
    keys = _Keys.of(key)
    group = pa.nulls(len(row), pa.int64()).fill_null(0)
    [column] = _map_columns(rows, 1, group, row, keys, value)
    return column


def rare_maps(
    rows: int, row: pa.Array, key: pa.Array, value: pa.Array
) -> list[tuple[str, pa.MapArray]]:
    """The bucket map columns (name, column) of `rows` rows holding the entries (row, key,
    value) (see rare_map), in the order of their names; buckets without an entry are left out.
    All buckets at once, from one sort of the entries (measured, 5 of 2,000 keys per row: 31
    dates of 161 rows 0.045 s, of 3,226 rows 0.16 s, one date of 300k rows 0.42 s, against 0.12,
    0.27 and 0.45 s with a filter and a sort per bucket)."""
    keys = _Keys.of(key)
    names = [rare_column(k) for k in keys.distinct.to_pylist()]
    order = sorted(set(names))
    number = {name: i for i, name in enumerate(order)}
    bucket = pa.array([number[n] for n in names], pa.int64()).take(keys.index)
    return list(zip(order, _map_columns(rows, len(order), bucket, row, keys, value), strict=True))


@dataclass(frozen=True)
class _Keys:
    """Entry keys as text, their distinct values, and each entry's index among them."""

    key: pa.Array
    distinct: pa.Array
    index: pa.Array

    @classmethod
    def of(cls, key: pa.Array | pa.ChunkedArray) -> _Keys:
        key = (key.combine_chunks() if isinstance(key, pa.ChunkedArray) else key).cast(pa.string())
        distinct = pc.unique(key)
        return cls(key, distinct, pc.index_in(key, distinct))


def _map_columns(
    rows: int, groups: int, group: pa.Array, row: pa.Array, keys: _Keys, value: pa.Array
) -> list[pa.MapArray]:
    """One MAP column of `rows` rows per group 0..groups-1, holding the entries (group, row,
    key, value) of that group (see rare_map): the entries sorted once by (group, row, key) as
    ONE integer (the key by its rank among the distinct keys: sorting by the key's text took
    1.4x the time at 5M entries), each group's offsets a slice of one running count over
    (group, row) slots."""
    ranks = pc.scatter(
        pa.array(range(len(keys.distinct)), pa.int64()),
        pc.cast(pc.sort_indices(keys.distinct), pa.int64()),
        max_index=max(len(keys.distinct) - 1, 0),
    )
    entries = pa.table(
        {
            "group": group,
            "row": row,
            "key": keys.key,
            "rank": ranks.take(keys.index),
            "value": value,
        },
    )
    entries = entries.filter(pc.is_valid(entries.column("value")))
    slot = pc.add(pc.multiply(entries.column("group"), rows), entries.column("row"))
    order = pc.sort_indices(pc.add(pc.multiply(slot, len(keys.distinct)), entries.column("rank")))
    entries = pa.table(
        {"slot": slot, "key": entries.column("key"), "value": entries.column("value")}
    ).take(order)
    per_slot = pc.value_counts(entries.column("slot").combine_chunks())
    counts = pa.nulls(groups * rows, pa.int64())
    if rows and len(per_slot):
        counts = pc.scatter(
            pc.cast(per_slot.field("counts"), pa.int64()),
            per_slot.field("values"),
            max_index=groups * rows - 1,
        )
    counts = counts.fill_null(0)
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(counts)])
    texts = entries.column("key").combine_chunks()
    values = entries.column("value").combine_chunks().cast(pa.string())
    out = []
    for g in range(groups):
        mine = offsets.slice(g * rows, rows + 1)
        start, end = mine[0].as_py(), mine[-1].as_py()
        out.append(
            pa.MapArray.from_arrays(
                pc.cast(pc.subtract(mine, start), pa.int32()),
                texts.slice(start, end - start),
                values.slice(start, end - start),
                mask=pc.equal(counts.slice(g * rows, rows), 0),
            )
        )
    return out


def held_entries(table: pa.Table) -> pa.Table:
    """The (row, key, value) entries of every rare-key map column of `table`."""
    parts = [map_entries(table.column(c)) for c in table.column_names if is_rare_column(c)]
    return pa.concat_tables(parts) if parts else map_entries(pa.array([], RARE_TYPE))


def map_entries(column: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The (row, key, value) entries of a MAP column (rows numbered from 0 across chunks)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = []
    base = 0
    for chunk in chunks:
        offsets = chunk.offsets
        start = offsets[0].as_py()
        size = offsets[-1].as_py() - start
        # pyarrow has no list kernels for maps: the same offsets over the keys and the items
        relative = pc.subtract(offsets, start)
        nulls = chunk.is_null()
        keys, items = (
            pa.ListArray.from_arrays(relative, values.slice(start, size), mask=nulls)
            for values in (chunk.keys, chunk.items)
        )
        parts.append(
            pa.table(
                {
                    "row": pc.add(pc.cast(pc.list_parent_indices(keys), pa.int64()), base),
                    "key": pc.list_flatten(keys),
                    "value": pc.list_flatten(items),
                }
            )
        )
        base += len(chunk)
    if not parts:
        return pa.table(
            {
                "row": pa.array([], pa.int64()),
                "key": pa.array([], pa.string()),
                "value": pa.array([], pa.string()),
            }
        )
    return pa.concat_tables(parts)


def rare_keys(column: pa.Array | pa.ChunkedArray) -> set[str]:
    """The keys a MAP column holds."""
    return set(pc.unique(map_entries(column).column("key")).to_pylist())


def arrange(table: pa.Table, kept: Set[str] = frozenset()) -> pa.Table:
    """`table` (fixed columns, property columns, maybe rare-key maps) with its properties laid
    out by the rule of this module (`kept`: see split_keys), whichever of the two places held
    each key's values: the fixed columns first, in their order, then the property columns
    sorted by name, then the maps of the rare keys' buckets."""
    n = len(table)
    fixed = [c for c in table.column_names if not is_property_column(c) and not is_rare_column(c)]
    columns = {
        property_name(c): table.column(c).combine_chunks()
        for c in table.column_names
        if is_property_column(c)
    }
    held = held_entries(table)
    tallied = pc.value_counts(held.column("key").combine_chunks())
    in_maps = dict(
        zip(tallied.field("values").to_pylist(), tallied.field("counts").to_pylist(), strict=True)
    )
    counts = {k: len(c) - c.null_count for k, c in columns.items()}
    for key, count in in_maps.items():
        counts[key] = counts.get(key, 0) + count
    as_columns, rare = split_keys({k: c for k, c in counts.items() if c}, n, kept)
    # the map entries of keys that become columns, sorted by key: one slice per key
    moving = sorted(as_columns & set(in_maps))
    moved = held.filter(pc.is_in(held.column("key"), pa.array(moving, pa.string())))
    moved = moved.sort_by("key").combine_chunks()
    sizes = [in_maps[k] for k in moving]
    starts = dict(zip(moving, itertools.accumulate(sizes, initial=0), strict=False))
    out = table.select(fixed)
    for key in sorted(as_columns, key=property_column):
        column = columns.get(key)
        if key in starts:
            part = moved.slice(starts[key], in_maps[key])
            spread = pc.scatter(part.column("value"), part.column("row"), max_index=n - 1)
            column = spread if column is None else pc.coalesce(column, spread)
        out = out.append_column(property_column(key), column)
    if not rare:
        return out
    parts = [held.filter(pc.is_in(held.column("key"), pa.array(sorted(rare), pa.string())))]
    for key in sorted(rare & set(columns)):
        column = columns[key]
        where = pc.cast(pc.indices_nonzero(pc.is_valid(column)), pa.int64())
        parts.append(
            pa.table(
                {
                    "row": where,
                    "key": pa.DictionaryArray.from_arrays(
                        pa.nulls(len(where), pa.int32()).fill_null(0), pa.array([key])
                    ).cast(pa.string()),
                    "value": column.take(where).cast(pa.string()),
                }
            )
        )
    entries = pa.concat_tables(parts)
    for name, column in rare_maps(
        n, entries.column("row"), entries.column("key"), entries.column("value")
    ):
        out = out.append_column(name, column)
    return out
