"""The rejects file of a batch: one JSON object per rejected event, in input order.

    {"batch_id": "...", "source": "/abs/path/events.ndjson", "record": 2,
     "reason": "malformed", "field": null,
     "message": "line 2 of events.ndjson: not valid JSON", "raw": "{\\"transaction_id\\": ..."}

`record` is the line number (NDJSON), the element number (JSON array) or the row number
(CSV, Parquet; header excluded), 1-based.  The event as sent is under `event`: the line's text
verbatim when it is strict JSON, the CSV row as an object of its text cells, the Parquet row as
an object of its values; a line that is not strict JSON (not JSON at all, or JSON only to
DuckDB's lenient reader: `NaN`, `Infinity`, trailing commas) is kept as a string under `raw`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import duckdb

from warehouse.ingest.readers import TableSource
from warehouse.ingest.sources import POS_SHIFT, SourceFile
from warehouse.ingest.sqltext import lit
from warehouse.ingest.staging import record_payload_sql
from warehouse.sqlrows import first_row

UNITS = {"ndjson": "line", "json": "line", "csv": "row", "parquet": "row"}
CHUNK_ROWS = 1_000_000  # rejects written per sorted slice (see write_rejects)
# DuckDB's JSON reader also takes what strict JSON parsers refuse: NaN, Infinity, inf (any case,
# signed) and trailing commas.  With every string literal blanked out (STRINGS), a line that
# still holds such a word or a comma before a closing bracket is kept as text under `raw`, so
# every rejects line is strict JSON.
STRINGS = lit(r'"(\\.|[^"\\])*"')
LENIENT = lit(r"(?i)nan|inf|,\s*[\]}]")


def write_rejects(
    work: duckdb.DuckDBPyConnection,
    batch_id: str,
    files: Sequence[SourceFile],
    units: dict[int, str],
    tables: Sequence[TableSource],
    target: Path,
) -> int:
    """Append the rejects of `staged` to `target` (created when there is a first one; a
    large batch's chunks append in input order); returns how many."""
    work.execute(
        "CREATE OR REPLACE TEMP TABLE rejected AS "
        "SELECT pos, reason, field, message FROM staged WHERE reason IS NOT NULL"
    )
    count = int(first_row(work, "SELECT count(*) FROM rejected")[0])
    if count == 0:
        return 0
    work.execute(
        "CREATE OR REPLACE TEMP TABLE reject_sources (src BIGINT, path VARCHAR, name VARCHAR, "
        "unit VARCHAR)"
    )
    work.executemany(
        "INSERT INTO reject_sources VALUES (?, ?, ?, ?)",
        [[f.index, f.name, f.path.name, units.get(f.index, UNITS[f.format])] for f in files],
    )
    work.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE reject_payloads AS
        SELECT r.pos, CASE WHEN json_valid(r.raw) AND NOT regexp_matches(
                                    regexp_replace(r.raw, {STRINGS}, '""', 'g'), {LENIENT})
                           THEN '"event":' || r.raw
                           ELSE '"raw":' || to_json(r.raw) END AS payload
        FROM records r SEMI JOIN rejected j ON j.pos = r.pos
        """  # noqa: S608 - constant patterns
    )
    shift = 1 << POS_SHIFT

    def has_rejects(file: SourceFile) -> bool:
        lo, hi = file.index * shift, (file.index + 1) * shift
        sql = "SELECT count(*) FROM rejected WHERE pos >= ? AND pos < ?"
        return bool(first_row(work, sql, [lo, hi])[0])

    for table in tables:
        if has_rejects(table.file):
            payloads = record_payload_sql(table, "rejected")
            work.execute(
                f"INSERT INTO reject_payloads SELECT pos, '\"event\":' || payload FROM ({payloads})"  # noqa: S608
            )
    # Written in slices of CHUNK_ROWS rejects (by input position), each sorted on its own and
    # appended: ordering all rejects with their text at once ran out of memory (10M rejected
    # events of a dump sent with a wrong clock, 3 GiB limit).
    bounds = work.execute(
        f"""
        SELECT min(pos), max(pos)
        FROM (SELECT pos, (row_number() OVER (ORDER BY pos) - 1) // {CHUNK_ROWS} AS chunk
              FROM rejected)
        GROUP BY chunk ORDER BY chunk
        """  # noqa: S608 - a constant
    ).fetchall()
    part = target.with_name(target.name + ".part")
    copy_slice = f"""
        COPY (
            SELECT '{{"batch_id":' || to_json({lit(batch_id)})
                || ',"source":' || to_json(s.path)
                || ',"record":' || (j.pos & {shift - 1})
                || ',"reason":' || to_json(j.reason)
                || ',"field":' || coalesce(to_json(j.field), 'null')
                || ',"message":' || to_json(s.unit || ' ' || (j.pos & {shift - 1})
                                            || ' of ' || s.name || ': ' || j.message)
                || coalesce(',' || p.payload, '') || '}}'
            FROM (SELECT * FROM rejected WHERE pos BETWEEN $low AND $high) j
            JOIN reject_sources s ON s.src = j.pos >> {POS_SHIFT}
            LEFT JOIN (SELECT * FROM reject_payloads WHERE pos BETWEEN $low AND $high) p
              ON p.pos = j.pos
            ORDER BY j.pos
        ) TO {lit(str(part))}
          (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER {lit(chr(1))})
    """  # noqa: S608 - batch id and path rendered by sqlglot
    with target.open("ab") as out:
        for low, high in bounds:
            work.execute(copy_slice, {"low": low, "high": high})
            with part.open("rb") as piece:
                shutil.copyfileobj(piece, out, 1 << 20)
    part.unlink(missing_ok=True)
    return count
