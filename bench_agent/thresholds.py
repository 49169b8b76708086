"""Thresholds: parsed rules with a closed set of comparators, and their evaluation.

A threshold is data, never code (superbench's eval()-ed rules are what we avoid):
metric, comparator, value(s) in canonical units, severity, optional warn band and
the source of the number. ``evaluate`` is pure: measurements in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bench_agent.model import Measurement, Status, Verdict
from bench_agent.units import Unit, format_value


class Comparator(StrEnum):
    GE = ">="
    LE = "<="
    GT = ">"
    LT = "<"
    BETWEEN = "between"


class Severity(StrEnum):
    FAIL = "fail"  # a miss is FAIL
    WARN = "warn"  # advisory: a miss is WARN (e.g. tier classification)


@dataclass(frozen=True, slots=True)
class Threshold:
    """One rule. ``value`` is the limit (the lower one for ``between``).

    ``warn_band`` is a fraction: a measurement that passes but lies within that
    fraction of the limit, on the passing side, is WARN (close to failing). With
    ``required`` a metric that its check did not produce is FAIL instead of SKIP.
    """

    id: str
    metric: str
    comparator: Comparator
    value: float
    unit: Unit
    source: str
    upper: float | None = None
    severity: Severity = Severity.FAIL
    warn_band: float | None = None
    required: bool = False

    def __post_init__(self) -> None:
        # Accept plain strings as Measurement and Verdict do.
        object.__setattr__(self, "comparator", Comparator(self.comparator))
        object.__setattr__(self, "unit", Unit(self.unit))
        object.__setattr__(self, "severity", Severity(self.severity))
        if self.comparator is Comparator.BETWEEN:
            if self.upper is None or self.upper < self.value:
                raise ValueError(f"{self.id}: 'between' needs an upper limit >= the lower")
        elif self.upper is not None:
            raise ValueError(f"{self.id}: only 'between' takes an upper limit")
        if self.warn_band is not None and not 0 < self.warn_band < 1:
            raise ValueError(f"{self.id}: warn_band must be a fraction in (0, 1)")

    def describe(self) -> str:
        """The rule as a person reads it: ">= 32", "> 100 kIOPS", "1-2 GB/s"."""
        if self.comparator is Comparator.BETWEEN:
            assert self.upper is not None
            low = format_value(self.value, self.unit)
            high = format_value(self.upper, self.unit)
            return f"between {low} and {high}"
        return f"{self.comparator.value} {format_value(self.value, self.unit)}"

    def passes(self, value: float) -> bool:
        match self.comparator:
            case Comparator.GE:
                return value >= self.value
            case Comparator.LE:
                return value <= self.value
            case Comparator.GT:
                return value > self.value
            case Comparator.LT:
                return value < self.value
            case Comparator.BETWEEN:
                assert self.upper is not None
                return self.value <= value <= self.upper

    def near_limit(self, value: float) -> bool:
        """True when a passing value lies within the warn band of a limit."""
        if self.warn_band is None:
            return False
        band = self.warn_band
        match self.comparator:
            case Comparator.GE | Comparator.GT:
                return value < self.value * (1 + band)
            case Comparator.LE | Comparator.LT:
                return value > self.value * (1 - band)
            case Comparator.BETWEEN:
                assert self.upper is not None
                width = (self.upper - self.value) * band
                return value < self.value + width or value > self.upper - width

    def judge(self, measurement: Measurement) -> Verdict:
        """The verdict of one measurement against this rule (no I/O, no raising)."""

        def verdict(status: Status, message: str, measured: bool = True) -> Verdict:
            return Verdict(
                check=measurement.check,
                status=status,
                metric=measurement.metric,
                value=measurement.value if measured else None,
                unit=measurement.unit if measured else None,
                threshold=self.describe(),
                source=self.source,
                message=message,
                device=measurement.device,
                threshold_id=self.id,
            )

        if measurement.unit is not self.unit:
            return verdict(
                Status.ERROR,
                f"unit mismatch: measured in {measurement.unit.value}, threshold"
                f" {self.id} is in {self.unit.value}",
                measured=False,
            )
        value = measurement.value
        note = " (unstable: wide spread between repetitions)" if measurement.unstable else ""
        if not self.passes(value):
            status = Status.FAIL if self.severity is Severity.FAIL else Status.WARN
            return verdict(status, f"{measurement.display} does not meet {self.describe()}{note}")
        if self.near_limit(value):
            assert self.warn_band is not None
            return verdict(
                Status.WARN,
                f"{measurement.display} passes but lies within {self.warn_band:.0%}"
                f" of the limit{note}",
            )
        return verdict(Status.PASS, note.strip(" ()"))


def evaluate(
    measurements: Sequence[Measurement],
    thresholds: Iterable[Threshold],
    checks_ok: Iterable[str],
) -> list[Verdict]:
    """Verdicts for every threshold whose check ran successfully.

    ``checks_ok`` names the checks that ran and returned measurements; thresholds
    on other checks are left to the runner (which gives those checks their SKIP
    or ERROR verdict) or do not apply to this suite. A threshold whose metric the
    check did not produce is SKIP (nothing to judge, e.g. GPU memory on a CPU
    node), or FAIL when the threshold is ``required``.
    """
    from bench_agent.metrics import METRICS

    ran = set(checks_ok)
    verdicts: list[Verdict] = []
    for threshold in thresholds:
        info = METRICS.get(threshold.metric)
        check = info.check if info else threshold.metric.split(".")[0]
        if check not in ran:
            continue
        matching = [m for m in measurements if m.metric == threshold.metric]
        if not matching:
            status = Status.FAIL if threshold.required else Status.SKIP
            verdicts.append(
                Verdict(
                    check=check,
                    metric=threshold.metric,
                    status=status,
                    threshold=threshold.describe(),
                    source=threshold.source,
                    message=f"{check} measured no {threshold.metric} on this node",
                    threshold_id=threshold.id,
                )
            )
            continue
        verdicts.extend(threshold.judge(m) for m in matching)
    return verdicts
