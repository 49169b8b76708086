"""The records' own validation: what cannot exist, cannot reach a verdict."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from bench_agent.core.errors import ReportError
from bench_agent.core.model import (
    REFUSED_IN_NAMES,
    Measurement,
    Report,
    Status,
    Verdict,
    check_name,
    check_text,
    overall_status,
)
from bench_agent.core.units import Unit
from bench_agent.report.attest import load_report


@pytest.mark.parametrize("unit", [u for u in Unit if u is not Unit.CELSIUS])
def test_negative_values_are_refused_except_temperatures(unit: Unit) -> None:
    # A garbage parse giving -3 µs would pass every "< 10 µs" line.
    with pytest.raises(ValueError, match="cannot be negative"):
        Measurement("c", "m", -1.0, unit)
    assert Measurement("c", "m", 0.0, unit).value == 0.0


def test_a_temperature_may_be_below_zero() -> None:
    assert Measurement("c", "m", -5.0, Unit.CELSIUS).value == -5.0


@pytest.mark.parametrize("value", [math.nan, math.inf, "12", True])
def test_non_numbers_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        Measurement("c", "m", value, Unit.SECONDS)  # type: ignore[arg-type]


def test_nothing_passes_without_a_value() -> None:
    with pytest.raises(ValueError, match="needs a measured value"):
        Verdict("c", Status.PASS, "m")
    assert Verdict("c", Status.SKIP, message="no fio").value is None


def test_a_verdict_value_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite number"):
        Verdict("c", Status.FAIL, "m", value=math.inf, unit=Unit.SECONDS)


# Characters that reverse or hide text (UAX #9 section 2; CVE-2021-42574), controls,
# and line or paragraph separators: none belongs in a name.
REFUSED = {
    "\u202e": "U+202E RIGHT-TO-LEFT OVERRIDE",
    "\u202a": "U+202A LEFT-TO-RIGHT EMBEDDING",
    "\u2066": "U+2066 LEFT-TO-RIGHT ISOLATE",
    "\u2069": "U+2069 POP DIRECTIONAL ISOLATE",
    "\u200e": "U+200E LEFT-TO-RIGHT MARK",
    "\u200f": "U+200F RIGHT-TO-LEFT MARK",
    "\u200b": "U+200B ZERO WIDTH SPACE",
    "\u2028": "U+2028 LINE SEPARATOR",
    "\u2029": "U+2029 PARAGRAPH SEPARATOR",
    "\t": "U+0009 (Cc)",
    "\x1b": "U+001B (Cc)",
}


@pytest.mark.parametrize("char", REFUSED)
@pytest.mark.parametrize("field", ["check", "metric", "device"])
def test_names_with_control_format_or_bidirectional_characters_are_refused(
        char: str, field: str) -> None:
    names = {"check": "cpu-gemm", "metric": "cpu.gemm", "device": "gpu0", field: f"gpu{char}0"}
    expected = re.escape(f"{field} name {f'gpu{char}0'!r} contains {REFUSED[char]}, a control "
                         "or format character")
    with pytest.raises(ValueError, match=expected):
        Measurement(names["check"], names["metric"], 1.0, Unit.FLOPS, device=names["device"])
    with pytest.raises(ValueError, match=expected):
        Verdict(names["check"], Status.FAIL, names["metric"], value=1.0, unit=Unit.FLOPS,
                device=names["device"])


def test_the_ascii_shortcut_refuses_what_the_categories_refuse() -> None:
    # check_name and check_text pass printable ASCII (check_text: any ASCII) without
    # looking at each character: every ASCII character, alone and inside a name,
    # is answered as the per-character rule answers it.
    for code in range(128):
        char = chr(code)
        refused = unicodedata.category(char) in REFUSED_IN_NAMES
        for name in (char, f"gpu{char}0"):
            if refused:
                with pytest.raises(ValueError, match="a control or format character"):
                    check_name(name, "device name")
            else:
                assert check_name(name, "device name") == name
            assert check_text(name, "message") == name
    assert sum(unicodedata.category(chr(c)) in REFUSED_IN_NAMES for c in range(128)) == 33


def test_names_may_be_any_other_unicode_text() -> None:
    measurement = Measurement("проверка", "gpu.温度", 40.0, Unit.CELSIUS, device="nœud-0 β")
    assert (measurement.check, measurement.metric, measurement.device) == (
        "проверка", "gpu.温度", "nœud-0 β")
    assert check_text("line one\nline two", "message") == "line one\nline two"
    with pytest.raises(ValueError, match=re.escape(
            "message 'ok \\u202edone' contains U+202E RIGHT-TO-LEFT OVERRIDE, a bidirectional "
            "control")):
        check_text("ok \u202edone", "message")


def test_a_report_read_with_a_reversed_metric_name_is_a_report_error(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    report = _report_dict()
    report["measurements"][0]["metric"] = "gpu.\u202eperature"
    path.write_text(json.dumps(report))
    with pytest.raises(ReportError, match=re.escape(
            f"{path}: malformed report: ValueError: metric name 'gpu.\\u202eperature' contains "
            "U+202E RIGHT-TO-LEFT OVERRIDE")):
        load_report(path)


def test_a_number_too_large_for_a_float_is_a_report_error_not_an_overflow() -> None:
    report = _report_dict()
    report["measurements"][0]["samples"] = [10**400]
    with pytest.raises(ReportError, match="malformed report: OverflowError: int too large"):
        Report.from_dict(report)


def _report_dict() -> dict[str, Any]:
    return {
        "schema_version": 1, "report_id": "6f1c2b8e-6a51-4a51-9d2e-1c5d3f7a9b10",
        "agent_version": "0.1.0", "host": "n", "started_at": "2026-11-27T10:00:00Z",
        "finished_at": "2026-11-27T10:01:00Z",
        "suite": {"name": "quick", "sha256": "a" * 64}, "profile": {"name": "p", "sha256": "b"},
        "measurements": [{"check": "gpu", "metric": "gpu.temp", "value": 40.0, "unit": "degC"}],
        "verdicts": [],
    }


def test_a_run_where_every_verdict_is_skip_and_nothing_was_measured_is_an_error() -> None:
    # Every tool missing: each check SKIPs, nothing was measured, so nothing was proved.
    skips = [Verdict(check="storage.randread", status=Status.SKIP, message="fio not found"),
             Verdict(check="network.tcp_latency", status=Status.SKIP, message="no --peer")]
    assert overall_status(skips, measured=False) is Status.ERROR
    assert overall_status(skips, measured=True) is Status.SKIP


def test_write_atomic_into_a_folder_that_cannot_be_made_is_a_report_error(
        tmp_path: Path) -> None:
    from bench_agent.core.errors import ReportError
    from bench_agent.core.model import write_atomic

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReportError, match=r"^cannot write .*/file/sub/r\.json: "):
        write_atomic(blocker / "sub" / "r.json", "{}")
