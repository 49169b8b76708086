"""NCCL collectives with torch.distributed, measured the way nccl-tests measures them.

The agent launches this module itself with torchrun (``python -m
torch.distributed.run``), one rank per local GPU (the nccl backend), or on the CPU
with the gloo backend (tests). Several nodes meet through torchrun's c10d
rendezvous: every node runs `bench-agent run nccl --nnodes N --rdzv-endpoint
HOST:PORT [--rdzv-id ID]` at about the same time (the Ansible nccl-multinode
playbook does), the endpoint being one of the nodes (torchrun docs, "Elastic
Launch": --rdzv-backend=c10d --rdzv-endpoint=host:port).

Per size, like nccl-tests (src/common.cu): out-of-place buffers, ``warmup``
untimed operations, then ``iterations`` timed back to back and divided; the time
is gathered from every rank (nccl-tests' default ``-a 1`` averages it; we keep the
mean and judge the max, since a collective ends when its slowest rank does).
algbw = bytes / seconds, busbw = algbw x bus factor (nccl-tests doc/PERFORMANCE.md: 2(n-1)/n for
all_reduce, (n-1)/n for all_gather and reduce_scatter), where bytes is the size
of the full buffer (nccl-tests' AllGatherGetBw: count x typesize x nranks).

Correctness, as nccl-tests' #wrong: rank r fills element i with ((i + r) mod 4) + 1,
small integers whose sums are exact in fp32 and, up to 64 ranks, in bf16/fp16
(integers up to 256 are exact in bf16), so the expected result is known exactly
and every element that differs is counted, summed over ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench_agent.tools.nccl_tests import bus_factor

MIB = 1 << 20
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter")
PATTERN = 4  # values 1..4 (see the module docstring)
# Elements filled or compared per step. The pattern was once computed through int64
# and float64 index temporaries over the whole buffer, about 10x its size (an OOM
# at 8 GiB on a card with 48 GiB free); it is now a repeated 4-element tile, and
# per chunk of 16 Mi elements the compare adds at most a chunk in the buffer's type.
CHECK_CHUNK = 1 << 24


def size_sweep(min_bytes: int, max_bytes: int, factor: int = 2) -> list[int]:
    """min, min*factor, ... up to max (inclusive), as nccl-tests -b/-e/-f."""
    if min_bytes <= 0 or max_bytes < min_bytes or factor < 2:
        raise ValueError("need 0 < min_bytes <= max_bytes and factor >= 2")
    sizes = []
    size = min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= factor
    return sizes


def cap_sizes(sizes: list[int], budget_bytes: int, buffers: float) -> tuple[list[int], list[int]]:
    """(sizes that fit, sizes dropped) when each needs ``buffers`` x its bytes."""
    fit = [s for s in sizes if s * buffers <= budget_bytes]
    return fit, [s for s in sizes if s not in fit]


def algbw(size_bytes: int, seconds: float) -> float:
    return size_bytes / seconds


def busbw(collective: str, size_bytes: int, seconds: float, ranks: int) -> float:
    return algbw(size_bytes, seconds) * bus_factor(collective, ranks)


def _tile(torch: Any, values: list[int], count: int, dtype: Any, device: Any) -> Any:
    """``values`` repeated to ``count`` elements, in ``dtype``: the pattern is
    periodic (period PATTERN), so no per-element int64 index is ever built."""
    tile = torch.tensor([float(v) for v in values], dtype=torch.float64).to(dtype).to(device)
    return tile.repeat(-(-count // len(values)))[:count]


def _pattern(torch: Any, start: int, count: int, rank: int, dtype: Any, device: Any) -> Any:
    """Elements start .. start+count of rank ``rank``'s input: ((i + rank) mod 4) + 1."""
    return _tile(torch, [(start + rank + j) % PATTERN + 1 for j in range(PATTERN)], count,
                 dtype, device)


def pattern_buffer(torch: Any, count: int, rank: int, dtype: Any, device: Any) -> Any:
    """Rank ``rank``'s input of ``count`` elements, filled CHECK_CHUNK at a time so
    what is built beside the buffer stays bounded whatever its size."""
    out = torch.empty(count, dtype=dtype, device=device)
    for start in range(0, count, CHECK_CHUNK):
        n = min(CHECK_CHUNK, count - start)
        out[start:start + n] = _pattern(torch, start, n, rank, dtype, device)
    return out


def _expected_sum(torch: Any, start: int, count: int, ranks: int, dtype: Any,
                  device: Any) -> Any:
    """The exact sum over ranks of elements start .. start+count (an integer, then
    rounded to ``dtype`` once, as the reduction's exact result would be)."""
    sums = [sum((start + j + r) % PATTERN + 1 for r in range(ranks)) for j in range(PATTERN)]
    return _tile(torch, sums, count, dtype, device)


