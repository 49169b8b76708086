"""runner.py with real child processes that hang, crash, print garbage, or measure."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bench_agent.checks import metric_catalog
from bench_agent.checks.base import RunOptions
from bench_agent.config.loader import CheckPlan, Profile, Suite, load_profile
from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Measurement, Status
from bench_agent.core.thresholds import Comparator, Threshold
from bench_agent.core.units import Unit
from bench_agent.run import runner as runner_module
from bench_agent.run.runner import CheckOutcome, Runner, exit_code, report_path, run_in_child
from tests.cli_support import run_cli
from tests.paths import DATA, REPO
from tests.process_support import alive, kill_all, marked, pids_in, unique_marker, wait_until

DATA = DATA
WORKER = DATA / "workers" / "misbehaving_worker.py"


def worker(mode: str, *extra: str) -> list[str]:
    return [sys.executable, str(WORKER), mode, *extra]


def request(check: str = "cpu.gemm") -> dict[str, object]:
    return {"check": check, "params": {}, "root": "/", "output_dir": "results", "timeout": 5}


@pytest.mark.slow
def test_hung_child_is_stopped_at_the_timeout_and_is_error() -> None:
    started = time.monotonic()
    outcome = run_in_child(request(), timeout=1.0, worker_command=worker("hang"))
    elapsed = time.monotonic() - started
    assert outcome.status is Status.ERROR
    assert outcome.message.startswith("timed out after 1 s")
    assert elapsed < 10


@pytest.mark.slow
def test_child_ignoring_sigterm_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "KILL_GRACE_S", 0.5)
    outcome = run_in_child(request(), timeout=1.0, worker_command=worker("hang-ignoring-sigterm"))
    assert outcome.status is Status.ERROR
    assert "timed out after 1 s" in outcome.message
    assert "ignoring SIGTERM" in outcome.message  # the child's own last words are kept


@pytest.mark.slow
def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    outcome = run_in_child(
        request(), timeout=2.0, worker_command=worker("hang-with-grandchild", str(pidfile))
    )
    assert outcome.status is Status.ERROR
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    alive = True
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            alive = False
            break
        # A zombie still answers kill(0); reap-free check through /proc.
        state = Path(f"/proc/{grandchild}/stat")
        if state.exists() and state.read_text().split()[2] == "Z":
            alive = False
            break
        time.sleep(0.1)
    assert not alive, "the tool started by the check outlived the timeout"


@pytest.mark.slow
def test_killed_child_whose_escaped_grandchild_holds_the_pipes_does_not_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "KILL_GRACE_S", 0.5)
    pidfile = tmp_path / "grandchild.pid"
    outcomes: list[CheckOutcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(run_in_child(
        request(), timeout=1.0,
        worker_command=worker("hang-with-escaped-grandchild", str(pidfile)))), daemon=True)
    thread.start()
    try:
        thread.join(timeout=20)
        assert not thread.is_alive(), "run_in_child hung on pipes held by a setsid grandchild"
    finally:
        kill_all(None, *pids_in(pidfile))
        thread.join(timeout=10)
    assert outcomes[0].status is Status.ERROR
    assert outcomes[0].message.startswith("timed out after 1 s")
    # The grandchild left the group (setsid) but not the worker's tree: stopped too.
    assert not alive(int(pidfile.read_text()))


def test_what_a_worker_leaves_behind_when_it_exits_is_stopped(tmp_path: Path) -> None:
    marker = unique_marker("worker-leftover")
    pidfile = tmp_path / "child.pid"
    try:
        outcome = run_in_child(request(), timeout=30,
                               worker_command=worker("exit-leaving-child", str(pidfile), marker))
        assert (outcome.status, outcome.message) == (Status.ERROR, "fio failed")
        assert not alive(pids_in(pidfile)[0])
        assert marked(marker) == []
    finally:
        kill_all(marker, *pids_in(pidfile))


def test_child_killed_by_a_realtime_signal_is_error_not_a_crash() -> None:
    outcome = run_in_child(request(), timeout=30, worker_command=worker("realtime-signal"))
    assert outcome.status is Status.ERROR
    assert outcome.message.startswith(f"killed by signal {int(signal.SIGRTMIN) + 1}")


def test_crash_by_signal_is_error_naming_the_signal() -> None:
    outcome = run_in_child(request(), timeout=30, worker_command=worker("abort"))
    assert outcome.status is Status.ERROR
    assert outcome.message.startswith("killed by signal SIGABRT")


def test_nonzero_exit_is_error_with_the_tools_words() -> None:
    outcome = run_in_child(request(), timeout=30, worker_command=worker("exit3"))
    assert outcome.status is Status.ERROR
    assert outcome.message == (
        "crashed with exit code 3: nvml: driver/library version mismatch"
    )


def test_garbage_output_is_error_never_pass() -> None:
    outcome = run_in_child(request(), timeout=30, worker_command=worker("garbage"))
    assert outcome.status is Status.ERROR
    assert outcome.message.startswith("returned unreadable output")
    assert "Segmentation fault?" in outcome.message


def test_invalid_measurement_and_empty_result_are_errors() -> None:
    bad = run_in_child(request(), timeout=30, worker_command=worker("bad-measurement"))
    assert bad.status is Status.ERROR
    assert "invalid measurement" in bad.message
    empty = run_in_child(request(), timeout=30, worker_command=worker("empty"))
    assert empty.status is Status.ERROR
    assert empty.message == "the check returned no measurement"


def test_missing_tool_is_skip_and_tool_failure_is_error() -> None:
    skip = run_in_child(request(), timeout=30, worker_command=worker("missing-tool"))
    assert (skip.status, skip.message) == (Status.SKIP, "fio is not installed")
    failed = run_in_child(request(), timeout=30, worker_command=worker("tool-failed"))
    assert failed.status is Status.ERROR
    assert "No space left" in failed.message


def test_unstartable_worker_is_error() -> None:
    outcome = run_in_child(request(), timeout=5, worker_command=["/nonexistent/python"])
    assert outcome.status is Status.ERROR
    assert outcome.message.startswith("cannot start worker")


def test_real_worker_measures_a_real_check() -> None:
    req = request("cpu.gemm")
    req["params"] = {"size": 128, "repetitions": 2, "warmup": 0, "dtypes": ["fp64"],
                     "modes": ["all_cores"]}
    outcome = run_in_child(req, timeout=60)
    assert outcome.status is None, outcome.message
    assert [m.metric for m in outcome.measurements] == ["cpu.gemm_fp64_all_cores"]
    assert outcome.measurements[0].unit is Unit.FLOPS
    assert outcome.measurements[0].value > 0


def test_real_worker_reports_bad_params_and_unknown_checks_as_error() -> None:
    req = request("cpu.gemm")
    req["params"] = {"size": "big"}
    outcome = run_in_child(req, timeout=60)
    assert outcome.status is Status.ERROR
    assert "size" in outcome.message
    unknown = run_in_child(request("no.such.check"), timeout=60)
    assert unknown.status is Status.ERROR
    assert "unknown check 'no.such.check'" in unknown.message


def _suite(*plans: CheckPlan) -> Suite:
    return Suite("test", "", list(plans), "", "0" * 64)


def _profile(*thresholds: Threshold) -> Profile:
    """A profile as the loader makes it: each threshold knows its metric's checks."""
    catalog = metric_catalog()
    return Profile("test", "", [replace(t, checks=catalog[t.metric].checks,
                                        meaning=catalog[t.metric].meaning)
                                for t in thresholds], "", "1" * 64)


