"""The event rules of SEMANTICS.md section 1, as one SQL projection over raw records.

Every reader produces the same raw columns (see `RAW_COLUMNS`): the record's position, each event
field's value as text together with its JSON kind (`VARCHAR`, `BIGINT`, `OBJECT`, `NULL`, ...;
NULL when the field is missing), the timestamp either as text to parse or already typed, and the
properties.  `normalised_select` wraps a reader's SELECT and adds the parsed timestamp (naive
UTC) and, for a record that breaks a rule, the reason code, the field and a message naming the
field and its value.  The first broken rule, in the order below, is the one reported.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from warehouse.events import ts_literal
from warehouse.ingest.sqltext import DIALECT

MAX_TRANSACTION_ID = 128
MAX_PROPERTIES = 2000
TOO_OLD = timedelta(days=34)
FUTURE_SKEW = timedelta(minutes=5)

REASONS = (
    "malformed",
    "missing_field",
    "invalid_transaction_id",
    "invalid_timestamp",
    "too_many_properties",
    "too_old",
    "in_future",
)

# name -> type of the columns every reader's SELECT returns (property columns come on top).
RAW_COLUMNS = {
    "pos": "BIGINT",  # source index << 40 | record number (1-based)
    "root_problem": "VARCHAR",  # why the record is not an event object at all, else NULL
    "tid": "VARCHAR",
    "tid_type": "VARCHAR",
    "cust": "VARCHAR",
    "cust_type": "VARCHAR",
    "et": "VARCHAR",
    "et_type": "VARCHAR",
    "ts_text": "VARCHAR",  # when ts_type = 'TEXT'
    "ts_value": "TIMESTAMP",  # when ts_type = 'TIMESTAMP' (naive UTC)
    "ts_type": "VARCHAR",
    "props_type": "VARCHAR",  # NULL/'NULL': no properties; 'OBJECT': fine; else malformed
    "props_count": "BIGINT",  # number of keys when it may exceed the limit, else 0
}
TEXT_KINDS = ("VARCHAR", "BIGINT", "UBIGINT")  # strings, and integers taken as their text

# RFC 3339 date-time; the offset is optional (naive means UTC).
RFC3339 = (
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"
)

_KIND_NAME = (
    "CASE {t} WHEN 'VARCHAR' THEN 'a string' WHEN 'OBJECT' THEN 'an object' "
    "WHEN 'ARRAY' THEN 'an array' WHEN 'BOOLEAN' THEN 'a boolean' WHEN 'NULL' THEN 'null' "
    "WHEN 'INVALID' THEN 'text that is not valid JSON' ELSE 'a number' END"
)


def _kind(type_sql: str) -> str:
    return _KIND_NAME.format(t=type_sql)


def _shown(value_sql: str) -> str:
    """A value for a message: JSON-quoted, cut to 60 characters."""
    return (
        f"to_json(CASE WHEN length({value_sql}) > 60 "
        f"THEN left({value_sql}, 57) || '...' ELSE {value_sql} END)"
    )


def _iso(ts_sql: str) -> str:
    return (
        f"CASE WHEN microsecond({ts_sql}) % 1000000 = 0 "
        f"THEN strftime({ts_sql}, '%Y-%m-%dT%H:%M:%SZ') "
        f"ELSE strftime({ts_sql}, '%Y-%m-%dT%H:%M:%S.%fZ') END"
    )


# The shapes nearly every event sends, `2026-01-15T10:00:00Z` and `...T10:00:00.123456Z`: text of
# exactly that length starting with a digit, which strptime reads (it takes at most the digits
# each field has, so at that length every field has all of them, and it checks the ranges).
_COMMON_SHAPES = (
    (len("2026-01-15T10:00:00.123456Z"), "%Y-%m-%dT%H:%M:%S.%fZ"),
    (len("2026-01-15T10:00:00Z"), "%Y-%m-%dT%H:%M:%SZ"),
)


def timestamp_sql(text_sql: str) -> str:
    """SQL: the RFC 3339 text `text_sql` as a naive UTC TIMESTAMP, NULL when it is not one.

    The rule is `RFC3339` (a full regular-expression match) and then DuckDB's TIMESTAMPTZ cast
    (which checks the calendar).  The common shapes (`_COMMON_SHAPES`) are read by strptime
    first, at about a third of that cost; what strptime refuses goes the full way.  Both give
    the same result for every text (tests/test_ingest_timestamps.py compares them over
    thousands of variants).  The TIMESTAMPTZ becomes naive UTC by its epoch microseconds
    (the TIMESTAMPTZ -> TIMESTAMP cast goes through the time zone machinery, a third of
    the cost)."""
    digit_first = f"{text_sql} >= '0' AND {text_sql} < ':'"
    fast = " ".join(
        f"WHEN strlen({text_sql}) = {length} AND {digit_first} "
        f"THEN try_strptime({text_sql}, '{fmt}')"
        for length, fmt in _COMMON_SHAPES
    )
    cast = (
        f"coalesce(try_cast({text_sql} AS TIMESTAMPTZ), try_cast(upper({text_sql}) AS TIMESTAMPTZ))"
    )
    full = (
        f"CASE WHEN regexp_full_match({text_sql}, '{RFC3339}') "
        f"THEN make_timestamp(epoch_us({cast})) END"
    )
    return f"coalesce(CASE {fast} END, {full})"


def _string_field_checks(name: str, value: str, kind: str) -> list[tuple[str, str]]:
    return [
        (f"{kind} IS NULL", f"'{name}_missing'"),
        (f"{kind} = 'NULL'", f"'{name}_null'"),
        (f"{kind} NOT IN {TEXT_KINDS}", f"'{name}_type'"),
        (f"{value} = ''", f"'{name}_empty'"),
    ]


# problem code -> (reason, field, message SQL over the raw columns)
def _problems(clock_sql: str) -> dict[str, tuple[str, str | None, str]]:
    problems: dict[str, tuple[str, str | None, str]] = {
        "root": ("malformed", None, "root_problem"),
        "tid_missing": ("missing_field", "transaction_id", "'transaction_id is missing'"),
        "tid_null": ("missing_field", "transaction_id", "'transaction_id is null'"),
        "tid_type": (
            "invalid_transaction_id",
            "transaction_id",
            f"'transaction_id must be a string, got ' || {_kind('tid_type')} || ' ' || "
            f"{_shown('tid')}",
        ),
        "tid_length": (
            "invalid_transaction_id",
            "transaction_id",
            f"'transaction_id ' || {_shown('tid')} || ' is ' || length(tid) || "
            f"' characters long; expected 1 to {MAX_TRANSACTION_ID} characters'",
        ),
    }
    for name, value, kind in (
        ("customer_id", "cust", "cust_type"),
        ("event_type", "et", "et_type"),
    ):
        problems[f"{name}_missing"] = ("missing_field", name, f"'{name} is missing'")
        problems[f"{name}_null"] = ("missing_field", name, f"'{name} is null'")
        problems[f"{name}_empty"] = ("missing_field", name, f"'{name} is empty'")
        problems[f"{name}_type"] = (
            "malformed",
            name,
            f"'{name} must be a string, got ' || {_kind(kind)} || ' ' || {_shown(value)}",
        )
    problems.update(
        {
            "ts_missing": ("missing_field", "timestamp", "'timestamp is missing'"),
            "ts_null": ("missing_field", "timestamp", "'timestamp is null'"),
            "ts_type": (
                "invalid_timestamp",
                "timestamp",
                f"'timestamp must be an RFC 3339 string, got ' || {_kind('ts_type')} || ' ' || "
                f"{_shown('ts_text')}",
            ),
            "ts_invalid": (
                "invalid_timestamp",
                "timestamp",
                f"'timestamp ' || {_shown('ts_text')} || CASE WHEN "
                f"regexp_full_match(ts_text, '{RFC3339}') THEN ' is written as RFC 3339 but is "
                "not a date and time meterql can store (a day its month does not have, a leap "
                "second :60, or a year out of range)' ELSE ' is not an RFC 3339 timestamp "
                "(expected e.g. 2024-01-15T10:00:00Z or 2024-01-15T10:00:00.123456+02:00)' END",
            ),
            "props_type": (
                "malformed",
                "properties",
                f"'properties must be a JSON object, got ' || {_kind('props_type')}",
            ),
            "props_count": (
                "too_many_properties",
                "properties",
                f"'properties has ' || props_count || ' keys; at most {MAX_PROPERTIES} "
                "are allowed'",
            ),
            "too_old": (
                "too_old",
                "timestamp",
                f"'timestamp ' || {_iso('ts')} || ' is more than {TOO_OLD.days} days before the "
                f"ingest clock ' || {_iso(clock_sql)}",
            ),
            "in_future": (
                "in_future",
                "timestamp",
                f"'timestamp ' || {_iso('ts')} || ' is more than "
                f"{int(FUTURE_SKEW.total_seconds() // 60)} minutes after the ingest clock ' || "
                f"{_iso(clock_sql)}",
            ),
        }
    )
    return problems


def normalised_select(raw_select: str, property_columns: list[str], clock: datetime) -> str:
    """SQL: the staged rows (see readers.STAGED_FIXED) of the records `raw_select` returns.

    `property_columns` are the (already quoted) property columns `raw_select` returns besides
    the raw columns; they pass through unchanged.  `tid_hash` is the transaction id's 64-bit
    hash, computed here once for dedup (whose statements each computed it again)."""
    clock_sql = ts_literal(clock).sql(DIALECT)
    oldest = f"({clock_sql} - INTERVAL {TOO_OLD.days} DAY)"
    newest = f"({clock_sql} + INTERVAL {int(FUTURE_SKEW.total_seconds())} SECOND)"
    checks: list[tuple[str, str]] = [("root_problem IS NOT NULL", "'root'")]
    checks += [
        ("tid_type IS NULL", "'tid_missing'"),
        ("tid_type = 'NULL'", "'tid_null'"),
        (f"tid_type NOT IN {TEXT_KINDS}", "'tid_type'"),
        (f"length(tid) NOT BETWEEN 1 AND {MAX_TRANSACTION_ID}", "'tid_length'"),
    ]
    checks += _string_field_checks("customer_id", "cust", "cust_type")
    checks += _string_field_checks("event_type", "et", "et_type")
    checks += [
        ("ts_type IS NULL", "'ts_missing'"),
        ("ts_type = 'NULL'", "'ts_null'"),
        ("ts_type NOT IN ('TEXT', 'TIMESTAMP')", "'ts_type'"),
        ("ts IS NULL", "'ts_invalid'"),
        ("props_type IS NOT NULL AND props_type NOT IN ('OBJECT', 'NULL')", "'props_type'"),
        (f"props_count > {MAX_PROPERTIES}", "'props_count'"),
        (f"ts < {oldest}", "'too_old'"),
        (f"ts > {newest}", "'in_future'"),
    ]
    problem_case = "CASE " + " ".join(f"WHEN {c} THEN {code}" for c, code in checks) + " END"
    problems = _problems(clock_sql)
    # Each CASE first sends the (many) good records to NULL, so they skip the comparisons.
    reason_case = (
        "CASE WHEN problem IS NULL THEN NULL "
        + " ".join(
            f"WHEN problem = '{code}' THEN '{reason}'" for code, (reason, _, _) in problems.items()
        )
        + " END"
    )
    field_case = (
        "CASE WHEN problem IS NULL THEN NULL "
        + " ".join(
            f"WHEN problem = '{code}' THEN '{field}'"
            for code, (_, field, _) in problems.items()
            if field
        )
        + " END"
    )
    message_case = (
        "CASE WHEN problem IS NULL THEN NULL "
        + " ".join(
            f"WHEN problem = '{code}' THEN {message}" for code, (_, _, message) in problems.items()
        )
        + " END"
    )
    ts_expr = (
        "CASE WHEN ts_type = 'TIMESTAMP' THEN ts_value "
        f"WHEN ts_type = 'TEXT' THEN {timestamp_sql('ts_text')} END"
    )
    passthrough = "".join(f", {c}" for c in property_columns)
    return f"""
        SELECT pos, tid AS transaction_id, hash(tid) AS tid_hash, cust AS customer_id,
               et AS event_type, ts,
               {reason_case} AS reason, {field_case} AS field, {message_case} AS message
               {passthrough}
        FROM (
            SELECT *, {problem_case} AS problem
            FROM (SELECT *, {ts_expr} AS ts FROM ({raw_select}) raw) timed
        ) checked
    """  # noqa: S608 - fixed SQL; reader SQL renders user values through sqlglot
