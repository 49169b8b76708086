"""Thresholds: parsed rules with a closed set of comparators, and their evaluation.

A threshold is data, never code (superbench's eval()-ed rules are what we avoid):
metric, comparator, value(s) in canonical units, severity, optional warn band and
the source of the number. ``evaluate`` is pure: measurements in, verdicts out.

Time-window rules judge a Series (a metric sampled over a burn-in) instead of one
measurement, with two more fields, both data:

    for_at_least: S   a miss counts only once it has lasted S seconds without a
                      break (from the first sample that misses to the current one):
                      "hardware slowdown longer than 30 s" is ``<= 0`` for 30 s
    of_first: S       the limit is relative: ``value`` is a fraction of the level
                      of the series over its first S seconds (their median), and
                      only the samples after those S seconds are judged: "more than
                      10 % below the first minutes' level" is ``>= 90%`` of_first 2m

``evaluate_series`` is pure too: series in, verdicts out, a miss with the time it
happened.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

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
    ``for_at_least`` and ``of_first`` (seconds) make it a time-window rule, judged
    on a Series only (see the module docstring); with ``of_first`` the value and
    upper limit are fractions of the series' early level, not quantities.
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
    for_at_least: float | None = None
    of_first: float | None = None

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
        for name, seconds in (("for_at_least", self.for_at_least), ("of_first", self.of_first)):
            if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"{self.id}: {name} must be a duration of 0 s or more,"
                                 f" got {seconds!r}")
        if self.of_first is not None:
            for limit in (self.value, self.upper):
                if limit is not None and not (math.isfinite(limit) and limit >= 0):
                    raise ValueError(f"{self.id}: a relative limit is a fraction of 0 or"
                                     f" more, got {limit!r}")
        else:
            self._check_domain()
        if self.warn_band is not None and not 0 < self.warn_band < 1:
            raise ValueError(f"{self.id}: warn_band must be a fraction in (0, 1)")

    @property
    def windowed(self) -> bool:
        """A time-window rule: it judges a Series, never a single measurement."""
        return self.for_at_least is not None or self.of_first is not None

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
        """The rule as a person reads it: ">= 32", "> 100 kIOPS", "1-2 GB/s",
        ">= 90 % of the first 2 min", "<= 0 for at least 30 s"."""
        if self.of_first is not None:
            text = (f"{self.comparator.value} {self.value:.0%}" if self.upper is None
                    else f"between {self.value:.0%} and {self.upper:.0%}")
            text += f" of the first {format_duration(self.of_first)}"
        else:
            text = self._describe_limits()
        if self.for_at_least is not None:
            text += f" for at least {format_duration(self.for_at_least)}"
        return text

    def _describe_limits(self) -> str:
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

        if self.windowed:
            return verdict(Status.ERROR, f"threshold {self.id} is a time-window rule: it"
                           " judges a series (a burn-in), not one measurement",
                           measured=False)
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

    def judge_series(self, series: Series) -> Verdict:
        """The verdict of a time series: FAIL (or WARN) at the first sample where the
        rule is missed for its window, with that time; else PASS (WARN near the
        limit) with the worst value seen. No I/O, no raising."""

        def verdict(status: Status, message: str, value: float | None = None,
                    rule: str | None = None) -> Verdict:
            return Verdict(check=series.check, status=status, metric=series.metric,
                           value=value, unit=series.unit if value is not None else None,
                           threshold=rule or self.describe(), source=self.source,
                           message=message, device=series.device, threshold_id=self.id)

        if series.unit is not self.unit:
            return verdict(Status.ERROR, f"unit mismatch: sampled in {series.unit.value},"
                           f" threshold {self.id} is in {self.unit.value}")
        if not series.points:
            return verdict(Status.SKIP, f"no sample of {series.metric}")
        rule, judged, level = self, series.points, ""
        if self.of_first is not None:
            early = [v for t, v in series.points if t <= self.of_first]
            judged = tuple((t, v) for t, v in series.points if t > self.of_first)
            if not judged:
                return verdict(Status.SKIP, "the run ended within the first "
                               f"{format_duration(self.of_first)}: nothing to compare with"
                               " its level")
            # No sample inside the window (an interval longer than it): the first one is
            # the early level.
            base = statistics.median(early) if early else series.points[0][1]
            rule = replace(self, value=self.value * base,
                           upper=None if self.upper is None else self.upper * base,
                           of_first=None)
            level = f" (the first {format_duration(self.of_first)}: {fmt(base, self.unit)})"
        described = self.describe() + level
        since: float | None = None
        for t, value in judged:
            if rule.passes(value):
                since = None
                continue
            since = t if since is None else since
            lasted = t - since
            if self.for_at_least is not None and lasted < self.for_at_least:
                continue
            status = Status.FAIL if self.severity is Severity.FAIL else Status.WARN
            how_long = (f" for {format_duration(lasted)}, since +{since:.0f} s"
                        if self.for_at_least is not None else "")
            why = f"; {series.note}" if series.note else ""
            return verdict(status, f"{fmt(value, self.unit)} does not meet {described} at"
                           f" +{t:.0f} s{how_long}{why}", value, described)
        worst_t, worst = rule.worst(judged)
        span = f"held for {judged[-1][0]:.0f} s"
        if not rule.passes(worst):
            assert self.for_at_least is not None  # else the loop above returned
            return verdict(Status.PASS, f"{span}; {fmt(worst, self.unit)} at +{worst_t:.0f} s"
                           f" lasted less than {format_duration(self.for_at_least)}",
                           worst, described)
        if rule.near_limit(worst):
            assert self.warn_band is not None
            return verdict(Status.WARN, f"{fmt(worst, self.unit)} at +{worst_t:.0f} s passes"
                           f" but lies within {self.warn_band:.0%} of the limit", worst,
                           described)
        return verdict(Status.PASS, span, worst, described)

    def worst(self, points: Sequence[tuple[float, float]]) -> tuple[float, float]:
        """The sample nearest to failing this rule (the first of equals)."""
        match self.comparator:
            case Comparator.GE | Comparator.GT:
                return min(points, key=lambda p: p[1])
            case Comparator.LE | Comparator.LT:
                return max(points, key=lambda p: p[1])
            case Comparator.BETWEEN:
                assert self.upper is not None
                middle = (self.value + self.upper) / 2
                return max(points, key=lambda p: abs(p[1] - middle))

    def to_dict(self) -> dict[str, Any]:
        """The rule as plain data (a burn-in series keeps the rules it ran with)."""
        return {"id": self.id, "metric": self.metric, "comparator": self.comparator.value,
                "value": self.value, "unit": self.unit.value, "source": self.source,
                "upper": self.upper, "severity": self.severity.value,
                "warn_band": self.warn_band, "required": self.required,
                "for_at_least": self.for_at_least, "of_first": self.of_first}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Threshold:
        """The inverse of to_dict; ValueError, KeyError or TypeError on a damaged rule."""
        def number(key: str) -> float | None:
            raw = data.get(key)
            if raw is None:
                return None
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError(f"threshold {data.get('id')!r}: {key} is not a number")
            return float(raw)

        value = number("value")
        if value is None:
            raise ValueError(f"threshold {data.get('id')!r} has no value")
        return cls(id=str(data["id"]), metric=str(data["metric"]),
                   comparator=Comparator(data["comparator"]), value=value,
                   unit=Unit(data["unit"]), source=str(data["source"]), upper=number("upper"),
                   severity=Severity(data.get("severity", "fail")),
                   warn_band=number("warn_band"), required=bool(data.get("required", False)),
                   for_at_least=number("for_at_least"), of_first=number("of_first"))


def fmt(value: float, unit: Unit) -> str:
    return format_value(value, unit)


def format_duration(seconds: float) -> str:
    """30 -> "30 s", 120 -> "2 min", 5400 -> "1.5 h" (rule descriptions)."""
    if seconds >= 3600 and seconds % 360 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 6 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


@dataclass(frozen=True, slots=True)
class Series:
    """A metric sampled over time, in its unit: (seconds since the start, value) in
    time order. ``note`` is what the facts say beyond the numbers (a crashed load's
    last words); a verdict that misses its rule carries it."""

    check: str
    metric: str
    unit: Unit
    points: tuple[tuple[float, float], ...]
    device: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit", Unit(self.unit))
        points = tuple((float(t), float(v)) for t, v in self.points)
        if not all(math.isfinite(t) and math.isfinite(v) for t, v in points):
            raise ValueError(f"{self.metric}: a series holds finite points only")
        if any(b[0] < a[0] for a, b in itertools.pairwise(points)):
            raise ValueError(f"{self.metric}: a series is in time order")
        object.__setattr__(self, "points", points)


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


def evaluate_series(
    series: Sequence[Series],
    thresholds: Iterable[Threshold],
    *,
    unmeasured: Mapping[str, str] | None = None,
    profile: str = "",
) -> list[Verdict]:
    """Verdicts of time series (a burn-in's), one per series a threshold's metric
    names, in the thresholds' order. A threshold with no series is SKIP with the
    reason ``unmeasured`` gives for its metric (the load did not run here), or FAIL
    when it is ``required``. The threshold's ``checks`` (from the catalog the
    burn-in file was loaded against) name its metric's check."""
    verdicts: list[Verdict] = []
    for threshold in thresholds:
        matching = [s for s in series if s.metric == threshold.metric]
        if matching:
            verdicts.extend(threshold.judge_series(s) for s in matching)
            continue
        check = (threshold.checks or (threshold.metric.split(".")[0],))[0]
        reason = (unmeasured or {}).get(threshold.metric) or (
            f"nothing on this node was sampled for {threshold.metric}")
        verdicts.append(not_measured(threshold, check, reason, profile))
    return verdicts
