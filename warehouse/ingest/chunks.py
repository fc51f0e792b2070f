"""Cutting a large batch into chunks that fit in the work connection's memory.

A batch is read, checked, deduplicated and written chunk by chunk, in input order, and
committed once (warehouse.ingest.pipeline): the chunks are an implementation detail, the batch
stays one all-or-nothing unit.  A chunk is whole NDJSON/JSON/CSV files, or a range of a
Parquet file's row groups (read with a `file_row_number` filter, which DuckDB prunes by row
group), of at most about `chunk_events(memory limit)` events.  Why (README "Ingest
benchmarks"): in one piece, a batch of 100M events under the 3 GiB default limit spilled its
staged rows, hash tables and sort all at once, about 40 GB, in 147 s; in chunks it writes
7.1 GiB (its event files included) in 111 s.

Events are counted exactly for Parquet (its footer) and estimated for text files from their
size (`TEXT_BYTES_PER_EVENT`; a gzipped file about `GZIP_RATIO` times its size): a text file
is never split, so one very large text file is one chunk whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pyarrow.parquet as pq

from warehouse.ingest.readers import Plan, TableSource
from warehouse.ingest.sources import SourceFile

# Events of one chunk per byte of the memory limit.  Measured (README "Ingest benchmarks"):
# the benchmark's 10M-event batch (8 columns) runs in memory under the 3 GiB default.
BYTES_PER_EVENT = 320
MIN_CHUNK_EVENTS = 1_000_000
TEXT_BYTES_PER_EVENT = 200  # an NDJSON line of the benchmark dump is ~240 bytes, a CSV row less
GZIP_RATIO = 6


def chunk_events(memory_limit_bytes: int | None) -> int:
    """The events of one chunk under a memory limit (None: unknown, the 3 GiB default)."""
    limit = memory_limit_bytes if memory_limit_bytes is not None else 3 * 2**30
    return max(MIN_CHUNK_EVENTS, limit // BYTES_PER_EVENT)


def _text_events(file: SourceFile) -> int:
    ratio = GZIP_RATIO if file.path.name.lower().endswith(".gz") else 1
    return file.size * ratio // TEXT_BYTES_PER_EVENT


def _row_group_ranges(table: TableSource, limit: int) -> Iterator[tuple[int, int, int]]:
    """(first row, end row, rows) of consecutive row-group ranges of at most `limit` rows (a
    larger row group alone)."""
    meta = pq.ParquetFile(table.file.path).metadata
    start = end = 0
    for i in range(meta.num_row_groups):
        rows = meta.row_group(i).num_rows
        if end > start and end - start + rows > limit:
            yield start, end, end - start
            start = end
        end += rows
    if end > start:
        yield start, end, end - start


def plan_chunks(plan: Plan, limit: int) -> list[Plan]:
    """`plan`'s sources cut into chunks of about `limit` events, in input order (source index,
    then row).  One chunk (the plan itself) when the whole batch fits."""
    units: list[tuple[int, int, SourceFile | TableSource]] = []  # (index, events, source)
    for file in plan.json_files:
        units.append((file.index, _text_events(file), file))
    for table in plan.tables:
        if table.file.format != "parquet":
            units.append((table.file.index, _text_events(table.file), table))
            continue
        ranges = list(_row_group_ranges(table, limit))
        if len(ranges) <= 1:
            units.append((table.file.index, ranges[0][2] if ranges else 0, table))
            continue
        for start, end, rows in ranges:
            units.append((table.file.index, rows, replace(table, rows=(start, end))))
    if sum(events for _, events, _ in units) <= limit:
        return [plan]
    chunks: list[Plan] = []
    current: list[SourceFile | TableSource] = []
    size = 0
    for _, events, unit in sorted(units, key=lambda u: (u[0], _first_row(u[2]))):
        if current and size + events > limit:
            chunks.append(_plan_of(current))
            current, size = [], 0
        current.append(unit)
        size += events
    if current:
        chunks.append(_plan_of(current))
    return chunks


def _first_row(unit: SourceFile | TableSource) -> int:
    return unit.rows[0] if isinstance(unit, TableSource) and unit.rows else 0


def _plan_of(units: list[SourceFile | TableSource]) -> Plan:
    return Plan(
        [u for u in units if isinstance(u, SourceFile)],
        [u for u in units if isinstance(u, TableSource)],
    )
