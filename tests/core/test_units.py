"""units.py: exact parsing of human values, dimensions, durations, formatting."""

from __future__ import annotations

import pytest

from bench_agent.core.errors import UnitError
from bench_agent.core.units import (
    Quantity,
    Unit,
    format_value,
    parse_duration,
    parse_fraction,
    parse_quantity,
)

# --- parse_quantity: values and units ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        # bytes per second, decimal prefixes
        ("10 GB/s", 1e10, Unit.BYTES_PER_SECOND),
        ("10GB/s", 1e10, Unit.BYTES_PER_SECOND),
        ("10 GBps", 1e10, Unit.BYTES_PER_SECOND),
        ("0.1 GB/s", 1e8, Unit.BYTES_PER_SECOND),
        ("1.5 MB/s", 1.5e6, Unit.BYTES_PER_SECOND),
        ("2 GiB/s", 2 * 2**30, Unit.BYTES_PER_SECOND),
        ("42 bytes/s", 42.0, Unit.BYTES_PER_SECOND),
        # bits per second: three spellings, lower-case b is a bit
        ("25 Gbit/s", 2.5e10, Unit.BITS_PER_SECOND),
        ("25 Gbps", 2.5e10, Unit.BITS_PER_SECOND),
        ("25 Gb/s", 2.5e10, Unit.BITS_PER_SECOND),
        ("100 Gbit/s", 1e11, Unit.BITS_PER_SECOND),
        # IOPS with a count multiplier, either case of k
        ("100k IOPS", 1e5, Unit.IOPS),
        ("100K IOPS", 1e5, Unit.IOPS),
        ("100 k IOPS", 1e5, Unit.IOPS),
        ("100 kIOPS", 1e5, Unit.IOPS),
        ("1.5M IOPS", 1.5e6, Unit.IOPS),
        ("250 IOPS", 250.0, Unit.IOPS),
        # time
        ("10 us", 1e-5, Unit.SECONDS),
        ("10 µs", 1e-5, Unit.SECONDS),  # MICRO SIGN
        ("10 μs", 1e-5, Unit.SECONDS),  # GREEK SMALL LETTER MU
        ("10us", 1e-5, Unit.SECONDS),
        ("1 ms", 1e-3, Unit.SECONDS),
        ("10 ms", 0.01, Unit.SECONDS),
        ("500 ns", 5e-7, Unit.SECONDS),
        ("20 s", 20.0, Unit.SECONDS),
        ("2 min", 120.0, Unit.SECONDS),
        ("1.5 h", 5400.0, Unit.SECONDS),
        # bytes: decimal and binary prefixes are different units
        ("128 GB", 1.28e11, Unit.BYTES),
        ("128 GiB", 137438953472.0, Unit.BYTES),
        ("1.5 GiB", 1610612736.0, Unit.BYTES),
        ("10 TB", 1e13, Unit.BYTES),
        ("1 TiB", float(2**40), Unit.BYTES),
        ("4 KiB", 4096.0, Unit.BYTES),
        ("4 kB", 4000.0, Unit.BYTES),
        # FLOP/s
        ("500 TFLOP/s", 5e14, Unit.FLOPS),
        ("500 TFLOPS", 5e14, Unit.FLOPS),
        # others
        ("85 degC", 85.0, Unit.CELSIUS),
        ("85 °C", 85.0, Unit.CELSIUS),
        ("700 W", 700.0, Unit.WATTS),
        ("1.2 kW", 1200.0, Unit.WATTS),
        ("3 count", 3.0, Unit.COUNT),
        # number forms and surrounding whitespace
        ("  10 GB/s  ", 1e10, Unit.BYTES_PER_SECOND),
        ("1e3 IOPS", 1e3, Unit.IOPS),
        (".5 GB", 5e8, Unit.BYTES),
        ("-5 GB/s", -5e9, Unit.BYTES_PER_SECOND),
    ],
)
def test_parse_quantity_values(text: str, value: float, unit: Unit) -> None:
    q = parse_quantity(text)
    assert q == Quantity(value, unit)
    assert q.value == value  # exact, not approximately
    assert q.unit is unit


