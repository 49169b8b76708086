"""What keeps `bench-agent health` fast (docs/health.md "Speed"): the profile is
loaded through the per-domain metric catalog without importing every check
module, and the inventory is collected once for the inventory check and
config.consistency. The figures themselves are measured by benchmarks/bench_health.py,
never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import bench_agent.checks as checks
from bench_agent.checks import DomainCatalog
from bench_agent.checks.base import CheckContext
from bench_agent.checks.config.checks import ConfigConsistencyCheck
from bench_agent.config.loader import load_profile_named, load_suite, suite_path
from bench_agent.core.errors import ToolFailed
from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Measurement, Status
from bench_agent.health import runner
from bench_agent.health.runner import health_report
from bench_agent.health.state import HealthState
from bench_agent.inventory.collect import collect_inventory
from bench_agent.tools import nvml
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.paths import REPO


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


def _sysroot(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mounts").write_text("/dev/sda1 / ext4 rw 0 0\n")
    (root / "proc/1").mkdir(parents=True)
    (root / "proc/1/comm").write_text("systemd\n")
    (root / "dev").mkdir()
    (root / "dev/kmsg").write_text("6,98,1000,-;Linux version 6.1.0\n")
    return root


def test_the_inventory_is_collected_once_for_the_inventory_and_config_checks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    collected: list[Inventory] = []
    judged: list[Inventory] = []

    def counting_collect(root: Path) -> Inventory:
        inv = collect_inventory(root)
        collected.append(inv)
        return inv

    real_judge = ConfigConsistencyCheck.judge

    def spying_judge(self: ConfigConsistencyCheck, inv: Inventory,
                     ctx: CheckContext) -> list[Measurement]:
        judged.append(inv)
        return real_judge(self, inv, ctx)

    monkeypatch.setattr(runner, "collect_inventory", counting_collect)
    monkeypatch.setattr(ConfigConsistencyCheck, "judge", spying_judge)
    # Two GPUs of one model, one with another VBIOS: config.consistency has
    # something to compare, so it measures from the inventory it was given.
    nv = FakeNvml([FakeGpu(), FakeGpu(vbios="96.00.99.00.02")])
    with nvml.use_loader(lambda: nv):
        report = health_report(load_suite(suite_path("health")),
                               load_profile_named("health", DomainCatalog()),
                               HealthState(), _sysroot(tmp_path), host="node-7").report
    assert len(collected) == 1
    assert len(judged) == 1 and judged[0] is collected[0]
    assert report.inventory == collected[0]
    odd = [m for m in report.measurements
           if m.metric == "config.nonuniform" and m.device == "gpu.vbios_version"]
    assert [m.value for m in odd] == [1.0]
    counts = {m.metric: m.value for m in report.measurements if m.check == "inventory"}
    assert counts["inventory.gpu_count"] == 2


def test_an_inventory_that_fails_fails_both_checks_that_share_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def broken_collect(root: Path) -> Inventory:
        calls.append(root)
        raise ToolFailed("nvml", "GPU 0000:18:00.0 has fallen off the bus")

    monkeypatch.setattr(runner, "collect_inventory", broken_collect)
    with nvml.use_loader(lambda: FakeNvml([FakeGpu()])):
        report = health_report(load_suite(suite_path("health")),
                               load_profile_named("health", DomainCatalog()),
                               HealthState(), _sysroot(tmp_path), host="node-7").report
    assert len(calls) == 1
    by_check = {v.check: v for v in report.verdicts if not v.metric}
    for name in ("inventory", "config.consistency"):
        assert by_check[name].status is Status.ERROR
        assert "has fallen off the bus" in by_check[name].message
    assert report.status is Status.ERROR


# --- what `bench-agent health` does not import (checks/plain_params.py,
# config/plans.py, health/plan_cache.py, faults' compiled catalog) ------------------


def test_a_cached_health_run_imports_neither_pydantic_nor_yaml(tmp_path: Path) -> None:
    # The second run of `bench-agent health` finds its plan in the cache and the
    # fault catalog in its compiled form: no pydantic (a fifth of the time budget),
    # no YAML parser. The first run loads in full and writes the cache.
    code = ("import sys, runpy\n"
            "sys.argv = ['bench-agent', 'health', '--no-sign', '--output', sys.argv[1],"
            " '--state', sys.argv[2]]\n"
            "try:\n    runpy.run_module('bench_agent', run_name='__main__')\n"
            "except SystemExit as exc:\n    code = exc.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'yaml')))\n"
            "print('exit', code)\n")
    state = tmp_path / "state.json"
    runs = [subprocess.run([sys.executable, "-c", code, str(tmp_path / "spool"), str(state)],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
            for _ in range(2)]
    first, second = (run.stdout.splitlines() for run in runs)
    assert "'pydantic'" in first[-2] and "'yaml'" in first[-2], runs[0].stderr
    assert second[-2:] == ["[]", second[-1]], runs[1].stderr
    assert second[-1] in ("exit 0", "exit 1"), runs[1].stderr  # this VM's verdict, not a crash
    assert (tmp_path / "state.plan.json").is_file()
