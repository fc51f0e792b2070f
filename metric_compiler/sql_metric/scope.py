"""Scoping: a SQL metric written for one customer and one period, evaluated for every customer
and window in one query.

    scoped_query(metric, source, windows) -> ScopedQuery

`metric`   the SQL text or a `CheckedSql` (metric_compiler.sql_metric.check_sql).
`source`   a relation (sqlglot SELECT or table) with the read API's columns: transaction_id,
           customer_id (the resolved catalog id), event_type, "timestamp", and one VARCHAR column
           `warehouse.layout.property_column(name)` for every name in `checked.properties`;
           normally `EventStore(home, con).relation(checked.properties, start, end)`.
`windows`  a relation (customer_id, window_id, window_start, window_end): the customers and
           windows to evaluate; an event counts in each window of its customer with
           window_start <= timestamp < window_end (the (c) form of metric_compiler.windows; a
           single [start, end) per customer is the simple case).  window_id must be unique per
           customer.

The result has the columns customer_id, window_id, window_start, window_end, the group keys
(named as the metric returns them) and value (DECIMAL(38, 12)), and holds, for each window, exactly
the rows the author's query returns when run alone over that customer's events in that window:
an aggregate without GROUP BY gives one row per window even when it has no events (count 0, sum
NULL), exactly as the query would for that customer alone.

How (one rule per construct, applied to every query block: the main query, CTEs, subqueries):
- `events` becomes `__mq_events`: the source joined with the windows, carrying the scope keys
  (__mq_customer_id, __mq_window_id); `properties.<name>` becomes the encoded property column.
- every block returns the scope keys of the relation it reads, after its own columns;
- GROUP BY gets the scope keys; SELECT DISTINCT includes them;
- an aggregate without GROUP BY reads `__mq_windows LEFT JOIN <its relation>` grouped by the
  window, and each of its aggregates gets FILTER (WHERE <a row was joined>), so an empty
  window aggregates nothing, just as the query over no events does; its WHERE moves into the
  joined relation;
- a block without FROM reads the windows (one row per window);
- a subquery in an expression (scalar, IN, EXISTS) is scoped and then correlated with the
  enclosing block on the scope keys: `(SELECT __mq_value FROM (<scoped>) WHERE keys = outer
  keys)`; DuckDB decorrelates that into a join;
- SELECT aliases used in GROUP BY, HAVING or the select list are replaced by their expressions,
  and every column is qualified with its relation, so the columns the rewrite adds can never
  capture a name.
Constructs that cannot be scoped this way (joins, set operations, window functions, ORDER BY,
LIMIT, correlated subqueries, ...) are refused by the checker before this runs.

The value column is converted to DECIMAL(38, 12) through its text: exact for integers and
decimals (more than 12 fractional digits are rounded half away from zero), and for a DOUBLE (AVG
and `/` return DOUBLE in DuckDB) the shortest decimal that reads back as the same double, so
avg(1.1, 2.2) is 1.65, never 1.6500000000000001; wrap it in ROUND(..., n) to bill fewer digits.
`arg_max(x, timestamp)` / `arg_min(x, timestamp)` over events (LATEST / EARLIEST) break ties on
timestamp by the greatest / smallest transaction_id (ours, as LATEST metrics do), so a result
never depends on the order DuckDB reads events in.
A DOUBLE that is not a finite number (x / 0 is +-inf or NaN in DuckDB) gives a NULL value: no
quantity for that row (integer `//` and `%` by zero are errors, as in DuckDB).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from metric_compiler.numbers import decimal_type
from metric_compiler.sql_metric.allow_list import AGGREGATES
from metric_compiler.sql_metric.check import CheckedSql, check_sql
from metric_compiler.sql_metric.names import (
    EVENTS_CTE,
    RESULT_ALIAS,
    SCOPE_CUSTOMER,
    SCOPE_KEYS,
    SCOPE_WINDOW,
    SOURCE_CTE,
    SUBQUERY_ALIAS,
    SUBQUERY_VALUE,
    VALUE_COLUMN,
    WINDOW_COLUMNS,
    WINDOWS_ALIAS,
    WINDOWS_CTE,
)
from metric_compiler.sql_metric.resolve import (
    CTE,
    DERIVED,
    EVENTS,
    AliasRef,
    Block,
    Bound,
    EventColumn,
    PropertyRef,
    SourceColumn,
    resolve,
)
from metric_compiler.sql_metric.source import SqlSource
from warehouse.layout import property_column

WINDOW_START = "__mq_window_start"
TIE_COLUMN = "__mq_transaction_id"
WINDOW_END = "__mq_window_end"


@dataclass(frozen=True)
class ScopedQuery:
    """The scoped query of a SQL metric (see the module docstring)."""

    tree: exp.Select
    # The same query with the value as the metric computes it (before the conversion to
    # DECIMAL(38, 12)): bind it to learn the value's type without running anything.
    probe: exp.Select
    value: str  # the metric's value column as written
    group_keys: tuple[str, ...]
    properties: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*WINDOW_COLUMNS, *self.group_keys, VALUE_COLUMN)

    def sql(self, dialect: str = "duckdb") -> str:
        return self.tree.sql(dialect, comments=False)


def _id(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _col(name: str, table: str | exp.Identifier) -> exp.Column:
    table_id = table.copy() if isinstance(table, exp.Identifier) else _id(table)
    return exp.Column(this=_id(name), table=table_id)


def _windows_table() -> exp.Table:
    return exp.Table(this=_id(WINDOWS_CTE), alias=exp.TableAlias(this=_id(WINDOWS_ALIAS)))


def _relation(node: exp.Expression) -> exp.Query:
    if isinstance(node, exp.Query):
        return node.copy()
    return exp.select(exp.Star()).from_(node.copy())


def _keys_equal(left: list[exp.Expression], right: list[exp.Expression]) -> exp.Expression:
    pairs = zip(left, right, strict=True)
    return exp.and_(*(exp.EQ(this=a.copy(), expression=b.copy()) for a, b in pairs))


def _own_nodes(root: exp.Expression):
    """Nodes of one query block's expression, not entering nested queries."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, exp.Select):
            continue
        stack.extend(node.iter_expressions())