def _m(check: str, metric: str, value: float, unit: Unit) -> Measurement:
    return Measurement(check=check, metric=metric, value=value, unit=unit)


def test_report_maps_outcomes_and_thresholds_to_verdicts() -> None:
    suite = _suite(
        CheckPlan("cpu.gemm", {}, 10, False),
        CheckPlan("memory.stream", {}, 10, True),
        CheckPlan("inventory", {}, 10, False),
    )
    profile = _profile(
        Threshold("t", "memory.stream_triad", Comparator.GE, 1e9, Unit.BYTES_PER_SECOND, "src"),
        Threshold("v", "inventory.logical_cpus", Comparator.GE, 32, Unit.COUNT, "guide"),
    )
    runner = Runner(suite, profile, host="node-1")
    outcomes = [
        CheckOutcome("cpu.gemm", status=Status.SKIP, message="numpy is not installed"),
        CheckOutcome("memory.stream", status=Status.SKIP, message="no memory"),
        CheckOutcome("inventory",
                     measurements=[_m("inventory", "inventory.logical_cpus", 2, Unit.COUNT)]),
    ]
    report = runner.build_report(outcomes, Inventory(), "2026-01-01T00:00:00Z", False)
    by_check = {(v.check, v.metric): v for v in report.verdicts}
    assert by_check[("cpu.gemm", "")].status is Status.SKIP
    # A required check that could not run is an ERROR, not a quiet SKIP.
    required = by_check[("memory.stream", "")]
    assert required.status is Status.ERROR
    assert required.message == "required check could not run: no memory"
    # The stream threshold is in the table: SKIP, with why its check measured nothing.
    triad = by_check[("memory.stream", "memory.stream_triad")]
    assert (triad.status, triad.value, triad.threshold) == (Status.SKIP, None, ">= 1 GB/s")
    assert triad.message == (
        "not measured: memory.stream ERROR: required check could not run: no memory")
    cpus = by_check[("inventory", "inventory.logical_cpus")]
    assert (cpus.status, cpus.value, cpus.threshold) == (Status.FAIL, 2.0, ">= 32")
    assert report.status is Status.ERROR
    assert exit_code(report) == 2


