"""`bench-agent health` on a captured-style sysroot (tmp tree of /sys, /proc,
/dev/kmsg) and the fake NVML at its one seam: the findings, their codes and
components, the state file (events and counters since the last run), the time
limit that names the check, and the CLI writing a report to the spool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench_agent.config.loader import load_profile, load_profile_named, load_suite
from bench_agent.core.model import Report, Status, Verdict
from bench_agent.health.runner import health_report, run_health, run_health_full
from bench_agent.health.state import HealthState, default_state_path, load_state
from bench_agent.tools import nvml
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.paths import REPO

XID_79 = "NVRM: Xid (PCI:0000:18:00): 79, pid=1234, GPU has fallen off the bus."


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _ib_port(root: Path, device: str, state: str, phys: str, link_downed: int = 0) -> None:
    port = root / "sys/class/infiniband" / device / "ports/1"
    _write(port / "state", f"{state}\n")
    _write(port / "phys_state", f"{phys}\n")
    for counter in ("link_error_recovery", "symbol_error", "port_rcv_errors",
                    "port_rcv_remote_physical_errors"):
        _write(port / "counters" / counter, "0\n")
    _write(port / "counters/link_downed", f"{link_downed}\n")


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    _ib_port(root, "mlx5_0", "4: ACTIVE", "5: LinkUp")
    _ib_port(root, "mlx5_1", "1: DOWN", "3: Disabled")
    for name, state in (("nvme0", "live"), ("nvme1", "dead")):
        ctrl = root / "sys/class/nvme" / name
        _write(ctrl / "state", f"{state}\n")
        _write(ctrl / "model", "SAMSUNG MZQL23T8HCLS-00A07\n")
        _write(ctrl / "serial", f"S64HNE0R{name[-1]}00001\n")
    # /dev/kmsg records: "priority,sequence,timestamp,flags;message" (dev-kmsg ABI).
    _write(root / "dev/kmsg", f"6,98,1000,-;Linux version 6.1.0\n"
                              f"3,99,2000,-;{XID_79}\n SUBSYSTEM=pci\n")
    _write(root / "proc/self/mounts", "/dev/sda1 / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n")
    _write(root / "proc/1/comm", "systemd\n")
    _write(root / "proc/77/comm", "sshd\n")
    (root / "sys/module/nvme").mkdir(parents=True)
    return root


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    text = (REPO / "suites/health.yaml").read_text()
    text = text.replace("params: {mounts: [], free: [\"/\"]}",
                        "params: {mounts: [/, /scratch], free: [\"/\"]}")
    text = text.replace("params: {services: [], modules: []}",
                        "params: {services: [systemd, sshd, slurmd], modules: [nvme, nvidia]}")
    path = tmp_path / "health.yaml"
    path.write_text(text)
    return path


def _fake() -> FakeNvml:
    return FakeNvml([FakeGpu(), FakeGpu(pcie_width=8), FakeGpu(remap=(0, 1, 1, 0))])


def _run(root: Path, suite: Path, state: HealthState, nv: Any,
         profile: Path | None = None) -> tuple[Report, dict[str, dict[str, float]]]:
    with nvml.use_loader(lambda: nv):
        run = health_report(load_suite(suite),
                            load_profile(profile) if profile else load_profile_named("health"),
                            state, root, host="node-7")
    return run.report, run.readings


def _failed(report: Report) -> dict[tuple[str, str], Verdict]:
    return {(v.metric, v.device): v for v in report.verdicts if v.status is Status.FAIL}


def test_each_finding_fails_with_its_code_component_and_remediation(
        sysroot: Path, suite_file: Path) -> None:
    report, _ = _run(sysroot, suite_file, HealthState(), _fake())
    assert report.suite.name == "health" and report.profile.name == "health"
    failed = _failed(report)
    summary = {key: (v.value, v.fault_code, v.remediation) for key, v in failed.items()}
    assert summary == {
        ("health.gpu_pcie_width_below_max", "gpu1"): (8.0, "BA-GPU-PCIE-WIDTH", "reseat-recable"),
        ("health.gpu_row_remap_pending", "gpu2"): (1.0, "BA-GPU-REMAP-PENDING", "reset-gpu"),
        ("health.gpu_xid", "0000:18:00"): (1.0, "BA-GPU-XID-79", "reboot"),
        ("health.ib_port_down", "mlx5_1/1"): (1.0, "BA-IB-LINK-DOWN", "reseat-recable"),
        ("health.nvme_not_live", "nvme1"): (1.0, "BA-NVME-DEAD", "replace"),
        ("health.mount_missing", ""): (1.0, "BA-FS-MOUNT-MISSING", "reboot"),
        ("health.service_missing", ""): (1.0, "BA-SVC-MISSING", "reboot"),
        ("health.module_missing", ""): (1.0, "BA-KMOD-MISSING", "reboot"),
    }
    assert failed[("health.gpu_pcie_width_below_max", "gpu1")].component == (
        "GPU 1 NVIDIA H100 80GB HBM3 GPU-00000001-1111-2222-3333-444444444444 serial "
        "1654321001 00000000:28:00.0")
    assert failed[("health.gpu_xid", "0000:18:00")].component == "GPU 0000:18:00"
    assert failed[("health.ib_port_down", "mlx5_1/1")].component == "HCA mlx5_1 port 1"
    assert failed[("health.nvme_not_live", "nvme1")].component == (
        "drive nvme1 SAMSUNG MZQL23T8HCLS-00A07 serial S64HNE0R100001")
    by_check = {v.check: v for v in report.verdicts if not v.metric}
    # The clock is the running kernel's: under a captured root it is SKIP, with why.
    assert by_check["health.clock"].status is Status.SKIP
    assert "not read under another root" in by_check["health.clock"].message
    gpus = next(m for m in report.measurements if m.metric == "health.gpu_count")
    assert gpus.value == 3
    assert report.status is Status.FAIL
    # It is an ordinary report: it reads back as one.
    assert Report.from_dict(json.loads(report.to_json())).verdicts == report.verdicts


def test_events_and_counters_are_judged_since_the_previous_run(
        sysroot: Path, suite_file: Path) -> None:
    first, readings = _run(sysroot, suite_file, HealthState(), _fake())
    assert ("health.gpu_xid", "0000:18:00") in _failed(first)
    assert readings["health.gpu_xid"] == {"health.gpu_xid@kmsg": 99.0}
    assert readings["health.ib"]["health.ib_link_downed@mlx5_0/1"] == 0
    # Between the runs the link of mlx5_0 went down three times; no new XID.
    _ib_port(sysroot, "mlx5_0", "4: ACTIVE", "5: LinkUp", link_downed=3)
    second, readings = _run(sysroot, suite_file, HealthState(readings), _fake())
    failed = _failed(second)
    assert ("health.gpu_xid", "0000:18:00") not in failed  # judged once, in the first run
    xid = next(v for v in second.verdicts if v.metric == "health.gpu_xid")
    assert (xid.status, xid.value, xid.device) == (Status.PASS, 0.0, "all")
    flap = failed[("health.ib_link_downed", "mlx5_0/1")]
    assert (flap.value, flap.fault_code, flap.component) == (
        3.0, "BA-IB-LINK-ERRORS", "HCA mlx5_0 port 1")
    # Nothing new since: the counter is 3, but it grew by 0.
    third, _ = _run(sysroot, suite_file, HealthState(readings), _fake())
    again = next(v for v in third.verdicts
                 if v.metric == "health.ib_link_downed" and v.device == "mlx5_0/1")
    assert (again.status, again.value) == (Status.PASS, 0.0)
    # A new XID after the kept sequence number is judged.
    with (sysroot / "dev/kmsg").open("a") as kmsg:
        kmsg.write("3,100,3000,-;NVRM: Xid (PCI:0000:28:00): 48, pid=1, DBE\n")
    fourth, _ = _run(sysroot, suite_file, HealthState(readings), _fake())
    assert _failed(fourth)[("health.gpu_xid", "0000:28:00")].fault_code == "BA-GPU-XID-48"


def test_counts_are_judged_against_a_profile_that_extends_health(
        sysroot: Path, suite_file: Path, tmp_path: Path) -> None:
    profile = tmp_path / "site.yaml"
    profile.write_text(
        "name: site\nextends: health\nthresholds:\n"
        "  - {id: gpus, metric: inventory.gpu_count, comparator: '>=', value: 8, required: true,"
        " source: our HGX nodes}\n"
        "  - {id: hcas, metric: health.hca_count, comparator: '>=', value: 2, source: ours}\n"
        "  - {id: drives, metric: health.nvme_count, comparator: '>=', value: 4, source: ours}\n")
    report, _ = _run(sysroot, suite_file, HealthState(), _fake(), profile)
    by_id = {v.threshold_id: v for v in report.verdicts}
    assert (by_id["gpus"].status, by_id["gpus"].value, by_id["gpus"].fault_code) == (
        Status.FAIL, 3.0, "BA-GPU-MISSING")
    assert by_id["hcas"].status is Status.PASS
    assert (by_id["drives"].status, by_id["drives"].fault_code) == (Status.FAIL,
                                                                     "BA-NVME-MISSING")


HANG_S = 2.0


class _HungNvml(FakeNvml):
    """nvmlInit that blocks, as on a GPU whose driver is stuck (NHC issue 161's case)."""

    def nvmlInit(self) -> None:
        time.sleep(HANG_S)


def test_a_hung_check_is_an_error_naming_it_and_does_not_hold_the_run(
        sysroot: Path, suite_file: Path) -> None:
    # The inventory asks NVML for the GPUs too: both hang, both are stopped waiting for.
    suite_file.write_text(suite_file.read_text().replace("timeout: 5s", "timeout: 0.2s"))
    started = time.monotonic()
    report, _ = _run(sysroot, suite_file, HealthState(), _HungNvml())
    elapsed = time.monotonic() - started
    gpu = next(v for v in report.verdicts if v.check == "health.gpu" and not v.metric)
    assert gpu.status is Status.ERROR
    assert gpu.message.startswith("health.gpu timed out after 0.2 s")
    assert (gpu.fault_code, gpu.component) == ("BA-CHECK-TIMEOUT", "check health.gpu")
    inventory = next(v for v in report.verdicts if v.check == "inventory" and not v.metric)
    assert inventory.message.startswith("inventory timed out after 0.2 s")
    # Not a speed target: the run did not wait for the hung calls (each 2 s).
    assert elapsed < HANG_S
    # The other checks still ran.
    assert ("health.ib_port_down", "mlx5_1/1") in _failed(report)
    for thread in threading.enumerate():  # let the hung call return before the next test
        if thread.name in ("health:health.gpu", "health:inventory"):
            thread.join(5)


def test_the_state_file_round_trips_and_a_bad_one_is_no_state(sysroot: Path,
                                                             suite_file: Path,
                                                             tmp_path: Path) -> None:
    state = tmp_path / "state" / "health.json"
    with nvml.use_loader(_fake):
        report = run_health(None, state, suite=suite_file, root=sysroot, host="n")
        assert ("health.gpu_xid", "0000:18:00") in _failed(report)
        assert load_state(state).readings["health.gpu_xid"] == {"health.gpu_xid@kmsg": 99.0}
        again = run_health(None, state, suite=suite_file, root=sysroot, host="n")
        assert ("health.gpu_xid", "0000:18:00") not in _failed(again)
        state.write_text("{not json")
        broken = run_health_full(None, state, suite=suite_file, root=sysroot, host="n")
    assert "unreadable" in broken.state.note and "judged since boot" in broken.state.note
    assert ("health.gpu_xid", "0000:18:00") in _failed(broken.report)
    state.write_text(json.dumps({"schema": 1, "readings": {"health.ib": {"x@y": "NaN"}}}))
    assert load_state(state).readings == {"health.ib": {}}


def test_the_default_state_path_follows_root_and_xdg() -> None:
    assert default_state_path({}, uid=0) == Path("/var/lib/bench-agent/health-state.json")
    assert default_state_path({"XDG_STATE_HOME": "/x"}, uid=1000) == Path(
        "/x/bench-agent/health-state.json")
    assert default_state_path({"HOME": "/home/u"}, uid=1000) == Path(
        "/home/u/.local/state/bench-agent/health-state.json")


@pytest.mark.e2e
def test_the_cli_writes_a_health_report_to_the_spool(sysroot: Path, suite_file: Path,
                                                     tmp_path: Path) -> None:
    out, state = tmp_path / "spool", tmp_path / "state.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench_agent", "health", "--sysroot", str(sysroot),
         "--suite-file", str(suite_file), "--state", str(state), "--output", str(out),
         "--no-sign", "--json"], capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1, done.stderr  # FAILs, no ERROR: NVML absent is a SKIP
    printed = json.loads(done.stdout)
    [written] = list(out.glob("*/*-health.json"))
    assert json.loads(written.read_text())["report_id"] == printed["report_id"]
    assert printed["suite"]["name"] == "health"
    codes = {v["fault_code"] for v in printed["verdicts"] if v["status"] == "FAIL"}
    assert codes >= {"BA-GPU-XID-79", "BA-IB-LINK-DOWN", "BA-NVME-DEAD"}
    assert json.loads(state.read_text())["readings"]["health.gpu_xid"] == {
        "health.gpu_xid@kmsg": 99}
    assert "first health run" in done.stderr