def _nested_selects(root: exp.Expression) -> list[exp.Select]:
    return [n for n in _own_nodes(root) if isinstance(n, exp.Select) and n is not root]


def _clauses(select: exp.Select) -> list[exp.Expression]:
    """The expressions of one block: select list, WHERE, GROUP BY, HAVING."""
    keys = ("where", "group", "having")
    return [*select.expressions, *(select.args[k] for k in keys if select.args.get(k))]


def _is_aggregate(select: exp.Select) -> bool:
    if select.args.get("group") is not None or select.args.get("having") is not None:
        return True
    return any(isinstance(n, AGGREGATES) for p in select.expressions for n in _own_nodes(p))


class _Scoper:
    def __init__(self, bound: Bound):
        self.bound = bound
        self.derived = 0
        # arg_max/arg_min(x, timestamp) calls whose ties go to the transaction_id, and the
        # blocks that pass the events' transaction_id on (as TIE_COLUMN) for them
        self.tie_calls: set[int] = set()
        self.tie_blocks: set[int] = set()
        for block in list(bound.blocks.values()):
            for clause in _clauses(block.select):
                for node in _own_nodes(clause):
                    if isinstance(node, exp.ArgMax | exp.ArgMin):
                        chain = self._timestamp_chain(block, node.args.get("expression"))
                        if chain is not None:
                            self.tie_calls.add(id(node))
                            self.tie_blocks.update(id(b.select) for b in chain)

    def _timestamp_chain(self, block: Block, order: exp.Expression | None) -> list[Block] | None:
        """When `order`, an expression of `block`, is the events' timestamp (read directly, or
        passed on unchanged by CTEs and subqueries in FROM that keep one row per event): the
        blocks in between, which must pass the transaction_id on; else None."""
        while isinstance(order, exp.Paren):
            order = order.this
        binding = self.bound.binding(order) if isinstance(order, exp.Column) else None
        if isinstance(binding, AliasRef):
            return self._timestamp_chain(block, binding.projection.this)
        source = block.source
        if source is None:
            return None
        if source.kind == EVENTS:
            return [] if binding == EventColumn("timestamp") else None
        if not isinstance(binding, SourceColumn) or source.query is None:
            return None
        inner = source.query.query
        projection = source.query.projection(binding.name)
        if projection is None or not isinstance(inner, exp.Select):
            return None
        if _is_aggregate(inner) or inner.args.get("distinct") is not None:
            return None  # its rows are not events
        inner_block = self.bound.block(inner)
        value = projection.this if isinstance(projection, exp.Alias) else projection
        chain = self._timestamp_chain(inner_block, value)
        return None if chain is None else [inner_block, *chain]

    def select(self, select: exp.Select) -> None:
        """Scope one block in place: it returns its own columns, then the scope keys."""
        block = self.bound.block(select)
        with_ = select.args.get("with_")
        for cte in with_.expressions if with_ else []:
            self.select(cte.this)
            self._extend_column_list(cte.args.get("alias"))

        aggregate = _is_aggregate(select)
        grouped = select.args.get("group") is not None
        alias = self._scope_source(select, block)
        if alias is None:  # no FROM: one row per window
            select.from_(_windows_table(), copy=False)
            row_keys = [_col(k, WINDOWS_ALIAS) for k in SCOPE_KEYS]
            out_keys = row_keys
        else:
            row_keys = [_col(k, alias) for k in SCOPE_KEYS]
            scalar = aggregate and not grouped
            out_keys = [_col(k, WINDOWS_ALIAS) for k in SCOPE_KEYS] if scalar else row_keys

        if alias is not None and block.source is not None:
            self._tie_break(select, block, alias)
        alias_refs = self._columns(select, block, alias)
        for clause in _clauses(select):
            self._subqueries(clause, row_keys if clause.key == "where" else out_keys)
        self._inline_aliases(alias_refs)

        if alias is not None and aggregate and not grouped:
            self._scalar_aggregate(select, alias)
        elif aggregate or grouped:
            group = select.args.get("group")
            expressions = list(group.expressions) if group is not None else []
            keys = [k.copy() for k in out_keys]
            select.set("group", exp.Group(expressions=[*expressions, *keys]))
        for key, name in zip(out_keys, SCOPE_KEYS, strict=True):
            select.append("expressions", exp.alias_(key.copy(), _id(name)))
        if id(select) in self.tie_blocks:
            # after the scope keys: a column list (`AS t(a, b)`) does not reach it
            assert alias is not None and block.source is not None
            select.append("expressions", exp.alias_(self._tie(block, alias), _id(TIE_COLUMN)))

    # -- the relation a block reads --------------------------------------------------------------

    def _scope_source(self, select: exp.Select, block: Block) -> exp.Identifier | None:
        source = block.source
        if source is None:
            return None
        node = source.node
        if source.kind == EVENTS:
            alias = node.args.get("alias")
            name = alias.this.copy() if alias is not None else node.this.copy()
            node.replace(exp.Table(this=_id(EVENTS_CTE), alias=exp.TableAlias(this=name)))
            return name
        if source.kind == CTE:
            alias = node.args.get("alias")
            return alias.this.copy() if alias is not None else node.this.copy()
        assert source.kind == DERIVED, source.kind
        self.select(node.this)
        alias = node.args.get("alias")
        if alias is None or not alias.name:
            self.derived += 1
            columns = alias.columns if alias is not None else []
            alias = exp.TableAlias(this=_id(f"__mq_d{self.derived}"), columns=columns)
            node.set("alias", alias)
        self._extend_column_list(alias)
        return alias.this.copy()

    @staticmethod
    def _extend_column_list(alias: exp.Expression | None) -> None:
        if isinstance(alias, exp.TableAlias) and alias.columns:
            for key in SCOPE_KEYS:
                alias.append("columns", _id(key))

    # -- columns ----------------------------------------------------------------------------------

    def _columns(
        self, select: exp.Select, block: Block, alias: exp.Identifier | None
    ) -> list[tuple[exp.Column, exp.Alias]]:
        """Qualify every column with its relation and encode properties; the references to
        SELECT aliases, to be replaced by `_inline_aliases` once subqueries are scoped."""
        alias_refs: list[tuple[exp.Column, exp.Alias]] = []
        for clause in _clauses(select):
            for node in list(_own_nodes(clause)):
                if not isinstance(node, exp.Column):
                    continue
                binding = self.bound.binding(node)
                if isinstance(binding, PropertyRef):
                    assert alias is not None
                    encoded = _col(property_column(binding.name), alias)
                    if node.parent is select:  # keep the output name: properties.region -> region
                        encoded = exp.alias_(encoded, _id(binding.name))
                    node.replace(encoded)
                elif isinstance(binding, EventColumn | SourceColumn):
                    assert alias is not None
                    node.replace(exp.Column(this=node.this.copy(), table=alias.copy()))
                elif isinstance(binding, AliasRef):
                    alias_refs.append((node, binding.projection))
        return alias_refs

    @staticmethod
    def _inline_aliases(alias_refs: list[tuple[exp.Column, exp.Alias]]) -> None:
        """Replace each SELECT alias reference by (a copy of) the aliased expression; a
        reference inside an aliased expression is replaced before that expression is copied."""
        pending = alias_refs
        while pending:
            waiting = {id(node) for node, _ in pending}
            ready = [
                (node, projection)
                for node, projection in pending
                if not any(id(n) in waiting for n in projection.this.walk())
            ]
            if not ready:  # pragma: no cover - DuckDB refuses circular aliases too
                raise AssertionError("circular SELECT alias references")
            for node, projection in ready:
                node.replace(exp.Paren(this=projection.this.copy()))
            done = {id(node) for node, _ in ready}
            pending = [(n, p) for n, p in pending if id(n) not in done]

    def _tie_break(self, select: exp.Select, block: Block, alias: exp.Identifier) -> None:
        """arg_max/arg_min(x, timestamp) over events: ties on timestamp go to the greatest /
        smallest transaction_id, as LATEST metrics do, so the result never depends on the
        order DuckDB happens to read the events in.  Also where the timestamp comes through
        CTEs or subqueries that keep one row per event (they pass the transaction_id on)."""
        for clause in _clauses(select):
            for node in list(_own_nodes(clause)):
                if id(node) not in self.tie_calls:
                    continue
                # order by (timestamp, tie): the timestamp node itself moves into the pair, so
                # _columns still qualifies it (or inlines the alias it names)
                order = node.args["expression"]
                pair = exp.Tuple(expressions=[])
                order.replace(pair)
                pair.append("expressions", order)
                pair.append("expressions", self._tie(block, alias))

    def _tie(self, block: Block, alias: exp.Identifier) -> exp.Column:
        """The transaction_id of the rows of `block` (which reads `alias`)."""
        assert block.source is not None
        name = "transaction_id" if block.source.kind == EVENTS else TIE_COLUMN
        return exp.Column(this=_id(name), table=alias.copy())

    # -- subqueries in expressions --------------------------------------------------------------

    def _subqueries(self, clause: exp.Expression, outer_keys: list[exp.Expression]) -> None:
        for nested in _nested_selects(clause):
            parent = nested.parent
            self.select(nested)
            first = nested.expressions[0]
            value = first.this if isinstance(first, exp.Alias) else first
            first.replace(exp.alias_(value.copy(), _id(SUBQUERY_VALUE)))
            inner_keys = [_col(k, SUBQUERY_ALIAS) for k in SCOPE_KEYS]
            picked: exp.Expression = (
                exp.Literal.number(1)
                if isinstance(parent, exp.Exists)
                else _col(SUBQUERY_VALUE, SUBQUERY_ALIAS)
            )
            wrapper = (
                exp.select(picked)
                .from_(
                    exp.Subquery(
                        this=nested.copy(), alias=exp.TableAlias(this=_id(SUBQUERY_ALIAS))
                    ),
                    copy=False,
                )
                .where(_keys_equal(inner_keys, outer_keys), copy=False)
            )
            nested.replace(wrapper)

    # -- aggregates without GROUP BY --------------------------------------------------------------

    def _scalar_aggregate(self, select: exp.Select, alias: exp.Identifier) -> None:
        relation = select.args["from_"].this
        where = select.args.get("where")
        if where is not None:
            inner = exp.select(exp.Star()).from_(relation.copy(), copy=False)
            inner.set("where", where.copy())
            relation = exp.Subquery(this=inner, alias=exp.TableAlias(this=alias.copy()))
            select.set("where", None)
        else:
            relation = relation.copy()
        windows = [_col(k, WINDOWS_ALIAS) for k in SCOPE_KEYS]
        rows = [_col(k, alias) for k in SCOPE_KEYS]
        select.set(
            "from_",
            exp.From(this=_windows_table()),
        )
        select.set(
            "joins",
            [exp.Join(this=relation, side="LEFT", on=_keys_equal(rows, windows))],
        )
        joined = exp.Where(this=exp.Not(this=exp.Is(this=rows[0].copy(), expression=exp.Null())))
        clauses = [*select.expressions]
        if select.args.get("having") is not None:
            clauses.append(select.args["having"])
        for clause in clauses:
            for node in list(_own_nodes(clause)):
                if isinstance(node, AGGREGATES) and not isinstance(node.parent, exp.Filter):
                    node.replace(exp.Filter(this=node.copy(), expression=joined.copy()))
        select.set("group", exp.Group(expressions=[k.copy() for k in windows]))


