"""network.ib_port_health judges how much the error counters grew during the run.

The ports are the hand-made sysfs tree of test_ib_port_health.py (tests/data/
sysroots/ib-ports). "The traffic of the run" is a test writing the counter files
between the start snapshot and the end, as the kernel's show_pma_counter would
show a grown PMA counter; the clock is a fake one the check takes as a seam, so
the window it reports is known.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bench_agent.checks.base import CheckContext
from bench_agent.checks.network.ib_ports import IbPortHealthCheck, IbPortParams
from bench_agent.config.loader import load_profile_named, load_suite
from bench_agent.core.errors import ParseError
from bench_agent.core.model import Measurement, Status
from bench_agent.core.thresholds import evaluate
from bench_agent.run.runner import CheckOutcome, Runner, run_in_child
from tests.paths import DATA, REPO

TREE = DATA / "sysroots" / "ib-ports"
CHECK = "network.ib_port_health"


class FakeClock:
    """Seconds that advance only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    shutil.copytree(TREE, tmp_path / "root", symlinks=True)
    yield tmp_path / "root"


def counter_file(root: Path, port: str, counter: str) -> Path:
    device, number = port.split("/")
    return root / "sys/class/infiniband" / device / "ports" / number / "counters" / counter


def bump(root: Path, port: str, counter: str, by: int) -> None:
    path = counter_file(root, port, counter)
    path.write_text(f"{int(path.read_text()) + by}\n")


def bracketed(root: Path, between: object, clock: FakeClock | None = None,
              seconds: float = 300.0) -> list[Measurement]:
    """Snapshot, let ``between`` (the run's traffic) happen, then run the check."""
    clock = clock or FakeClock()
    check = IbPortHealthCheck(clock=clock)
    params = IbPortParams()
    before = check.snapshot(CheckContext(root=root), params)
    assert callable(between)
    between()
    clock.now += seconds
    return check.run(CheckContext(root=root, before=before), params)


def deltas(measurements: list[Measurement]) -> dict[tuple[str, str], float]:
    return {(m.device, m.metric.removeprefix("network.ib_").removesuffix("_delta")): m.value
            for m in measurements if m.metric.endswith("_delta")}


def test_growth_is_measured_per_port_and_counter_over_the_window(tree: Path) -> None:
    def traffic() -> None:
        bump(tree, "mlx5_0/1", "link_downed", 1)
        bump(tree, "mlx5_0/1", "symbol_error", 12)
        bump(tree, "mlx5_1/1", "port_rcv_errors", 3)

    got = bracketed(tree, traffic)
    grown = {k: v for k, v in deltas(got).items() if v}
    assert grown == {("mlx5_0/1", "link_downed"): 1, ("mlx5_0/1", "symbol_error"): 12,
                     ("mlx5_1/1", "port_rcv_errors"): 3}
    # 3 ports x 8 counters: every counter's growth is reported, most of them 0.
    assert len(deltas(got)) == 24
    [downed] = [m for m in got if m.metric == "network.ib_link_downed_delta"
                and m.device == "mlx5_0/1"]
    assert downed.params == {
        "source": "/sys/class/infiniband/mlx5_0/ports/1/counters/link_downed",
        "window_s": 300.0}
    # The absolute figure is still the counter since the driver loaded (mlx5_1 had
    # counted 5 port_rcv_errors before the run).
    absolute = {(m.device, m.metric): m.value for m in got}
    assert absolute[("mlx5_1/1", "network.ib_port_rcv_errors")] == 8


def test_guide_high_performance_fails_link_downed_growth_and_warns_on_error_growth(
        tree: Path) -> None:
    def traffic() -> None:
        bump(tree, "mlx5_0/1", "link_downed", 1)
        bump(tree, "mlx5_0/1", "symbol_error", 12)

    rules = [t for t in load_profile_named("guide-high-performance").thresholds
             if t.metric.endswith("_delta")]
    verdicts = evaluate(bracketed(tree, traffic), rules, [CHECK])
    assert len(verdicts) == 3 * 8
    bad = {(v.device, v.threshold_id): (v.status, v.message) for v in verdicts
           if v.status is not Status.PASS}
    assert bad == {
        ("mlx5_0/1", "ib-link-downed-delta"): (
            Status.FAIL, "1 does not meet <= 0"),
        ("mlx5_0/1", "ib-symbol-error-delta"): (
            Status.WARN, "12 does not meet <= 0"),
    }


