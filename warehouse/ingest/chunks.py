"""Cutting a large batch into chunks that fit in the work connection's memory.

A batch is read, checked, deduplicated and written chunk by chunk, in input order, and
committed once (warehouse.ingest.pipeline): the chunks are an implementation detail, the batch
stays one all-or-nothing unit.  A chunk is whole text files, pieces of a large NDJSON file,
or a range of a Parquet file's row groups (read with a `file_row_number` filter, which DuckDB
prunes by row group), of at most about `chunk_events(memory limit)` events.  Why (README "Ingest
benchmarks"): in one piece, a batch of 100M events under the 3 GiB default limit spilled its
staged rows, hash tables and sort all at once, about 40 GB, in 147 s; in chunks it writes
7.1 GiB (its event files included) in 111 s.

Events are counted exactly for Parquet (its footer) and estimated for text files from their
size (`TEXT_BYTES_PER_EVENT`; a gzipped file about `GZIP_RATIO` times its size).  A plain
NDJSON file larger than a chunk is cut into pieces at line ends (`_line_spans`); each piece is
copied to the batch's staging directory just before its chunk is read (`Pieces`), its
lines numbered on from the previous piece's, so every record keeps its line number and input
position.  Other text files (gzipped, `.json`, CSV, whose quoted cells may hold line ends) are
never cut: one such file larger than memory is one chunk, and spills.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pyarrow.parquet as pq

from warehouse.errors import UserError
from warehouse.ingest.readers import Plan, TableSource
from warehouse.ingest.sources import MAX_LINE_BYTES, SourceFile

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
    ratio = GZIP_RATIO if file.gzipped else 1
    return file.size * ratio // TEXT_BYTES_PER_EVENT


def _line_spans(file: SourceFile, target: int) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of a plain NDJSON file, of about `target` bytes each, cut after
    a \\n."""
    spans: list[tuple[int, int]] = []
    start = 0
    with file.path.open("rb") as handle:
        while file.size - start > target:
            handle.seek(start + target)
            cut = _cut(handle, file.size)
            if cut is None:
                break
            spans.append((start, cut))
            start = cut
    spans.append((start, file.size))
    return spans


_BOM = b"\xef\xbb\xbf"


def _cut(handle: BinaryIO, size: int) -> int | None:
    """The offset just after the first \\n from the handle's position that a line follows
    whose first bytes are no byte order mark (DuckDB's reader would drop it at the start of a
    piece, and keep it in the middle of the file); None: there is none before the end."""
    while True:
        if not handle.readline(MAX_LINE_BYTES + 1).endswith(b"\n"):
            return None  # the end, or a line too long for any reader
        at = handle.tell()
        if at >= size:
            return None
        if handle.read(len(_BOM)) != _BOM:
            return at
        handle.seek(at)


class Pieces:
    """Copies the NDJSON pieces of a batch's chunks into its staging directory, in order, and
    numbers each piece's lines on from the piece before it."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.lines_before: dict[tuple[Path, int], int] = {}  # (file, piece start) -> lines

    def materialise(self, chunk: Plan) -> Plan:
        """`chunk` with its pieces copied (`SourceFile.read_from`)."""
        files = []
        for file in chunk.json_files:
            if file.span is None:
                files.append(file)
                continue
            start, end = file.span
            lines = self.lines_before[(file.path, start)] if start else 0
            copy = self.directory / f"piece-{file.index}-{start}.ndjson"
            newlines = 0
            with file.path.open("rb") as source, copy.open("wb") as target:
                source.seek(start)
                left = end - start
                while left:
                    block = source.read(min(left, COPY_BYTES))
                    if not block:
                        raise UserError(f"ndjson file {file.name} changed while it was read")
                    newlines += block.count(b"\n")
                    target.write(block)
                    left -= len(block)
            self.lines_before[(file.path, end)] = lines + newlines
            files.append(replace(file, read_from=copy, lines_before=lines))
        return Plan(files, chunk.tables)

    def release(self, chunk: Plan) -> None:
        """Delete the copies of `chunk`'s pieces (the chunk is written)."""
        for file in chunk.json_files:
            if file.read_from is not None:
                file.read_from.unlink(missing_ok=True)


COPY_BYTES = 1 << 24


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
        events = _text_events(file)
        if events > limit and _cuttable(file):
            for start, end in _line_spans(file, limit * TEXT_BYTES_PER_EVENT):
                piece = replace(file, size=end - start, span=(start, end))
                units.append((file.index, _text_events(piece), piece))
            continue
        units.append((file.index, events, file))
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


def _cuttable(file: SourceFile) -> bool:
    """A plain NDJSON file whose first line ends in \\n (DuckDB reads a file without any \\n
    as lines ending in \\r)."""
    if file.format != "ndjson" or file.gzipped:
        return False
    with file.path.open("rb") as handle:
        return handle.readline(MAX_LINE_BYTES + 1).endswith(b"\n")


def _first_row(unit: SourceFile | TableSource) -> int:
    if isinstance(unit, TableSource):
        return unit.rows[0] if unit.rows else 0
    return unit.span[0] if unit.span else 0


def _plan_of(units: list[SourceFile | TableSource]) -> Plan:
    return Plan(
        [u for u in units if isinstance(u, SourceFile)],
        [u for u in units if isinstance(u, TableSource)],
    )