NOT_FINITE = ("nan", "-nan", "inf", "-inf")


def exact_value(value: exp.Expression) -> exp.Expression:
    """A metric value as DECIMAL(38, 12), through its text (see the module docstring); NULL for
    a DOUBLE that is not a finite number."""
    text = exp.Cast(this=value.copy(), to=exp.DataType.build("VARCHAR"))
    not_finite = exp.In(this=text.copy(), expressions=[exp.Literal.string(s) for s in NOT_FINITE])
    return exp.Case(
        ifs=[exp.If(this=not_finite, true=exp.Null())],
        default=exp.Cast(this=text, to=decimal_type()),
    )


def _events_cte(properties: tuple[str, ...]) -> exp.Select:
    source = "s"
    columns = [
        exp.alias_(_col("__mq_customer_id", WINDOWS_ALIAS), _id(SCOPE_CUSTOMER)),
        exp.alias_(_col("__mq_window_id", WINDOWS_ALIAS), _id(SCOPE_WINDOW)),
        *(_col(c, source) for c in ("transaction_id", "event_type", "timestamp")),
        *(_col(property_column(p), source) for p in dict.fromkeys(properties)),
    ]
    ts = _col("timestamp", source)
    on = exp.and_(
        exp.EQ(this=_col("customer_id", source), expression=_col(SCOPE_CUSTOMER, WINDOWS_ALIAS)),
        exp.GTE(this=ts.copy(), expression=_col(WINDOW_START, WINDOWS_ALIAS)),
        exp.LT(this=ts.copy(), expression=_col(WINDOW_END, WINDOWS_ALIAS)),
    )
    return (
        exp.select(*columns)
        .from_(exp.Table(this=_id(SOURCE_CTE), alias=exp.TableAlias(this=_id(source))))
        .join(
            exp.Table(this=_id(WINDOWS_CTE), alias=exp.TableAlias(this=_id(WINDOWS_ALIAS))),
            on=on,
            join_type="inner",
        )
    )


