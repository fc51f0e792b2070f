"""Rule: every table is `events` or a CTE, and every column resolves to something it may read.

    resolve(source, tree) -> Bound

Walks the query block by block (CTEs, subqueries in FROM, and subqueries in expressions, each
with the blocks around it) and binds each column reference:

    EventColumn(name)      transaction_id, event_type or timestamp of the block's `events`
    PropertyRef(name)      properties.<name> (also events.properties.<name>, e.properties.<name>)
    SourceColumn(name)     an output column of the CTE or subquery the block reads
    AliasRef(projection)   a SELECT alias used in the select list, GROUP BY or HAVING

and reports, with "did you mean", everything else: other tables (also `schema.table` and file
paths used as tables), unknown or hidden columns (customer_id: a metric is written for one
customer), `properties` without a name, references to an enclosing query (correlated
subqueries are not scoped), names that are both a column and an alias in HAVING, and names with
meterql's reserved prefix.  A bare name binds as DuckDB binds it: a column of the relation
first, then a SELECT alias (select list, GROUP BY, HAVING; not WHERE).  The
scoping rewrite (scope.py) resolves its own copy of the tree with the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from metric_compiler.sql_metric.names import (
    BASE_COLUMNS,
    EVENTS_TABLE,
    HIDDEN_COLUMNS,
    PROPERTIES,
    RESERVED_PREFIX,
)
from metric_compiler.sql_metric.source import SqlSource
from warehouse.errors import suggest

EVENTS = "events"
CTE = "cte"
DERIVED = "derived"


@dataclass(frozen=True)
class EventColumn:
    name: str  # one of BASE_COLUMNS


@dataclass(frozen=True)
class PropertyRef:
    name: str  # case-sensitive, as written


@dataclass(frozen=True)
class SourceColumn:
    name: str


@dataclass(frozen=True)
class AliasRef:
    projection: exp.Alias


Binding = EventColumn | PropertyRef | SourceColumn | AliasRef


@dataclass(frozen=True)
class Cte:
    """The query of a CTE or a subquery in FROM, and the names it gives its columns."""

    query: exp.Expression
    columns: dict[str, str]  # casefolded name -> name
    renamed: tuple[str, ...]  # a column list (`name(a, b)`, `AS t(a, b)`): the first columns

    def projection(self, name: str) -> exp.Expression | None:
        """The select-list entry that makes the column `name` (None: not a plain SELECT)."""
        if not isinstance(self.query, exp.Select):
            return None
        for i, projection in enumerate(self.query.expressions):
            own = self.renamed[i] if i < len(self.renamed) else output_name(projection)
            if own is not None and own.casefold() == name.casefold():
                return projection
        return None


@dataclass
class Source:
    """The one relation a query block reads."""

    kind: str  # EVENTS | CTE | DERIVED
    node: exp.Expression  # the Table or Subquery in FROM
    alias: str  # the name the block refers to it by ("" for an unnamed subquery)
    columns: dict[str, str]  # casefolded name -> name (EVENTS: the base columns)
    query: Cte | None = None  # CTE, DERIVED: the query that makes the relation

    def has(self, name: str) -> bool:
        return name.casefold() in self.columns


@dataclass
class Block:
    select: exp.Select
    outer: Block | None
    source: Source | None = None
    unreadable: bool = False  # FROM names something refused: its columns are not checked
    aliases: dict[str, exp.Alias] = field(default_factory=dict)


@dataclass
class Bound:
    blocks: dict[int, Block] = field(default_factory=dict)  # id(select) -> block (holds it)
    # id(column) -> (the column, its binding): the column is held so that its id is never
    # reused while this lives (scoping replaces columns by new nodes: a new node at a freed
    # column's address took that column's binding, e.g. a tie-break column became a property)
    columns: dict[int, tuple[exp.Column, Binding]] = field(default_factory=dict)
    properties: list[str] = field(default_factory=list)  # property names read, in text order
    event_references: int = 0

    def block(self, select: exp.Select) -> Block:
        return self.blocks[id(select)]

    def binding(self, column: exp.Column) -> Binding | None:
        entry = self.columns.get(id(column))
        return entry[1] if entry is not None and entry[0] is column else None


def output_name(projection: exp.Expression) -> str | None:
    """The name a projection's column gets (None: an expression without AS)."""
    if isinstance(projection, exp.Alias):
        return projection.alias
    if isinstance(projection, exp.Column):
        return projection.name
    return None


