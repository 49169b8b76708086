"""Thresholds: parsed rules with a closed set of comparators, and their evaluation.

A threshold is data, never code (superbench's eval()-ed rules are what we avoid):
metric, comparator, value(s) in canonical units, severity, optional warn band and
the source of the number. ``evaluate`` is pure: measurements in, verdicts out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bench_agent.core.model import Measurement, Status, Verdict
from bench_agent.core.units import Unit, format_value


class Comparator(StrEnum):
    GE = ">="
    LE = "<="
    GT = ">"
    LT = "<"
    BETWEEN = "between"


# The lowest value a quantity of each unit can take: rates, sizes, counts and
# durations cannot be negative (Measurement refuses such values too); a
# temperature cannot be below absolute zero (-273.15 degC, SI Brochure 2.3.1).
_PHYSICAL_MINIMUM = {Unit.CELSIUS: -273.15}


def physical_minimum(unit: Unit) -> float:
    """The lowest value a quantity in ``unit`` can physically take."""
    return _PHYSICAL_MINIMUM.get(unit, 0.0)


class Severity(StrEnum):
    FAIL = "fail"  # a miss is FAIL
    WARN = "warn"  # advisory: a miss is WARN (e.g. tier classification)


@dataclass(frozen=True, slots=True)
class Threshold:
    """One rule. ``value`` is the limit (the lower one for ``between``).

    ``warn_band`` is a fraction: a measurement that passes but lies within that
    fraction of the limit, on the passing side, is WARN (close to failing). With
    ``required`` a metric that its check did not produce is FAIL instead of SKIP.
    ``checks`` and ``meaning`` come from the metric catalog (the profile loader
    fills them): the checks that measure the metric and what it means. Without
    ``checks`` the metric's first dotted part stands for its check.
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
    checks: tuple[str, ...] = ()
    meaning: str = ""

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
        self._check_domain()
        if self.warn_band is not None and not 0 < self.warn_band < 1:
            raise ValueError(f"{self.id}: warn_band must be a fraction in (0, 1)")

    def _check_domain(self) -> None:
        """Refuse limits outside what the metric can measure: a "-25 Gbit/s" floor
        passes every node, a "< 0" count fails every one; both are typos."""
        lowest = physical_minimum(self.unit)
        for limit in (self.value, self.upper):
            if limit is None:
                continue
            if not math.isfinite(limit):
                raise ValueError(f"{self.id}: the limit must be a finite number, got {limit!r}")
            if limit < lowest:
                raise ValueError(
                    f"{self.id}: {format_value(limit, self.unit)} is outside the domain of"
                    f" {self.metric} ({self.unit.value} cannot be below"
                    f" {format_value(lowest, self.unit)})")
        if self.comparator is Comparator.LT and self.value <= lowest:
            raise ValueError(
                f"{self.id}: '< {format_value(self.value, self.unit)}' can never pass:"
                f" {self.unit.value} cannot be below {format_value(lowest, self.unit)}")

    def describe(self) -> str:
        """The rule as a person reads it: ">= 32", "> 100 kIOPS", "1-2 GB/s"."""
        if self.comparator is Comparator.BETWEEN:
            assert self.upper is not None
            if self.upper == self.value:
                return f"exactly {format_value(self.value, self.unit)}"
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
            # A check's note on the value says why a miss is what it is ("0 GPUs":
            # NVML cannot start; "no baseline": the model is unknown).
            why = measurement.params.get("note")
            why = f"; {why}" if isinstance(why, str) and why else ""
            return verdict(status,
                           f"{measurement.display} does not meet {self.describe()}{note}{why}")
        if self.near_limit(value):
            assert self.warn_band is not None
            return verdict(
                Status.WARN,
                f"{measurement.display} passes but lies within {self.warn_band:.0%}"
                f" of the limit{note}",
            )
        return verdict(Status.PASS, note.strip(" ()"))


def not_measured(threshold: Threshold, check: str, reason: str, profile: str = "",
                 in_suite: bool = True) -> Verdict:
    """The verdict of a rule that has no measurement: SKIP with the reason, or FAIL
    when the profile requires the metric and its check ran here without producing
    it (a GPU profile on a node where gpu.health finds no usable GPU).

    A check the suite does not run leaves even a required metric SKIP: a suite is
    a chosen subset (`run nccl` judges no GPU health), and the table says so.
    """
    failed = threshold.required and in_suite
    message = reason
    if failed:
        owner = f"profile {profile}" if profile else "the profile"
        message = f"{owner} requires {threshold.metric} {threshold.describe()}"
        if threshold.meaning:
            message += f" ({threshold.meaning})"
        message += f"; {reason}"
    return Verdict(
        check=check,
        metric=threshold.metric,
        status=Status.FAIL if failed else Status.SKIP,
        threshold=threshold.describe(),
        source=threshold.source,
        message=message,
        threshold_id=threshold.id,
    )


def evaluate(
    measurements: Sequence[Measurement],
    thresholds: Iterable[Threshold],
    checks_ok: Iterable[str],
    *,
    unmeasured: Mapping[str, str] | None = None,
    profile: str = "",
) -> list[Verdict]:
    """Verdicts for the thresholds, in their order.

    ``checks_ok`` names the checks that ran and returned measurements; only their
    measurements are judged. A threshold whose check ran but did not produce its
    metric is SKIP (nothing to judge, e.g. GPU memory on a CPU node), or FAIL when
    the threshold is ``required``.

    Without ``unmeasured`` the thresholds of other checks are left out (the caller
    judges a subset). With it every threshold gets a verdict: ``unmeasured`` maps
    each check of the suite that did not measure (SKIP, ERROR) to the reason (its
    thresholds SKIP, required ones FAIL); a check in neither is not in the suite
    (SKIP, "metric not measured by this suite"). ``profile`` names the profile in
    the message of a required metric that is missing.
    """
    ran = set(checks_ok)
    verdicts: list[Verdict] = []
    for threshold in thresholds:
        owners = threshold.checks or (threshold.metric.split(".")[0],)
        # A metric that two checks emit (network.rdma_active_devices) is owned by
        # whichever of them ran, else by one the suite holds, else by the first.
        check = next((c for c in owners if c in ran), None) or next(
            (c for c in owners if unmeasured is not None and c in unmeasured), owners[0])
        # By metric, not by the owning check: a metric that two checks emit is
        # judged whichever of them ran.
        matching = [m for m in measurements if m.metric == threshold.metric and m.check in ran]
        if matching:
            verdicts.extend(threshold.judge(m) for m in matching)
        elif check in ran:
            reason = f"{check} measured no {threshold.metric} on this node"
            verdicts.append(not_measured(threshold, check, reason, profile))
        elif unmeasured is not None and check in unmeasured:
            verdicts.append(not_measured(threshold, check, unmeasured[check], profile))
        elif unmeasured is not None:
            reason = f"metric not measured by this suite ({check} is not in it)"
            verdicts.append(not_measured(threshold, check, reason, profile, in_suite=False))
    return verdicts