def test_the_shipped_health_profile_judges_only_what_the_health_suite_measures() -> None:
    from bench_agent.checks import DomainCatalog, get_check
    from bench_agent.config.loader import suite_path

    suite = load_suite(suite_path("health"))
    measured = {spec.name for plan in suite.checks for spec in get_check(plan.check).metrics}
    profile = load_profile_named("health")
    assert sorted(t.metric for t in profile.thresholds if t.metric not in measured) == []
    # Read one domain at a time, the profile is the same as against the whole catalog.
    assert load_profile_named("health", DomainCatalog()).thresholds == profile.thresholds
    assert suite.profile == "health"


def test_a_report_with_fault_fields_validates_against_the_report_schema(
        sysroot: Path, suite_file: Path) -> None:
    import jsonschema

    from bench_agent.config.loader import schema_dir

    report, _ = _run(sysroot, suite_file, HealthState(), _fake())
    schema = json.loads((schema_dir() / "report-v1.schema.json").read_text())
    data = json.loads(report.to_json())
    jsonschema.validate(data, schema)
    data["verdicts"][0]["remediation"] = "pray"
    with pytest.raises(jsonschema.ValidationError, match="'pray' is not one of"):
        jsonschema.validate(data, schema)


def test_the_clock_check_reads_the_running_kernel() -> None:
    from bench_agent.checks.base import CheckContext
    from bench_agent.checks.health.common import HealthParams
    from bench_agent.checks.health.node import STA_UNSYNC, TIME_ERROR, ClockHealthCheck, read_clock

    state, max_error, status = read_clock()
    assert 0 <= state <= TIME_ERROR  # adjtimex(2): TIME_OK .. TIME_ERROR
    assert max_error >= 0
    unsynced, error = ClockHealthCheck().run(CheckContext(), HealthParams())
    assert unsynced.metric == "health.clock_unsynchronized"
    assert unsynced.value == float(state == TIME_ERROR or bool(status & STA_UNSYNC))
    assert error.metric == "health.clock_max_error" and error.value >= 0


