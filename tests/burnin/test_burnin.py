"""Burn-in: real CPU and storage loads for seconds, the rules, and crash durability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench_agent.burnin.engine import Burnin, load_burnin_config, report_from_series
from bench_agent.burnin.health import EventKind, HealthReader, parse_smart_log
from bench_agent.burnin.judge import judge
from bench_agent.burnin.series import read_series
from bench_agent.core.errors import ConfigError, ReportError
from bench_agent.core.model import Report, Status, Verdict
from bench_agent.core.units import Unit
from bench_agent.report.attest import NodeKey, PublicKey, verify_envelope
from tests.paths import REPO

# Short runs on a shared test machine: the level of the first 2 s; falling below a fifth
# of it for 2 s fails (the loads compete for its few cores: fio starts after the CPU
# load's first readings).
RULES = """thresholds:
  - {id: burnin-cpu-matmul-held, metric: burnin.cpu_matmul, comparator: ">=", value: 20%,
     of_first: 2s, for_at_least: 2s, source: test}
  - {id: burnin-storage-fio-held, metric: burnin.storage_fio, comparator: ">=", value: 20%,
     of_first: 2s, for_at_least: 2s, source: test}
  - {id: burnin-network-iperf3-held, metric: burnin.network_iperf3, comparator: ">=",
     value: 20%, of_first: 2s, for_at_least: 2s, source: test}
"""


def write_suite(tmp_path: Path, loads: str, interval: str = "1s", extra: str = "") -> Path:
    path = tmp_path / "burnin-test.yaml"
    path.write_text(f"name: burnin-test\ninterval: {interval}\nloads:\n{loads}\n{RULES}{extra}")
    return path


CPU_AND_FIO = (
    "  cpu_matmul: {size: 128}\n"
    "  storage_fio: {size: 16M, iodepth: 4}\n"
)


def by_metric(report: Report, device: str = "") -> dict[str, Verdict]:
    return {v.metric: v for v in report.verdicts if v.metric and v.device == device}


@pytest.mark.e2e
def test_short_run_with_real_cpu_and_storage_loads(tmp_path: Path) -> None:
    config = load_burnin_config(write_suite(tmp_path, CPU_AND_FIO))
    target = tmp_path / "target"
    target.mkdir()
    burnin = Burnin(config, duration=5, output_dir=tmp_path / "out", host="n1",
                    target=str(target))
    report, series_path = burnin.run()
    measured = {m.metric: m for m in report.measurements if not m.device}
    assert measured["burnin.cpu_matmul"].unit is Unit.FLOPS
    assert measured["burnin.cpu_matmul"].value > 1e6
    assert measured["burnin.storage_fio"].unit is Unit.IOPS
    assert measured["burnin.storage_fio"].value > 10
    verdicts = by_metric(report)
    assert verdicts["burnin.cpu_matmul"].status is Status.PASS
    assert verdicts["burnin.cpu_matmul"].threshold_id == "burnin-cpu-matmul-held"
    assert verdicts["burnin.storage_fio"].status is Status.PASS
    for load in ("cpu_matmul", "storage_fio"):  # the shipped rules apply too
        assert by_metric(report, load)["burnin.load_crashed"].status is Status.PASS
    assert not report.interrupted and report.status is Status.PASS
    records = read_series(series_path)
    kinds = [r["type"] for r in records]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("sample") >= 4
    assert records[0]["series_version"] == 2
    assert records[0]["loads"]["storage_fio"]["check"] == "storage.randwrite"
    readings = [r for record in records if record["type"] == "sample"
                for r in record["readings"]]
    assert {"metric": "burnin.cpu_matmul", "device": "", "unit": "FLOP/s"}.items() <= next(
        r for r in readings if r["metric"] == "burnin.cpu_matmul").items()
    assert list(target.iterdir()) == []  # fio's test file is gone
    assert report.series_units["burnin.cpu_matmul"] == "FLOP/s"
    assert "burnin.cpu_matmul" in report.series
    # The inventory, read at the start (in a child, under a time limit), is kept in
    # the series and is the report's.
    assert report.inventory.cpu.logical_cpus == os.cpu_count()
    assert records[0]["inventory"] == report.inventory.to_dict()
    # Judged again from the file: the same verdicts.
    again = report_from_series(series_path)
    assert [(v.metric, v.device, v.status) for v in again.verdicts] == [
        (v.metric, v.device, v.status) for v in report.verdicts]


@pytest.mark.e2e
def test_a_load_that_cannot_run_here_is_skip_and_a_crash_is_fail(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, "  cpu_matmul: {size: 64}\n  storage_fio: {size: 16M}\n"
                        "  network_iperf3: {streams: 1}\n")
    config = load_burnin_config(suite)
    missing_target = tmp_path / "gone"  # the storage load refuses it and ends
    burnin = Burnin(config, duration=3, output_dir=tmp_path / "out", host="n1",
                    target=str(missing_target))
    report, series = burnin.run()
    crash = by_metric(report, "storage_fio")["burnin.load_crashed"]
    assert crash.status is Status.FAIL
    assert "load storage_fio crashed at +" in crash.message
    assert f"--target {missing_target} does not exist" in crash.message
    assert by_metric(report)["burnin.cpu_matmul"].status is Status.PASS
    no_peer = by_metric(report)["burnin.network_iperf3"]
    assert no_peer.status is Status.SKIP and "no peer given" in no_peer.message
    events = {r["kind"]: r for r in read_series(series) if r["type"] == "event"}
    assert events["LOAD_CRASHED"]["device"] == "storage_fio"
    assert events["LOAD_NOT_APPLICABLE"]["device"] == "network_iperf3"


def _start(started_at: str = "2026-11-27T10:00:00Z", loads: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    config = load_burnin_config(REPO / "suites" / "burnin.yaml")
    return {"type": "start", "series_version": 2, "host": "n1", "started_at": started_at,
            "suite": {"name": "burnin", "sha256": "0" * 64, "path": ""},
            "loads": loads or {}, "thresholds": [t.to_dict() for t in config.thresholds]}


def _records(timeline: list[tuple[float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Raw health samples through the live reader, as the engine writes them."""
    reader = HealthReader()
    records: list[dict[str, Any]] = []
    for elapsed, raw in timeline:
        readings, events = reader.feed(raw, elapsed)
        records.append({"type": "sample", "elapsed": elapsed,
                        "readings": [r.to_dict() for r in readings]})
        records += [e.to_dict() for e in events]
    return records


