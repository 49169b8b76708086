"""The burn-in loads (burnin/loads.py) as the supervisor meets them: a process that
prints one JSON line per interval until SIGTERM or its duration, exit 4 with a reason
where the node has nothing to drive, and a clear message (not a traceback) when its
input is wrong. Real numpy and real fio, for a second or two each."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench_agent.burnin.loads import LOADS, NOT_APPLICABLE
from tests.paths import REPO


def start(name: str, params: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench_agent.burnin.loads", name,
                             json.dumps(params)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(name: str, params: dict[str, Any]) -> tuple[int, list[dict[str, Any]], str]:
    proc = start(name, params)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err


def check_lines(lines: list[dict[str, Any]], load: str, unit: str) -> None:
    assert lines, f"{load} printed nothing"
    for line in lines:
        assert set(line) == {"load", "t", "value", "unit"}, line
        assert (line["load"], line["unit"]) == (load, unit)
        assert line["value"] > 0
    times = [line["t"] for line in lines]
    assert times == sorted(times)


def test_the_registry_names_every_load() -> None:
    assert sorted(LOADS) == ["cpu_matmul", "gpu_matmul", "memory_bandwidth",
                             "network_iperf3", "storage_fio"]


@pytest.mark.e2e
def test_cpu_matmul_prints_flops_per_interval_until_its_duration() -> None:
    rc, lines, err = run("cpu_matmul", {"size": 64, "interval": 0.2, "duration": 1.5})
    assert rc == 0, err
    check_lines(lines, "cpu_matmul", "FLOP/s")
    assert len(lines) >= 3  # about 1.5 s / 0.2 s, fewer on a busy machine


@pytest.mark.e2e
def test_memory_bandwidth_prints_bytes_per_second() -> None:
    rc, lines, err = run("memory_bandwidth", {"array_bytes": 8 * 2**20, "interval": 0.2,
                                              "duration": 1})
    assert rc == 0, err
    check_lines(lines, "memory_bandwidth", "bytes/s")


def test_sigterm_ends_a_load_cleanly() -> None:
    proc = start("cpu_matmul", {"size": 64, "interval": 0.2})  # no duration: until stopped
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["load"] == "cpu_matmul"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_storage_fio_prints_iops_and_removes_its_file(tmp_path: Path) -> None:
    rc, lines, err = run("storage_fio", {"target": str(tmp_path), "size": "8M",
                                         "iodepth": 2, "interval": 1, "duration": 3})
    assert rc == 0, err
    check_lines(lines, "storage_fio", "IOPS")
    assert list(tmp_path.iterdir()) == []


def test_storage_fio_names_a_target_that_is_not_a_folder(tmp_path: Path) -> None:
    rc, lines, err = run("storage_fio", {"target": str(tmp_path / "gone"), "duration": 1})
    assert (rc, lines) == (1, [])
    assert err.strip() == f"storage load: target {tmp_path / 'gone'} is not a directory"


def test_network_without_a_peer_is_not_applicable() -> None:
    rc, lines, err = run("network_iperf3", {"duration": 1})
    assert (rc, lines) == (NOT_APPLICABLE, [])
    assert err.strip() == "network load: no peer (bench-agent burnin --peer ADDRESS)"


def test_an_unknown_load_exits_3_and_lists_the_known() -> None:
    rc, lines, err = run("quantum", {})
    assert (rc, lines) == (3, [])
    assert err.strip() == ("unknown load 'quantum'; known: network_iperf3, cpu_matmul, "
                           "memory_bandwidth, storage_fio, gpu_matmul")
