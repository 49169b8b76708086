"""The records' own validation: what cannot exist, cannot reach a verdict."""

from __future__ import annotations

import math

import pytest

from bench_agent.model import Measurement, Status, Verdict
from bench_agent.units import Unit


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