def test_the_shipped_rules_for_temperatures_counters_slowdown_and_xids() -> None:
    gpu = {"index": 0, "temp_c": 70, "ecc_uncorrected": 0, "ecc_corrected": 5, "throttle": []}
    timeline = [
        (10, {"gpus": [gpu]}),
        (20, {"gpus": [{**gpu, "temp_c": 80, "ecc_corrected": 9,
                        "throttle": ["hw_slowdown", "sw_power_cap"]}]}),
        (40, {"gpus": [{**gpu, "temp_c": 88, "ecc_corrected": 9, "throttle": ["hw_slowdown"]}]}),
        (50, {"gpus": [{**gpu, "temp_c": 85, "ecc_uncorrected": 1, "ecc_corrected": 9,
                        "throttle": ["hw_slowdown"], "xids": [79, 13]}]}),
    ]
    records = _records(timeline)
    events = [r for r in records if r["type"] == "event"]
    assert [(e["kind"], e["elapsed"], e["detail"]) for e in events] == [
        ("THROTTLE", 20, "hw_slowdown"), ("XID", 50, "XID 79 (a failing XID)"),
        ("XID", 50, "XID 13")]
    readings = {(r["metric"], r["unit"]) for r in records[-4]["readings"]}
    assert ("burnin.gpu_temperature", "degC") in readings
    report = judge([_start(), *records,
                    {"type": "end", "finished_at": "2026-11-27T10:01:00Z"}])
    gpu0 = by_metric(report, "gpu0")
    assert gpu0["burnin.gpu_temperature"].status is Status.FAIL
    assert gpu0["burnin.gpu_temperature"].message == "88 °C does not meet <= 87 °C at +40 s"
    assert gpu0["burnin.gpu_ecc_corrected_new"].status is Status.WARN
    assert "at +20 s" in gpu0["burnin.gpu_ecc_corrected_new"].message
    assert gpu0["burnin.gpu_ecc_uncorrected_new"].status is Status.FAIL
    # From +20 s to +50 s: 30 s, the shipped window; sw_power_cap is no slowdown.
    slowdown = gpu0["burnin.gpu_slowdown"]
    assert slowdown.status is Status.FAIL
    assert slowdown.message.endswith("at +50 s for 30 s, since +20 s; hw_slowdown (+20 s)")
    xid = gpu0["burnin.gpu_failing_xids"]
    assert xid.status is Status.FAIL and xid.value == 1.0  # XID 13 fails nothing
    assert xid.message.endswith("; XID 79 (a failing XID) (+50 s)")
    assert report.series_units["burnin.gpu_temperature[gpu0]"] == "degC"
    # This series started no load: the health FAILs stand, and the run itself is an
    # ERROR, since nothing was under load (a burn-in with every load disabled).
    loads = [(v.status, v.message) for v in report.verdicts
             if v.check == "burnin.loads" and v.status is Status.ERROR]
    assert loads == [(Status.ERROR, "no load is enabled: nothing was under load")]
    assert report.status is Status.ERROR


