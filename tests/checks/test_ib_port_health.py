"""network.ib_port_health on a sysfs tree built by hand (tests/data/sysroots/ib-ports).

The tree holds what drivers/infiniband/core/sysfs.c writes (Linux
Documentation/ABI/stable/sysfs-class-infiniband): three ports, one per HCA,
mlx5_0/1 a healthy NDR InfiniBand port, mlx5_1/1 an active port that has counted
link errors, mlx5_2/1 a RoCE (Ethernet) port that is down. Each file is one line,
as the kernel's show functions print it: "4: ACTIVE", "5: LinkUp",
"400 Gb/sec (4X NDR)", and one decimal number per counter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench_agent.checks import metric_catalog
from bench_agent.checks.base import CheckContext
from bench_agent.checks.network.checks import IbPortHealthCheck, IbPortParams
from bench_agent.config.loader import load_profile_named
from bench_agent.core.errors import NotApplicable, ParseError
from bench_agent.core.model import Measurement, Status
from bench_agent.core.thresholds import evaluate
from bench_agent.core.units import Unit
from bench_agent.run.runner import run_in_child
from tests.cli_support import run_cli
from tests.paths import DATA, REPO

TREE = DATA / "sysroots" / "ib-ports"
CHECK = "network.ib_port_health"
COUNTERS = ("symbol_error", "link_error_recovery", "link_downed", "port_rcv_errors",
            "port_rcv_remote_physical_errors", "port_xmit_discards",
            "local_link_integrity_errors", "excessive_buffer_overrun_errors")


def measure(root: Path = TREE, **params: object) -> list[Measurement]:
    return IbPortHealthCheck().run(CheckContext(root=root), IbPortParams(**params))


def values(measurements: list[Measurement]) -> dict[tuple[str, str], float]:
    found = {(m.device, m.metric.removeprefix("network.ib_")): m.value for m in measurements}
    assert len(found) == len(measurements)  # one figure per port and metric
    return found


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the captured tree that a test may spoil."""
    shutil.copytree(TREE, tmp_path / "root", symlinks=True)
    return tmp_path / "root"


def port_file(root: Path, device: str, name: str) -> Path:
    return root / "sys/class/infiniband" / device / "ports/1" / name


# --- the captured ports -------------------------------------------------------------


def test_each_port_reports_its_state_rate_and_error_counters() -> None:
    got = values(measure())
    expected: dict[tuple[str, str], float] = {}
    for device, active, rate, errors in (
            ("mlx5_0/1", 1, 400e9, {}),
            ("mlx5_1/1", 1, 400e9, {"symbol_error": 37, "link_error_recovery": 2,
                                    "link_downed": 1, "port_rcv_errors": 5}),
            ("mlx5_2/1", 0, 40e9, {})):
        expected |= {(device, "port_active"): active, (device, "port_link_up"): active,
                     (device, "port_rate"): rate}
        expected |= {(device, c): errors.get(c, 0) for c in COUNTERS}
    assert got == expected


def test_the_facts_of_a_port_travel_with_its_measurements() -> None:
    by = {(m.device, m.metric): m for m in measure()}
    down = by[("mlx5_2/1", "network.ib_port_active")]
    assert (down.unit, down.tool, down.check) == (Unit.COUNT, "sysfs", CHECK)
    assert down.params == {
        "state": "1: DOWN", "phys_state": "3: Disabled", "rate": "40 Gb/sec (4X QDR)",
        "link_layer": "Ethernet", "source": "/sys/class/infiniband/mlx5_2/ports/1",
        "counters_unavailable": {}}
    assert by[("mlx5_1/1", "network.ib_symbol_error")].params == {
        "source": "/sys/class/infiniband/mlx5_1/ports/1/counters/symbol_error"}