def test_exit_codes_follow_the_worst_verdict() -> None:
    suite = _suite(CheckPlan("inventory", {}, 10, False))
    measurement = _m("inventory", "inventory.logical_cpus", 64, Unit.COUNT)
    ok = CheckOutcome("inventory", measurements=[measurement])

    def code(threshold_value: float, interrupted: bool = False) -> int:
        profile = _profile(Threshold("v", "inventory.logical_cpus", Comparator.GE,
                                     threshold_value, Unit.COUNT, "guide"))
        report = Runner(suite, profile, host="h").build_report(
            [ok], Inventory(), "2026-01-01T00:00:00Z", interrupted)
        return exit_code(report)

    assert code(32) == 0
    assert code(96) == 1
    assert code(32, interrupted=True) == 2
    # Nothing measured and nothing judged is never success.
    empty = Runner(suite, _profile(), host="h").build_report([], Inventory(), "x", False)
    assert exit_code(empty) == 2


def test_report_path_is_per_host_and_safe() -> None:
    suite = _suite()
    report = Runner(suite, _profile(), host="gpu/node 7").build_report(
        [], Inventory(), "2026-11-27T13:24:56Z", False)
    path = report_path(Path("out"), report)
    assert path == Path("out/gpu_node_7/20261127T132456Z-test.json")


def test_runner_end_to_end_with_real_children(tmp_path: Path) -> None:
    suite = _suite(
        CheckPlan("inventory", {}, 60, True),
        CheckPlan("cpu.gemm", {"size": 128, "repetitions": 2, "warmup": 0,
                               "dtypes": ["fp32"], "modes": ["one_core"]}, 60, False),
    )
    profile = load_profile(DATA / "profiles" / "tiny-node.yaml")
    report = Runner(suite, profile, output_dir=tmp_path, host="n1").run()
    assert report.inventory.cpu.logical_cpus == os.cpu_count()
    assert report.inventory.error is None
    metrics = {m.metric for m in report.measurements}
    assert "cpu.gemm_fp32_one_core" in metrics
    assert "inventory.logical_cpus" in metrics
    statuses = {v.metric: v.status for v in report.verdicts}
    assert statuses["inventory.logical_cpus"] is Status.PASS
    assert statuses["inventory.memory_total"] is Status.PASS
    assert exit_code(report) == 0


def test_interrupt_while_collecting_the_inventory_still_gives_a_report() -> None:
    """Ctrl-C before any check ran: a report marked interrupted, every check SKIP."""
    import signal as signal_module

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    suite = _suite(CheckPlan("cpu.gemm", {}, 10, False))
    runner = Runner(suite, _profile(), host="h", worker_command=worker("hang"))
    previous = signal_module.signal(signal_module.SIGALRM, interrupt)
    signal_module.setitimer(signal_module.ITIMER_REAL, 0.5)
    try:
        report = runner.run()
    finally:
        signal_module.setitimer(signal_module.ITIMER_REAL, 0)
        signal_module.signal(signal_module.SIGALRM, previous)
    assert report.interrupted and exit_code(report) == 2
    assert report.inventory == Inventory(error="interrupted while collecting")
    assert [(v.check, v.status) for v in report.verdicts] == [("cpu.gemm", Status.SKIP)]