def test_smart_log_json_is_read_in_celsius() -> None:
    # nvme-cli 2.x `smart-log -o json` keys; temperature in Kelvin.
    text = json.dumps({"critical_warning": 0, "temperature": 318, "avail_spare": 100,
                       "percent_used": 3, "media_errors": 0, "num_err_log_entries": 12})
    assert parse_smart_log(text) == {"temp_c": pytest.approx(44.85), "percent_used": 3.0,
                                     "media_errors": 0.0}


def test_smart_log_that_is_not_an_object_is_a_value_error() -> None:
    # sample_nvme makes a drive "unreadable" on ValueError; anything else would end the run.
    with pytest.raises(ValueError, match="not an object"):
        parse_smart_log("[]")


def test_a_damaged_series_is_a_report_error_not_a_traceback(tmp_path: Path) -> None:
    series = tmp_path / "s.jsonl"
    series.write_text(json.dumps({"type": "start", "host": "n1"}) + "\n"  # no started_at
                      + json.dumps({"type": "sample", "elapsed": "x"}) + "\n")
    with pytest.raises(ReportError, match="cannot be read"):
        report_from_series(series)
    start = _start()
    for bad in ({"type": "event", "kind": "SOMETHING_ELSE", "elapsed": 1},  # a closed set
                {"type": "sample", "elapsed": 1, "readings": [
                    {"metric": "burnin.cpu_load", "value": 1, "unit": "furlongs"}]}):
        series.write_text(json.dumps(start) + "\n" + json.dumps(bad) + "\n"
                          + json.dumps({"type": "end", "finished_at": start["started_at"]})
                          + "\n")
        with pytest.raises(ReportError, match="a record of the series cannot be read"):
            report_from_series(series)
    series.write_text(json.dumps({**start, "series_version": 3}) + "\n")
    with pytest.raises(ReportError, match="series format 3 is not one this agent reads"):
        report_from_series(series)


