"""Printing results: exact JSON (decimals as strings, timestamps as ISO 8601 UTC with `Z`),
readable tables on a terminal, and progress bars that stay quiet when not on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer, TypeAdapter
from pydantic_core import to_json

from warehouse.errors import visible


def decimal_text(value: Decimal) -> str:
    """A Decimal as exact JSON text: positional, never an exponent (`1E+3` -> "1000")."""
    return format(value, "f")


def timestamp_text(value: datetime) -> str:
    """A timestamp as ISO 8601 UTC with `Z` (naive means UTC); microseconds only when set."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds") + "Z"


# The field types of `ExactJson` models: JSON as `to_jsonable` writes them.
JsonDecimal = Annotated[Decimal, PlainSerializer(decimal_text, return_type=str, when_used="json")]
JsonTimestamp = Annotated[
    datetime, PlainSerializer(timestamp_text, return_type=str, when_used="json")
]


class ExactJson(BaseModel):
    """A model whose Decimal and datetime fields are JsonDecimal and JsonTimestamp, so pydantic
    writes its JSON exactly as `to_jsonable` + `json.dumps` would, in Rust (`dumps`; measured:
    120,000 invoices in 4.6x less time; tests/test_output.py checks every such model's fields
    and the identical text)."""


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return to_jsonable(value.model_dump(mode="python"))
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return timestamp_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return value


def cell_text(value: Any) -> str:
    """A value as a table or CSV cell: its JSON text unquoted (`true`, `1.50`,
    `2026-03-01T00:00:00Z`), or empty for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(to_jsonable(value))


def dumps(value: Any) -> str:
    """`value` as exact JSON, indented by 2, non-ASCII kept: what `json.dumps(to_jsonable(value),
    indent=2, ensure_ascii=False)` gives, written by pydantic-core (Python's json module writes
    indented JSON in pure Python: 9 of the 30 s that 120,000 invoices took)."""
    if isinstance(value, ExactJson):
        return value.model_dump_json(indent=2)
    if isinstance(value, list) and value and all(isinstance(v, ExactJson) for v in value):
        kinds = {type(v) for v in value}
        if len(kinds) == 1:
            return _list_adapter(kinds.pop()).dump_json(value, indent=2).decode()
    return to_json(to_jsonable(value), indent=2).decode()


@cache
def _list_adapter(model: type[ExactJson]) -> TypeAdapter:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def print_json(value: Any) -> None:
    sys.stdout.write(dumps(value) + "\n")


def print_summary(summary: Any, fmt: str) -> None:
    """A command's summary: exact JSON (`--format json`) or its `lines()` as text."""
    if fmt == "json":
        print_json(summary)
    else:
        for line in summary.lines():
            print(line)


# Rich lays a table out at about 0.7 ms a row (measured: 85 s for the 120,000 invoices of a year
# of 10,000 customers); past this many rows a table is printed as plain aligned columns.
RICH_TABLE_ROWS = 1_000


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on a terminal; plain aligned columns when stdout is not a terminal (rich
    would cut every value to fit 80 columns: ids end in "...") or past RICH_TABLE_ROWS rows."""
    # (data sent by clients: a control character must not reach the terminal)
    cells = [[visible(cell_text(v)) for v in row] for row in rows]
    title = visible(title) if title else title
    if len(cells) > RICH_TABLE_ROWS or not sys.stdout.isatty():
        _print_plain_table(title, columns, cells)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title) if title else None)
    for column in columns:
        table.add_column(Text(column))
    for row in cells:  # as Text: a value such as "[red]" is data, not rich markup
        table.add_row(*map(Text, row))
    print_rich(table)


def print_rich(renderable: Any, min_width: int = 0) -> None:
    """Print a rich table on stdout: on a terminal at the terminal's width (at least
    `min_width`); not on a terminal (a file, a pipe, a cron job's log) as wide as the table
    needs, so no value is cut short with an ellipsis."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console()
    width = max(min_width, console.width)
    if not console.is_terminal:
        wide = console.options.update_width(1_000_000)
        width = max(width, Measurement.get(console, wide, renderable).maximum)
    Console(width=width).print(renderable)


def _print_plain_table(
    title: str | None, columns: Sequence[str], cells: Sequence[Sequence[str]]
) -> None:
    """Columns separated by two spaces, each as wide as its widest cell, under a header and a
    rule; the title first."""
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
    sys.stdout.write("\n".join(lines) + "\n")


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Any]:
    """A rich progress bar on a terminal (stderr); a no-op object otherwise.

    Yields an object with `advance(n)` and `update(completed=..., total=..., description=...)`.
    """
    if not sys.stderr.isatty():
        yield _QuietProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),  # rich's default is stdout: a line into a redirected one
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield _RichProgress(bar, task)


class _QuietProgress:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, **kwargs: Any) -> None:
        pass


class _RichProgress:
    def __init__(self, bar: Any, task: Any):
        self._bar, self._task = bar, task

    def advance(self, n: float = 1) -> None:
        self._bar.advance(self._task, n)

    def update(self, **kwargs: Any) -> None:
        self._bar.update(self._task, **kwargs)