def test_a_required_metric_of_a_skipped_check_fails() -> None:
    """guide-high-performance requires RDMA: a node without it FAILs, with the reason."""
    suite = _suite(CheckPlan("network.rdma_latency", {}, 10, False))
    profile = _profile(Threshold("rdma", "network.rdma_write_latency", Comparator.LT, 1e-5,
                                 Unit.SECONDS, "guide", required=True))
    outcome = CheckOutcome("network.rdma_latency", status=Status.SKIP,
                           message="no active RDMA device in /sys/class/infiniband")
    report = Runner(suite, profile, host="h").build_report([outcome], Inventory(), "x", False)
    statuses = [(v.metric, v.status) for v in report.verdicts]
    assert statuses == [("", Status.SKIP), ("network.rdma_write_latency", Status.FAIL)]
    assert report.verdicts[1].message == (
        "profile test requires network.rdma_write_latency < 10 µs (RDMA write one-way latency"
        " (ib_write_lat typical)); not measured: network.rdma_latency SKIP: no active RDMA"
        " device in /sys/class/infiniband")
    assert exit_code(report) == 1


# --- every threshold of the profile in the report ---------------------------------


def test_every_threshold_of_the_profile_gets_a_verdict() -> None:
    """Measured ones are judged; the others SKIP with the reason, required ones of a
    check that ran here FAIL (a GPU profile on a node where NVML cannot start)."""
    suite = _suite(CheckPlan("inventory", {}, 10, True), CheckPlan("gpu.health", {}, 10, False))
    profile = replace(_profile(
        Threshold("cpus", "inventory.logical_cpus", Comparator.GE, 1, Unit.COUNT, "guide"),
        Threshold("gpu-count", "gpu.count", Comparator.BETWEEN, 8, Unit.COUNT, "8 GPUs",
                  upper=8, required=True),
        Threshold("ecc", "gpu.ecc_sram_uncorrectable", Comparator.LE, 0, Unit.COUNT, "AzNHC"),
        Threshold("iops", "storage.randread_4k_iops", Comparator.GT, 1e5, Unit.IOPS, "guide"),
        Threshold("rdma", "network.rdma_write_latency", Comparator.LT, 1e-5, Unit.SECONDS,
                  "guide", required=True)), name="gpu-node-8")
    outcomes = [
        CheckOutcome("inventory", measurements=[_m("inventory", "inventory.logical_cpus", 2,
                                                   Unit.COUNT)]),
        CheckOutcome("gpu.health", status=Status.SKIP,
                     message="NVML cannot start: NVML Shared Library Not Found"),
    ]
    report = Runner(suite, profile, host="h").build_report(outcomes, Inventory(), "x", False)
    rows = [(v.check, v.metric, v.status, v.message) for v in report.verdicts]
    nvml = "not measured: gpu.health SKIP: NVML cannot start: NVML Shared Library Not Found"
    assert rows == [
        ("gpu.health", "", Status.SKIP, "NVML cannot start: NVML Shared Library Not Found"),
        ("inventory", "inventory.logical_cpus", Status.PASS, ""),
        ("gpu.health", "gpu.count", Status.FAIL,
         "profile gpu-node-8 requires gpu.count exactly 8 (GPUs NVML reports); " + nvml),
        ("gpu.health", "gpu.ecc_sram_uncorrectable", Status.SKIP, nvml),
        ("storage.randread", "storage.randread_4k_iops", Status.SKIP,
         "metric not measured by this suite (storage.randread is not in it)"),
        # Required, but its check is not in this suite: a chosen subset, SKIP.
        ("network.rdma_latency", "network.rdma_write_latency", Status.SKIP,
         "metric not measured by this suite (network.rdma_latency is not in it)"),
    ]
    assert report.status is Status.FAIL and exit_code(report) == 1


