"""Rule: DuckDB's own parser accepts the text.

sqlglot is more forgiving than DuckDB (it reads `SELECT a,, b` and an empty `GROUP BY`), and a
metric must mean what DuckDB would make of it, so the text is also given to DuckDB's parser
(`json_serialize_sql`: parse only, nothing runs, the text is a bound parameter) in a private
in-memory connection without file access.  Only syntax errors are reported here; what DuckDB
cannot serialise (statements other than SELECT) is reported by the parse rule.
"""

from __future__ import annotations

import json
import re
import threading

import duckdb

from metric_compiler.sql_metric.source import SqlSource
from warehouse.sqlrows import first_row

_local = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(
            ":memory:",
            config={"enable_external_access": False, "threads": 1, "lock_configuration": True},
        )
        _local.con = con
    return con


def _char_offset(text: str, byte_offset: int) -> int:
    return len(text.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))


def check_duckdb_syntax(source: SqlSource) -> None:
    (text,) = first_row(_connection(), "SELECT json_serialize_sql(?::VARCHAR)", [source.text])
    result = json.loads(text) if text else {}
    if not result.get("error") or result.get("error_type") != "parser":
        return
    location = re.fullmatch(r"\[(\d+),(\d+)\]", str(result.get("location", "")))
    offset, length = (int(location[1]), int(location[2])) if location else (0, 1)
    start = _char_offset(source.text, offset)
    end = _char_offset(source.text, offset + max(length, 1))
    message = str(result.get("error_message") or "").removeprefix("syntax error ").strip()
    source.problems.append(source.at(start, end, f"syntax error: {message or 'invalid SQL'}"))
