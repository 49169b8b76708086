"""Burn-in loads: each runs in its own process and prints its throughput as it goes.

A load is started as ``python -m bench_agent.burnin.loads NAME JSON-PARAMS`` in its
own process group, runs until it is sent SIGTERM (or its duration ends), and
prints one JSON line per measured interval on stdout:

    {"load": "cpu_matmul", "t": <unix time>, "value": 1.2e11, "unit": "FLOP/s"}

The burn-in supervisor (burnin.py) reads these lines; a load that exits on its
own before the end, or prints garbage, is a crashed load (FAIL with its stderr).
Keeping each load in a process of its own means a GPU hang or a BLAS crash
cannot take the sampler or the time series with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_agent.core.errors import NotApplicableHere
from bench_agent.core.units import Unit

_running = True
# Exit code of a load that cannot run on this node (no GPU, no fio): the
# supervisor reports it as SKIP with the load's words, not as a crash.
NOT_APPLICABLE = 4


def _stop(signum: int, frame: object) -> None:
    global _running
    _running = False


def _emit(load: str, value: float, unit: Unit) -> None:
    print(json.dumps({"load": load, "t": time.time(), "value": value, "unit": unit.value}),
          flush=True)


def _until(params: dict[str, Any]) -> float:
    return time.monotonic() + float(params.get("duration", 1e12))


def cpu_matmul(params: dict[str, Any]) -> None:
    """fp64 GEMM on all cores (numpy's BLAS threads), FLOP/s per interval."""
    import numpy as np

    size = int(params.get("size", 1024))
    interval = float(params.get("interval", 10))
    rng = np.random.default_rng(7)
    a = rng.uniform(0.5, 1.5, (size, size))
    b = rng.uniform(0.5, 1.5, (size, size))
    out = np.empty_like(a)
    flop = 2.0 * size**3  # FLOP of one n x n x n product (2·M·N·K)
    end = _until(params)
    while _running and time.monotonic() < end:
        started = time.perf_counter()
        products = 0
        while _running and time.perf_counter() - started < interval:
            np.matmul(a, b, out=out)
            products += 1
        elapsed = time.perf_counter() - started
        if products and _running:
            _emit("cpu_matmul", products * flop / elapsed, Unit.FLOPS)


def memory_bandwidth(params: dict[str, Any]) -> None:
    """STREAM-like triad on one large array set, bytes/s per interval (24 B/element)."""
    import numpy as np

    elements = int(params.get("array_bytes", 256 * 2**20)) // 8
    interval = float(params.get("interval", 10))
    a = np.ones(elements)
    b = np.full(elements, 2.0)
    c = np.full(elements, 0.5)
    end = _until(params)
    while _running and time.monotonic() < end:
        started = time.perf_counter()
        passes = 0
        while _running and time.perf_counter() - started < interval:
            np.multiply(c, 3.0, out=a)
            np.add(a, b, out=a)
            passes += 1
        elapsed = time.perf_counter() - started
        if passes and _running:
            # STREAM counts triad as 3 words per element (McCalpin's STREAM FAQ).
            _emit("memory_bandwidth", passes * 24.0 * elements / elapsed,
                  Unit.BYTES_PER_SECOND)


def _total_ios(doc: dict[str, Any]) -> float:
    total = 0.0
    for job in doc.get("jobs", []):
        for direction in ("read", "write"):
            total += float(job.get(direction, {}).get("total_ios", 0) or 0)
    return total


def storage_fio(params: dict[str, Any]) -> None:
    """fio mixed random read/write on a test file, IOPS per status interval.

    fio prints a cumulative JSON report every --status-interval seconds (fio
    HOWTO, "status-interval"); the IOPS of an interval is the difference of the
    total I/O counts of two reports over the time between them.
    """
    from bench_agent.core.errors import ParseError
    from bench_agent.core.strict_json import DocumentStream
    from bench_agent.tools.fio import duplicate_policy

    target = Path(params.get("target") or tempfile.gettempdir())
    if not target.is_dir():
        raise SystemExit(f"storage load: target {target} is not a directory")
    interval = max(int(float(params.get("interval", 10))), 1)
    test_file = target / f".bench-agent-burnin-{os.getpid()}.fio"
    command = [
        "fio", "--name=burnin", f"--filename={test_file}", f"--size={params.get('size', '256M')}",
        "--rw=randrw", f"--rwmixread={int(params.get('rwmixread', 70))}",
        f"--bs={params.get('block_size', '4k')}", f"--iodepth={int(params.get('iodepth', 16))}",
        "--ioengine=libaio", "--direct=1", "--time_based",
        f"--runtime={int(float(params.get('duration', 86400 * 30)))}",
        f"--status-interval={interval}", "--output-format=json",
    ]
    # fio's stderr goes to a file, not a pipe nobody reads until the end: a chatty
    # fio would fill the pipe, block, and look like a throughput drop.
    errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by the `with` after the run
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    except FileNotFoundError:
        raise NotApplicableHere("storage load: fio is not installed") from None
    assert proc.stdout is not None
    # fio's reports are split and read by the one strict reader (duplicate keys,
    # NaN, deep nesting, text between reports are errors), each character once.
    stream = DocumentStream("fio", duplicates=duplicate_policy)
    # Counted from fio's start: the first interval also holds the file layout,
    # which can only lower (never inflate) the first-minutes level.
    previous: tuple[float, float] | None = (time.time(), 0.0)
    try:
        while _running:
            line = proc.stdout.readline()
            if not line:
                break
            try:
                docs = [d for d in stream.feed(line) if isinstance(d.get("jobs"), list)]
            except ParseError as exc:
                raise SystemExit(f"storage load: {exc}") from None
            for doc in docs:
                now, ios = time.time(), _total_ios(doc)
                if previous is not None and now > previous[0] and ios >= previous[1]:
                    _emit("storage_fio", (ios - previous[1]) / (now - previous[0]), Unit.IOPS)
                previous = (now, ios)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        test_file.unlink(missing_ok=True)
    with errors:
        errors.seek(0)
        last_words = errors.read().strip()[-500:]
    if _running and proc.returncode not in (0, None, -signal.SIGTERM):
        raise SystemExit(f"storage load: fio exited {proc.returncode}: {last_words}")


def gpu_matmul(params: dict[str, Any]) -> None:
    """bf16 GEMM on every GPU through torch, TFLOP/s of the slowest GPU per interval."""
    try:
        import torch
    except ImportError:
        raise NotApplicableHere("gpu load: torch is not installed") from None
    if not torch.cuda.is_available():
        raise NotApplicableHere("gpu load: no CUDA device (torch.cuda.is_available() is False)")
    size = int(params.get("size", 8192))
    interval = float(params.get("interval", 10))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[params.get("dtype", "bf16")]
    devices = list(range(torch.cuda.device_count()))
    mats = [(torch.randn(size, size, device=f"cuda:{d}", dtype=dtype),
             torch.randn(size, size, device=f"cuda:{d}", dtype=dtype)) for d in devices]
    flop = 2.0 * size**3
    end = _until(params)
    while _running and time.monotonic() < end:
        counts = [0 for _ in devices]
        started = time.perf_counter()
        while _running and time.perf_counter() - started < interval:
            for index, (a, b) in enumerate(mats):
                with torch.cuda.device(index):
                    torch.matmul(a, b)
                counts[index] += 1
        for index in devices:
            torch.cuda.synchronize(index)
        elapsed = time.perf_counter() - started
        if _running:
            _emit("gpu_matmul", min(counts) * flop / elapsed, Unit.FLOPS)


def network_iperf3(params: dict[str, Any]) -> None:
    """TCP to a `bench-agent peer` (its first iperf3 server), bits/s per interval.

    One iperf3 -J run per interval, back to back: iperf3 3.12 prints JSON only at
    the end of a run, and its text interval lines mix 1000- and 1024-based units;
    a run's end.sum_received is exact (parsed by tools/iperf3.py).
    """
    from bench_agent.core.errors import BenchAgentError
    from bench_agent.tools.iperf3 import client_command, parse_iperf3_result

    peer = params.get("peer")
    if not peer:
        raise NotApplicableHere("network load: no peer (bench-agent burnin --peer ADDRESS)")
    interval = max(int(float(params.get("interval", 10))), 1)
    command = client_command(str(peer), int(params.get("port", 5201)),
                             int(params.get("streams", 4)), interval, 0)
    end = _until(params)
    while _running and time.monotonic() < end:
        try:
            proc = subprocess.run(command, capture_output=True, text=True,
                                  timeout=interval + 30, stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise NotApplicableHere("network load: iperf3 is not installed") from None
        except subprocess.TimeoutExpired:
            raise SystemExit(f"network load: iperf3 to {peer} hung past {interval + 30} s"
                             ) from None
        if not _running:
            break
        try:
            result = parse_iperf3_result(proc.stdout)
        except BenchAgentError as exc:
            raise SystemExit(f"network load: {exc}") from None
        _emit("network_iperf3", result.received_bps, Unit.BITS_PER_SECOND)


LOADS: dict[str, Callable[[dict[str, Any]], None]] = {
    "network_iperf3": network_iperf3,
    "cpu_matmul": cpu_matmul,
    "memory_bandwidth": memory_bandwidth,
    "storage_fio": storage_fio,
    "gpu_matmul": gpu_matmul,
}


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this load when the supervisor dies, even by SIGKILL
    (prctl(2) PR_SET_PDEATHSIG), so a killed agent leaves no load running."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        return


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        return 1
    name, raw = argv[0], argv[1] if len(argv) > 1 else "{}"
    if name not in LOADS:
        print(f"unknown load {name!r}; known: {', '.join(LOADS)}", file=sys.stderr)
        return 3
    try:
        LOADS[name](json.loads(raw))
    except NotApplicableHere as exc:
        print(exc, file=sys.stderr)
        return NOT_APPLICABLE
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
