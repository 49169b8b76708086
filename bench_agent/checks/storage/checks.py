"""Storage checks with fio: 4 KiB random read/write IOPS, 1 MiB sequential bytes/s,
and completion-latency percentiles (p50, p99, p99.9) of each.

Targets (command-line options in ``ctx.options``, checks.base.RunOptions):
- a directory (``--target DIR``; default: the output folder): a test file
  ``.bench-agent-fio-*`` is made inside it, laid out by fio before timing, and
  removed afterwards, also on SIGTERM (the runner's timeout) and Ctrl-C;
- raw devices (``--device``, repeatable; ``--all-nvme``): reads run under fio's
  ``--readonly``; writes need ``--destructive`` and pass storage_safety's checks.
All targets run at once, one fio reporting group each (``new_group``), so a set of
drives is measured together as the workload would use it.

Metrics and the ``device`` field: ``storage.<family>_*`` is the whole set of
targets: the target itself when there is one (device = its path), else the sum
over targets (device = "aggregate"; IOPS and bytes/s added, latency percentiles
from the merged JSON+ histograms). With several targets, each one also gets
``storage.<family>_{iops|bandwidth}_per_device`` and ``..._latency_p99_per_device``
(device = its path). Profiles judge the aggregate: the guide's 10 GB/s line is
usually met by a set of drives.

Test file size (``size``, default 16 GiB): direct=1 (O_DIRECT) keeps the page
cache out whatever the RAM, so the file is sized against the caches that remain:
a drive's DRAM and a RAID controller's or hypervisor's write-back cache, usually
1-8 GiB; 16 GiB is at least twice those. It must fit the free space with a margin
(1 %, at least 64 MiB), checked before fio starts. The quick suite uses a small
file and says so in its params.
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bench_agent.checks.base import BurninVariant, Check, CheckContext, MetricSpec
from bench_agent.checks.byte_size import ByteSize
from bench_agent.checks.storage.burnin import FioBurninParams
from bench_agent.checks.storage.safety import inspect_device, write_refusals
from bench_agent.core.errors import (
    CheckTimeout,
    NotApplicable,
    ParseError,
    StorageRefused,
    ToolFailed,
    UnitError,
)
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit, parse_duration
from bench_agent.inventory.devices import nvme_devices
from bench_agent.tools import fio as fio_tool
from bench_agent.tools import fio_run

GIB = 1 << 30
MIB = 1 << 20
TEST_FILE_PREFIX = ".bench-agent-fio-"
# Left free besides the test file, so the test never fills a filesystem others use.
FREE_MARGIN_MIN = 64 * MIB
FREE_MARGIN_FRACTION = 0.01
# Seconds kept back from the check's time limit to answer the runner.
RESPONSE_MARGIN_S = 3.0


class StorageParams(BaseModel):
    """What the suite may set. Block size and pattern are fixed by the check (the
    metric's name says "4k"/"1m"); direct=1 is not a parameter."""

    model_config = ConfigDict(extra="forbid")

    runtime: float = Field(default=30.0, gt=0)  # seconds measured, after ramp_time
    ramp_time: float = Field(default=5.0, ge=0)  # seconds run before measuring
    # 64 x 4 jobs = 256 I/Os in flight: beyond what one NVMe drive needs to reach
    # its rated 4 KiB random-read IOPS (vendor specs state QD 32 x 4 threads or more).
    iodepth: int = Field(default=64, ge=1, le=4096)
    numjobs: int = Field(default=4, ge=1, le=256)
    size: ByteSize = Field(default=16 * GIB, ge=MIB)  # test file in a directory target
    ioengine: Literal["auto", "io_uring", "libaio", "psync"] = "auto"
    # A sequential fill of the target before a write test (off by default: it
    # doubles the write volume; a fresh drive writes faster than a used one).
    precondition: bool = False

    @field_validator("runtime", "ramp_time", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value in (0, "0", "0s"):
            return 0.0
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                return parse_duration(value)
            except UnitError as exc:
                raise ValueError(str(exc)) from exc
        return value


class SequentialParams(StorageParams):
    # 1 MiB x 16 x 4 jobs = 64 MiB in flight: enough for an NVMe drive's
    # sequential rate; deeper queues add latency, not bytes/s.
    iodepth: int = Field(default=16, ge=1, le=4096)


@dataclass(frozen=True, slots=True)
class Target:
    label: str  # what reports show: the device path, or the directory
    filename: str  # what fio opens
    size: int  # bytes fio may use
    kind: Literal["file", "device"]


# --- targets ----------------------------------------------------------------------------


def select_targets(ctx: CheckContext, writes: bool) -> tuple[Path | None, list[str]]:
    """The directory (or None) and devices this check measures, from the options."""
    options = ctx.options
    devices = list(options.devices)
    if options.all_nvme:
        found = nvme_devices(ctx.root)
        if not found and not devices and options.target is None:
            raise NotApplicable("--all-nvme: the inventory lists no NVMe namespace")
        devices += [d for d in found if d not in devices]
    directory: Path | None = None
    if options.target is not None:
        directory = options.target
        if not directory.is_dir():
            what = "does not exist" if not directory.exists() else "is not a directory"
            raise StorageRefused(f"--target {directory} {what} (nothing was created)")
    elif not devices:
        directory = ctx.output_dir
        directory.mkdir(parents=True, exist_ok=True)  # the report goes there anyway
    if writes and devices and not options.destructive:
        if directory is None:
            raise NotApplicable("write tests on raw devices need --destructive "
                                f"({', '.join(devices)} were not written)")
        devices = []  # measure the directory only
    return directory, devices


def check_free_space(directory: Path, size: int) -> None:
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    margin = max(FREE_MARGIN_MIN, int(size * FREE_MARGIN_FRACTION))
    if size + margin > free:
        raise StorageRefused(
            f"not enough free space in {directory}: the test file needs "
            f"{size / GIB:.2f} GiB plus {margin / MIB:.0f} MiB kept free, "
            f"{free / GIB:.2f} GiB is free; lower the suite's size or choose another --target")


def device_targets(devices: list[str], root: Path, writes: bool) -> list[Target]:
    targets = []
    refused = []
    for path in devices:
        facts = inspect_device(path, root, read_signature=writes)
        if writes:
            reasons = write_refusals(facts)
            if reasons:
                refused.append(f"{path}: " + "; ".join(reasons))
        targets.append(Target(label=path, filename=facts.real_path, size=facts.size_bytes,
                              kind="device"))
    if refused:
        raise StorageRefused("destructive writes refused (nothing was written): "
                             + " | ".join(refused))
    return targets


def sweep_stale_test_files(directory: Path) -> list[Path]:
    """Remove the test files of earlier runs that were SIGKILLed (no `finally` ran).

    A file's name carries the pid of the check that made it; only files whose
    process is gone are removed, so a run going on beside this one keeps its file.
    """
    removed = []
    for path in directory.glob(f"{TEST_FILE_PREFIX}*"):
        pid_text = path.name.removeprefix(TEST_FILE_PREFIX).split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        with suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


@contextmanager
def test_file(directory: Path, size: int) -> Iterator[Target]:
    """A fresh test file in ``directory``, removed on the way out whatever happens."""
    sweep_stale_test_files(directory)
    check_free_space(directory, size)
    try:
        fd, name = tempfile.mkstemp(prefix=f"{TEST_FILE_PREFIX}{os.getpid()}-", dir=directory)
    except OSError as exc:
        raise StorageRefused(f"cannot create a test file in {directory}: {exc.strerror}") from exc
    os.close(fd)
    try:
        yield Target(label=str(directory), filename=name, size=size, kind="file")
    finally:
        with suppress(FileNotFoundError):
            os.unlink(name)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into an exception, so ``finally`` blocks (test file
    removal) run: the runner SIGTERMs the check's process group on timeout and
    SIGKILLs it 5 s later; Python's default SIGTERM action would skip them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise CheckTimeout(f"stopped by {signal.Signals(signum).name} "
                           "(time limit or interrupt); the test file was removed")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- fio job files --------------------------------------------------------------------


def _escape(filename: str) -> str:
    # HOWTO, filename: a colon separates file names; "escape that with a \".
    return filename.replace("\\", "\\\\").replace(":", "\\:")


def layout_job(target: Target) -> str:
    """fio lays out (writes) the file before a read can use it; ``create_only``
    does only that, outside the timed run (HOWTO, create_only)."""
    return (f"[layout]\nfilename={_escape(target.filename)}\nsize={target.size}\n"
            "rw=read\nbs=1M\ncreate_only=1\n")


def probe_job(target: Target, engine: str) -> str:
    return (f"[probe]\nfilename={_escape(target.filename)}\nsize={min(target.size, MIB)}\n"
            f"io_size=4k\nrw=read\nbs=4k\ndirect=1\nioengine={engine}\n")


def fill_job(targets: list[Target], engine: str) -> str:
    lines = ["[global]", f"ioengine={engine}", "direct=1", "rw=write", "bs=1M", "iodepth=32"]
    for i, t in enumerate(targets):
        lines += [f"[fill{i}]", f"filename={_escape(t.filename)}", f"size={t.size}"]
    return "\n".join(lines) + "\n"


def measure_job(targets: list[Target], rw: str, block: int, params: StorageParams,
                engine: str, rwmixread: int | None = None) -> str:
    """One reporting group per target (HOWTO, new_group / group_reporting);
    ``rwmixread`` is the read share of a mixed job (rw=randrw, the burn-in's)."""
    lines = [
        "[global]",
        f"ioengine={engine}",
        "direct=1",  # O_DIRECT: the page cache never answers (HOWTO, direct)
        f"rw={rw}",
        *([f"rwmixread={rwmixread}"] if rwmixread is not None else []),
        f"bs={block}",
        f"iodepth={params.iodepth}",
        f"numjobs={params.numjobs}",
        "time_based=1",
        f"runtime={math.ceil(params.runtime)}",
        f"ramp_time={math.ceil(params.ramp_time)}",
        "group_reporting=1",
        "randrepeat=0",  # a new random sequence each run: no drive-side replay
    ]
    if rw.startswith("rand"):
        # HOWTO, norandommap: no block map, offsets drawn freely; with time_based
        # runs the map would only cost CPU.
        lines.append("norandommap=1")
    for i, t in enumerate(targets):
        lines += [f"[t{i}]", f"filename={_escape(t.filename)}"]
        if i:
            lines.append("new_group=1")
        if rw.startswith("rand"):
            lines.append(f"size={t.size // block * block}")
        else:
            # Each job its own slice (HOWTO, offset_increment: job n starts at
            # offset + n * offset_increment), so jobs do not read the same blocks.
            region = t.size // params.numjobs // block * block
            if region < block:
                raise StorageRefused(f"{t.label}: {t.size} bytes cannot hold "
                                     f"{params.numjobs} slices of {block} bytes")
            lines += [f"size={region}", f"offset_increment={region}"]
    return "\n".join(lines) + "\n"


# --- the checks ------------------------------------------------------------------------


def fio_metrics(family: str, what: str, rate: str, unit: Unit) -> tuple[MetricSpec, ...]:
    """The metrics of one fio job type: its rate, fio's completion latency (clat)
    percentiles, and the "_per_device" figures that exist when several drives run at
    once (the plain names are then their aggregate, device="aggregate")."""
    def latency(p: str, text: str, per_device: bool = False) -> MetricSpec:
        return MetricSpec(f"storage.{family}_latency_{p}{'_per_device' if per_device else ''}",
                          Unit.SECONDS, f"{what} completion latency{text}",
                          higher_is_better=False, per_device=per_device)

    return (
        MetricSpec(f"storage.{family}_{rate}", unit, what),
        latency("p50", ", p50"), latency("p99", ", p99"), latency("p99_9", ", p99.9"),
        MetricSpec(f"storage.{family}_{rate}_per_device", unit,
                   f"{what}, one drive of several run at once", per_device=True),
        latency("p99", " p99, one drive of several", per_device=True),
    )


class FioCheck(Check):
    domain: ClassVar[str] = "storage"
    params_model: ClassVar[type[BaseModel]] = StorageParams
    rw: ClassVar[str]
    direction: ClassVar[Literal["read", "write"]]
    block: ClassVar[int]
    family: ClassVar[str]

    @property
    def writes(self) -> bool:
        return self.direction == "write"

    @property
    def random(self) -> bool:
        return self.rw.startswith("rand")

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        assert isinstance(params, StorageParams)
        fio = fio_run.find_fio()
        deadline = time.monotonic() + ctx.timeout - RESPONSE_MARGIN_S
        if params.runtime + params.ramp_time > ctx.timeout - RESPONSE_MARGIN_S:
            raise StorageRefused(
                f"runtime {params.runtime:g} s + ramp_time {params.ramp_time:g} s do not fit "
                f"the check's timeout of {ctx.timeout:g} s")
        with signals_raise():
            directory, devices = select_targets(ctx, self.writes)
            targets = device_targets(devices, ctx.root, self.writes)
            if directory is None:
                return self._measure(fio, targets, params, deadline)
            with test_file(directory, params.size) as target:
                fio_run.run_fio(fio, layout_job(target), _left(deadline))
                return self._measure(fio, [target, *targets], params, deadline)

    def _measure(self, fio: str, targets: list[Target], params: StorageParams,
                 deadline: float) -> list[Measurement]:
        engine = choose_engine(fio, params.ioengine, targets[0], deadline)
        readonly = not self.writes
        if self.writes and params.precondition:
            fio_run.run_fio(fio, fill_job(targets, engine), _left(deadline), json_plus=False)
        job = measure_job(targets, self.rw, self.block, params, engine)
        report, _ = fio_run.run_fio(fio, job, _left(deadline), readonly=readonly)
        return self.measurements(report, targets, params, engine)

    def measurements(self, report: fio_tool.FioReport, targets: list[Target],
                     params: StorageParams, engine: str) -> list[Measurement]:
        by_group: dict[int, list[fio_tool.FioJob]] = {}
        for job in report.jobs:
            by_group.setdefault(job.groupid, []).append(job)
        groups = sorted(by_group)
        if len(groups) != len(targets):
            raise ParseError(fio_tool.TOOL, f"{len(targets)} targets ran but the report has "
                             f"{len(groups)} groups")
        parts = []
        for groupid, target in zip(groups, targets, strict=True):
            part = fio_tool.summarize(by_group[groupid], self.direction)
            if part is None:
                raise ParseError(fio_tool.TOOL, f"{target.label}: no {self.direction} I/O "
                                 "in the report")
            parts.append(part)
        base = {
            "rw": self.rw, "bs": self.block, "iodepth": params.iodepth,
            "numjobs": params.numjobs, "runtime_s": params.runtime,
            "ramp_time_s": params.ramp_time, "ioengine": engine, "direct": 1,
            "targets": [t.label for t in targets], "target_kinds": [t.kind for t in targets],
            "file_size": params.size if any(t.kind == "file" for t in targets) else None,
            "preconditioned": bool(self.writes and params.precondition),
        }
        prefix = f"storage.{self.family}"
        label = targets[0].label if len(targets) == 1 else "aggregate"
        total = fio_tool.merge_summaries(parts)
        out = fio_tool.summary_measurements(total, prefix, self.random, self.name, label,
                                            report.version, base)
        if len(targets) > 1:
            primary = "iops" if self.random else "bandwidth"
            for target, part in zip(targets, parts, strict=True):
                one = fio_tool.summary_measurements(part, prefix, self.random, self.name,
                                                    target.label, report.version, base)
                out += [replace(m, metric=f"{m.metric}_per_device") for m in one
                        if m.metric.endswith((f"_{primary}", "_latency_p99"))]
        return out


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 1:
        raise CheckTimeout("no time left in the check's timeout for the next fio run")
    return left


def choose_engine(fio: str, wanted: str, target: Target, deadline: float) -> str:
    """io_uring where this fio has it and the kernel lets it run (a one-block read
    tells: io_uring_disabled or a container's seccomp refuse it), else libaio,
    else psync (fio then caps iodepth at 1 and prints a note)."""
    if wanted != "auto":
        return wanted
    compiled = fio_run.engines(fio)
    if "io_uring" in compiled:
        try:
            fio_run.run_fio(fio, probe_job(target, "io_uring"), min(30.0, _left(deadline)),
                             json_plus=False, readonly=True)
            return "io_uring"
        except (ToolFailed, ParseError):
            pass
    return "libaio" if "libaio" in compiled or not compiled else "psync"


class RandReadCheck(FioCheck):
    name = "storage.randread"
    description = "4 KiB random read IOPS and latency (fio)"
    metrics = fio_metrics("randread_4k", "4 KiB random read", "iops", Unit.IOPS)
    rw, direction, block, family = "randread", "read", 4096, "randread_4k"


class RandWriteCheck(FioCheck):
    name = "storage.randwrite"
    description = "4 KiB random write IOPS and latency (fio; raw devices need --destructive)"
    metrics = fio_metrics("randwrite_4k", "4 KiB random write", "iops", Unit.IOPS)
    rw, direction, block, family = "randwrite", "write", 4096, "randwrite_4k"
    burnin = BurninVariant(
        load="storage_fio",
        rate=MetricSpec("burnin.storage_fio", Unit.IOPS,
                        "fio mixed random read/write on a test file, sustained"),
        params_model=FioBurninParams,
        loop="bench_agent.checks.storage.burnin:fio_loop",
    )


class SeqReadCheck(FioCheck):
    name = "storage.seqread"
    description = "1 MiB sequential read bytes/s and latency (fio)"
    params_model = SequentialParams
    metrics = fio_metrics("seqread_1m", "1 MiB sequential read", "bandwidth",
                          Unit.BYTES_PER_SECOND)
    rw, direction, block, family = "read", "read", MIB, "seqread_1m"


class SeqWriteCheck(FioCheck):
    name = "storage.seqwrite"
    description = "1 MiB sequential write bytes/s and latency (fio; raw devices need --destructive)"
    params_model = SequentialParams
    metrics = fio_metrics("seqwrite_1m", "1 MiB sequential write", "bandwidth",
                          Unit.BYTES_PER_SECOND)
    rw, direction, block, family = "write", "write", MIB, "seqwrite_1m"


# The checks of this module, in `bench-agent list` order (checks/__init__.py finds them).
CHECKS: tuple[type[Check], ...] = (RandReadCheck, RandWriteCheck, SeqReadCheck, SeqWriteCheck)