def test_config_errors_name_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"loads.quantum: unknown load 'quantum'"):
        load_burnin_config(write_suite(tmp_path, "  quantum: {}\n"))
    # A typo in a load's parameters is refused by the load's own model (it was ignored).
    with pytest.raises(ConfigError, match=r"burnin-test.yaml: loads.cpu_matmul.sise: Extra "
                                          r"inputs are not permitted"):
        load_burnin_config(write_suite(tmp_path, "  cpu_matmul: {sise: 64}\n"))
    with pytest.raises(ConfigError, match=r"loads.storage_fio.block_size: .*unknown unit"):
        load_burnin_config(write_suite(tmp_path, "  storage_fio: {block_size: 4 parsecs}\n"))
    with pytest.raises(ConfigError, match=r"loads.cpu_matmul.enabled: expected true or false"):
        load_burnin_config(write_suite(tmp_path, "  cpu_matmul: {enabled: 'no'}\n"))
    path = tmp_path / "b.yaml"
    path.write_text("name: b\nlimits:\n  throughput_drop: 50%\n")  # the old form
    with pytest.raises(ConfigError, match=r"b.yaml: limits: Extra inputs are not permitted "
                                          r"\(allowed keys: .*thresholds"):
        load_burnin_config(path)
    path.write_text("name: b\nthresholds:\n  - {id: x, metric: burnin.gpu_slowdown,"
                    " comparator: '<=', value: 0, for_at_least: 3 fortnights, source: s}\n")
    with pytest.raises(ConfigError, match=r"b.yaml: thresholds\[0\].for_at_least: "):
        load_burnin_config(path)
    path.write_text("name: b\nthresholds:\n  - {id: x, metric: burnin.cpu_matmul,"
                    " comparator: '>=', value: 10 GFLOP/s, of_first: 2m, source: s}\n")
    with pytest.raises(ConfigError, match=r"thresholds\[0\].value: expected a fraction"):
        load_burnin_config(path)


def test_window_rules_belong_to_burnin_not_to_profiles(tmp_path: Path) -> None:
    from bench_agent.config.loader import load_profile

    path = tmp_path / "p.yaml"
    path.write_text("name: p\nthresholds:\n  - {id: x, metric: cpu.gemm_fp64_all_cores,"
                    " comparator: '>=', value: 1 GFLOP/s, for_at_least: 30s, source: s}\n")
    with pytest.raises(ConfigError, match=r"p.yaml: thresholds\[0\].for_at_least: Extra "
                                          r"inputs are not permitted"):
        load_profile(path)


def test_a_file_overrides_the_shipped_thresholds_by_id(tmp_path: Path) -> None:
    shipped = load_burnin_config(REPO / "suites" / "burnin.yaml")
    mine = load_burnin_config(write_suite(tmp_path, "  cpu_matmul: {size: 64}\n"))
    by_id = {t.id: t for t in mine.thresholds}
    assert by_id["burnin-cpu-matmul-held"].of_first == 2.0
    assert {t.id for t in shipped.thresholds} <= set(by_id)
    assert by_id["burnin-gpu-slowdown"].for_at_least == 30.0
    assert mine.profile.sha256 != shipped.profile.sha256


