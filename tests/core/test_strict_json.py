"""core/strict_json.py: the one strict JSON reader, its tools' face (read_documents,
ParseError) and its reports' face (loads_strict, StrictJSONError)."""

from __future__ import annotations

import json
import re

import pytest

from bench_agent.core import strict_json
from bench_agent.core.errors import ParseError, StrictJSONError
from bench_agent.core.strict_json import loads_strict, read_document

STRICT_REFUSALS = [
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b'{"x": NaN}', "NaN is not a JSON number"),
    (b'[Infinity]', "Infinity is not a JSON number"),
    (b'[-Infinity]', "-Infinity is not a JSON number"),
    (b"[1e400]", "the number '1e400' is too large for a float"),
    (b"1" * 5000, "a number of more than 64 digits"),
    (b"-" + b"9" * 65, "a number of more than 64 digits"),
    (b"[" * 100_000, "nested 100000 deep, more than 64"),
    (b"[" * 65 + b"]" * 65, "nested 65 deep, more than 64"),
    (b'["\\ud800"]', "a string holds a lone surrogate escape"),
    (b'{"\\udfff": 1}', "a string holds a lone surrogate escape"),
    ('{"a": 1}'.encode("utf-16"), "not UTF-8 (invalid start byte at byte 0)"),
    (b"\xef\xbb\xbf{}", "Unexpected UTF-8 BOM"),
    (b"{not json", "Expecting property name enclosed in double quotes"),
]


@pytest.mark.parametrize(("data", "message"), STRICT_REFUSALS)
def test_loads_strict_refuses_what_json_loads_is_lenient_about(data: bytes, message: str
                                                                ) -> None:
    with pytest.raises(StrictJSONError, match=re.escape(message)):
        loads_strict(data)


def test_loads_strict_reads_every_json_a_report_holds() -> None:
    assert loads_strict(b"[" * 64 + b"]" * 64) == json.loads("[" * 64 + "]" * 64)
    # Brackets, quotes and digits inside strings are text, not nesting or numbers.
    text = json.dumps({"s": "[" * 200 + '\\"{{', "k[": ["]]]", 1], "d": "9" * 99 + "e999"})
    assert loads_strict(text) == json.loads(text)
    assert loads_strict(b'[1e308, -1e-400, 0.5E+02]') == [1e308, -0.0, 50.0]
    assert loads_strict(b'{"e": "\\ud83d\\ude00", "n": -' + b"9" * 64 + b", \"f\": 1e308}") == {
        "e": "\U0001f600", "n": -int("9" * 64), "f": 1e308}
    assert loads_strict("{\"nœud\": \"温度\"}".encode()) == {"nœud": "温度"}



# What both faces refuse, and the words they refuse it with: one set of hooks.
SHARED_REFUSALS = [
    ('{"a": NaN}', "NaN is not a JSON number (JSON has no NaN or Infinity)"),
    ('{"a": -Infinity}', "-Infinity is not a JSON number (JSON has no NaN or Infinity)"),
    ('{"a": 1e400}', "the number '1e400' is too large for a float"),
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
]


@pytest.mark.parametrize(("text", "words"), SHARED_REFUSALS)
def test_tools_and_reports_are_refused_alike(text: str, words: str) -> None:
    with pytest.raises(StrictJSONError) as report:
        loads_strict(text)
    with pytest.raises(ParseError) as tool:
        read_document(text, "fio")
    assert str(report.value).startswith(words)
    assert words in str(tool.value) and "fio" in str(tool.value)


def test_each_face_keeps_its_limits() -> None:
    """Tools count no figure past 2**64 (30 digits); a report's params may hold up to 64."""
    forty = "1" * 40
    assert loads_strict(f'{{"n": {forty}}}') == {"n": int(forty)}
    with pytest.raises(ParseError, match="an integer of 40 digits"):
        read_document(f'{{"n": {forty}}}', "fio")
    assert strict_json.MAX_INT_DIGITS == 30 and strict_json.MAX_NUMBER_DIGITS == 64
    assert strict_json.MAX_DEPTH == strict_json.MAX_JSON_DEPTH == 64


def test_attest_reads_with_the_same_reader() -> None:
    from bench_agent.report import attest

    assert attest.loads_strict is strict_json.loads_strict