def test_what_it_emits_is_declared_and_catalogued_in_its_unit() -> None:
    declared = {spec.name for spec in IbPortHealthCheck.metrics}
    catalog = metric_catalog()
    check = IbPortHealthCheck()
    params = IbPortParams()
    before = check.snapshot(CheckContext(root=TREE), params)
    emitted = check.run(CheckContext(root=TREE, before=before), params)
    assert {m.metric for m in emitted} == declared
    for m in emitted:
        info = catalog[m.metric]
        assert (info.unit, info.checks, info.per_device) == (m.unit, (CHECK,), True)
    assert catalog["network.ib_link_downed"].higher_is_better is False


def test_the_devices_parameter_picks_hcas_or_ports() -> None:
    got = measure(devices=["mlx5_1", "mlx5_2/1"])
    assert sorted({m.device for m in got}) == ["mlx5_1/1", "mlx5_2/1"]
    with pytest.raises(NotApplicable) as exc:
        measure(devices=["mlx5_9"])
    assert str(exc.value) == "no InfiniBand or RoCE port among mlx5_9 in /sys/class/infiniband"


# --- nothing to measure: SKIP with the reason -------------------------------------


def test_no_infiniband_class_is_skip_with_the_reason(tmp_path: Path) -> None:
    reason = ("no /sys/class/infiniband: no InfiniBand or RoCE device here (or its driver is"
              " not loaded)")
    assert IbPortHealthCheck().available(CheckContext(root=tmp_path)) == reason
    outcome = run_in_child({"check": CHECK, "params": {}, "root": str(tmp_path),
                            "output_dir": str(tmp_path), "timeout": 30}, 60)
    assert (outcome.status, outcome.message) == (Status.SKIP, reason)


def test_a_class_without_ports_is_not_applicable(tmp_path: Path) -> None:
    (tmp_path / "sys/class/infiniband/mlx5_0").mkdir(parents=True)
    assert IbPortHealthCheck().available(CheckContext(root=tmp_path)) is None
    with pytest.raises(NotApplicable) as exc:
        measure(tmp_path)
    assert str(exc.value) == "no InfiniBand or RoCE port in /sys/class/infiniband"


# --- what the kernel may write, and what it never does ------------------------------


def test_a_counter_without_pma_or_file_is_not_measured_and_says_why(tree: Path) -> None:
    port_file(tree, "mlx5_0", "counters/symbol_error").write_text("N/A (no PMA)\n")
    port_file(tree, "mlx5_0", "counters/link_downed").unlink()
    by = {(m.device, m.metric): m for m in measure(tree)}
    assert ("mlx5_0/1", "network.ib_symbol_error") not in by
    assert ("mlx5_0/1", "network.ib_link_downed") not in by
    assert by[("mlx5_0/1", "network.ib_port_active")].params["counters_unavailable"] == {
        "symbol_error": "N/A (no PMA)", "link_downed": "no such file"}
    assert by[("mlx5_1/1", "network.ib_link_downed")].value == 1


@pytest.mark.parametrize(("name", "text", "says"), [
    ("counters/symbol_error", "-1\n", "counters/symbol_error: not a counter; output began: '-1'"),
    ("counters/port_rcv_errors", "12abc\n",
     "counters/port_rcv_errors: not a counter; output began: '12abc'"),
    ("counters/link_downed", "\n", "counters/link_downed: not a counter"),
    ("counters/link_downed", "1e3\n", "counters/link_downed: not a counter; output began: '1e3'"),
    ("state", "ACTIVE\n", "state: not '<number>: <name>'; output began: 'ACTIVE'"),
    ("phys_state", "5:LinkUp\n", "phys_state: not '<number>: <name>'; output began: '5:LinkUp'"),
    ("rate", "fast\n", "rate: not '<number> Gb/sec (...)'; output began: 'fast'"),
    ("counters/symbol_error", "0" * 5000, "counters/symbol_error: longer than a sysfs attribute"
                                          " (4096 bytes)"),
])
def test_garbage_in_a_file_is_an_error_naming_it(tree: Path, name: str, text: str,
                                                 says: str) -> None:
    port_file(tree, "mlx5_1", name).write_text(text)
    with pytest.raises(ParseError) as exc:
        measure(tree)
    assert str(exc.value) == (f"cannot read sysfs output: /sys/class/infiniband/mlx5_1/ports/1/"
                              f"{says}")


