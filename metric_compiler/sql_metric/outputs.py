"""Rule: the query returns a value column and named group keys.

The value column is the column named `value` (any case), else the first column; every other
column is a group key, named by its alias or its column name (`properties.region` is returned
as `region`).  Group keys need a name, must be distinct (case-insensitively), and may not be
named like the result's own columns (customer_id, window_id, window_start, window_end).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from metric_compiler.sql_metric.names import VALUE_COLUMN, WINDOW_COLUMNS
from metric_compiler.sql_metric.resolve import output_name
from metric_compiler.sql_metric.source import SqlSource


@dataclass(frozen=True)
class Outputs:
    value_index: int
    value_name: str  # as written ("" for an unnamed first column)
    group_keys: tuple[str, ...]
    group_indexes: tuple[int, ...]


def check_outputs(source: SqlSource, tree: exp.Expression) -> Outputs | None:
    if not isinstance(tree, exp.Select):
        return None
    projections = tree.expressions
    if not projections:
        source.report(tree, "the query returns no columns; return the value (and any group keys)")
        return None
    names = [output_name(p) for p in projections]
    named_value = [i for i, n in enumerate(names) if n and n.casefold() == VALUE_COLUMN]
    for i in named_value[1:]:
        source.report(projections[i], "the query returns more than one column named value")
    value_index = named_value[0] if named_value else 0
    keys: list[str] = []
    indexes: list[int] = []
    seen: dict[str, int] = {}
    ok = True
    for i, (projection, name) in enumerate(zip(projections, names, strict=True)):
        if i == value_index:
            continue
        if name is None:
            source.report(
                projection,
                f"column {i + 1} ({source.written(projection)}) is a group key and needs a name: "
                "add AS <name>",
            )
            ok = False
            continue
        key = name.casefold()
        if key in WINDOW_COLUMNS:
            source.report(
                projection,
                f"a group key cannot be named {name}: the result already has "
                f"{', '.join(WINDOW_COLUMNS)}; rename it with AS",
            )
            ok = False
        elif key in seen:
            source.report(
                projection, f"group key {name} is returned twice (also column {seen[key] + 1})"
            )
            ok = False
        seen.setdefault(key, i)
        keys.append(name)
        indexes.append(i)
    if not ok:
        return None
    return Outputs(value_index, names[value_index] or "", tuple(keys), tuple(indexes))