@pytest.mark.parametrize("gpus_on_the_bus", [True, False])
def test_a_dead_driver_on_a_gpu_node_is_an_error_not_a_skip(
        sysroot: Path, suite_file: Path, gpus_on_the_bus: bool) -> None:
    # NVML answers "Driver Not Loaded" (9). With an NVIDIA GPU on the PCI bus that
    # is a broken node, which must not pass health; without one, a CPU node: SKIP.
    if gpus_on_the_bus:
        _write(sysroot / "sys/bus/pci/devices/0000:18:00.0/vendor", "0x10de\n")
        _write(sysroot / "sys/bus/pci/devices/0000:18:00.0/class", "0x030200\n")
    report, _ = _run(sysroot, suite_file, HealthState(), FakeNvml(init_error=9))
    gpu = next(v for v in report.verdicts if v.check == "health.gpu" and not v.metric)
    if gpus_on_the_bus:
        assert gpu.status is Status.ERROR
        assert gpu.message == ("gpu stack failed: 1 NVIDIA GPU(s) on the PCI bus (0000:18:00.0) "
                               "but NVML cannot start: Driver Not Loaded")
        assert report.status in (Status.ERROR, Status.FAIL)
        assert (gpu.fault_code, gpu.remediation) == ("BA-GPU-DRIVER", "reboot")
    else:
        assert gpu.status is Status.SKIP
        assert gpu.message == "NVML cannot start: Driver Not Loaded"