def _start_cli(tmp_path: Path, suite: Path, mark: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key"), "BURNIN_TEST": mark}
    return subprocess.Popen(
        [sys.executable, "-m", "bench_agent.cli", "burnin", "--duration", "120s",
         "--suite-file", str(suite), "--output", str(tmp_path / "out"), "--no-plots", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        start_new_session=True)


def _marked(mark: str) -> list[int]:
    """Processes whose environment carries ``mark`` (what the test's burn-in started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if f"BURNIN_TEST={mark}".encode() in environ.split(b"\0"):
                found.append(int(entry.name))
    return found


def _wait_for_samples(folder: Path, count: int, timeout: float = 60) -> Path:
    """Until the series holds `count` samples with a reading of the CPU load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in folder.glob("*/*.jsonl"):
            samples = [line for line in path.read_text().splitlines()
                       if line.startswith('{"type": "sample"')
                       and '"metric": "burnin.cpu_matmul"' in line]
            if len(samples) >= count:
                return path
        time.sleep(0.2)
    raise AssertionError("the burn-in wrote no samples")


@pytest.mark.e2e
def test_sigkill_mid_run_leaves_a_readable_series(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, "  cpu_matmul: {size: 64}\n")
    mark = uuid.uuid4().hex
    proc = _start_cli(tmp_path, suite, mark)
    try:
        series = _wait_for_samples(tmp_path / "out", 3)
        assert len(_marked(mark)) >= 2  # the agent and its load's worker
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = report_from_series(series)
    assert report.interrupted and report.status is Status.ERROR
    assert any(v.message.startswith("the run was killed: no end record") for v in
               report.verdicts)
    assert report.inventory.to_dict() == read_series(series)[0]["inventory"]
    assert report.inventory.cpu.logical_cpus == os.cpu_count()
    assert report.series["burnin.cpu_matmul"]  # every sample up to the kill is kept
    shown = subprocess.run([sys.executable, "-m", "bench_agent.cli", "report", "show",
                            str(series)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert shown.returncode == 2
    assert "burnin.cpu_matmul" in shown.stdout
    # The load died with its supervisor (the parent-death signal): no orphan burns on.
    deadline = time.monotonic() + 10
    while _marked(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _marked(mark) == []


@pytest.mark.e2e
def test_sigterm_gives_an_interrupted_signed_report(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, "  cpu_matmul: {size: 64}\n")
    proc = _start_cli(tmp_path, suite, uuid.uuid4().hex)
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
    assert any(v["message"].startswith("interrupted after") for v in report["verdicts"])
    assert report["series_units"]["burnin.cpu_matmul"] == "FLOP/s"
    assert "INTERRUPTED" in stdout


@pytest.mark.e2e
def test_fake_nvml_timeline_fails_slowdown_and_ecc_at_the_right_time(tmp_path: Path) -> None:
    """A thermal slowdown from +2 s and an uncorrectable ECC error at +4 s, injected
    at the NVML seam: each FAIL carries the time it happened."""
    import threading

    from bench_agent.tools import nvml
    from tests.fake_nvml import FakeGpu, FakeNvml

    fake = FakeNvml([FakeGpu(), FakeGpu()])
    extra = ("  - {id: burnin-gpu-slowdown, metric: burnin.gpu_slowdown, comparator: '<=',"
             " value: 0, for_at_least: 2s, source: test}\n")
    config = load_burnin_config(write_suite(tmp_path, "  cpu_matmul: {size: 64}\n",
                                            extra=extra))
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
    slowdown = by_metric(report, "gpu1")["burnin.gpu_slowdown"]
    assert slowdown.status is Status.FAIL and "hw_thermal_slowdown (+" in slowdown.message
    ecc = by_metric(report, "gpu0")["burnin.gpu_ecc_uncorrected_new"]
    assert ecc.status is Status.FAIL
    records = read_series(series)
    began = next(r["elapsed"] for r in records
                 if r["type"] == "event" and r["kind"] == EventKind.THROTTLE)
    first_ecc = next(r["elapsed"] for r in records if r["type"] == "sample" and any(
        x["metric"] == "burnin.gpu_ecc_uncorrected_new" and x["value"] == 1
        for x in r["readings"]))
    # Sampled every second: the slowdown, first seen at the sample after +2 s, FAILs
    # at the first sample where it has lasted 2 s; the ECC error at the first sample
    # after +4 s.
    assert 2.0 <= began <= 3.5
    assert f"since +{began:.0f} s" in slowdown.message
    assert 4.0 <= first_ecc <= 6.0 and f"at +{first_ecc:.0f} s" in ecc.message
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
    assert 'data-series="burnin.cpu_matmul"' in page
    assert page.count('class="burnin-plot"') == len(report.series)
    assert "FLOP/s" in page  # the load's axis is labelled in its recorded unit


def test_a_load_that_cannot_start_stops_the_others_and_reports_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench_agent.burnin import engine as burnin_module

    real_start = burnin_module.start_load
    started: list[Any] = []

    def start_or_fail(load: Any, *args: Any) -> Any:
        if load.name == "storage_fio":
            raise OSError(24, "Too many open files")
        running = real_start(load, *args)
        started.append(running)
        return running

    monkeypatch.setattr(burnin_module, "start_load", start_or_fail)
    config = load_burnin_config(write_suite(tmp_path, CPU_AND_FIO))
    report, series = Burnin(config, duration=30, output_dir=tmp_path / "out", host="n1").run()
    assert report.interrupted and report.status is Status.ERROR
    assert any("stopped early" in v.message and "Too many open files" in v.message
               for v in report.verdicts)
    assert started and all(load.exit_code() is not None for load in started)
    assert read_series(series)[-1]["type"] == "end"


def test_a_stuck_load_and_a_drive_that_stops_answering_fail() -> None:
    records = _records([
        (10, {"nvme": {"/dev/nvme0n1": {"temp_c": 40.0},
                       "/dev/nvme1n1": {"unreadable": "Permission denied"}}}),
        (20, {"nvme": {"/dev/nvme0n1": {"unreadable": "No such device"},
                       "/dev/nvme1n1": {"unreadable": "Permission denied"}}}),
    ])
    stuck = {"type": "event", "kind": "LOAD_STUCK", "elapsed": 30.0, "device": "gpu_matmul",
             "detail": "did not exit after SIGKILL at +30 s: stuck in the kernel"}
    loads = {"gpu_matmul": {"check": "gpu.matmul", "params": {}}}
    report = judge([_start(loads=loads), *records, stuck,
                    {"type": "end", "finished_at": "2026-11-27T10:00:30Z"}])
    lost = by_metric(report, "/dev/nvme0n1")["burnin.nvme_lost"]
    assert lost.status is Status.FAIL
    assert lost.message == ("1 does not meet <= 0 at +20 s; stopped answering: No such device"
                            " (+20 s)")
    never = by_metric(report, "/dev/nvme1n1")
    assert never["burnin.nvme_unreadable"].status is Status.WARN  # never readable
    assert never["burnin.nvme_lost"].status is Status.PASS
    gpu_load = by_metric(report, "gpu_matmul")
    assert gpu_load["burnin.load_stuck"].status is Status.FAIL
    assert "did not exit after SIGKILL" in gpu_load["burnin.load_stuck"].message
    # Stuck, so no "reported no throughput" ERROR on top.
    assert not [v for v in report.verdicts if v.status is Status.ERROR]


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
    records = _records([(10, {"gpu_error": "RuntimeError: NVML failed"})])
    report = judge([_start(), *records, {"type": "end", "finished_at": "2026-11-27T10:00:10Z"}])
    unreadable = by_metric(report)["burnin.gpu_unreadable"]
    assert unreadable.status is Status.FAIL
    assert unreadable.message.endswith("; RuntimeError: NVML failed (+10 s)")


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
    assert by_metric(report)["burnin.network_iperf3"].status is Status.PASS
    verdict = by_metric(without_peer)["burnin.network_iperf3"]
    assert verdict.status is Status.SKIP and "no peer given" in verdict.message
    assert without_peer.status is Status.ERROR  # nothing could run: below


def test_a_burnin_where_no_load_can_run_is_an_error() -> None:
    loads = {"gpu_matmul": {"check": "gpu.matmul", "params": {}}}
    skip = {"type": "event", "kind": "LOAD_NOT_APPLICABLE", "elapsed": 1.0,
            "device": "gpu_matmul", "detail": "gpu load: no CUDA device"}
    report = judge([_start(loads=loads), skip,
                    {"type": "end", "finished_at": "2026-11-27T10:00:10Z"}])
    errors = [v for v in report.verdicts if v.status is Status.ERROR]
    assert [(v.check, v.message) for v in errors] == [
        ("burnin.loads", "no load could run on this node: gpu_matmul: gpu load: no CUDA device")]
    assert by_metric(report)["burnin.gpu_matmul"].message == "not run: gpu load: no CUDA device"


@pytest.mark.e2e
def test_a_burst_of_sigterms_gives_the_interrupted_report(tmp_path: Path) -> None:
    """Several signals at once (systemd, timeout(1), a playbook) must not deadlock."""
    suite = write_suite(tmp_path, "  cpu_matmul: {size: 64}\n")
    proc = _start_cli(tmp_path, suite, uuid.uuid4().hex)
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