def test_an_unreadable_state_is_an_error_never_a_pass(tree: Path) -> None:
    # A show function that fails (ib_query_port returning an error) makes read() fail;
    # a directory in its place fails the same way, as root too.
    state = port_file(tree, "mlx5_0", "state")
    state.unlink()
    state.mkdir()
    with pytest.raises(ParseError) as exc:
        measure(tree)
    assert str(exc.value) == ("cannot read sysfs output: /sys/class/infiniband/mlx5_0/ports/1/"
                              "state: Is a directory")


def test_a_device_name_with_a_control_character_is_refused(tree: Path) -> None:
    base = tree / "sys/class/infiniband"
    (base / "mlx5_0").rename(base / "mlx5\x1b[2J")
    with pytest.raises(ParseError) as exc:
        measure(tree)
    assert "device name 'mlx5\\x1b[2J' contains" in str(exc.value)


# --- judged by guide-high-performance -----------------------------------------------


def test_the_high_performance_profile_fails_a_down_port_and_warns_on_errors() -> None:
    profile = load_profile_named("guide-high-performance")
    mine = [t for t in profile.thresholds if t.metric.startswith("network.ib_")]
    assert {t.metric for t in mine if not t.metric.endswith("_delta")} == {
        s.name for s in IbPortHealthCheck.metrics if not s.name.endswith("_delta")} - {
        "network.ib_port_rate"}
    # The growth rules are judged in tests/checks/test_ib_counter_deltas.py.
    mine = [t for t in mine if not t.metric.endswith("_delta")]
    verdicts = evaluate(measure(), mine, [CHECK])
    status = {(v.device, v.metric.removeprefix("network.ib_")): v.status for v in verdicts}
    assert {k: s for k, s in status.items() if s is not Status.PASS} == {
        ("mlx5_1/1", "symbol_error"): Status.WARN,
        ("mlx5_1/1", "link_error_recovery"): Status.WARN,
        ("mlx5_1/1", "link_downed"): Status.WARN,
        ("mlx5_1/1", "port_rcv_errors"): Status.WARN,
        ("mlx5_2/1", "port_active"): Status.FAIL,
        ("mlx5_2/1", "port_link_up"): Status.FAIL,
    }
    assert len(verdicts) == 3 * len(mine)  # every rule judged on every port
    [active] = [t for t in mine if t.metric == "network.ib_port_active"]
    assert active.required is True
    # A node without the fabric cannot pass the required line.
    [v] = evaluate([], [active], [], unmeasured={CHECK: "not measured: no ports"},
                   profile=profile.name)
    assert (v.status, v.message) == (
        Status.FAIL, "profile guide-high-performance requires network.ib_port_active >= 1 "
                     "(1 when the port's state is ACTIVE (sysfs state)); not measured: no ports")


def test_bench_agent_run_on_the_captured_tree(tmp_path: Path) -> None:
    done = run_cli("run", CHECK, "--sysroot", str(TREE), "--profile", "guide-high-performance",
                   "--no-sign", "--output", str(tmp_path), "--json", timeout=120, cwd=REPO)
    assert done.returncode == 1, done.stderr  # a FAIL: mlx5_2/1 is down
    report = json.loads(done.stdout)
    rows = {(v["device"], v["threshold_id"]): v["status"] for v in report["verdicts"]
            if v.get("threshold_id", "").startswith("ib-")}
    assert rows[("mlx5_2/1", "ib-port-active")] == "FAIL"
    assert rows[("mlx5_1/1", "ib-symbol-error")] == "WARN"
    assert rows[("mlx5_0/1", "ib-port-link-up")] == "PASS"
    # The runner took the start snapshot, so the growth rules are judged too: nothing
    # grew between the snapshot and the end on a tree nobody writes to.
    assert len(rows) == 3 * 18
    assert {s for (_d, i), s in rows.items() if i.endswith("-delta")} == {"PASS"}
