"""CSV rows whose number of fields is not the header's: each is rejected, the file's other rows
are ingested ("one bad event never drops a good one").

DuckDB's CSV reader cannot read such a file: in the rows its sniffer samples, a ragged row makes
it take the file for one column (or another row for its header); later, the read fails with
"CSV Error on Line: N".  On that error path only, `split` reads the file with Python's csv
module and writes a copy of it without the ragged rows (the header's and the other rows' text
verbatim) into the batch's scratch directory; the copy is what DuckDB reads
(`SourceFile.read_from`).  Rows keep their numbers in the file as sent: the i-th row of the copy
is row i + k of the file, k being the number of ragged rows before it (`numbered_source`: an
ASOF join on the ragged rows' offsets).  The ragged rows go into `staged` as `malformed`
rejects with their text under `raw` (`stage`).

More than MAX_RAGGED ragged rows is no stray row but a file in another shape (a delimiter DuckDB
did not detect, a broken export): the file is refused, naming the first one, as before.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb

from warehouse.ingest.sources import MAX_LINE_BYTES, POS_SHIFT, SourceFile, open_source
from warehouse.ingest.sqltext import int_lit

MAX_RAGGED = 1_000
DELIMITERS = (",", ";", "\t", "|")
# The quoting conventions DuckDB's sniffer detects (the csv module's arguments): a value in
# double quotes, a quote in it doubled (RFC 4180); escaped by a backslash; a value in single
# quotes.  The file is split by the one under which most rows have the header's fields (the
# first of those): under another, its rows holding a quoted delimiter would be ragged.
QUOTING_ROWS = 10_000  # the rows the quoting is chosen by (a large file is not read thrice)
QUOTINGS: tuple[dict[str, object], ...] = (
    {"quotechar": '"', "doublequote": True},
    {"quotechar": '"', "doublequote": False, "escapechar": "\\"},
    {"quotechar": "'", "doublequote": True},
)


@dataclass(frozen=True)
class Ragged:
    """The ragged rows of a CSV file: (row number from 1, header excluded; message; text)."""

    rows: tuple[tuple[int, str, str], ...]

    def offsets(self) -> list[tuple[int, int]]:
        """(o, k): after the k-th ragged row (k from 1), the rows of the copy from number o + 1
        on are k rows further in the file.  One pair per distinct o, its greatest k."""
        pairs: dict[int, int] = {}
        for k, (record, _, _) in enumerate(self.rows, 1):
            pairs[record - k] = k
        return sorted(pairs.items())


def first_problem(file: SourceFile, fields: tuple[str, ...]) -> str | None:
    """The message of the first ragged row of `file` (None when its first line does not name
    `fields`, or no row is ragged)."""
    for _, message, _ in _rows(file, fields, _quoting(file, fields, "replace"), limit=1):
        return message
    return None


def split(file: SourceFile, fields: tuple[str, ...], scratch: Path) -> tuple[SourceFile, Ragged]:
    """(`file` read from a copy without its ragged rows, the ragged rows); a ValueError naming
    the first ragged row when there are more than MAX_RAGGED (or none: not this error); a
    UnicodeDecodeError when the file is not UTF-8 (the copy would hold other text)."""
    copy = scratch / f"csv-{file.index}.csv"
    ragged: list[tuple[int, str, str]] = []
    try:
        quoting = _quoting(file, fields, "strict")
        with copy.open("w", encoding="utf-8", newline="") as out:
            for row in _rows(file, fields, quoting, copy_to=out, errors="strict"):
                ragged.append(row)
                if len(ragged) > MAX_RAGGED:
                    break
    except UnicodeDecodeError:
        copy.unlink(missing_ok=True)
        raise
    if not ragged or len(ragged) > MAX_RAGGED:
        copy.unlink(missing_ok=True)
        raise ValueError(ragged[0][1] if ragged else "no ragged row")
    return replace(file, read_from=copy), Ragged(tuple(ragged))


def _quoting(file: SourceFile, fields: tuple[str, ...], errors: str) -> dict[str, object]:
    """The one of QUOTINGS under which most rows of `file` have the header's fields."""
    best, most = QUOTINGS[0], -1
    for quoting in QUOTINGS:
        matching = [0]
        rows = _rows(
            file, fields, quoting, errors=errors, matching=matching, max_records=QUOTING_ROWS
        )
        for _ in rows:
            pass
        if matching[0] > most:
            best, most = quoting, matching[0]
    return best