def _count_wrong(torch: Any, collective: str, out: Any, rank: int, ranks: int,
                 chunk_elems: int) -> int:
    """Elements of ``out`` that differ from the exact expected result, compared
    CHECK_CHUNK elements at a time."""
    wrong = 0
    if collective == "all_gather":
        # Chunk j of the output is rank j's input.
        for j in range(ranks):
            for start in range(0, chunk_elems, CHECK_CHUNK):
                n = min(CHECK_CHUNK, chunk_elems - start)
                piece = out[j * chunk_elems + start:j * chunk_elems + start + n]
                expected = _pattern(torch, start, n, j, out.dtype, out.device)
                wrong += int((piece != expected).sum().item())
        return wrong
    total = out.numel()
    # reduce_scatter: this rank's chunk of the summed full buffer.
    offset = 0 if collective == "all_reduce" else rank * chunk_elems
    for start in range(0, total, CHECK_CHUNK):
        n = min(CHECK_CHUNK, total - start)
        expected = _expected_sum(torch, offset + start, n, ranks, out.dtype, out.device)
        wrong += int((out[start:start + n] != expected).sum().item())
    return wrong


def run_collective(torch: Any, dist: Any, collective: str, sizes: list[int], dtype_name: str,
                   warmup: int, iterations: int, device: Any,
                   corrupt_rank: int | None = None) -> list[dict[str, Any]]:
    """Every rank calls this inside an initialized process group; all get the rows."""
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16,
             "float16": torch.float16}[dtype_name]
    element = torch.tensor([], dtype=dtype).element_size()
    rank, ranks = dist.get_rank(), dist.get_world_size()
    cuda = device.type == "cuda"
    # torch 2.13 renamed the tensor forms (*_into_tensor / *_tensor -> *_single).
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    rows: list[dict[str, Any]] = []
    for size in sizes:
        chunk = max(1, size // element // ranks)  # elements per rank's chunk
        full = chunk * ranks
        if collective == "all_reduce":
            send = pattern_buffer(torch, full, rank, dtype, device)
            recv = torch.empty_like(send)

            # torch.distributed.all_reduce works in place only (torch docs). The
            # send buffer stays apart and refreshes recv before the checked run,
            # so the check is out-of-place; the timed iterations reduce recv in
            # place, which NCCL runs with the same algorithms (nccl-tests' in-place
            # and out-of-place columns agree within noise, e.g. the A100 sample's
            # 233.00 vs 233.34 GB/s). Values grow in the timed loop; speed does not
            # depend on them.
            def timed(recv: Any = recv, send: Any = send) -> None:
                dist.all_reduce(recv, op=dist.ReduceOp.SUM)
        elif collective == "all_gather":
            send = pattern_buffer(torch, chunk, rank, dtype, device)
            recv = torch.empty(full, dtype=dtype, device=device)

            def timed(recv: Any = recv, send: Any = send) -> None:
                gather(recv, send)
        else:
            send = pattern_buffer(torch, full, rank, dtype, device)
            recv = torch.empty(chunk, dtype=dtype, device=device)

            def timed(recv: Any = recv, send: Any = send) -> None:
                scatter(recv, send, op=dist.ReduceOp.SUM)

        if collective == "all_reduce":
            recv.copy_(send)
        for _ in range(warmup):
            timed()
        if cuda:
            torch.cuda.synchronize()
        dist.barrier()
        start = time.perf_counter()
        for _ in range(iterations):
            timed()
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / iterations
        # The checked run: one more operation from pristine inputs, as nccl-tests
        # checks after its timed loop.
        if corrupt_rank is not None and rank == corrupt_rank:
            send[:10] += 1000  # the self-test of the checker: 10 elements made wrong
        if collective == "all_reduce":
            recv.copy_(send)
        timed()
        wrong = _count_wrong(torch, collective, recv, rank, ranks, chunk)
        if corrupt_rank is not None and rank == corrupt_rank:
            send[:10] -= 1000
        stats = torch.tensor([seconds, seconds, float(wrong)], dtype=torch.float64,
                             device=device if cuda else "cpu")
        gathered = [torch.zeros_like(stats) for _ in range(ranks)]
        dist.all_gather(gathered, stats)
        times = [float(g[0].item()) for g in gathered]
        total_wrong = int(sum(float(g[2].item()) for g in gathered))
        bytes_ = full * element
        slowest = max(times)
        rows.append({
            "size_bytes": bytes_, "count": full if collective == "all_reduce" else chunk,
            "type": dtype_name, "time_s_max": slowest, "time_s_mean": sum(times) / ranks,
            "algbw": algbw(bytes_, slowest), "busbw": busbw(collective, bytes_, slowest, ranks),
            "wrong": total_wrong,
        })
        del send, recv
    return rows


def _memory_budget(torch: Any, dist: Any, device: Any) -> int:
    """Bytes every rank can spare: the minimum over ranks of half the free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // dist.get_world_size()
    value = torch.tensor([float(free) / 2], dtype=torch.float64,
                         device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return int(value.item())


def init_kwargs(backend: str, device: Any, timeout_s: float | None) -> dict[str, Any]:
    """init_process_group's arguments: a collective that waits on a dead peer gives
    up within the launch's own time limit (torch's default is 10 minutes for NCCL,
    30 for gloo: torch.distributed docs, init_process_group ``timeout``), and with
    nccl the rank's GPU is bound at init (``device_id``), so NCCL makes its
    communicator eagerly on that GPU instead of guessing it at the first call."""
    from datetime import timedelta

    kwargs: dict[str, Any] = {"backend": backend}
    if timeout_s:
        kwargs["timeout"] = timedelta(seconds=float(timeout_s))
    if backend == "nccl":
        kwargs["device_id"] = device
    return kwargs


def rank_main(request: dict[str, Any]) -> dict[str, Any] | None:
    """The body of each torchrun rank; local rank 0 returns the node's result."""
    import torch
    import torch.distributed as dist

    backend = request.get("backend") or ("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(**init_kwargs(backend, device, request.get("timeout_s")))
    try:
        sizes = size_sweep(int(request["min_bytes"]), int(request["max_bytes"]),
                           int(request.get("factor", 2)))
        # all_reduce: send + recv; the others: full + chunk; the check adds a chunk.
        sizes, dropped = cap_sizes(sizes, _memory_budget(torch, dist, device), 3)
        results: dict[str, Any] = {}
        for collective in request["collectives"]:
            results[collective] = run_collective(
                torch, dist, collective, sizes, request.get("dtype", "float32"),
                int(request.get("warmup", 5)), int(request.get("iterations", 20)), device,
                request.get("corrupt_rank"))
        out = {"backend": backend, "world_size": dist.get_world_size(),
               "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
               "nnodes": dist.get_world_size() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
               "torch": torch.__version__, "dropped_sizes": dropped, "results": results}
        if backend == "nccl":
            version = torch.cuda.nccl.version()  # type: ignore[no-untyped-call]
            out["nccl_version"] = ".".join(str(v) for v in version)
            out["gpu_name"] = torch.cuda.get_device_name(device)
        dist.barrier()
        return out if local_rank == 0 else None
    finally:
        dist.destroy_process_group()


def torchrun_command(request_file: Path, nproc: int, nnodes: int = 1,
                     rdzv_endpoint: str | None = None, rdzv_id: str = "bench-agent-nccl",
                     python: str = sys.executable) -> list[str]:
    """The torchrun command line: standalone on one node, c10d rendezvous on several."""
    cmd = [python, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes > 1:
        if not rdzv_endpoint:
            raise ValueError("several nodes need a rendezvous endpoint (--rdzv-endpoint)")
        cmd += [f"--nnodes={nnodes}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint={rdzv_endpoint}", f"--rdzv-id={rdzv_id}"]
    else:
        cmd += ["--standalone", "--nnodes=1"]
    return [*cmd, "-m", "bench_agent.checks.nccl.collective", "--request", str(request_file)]


def launch(request: dict[str, Any], nproc: int, timeout: float, nnodes: int = 1,
           rdzv_endpoint: str | None = None, rdzv_id: str = "bench-agent-nccl",
           workdir: Path | None = None) -> tuple[dict[str, Any] | None, str]:
    """Run torchrun; (the result of local rank 0 or None, the output's tail).

    Runs through the subprocess seam: at the timeout, or if this process is
    interrupted, torchrun and every rank it started are stopped (TERM, so
    torchrun can pass it on to the ranks, then KILL), and a rank that escaped
    the group cannot hang the read of the output. torchrun starts each rank in a
    session of its own, out of torchrun's process group: the seam finds them by
    the token every descendant inherits in its environment (core/process.py), so
    no orphaned rank keeps a GPU.
    """
    import tempfile

    from bench_agent.core.process import STDOUT, TOOL_GRACE_S, run_child

    with tempfile.TemporaryDirectory(prefix="bench-agent-nccl-", dir=workdir) as tmp:
        request_file = Path(tmp) / "request.json"
        result_file = Path(tmp) / "result.json"
        # The ranks' collectives time out a little before torchrun is stopped, so a
        # rank waiting on a dead peer says so instead of being killed mid-wait.
        request_file.write_text(json.dumps({**request, "result_file": str(result_file),
                                            "timeout_s": max(1.0, timeout * 0.9)}))
        cmd = torchrun_command(request_file, nproc, nnodes, rdzv_endpoint, rdzv_id)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        try:
            done = run_child(cmd, timeout=timeout, stderr=STDOUT, env=env, grace=TOOL_GRACE_S)
        except OSError as exc:
            return None, f"cannot start torchrun: {exc}"
        output = done.stdout
        if done.timed_out:
            return None, f"timed out after {timeout:g} s: {output[-1500:]}"
        if done.returncode != 0 or not result_file.is_file():
            return None, f"exit code {done.returncode}: {output[-1500:]}"
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result, output[-1500:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one torchrun rank (internal)")
    parser.add_argument("--request", type=Path, required=True)
    args = parser.parse_args(argv)
    request = json.loads(args.request.read_text())
    result = rank_main(request)
    if result is not None:
        path = Path(request["result_file"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