def test_skips_of_unmeasured_thresholds_leave_a_passing_run_passing() -> None:
    suite = _suite(CheckPlan("inventory", {}, 10, True))
    profile = _profile(
        Threshold("cpus", "inventory.logical_cpus", Comparator.GE, 1, Unit.COUNT, "guide"),
        Threshold("iops", "storage.randread_4k_iops", Comparator.GT, 1e5, Unit.IOPS, "guide"),
        Threshold("ram", "inventory.memory_total", Comparator.GE, 1e9, Unit.BYTES, "guide"),
    )
    ok = CheckOutcome("inventory",
                      measurements=[_m("inventory", "inventory.logical_cpus", 2, Unit.COUNT)])
    report = Runner(suite, profile, host="h").build_report([ok], Inventory(), "x", False)
    assert [v.status for v in report.verdicts] == [Status.PASS, Status.SKIP, Status.SKIP]
    assert report.verdicts[2].message == "inventory measured no inventory.memory_total on this node"
    assert report.status is Status.PASS and exit_code(report) == 0
    # All SKIP (nothing judged) stays SKIP and exit 0; an ERROR still wins.
    skipped = Runner(suite, profile, host="h").build_report(
        [CheckOutcome("inventory", status=Status.ERROR, message="crashed")], Inventory(), "x",
        False)
    assert {v.status for v in skipped.verdicts} == {Status.ERROR, Status.SKIP}
    assert exit_code(skipped) == 2


def _run_cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key")}
    done = run_cli("run", *args, "--no-sign", "--output", str(tmp_path / "out"), env=env,
                   timeout=300, cwd=REPO)
    return done.returncode, done.stdout + done.stderr


def _gpu_node_8_that_passes_here(tmp_path: Path) -> Path:
    """A profile extending gpu-node-8 whose guide numbers this small VM meets, so that
    only the GPU rules can fail it."""
    path = tmp_path / "my-gpu-node-8.yaml"
    path.write_text(
        "name: my-gpu-node-8\nextends: gpu-node-8\nthresholds:\n"
        "  - {id: cpu-vcpus, metric: inventory.logical_cpus, comparator: '>=', value: 1,"
        " source: s}\n"
        "  - {id: ram, metric: inventory.memory_total, comparator: '>=', value: 1 MB,"
        " source: s}\n"
        "  - {id: nvme-capacity, metric: inventory.nvme_capacity, comparator: '>=',"
        " value: 0 B, source: s}\n", encoding="utf-8")
    return path


def _line(text: str, check: str, metric: str) -> str:
    return next(ln for ln in text.splitlines() if ln.split()[:2] == [check, metric])


def test_cli_gpu_node_8_profile_on_a_node_without_8_gpus_fails(tmp_path: Path) -> None:
    """`run inventory` with a gpu-node-8 profile: the inventory's GPU count FAILs it,
    with NVML's reason when NVML sees none; the health rules SKIP as not in the suite."""
    code, text = _run_cli(tmp_path, "inventory", "--profile",
                          str(_gpu_node_8_that_passes_here(tmp_path)))
    assert code == 1, text
    assert ": FAIL - suite inventory, profile my-gpu-node-8" in text
    present = _line(text, "inventory", "inventory.gpu_count")
    assert " exactly 8 " in present and " FAIL " in present, present
    assert "does not meet exactly 8" in present
    report = json.loads(next((tmp_path / "out").glob("*/*.json")).read_text())
    if not report["inventory"]["gpus"]:
        assert f"; {report['inventory']['gpu_probe_note']} (" in present
    count = _line(text, "gpu.health", "gpu.count")
    assert " SKIP " in count and "metric not measured by this suite (gpu.health is not in it)" \
        in count
    # Only the GPU count failed: the rest of the table passes or skips.
    failed = [v["metric"] for v in report["verdicts"] if v["status"] == "FAIL"]
    assert failed == ["inventory.gpu_count"]


