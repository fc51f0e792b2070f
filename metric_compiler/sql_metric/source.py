"""The author's text, and where a tree node came from in it.

sqlglot keeps `meta` (line, col, start, end) on identifiers, literals and function names, not on
keywords or operators.  A node's span is the union of the spans of the nodes under it; for a
construct that starts with a keyword (LIMIT, ORDER BY, OVER, a statement), the keyword's token is
found in the token stream just before the first located node under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import TokenError
from sqlglot.tokens import Token

from metric_compiler.sql_metric.problems import SqlProblem

# Nodes sqlglot keeps no place for, and the token types they are read from (Var: its own text).
UNLOCATED: dict[type[exp.Expression], tuple[str, ...]] = {
    exp.Placeholder: ("PLACEHOLDER", "PARAMETER"),
    exp.Parameter: ("PARAMETER",),
    exp.CurrentTimestamp: ("CURRENT_TIMESTAMP",),
    exp.CurrentDate: ("CURRENT_DATE",),
    exp.CurrentTime: ("CURRENT_TIME",),
    exp.CurrentUser: ("CURRENT_USER",),
    exp.Var: (),
}


def _read_from(token: Token, node: exp.Expression) -> bool:
    """Whether `token` is one `node` (an UNLOCATED kind) can be read from."""
    if isinstance(node, exp.Var):
        return token.text.casefold() == node.name.casefold()
    kind = next(k for k in UNLOCATED if isinstance(node, k))
    return token.token_type.name in UNLOCATED[kind]


def _same_word(node: exp.Expression, like: exp.Expression) -> bool:
    """Whether `node` is read from the same kind of token as `like` (a Var: the same word)."""
    if isinstance(like, exp.Var):
        return isinstance(node, exp.Var) and node.name.casefold() == like.name.casefold()
    return type(node) is type(like)


@dataclass
class SqlSource:
    text: str
    problems: list[SqlProblem] = field(default_factory=list)

    @cached_property
    def tokens(self) -> list[Token]:
        try:
            return DuckDB().tokenize(self.text)
        except TokenError:
            return []

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, col) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = self.text.count("\n", 0, offset) + 1
        col = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return line, col

    def at(self, start: int, end: int, message: str) -> SqlProblem:
        line, col = self.position(start)
        return SqlProblem(start, max(end, start + 1), line, col, message)

    def span(self, node: exp.Expression) -> tuple[int, int] | None:
        """[start, end) of the text a node came from, when sqlglot located anything under it;
        a function call includes its parentheses."""
        starts, ends = [], []
        for child in node.walk():
            meta = child._meta  # (no empty meta dicts created)
            if meta and "start" in meta:
                starts.append(meta["start"])
                ends.append(meta["end"] + 1)
        if not starts:
            return None
        start, end = min(starts), max(ends)
        if isinstance(node, exp.Func):
            end = max(end, self._call_end(start))
        return start, end

    def _call_end(self, start: int) -> int:
        """The end of `name(...)` when a name token starts at `start` (else 0)."""
        tokens = self.tokens
        index = next((i for i, t in enumerate(tokens) if t.start == start), None)
        if index is None or index + 1 >= len(tokens) or tokens[index + 1].text != "(":
            return 0
        depth = 0
        for token in tokens[index + 1 :]:
            if token.text == "(":
                depth += 1
            elif token.text == ")":
                depth -= 1
                if depth == 0:
                    return token.end + 1
        return 0

    def arguments_written(self, start: int) -> int | None:
        """How many arguments the call `name(...)` whose name token starts at `start` is written
        with (None when no such call is there)."""
        tokens = self.tokens
        index = next((i for i, t in enumerate(tokens) if t.start == start), None)
        if index is None or index + 1 >= len(tokens) or tokens[index + 1].text != "(":
            return None
        depth, commas = 0, 0
        for token in tokens[index + 1 :]:
            if token.text in ("(", "["):
                depth += 1
            elif token.text in (")", "]"):
                depth -= 1
                if depth == 0:
                    return commas + 1 if token.start > tokens[index + 1].end + 1 else 0
            elif token.text == "," and depth == 1:
                commas += 1
        return None

    def name_before(self, offset: int) -> str | None:
        """The function name of `name(` written just before `offset`, if that is what is
        there."""
        previous = [t for t in self.tokens if t.start < offset]
        if len(previous) >= 2 and previous[-1].text == "(":
            return previous[-2].text
        return None

    def call(self, node: exp.Expression) -> tuple[int, int, str] | None:
        """[start, end) and name of `name(...)` for a function sqlglot located only by its
        arguments (e.g. Ceil): the name token before the first argument and its opening
        parentheses; None when the text does not read so."""
        span = self.span(node)
        if span is None:
            return None
        previous = [t for t in self.tokens if t.start < span[0]]
        while len(previous) >= 2 and previous[-1].text == "(" and previous[-2].text == "(":
            previous.pop()
        if len(previous) >= 2 and previous[-1].text == "(" and previous[-2].text[:1].isalpha():
            start = previous[-2].start
            return start, max(span[1], self._call_end(start)), previous[-2].text
        return None

    def keyword_after(self, offset: int, *words: str) -> Token | None:
        """The first token starting with one of `words` (any case) at or after `offset`."""
        wanted = {w.upper() for w in words}
        for token in self.tokens:
            if (
                token.start >= offset
                and token.text.split()
                and (token.text.split()[0].upper() in wanted)
            ):
                return token
        return None

    def keyword_before(self, offset: int, *words: str) -> Token | None:
        """The last token starting with one of `words` (any case) that starts before `offset`
        (sqlglot reads some keyword pairs as one token: "ORDER BY", "GROUP BY")."""
        wanted = {w.upper() for w in words}
        found = None
        for token in self.tokens:
            if token.start >= offset:
                break
            first = token.text.split()[0].upper() if token.text.split() else ""
            if first in wanted or token.text.upper() in wanted:
                found = token
        return found

    def sequence(self, words: tuple[str, ...], nth: int) -> tuple[int, int]:
        """[start, end) of the nth (0-based) run of words `words` (any case) in the token
        stream; the start of the text when there are fewer runs."""
        flat = [(w.upper(), t) for t in self.tokens for w in (t.text.split() or [""])]
        wanted = [w.upper() for w in words]
        runs = [
            i
            for i in range(len(flat) - len(wanted) + 1)
            if [w for w, _ in flat[i : i + len(wanted)]] == wanted
        ]
        if nth < len(runs):
            first, last = flat[runs[nth]][1], flat[runs[nth] + len(wanted) - 1][1]
            return first.start, last.end + 1
        return 0, 1

    def locate(self, node: exp.Expression, *keywords: str) -> tuple[int, int]:
        """Where to point for a problem with `node`: at its leading keyword if given, else at
        the node's own span; the start of the text when nothing is known."""
        span = self.span(node)
        if keywords:
            token = self.keyword_before(span[0] if span else len(self.text) + 1, *keywords)
            if token is not None:
                return token.start, token.end + 1
        if span:
            return span
        token = self._token_of(node)
        if token is not None:
            return token
        return 0, 1

    def _token_of(self, node: exp.Expression) -> tuple[int, int] | None:
        """[start, end) of a word sqlglot keeps no place for (a parameter, current_timestamp,
        an interval's unit, COLLATE's collation): for the nth such node of the tree, the nth
        token it can be read from, in text order."""
        if not isinstance(node, tuple(UNLOCATED)):
            return None
        same = [n for n in node.root().walk(bfs=False) if _same_word(n, node)]
        index = next((i for i, n in enumerate(same) if n is node), None)
        tokens = self.tokens
        found = [i for i, t in enumerate(tokens) if _read_from(t, node)]
        if index is None or index >= len(found):
            return None
        at = found[index]
        start, end = tokens[at].start, tokens[at].end + 1
        if tokens[at].text in ("$", "?") and at + 1 < len(tokens) and tokens[at + 1].start == end:
            end = tokens[at + 1].end + 1  # $1, $name
        return start, end

    def problem(self, node: exp.Expression, message: str, *keywords: str) -> SqlProblem:
        start, end = self.locate(node, *keywords)
        return self.at(start, end, message)

    def report(self, node: exp.Expression, message: str, *keywords: str) -> None:
        self.problems.append(self.problem(node, message, *keywords))

    def written(self, node: exp.Expression) -> str:
        """The text of a node as the author wrote it (its located span), else its SQL."""
        span = self.span(node)
        return self.text[span[0] : span[1]] if span else node.sql("duckdb")