def _rows(
    file: SourceFile,
    fields: tuple[str, ...],
    quoting: dict[str, object],
    *,
    limit: int | None = None,
    copy_to=None,
    errors: str = "replace",
    matching: list[int] | None = None,
    max_records: int | None = None,
) -> Iterator[tuple[int, str, str]]:
    """The ragged rows of `file` read with `quoting` (row number, message, text), the others
    written to `copy_to` (a text file) with the header, each as written, and counted in
    `matching[0]`, up to `max_records` rows.  `errors`: how bytes that are not UTF-8 are
    decoded (open's argument)."""
    with open_source(file.path, "rt", encoding="utf-8-sig", errors=errors, newline="") as handle:
        header_line = handle.readline()
        for delimiter in DELIMITERS:
            header = next(csv.reader([header_line], delimiter=delimiter, **quoting), [])
            if set(fields) <= set(header):
                break
        else:
            return
        if copy_to is not None:
            copy_to.write(header_line)
        taken: list[str] = []

        def lines() -> Iterator[str]:
            for line in handle:
                taken.append(line)
                yield line

        # a value may be as long as a row DuckDB reads (the csv module's limit, process-wide,
        # is 131,072 characters by default: a longer value raised csv.Error)
        if csv.field_size_limit() < MAX_LINE_BYTES:
            csv.field_size_limit(MAX_LINE_BYTES)
        reader = csv.reader(lines(), delimiter=delimiter, **quoting)
        record = found = 0
        line = 2  # of the row about to be read
        for row in reader:
            text = "".join(taken)
            taken.clear()
            if row:  # a blank line is no row (DuckDB's reader skips it too)
                record += 1
                if max_records is not None and record > max_records:
                    return
                if len(row) == len(header):
                    if copy_to is not None:
                        copy_to.write(text)
                    if matching is not None:
                        matching[0] += 1
                else:
                    yield (
                        record,
                        f"line {line} has {len(row)} fields and the header {len(header)}; a "
                        f"value holding the delimiter {delimiter!r}, a quote or a line end "
                        "must be in double quotes",
                        text.rstrip("\r\n"),
                    )
                    found += 1
                    if limit is not None and found >= limit:
                        return
            line = reader.line_num + 2


def numbered_source(read_sql: str, ragged: Ragged, number: str, record: str) -> str:
    """SQL: the rows of the copy (`read_sql`, a FROM item) with `record`, each row's number in
    the file as sent (`number`: a free column name for its number in the copy): an ASOF join on
    the ragged rows' offsets gives the number of ragged rows before it."""
    values = ", ".join(f"({int_lit(o)}, {int_lit(k)})" for o, k in ragged.offsets())
    return (
        f"(SELECT c.*, c.{number} + coalesce(r.k, 0) AS {record} "  # noqa: S608
        f"FROM (SELECT *, row_number() OVER () AS {number} FROM {read_sql}) c "
        f"ASOF LEFT JOIN (SELECT * FROM (VALUES {values}) v(o, k)) r ON c.{number} > r.o)"
    )


def stage(con: duckdb.DuckDBPyConnection, file: SourceFile, ragged: Ragged) -> None:
    """The ragged rows of `file` into `staged` (rejected: malformed) and their text into
    `record_texts` (the rejects file's `raw`)."""
    base = file.index << POS_SHIFT
    positions = [base + record for record, _, _ in ragged.rows]
    con.execute(
        "INSERT INTO staged (pos, reason, message) "
        "SELECT unnest($pos::BIGINT[]), 'malformed', unnest($message::VARCHAR[])",
        {"pos": positions, "message": [message for _, message, _ in ragged.rows]},
    )
    con.execute(
        "INSERT INTO record_texts SELECT unnest($pos::BIGINT[]), unnest($raw::VARCHAR[]), "
        "NULL, false",
        {"pos": positions, "raw": [text for _, _, text in ragged.rows]},
    )