def test_fabric_ndr400_fails_any_error_growth_and_a_port_below_400(tree: Path) -> None:
    def traffic() -> None:
        bump(tree, "mlx5_0/1", "symbol_error", 12)

    profile = load_profile_named("fabric-ndr400")
    rules = [t for t in profile.thresholds
             if t.metric.endswith("_delta") or t.metric == "network.ib_port_rate"]
    verdicts = evaluate(bracketed(tree, traffic), rules, [CHECK])
    bad = {(v.device, v.threshold_id): v.status for v in verdicts if v.status is not Status.PASS}
    # mlx5_2/1 is a RoCE port down at 40 Gb/s (QDR), below the NDR rate.
    assert bad == {("mlx5_0/1", "ib-symbol-error-delta"): Status.FAIL,
                   ("mlx5_2/1", "ib-port-rate"): Status.FAIL}


def test_a_counter_reset_during_the_run_reports_at_least_its_end_value(tree: Path) -> None:
    # mlx5_1/1 counted 37 symbol errors; perfquery -R during the run, then 4 more.
    got = bracketed(tree, lambda: counter_file(tree, "mlx5_1/1", "symbol_error").write_text("4\n"))
    [m] = [m for m in got if m.metric == "network.ib_symbol_error_delta"
           and m.device == "mlx5_1/1"]
    assert m.value == 4
    assert m.params["note"] == "reset during the run (was 37, now 4): grew by at least 4"


def test_a_counter_saturated_at_the_start_has_no_growth_and_says_why(tree: Path) -> None:
    # link_downed is an 8-bit PMA counter: it stops at 255 (IBA Vol 1, 16.1.3.5).
    counter_file(tree, "mlx5_1/1", "link_downed").write_text("255\n")
    got = bracketed(tree, lambda: None)
    by = {(m.device, m.metric): m for m in got}
    assert ("mlx5_1/1", "network.ib_link_downed_delta") not in by
    assert ("mlx5_0/1", "network.ib_link_downed_delta") in by
    assert by[("mlx5_1/1", "network.ib_link_downed")].params["note"] == (
        "saturated at 255 (8-bit PMA counter) since before the run: growth cannot be seen; "
        "reset the counters (perfquery -R) and run again")


def test_a_port_gone_by_the_end_is_not_active_and_named(tree: Path) -> None:
    got = bracketed(tree, lambda: shutil.rmtree(tree / "sys/class/infiniband/mlx5_1"))
    [gone] = [m for m in got if m.device == "mlx5_1/1"]
    assert (gone.metric, gone.value) == ("network.ib_port_active", 0)
    assert gone.params["note"] == ("mlx5_1/1 was there at the start of the run and is gone "
                                   "at the end (the HCA fell off the bus or its driver "
                                   "unloaded)")


def test_a_failed_start_snapshot_is_an_error_never_a_pass_on_the_absolute_counters() -> None:
    ctx = CheckContext(root=TREE, before_error="ERROR: timed out after 30 s and was stopped")
    with pytest.raises(ParseError) as exc:
        IbPortHealthCheck().run(ctx, IbPortParams())
    assert str(exc.value) == (
        "cannot read sysfs output: the port counters could not be read at the start of the "
        "run, so their growth is unknown: ERROR: timed out after 30 s and was stopped")


def test_a_malformed_snapshot_is_an_error() -> None:
    ctx = CheckContext(root=TREE, before={"ports": {"mlx5_0/1": {"at": "soon"}}})
    with pytest.raises(ParseError, match="start snapshot of the port counters is malformed"):
        IbPortHealthCheck().run(ctx, IbPortParams())


# --- through the runner and real worker children ------------------------------------


