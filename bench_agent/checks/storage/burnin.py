"""Burn-in loop of the storage checks: their fio job, back to back, on a test file.

The target, the test file (swept, sized against the free space, removed on the way
out), the job file and the engine probe are the checks' own (checks.py); the job is
mixed random read/write (rw=randrw, HOWTO "rwmixread"), one fio run per interval,
its IOPS (read + write) the interval's reading. fio prints JSON only at the end
of a run, so one run per interval gives exact figures where parsing the periodic
--status-interval reports would need differencing of cumulative counters.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from bench_agent.checks.base import CheckContext, Emit, Stopping, burnin_interval
from bench_agent.core.errors import BenchAgentError, UnitError
from bench_agent.core.units import Unit, parse_quantity

MIB = 1 << 20
# Time a run gets beyond its runtime: fio's start, its job processes, the report.
FIO_SLACK_S = 30.0


def _fio_bytes(value: Any) -> Any:
    """A size as fio writes it ("1G", "4k": binary multiples, fio's kb_base=1024) or
    with a unit ("256 MiB", "1 GB"); anything else goes on to int validation."""
    if not isinstance(value, str):
        return value
    from bench_agent.tools.fio import parse_size

    size = parse_size(value)
    if size is not None:
        return size
    try:
        return int(parse_quantity(value, Unit.BYTES).value)
    except UnitError as exc:
        raise ValueError(f"{exc}; or as fio writes sizes: 4k, 1G") from exc


FioSize = Annotated[int, BeforeValidator(_fio_bytes)]


class FioBurninParams(BaseModel):
    """`storage_fio` in burnin.yaml."""

    model_config = ConfigDict(extra="forbid")
    size: FioSize = Field(default=256 * MIB, ge=MIB)  # the test file
    block_size: FioSize = Field(default=4096, ge=512)
    rwmixread: int = Field(default=70, ge=0, le=100)
    iodepth: int = Field(default=16, ge=1, le=4096)
    numjobs: int = Field(default=1, ge=1, le=256)
    ioengine: Literal["auto", "io_uring", "libaio", "psync"] = "auto"


def fio_loop(ctx: CheckContext, params: BaseModel, emit: Emit, stopping: Stopping) -> None:
    """fio randrw on a test file in ``--target`` (default: the output folder), one
    run of ``interval`` seconds after another; SIGTERM (the supervisor's stop) also
    reaches fio through the seam, and the test file is removed on the way out."""
    from bench_agent.checks.storage.checks import (
        StorageParams,
        choose_engine,
        layout_job,
        measure_job,
        select_targets,
        test_file,
    )
    from bench_agent.tools import fio as fio_tool
    from bench_agent.tools import fio_run

    if not isinstance(p := params, FioBurninParams):
        raise TypeError(f"expected FioBurninParams, got {type(params).__name__}")
    fio = fio_run.find_fio()
    interval = max(1, round(burnin_interval(ctx)))
    directory, _ = select_targets(ctx, writes=True)
    assert directory is not None  # burn-in passes no raw devices
    settings = StorageParams(runtime=interval, ramp_time=0, iodepth=p.iodepth,
                             numjobs=p.numjobs, size=p.size)
    with test_file(directory, p.size) as target:
        fio_run.run_fio(fio, layout_job(target), interval + FIO_SLACK_S)
        engine = choose_engine(fio, p.ioengine, target, time.monotonic() + FIO_SLACK_S)
        job = measure_job([target], "randrw", p.block_size, settings, engine,
                          rwmixread=p.rwmixread)
        while not stopping():
            try:
                report, _ = fio_run.run_fio(fio, job, interval + FIO_SLACK_S)
            except BenchAgentError:
                if stopping():
                    break  # fio got the supervisor's SIGTERM too
                raise
            if stopping():
                break
            iops = sum(summary.iops for direction in ("read", "write")
                       if (summary := fio_tool.summarize(report.jobs, direction)) is not None)
            emit(iops)