def resolve(source: SqlSource, tree: exp.Expression) -> Bound:
    resolver = _Resolver(source)
    if isinstance(tree, exp.Select):
        resolver.query(tree, {}, None)
    return resolver.bound


def _column_list(node: exp.Expression) -> tuple[str, ...]:
    alias = node.args.get("alias")
    return tuple(c.name for c in alias.columns) if isinstance(alias, exp.TableAlias) else ()


def _reserved(name: str) -> bool:
    return name.casefold().startswith(RESERVED_PREFIX)


class _Resolver:
    def __init__(self, source: SqlSource):
        self.source = source
        self.bound = Bound()

    # -- query blocks -----------------------------------------------------------------------------

    def query(
        self, node: exp.Expression, ctes: dict[str, Cte], outer: Block | None
    ) -> dict[str, str]:
        """Resolve one query; its output columns (casefolded name -> name)."""
        if not isinstance(node, exp.Select):
            return {}  # set operations are refused by the allow-list
        ctes = dict(ctes)
        with_ = node.args.get("with_")
        defined: set[str] = set()
        for cte in with_.expressions if with_ else []:
            name = cte.alias
            where = cte.args.get("alias") or cte
            if _reserved(name):
                self._reserved(where, name)
            elif name.casefold() == EVENTS_TABLE:
                self.source.report(
                    where, "a CTE cannot be named events: that is the event table; rename it"
                )
            elif name.casefold() in defined:
                self.source.report(where, f"CTE {name} is defined twice")
            defined.add(name.casefold())
            outputs = self._renamed(self.query(cte.this, ctes, outer), cte)
            ctes[name.casefold()] = Cte(cte.this, outputs, _column_list(cte))

        block = Block(node, outer)
        self.bound.blocks[id(node)] = block
        from_ = node.args.get("from_")
        if from_ is not None:
            block.source = self.relation(from_.this, ctes, outer)
            block.unreadable = block.source is None
        for join in node.args.get("joins") or []:  # refused by the allow-list; names still checked
            self.relation(join.this, ctes, outer)
            block.unreadable = True

        for projection in node.expressions:
            if isinstance(projection, exp.Alias):
                name = projection.alias
                if _reserved(name):
                    self._reserved(projection.args["alias"], name)
                block.aliases.setdefault(name.casefold(), projection)

        for projection in node.expressions:
            self.expression(projection, block, ctes, clause="select")
        for key in ("where", "group", "having"):
            clause = node.args.get(key)
            if clause is not None:
                self.expression(clause, block, ctes, clause=key)

        outputs: dict[str, str] = {}
        for projection in node.expressions:
            name = output_name(projection)
            if name is not None:
                outputs.setdefault(name.casefold(), name)
        return outputs

    def _renamed(self, outputs: dict[str, str], node: exp.Expression) -> dict[str, str]:
        """Outputs after a column list (`name(a, b) AS (...)`, `(...) AS t(a, b)`)."""
        alias = node.args.get("alias")
        columns = alias.columns if isinstance(alias, exp.TableAlias) else []
        if not columns:
            return outputs
        names = [c.name for c in columns]
        for column, name in zip(columns, names, strict=True):
            if _reserved(name):
                self._reserved(column, name)
        rest = list(outputs.values())[len(names) :]
        return {n.casefold(): n for n in [*names, *rest]}

    def relation(
        self, node: exp.Expression, ctes: dict[str, Cte], outer: Block | None
    ) -> Source | None:
        if isinstance(node, exp.Subquery):
            if not isinstance(node.this, exp.Select):
                if not isinstance(node.this, exp.SetOperation):  # set operations: allow-list
                    self.source.report(
                        node, "a parenthesised table is not supported; write FROM events"
                    )
                return None
            outputs = self._renamed(self.query(node.this, ctes, outer), node)
            alias = node.alias
            if alias and _reserved(alias):
                self._reserved(node.args["alias"], alias)
            return Source(
                DERIVED, node, alias, outputs, Cte(node.this, outputs, _column_list(node))
            )
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            return None  # table functions and the like: refused by the allow-list
        alias = node.alias or node.name
        if node.alias and _reserved(node.alias):
            self._reserved(node.args["alias"], node.alias)
        qualified = node.args.get("db") is not None or node.args.get("catalog") is not None
        name = node.name.casefold()
        if not qualified and name in ctes:
            return Source(CTE, node, alias, ctes[name].columns, ctes[name])
        if not qualified and name == EVENTS_TABLE:
            self.bound.event_references += 1
            return Source(EVENTS, node, alias, {c: c for c in BASE_COLUMNS})
        self._other_table(node, list(ctes))
        return None

    def _other_table(self, node: exp.Table, ctes: list[str]) -> None:
        identifier = node.this
        written = self.source.written(identifier)
        if written.startswith("'"):
            self.source.report(
                identifier,
                f"file path {written} used as a table is not allowed; a SQL metric reads only the "
                "table events",
            )
            return
        full = ".".join(p.name for p in node.parts)
        hint = suggest(node.name, [EVENTS_TABLE, *ctes]) if full == node.name else ""
        self.source.report(
            node,
            f"table {full} is not allowed; a SQL metric reads only the table events (and its "
            f"own CTEs){hint}",
        )

    # -- expressions ------------------------------------------------------------------------------

    def expression(
        self,
        node: exp.Expression,
        block: Block,
        ctes: dict[str, Cte],
        *,
        clause: str,
    ) -> None:
        if isinstance(node, exp.Select):
            if not isinstance(node.parent, exp.Exists) and len(node.expressions) != 1:
                self.source.report(
                    node.parent or node,
                    f"a subquery used as a value must return one column, not "
                    f"{len(node.expressions)}",
                )
            self.query(node, ctes, block)
            return
        if isinstance(node, exp.Column):
            if not isinstance(node.this, exp.Star):
                self.column(node, block, clause=clause)
            return
        if isinstance(node, exp.Alias):
            self.expression(node.this, block, ctes, clause=clause)
            return
        for child in node.iter_expressions():
            self.expression(child, block, ctes, clause=clause)

    def column(self, node: exp.Column, block: Block, *, clause: str) -> None:
        parts = [p.name for p in node.parts]
        binding: Binding | None = None
        if len(parts) == 1:
            binding = self._unqualified(node, parts[0], block, clause=clause)
        elif len(parts) == 2:
            binding = self._qualified(node, parts[0], parts[1], block)
        elif len(parts) == 3 and parts[1].casefold() == PROPERTIES:
            src = block.source
            if src and src.kind == EVENTS and parts[0].casefold() == src.alias.casefold():
                binding = self._property(parts[2])
            else:
                self.source.report(
                    node,
                    f"{'.'.join(parts)}: {parts[0]} is not the events table this query reads",
                )
        else:
            self.source.report(node, f"column {'.'.join(parts)} is not a column of events")
        if binding is not None:
            self.bound.columns[id(node)] = (node, binding)

    def _alias_cycle(self, alias: exp.Alias, block: Block, seen: set[int]) -> bool:
        """Whether the aliased expression reaches itself through bare names that bind to
        SELECT aliases (`SELECT x AS x` with no column x, `SELECT b AS a, a AS b`)."""
        if id(alias) in seen:
            return True
        seen = seen | {id(alias)}
        src = block.source
        for column in alias.this.find_all(exp.Column):
            if column.table:
                continue
            if src is not None and self._source_column(src, column.name) is not None:
                continue
            target = block.aliases.get(column.name.casefold())
            if target is not None and self._alias_cycle(target, block, seen):
                return True
        return False

    def _property(self, name: str) -> PropertyRef:
        if name not in self.bound.properties:
            self.bound.properties.append(name)
        return PropertyRef(name)

    def _source_column(self, src: Source, name: str) -> Binding | None:
        if src.kind == EVENTS:
            key = name.casefold()
            return EventColumn(key) if key in src.columns else None
        return SourceColumn(src.columns[name.casefold()]) if src.has(name) else None

    def _unqualified(
        self, node: exp.Column, name: str, block: Block, *, clause: str
    ) -> Binding | None:
        """As DuckDB binds a bare name: a column of the relation first, then (in the select
        list, GROUP BY and HAVING, not WHERE) a SELECT alias.  In HAVING DuckDB prefers the
        alias unless the column is grouped; that subtlety is refused as ambiguous."""
        key = name.casefold()
        if _reserved(name):
            self._reserved(node, name)
            return None
        src = block.source
        found = self._source_column(src, name) if src else None
        alias = block.aliases.get(key) if clause != "where" else None
        if found is not None and alias is not None and clause == "having":
            same = isinstance(alias.this, exp.Column) and alias.this.name.casefold() == key
            if not same:
                self.source.report(
                    node,
                    f"{name} is ambiguous in HAVING: it is both a column of "
                    f"{src.alias or 'the subquery'} and a SELECT alias; rename the alias",
                )
                return None
        if found is not None:
            return found
        if alias is not None:
            if self._alias_cycle(alias, block, set()):
                self.source.report(
                    node, f"{name} refers to a SELECT alias that refers back to itself"
                )
                return None
            return AliasRef(alias)
        if src is not None and src.kind == EVENTS:
            if key == PROPERTIES:
                self.source.report(
                    node, "properties is a group of columns; read one property as properties.<name>"
                )
                return None
            if key in HIDDEN_COLUMNS:
                self.source.report(node, HIDDEN_COLUMNS[key])
                return None
        if self._outer_has(block, name):
            self._correlated(node, name)
            return None
        if clause == "where" and key in block.aliases:
            projection = block.aliases[key]
            self.source.report(
                node,
                f"{name} is a SELECT alias, which WHERE cannot use in a SQL metric; write its "
                f"expression ({self.source.written(projection.this)}) there instead",
            )
            return None
        if not block.unreadable:
            self._unknown(node, name, block, aliases=clause != "where")
        return None

    def _qualified(self, node: exp.Column, table: str, name: str, block: Block) -> Binding | None:
        src = block.source
        written = f"{table}.{name}"
        if src is not None and src.alias and table.casefold() == src.alias.casefold():
            found = self._source_column(src, name)
            if found is not None:
                return found
            if src.kind == EVENTS and name.casefold() == PROPERTIES:
                self.source.report(
                    node, f"{written} is a group of columns; read one as {written}.<name>"
                )
            elif src.kind == EVENTS and name.casefold() in HIDDEN_COLUMNS:
                self.source.report(node, HIDDEN_COLUMNS[name.casefold()])
            else:
                candidates = list(src.columns.values())
                if src.kind == EVENTS:
                    candidates.append(PROPERTIES)
                self.source.report(
                    node,
                    f"column {written} does not exist{self._columns_of(src)}"
                    f"{suggest(name, candidates)}",
                )
            return None
        if table.casefold() == PROPERTIES:
            if src is not None and src.kind == EVENTS:
                return self._property(name)
            if self._outer_reads_events(block):
                self._correlated(node, written)
                return None
            self.source.report(
                node,
                f"{written}: properties can be read only where the query reads events directly; "
                f"select it there ({written} AS {name}) and refer to it as {name}",
            )
            return None
        if self._outer_alias(block, table):
            self._correlated(node, written)
            return None
        if block.unreadable:
            return None
        known = [src.alias] if src is not None and src.alias else []
        if src is not None and src.kind == EVENTS:
            known.append(PROPERTIES)
        self.source.report(
            node,
            f"{written}: there is no table {table} in this query"
            f"{' (it reads ' + ', '.join(known) + ')' if known else ''}{suggest(table, known)}",
        )
        return None

    # -- helpers ----------------------------------------------------------------------------------

    def _columns_of(self, src: Source) -> str:
        if src.kind == EVENTS:
            return " (events has transaction_id, event_type, timestamp and properties.<name>)"
        names = ", ".join(src.columns.values()) or "no named columns"
        return f" ({src.alias or 'the subquery'} has {names})"

    def _unknown(self, node: exp.Column, name: str, block: Block, *, aliases: bool) -> None:
        src = block.source
        candidates = list(src.columns.values()) if src else []
        if aliases:
            candidates.extend(a.alias for a in block.aliases.values())
        hint = suggest(name, candidates)
        if not hint and src is not None and src.kind == EVENTS:
            hint = f"; did you mean properties.{name}?"
        where = self._columns_of(src) if src else " (the query reads no table)"
        self.source.report(node, f"column {name} does not exist{where}{hint}")

    def _outer_has(self, block: Block, name: str) -> bool:
        outer = block.outer
        while outer is not None:
            if outer.source is not None and self._source_column(outer.source, name) is not None:
                return True
            outer = outer.outer
        return False

    def _outer_alias(self, block: Block, table: str) -> bool:
        outer = block.outer
        while outer is not None:
            if outer.source is not None and outer.source.alias.casefold() == table.casefold():
                return True
            outer = outer.outer
        return False

    def _outer_reads_events(self, block: Block) -> bool:
        outer = block.outer
        while outer is not None:
            if outer.source is not None and outer.source.kind == EVENTS:
                return True
            outer = outer.outer
        return False

    def _correlated(self, node: exp.Expression, written: str) -> None:
        self.source.report(
            node,
            f"{written} refers to a column of an enclosing query (a correlated subquery), which "
            "is not supported; compute it in the subquery itself, or in a CTE",
        )

    def _reserved(self, node: exp.Expression, name: str) -> None:
        self.source.report(
            node, f"the name {name} is reserved: {RESERVED_PREFIX}... names are meterql's"
        )