class TrafficDuringTheRun:
    """A Progress that plays the run's traffic when the check's turn comes: after the
    runner's start snapshot, before the check's own child reads the ports again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[str] = []

    def check_started(self, check: str, index: int, total: int) -> None:
        self.started.append(check)
        if check == CHECK:
            bump(self.root, "mlx5_0/1", "link_downed", 2)

    def check_finished(self, outcome: CheckOutcome) -> None:
        pass


def test_the_runner_snapshots_before_the_first_check_and_judges_at_the_end(
        tree: Path, tmp_path: Path) -> None:
    suite = load_suite(REPO / "suites" / "network.yaml")
    # The network suite without its peer checks (no peer here): the inventory, then
    # the port health check last, as the suite orders it.
    suite.checks[:] = [p for p in suite.checks if p.check in ("inventory", CHECK)]
    assert [p.check for p in suite.checks] == ["inventory", CHECK]
    progress = TrafficDuringTheRun(tree)
    runner = Runner(suite, load_profile_named("guide-high-performance"),
                    output_dir=tmp_path / "out", root=tree, progress=progress)
    report = runner.run()
    rows = {(v.device, v.threshold_id): v for v in report.verdicts}
    downed = rows[("mlx5_0/1", "ib-link-downed-delta")]
    assert (downed.status, downed.value) == (Status.FAIL, 2)
    assert rows[("mlx5_1/1", "ib-link-downed-delta")].status is Status.PASS
    [m] = [m for m in report.measurements if m.metric == "network.ib_link_downed_delta"
           and m.device == "mlx5_0/1"]
    assert 0 <= m.params["window_s"] < 120  # two real children, on the real clock


def test_the_worker_refuses_a_snapshot_of_a_check_that_takes_none() -> None:
    outcome = run_in_child({"check": "inventory", "params": {}, "root": str(TREE),
                            "phase": "before"}, 30.0)
    assert (outcome.status, outcome.message) == (Status.ERROR,
                                                 "check inventory takes no snapshot")


def test_a_suite_asking_for_absent_ports_skips_at_both_ends(tree: Path, tmp_path: Path) -> None:
    suite = load_suite(REPO / "suites" / "network.yaml")
    suite.checks[:] = [replace(p, params={"devices": ["mlx5_9"]}) for p in suite.checks
                       if p.check == CHECK]
    report = Runner(suite, load_profile_named("guide-high-performance"),
                    output_dir=tmp_path / "out", root=tree).run()
    [verdict] = [v for v in report.verdicts if v.check == CHECK and not v.metric]
    assert (verdict.status, verdict.message) == (
        Status.SKIP, "no InfiniBand or RoCE port among mlx5_9 in /sys/class/infiniband")


class RepairAtTheCheck:
    """A Progress that mends a spoiled counter when the check's turn comes: the start
    snapshot failed on it, the end reading does not."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def check_started(self, check: str, index: int, total: int) -> None:
        self.path.write_text(self.text)

    def check_finished(self, outcome: CheckOutcome) -> None:
        pass


def test_a_snapshot_that_failed_reaches_the_check_as_its_error(tree: Path,
                                                              tmp_path: Path) -> None:
    path = counter_file(tree, "mlx5_0/1", "link_downed")
    good = path.read_text()
    path.write_text("many\n")
    suite = load_suite(REPO / "suites" / "network.yaml")
    suite.checks[:] = [p for p in suite.checks if p.check == CHECK]
    report = Runner(suite, load_profile_named("guide-high-performance"),
                    output_dir=tmp_path / "out", root=tree,
                    progress=RepairAtTheCheck(path, good)).run()
    [verdict] = [v for v in report.verdicts if v.check == CHECK and not v.metric]
    assert (verdict.status, verdict.message) == (
        Status.ERROR, "cannot read sysfs output: the port counters could not be read at the "
        "start of the run, so their growth is unknown: ERROR: cannot read sysfs output: "
        "/sys/class/infiniband/mlx5_0/ports/1/counters/link_downed: not a counter; output "
        "began: 'many'")
