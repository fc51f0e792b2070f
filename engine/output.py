"""Printing results: exact JSON (decimals as strings, timestamps as ISO 8601 UTC with `Z`),
readable tables on a terminal, and progress bars that stay quiet when not on a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return to_jsonable(value.model_dump(mode="python"))
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds" if value.microsecond else "seconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def print_json(value: Any) -> None:
    sys.stdout.write(dumps(value) + "\n")


def print_summary(summary: Any, fmt: str) -> None:
    """A command's summary: exact JSON (`--format json`) or its `lines()` as text."""
    if fmt == "json":
        print_json(summary)
    else:
        for line in summary.lines():
            print(line)


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(to_jsonable(v)) for v in row))
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


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Any]:
    """A rich progress bar on a terminal (stderr); a no-op object otherwise.

    Yields an object with `advance(n)` and `update(completed=..., total=..., description=...)`.
    """
    if not sys.stderr.isatty():
        yield _QuietProgress()
        return
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
