"""Deterministic, seeded LLM-like event dumps for the benchmarks (and for anyone who needs data).

    from benchmarks.datagen import generate, ingested_home
    data = generate(10_000_000, n_customers=10_000, seed=42, formats=("parquet", "ndjson"))
    data.parquet, data.ndjson          # paths of the cached dumps
    home = ingested_home(data)         # a meterql home with the dump ingested once (cached)

Events: customers `c00000`.., one month (`MONTH_START` .. `MONTH_END`), event types
`llm_request` (70%), `embedding_request` (15%), `image_generation` (10%), `api_call` (5%), and the
properties `model` (8 models), `input_tokens`, `output_tokens`, `user_id`, `region`.  Properties
are sparse the way real dumps are: only `llm_request` has `output_tokens`, `api_call` has no
`model`, and so on (see `PROPERTIES_BY_TYPE`).

Layouts written:
- Parquet: the four event fields (`timestamp` as TIMESTAMP WITH TIME ZONE) plus one VARCHAR column
  per property (the "extra top-level columns" dump layout); absent properties are NULL.
- NDJSON: Metronome-shaped objects `{"transaction_id", "customer_id", "event_type", "timestamp",
  "properties": {...}}`, token counts as JSON numbers (so ingest exercises the exact-text rule).

Everything is generated inside DuckDB from `range(n)` with an integer hash (no Python loop, no
`random()`), so a given (n_events, n_customers, n_users, seed) always yields the same bytes.
Files are cached under `benchmarks/data/` (gitignored; `$METERQL_BENCH_DATA` overrides), keyed by
those parameters, written under a temporary name and renamed into place.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

GENERATOR_VERSION = 1  # bump when the generated data changes; it is part of the cache key
# bump when what ingest stores changes (files, manifest); part of the ingested homes' key
INGEST_VERSION = 2  # 2: the manifest's integer_columns

MONTH_START = datetime(2026, 1, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 2, 1, tzinfo=UTC)
# An ingest clock under which every generated event is inside the 34-day window.
INGEST_NOW = MONTH_END + timedelta(hours=1)

MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "claude-sonnet",
    "claude-haiku",
    "llama-3-70b",
    "mistral-large",
    "gemini-pro",
)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-south-1")
EVENT_TYPES = (  # (name, share in percent)
    ("llm_request", 70),
    ("embedding_request", 15),
    ("image_generation", 10),
    ("api_call", 5),
)
PROPERTIES = ("model", "input_tokens", "output_tokens", "user_id", "region")
PROPERTIES_BY_TYPE = {
    "llm_request": PROPERTIES,
    "embedding_request": ("model", "input_tokens", "user_id", "region"),
    "image_generation": ("model", "user_id", "region"),
    "api_call": ("user_id", "region"),
}


def data_dir() -> Path:
    return Path(os.environ.get("METERQL_BENCH_DATA") or Path(__file__).parent / "data")


@dataclass(frozen=True)
class Dataset:
    n_events: int
    n_customers: int
    n_users: int
    seed: int
    parquet: Path | None
    ndjson: Path | None

    @property
    def key(self) -> str:
        return dataset_key(self.n_events, self.n_customers, self.n_users, self.seed)

    @property
    def now(self) -> datetime:
        """An ingest clock that accepts every generated event."""
        return INGEST_NOW


def dataset_key(n_events: int, n_customers: int, n_users: int, seed: int) -> str:
    return f"events-v{GENERATOR_VERSION}-n{n_events}-c{n_customers}-u{n_users}-s{seed}"


def _rnd_macro(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """`rnd(i, salt)`: a deterministic pseudo-random BIGINT in [0, 4294967311) per (row, stream).

    Two rounds of multiply-mod-prime with an xor-shift between them; the first product is taken
    in HUGEINT (it passes 2^63 from ~54M events on; same values below), the later ones stay below
    2^63, so it never overflows BIGINT."""
    prime = 4294967311
    offset = int(seed) * 7919 + 17
    con.execute(
        f"""
        CREATE OR REPLACE TEMP MACRO rnd0(x) AS
            (((x::HUGEINT * 2654435761 + {offset}) % {prime})::BIGINT);
        CREATE OR REPLACE TEMP MACRO rnd1(x) AS ((xor(x, x >> 15) * 1000003 + 12345) % {prime});
        CREATE OR REPLACE TEMP MACRO rnd(i, salt) AS (rnd1(rnd1(rnd0(i * 64 + salt))));
        """
    )


def _events_sql(n_events: int, n_customers: int, n_users: int) -> str:
    """One SELECT producing the canonical generated columns (all computed from `range`)."""
    month_us = int((MONTH_END - MONTH_START).total_seconds() * 1_000_000)
    start = MONTH_START.strftime("%Y-%m-%d %H:%M:%S")
    models = "[" + ", ".join(f"'{m}'" for m in MODELS) + "]"
    regions = "[" + ", ".join(f"'{r}'" for r in REGIONS) + "]"
    cumulative, bounds = 0, []
    for name, share in EVENT_TYPES:
        cumulative += share
        bounds.append((cumulative, name))
    type_case = (
        "CASE "
        + " ".join(f"WHEN rnd(i, 2) % 100 < {b} THEN '{n}'" for b, n in bounds[:-1])
        + f" ELSE '{bounds[-1][1]}' END"
    )

    def has(prop: str) -> str:
        types = [t for t, props in PROPERTIES_BY_TYPE.items() if prop in props]
        return "event_type IN (" + ", ".join(f"'{t}'" for t in types) + ")"

    # Customers are skewed (a few large, many small): the square of a uniform draw.
    return f"""
        WITH base AS (
            SELECT i, {type_case} AS event_type FROM range({int(n_events)}) r(i)
        )
        SELECT
            'tx-' || lpad(to_hex(rnd(i, 1)), 8, '0') || '-' || i::VARCHAR AS transaction_id,
            'c' || lpad(((rnd(i, 3) % 65536) * (rnd(i, 3) % 65536) * {int(n_customers)}
                          // 4294967296)::VARCHAR, 5, '0') AS customer_id,
            event_type,
            (TIMESTAMP '{start}' + to_microseconds(rnd(i, 4) * 1000003 % {month_us}))::TIMESTAMPTZ
                AS "timestamp",
            CASE WHEN {has("model")} THEN {models}[1 + rnd(i, 5) % {len(MODELS)}] END AS model,
            CASE WHEN {has("input_tokens")} THEN 1 + rnd(i, 6) % 4000 END AS input_tokens,
            CASE WHEN {has("output_tokens")} THEN 1 + rnd(i, 7) % 1000 END AS output_tokens,
            CASE WHEN {has("user_id")}
                 THEN 'u' || lpad((rnd(i, 8) % {int(n_users)})::VARCHAR, 5, '0') END AS user_id,
            CASE WHEN {has("region")} THEN {regions}[1 + rnd(i, 9) % {len(REGIONS)}] END AS region
        FROM base
    """  # noqa: S608 - only generator constants and integers are formatted in


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def _write_parquet(con: duckdb.DuckDBPyConnection, target: Path) -> None:
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    con.execute(
        f"""
        COPY (
            SELECT transaction_id, customer_id, event_type, "timestamp", model,
                   input_tokens::VARCHAR AS input_tokens, output_tokens::VARCHAR AS output_tokens,
                   user_id, region
            FROM generated
        ) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)
        """  # noqa: S608 - our own cache path
    )
    tmp.replace(target)


def _write_ndjson(con: duckdb.DuckDBPyConnection, target: Path) -> None:
    """One JSON object per line, absent properties left out, token counts as JSON numbers."""
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    pieces = []
    for prop in PROPERTIES:
        value = f"{prop}::VARCHAR" if prop.endswith("_tokens") else f"to_json({prop})::VARCHAR"
        pieces.append(f"CASE WHEN {prop} IS NOT NULL THEN '\"{prop}\":' || {value} END")
    props = "concat_ws(',', " + ", ".join(pieces) + ")"
    con.execute(
        f"""
        COPY (
            SELECT '{{"transaction_id":' || to_json(transaction_id)
                || ',"customer_id":' || to_json(customer_id)
                || ',"event_type":' || to_json(event_type)
                || ',"timestamp":"' || strftime("timestamp", '%Y-%m-%dT%H:%M:%S.%fZ') || '"'
                || ',"properties":{{' || {props} || '}}}}' AS line
            FROM generated
        ) TO '{tmp}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\\x01')
        """  # noqa: S608 - generator constants and our own cache path
    )
    tmp.replace(target)


def generate(
    n_events: int,
    n_customers: int = 10_000,
    seed: int = 42,
    *,
    n_users: int = 1_000,
    formats: Sequence[str] = ("parquet",),
) -> Dataset:
    """Generate (or reuse from the cache) the dumps of `n_events` events in `formats`."""
    unknown = set(formats) - {"parquet", "ndjson"}
    if unknown:
        raise ValueError(f"unknown dump formats {sorted(unknown)}; use parquet and/or ndjson")
    root = data_dir()
    root.mkdir(parents=True, exist_ok=True)
    key = dataset_key(n_events, n_customers, n_users, seed)
    targets = {fmt: root / f"{key}.{fmt}" for fmt in formats}
    missing = {fmt: path for fmt, path in targets.items() if not path.exists()}
    if missing:
        con = _connect()
        try:
            _rnd_macro(con, seed)
            con.execute(
                "CREATE TEMP TABLE generated AS " + _events_sql(n_events, n_customers, n_users)
            )
            for fmt, path in missing.items():
                (_write_parquet if fmt == "parquet" else _write_ndjson)(con, path)
        finally:
            con.close()
    return Dataset(
        n_events=n_events,
        n_customers=n_customers,
        n_users=n_users,
        seed=seed,
        parquet=targets.get("parquet"),
        ndjson=targets.get("ndjson"),
    )


def ingested_home(dataset: Dataset, fmt: str = "parquet"):
    """A meterql home holding `dataset` ingested once (cached beside the dumps).

    The home is built under a temporary name and renamed into place only after the ingest
    succeeded, so an interrupted build never leaves a half-filled cached home."""
    from warehouse.home import Home
    from warehouse.ingest import ingest

    source = dataset.parquet if fmt == "parquet" else dataset.ndjson
    if source is None:
        dataset = generate(
            dataset.n_events,
            dataset.n_customers,
            dataset.seed,
            n_users=dataset.n_users,
            formats=(fmt,),
        )
        source = dataset.parquet if fmt == "parquet" else dataset.ndjson
    assert source is not None
    target = data_dir() / f"{dataset.key}-{fmt}-i{INGEST_VERSION}.home"
    if (target / "catalog.duckdb").exists():
        Home(target).connect().close()  # a cached home built by an older meterql: migrated
        return Home(target)
    building = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    shutil.rmtree(building, ignore_errors=True)
    home = Home(building)
    home.init()
    ingest(home, [source], now=dataset.now)
    building.replace(target)
    return Home(target)


def formula_ndjson(
    target: Path,
    n_events: int,
    *,
    tid_prefix: str,
    customers: int,
    event_type_sql: str,
    days: int,
    properties_sql: str,
) -> Path:
    """NDJSON events computed in DuckDB from their number `i` (no Python loop): transaction id
    `<tid_prefix><i>`, customer `c<i % customers>`, event type `event_type_sql` (SQL text over
    `i`), one of the first `days` days of January 2026, and the properties object's members
    `properties_sql` (SQL text over `i` of the JSON members, without braces)."""
    from warehouse.ingest.sqltext import lit

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(
        f"""
        COPY (
            SELECT '{{"transaction_id":"{tid_prefix}' || i || '","customer_id":"c'
                || (i % {int(customers)}) || '","event_type":"' || ({event_type_sql})
                || '","timestamp":"2026-01-' || lpad((1 + i % {int(days)})::VARCHAR, 2, '0')
                || 'T00:00:00Z","properties":{{' || ({properties_sql}) || '}}}}' AS line
            FROM range({int(n_events)}) r(i)
        ) TO {lit(str(target))} (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
        """  # noqa: S608 - our own formulas and scratch path
    )
    con.close()
    return target


def environment() -> str:
    """One line describing the machine and versions, printed with every benchmark table."""
    import platform
    import sys

    import pyarrow

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores, DuckDB {duckdb.__version__}, pyarrow {pyarrow.__version__}, "
        f"Python {sys.version.split()[0]}, {platform.system()} {platform.machine()}, "
        f"load average {load:.2f}"
    )