def test_decimal_tenth_is_exact() -> None:
    # Fraction arithmetic: 0.1 * 1e9 would be 100000000.00000001 in floats.
    assert parse_quantity("0.1 GB/s").value == 100_000_000.0
    assert parse_quantity("0.3 GB", Unit.BYTES).value == 300_000_000.0
    assert parse_quantity("0.7 us").value == 7e-7


def test_decimal_and_binary_prefixes_differ() -> None:
    gb = parse_quantity("128 GB").value
    gib = parse_quantity("128 GiB").value
    assert gb == 128 * 10**9
    assert gib == 128 * 2**30
    assert gib != gb


def test_bits_and_bytes_differ() -> None:
    assert parse_quantity("10 Gb/s").unit is Unit.BITS_PER_SECOND
    assert parse_quantity("10 GB/s").unit is Unit.BYTES_PER_SECOND


def test_expected_unit_matching_is_accepted() -> None:
    assert parse_quantity("25 Gbps", Unit.BITS_PER_SECOND) == Quantity(2.5e10, Unit.BITS_PER_SECOND)
    assert parse_quantity("100k IOPS", Unit.IOPS) == Quantity(1e5, Unit.IOPS)


@pytest.mark.parametrize(
    ("raw", "expected", "value"),
    [
        (32, Unit.COUNT, 32.0),
        (32.5, Unit.COUNT, 32.5),
        ("32", Unit.COUNT, 32.0),
        (1e10, Unit.BYTES_PER_SECOND, 1e10),
        ("1e-5", Unit.SECONDS, 1e-5),
        ("100k", Unit.IOPS, 1e5),
        ("100K", Unit.IOPS, 1e5),
        ("2 k", Unit.COUNT, 2000.0),
        ("3M", Unit.COUNT, 3e6),
    ],
)
def test_bare_number_taken_in_expected_unit(raw: str | float, expected: Unit, value: float) -> None:
    q = parse_quantity(raw, expected)
    assert q.unit is expected
    assert q.value == value
    assert isinstance(q.value, float)


def test_bare_number_without_expected_unit_is_refused() -> None:
    with pytest.raises(UnitError, match="has no unit and none is expected"):
        parse_quantity(10)
    with pytest.raises(UnitError, match="'10' has no unit"):
        parse_quantity("10")


def test_count_multiplier_alone_only_for_counts() -> None:
    # "100k" has a meaning for IOPS and counts, not for bytes.
    with pytest.raises(UnitError, match="unknown unit 'k'"):
        parse_quantity("100k", Unit.BYTES)


