"""Burn-in loads: the registry comes from the checks, the worker's burn-in mode
speaks the one child protocol, and each loop is its check's kernel."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench_agent.burnin.loads import burnin_catalog, load_registry
from bench_agent.checks.base import CheckContext, RunOptions
from bench_agent.core.errors import CheckError, NotApplicable
from bench_agent.core.units import Unit
from bench_agent.run.worker import PROTOCOL
from tests.paths import REPO


def test_the_loads_are_the_checks_burnin_variants() -> None:
    registry = load_registry()
    assert {name: load.check for name, load in registry.items()} == {
        "cpu_matmul": "cpu.gemm", "memory_bandwidth": "memory.stream",
        "gpu_matmul": "gpu.matmul", "storage_fio": "storage.randwrite",
        "network_iperf3": "network.tcp_bandwidth", "gpu_power": "gpu.power_stress"}
    catalog = burnin_catalog()
    assert catalog["burnin.storage_fio"].unit is Unit.IOPS
    assert catalog["burnin.gpu_sm_clock"].unit is Unit.HERTZ
    assert not any(name.endswith(("_c", "_w", "_mhz")) for name in catalog)  # no unit names


def _worker(request: dict[str, Any]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench_agent.run.worker"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"protocol": PROTOCOL, **request}))
    proc.stdin.close()
    return proc


@pytest.mark.e2e
def test_the_worker_runs_a_burnin_loop_until_sigterm(tmp_path: Path) -> None:
    proc = _worker({"burnin": True, "check": "cpu.gemm", "params": {"size": 64},
                    "timeout": 120, "interval": 0.3})
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read().splitlines()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    for line in (first, second):
        reading = line["reading"]
        assert (reading["metric"], reading["unit"]) == ("burnin.cpu_matmul", "FLOP/s")
        assert reading["value"] > 1e6 and reading["t"] > 1e9
    assert json.loads(rest[-1]) == {"ok": True, "burnin": "cpu_matmul"}
    assert proc.returncode == 0


@pytest.mark.parametrize(("request_", "status", "error", "words"), [
    ({"check": "cpu.gemm", "params": {"sise": 64}}, "ERROR", "BadRequest",
     "cpu_matmul params: Extra inputs are not permitted at sise"),
    ({"check": "inventory"}, "ERROR", "BadRequest", "check inventory has no burn-in variant"),
    ({"check": "network.tcp_bandwidth", "params": {}}, "SKIP", "NotApplicable",
     "no peer given"),
])
def test_the_worker_answers_a_burnin_it_cannot_run(request_: dict[str, Any], status: str,
                                                   error: str, words: str) -> None:
    proc = _worker({"burnin": True, "timeout": 30, "interval": 1, **request_})
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    assert proc.wait(timeout=60) == 0
    response = json.loads(stdout.splitlines()[-1])
    assert (response["ok"], response["status"], response["error"]) == (False, status, error)
    assert words in response["message"]


def _run_loop(loop: Any, params: Any, readings: int, ctx: CheckContext) -> list[float]:
    out: list[float] = []
    started = time.monotonic()
    loop(ctx, params, out.append, lambda: len(out) >= readings
         or time.monotonic() - started > 60)
    return out


def test_the_memory_loop_is_the_stream_triad(tmp_path: Path) -> None:
    from bench_agent.checks.cpu.burnin import StreamBurninParams, stream_loop

    ctx = CheckContext(interval=0.2)
    rates = _run_loop(stream_loop, StreamBurninParams(array_bytes="1 MiB", threads=2), 2, ctx)
    assert len(rates) == 2 and all(r > 1e8 for r in rates)  # bytes/s of the triad


def test_the_gemm_loop_refuses_a_wrong_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench_agent.checks.cpu import checks
    from bench_agent.checks.cpu.burnin import GemmBurninParams, gemm_loop

    def garbage(a: Any, b: Any, out: Any, repetitions: int, *rest: Any) -> list[float]:
        out.fill(1.0)  # a fast BLAS that computes nothing
        return [1e-3]

    monkeypatch.setattr(checks, "time_gemm", garbage)
    with pytest.raises(CheckError, match="GEMM fp64 result is wrong"):
        _run_loop(gemm_loop, GemmBurninParams(size=64), 1, CheckContext(interval=0.1))


@pytest.mark.e2e
def test_the_storage_loop_runs_fio_on_a_test_file_it_removes(tmp_path: Path) -> None:
    import shutil

    from bench_agent.checks.storage.burnin import FioBurninParams, fio_loop

    if shutil.which("fio") is None:
        pytest.skip("fio is not installed")
    ctx = CheckContext(output_dir=tmp_path, interval=1, options=RunOptions(target=tmp_path))
    params = FioBurninParams(size="16M", block_size="4k", iodepth=4)
    assert (params.size, params.block_size) == (16 << 20, 4096)  # fio's binary sizes
    iops = _run_loop(fio_loop, params, 2, ctx)
    assert len(iops) == 2 and all(v > 10 for v in iops)
    assert list(tmp_path.iterdir()) == []


def test_the_gpu_loop_is_not_applicable_without_cuda() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the loop would run")
    from bench_agent.checks.gpu.burnin import MatmulBurninParams, matmul_loop

    with pytest.raises(NotApplicable, match="no CUDA device"):
        _run_loop(matmul_loop, MatmulBurninParams(), 1, CheckContext())
