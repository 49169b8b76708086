"""Summaries of repeated samples: median, percentiles, spread, "unstable".

A wide spread says the measurement is noisy (another tenant, frequency scaling,
a cold cache), not that the node failed: the flag is reported beside the verdict,
never instead of it. pyperf uses the same idea ("the benchmark result may be
unstable") with a 10 % standard deviation over mean rule; we use a robust
variant so that one slow outlier among five repetitions does not hide behind the
mean.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Relative spread above which a result is flagged unstable. 10 % as in pyperf
# (pyperf/_cli.py warns when stdev > 10 % of the mean).
UNSTABLE_SPREAD = 0.10


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks.

    Same definition as numpy.percentile's default ("linear", type 7 of Hyndman
    and Fan), so figures match what SREs get from numpy or pandas.
    """
    if len(values) == 0:
        raise ValueError("percentile of no values")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"non-finite value in {list(values)!r}")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    median: float
    mean: float
    minimum: float
    maximum: float
    stdev: float
    # Robust relative spread: interquartile range over the median (0 for n < 2).
    relative_spread: float

    @property
    def unstable(self) -> bool:
        return self.relative_spread > UNSTABLE_SPREAD

    def to_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "median": self.median,
            "mean": self.mean,
            "min": self.minimum,
            "max": self.maximum,
            "stdev": self.stdev,
            "relative_spread": self.relative_spread,
        }


def summarize(samples: Sequence[float]) -> Summary:
    """Summarize repetitions; raises ValueError on an empty or non-finite list."""
    if len(samples) == 0:
        raise ValueError("no samples to summarize")
    if not all(math.isfinite(s) for s in samples):
        raise ValueError(f"non-finite sample in {list(samples)!r}")
    values = [float(s) for s in samples]
    median = statistics.median(values)
    stdev = statistics.stdev(values) if len(values) > 1 else 0.0
    if len(values) > 1 and median != 0:
        iqr = percentile(values, 75) - percentile(values, 25)
        spread = abs(iqr / median)
    else:
        spread = 0.0
    return Summary(
        n=len(values),
        median=median,
        mean=statistics.fmean(values),
        minimum=min(values),
        maximum=max(values),
        stdev=stdev,
        relative_spread=spread,
    )
