"""confirm-before-failing and fault codes in the runner, with real child processes
(the runner's worker-command seam: tests/data/workers/flaky_worker.py)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench_agent.checks import metric_catalog
from bench_agent.config.loader import CheckPlan, ConfigError, Profile, Suite, load_suite
from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Status
from bench_agent.core.thresholds import Comparator, Threshold
from bench_agent.core.units import Unit
from bench_agent.run.runner import Runner
from tests.paths import DATA

FLAKY = DATA / "workers" / "flaky_worker.py"
MISBEHAVING = DATA / "workers" / "misbehaving_worker.py"


def _profile() -> Profile:
    info = metric_catalog()["inventory.logical_cpus"]
    rule = Threshold("cpus", "inventory.logical_cpus", Comparator.GE, 32, Unit.COUNT, "site",
                     checks=info.checks, meaning=info.meaning)
    return Profile("test", "", [rule], "", "1" * 64)


class _Runner(Runner):
    def collect_inventory(self) -> Inventory:
        return Inventory()  # the checks are the subject here, not the inventory child


def _run(tmp_path: Path, confirm: int, *values: float) -> tuple[list, int]:
    counter = tmp_path / "attempts"
    suite = Suite("t", "", [CheckPlan("inventory", {}, 30, False, confirm)], "", "0" * 64)
    runner = _Runner(suite, _profile(), host="h",
                     worker_command=[sys.executable, str(FLAKY), str(counter),
                                     *map(str, values)])
    report = runner.run()
    return report.verdicts, int(counter.read_text())


def test_a_fail_that_passes_on_a_rerun_is_flaky_warn_never_a_silent_pass(tmp_path: Path
                                                                          ) -> None:
    [verdict], started = _run(tmp_path, 2, 8, 64)
    assert started == 2
    assert verdict.status is Status.WARN
    assert (verdict.flaky, verdict.attempts, verdict.value) == (True, 2, 64.0)
    assert verdict.message.startswith("flaky: FAIL on attempt 1: 8 does not meet >= 32")
    assert verdict.message.endswith("; PASS on attempt 2")
    assert verdict.fault_code == "BA-NODE-CPU-COUNT"


def test_a_fail_every_attempt_repeats_stands_with_its_attempts(tmp_path: Path) -> None:
    [verdict], started = _run(tmp_path, 2, 8, 8, 8, 64)
    assert started == 3  # the first run and two confirmations, no more
    assert (verdict.status, verdict.flaky, verdict.attempts) == (Status.FAIL, False, 3)
    assert verdict.fault_code == "BA-NODE-CPU-COUNT"


def test_without_confirm_a_fail_runs_once_and_a_pass_is_not_rerun(tmp_path: Path) -> None:
    [verdict], started = _run(tmp_path, 0, 8, 64)
    assert (started, verdict.status, verdict.attempts) == (1, Status.FAIL, 1)
    (tmp_path / "attempts").unlink()
    [verdict], started = _run(tmp_path, 3, 64, 8)
    assert (started, verdict.status, verdict.attempts, verdict.flaky) == (
        1, Status.PASS, 1, False)
    assert verdict.fault_code == ""


def test_an_error_gets_the_code_of_its_kind(tmp_path: Path) -> None:
    suite = Suite("t", "", [CheckPlan("cpu.gemm", {}, 1.0, False, 2)], "", "0" * 64)
    for mode, code in (("hang", "BA-CHECK-TIMEOUT"), ("garbage", "BA-CHECK-CRASH"),
                       ("tool-failed", "BA-TOOL-FAILED")):
        runner = _Runner(suite, _profile(), host="h",
                         worker_command=[sys.executable, str(MISBEHAVING), mode])
        verdict = next(v for v in runner.run().verdicts if v.check == "cpu.gemm")
        assert (verdict.status, verdict.fault_code, verdict.component, verdict.attempts) == (
            Status.ERROR, code, "check cpu.gemm", 1), mode


def test_confirm_is_read_from_the_suite_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nchecks:\n  - {check: inventory, confirm: 3}\n")
    assert load_suite(path).checks[0].confirm == 3
    path.write_text("name: s\nchecks:\n  - {check: inventory, confirm: 11}\n")
    with pytest.raises(ConfigError, match=r"checks\[0\]\.confirm"):
        load_suite(path)
    path.write_text("name: s\nchecks:\n  - {check: inventory, confirm: yes}\n")
    with pytest.raises(ConfigError, match=r"checks\[0\]\.confirm"):
        load_suite(path)
    assert replace(load_suite(DATA.parent.parent / "suites" / "quick.yaml").checks[0]).confirm \
        == 0
