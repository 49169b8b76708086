"""The closed set of units, and exact parsing of human values.

Every measurement is stored in one canonical unit per dimension (bytes/s, bits/s,
seconds, FLOP/s, ...). Suite and profile files may write human values such as
"10 GB/s", "25 Gbit/s", "100k IOPS", "10 us" or "128 GiB"; they are parsed with
exact rational arithmetic so "0.1 GB/s" is 1e8 bytes/s and not 99999999.99.

Decimal (k, M, G, T, P: powers of 1000) and binary (Ki, Mi, Gi, Ti, Pi: powers of
1024) prefixes are different units: "128 GB" is 1.28e11 bytes, "128 GiB" is
137438953472 bytes (IEC 80000-13). A lower-case "b" is a bit, an upper-case "B" a
byte ("Gb/s" is bits, "GB/s" bytes), as in perftest's and iperf3's headers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from bench_agent.core.errors import UnitError


class Unit(StrEnum):
    """Canonical units. The value is what reports and thresholds write."""

    BYTES_PER_SECOND = "bytes/s"
    BITS_PER_SECOND = "bits/s"
    SECONDS = "s"
    FLOPS = "FLOP/s"
    IOPS = "IOPS"
    BYTES = "bytes"
    COUNT = "count"
    CELSIUS = "degC"
    WATTS = "W"
    # Clock frequencies (GPU SM clock, CPU frequency in burn-in series).
    HERTZ = "Hz"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Quantity:
    value: float
    unit: Unit

    def __str__(self) -> str:
        return format_value(self.value, self.unit)


_DECIMAL = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}

_TIME_FACTORS: dict[str, Fraction] = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "µs": Fraction(1, 10**6),
    "μs": Fraction(1, 10**6),  # GREEK SMALL LETTER MU, which some editors type
    "ms": Fraction(1, 10**3),
    "s": Fraction(1),
    "sec": Fraction(1),
    "min": Fraction(60),
    "h": Fraction(3600),
}


def _build_suffix_table() -> dict[str, tuple[Unit, Fraction]]:
    """Every accepted suffix, mapped to its canonical unit and exact factor."""
    table: dict[str, tuple[Unit, Fraction]] = {}
    prefixes: dict[str, int] = {**_DECIMAL, **_BINARY}
    for prefix, multiplier in prefixes.items():
        f = Fraction(multiplier)
        # bytes and bytes per second
        table[f"{prefix}B"] = (Unit.BYTES, f)
        table[f"{prefix}B/s"] = (Unit.BYTES_PER_SECOND, f)
        table[f"{prefix}Bps"] = (Unit.BYTES_PER_SECOND, f)
        # bits per second: Gbit/s, Gb/s, Gbps
        table[f"{prefix}bit/s"] = (Unit.BITS_PER_SECOND, f)
        table[f"{prefix}b/s"] = (Unit.BITS_PER_SECOND, f)
        table[f"{prefix}bps"] = (Unit.BITS_PER_SECOND, f)
        # FLOP/s (also the common FLOPS spelling)
        table[f"{prefix}FLOP/s"] = (Unit.FLOPS, f)
        table[f"{prefix}FLOPS"] = (Unit.FLOPS, f)
    for prefix, count_factor in _DECIMAL.items():
        table[f"{prefix}IOPS"] = (Unit.IOPS, Fraction(count_factor))
    table["bytes"] = (Unit.BYTES, Fraction(1))
    table["bytes/s"] = (Unit.BYTES_PER_SECOND, Fraction(1))
    table["bits/s"] = (Unit.BITS_PER_SECOND, Fraction(1))
    for suffix, time_factor in _TIME_FACTORS.items():
        table[suffix] = (Unit.SECONDS, time_factor)
    for suffix in ("degC", "°C", "C"):
        table[suffix] = (Unit.CELSIUS, Fraction(1))
    for prefix in ("", "k"):
        table[f"{prefix}W"] = (Unit.WATTS, Fraction(_DECIMAL[prefix]))
    for prefix in ("", "k", "M", "G"):
        table[f"{prefix}Hz"] = (Unit.HERTZ, Fraction(_DECIMAL[prefix]))
    table["count"] = (Unit.COUNT, Fraction(1))
    return table


_SUFFIXES = _build_suffix_table()

# A number (optionally signed, decimal or exponent), an optional count multiplier
# written against it ("100k IOPS"), then the unit suffix.
_QUANTITY_RE = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<suffix>\S*(?:\s+\S+)?)\s*$"
)
_COUNT_MULTIPLIERS = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}


def parse_quantity(text: str | int | float, expected: Unit | None = None) -> Quantity:
    """Parse "10 GB/s" into Quantity(1e10, bytes/s), exactly.

    A bare number is taken in the expected unit (canonical), so a profile may write
    ``value: 32`` for a count. Raises UnitError for an unknown unit, or a unit
    whose dimension differs from ``expected``.
    """
    if isinstance(text, bool):
        raise UnitError(f"expected a quantity, got the boolean {text!r}")
    if isinstance(text, int | float):
        if expected is None:
            raise UnitError(f"the number {text!r} has no unit and none is expected here")
        if not math.isfinite(text):
            raise UnitError(f"{text!r} is not a finite number")
        return Quantity(float(text), expected)
    match = _QUANTITY_RE.match(text)
    if not match:
        raise UnitError(f"cannot read {text!r} as a number with a unit")
    number = Fraction(match.group("num"))
    suffix = match.group("suffix").strip()
    unit, factor = _resolve_suffix(suffix, expected, text)
    if expected is not None and unit is not expected:
        raise UnitError(
            f"{text!r} is in {unit.value}, expected a value in {expected.value}"
            f" (e.g. {_example(expected)})"
        )
    try:
        value = float(number * factor)
    except OverflowError:
        raise UnitError(f"{text!r} is too large") from None
    return Quantity(value, unit)


def _resolve_suffix(suffix: str, expected: Unit | None, text: str) -> tuple[Unit, Fraction]:
    if suffix == "":
        if expected is None:
            raise UnitError(f"{text!r} has no unit")
        return expected, Fraction(1)
    compact = suffix.replace(" ", "")
    if compact in _SUFFIXES:
        return _SUFFIXES[compact]
    # "100k IOPS", "2 k" for counts: a multiplier, a space, then the unit word.
    parts = suffix.split()
    if len(parts) == 2 and parts[0] in _COUNT_MULTIPLIERS and parts[1] in _SUFFIXES:
        unit, factor = _SUFFIXES[parts[1]]
        # Only counts take a detached multiplier: "100k GB/s" is a typo, not 1e14.
        if unit in (Unit.COUNT, Unit.IOPS):
            return unit, factor * _COUNT_MULTIPLIERS[parts[0]]
    if suffix in _COUNT_MULTIPLIERS and expected in (Unit.COUNT, Unit.IOPS):
        return expected, Fraction(_COUNT_MULTIPLIERS[suffix])
    known = ", ".join(sorted({u.value for u in Unit}))
    raise UnitError(f"unknown unit {suffix!r} in {text!r} (canonical units: {known})")


def _example(unit: Unit) -> str:
    return {
        Unit.BYTES_PER_SECOND: '"10 GB/s"',
        Unit.BITS_PER_SECOND: '"25 Gbit/s"',
        Unit.SECONDS: '"10 us"',
        Unit.FLOPS: '"500 TFLOP/s"',
        Unit.IOPS: '"100k IOPS"',
        Unit.BYTES: '"128 GB" or "128 GiB"',
        Unit.COUNT: "32",
        Unit.CELSIUS: '"85 degC"',
        Unit.WATTS: '"700 W"',
    }[unit]


def parse_duration(text: str | int | float) -> float:
    """Seconds from "20s", "30m", "4h", "1.5 h" or a bare number of seconds."""
    if isinstance(text, str):
        stripped = text.strip()
        # "30m" means minutes for durations (not milli-anything): accepted here only.
        number = r"(\d+(?:\.\d*)?|\.\d+)"
        minutes = re.fullmatch(number + r"\s*(?:m|min|minutes?)", stripped)
        hours = re.fullmatch(number + r"\s*hours?", stripped)
        if minutes:
            seconds = float(Fraction(minutes.group(1)) * 60)
        elif hours:
            seconds = float(Fraction(hours.group(1)) * 3600)
        else:
            seconds = parse_quantity(text, Unit.SECONDS).value
    else:
        seconds = parse_quantity(text, Unit.SECONDS).value
    if seconds <= 0:
        raise UnitError(f"a duration must be positive, got {text!r}")
    return seconds


def parse_fraction(text: str | int | float) -> float:
    """A fraction from "10%", "0.1" or 0.1 (a profile's warn band, burn-in's
    throughput drop); UnitError for anything else, NaN, infinity and YAML's true
    included (a band of NaN would compare false with every value)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise UnitError(f"expected a fraction or a percentage like '10%', got {text!r}")
    stripped = text.strip() if isinstance(text, str) else text
    try:
        if isinstance(stripped, str) and stripped.endswith("%"):
            value = float(stripped[:-1]) / 100
        else:
            value = float(stripped)
    except ValueError:
        raise UnitError(f"expected a fraction or a percentage like '10%', got {text!r}"
                        ) from None
    if not math.isfinite(value):
        raise UnitError(f"expected a fraction or a percentage like '10%', got {text!r}")
    return value


