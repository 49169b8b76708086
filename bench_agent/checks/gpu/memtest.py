"""gpu.memtest: pattern writes and reads over most of every GPU's free memory at once.

The patterns are memtest86's and cuda_memtest's classics (memtest86 "Test
Algorithms", https://www.memtest86.com/tech_individual-test-descr.html;
ComputationalRadiationPhysics/cuda_memtest, README "Tests"):

- walking_ones / walking_zeros: every 32-bit word holds 1 << b (or its complement),
  for each bit b in turn: a stuck or coupled data line shows in one bit position;
- address: every 64-bit word holds its own word index (address in address): a
  wrong or aliased address line writes one word's value into another;
- moving_inversions: all words p; then, block by block upwards, read p and write ~p;
  then downwards, read ~p and write p (memtest86 tests 3-5), for p = 0 and 0x55555555;
- random: seeded random words, regenerated from the same seed to verify.

Writes and reads of a pass are apart (all blocks are written, then all read), so
a cell that loses its charge between the two shows. Each pattern runs while the
time budget lasts; what did not run is listed and counted (a WARN), never passed
as tested. A bad address is a word offset that read back wrong in any pattern; any
FAILs the GPU.

The one seam: ``use_corruption(hook)`` calls ``hook(pattern, block, index)`` after
each block is written and before it is read back, so a test flips a bit of real
memory (CPU torch) and sees it counted. It is None on a node.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import CheckContext, MetricSpec
from bench_agent.checks.byte_size import ByteSize
from bench_agent.checks.gpu.diag import DiagCheck, gpu_identities, gpu_label
from bench_agent.checks.gpu.kernels import MIB, Device, gpu_kernel
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit

Pattern = Literal["walking_ones", "walking_zeros", "address", "moving_inversions", "random"]
PATTERNS: tuple[Pattern, ...] = get_args(Pattern)
# Distinct bad word offsets kept per GPU: enough to see a pattern in them (one
# row, one bit), bounded so a dead GPU does not fill the report.
MAX_ADDRESSES = 4096

# (pattern, block just written as a tensor of words, block index) -> None
Corruption = Callable[[str, Any, int], None]
_corruption: Corruption | None = None


@contextlib.contextmanager
def use_corruption(hook: Corruption) -> Iterator[None]:
    """The seam: ``hook`` may change a block between its write and its read-back."""
    global _corruption
    previous, _corruption = _corruption, hook
    try:
        yield
    finally:
        _corruption = previous


class _Tester:
    """One GPU's buffer of words, tested block by block."""

    def __init__(self, torch: Any, buffer: Any, block_bytes: int, deadline: float) -> None:
        self.torch = torch
        self.buffer = buffer  # uint8, a multiple of 8 bytes
        self.block_bytes = block_bytes
        self.deadline = deadline
        self.bad: set[int] = set()  # byte offsets
        self.errors = 0
        self.bytes_moved = 0

    def blocks(self, element: int, reverse: bool = False) -> list[tuple[int, Any]]:
        """(index, view) over the buffer as words of ``element`` bytes."""
        words = self.buffer.view({4: self.torch.int32, 8: self.torch.int64}[element])
        per = self.block_bytes // element
        out = [(i, words[start:start + per])
               for i, start in enumerate(range(0, words.numel(), per))]
        return out[::-1] if reverse else out

    def written(self, pattern: str, index: int, block: Any) -> None:
        self.bytes_moved += block.numel() * block.element_size()
        if _corruption is not None:
            _corruption(pattern, block, index)

    def verify(self, index: int, block: Any, expected: Any) -> int:
        """Mismatching words of a block; their byte offsets join ``bad``."""
        self.bytes_moved += block.numel() * block.element_size()
        wrong = block != expected
        count = int(self.torch.count_nonzero(wrong).item())
        if count:
            self.errors += count
            element = block.element_size()
            base = index * self.block_bytes
            room = MAX_ADDRESSES - len(self.bad)
            if room > 0:
                offsets = self.torch.nonzero(wrong).flatten()[:room].tolist()
                self.bad.update(base + int(o) * element for o in offsets)
        return count

    def constant_pass(self, pattern: str, value: int) -> int:
        bad = 0
        for index, block in self.blocks(4):
            block.fill_(value)
            self.written(pattern, index, block)
        for index, block in self.blocks(4):
            bad += self.verify(index, block, value)
        return bad

    def walking(self, pattern: str, zeros: bool) -> tuple[int, int]:
        bad = passes = 0
        for bit in range(32):
            if time.monotonic() > self.deadline:
                break
            value = _int32(~(1 << bit) if zeros else 1 << bit)
            bad += self.constant_pass(pattern, value)
            passes += 1
        return bad, passes

    def address(self) -> tuple[int, int]:
        torch, bad = self.torch, 0
        starts = {}
        for index, block in self.blocks(8):
            start = index * (self.block_bytes // 8)
            starts[index] = start
            torch.arange(start, start + block.numel(), out=block)
            self.written("address", index, block)
        for index, block in self.blocks(8):
            expected = torch.arange(starts[index], starts[index] + block.numel(),
                                    dtype=torch.int64, device=block.device)
            bad += self.verify(index, block, expected)
        return bad, 1

    def moving_inversions(self) -> tuple[int, int]:
        bad = passes = 0
        for value in (0, 0x55555555):
            if time.monotonic() > self.deadline:
                break
            inverse = _int32(~value)
            for index, block in self.blocks(4):
                block.fill_(value)
                self.written("moving_inversions", index, block)
            for index, block in self.blocks(4):
                bad += self.verify(index, block, value)
                block.fill_(inverse)
                self.written("moving_inversions", index, block)
            for index, block in self.blocks(4, reverse=True):
                bad += self.verify(index, block, inverse)
                block.fill_(value)
                self.written("moving_inversions", index, block)
            passes += 1
        return bad, passes

    def random(self, seed: int) -> tuple[int, int]:
        torch, bad = self.torch, 0

        def generator(index: int) -> Any:
            return torch.Generator(device=self.buffer.device).manual_seed(seed * 1_000_003
                                                                          + index)

        for index, block in self.blocks(4):
            block.random_(-(1 << 31), 1 << 31, generator=generator(index))
            self.written("random", index, block)
        for index, block in self.blocks(4):
            expected = torch.empty_like(block).random_(-(1 << 31), 1 << 31,
                                                       generator=generator(index))
            bad += self.verify(index, block, expected)
        return bad, 1


def _int32(value: int) -> int:
    """A 32-bit pattern as the signed value an int32 tensor holds."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def run_patterns(torch: Any, buffer: Any, patterns: list[str], seconds: float,
                 block_bytes: int, seed: int, sync: Callable[[], None] = lambda: None
                 ) -> dict[str, Any]:
    """Every pattern in order over ``buffer`` (uint8) while ``seconds`` last; a
    pattern not started in time is in "not_run"."""
    tester = _Tester(torch, buffer, block_bytes, time.monotonic() + seconds)
    runs: dict[str, Any] = {}
    not_run: list[str] = []
    for pattern in patterns:
        if time.monotonic() > tester.deadline:
            not_run.append(pattern)
            continue
        moved, started = tester.bytes_moved, time.perf_counter()
        if pattern in ("walking_ones", "walking_zeros"):
            bad, passes = tester.walking(pattern, zeros=pattern == "walking_zeros")
        elif pattern == "address":
            bad, passes = tester.address()
        elif pattern == "moving_inversions":
            bad, passes = tester.moving_inversions()
        else:
            bad, passes = tester.random(seed)
        sync()
        runs[pattern] = {"errors": bad, "passes": passes,
                         "seconds": time.perf_counter() - started,
                         "bytes_moved": tester.bytes_moved - moved}
    return {"bytes_tested": int(buffer.numel()), "patterns": runs, "not_run": not_run,
            "errors": tester.errors, "bad_addresses": sorted(tester.bad),
            "addresses_capped": len(tester.bad) >= MAX_ADDRESSES}


@gpu_kernel
def memtest_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    """gpu.memtest on one device: a share of its free memory (task "bytes" on the CPU)."""
    torch = dev.torch
    block = int(task.get("block_bytes", 512 * MIB))
    if dev.free is not None:
        # Leave room for the verify temporaries (an int64 block and a bool block).
        size = int(dev.free * float(task.get("share", 0.9))) - 3 * block
    else:
        size = int(task.get("bytes", 64 * MIB))
    size -= size % block if size > block else size % 8
    if size <= 0:
        raise RuntimeError(f"no memory to test: {dev.free} bytes free")
    buffer = torch.empty(size, dtype=torch.uint8, device=dev.name)
    dev.barrier()
    sync = (lambda: torch.cuda.synchronize()) if dev.cuda else (lambda: None)
    return {"memtest": run_patterns(torch, buffer, list(task.get("patterns", PATTERNS)),
                                    float(task.get("seconds", 60)), block,
                                    int(task.get("seed", 1)), sync),
            "memtest_free_bytes": dev.free}


class MemtestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patterns: list[Pattern] = Field(default=list(PATTERNS), min_length=1)
    # Share of free memory under test: "most of it", leaving the CUDA context and the
    # allocator's own slack (cuda_memtest tests all it can allocate, ~95 %).
    share: float = Field(default=0.9, gt=0, le=0.97)
    # Patterns start while this lasts (each runs to its end once started).
    seconds: float = Field(default=60.0, gt=0)
    block_bytes: ByteSize = Field(default=512 * MIB, ge=1 << 12)
    seed: int = 1
    # CPU runs only (tests): the bytes tested where free memory is unknown.
    bytes: ByteSize = Field(default=64 * MIB, ge=1 << 10)


class MemtestCheck(DiagCheck):
    name: ClassVar[str] = "gpu.memtest"
    description: ClassVar[str] = ("GPU memory patterns (walking 1/0, address, moving "
                                  "inversions, random) on every GPU at once")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("gpu.memtest_bad_addresses", Unit.COUNT,
                   "distinct word addresses that read back wrong", higher_is_better=False,
                   per_device=True),
        MetricSpec("gpu.memtest_patterns_not_run", Unit.COUNT,
                   "patterns the time budget left out", higher_is_better=False,
                   per_device=True),
        MetricSpec("gpu.memtest_bytes_tested", Unit.BYTES, "GPU memory under test",
                   per_device=True),
        MetricSpec("gpu.memtest_bandwidth", Unit.BYTES_PER_SECOND,
                   "bytes written and read per second by the patterns", per_device=True),
    )
    params_model: ClassVar[type[BaseModel]] = MemtestParams
    kernel: ClassVar[str] = "bench_agent.checks.gpu.memtest:memtest_kernel"

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        if not isinstance(p := params, MemtestParams):
            raise TypeError(f"expected MemtestParams, got {type(params).__name__}")
        # The budget must end before the check's deadline: the last pattern started
        # runs to its end (one walking pass is 32 fills and reads of the buffer).
        seconds = min(p.seconds, ctx.timeout * 0.5)
        task = {"patterns": p.patterns, "share": p.share, "seconds": seconds,
                "block_bytes": p.block_bytes, "seed": p.seed, "bytes": p.bytes}
        indices, results = self.run_kernel(ctx, task, "gpu memtest")
        idents, note = gpu_identities(indices)
        out: list[Measurement] = []
        for index, result in zip(indices, results, strict=True):
            found = result["memtest"]
            ident = idents.get(index, {})
            dev = f"gpu{index}"
            common = {**ident, "identity_note": note}
            bad = found["bad_addresses"]
            out.append(self.m(
                "gpu.memtest_bad_addresses", len(bad), device=dev, **common,
                gpu=gpu_label(index, ident), errors=found["errors"],
                first_bad_offsets=[hex(b) for b in bad[:32]],
                capped_at=MAX_ADDRESSES if found["addresses_capped"] else None,
                errors_by_pattern={k: v["errors"] for k, v in found["patterns"].items()}))
            out.append(self.m("gpu.memtest_patterns_not_run", len(found["not_run"]),
                              device=dev, not_run=found["not_run"], budget_seconds=seconds,
                              ran=list(found["patterns"])))
            out.append(self.m("gpu.memtest_bytes_tested", found["bytes_tested"], Unit.BYTES,
                              device=dev, free_bytes=result.get("memtest_free_bytes"),
                              share=p.share))
            moved = sum(r["bytes_moved"] for r in found["patterns"].values())
            spent = sum(r["seconds"] for r in found["patterns"].values())
            if moved and spent > 0:
                out.append(self.m("gpu.memtest_bandwidth", moved / spent,
                                  Unit.BYTES_PER_SECOND, device=dev,
                                  counted="every word written and every word read once",
                                  by_pattern={k: v["bytes_moved"] / v["seconds"]
                                              for k, v in found["patterns"].items()
                                              if v["seconds"] > 0}))
        return out