@pytest.mark.parametrize(
    ("text", "expected", "says"),
    [
        ("10 GB/s", Unit.IOPS, "'10 GB/s' is in bytes/s, expected a value in IOPS"),
        ("10 Gbit/s", Unit.BYTES_PER_SECOND, "is in bits/s, expected a value in bytes/s"),
        ("10 GB/s", Unit.BITS_PER_SECOND, "is in bytes/s, expected a value in bits/s"),
        ("10 us", Unit.BYTES, "is in s, expected a value in bytes"),
        ("128 GB", Unit.BYTES_PER_SECOND, "is in bytes, expected a value in bytes/s"),
        ("100k IOPS", Unit.COUNT, "is in IOPS, expected a value in count"),
    ],
)
def test_wrong_dimension_says_what_was_expected(text: str, expected: Unit, says: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_quantity(text, expected)
    message = str(info.value)
    assert says in message
    assert "e.g." in message  # an example of the right spelling


def test_wrong_dimension_example_is_in_the_expected_unit() -> None:
    with pytest.raises(UnitError, match=r'e\.g\. "100k IOPS"'):
        parse_quantity("10 GB/s", Unit.IOPS)
    with pytest.raises(UnitError, match=r'e\.g\. "25 Gbit/s"'):
        parse_quantity("10 GB/s", Unit.BITS_PER_SECOND)


@pytest.mark.parametrize("text", ["10 parsecs", "10 gb/s", "10 GiBit/s", "10 kiB", "5 m"])
def test_unknown_unit_lists_canonical_units(text: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_quantity(text, Unit.BYTES_PER_SECOND)
    message = str(info.value)
    suffix = text.split(" ", 1)[1]
    assert f"unknown unit {suffix!r}" in message
    assert repr(text) in message
    assert "canonical units:" in message
    for unit in Unit:
        assert unit.value in message


@pytest.mark.parametrize("text", ["", "   ", "GB/s", "ten GB/s", "10 GB / s"])
def test_unreadable_text(text: str) -> None:
    with pytest.raises(UnitError, match="cannot read"):
        parse_quantity(text, Unit.BYTES_PER_SECOND)


def test_boolean_refused() -> None:
    with pytest.raises(UnitError, match="boolean True"):
        parse_quantity(True, Unit.COUNT)
    with pytest.raises(UnitError, match="boolean False"):
        parse_quantity(False, Unit.COUNT)


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_number_refused(raw: float) -> None:
    with pytest.raises(UnitError, match="not a finite number"):
        parse_quantity(raw, Unit.COUNT)


def test_unit_error_is_a_value_error() -> None:
    assert issubclass(UnitError, ValueError)


def test_overflowing_number_is_a_unit_error() -> None:
    with pytest.raises(UnitError):
        parse_quantity("1e400 B")


def test_count_multiplier_refused_before_byte_units() -> None:
    # "100k GB/s" reads today as 1e14 bytes/s: a double prefix, surely a typo.
    with pytest.raises(UnitError):
        parse_quantity("100k GB/s")


# --- Unit and Quantity -------------------------------------------------------------


def test_unit_str_is_canonical_spelling() -> None:
    assert str(Unit.BYTES_PER_SECOND) == "bytes/s"
    assert str(Unit.BITS_PER_SECOND) == "bits/s"
    assert str(Unit.SECONDS) == "s"
    assert f"{Unit.FLOPS}" == "FLOP/s"
    assert Unit("IOPS") is Unit.IOPS


def test_quantity_str_uses_format_value() -> None:
    assert str(parse_quantity("10 GB/s")) == "10 GB/s"
    assert str(parse_quantity("25 Gbps")) == "25 Gbit/s"
    assert str(parse_quantity("10 us")) == "10 µs"


# --- parse_duration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20s", 20.0),
        ("20 s", 20.0),
        ("20 sec", 20.0),
        ("30m", 1800.0),
        ("30 m", 1800.0),
        ("30min", 1800.0),
        ("1 minute", 60.0),
        ("2 minutes", 120.0),
        ("1.5m", 90.0),
        ("4h", 14400.0),
        ("1.5 h", 5400.0),
        ("2 hours", 7200.0),
        ("1 hour", 3600.0),
        ("500 ms", 0.5),
        (" 30m ", 1800.0),
        (20, 20.0),
        (0.5, 0.5),
        ("60", 60.0),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "0", 0, 0.0, "-5s", -5, "-1 h", "0 h"])
def test_parse_duration_refuses_non_positive(text: str | float) -> None:
    with pytest.raises(UnitError, match="a duration must be positive"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["forever", "10 GB", "5 parsecs", "", "m"])
def test_parse_duration_refuses_non_durations(text: str) -> None:
    with pytest.raises(UnitError):
        parse_duration(text)


def test_parse_duration_wrong_dimension_message() -> None:
    with pytest.raises(UnitError, match="is in bytes, expected a value in s"):
        parse_duration("10 GB")


@pytest.mark.parametrize("text", ["0m", "0 min", "0 minutes", "0 hours", "0.0m"])
def test_parse_duration_refuses_zero_minutes(text: str) -> None:
    with pytest.raises(UnitError, match="a duration must be positive"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["1.2.3m", ".m", "1..5 hours"])
def test_parse_duration_malformed_number_is_unit_error(text: str) -> None:
    with pytest.raises(UnitError):
        parse_duration(text)


