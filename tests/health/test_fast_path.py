"""What keeps `bench-agent health` fast (docs/health.md "Speed"): the profile is
loaded through the per-domain metric catalog without importing every check
module. The figures themselves are measured by benchmarks/bench_health.py,
never asserted here."""

from __future__ import annotations

import pytest

import bench_agent.checks as checks
from bench_agent.checks import DomainCatalog
from bench_agent.config.loader import load_profile_named


def test_the_health_profile_loads_without_the_whole_metric_catalog(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # `catalog or metric_catalog()` called DomainCatalog.__len__, which builds
    # the whole catalog and so imports storage, network, nccl, ... (a third of
    # health's time). Any call to the whole catalog now fails the test.
    def whole_catalog() -> dict[str, object]:
        raise AssertionError("the whole metric catalog was built")

    monkeypatch.setattr(checks, "_catalog", whole_catalog)
    profile = load_profile_named("health", DomainCatalog())
    metrics = {t.metric for t in profile.thresholds}
    assert "health.gpu_xid" in metrics
    assert "config.nonuniform" in metrics  # the configuration section's threshold
