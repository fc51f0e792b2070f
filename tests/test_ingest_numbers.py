"""JSON numbers keep the text they were sent with, whatever their form and wherever they are
(an object value, inside a nested array or object), with or without whitespace around them;
strings that merely look like numbers (or hold `.`, `e-3`, `-0`) are kept too."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from warehouse.events import EventStore
from warehouse.home import Home
from warehouse.ingest import exactjson, ingest
from warehouse.layout import property_column

NOW = datetime(2026, 2, 1)

NUMBERS = [
    "0", "-0", "0.0", "-0.0", "-0e0", "0e5", "5", "-5", "1500", "0.1", "0.1000", "1.50",
    "1E5", "1e5", "1e+5", "1E+22", "1e22", "10e21", "1e21", "1e20", "0.0000001", "1E-7", "1e-7",
    "-2.50e-3", "5e-324", "1e308", "1e400", "1E400", "-1E400", "1.5E400", "1e+400",
    "12345678901234567890123", "-12345678901234567890123", "18446744073709551615",
    "18446744073709551616", "-9223372036854775808", "-9223372036854775809",
    "123456789012345678901234567890.5", "1.7976931348623157E309",
]  # fmt: skip
STRINGS = ["claude-3-5", "gpt-4.1", "e-5", "x1e5", "-0", "0", "1.50", "-0 ", "a-0,b"]


def event_line(i: int, properties: str) -> str:
    return (
        f'{{"transaction_id":"n{i}","customer_id":"c","event_type":"e",'
        f'"timestamp":"2026-01-30T10:00:00Z","properties":{properties}}}'
    )


def stored(home: Home, keys: list[str]) -> dict[str, dict[str, str | None]]:
    con = home.connect()
    try:
        query = EventStore(home, con).relation(keys, resolve_customers=False).sql("duckdb")
        columns = ", ".join(f'"{property_column(k)}"' for k in keys)
        rows = con.execute(f"SELECT transaction_id, {columns} FROM ({query})").fetchall()  # noqa: S608
        return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}
    finally:
        con.close()


@pytest.mark.usefixtures("write_path")
@pytest.mark.parametrize("spaced", [False, True])
def test_every_number_form_keeps_its_text(tmp_path: Path, spaced: bool) -> None:
    home = Home(tmp_path / "home")
    home.init()
    sep = ", " if spaced else ","
    colon = ": " if spaced else ":"
    lines, want = [], {}
    for i, n in enumerate(NUMBERS):
        # the number as a value, in a nested array (twice, around a zero), in a nested object
        props = (
            f'{{"v"{colon}{n}{sep}"a"{colon}[{n}{sep}0{sep}{n}]{sep}'
            f'"o"{colon}{{"x"{colon}{n}}}{sep}"s"{colon}"text"}}'
        )
        lines.append(event_line(i, props))
        want[f"n{i}"] = {"v": n, "a": f"[{n},0,{n}]", "o": f'{{"x":{n}}}', "s": "text"}
    for j, s in enumerate(STRINGS, start=len(NUMBERS)):
        lines.append(event_line(j, f'{{"v"{colon}{json.dumps(s)}{sep}"z"{colon}0}}'))
        want[f"n{j}"] = {"v": s, "a": None, "o": None, "s": None, "z": "0"}
    path = tmp_path / "numbers.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = ingest(home, [path], now=NOW)
    assert (summary.accepted, summary.rejected) == (len(lines), 0)
    got = stored(home, ["v", "a", "o", "s", "z"])
    for tid, values in want.items():
        expected = {"z": None, **values}
        assert got[tid] == expected, (tid, got[tid], expected)


def test_text_changed_finds_every_rewritten_number_and_skips_plain_rows() -> None:
    """The SQL test itself: TRUE for every line whose properties DuckDB writes with a number
    text other than the one sent, FALSE for plain lines (integers, strings, zeros sent as 0)."""
    con = duckdb.connect()
    texts = []
    for n in NUMBERS:
        for fmt in ('{{"v":{n}}}', '{{"a":[1,{n}]}}', '{{"o":{{"x": {n} }}}}'):
            texts.append(fmt.format(n=n))
    plain = ['{"a":1,"b":"x.5","c":0,"d":[0,1],"m":"claude-3-5"}', '{"t":true,"n":null}']
    rows = con.execute(
        f"""
        SELECT raw, p, {exactjson.text_changed("p", "raw")} AS flagged
        FROM (SELECT raw, json_extract_string(raw, '$') AS p
              FROM (SELECT unnest(?::VARCHAR[]) AS raw))
        """,  # noqa: S608
        [texts + plain],
    ).fetchall()
    con.close()
    for raw, p, flagged in rows:
        compact = json.dumps(json.loads(raw), separators=(",", ":"))
        rewritten = p != _compact_as_sent(raw)
        if rewritten:
            assert flagged, (raw, p, compact)
        if raw in plain:
            assert not flagged, raw


def _compact_as_sent(raw: str) -> str:
    """`raw` without the whitespace between its tokens (strings here hold no whitespace)."""
    return "".join(raw.split())
