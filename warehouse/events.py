"""The read API: one relation of canonical events for the compiler and the engine.

The relation has the columns

    transaction_id VARCHAR, customer_id VARCHAR, event_type VARCHAR, timestamp TIMESTAMP (UTC),
    ingested_at TIMESTAMP, batch_id VARCHAR, and one VARCHAR column per requested property,
    named `warehouse.layout.property_column(name)`.

`customer_id` is the catalog customer's id: the sender's customer id or ingest alias is resolved
through `customer_keys` at query time (an alias added later picks up earlier events), and events
of unknown customers are left out unless `resolve_customers=False`.

Only files listed in the `event_files` manifest are read (files of a batch that never committed
are invisible), and the manifest prunes files by event date and timestamp range before DuckDB
opens any of them.  A requested property that no file holds reads as NULL; one that some files
hold in their map of rare keys (warehouse.rare) reads as `coalesce(p_<key>,
rare_properties_NN['<key>'])` (NN: the key's bucket), or only from the map when no file has its
column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
from sqlglot import exp

from warehouse.duckdb_paths import exact_path
from warehouse.home import Home
from warehouse.layout import property_column, rare_column

BASE_COLUMNS = (
    "transaction_id",
    "customer_id",
    "event_type",
    "timestamp",
    "ingested_at",
    "batch_id",
)
_BASE_TYPES = {
    "transaction_id": "VARCHAR",
    "customer_id": "VARCHAR",
    "event_type": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "ingested_at": "TIMESTAMP",
    "batch_id": "VARCHAR",
}


@dataclass(frozen=True)
class EventFile:
    path: str  # absolute
    row_count: int
    min_timestamp: datetime
    max_timestamp: datetime
    property_columns: tuple[str, ...]
    integer_columns: tuple[str, ...] | None = None  # None: not known (written before 0005)
    rare_properties: tuple[str, ...] = ()  # properties held in its rare-key maps (encoded)


def integer_properties(files: Sequence[EventFile], properties: Iterable[str]) -> set[str]:
    """The properties whose every stored value in `files` is integer text (1 to 18 ASCII
    digits; warehouse.ingest.write.integer_text): each file lists the column as such, or has no
    value of it.  Compiled queries read them without the decimal text check."""
    found = set()
    for name in properties:
        column = property_column(name)
        if all(
            f.integer_columns is not None
            and (column in f.integer_columns or column not in f.property_columns)
            and column not in f.rare_properties
            for f in files
        ):
            found.add(name)
    return found


# The manifest columns an EventFile is read from (`manifest_files` maps the rows).
MANIFEST_COLUMNS = (
    "path, row_count, min_timestamp, max_timestamp, property_columns, integer_columns, "
    "rare_properties"
)


def manifest_files(home: Home, rows: Iterable[tuple]) -> list[EventFile]:
    """EventFiles of manifest rows selected as MANIFEST_COLUMNS (paths made absolute)."""
    root = home.events_dir
    return [
        EventFile(
            str(root / path),
            count,
            lo,
            hi,
            tuple(props),
            None if ints is None else tuple(ints),
            tuple(rare or ()),
        )
        for path, count, lo, hi, props, ints, rare in rows
    ]


def _naive_utc(ts: datetime | None) -> datetime | None:
    if ts is None or ts.tzinfo is None:
        return ts
    return ts.astimezone(UTC).replace(tzinfo=None)


def ts_literal(ts: datetime) -> exp.Expression:
    """A TIMESTAMP literal (naive UTC) for a datetime, built by sqlglot."""
    naive = _naive_utc(ts)
    assert naive is not None
    return exp.cast(exp.Literal.string(naive.isoformat(sep=" ")), exp.DataType.build("TIMESTAMP"))


class EventStore:
    """Reads the committed event files of a home."""

    def __init__(self, home: Home, con: duckdb.DuckDBPyConnection):
        self.home = home
        self.con = con

    def files(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        event_types: Sequence[str] | None = None,
    ) -> list[EventFile]:
        """Committed files that may hold events with start <= timestamp < end of one of
        `event_types` (None: any type): files are pruned by their timestamp range and by the
        event types they hold before DuckDB opens any of them (inside a file, row groups are
        pruned by the same filters: files are sorted by event type, customer and timestamp)."""
        start, end = _naive_utc(start), _naive_utc(end)
        types = list(event_types) if event_types is not None else None
        rows = self.con.execute(
            f"""
            SELECT {MANIFEST_COLUMNS}
            FROM event_files
            WHERE (?::TIMESTAMP IS NULL OR max_timestamp >= ?::TIMESTAMP)
              AND (?::TIMESTAMP IS NULL OR min_timestamp < ?::TIMESTAMP)
              AND (?::VARCHAR[] IS NULL OR list_has_any(event_types, ?::VARCHAR[]))
            ORDER BY path
            """,  # noqa: S608 - a constant column list
            [start, start, end, end, types, types],
        ).fetchall()
        return manifest_files(self.home, rows)

    def files_ingested_since(self, since: datetime) -> list[EventFile]:
        """Committed files of the batches (or compactions) whose ingest clock is at or after
        `since`, whatever their events' timestamps (ingest's dedup window, see
        warehouse.ingest.dedup)."""
        rows = self.con.execute(
            f"""
            SELECT {MANIFEST_COLUMNS}
            FROM event_files
            WHERE batch_id IN (SELECT batch_id FROM ingest_batches WHERE clock >= ?::TIMESTAMP)
            ORDER BY path
            """,  # noqa: S608 - a constant column list
            [_naive_utc(since)],
        ).fetchall()
        return manifest_files(self.home, rows)

    def relation(
        self,
        properties: Iterable[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        resolve_customers: bool = True,
    ) -> exp.Select:
        """The canonical events relation as a sqlglot SELECT (see the module docstring)."""
        files = self.files(start, end)
        return events_relation(files, properties, start, end, resolve_customers=resolve_customers)


def events_relation(
    files: Sequence[EventFile],
    properties: Iterable[str],
    start: datetime | None,
    end: datetime | None,
    *,
    resolve_customers: bool = True,
) -> exp.Select:
    names = list(dict.fromkeys(properties))
    wanted = [property_column(p) for p in names]
    if not files:
        select = exp.select(
            *(
                exp.alias_(exp.cast(exp.null(), _BASE_TYPES[c]), c, quoted=True)
                for c in BASE_COLUMNS
            ),
            *(exp.alias_(exp.cast(exp.null(), "VARCHAR"), c, quoted=True) for c in wanted),
        ).where(exp.false())
        return select

    present = set().union(*(f.property_columns for f in files))
    in_maps = set().union(*(f.rare_properties for f in files))
    source = exp.Table(
        this=exp.Anonymous(
            this="read_parquet",
            expressions=[
                exp.Array(expressions=[exp.Literal.string(exact_path(f.path)) for f in files]),
                exp.EQ(this=exp.column("union_by_name"), expression=exp.true()),
                exp.EQ(this=exp.column("hive_partitioning"), expression=exp.false()),
            ],
        ),
        alias=exp.TableAlias(this=exp.to_identifier("e")),
    )

    def col(name: str) -> exp.Column:
        return exp.column(name, table="e", quoted=True)

    projections: list[exp.Expression] = []
    for c in BASE_COLUMNS:
        if c == "customer_id" and resolve_customers:
            projections.append(exp.alias_(exp.column("customer_id", table="k"), c, quoted=True))
        else:
            projections.append(exp.alias_(col(c), c, quoted=True))
    for name, c in zip(names, wanted, strict=True):
        places: list[exp.Expression] = [col(c)] if c in present else []
        if c in in_maps:
            places.append(
                exp.Bracket(this=col(rare_column(name)), expressions=[exp.Literal.string(name)])
            )
        if not places:
            places.append(exp.cast(exp.null(), "VARCHAR"))
        value = places[0] if len(places) == 1 else exp.func("coalesce", *places)
        projections.append(exp.alias_(value, c, quoted=True))

    select = exp.select(*projections).from_(source)
    if resolve_customers:
        select = select.join(
            exp.table_("customer_keys", alias="k"),
            on=exp.EQ(this=exp.column("key", table="k"), expression=col("customer_id")),
            join_type="inner",
        )
    if start is not None:
        select = select.where(exp.GTE(this=col("timestamp"), expression=ts_literal(start)))
    if end is not None:
        select = select.where(exp.LT(this=col("timestamp"), expression=ts_literal(end)))
    return select
