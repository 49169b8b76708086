"""The threshold lines of the node page's plots, read from a verdict's threshold text."""

from __future__ import annotations

import pytest

pytest.importorskip("sqlalchemy")

from bench_agent.collector.page_data import limits_of


@pytest.mark.parametrize(("threshold", "unit", "limits"), [
    (">= 1 TFLOP/s", "FLOP/s", [1e12]),
    ("> 100 kIOPS", "IOPS", [1e5]),
    ("<= 85 degC", "degC", [85.0]),
    ("between 1 GB/s and 2 GB/s", "bytes/s", [1e9, 2e9]),
    ("exactly 8", "count", [8.0]),
    (">= 32 for at least 30 s", "count", [32.0]),
    (">= 90% of the first 2 min", "FLOP/s", []),     # relative to the run: no fixed line
    (">= 10 GB/s", "FLOP/s", []),                    # another dimension: not this plot's
    ("fast enough", "FLOP/s", []),
    (">= 1 TFLOP/s", "furlongs", []),                # a unit this collector does not know
])
def test_limits_of(threshold: str, unit: str, limits: list[float]) -> None:
    assert limits_of(threshold, unit) == limits