# --- format_value ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1.23e10, Unit.BYTES_PER_SECOND, "12.3 GB/s"),
        (1e10, Unit.BYTES_PER_SECOND, "10 GB/s"),
        (1e8, Unit.BYTES_PER_SECOND, "100 MB/s"),
        (512.0, Unit.BYTES_PER_SECOND, "512 B/s"),
        (2.5e10, Unit.BITS_PER_SECOND, "25 Gbit/s"),
        (1e11, Unit.BITS_PER_SECOND, "100 Gbit/s"),
        (-2.5e10, Unit.BITS_PER_SECOND, "-25 Gbit/s"),
        (5e14, Unit.FLOPS, "500 TFLOP/s"),
        (2e15, Unit.FLOPS, "2 PFLOP/s"),
        (1.28e11, Unit.BYTES, "128 GB"),
        (137438953472.0, Unit.BYTES, "137 GB"),  # decimal prefixes for display
        (5e13, Unit.BYTES, "50 TB"),
        (0.0, Unit.BYTES, "0 B"),
        (1e5, Unit.IOPS, "100 kIOPS"),
        (999.0, Unit.IOPS, "999 IOPS"),
        (2.0, Unit.SECONDS, "2 s"),
        (0.0, Unit.SECONDS, "0 s"),
        (0.25, Unit.SECONDS, "250 ms"),
        (1e-3, Unit.SECONDS, "1 ms"),
        (1e-5, Unit.SECONDS, "10 µs"),
        (2.5e-6, Unit.SECONDS, "2.5 µs"),
        (5e-9, Unit.SECONDS, "5 ns"),
        (85.0, Unit.CELSIUS, "85 °C"),
        (700.0, Unit.WATTS, "700 W"),
        (32.0, Unit.COUNT, "32"),
        (123456.0, Unit.COUNT, "123456"),
    ],
)
def test_format_value(value: float, unit: Unit, text: str) -> None:
    assert format_value(value, unit) == text


def test_format_value_accepts_unit_string() -> None:
    assert format_value(1e10, "bytes/s") == "10 GB/s"
    assert format_value(1e-5, "s") == "10 µs"


def test_format_value_unknown_unit_string() -> None:
    with pytest.raises(ValueError, match="'parsecs' is not a valid Unit"):
        format_value(1.0, "parsecs")


@pytest.mark.parametrize(
    ("text", "unit"),
    [("10 GB/s", Unit.BYTES_PER_SECOND), ("25 Gbit/s", Unit.BITS_PER_SECOND),
     ("100 kIOPS", Unit.IOPS), ("10 µs", Unit.SECONDS), ("128 GB", Unit.BYTES),
     ("500 TFLOP/s", Unit.FLOPS), ("1 ms", Unit.SECONDS)],
)
def test_format_then_parse_round_trip(text: str, unit: Unit) -> None:
    q = parse_quantity(text, unit)
    assert format_value(q.value, q.unit) == text
    assert parse_quantity(format_value(q.value, q.unit), unit) == q


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (999.6e9, Unit.BYTES_PER_SECOND, "1 TB/s"),
        (999_999.0, Unit.BYTES, "1 MB"),
        (0.0009999, Unit.SECONDS, "1 ms"),
    ],
)
def test_format_value_rounding_crosses_prefix(value: float, unit: Unit, text: str) -> None:
    assert format_value(value, unit) == text


# --- parse_fraction: warn bands, burn-in's throughput drop ---------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10%", 0.1), (" 15 % ", 0.15), ("0.05", 0.05), (0.2, 0.2), (1, 1.0), ("150%", 1.5)],
)
def test_parse_fraction(text: str | float, expected: float) -> None:
    assert parse_fraction(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["lots", "%", "10%%", "nan", "nan%", "inf", True, None, [1]])
def test_parse_fraction_refuses(text: object) -> None:
    with pytest.raises(UnitError, match="expected a fraction or a percentage like '10%'"):
        parse_fraction(text)  # type: ignore[arg-type]
