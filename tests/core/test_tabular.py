"""Tabular output: control-character escaping, formula-injection guard, CSV records."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indelible.core.replay import MISSING
from indelible.core.tabular import (
    CSV_COLUMNS,
    csv_cell,
    csv_header,
    csv_line,
    csv_row,
    escape_control,
    unescape_control,
)

LEAF_HASH = "ab" * 32
RECEIVED_AT = "2026-11-23T19:03:44.123Z"
CONTROLS = [chr(code) for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]


def full_event() -> dict[str, Any]:
    return {
        "event_id": "0190a6e4-7b1c-7d3e-8f00-123456789abc",
        "event_type": "invoice.voided",
        "occurred_at": "2026-11-23T19:03:40.000Z",
        "actor": {"id": "u_42", "type": "user", "name": "Ada"},
        "action": "update",
        "outcome": "success",
        "target": {"type": "invoice", "id": "inv_7"},
        "related": [{"type": "customer", "id": "c_1"}],
        "reason": "customer asked",
        "context": {
            "ip": "203.0.113.9",
            "user_agent": "curl/8",
            "request_id": "req-1",
            "session_id": "s-1",
            "source": "api",
        },
        "changes": [{"field": "status", "before": "sent", "after": "void"}],
        "data": {"note": "x", "amount": 1.5},
    }


def parse_line(line: str) -> list[str]:
    return next(csv.reader(io.StringIO(line, newline="")))


# -- escape_control -------------------------------------------------------------------------


def test_plain_text_is_returned_unchanged() -> None:
    text = "plain text, with ünïcödé and emoji 🎉"
    assert escape_control(text) is text
    assert unescape_control(text) is text


@pytest.mark.parametrize("char", CONTROLS)
def test_every_control_character_becomes_a_lowercase_hex_escape(char: str) -> None:
    assert escape_control(char) == f"\\x{ord(char):02x}"


def test_named_escapes() -> None:
    assert escape_control("a\r\nb") == "a\\x0d\\x0ab"
    assert escape_control("\x1b[31mred") == "\\x1b[31mred"
    assert escape_control("\\") == "\\\\"
    assert escape_control("\u2028\u2029") == "\\u2028\\u2029"


def test_text_that_looks_like_an_escape_survives_the_round_trip() -> None:
    text = "\\x1b is not ESC, \\\\ is two backslashes"
    assert escape_control(text) == "\\\\x1b is not ESC, \\\\\\\\ is two backslashes"
    assert unescape_control(escape_control(text)) == text


@pytest.mark.parametrize(
    "malformed",
    ["\\", "end\\", "\\q", "\\x1", "\\x41", "\\x1B", "\\xa0", "\\u2027", "\\u20", "\\n"],
)
def test_unescape_rejects_malformed_escapes(malformed: str) -> None:
    with pytest.raises(ValueError, match="malformed escape"):
        unescape_control(malformed)


@pytest.mark.parametrize("raw", ["a\nb", "\x1b", "\u2028", "\x85"])
def test_unescape_rejects_raw_control_characters(raw: str) -> None:
    with pytest.raises(ValueError, match="raw control character"):
        unescape_control(raw)


@given(st.text())
def test_escape_then_unescape_round_trips_any_text(text: str) -> None:
    escaped = escape_control(text)
    assert unescape_control(escaped) == text
    assert not any(char in escaped for char in [*CONTROLS, "\u2028", "\u2029"])


@given(
    st.lists(st.sampled_from(["\\", "x", "u", "0", "1", "7", "a", "f", "2028", "\n"])).map("".join)
)
def test_unescape_accepts_exactly_what_escape_writes(text: str) -> None:
    try:
        original = unescape_control(text)
    except ValueError:
        return
    assert escape_control(original) == text


# -- csv_cell -------------------------------------------------------------------------------


@pytest.mark.parametrize("absent", [None, MISSING])
def test_absent_values_are_empty_cells(absent: Any) -> None:
    assert csv_cell(absent) == ""


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("text", "text"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (12, "12"),
        (1.0, "1"),
        (1.5, "1.5"),
        (1e21, "1e+21"),
        ([1, "a", None], '[1,"a",null]'),
        ({"b": 1, "a": {"d": 2, "c": 3}}, '{"a":{"c":3,"d":2},"b":1}'),
        ({"é": "ü"}, '{"é":"ü"}'),
    ],
)
def test_json_values_become_compact_canonical_text(value: Any, cell: str) -> None:
    assert csv_cell(value) == cell


def test_json_cells_are_escaped_too() -> None:
    # JCS writes LF in a string as the JSON escape \n, whose backslash is then doubled;
    # C1 and U+2028, which JCS leaves raw, are escaped.
    assert csv_cell({"a": "x\ny\x85\u2028"}) == '{"a":"x\\\\ny\\x85\\u2028"}'


def test_value_not_json_is_refused() -> None:
    with pytest.raises(ValueError):
        csv_cell(float("nan"))


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
def test_every_formula_prefix_is_guarded(prefix: str) -> None:
    assert csv_cell(prefix + 'HYPERLINK("http://x")') == "'" + prefix + 'HYPERLINK("http://x")'
    assert csv_cell(prefix) == "'" + prefix


@pytest.mark.parametrize("value", [["=1"], {"=a": 1}])
def test_json_cells_never_start_with_a_formula_prefix(value: Any) -> None:
    assert csv_cell(value)[0] in "[{"


@pytest.mark.parametrize("value", ["\t=1", "\r=1"])
def test_leading_tab_or_cr_is_escaped_so_no_formula_starts(value: str) -> None:
    assert csv_cell(value) == escape_control(value)
    assert csv_cell(value).startswith("\\x")


@pytest.mark.parametrize("value", [-5, -1.5, -1e-7, -(2**53) + 1, "-5", "-0.25", "-1E+3"])
def test_negative_numbers_are_not_guarded(value: Any) -> None:
    assert not csv_cell(value).startswith("'")


@pytest.mark.parametrize("value", ["-5+cmd", "-5\n", "+5", "-", "-.5", "-5.", "-1e", "-١٢"])
def test_text_that_is_not_a_plain_number_is_guarded(value: str) -> None:
    assert csv_cell(value).startswith("'")


def test_formula_prefix_after_leading_space_or_quote_is_not_at_the_start() -> None:
    assert csv_cell(" =1") == " =1"
    assert csv_cell("'=1") == "'=1"


# -- rows and lines -------------------------------------------------------------------------


def test_csv_row_has_one_cell_per_column_in_order() -> None:
    row = csv_row(7, RECEIVED_AT, LEAF_HASH, full_event())
    assert dict(zip(CSV_COLUMNS, row, strict=True)) == {
        "seq": "7",
        "received_at": RECEIVED_AT,
        "event_id": "0190a6e4-7b1c-7d3e-8f00-123456789abc",
        "event_type": "invoice.voided",
        "occurred_at": "2026-11-23T19:03:40.000Z",
        "actor_type": "user",
        "actor_id": "u_42",
        "actor_name": "Ada",
        "target_type": "invoice",
        "target_id": "inv_7",
        "action": "update",
        "outcome": "success",
        "reason": "customer asked",
        "ip": "203.0.113.9",
        "user_agent": "curl/8",
        "request_id": "req-1",
        "session_id": "s-1",
        "source": "api",
        "related": '[{"id":"c_1","type":"customer"}]',
        "changes": '[{"after":"void","before":"sent","field":"status"}]',
        "data": '{"amount":1.5,"note":"x"}',
        "leaf_hash": LEAF_HASH,
    }


def test_csv_row_leaves_absent_optional_parts_empty() -> None:
    event = {"event_id": "e", "actor": {"id": "u", "type": "user", "name": None}}
    row = dict(zip(CSV_COLUMNS, csv_row(0, RECEIVED_AT, LEAF_HASH, event), strict=True))
    assert row["actor_id"] == "u"
    empty = set(CSV_COLUMNS) - {"seq", "received_at", "event_id", "actor_type", "actor_id"}
    assert {row[column] for column in empty - {"leaf_hash"}} == {""}


def test_csv_row_tolerates_parts_that_are_not_objects() -> None:
    event = {"actor": "u_42", "context": ["ip"], "target": None}
    row = dict(zip(CSV_COLUMNS, csv_row(0, RECEIVED_AT, LEAF_HASH, event), strict=True))
    assert (row["actor_id"], row["ip"], row["target_id"]) == ("", "", "")


def test_csv_header_names_the_columns() -> None:
    assert csv_header() == ",".join(CSV_COLUMNS) + "\r\n"


def test_csv_line_quotes_only_when_needed_and_ends_with_crlf() -> None:
    assert csv_line(["a", "b c", "d,e", 'f"g', ""]) == 'a,b c,"d,e","f""g",\r\n'


@given(st.lists(st.text(), max_size=6))
def test_csv_lines_parse_back_to_the_same_cells(values: list[str]) -> None:
    cells = [csv_cell(value) for value in values]
    line = csv_line(cells)
    assert line.endswith("\r\n")
    assert line.count("\r") == line.count("\n") == 1  # one physical line
    if cells:
        assert parse_line(line) == cells


def test_crlf_and_ansi_escape_yield_one_line_with_no_raw_control() -> None:
    event = full_event()
    event["reason"] = "ok\r\nFAKE LOG LINE \x1b[2J\x1b[31mred\x1b[0m"
    event["data"] = {"evil": "\x1b]8;;http://x\x07link\x1b]8;;\x07\u2028"}
    line = csv_line(csv_row(3, RECEIVED_AT, LEAF_HASH, event))
    body = line.removesuffix("\r\n")
    assert not any(char in body for char in [*CONTROLS, "\u2028", "\u2029"])
    cells = parse_line(line)
    reason = cells[CSV_COLUMNS.index("reason")]
    assert unescape_control(reason) == event["reason"]
    assert reason == "ok\\x0d\\x0aFAKE LOG LINE \\x1b[2J\\x1b[31mred\\x1b[0m"
