"""The names a SQL metric may use, and the names meterql keeps for itself.

An author's query reads one table, `events`, with the columns

    transaction_id   VARCHAR
    event_type       VARCHAR
    timestamp        TIMESTAMP (UTC)
    properties.<name>  VARCHAR (any property; NULL where the event lacks it)

Identifiers are case-insensitive (as in DuckDB) except property names, which are exactly the
identifier as written: `properties.userId` reads the property "userId", and
`properties."a b.c"` the property "a b.c".
"""

from __future__ import annotations

EVENTS_TABLE = "events"
PROPERTIES = "properties"
BASE_COLUMNS = ("transaction_id", "event_type", "timestamp")
VALUE_COLUMN = "value"

# Columns of the read API that an author may not use (a metric is written for one customer).
HIDDEN_COLUMNS = {
    "customer_id": "customer_id is not a column of events in a SQL metric: the query is written "
    "for one customer and meterql evaluates it for every customer",
    "ingested_at": "ingested_at is not a column of events in a SQL metric (only transaction_id, "
    "event_type, timestamp and properties.<name>)",
    "batch_id": "batch_id is not a column of events in a SQL metric (only transaction_id, "
    "event_type, timestamp and properties.<name>)",
}

# Every name meterql adds while scoping starts with this prefix; authors may not use it.
RESERVED_PREFIX = "__mq_"

# The scope keys every rewritten query block carries (see scope.py).
SCOPE_CUSTOMER = "__mq_customer_id"
SCOPE_WINDOW = "__mq_window_id"
SCOPE_KEYS = (SCOPE_CUSTOMER, SCOPE_WINDOW)

# Relations of the scoped query.
SOURCE_CTE = "__mq_source"
WINDOWS_CTE = "__mq_windows"
EVENTS_CTE = "__mq_events"
WINDOWS_ALIAS = "__mq_w"
SUBQUERY_ALIAS = "__mq_sq"
SUBQUERY_VALUE = "__mq_value"
RESULT_ALIAS = "__mq_q"

# The columns of a windows relation, and of the scoped query's result besides the group keys.
WINDOW_COLUMNS = ("customer_id", "window_id", "window_start", "window_end")
RESULT_COLUMNS = (*WINDOW_COLUMNS, VALUE_COLUMN)