def _windows_cte(windows: exp.Expression) -> exp.Select:
    names = (SCOPE_CUSTOMER, SCOPE_WINDOW, WINDOW_START, WINDOW_END)
    return exp.select(
        *(exp.alias_(_col(c, "w"), _id(n)) for c, n in zip(WINDOW_COLUMNS, names, strict=True))
    ).from_(exp.Subquery(this=_relation(windows), alias=exp.TableAlias(this=_id("w"))))


def scoped_query(
    metric: str | CheckedSql, source: exp.Expression, windows: exp.Expression
) -> ScopedQuery:
    """The metric evaluated for every customer and window of `windows` (module docstring)."""
    checked = metric if isinstance(metric, CheckedSql) else check_sql(metric)
    tree = checked.tree.copy()
    text_source = SqlSource(checked.text)
    bound = resolve(text_source, tree)
    assert not text_source.problems, text_source.problems
    _Scoper(bound).select(tree)

    outputs = checked.outputs
    count = len(checked.tree.expressions)
    inner = [_id(f"__mq_c{i}") for i in range(count)] + [_id(k) for k in SCOPE_KEYS]
    result_alias = exp.TableAlias(this=_id(RESULT_ALIAS), columns=inner)
    raw_value = _col(f"__mq_c{outputs.value_index}", RESULT_ALIAS)
    w = WINDOWS_ALIAS
    projections = [
        exp.alias_(_col(SCOPE_CUSTOMER, w), _id("customer_id")),
        exp.alias_(_col(SCOPE_WINDOW, w), _id("window_id")),
        exp.alias_(_col(WINDOW_START, w), _id("window_start")),
        exp.alias_(_col(WINDOW_END, w), _id("window_end")),
        *(
            exp.alias_(_col(f"__mq_c{i}", RESULT_ALIAS), _id(name))
            for i, name in zip(outputs.group_indexes, outputs.group_keys, strict=True)
        ),
        exp.alias_(raw_value, _id(VALUE_COLUMN)),
    ]
    on = _keys_equal([_col(k, RESULT_ALIAS) for k in SCOPE_KEYS], [_col(k, w) for k in SCOPE_KEYS])
    probe = (
        exp.select(*projections)
        .from_(exp.Subquery(this=tree, alias=result_alias), copy=False)
        .join(_windows_table(), on=on, join_type="inner", copy=False)
    )
    ctes = [
        exp.CTE(this=_relation(source), alias=exp.TableAlias(this=_id(SOURCE_CTE))),
        exp.CTE(this=_windows_cte(windows), alias=exp.TableAlias(this=_id(WINDOWS_CTE))),
        exp.CTE(
            this=_events_cte(checked.properties),
            alias=exp.TableAlias(this=_id(EVENTS_CTE)),
            materialized=True if bound.event_references > 1 else None,
        ),
    ]
    probe.set("with_", exp.With(expressions=ctes))
    result = probe.copy()
    result.expressions[-1].set("this", exact_value(raw_value))
    return ScopedQuery(result, probe, checked.value, checked.group_keys, checked.properties)