def test_cli_gpu_health_skipped_by_missing_nvml_fails_a_gpu_profile(tmp_path: Path) -> None:
    """The issue's case: gpu.health SKIPs (no NVML) and the run used to PASS."""
    from bench_agent.core.errors import BenchAgentError
    from bench_agent.tools import nvml

    try:
        with nvml.session() as nv:
            if int(nv.nvmlDeviceGetCount()) == 8:
                pytest.skip("an 8-GPU node: gpu.health measures here")
    except BenchAgentError:
        pass  # no NVML, no GPU: the case under test
    code, text = _run_cli(tmp_path, "gpu.health", "--profile",
                          str(_gpu_node_8_that_passes_here(tmp_path)))
    assert code in (1, 2), text  # 2 where GPUs are on the bus but NVML fails (ToolFailed)
    line = _line(text, "gpu.health", "gpu.count")
    assert " FAIL " in line, line
    if code == 1:
        skip = next(ln for ln in text.splitlines() if ln.split()[:2] == ["gpu.health", "SKIP"])
        reason = skip.split("SKIP", 1)[1].strip()
        assert ("profile my-gpu-node-8 requires gpu.count exactly 8 (GPUs NVML reports);"
                f" not measured: gpu.health SKIP: {reason}") in line


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT as Python's default (KeyboardInterrupt), also when the test run was
    started in the background by a shell, which ignores it (POSIX sh, "&")."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "interrupts"), [
    ("hang-with-tool", 1), ("hang-ignoring-sigterm", 1),
    # A second Ctrl-C while the worker gets its grace must not cut the stop short.
    ("hang-ignoring-sigterm", 2)])
def test_sigint_stops_the_running_worker_and_its_tool_and_gives_a_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sigint_raises: None,
        mode: str, interrupts: int) -> None:
    # Room for the second interrupt to land inside the grace, even on a loaded machine.
    monkeypatch.setattr(runner_module, "KILL_GRACE_S", 1.0 if interrupts == 1 else 5.0)
    marker = unique_marker("sigint")
    pidfile = tmp_path / "tool.pid"
    suite = _suite(CheckPlan("cpu.gemm", {}, 600, False), CheckPlan("memory.stream", {}, 600,
                                                                    False))
    workers: list[int] = []

    class Watch(runner_module.SilentProgress):
        def check_started(self, check: str, index: int, total: int) -> None:
            if index == 0:
                threading.Thread(target=interrupt_once_running, daemon=True).start()

    def worker_pids() -> list[int]:
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and str(WORKER).encode() in _cmdline(int(p.name)) and alive(int(p.name))]

    def ready() -> bool:
        """A real state, not a sleep: the worker runs, and its tool runs, or it has
        set SIGTERM to ignored (SigIgn in /proc/PID/status, proc(5))."""
        pids = worker_pids()
        if mode == "hang-with-tool":
            return bool(pids) and len(marked(marker)) == 1
        return bool(pids) and all(_ignores_sigterm(pid) for pid in pids)

    def stopping() -> bool:
        """The agent's main thread waits in the seam's stop for the worker to end."""
        frame = sys._current_frames().get(threading.main_thread().ident or 0)
        while frame is not None:
            if frame.f_code.co_name == "_wait_all_gone":
                return True
            frame = frame.f_back
        return False

    def interrupt_once_running() -> None:
        if wait_until(ready):
            workers.extend(worker_pids())
            os.kill(os.getpid(), signal.SIGINT)
            if interrupts == 2 and wait_until(stopping):
                os.kill(os.getpid(), signal.SIGINT)

    runner = Runner(suite, _profile(), host="h", progress=Watch(),
                    worker_command=worker(mode, str(pidfile), marker))
    runner.collect_inventory = lambda: {}  # type: ignore[method-assign]
    try:
        report = runner.run()
        assert workers, "the worker never started"
        # Stopped before run() returned: nothing of the check is left running.
        assert [pid for pid in workers if alive(pid)] == []
        assert marked(marker) == []
    finally:
        kill_all(marker, *workers, *pids_in(pidfile))
    assert report.interrupted and exit_code(report) == 2
    assert [(v.check, v.status, v.message) for v in report.verdicts] == [
        ("cpu.gemm", Status.ERROR, "interrupted while running (Ctrl-C or SIGTERM)"),
        ("memory.stream", Status.SKIP, "not run: the run was interrupted")]


