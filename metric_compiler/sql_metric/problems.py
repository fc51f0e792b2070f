"""Problems found in a SQL metric, each tied to a place in the author's text.

A problem prints as its position and message, then the source line with carets under the span:

    line 1, col 15: table function read_csv is not allowed; a SQL metric reads only `events`
      SELECT * FROM read_csv('/etc/passwd')
                    ^^^^^^^^
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from warehouse.errors import UserError


@dataclass(frozen=True, order=True)
class SqlProblem:
    """One problem: 0-based character offsets [start, end) into the text, 1-based line/col
    (line 0: a problem of the whole query, without a place in the text)."""

    start: int
    end: int
    line: int
    col: int
    message: str

    def format(self, text: str) -> str:
        """`line L, col C: message` followed by the source line and a caret line."""
        if self.line == 0:
            return self.message
        lines = text.split("\n")
        head = f"line {self.line}, col {self.col}: {self.message}"
        if not 1 <= self.line <= len(lines):
            return head
        source = lines[self.line - 1].replace("\t", " ")
        width = max(1, min(self.end - self.start, len(source) - (self.col - 1)))
        caret = " " * (self.col - 1) + "^" * width
        return f"{head}\n  {source.rstrip()}\n  {caret}"


def whole_query_problem(message: str) -> SqlProblem:
    """A problem of the whole query (found by DuckDB when binding it, not in the text)."""
    return SqlProblem(0, 0, 0, 0, message)


def format_problems(text: str, problems: Sequence[SqlProblem]) -> list[str]:
    return [p.format(text) for p in problems]


class SqlMetricError(UserError):
    """A SQL metric with problems; every problem is listed, in the order of the text."""

    def __init__(self, text: str, problems: Sequence[SqlProblem], subject: str = "SQL metric"):
        self.text = text
        self.problems = sorted(problems)
        head = f"{len(self.problems)} problem(s) in the {subject}"
        body: list[str] = []
        for problem in self.problems:
            first, *rest = problem.format(text).split("\n")
            body.extend([f"  - {first}", *(f"    {line}" for line in rest)])
        super().__init__("\n".join([head, *body]))