# --- formatting for people -------------------------------------------------------

_DISPLAY_PREFIXES = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def _scaled(value: float, base: str) -> str:
    # Round first, then choose the prefix: 999.6e9 is "1 T", not "1e+03 G".
    magnitude = abs(float(f"{value:.3g}"))
    for factor, prefix in _DISPLAY_PREFIXES:
        if magnitude >= factor:
            return f"{value / factor:.3g} {prefix}{base}"
    return f"{value:.3g} {base}"


def format_value(value: float, unit: Unit | str) -> str:
    """A short human rendering: 1.23e10 bytes/s -> "12.3 GB/s" (decimal prefixes)."""
    unit = Unit(unit)
    if unit is Unit.BYTES_PER_SECOND:
        return _scaled(value, "B/s")
    if unit is Unit.BITS_PER_SECOND:
        return _scaled(value, "bit/s")
    if unit is Unit.FLOPS:
        return _scaled(value, "FLOP/s")
    if unit is Unit.BYTES:
        return _scaled(value, "B")
    if unit is Unit.IOPS:
        return _scaled(value, "IOPS")
    if unit is Unit.SECONDS:
        magnitude = abs(float(f"{value:.3g}"))
        if magnitude == 0 or magnitude >= 1:
            return f"{value:.3g} s"
        if magnitude >= 1e-3:
            return f"{value * 1e3:.3g} ms"
        if magnitude >= 1e-6:
            return f"{value * 1e6:.3g} µs"
        return f"{value * 1e9:.3g} ns"
    if unit is Unit.CELSIUS:
        return f"{value:.3g} °C"
    if unit is Unit.WATTS:
        return f"{value:.4g} W"
    if unit is Unit.HERTZ:
        return _scaled(value, "Hz")
    return f"{value:.6g}"
