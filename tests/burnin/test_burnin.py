"""Burn-in: real CPU and storage loads for seconds, the rules, and crash durability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench_agent.burnin.engine import Burnin, load_burnin_config, read_series, report_from_series
from bench_agent.burnin.health import HealthRules, Limits, parse_smart_log
from bench_agent.core.errors import ConfigError, ReportError
from bench_agent.core.model import Status
from bench_agent.core.units import Unit
from bench_agent.report.attest import NodeKey, PublicKey, verify_envelope
from tests.paths import REPO

REPO = REPO


def write_suite(tmp_path: Path, loads: str, interval: str = "1s", extra: str = "") -> Path:
    path = tmp_path / "burnin-test.yaml"
    path.write_text(
        f"name: burnin-test\ninterval: {interval}\nloads:\n{loads}\n"
        f"limits:\n  baseline_window: 2s\n  throughput_drop: 50%\n{extra}"
    )
    return path


CPU_AND_FIO = (
    "  cpu_matmul: {size: 128}\n"
    "  storage_fio: {size: 16M, iodepth: 4}\n"
)


@pytest.mark.e2e
def test_short_run_with_real_cpu_and_storage_loads(tmp_path: Path) -> None:
    config = load_burnin_config(write_suite(tmp_path, CPU_AND_FIO))
    target = tmp_path / "target"
    target.mkdir()
    burnin = Burnin(config, duration=5, output_dir=tmp_path / "out", host="n1",
                    target=str(target))
    report, series_path = burnin.run()
    measured = {m.metric: m for m in report.measurements}
    assert measured["burnin.cpu_matmul"].unit is Unit.FLOPS
    assert measured["burnin.cpu_matmul"].value > 1e6
    assert measured["burnin.storage_fio"].unit is Unit.IOPS
    assert measured["burnin.storage_fio"].value > 10
    statuses = {v.metric: v.status for v in report.verdicts}
    assert statuses["burnin.cpu_matmul"] is Status.PASS
    assert statuses["burnin.storage_fio"] is Status.PASS
    assert not report.interrupted
    records = read_series(series_path)
    kinds = [r["type"] for r in records]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("sample") >= 4
    assert list(target.iterdir()) == []  # fio's test file is gone
    assert "load.cpu_matmul" in report.series
    # The inventory, read at the start (in a child, under a time limit), is kept in
    # the series and is the report's.
    assert report.inventory.cpu.logical_cpus == os.cpu_count()
    assert records[0]["inventory"] == report.inventory.to_dict()


@pytest.mark.e2e
def test_a_load_that_cannot_run_here_is_skip_and_a_crash_is_fail(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, "  cpu_matmul: {size: 64}\n  storage_fio: {size: 16M}\n")
    config = load_burnin_config(suite)
    missing_target = tmp_path / "gone"  # the storage load exits: not a directory
    burnin = Burnin(config, duration=3, output_dir=tmp_path / "out", host="n1",
                    target=str(missing_target))
    report, _ = burnin.run()
    verdicts = {v.metric: v for v in report.verdicts}
    crash = verdicts["burnin.storage_fio"]
    assert crash.status is Status.FAIL
    assert "crashed" in crash.message and "is not a directory" in crash.message
    assert verdicts["burnin.cpu_matmul"].status is Status.PASS


def test_rules_fail_a_throughput_drop_at_the_time_it_happens() -> None:
    rules = HealthRules(Limits(throughput_drop=0.10, baseline_seconds=20), ["cpu_matmul"])
    events = []
    for t, value in [(10, 100.0), (20, 102.0), (30, 101.0), (40, 99.0), (50, 80.0),
                     (60, 79.0), (70, 78.0)]:
        events += rules.feed({"elapsed": t, "loads": {"cpu_matmul": value}})
    assert len(events) == 1
    assert events[0].status is Status.FAIL
    assert events[0].elapsed == 60  # median of the last three is 80 < 0.9 * 101
    assert "more than 10% below" in events[0].message
    _, verdicts = rules.summary()
    assert [v.status for v in verdicts if v.metric == "burnin.cpu_matmul"] == [Status.FAIL]


def test_rules_for_temperatures_counters_throttling_and_xids() -> None:
    rules = HealthRules(Limits(throttle_seconds=25, gpu_temperature=87), [])
    timeline = [
        {"elapsed": 10, "gpus": [{"index": 0, "temp_c": 70, "ecc_uncorrected": 0,
                                  "ecc_corrected": 5, "throttle": []}]},
        {"elapsed": 20, "gpus": [{"index": 0, "temp_c": 80, "ecc_uncorrected": 0,
                                  "ecc_corrected": 9, "throttle": ["hw_slowdown"]}]},
        {"elapsed": 40, "gpus": [{"index": 0, "temp_c": 88, "ecc_uncorrected": 0,
                                  "ecc_corrected": 9, "throttle": ["hw_slowdown"]}]},
        {"elapsed": 50, "gpus": [{"index": 0, "temp_c": 85, "ecc_uncorrected": 1,
                                  "ecc_corrected": 9, "throttle": ["hw_slowdown"],
                                  "xids": [79]}]},
    ]
    fired = {t["elapsed"]: [e.metric for e in rules.feed(t)] for t in timeline}
    assert fired[20] == ["burnin.gpu_ecc_corrected_new"]
    assert fired[40] == ["burnin.gpu_temperature_max"]
    assert sorted(fired[50]) == ["burnin.gpu_ecc_uncorrected_new", "burnin.gpu_throttle",
                                 "burnin.gpu_xid"]
    status = {e.metric: e.status for e in rules.events}
    assert status["burnin.gpu_ecc_corrected_new"] is Status.WARN
    assert status["burnin.gpu_ecc_uncorrected_new"] is Status.FAIL


def test_smart_log_json_is_read_in_celsius() -> None:
    # nvme-cli 2.x `smart-log -o json` keys; temperature in Kelvin.
    text = json.dumps({"critical_warning": 0, "temperature": 318, "avail_spare": 100,
                       "percent_used": 3, "media_errors": 0, "num_err_log_entries": 12})
    assert parse_smart_log(text) == {"temp_c": pytest.approx(44.85), "percent_used": 3.0,
                                     "media_errors": 0.0}


def test_smart_log_that_is_not_an_object_is_a_value_error() -> None:
    # sample_nvme skips a drive on ValueError; anything else would end the burn-in.
    with pytest.raises(ValueError, match="not an object"):
        parse_smart_log("[]")


def test_a_damaged_series_is_a_report_error_not_a_traceback(tmp_path: Path) -> None:
    series = tmp_path / "s.jsonl"
    series.write_text(json.dumps({"type": "start", "host": "n1"}) + "\n"  # no started_at
                      + json.dumps({"type": "sample", "elapsed": "x"}) + "\n")
    with pytest.raises(ReportError, match="cannot be read"):
        report_from_series(series)


def test_config_errors_name_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"loads.quantum: unknown load 'quantum'"):
        load_burnin_config(write_suite(tmp_path, "  quantum: {}\n"))
    path = tmp_path / "b.yaml"
    path.write_text("name: b\nlimits:\n  throughput_drop: 150%\n")
    with pytest.raises(ConfigError, match=r"limits\.throughput_drop"):
        load_burnin_config(path)


def _start_cli(tmp_path: Path, suite: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key")}
    return subprocess.Popen(
        [sys.executable, "-m", "bench_agent.cli", "burnin", "--duration", "120s",
         "--suite-file", str(suite), "--output", str(tmp_path / "out"), "--no-plots", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        start_new_session=True)


def _wait_for_samples(folder: Path, count: int, timeout: float = 60) -> Path:
    """Until the series holds `count` samples with a throughput of the CPU load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in folder.glob("*/*.jsonl"):
            samples = [line for line in path.read_text().splitlines()
                       if line.startswith('{"type": "sample"')
                       and '"loads": {"cpu_matmul"' in line]
            if len(samples) >= count:
                return path
        time.sleep(0.2)
    raise AssertionError("the burn-in wrote no samples")


