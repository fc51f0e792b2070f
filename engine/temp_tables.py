"""Small temp tables from Python lists, built by DuckDB itself (no pyarrow on the way).

    create_temp(con, "mq_periods", {"period_key": ("BIGINT", keys), "status": ("VARCHAR", ...)})

The invoice engine hands DuckDB a few small tables built in Python (periods, windows, invoices,
pricing tables: rows per contract or per rate, never per event).  Each column travels as ONE
list parameter and the table is `SELECT unnest(CAST($1 AS T[])) AS c1, ...`: DuckDB converts
the lists in C++.  Measured (README "Performance"): 20,000 rows x 5 columns take ~0.06 s, while
going through pyarrow costs ~0.1 s to import it plus ~0.2 s on the first `pa.array` call, which
imports pandas when it is installed.  Values are data (parameters), never SQL text; the table
and column names and types are fixed names of the engine.

Exact numbers: a DECIMAL column's values (Decimal) are passed as their exact text and cast by
DuckDB (a Python Decimal parameter could go through DOUBLE).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import duckdb

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE = re.compile(r"^[A-Z]+(\(\d+, ?\d+\))?(\[\])*$")


def create_temp(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns: Mapping[str, tuple[str, Sequence[Any]]],
) -> None:
    """`CREATE OR REPLACE TEMP TABLE name` with the given columns: name -> (SQL type, values).

    All value lists must have the same length (the number of rows; 0 is fine)."""
    if not _NAME.match(name) or not all(_NAME.match(c) for c in columns):
        raise ValueError(f"temp table {name!r}: names must be plain lower-case identifiers")
    lengths = {len(values) for _type, values in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"temp table {name!r}: columns of different lengths {sorted(lengths)}")
    selects, params = [], []
    for i, (column, (sql_type, values)) in enumerate(columns.items(), start=1):
        if not _TYPE.match(sql_type):
            raise ValueError(f"temp table {name!r}: unexpected column type {sql_type!r}")
        if sql_type.startswith("DECIMAL"):
            text = [None if v is None else format(Decimal(v), "f") for v in values]
            selects.append(f"CAST(unnest(CAST(${i} AS VARCHAR[])) AS {sql_type}) AS {column}")
            params.append(text)
        else:
            selects.append(f"unnest(CAST(${i} AS {sql_type}[])) AS {column}")
            params.append(list(values))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {', '.join(selects)}",
        params,
    )