def _ignores_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines()
                if line.startswith("SigIgn:"))
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_real_worker_dies_with_a_sigkilled_agent() -> None:
    """The reported orphan: the agent killed, its cpu.gemm worker ran on for 33 min."""
    repo = Path(__file__).resolve().parent.parent
    agent = subprocess.Popen(
        [sys.executable, "-c",
         "from bench_agent.run.runner import run_in_child\n"
         "run_in_child({'check': 'cpu.gemm', 'params': {'size': 2048, 'repetitions': 10000}, "
         "'timeout': 600}, 600)\n"],
        env={**os.environ, "PYTHONPATH": str(repo)}, cwd=repo, start_new_session=True)
    workers: list[int] = []
    try:
        assert wait_until(lambda: bool(_children(agent.pid))), "the worker never started"
        workers = _children(agent.pid)
        agent.kill()
        agent.wait(timeout=30)
        assert wait_until(lambda: not any(alive(pid) for pid in workers), 10)
    finally:
        agent.kill()
        agent.wait(timeout=30)
        kill_all(None, *workers)


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name)):
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == parent:
                found.append(int(entry.name))
    return found


# --- the typed run options and inventory over the child protocol ------------------------


def test_an_inventory_the_agent_cannot_read_is_an_inventory_with_the_error() -> None:
    inventory = runner_module.collect_inventory_in_child(worker_command=worker("bad-inventory"))
    assert inventory == Inventory(error=(
        "invalid inventory from the worker: inventory.cpu.logical_cpus: expected an integer "
        "or null, got float 2.5"))


def test_the_inventory_child_gives_the_typed_inventory() -> None:
    from bench_agent.inventory.collect import collect_inventory

    root = DATA / "sysroots" / "dual-socket-nvme-ib"
    inventory = runner_module.collect_inventory_in_child(root)
    assert inventory.error is None
    assert inventory.disks == collect_inventory(root, gpu_probe=list).disks
    assert inventory.host.hostname == "dual-socket-nvme-ib"


def test_run_options_reach_the_check_in_its_child(tmp_path: Path) -> None:
    """RunOptions.to_dict() over the protocol, RunOptions.from_dict() in the worker: the
    storage check sees the --target it was given (here one that does not exist)."""
    if shutil.which("fio") is None:
        pytest.skip("fio not installed")
    missing = tmp_path / "missing"
    outcome = run_in_child({"check": "storage.randread",
                            "params": {"size": "32MiB", "runtime": "1s", "ramp_time": 0},
                            "output_dir": str(tmp_path), "timeout": 30,
                            "options": RunOptions(target=missing).to_dict()}, timeout=30)
    assert (outcome.status, outcome.message) == (
        Status.ERROR, f"--target {missing} does not exist (nothing was created)")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_run_option_is_a_bad_request_not_a_default() -> None:
    """An agent and a worker of different versions: an option the worker does not know
    would be dropped silently (a --destructive that is not honoured, a peer not used)."""
    outcome = run_in_child({**request("network.tcp_latency"),
                            "options": {"peer": "127.0.0.1", "colour": "red"}}, timeout=30)
    assert (outcome.status, outcome.message) == (Status.ERROR,
                                                 "unknown run option(s): colour")
    wrong = run_in_child({**request("network.tcp_latency"), "options": {"nnodes": "2"}},
                         timeout=30)
    assert (wrong.status, wrong.message) == (Status.ERROR,
                                             "nnodes must be a whole number >= 1, got '2'")


def test_run_options_round_trip_and_refuse_wrong_types() -> None:
    options = RunOptions(target=Path("/srv/scratch"), devices=("/dev/nvme0n1",), all_nvme=True,
                         destructive=True, peer="10.0.0.2", nnodes=2,
                         rdzv_endpoint="10.0.0.1:29500", rdzv_id="job-7")
    assert RunOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    assert RunOptions.from_dict({}) == RunOptions()
    for data, message in (({"devices": "/dev/sda"}, "devices must be a list"),
                          ({"destructive": "yes"}, "destructive must be true or false"),
                          ({"target": 3}, "target must be a path"),
                          ({"nnodes": 0}, "nnodes must be a whole number >= 1, got 0")):
        with pytest.raises(ValueError, match=message):
            RunOptions.from_dict(data)


@pytest.mark.parametrize("request_text", ["[1]", "3", '"x"', "null"])
def test_a_request_that_is_no_object_gets_a_bad_request_answer(request_text: str) -> None:
    done = subprocess.run([sys.executable, "-m", "bench_agent.run.worker"], input=request_text,
                          capture_output=True, text=True, timeout=60)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert (answer["ok"], answer["status"], answer["error"]) == (False, "ERROR", "BadRequest")
    assert answer["message"].startswith("a request is a JSON object, not ")
    assert "Traceback" not in done.stderr