@pytest.mark.e2e
def test_sigkill_mid_run_leaves_a_readable_series(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, "  cpu_matmul: {size: 64}\n")
    proc = _start_cli(tmp_path, suite)
    try:
        series = _wait_for_samples(tmp_path / "out", 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = report_from_series(series)
    assert report.interrupted and report.status is Status.ERROR
    assert any("killed" in v.message for v in report.verdicts)
    assert report.inventory.to_dict() == read_series(series)[0]["inventory"]
    assert report.inventory.cpu.logical_cpus == os.cpu_count()
    assert report.series["load.cpu_matmul"]  # every sample up to the kill is kept
    shown = subprocess.run([sys.executable, "-m", "bench_agent.cli", "report", "show",
                            str(series)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert shown.returncode == 2
    assert "burnin.cpu_matmul" in shown.stdout
    # The load died with its supervisor (PR_SET_PDEATHSIG): no orphan keeps burning.
    time.sleep(1.0)
    leftovers = subprocess.run(["pgrep", "-f", f'"owner": {proc.pid}[,}}]'],
                               capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


@pytest.mark.e2e
def test_sigterm_gives_an_interrupted_signed_report(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, "  cpu_matmul: {size: 64}\n")
    proc = _start_cli(tmp_path, suite)
    try:
        _wait_for_samples(tmp_path / "out", 2)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, stderr
    report_file = next((tmp_path / "out").glob("*/*-burnin-test.json"))
    envelope = json.loads(report_file.read_text())
    key = NodeKey(Path(tmp_path / "node.key").read_bytes())
    statement = verify_envelope(envelope, PublicKey(key.public.raw))
    report = statement["predicate"]
    assert report["interrupted"] is True and report["status"] == "ERROR"
    assert any("interrupted" in v["message"] for v in report["verdicts"])
    assert "INTERRUPTED" in stdout


@pytest.mark.e2e
def test_fake_nvml_timeline_fails_throttle_and_ecc_at_the_right_time(tmp_path: Path) -> None:
    """A thermal throttle from +2 s and an uncorrectable ECC error at +4 s, injected
    at the NVML seam: each FAIL carries the time it happened."""
    import threading

    from bench_agent.tools import nvml
    from tests.fake_nvml import FakeGpu, FakeNvml

    fake = FakeNvml([FakeGpu(), FakeGpu()])
    suite = write_suite(tmp_path, "  cpu_matmul: {size: 64}\n",
                        extra="  throttle_time: 2s\n")
    config = load_burnin_config(suite)
    stop = threading.Event()

    def timeline() -> None:
        started = time.monotonic()
        stop.wait(2.0)
        fake.gpus[1].reasons = 0x40  # hw_thermal_slowdown, from +2 s on
        stop.wait(max(0.0, 4.0 - (time.monotonic() - started)))
        fake.gpus[0].ecc[(1, 0, 2)] = 1  # one uncorrected, volatile, DRAM

    with nvml.use_loader(lambda: fake):
        sampler = nvml.burnin_sampler()
        thread = threading.Thread(target=timeline)
        burnin = Burnin(config, duration=8, output_dir=tmp_path / "out", host="n1",
                        gpu_sampler=sampler)
        thread.start()
        try:
            report, series = burnin.run()
        finally:
            stop.set()
            thread.join()
    events = {v.metric: v for v in report.verdicts if v.status is Status.FAIL}
    throttle = events["burnin.gpu_throttle"]
    assert throttle.device == "gpu1" and "hw_thermal_slowdown" in throttle.message
    ecc = events["burnin.gpu_ecc_uncorrected_new"]
    assert ecc.device == "gpu0"
    recorded = {r["metric"]: r["elapsed"] for r in read_series(series)
                if r["type"] == "event"}
    # Sampled every second: the throttle, first seen at the sample after +2 s,
    # FAILs at the first sample where it has lasted more than 2 s (+4..6 s); the
    # ECC error at the first sample after +4 s.
    assert 4.0 <= recorded["burnin.gpu_throttle"] <= 6.5
    assert 4.0 <= recorded["burnin.gpu_ecc_uncorrected_new"] <= 6.0
    assert "shutdown" in fake.calls  # the NVML session is closed at the end
    assert report.status is Status.FAIL


@pytest.mark.e2e
def test_collector_node_page_shows_the_burnin_plots(tmp_path: Path) -> None:
    """A real burn-in report, uploaded: the node page plots its signed series."""
    pytest.importorskip("fastapi")
    import base64

    from bench_agent.report.attest import sign_report
    from tests.collector_support import Collector

    config = load_burnin_config(write_suite(tmp_path, "  cpu_matmul: {size: 64}\n"))
    report, _ = Burnin(config, duration=3, output_dir=tmp_path / "out", host="burn-1").run()
    key = NodeKey.generate()
    body = json.dumps(sign_report(report.to_dict(), key)).encode()
    collector = Collector(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "c.log",
                          "--auto-enroll").start()
    try:
        posted = collector.post(body, {"X-Bench-Agent-Public-Key":
                                       base64.b64encode(key.public.raw).decode()})
        assert posted.status == 201, posted.body
        page = collector.get("/nodes/burn-1").body.decode()
    finally:
        collector.stop()
    assert 'id="burnin"' in page
    assert 'data-series="load.cpu_matmul"' in page
    assert page.count('class="burnin-plot"') == len(report.series)
    assert "FLOP/s" in page  # the load's axis is labelled in its unit


def test_a_load_that_cannot_start_stops_the_others_and_reports_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench_agent.burnin import engine as burnin_module

    real_start = burnin_module.start_load
    started: list[object] = []

    def start_or_fail(name: str, params: dict[str, object]) -> object:
        if name == "storage_fio":
            raise OSError(24, "Too many open files")
        load = real_start(name, params)
        started.append(load)
        return load

    monkeypatch.setattr(burnin_module, "start_load", start_or_fail)
    config = load_burnin_config(write_suite(tmp_path, CPU_AND_FIO))
    report, series = Burnin(config, duration=30, output_dir=tmp_path / "out", host="n1").run()
    assert report.interrupted and report.status is Status.ERROR
    assert any("stopped early" in v.message and "Too many open files" in v.message
               for v in report.verdicts)
    assert all(load.proc.poll() is not None for load in started)  # type: ignore[attr-defined]
    assert read_series(series)[-1]["type"] == "end"


def test_rules_for_a_stuck_load_and_a_drive_that_stops_answering() -> None:
    rules = HealthRules(Limits(), ["gpu_matmul"])
    rules.feed({"elapsed": 10, "nvme": {"/dev/nvme0n1": {"temp_c": 40.0},
                                         "/dev/nvme1n1": {"unreadable": "Permission denied"}}})
    events = rules.feed({"elapsed": 20, "nvme": {
        "/dev/nvme0n1": {"unreadable": "No such device"},
        "/dev/nvme1n1": {"unreadable": "Permission denied"}}})
    assert [(e.status, e.device) for e in events] == [(Status.FAIL, "/dev/nvme0n1")]
    assert "stopped answering at +20 s: No such device" in events[0].message
    warned = [e for e in rules.events if e.status is Status.WARN]
    assert [e.device for e in warned] == ["/dev/nvme1n1"]  # never readable: a WARN, once
    stuck = rules.stuck("gpu_matmul", 30)
    assert stuck[0].status is Status.FAIL and "did not exit after SIGKILL" in stuck[0].message
    assert rules.settled("gpu_matmul")


def test_broken_nvml_is_a_fail_not_a_quiet_pass() -> None:
    from bench_agent.burnin.health import gpu_sampler_from_nvml
    from bench_agent.tools import nvml
    from tests.fake_nvml import FakeNvml, NVMLError

    class BrokenNvml(FakeNvml):
        def nvmlDeviceGetCount(self) -> int:
            raise NVMLError(999)

    with nvml.use_loader(lambda: BrokenNvml()):
        sampler = gpu_sampler_from_nvml()
    assert sampler is not None
    with pytest.raises(RuntimeError, match="NVML failed at the start of the burn-in"):
        sampler()
    with nvml.use_loader(lambda: FakeNvml(init_error=9)):  # driver not loaded: no GPU here
        assert gpu_sampler_from_nvml() is None
    rules = HealthRules(Limits(), [])
    events = rules.feed({"elapsed": 10, "gpu_error": "RuntimeError: NVML failed"})
    assert events[0].status is Status.FAIL and events[0].metric == "burnin.gpu_readable"


@pytest.mark.e2e
def test_network_load_to_a_real_iperf3_server_on_loopback(tmp_path: Path) -> None:
    import shutil
    import socket

    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        suite = write_suite(tmp_path, f"  network_iperf3: {{streams: 2, port: {port}}}\n")
        config = load_burnin_config(suite)
        report, _ = Burnin(config, duration=5, output_dir=tmp_path / "out", host="n1",
                           peer="127.0.0.1").run()
        without_peer, _ = Burnin(config, duration=2, output_dir=tmp_path / "out2",
                                 host="n1").run()
    finally:
        server.terminate()
        server.wait(timeout=10)
    measured = {m.metric: m for m in report.measurements}
    assert measured["burnin.network_iperf3"].unit is Unit.BITS_PER_SECOND
    assert measured["burnin.network_iperf3"].value > 1e8  # loopback: far above 100 Mbit/s
    verdict = next(v for v in without_peer.verdicts if v.metric == "burnin.network_iperf3")
    assert verdict.status is Status.SKIP and "no peer" in verdict.message


def test_a_burnin_where_no_load_can_run_is_an_error() -> None:
    rules = HealthRules(Limits(), ["gpu_matmul"])
    rules.not_applicable("gpu_matmul", "gpu load: no CUDA device")
    _, verdicts = rules.summary()
    errors = [v for v in verdicts if v.status is Status.ERROR]
    assert [v.message for v in errors] == [
        "no load could run on this node: gpu_matmul: gpu load: no CUDA device"]


@pytest.mark.e2e
def test_a_burst_of_sigterms_gives_the_interrupted_report(tmp_path: Path) -> None:
    """Several signals at once (systemd, timeout(1), a playbook) must not deadlock."""
    suite = write_suite(tmp_path, "  cpu_matmul: {size: 64}\n")
    proc = _start_cli(tmp_path, suite)
    try:
        _wait_for_samples(tmp_path / "out", 1)
        for _ in range(20):
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2
    report = json.loads(next((tmp_path / "out").glob("*/*-burnin-test.json")).read_text())
    assert report["payloadType"] == "application/vnd.in-toto+json"
