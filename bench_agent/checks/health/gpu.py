"""GPU passive health through NVML, and XIDs from the kernel log since the last run.

health.gpu reads, without a load: the GPU count, volatile uncorrectable ECC,
pending/failed row remaps and pending page retirements, the current clock event
reasons (hardware and thermal slowdown), the PCIe link width against its maximum,
the PCIe replay counter's growth and NVLink links down. The PCIe generation is
not judged idle: links downtrain on purpose without load (checks/gpu/checks.py).
One NVML session for all GPUs: nvmlInit is the expensive call (tools/nvml.py).

health.gpu_xid reads the kernel's record buffer (/dev/kmsg, Documentation/ABI/
testing/dev-kmsg): each record is "priority,sequence,timestamp,flags;message",
and the sequence number is what the state file keeps, so an XID is judged once:
in the first health run after it was logged.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, ClassVar

from bench_agent.checks.base import Check, CheckContext, MetricSpec, ParamsModel
from bench_agent.checks.gpu.presence import skip_or_fail
from bench_agent.checks.health.common import HealthParams, growth, state_key
from bench_agent.core.errors import NotApplicable, ToolMissing
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit
from bench_agent.tools import nvml


def _per_gpu(name: str, meaning: str) -> MetricSpec:
    return MetricSpec(f"health.{name}", Unit.COUNT, meaning, higher_is_better=False,
                      per_device=True)


class GpuHealthCheck(Check):
    name: ClassVar[str] = "health.gpu"
    domain: ClassVar[str] = "health"
    description: ClassVar[str] = ("GPU passive health, no load (NVML): count, ECC, row remaps,"
                                  " slowdowns, PCIe width and replays, NVLink")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("health.gpu_count", Unit.COUNT, "GPUs NVML reports"),
        _per_gpu("gpu_ecc_uncorrected", "volatile uncorrectable ECC errors (since the driver"
                 " loaded)"),
        _per_gpu("gpu_row_remap_pending", "1 when a row remap waits for a GPU reset"),
        _per_gpu("gpu_row_remap_failure", "1 when a row remap failed"),
        _per_gpu("gpu_retired_pages_pending", "1 when a page retirement waits (pre-Ampere)"),
        _per_gpu("gpu_hw_slowdown", "1 when a hardware slowdown is active now"),
        _per_gpu("gpu_thermal_slowdown", "1 when a thermal slowdown is active now"),
        _per_gpu("gpu_pcie_width_below_max", "PCIe lanes missing now"),
        _per_gpu("gpu_pcie_replays", "PCIe replay counter growth since the last health run"),
        _per_gpu("gpu_nvlink_down", "NVLink links inactive"),
    )
    params_model: ClassVar[ParamsModel] = HealthParams

    def run(self, ctx: CheckContext, params: Any) -> list[Measurement]:
        assert isinstance(params, HealthParams)
        try:
            return self._run(params)
        except (ToolMissing, NotApplicable) as exc:
            # No NVML on a node whose PCI bus holds NVIDIA GPUs: a broken driver, an
            # ERROR that drains the node, never a SKIP that lets health pass.
            skip_or_fail(ctx.root, str(exc))
            raise

    def _run(self, params: HealthParams) -> list[Measurement]:
        out: list[Measurement] = []
        with nvml.session() as nv:
            count = int(nv.nvmlDeviceGetCount())
            out.append(Measurement(check=self.name, metric="health.gpu_count", value=count,
                                   unit=Unit.COUNT, tool="nvml"))
            for index in range(count):
                out += self._gpu(nv, index, params.since)
        return out

    def _gpu(self, nv: Any, index: int, since: dict[str, float]) -> list[Measurement]:
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        facts = nvml.device_facts(nv, handle, index)
        counters = nvml.counters(nv, handle)
        now = nvml.sample(nv, handle)
        device = f"gpu{index}"
        ident = {"uuid": facts.uuid, "name": facts.name, "serial": facts.serial,
                 "pci_bus_id": facts.pci_bus_id}
        out: list[Measurement] = []

        def add(metric: str, value: int | None, **extra: Any) -> None:
            if value is not None:
                out.append(Measurement(check=self.name, metric=f"health.{metric}", value=value,
                                       unit=Unit.COUNT, device=device, tool="nvml",
                                       params={**ident, **extra}))

        add("gpu_ecc_uncorrected", counters.ecc_volatile_uncorrected)
        add("gpu_row_remap_pending", counters.row_remap_pending)
        add("gpu_row_remap_failure", counters.row_remap_failure)
        add("gpu_retired_pages_pending", counters.retired_pages_pending)
        reasons = now.clock_event_reasons
        if reasons is not None:
            names = nvml.reason_names(reasons)
            add("gpu_hw_slowdown", int(bool(reasons & nvml.HW_SLOWDOWN_MASK)), reasons=names)
            add("gpu_thermal_slowdown", int(bool(reasons & nvml.THERMAL_MASK)), reasons=names)
        if now.pcie_width is not None and facts.pcie_width_max:
            add("gpu_pcie_width_below_max", max(0, facts.pcie_width_max - now.pcie_width),
                width=now.pcie_width, width_max=facts.pcie_width_max)
        if counters.pcie_replays is not None:
            grown, extra = growth("health.gpu_pcie_replays", device, counters.pcie_replays,
                                  since)
            add("gpu_pcie_replays", grown, **extra)
        if counters.nvlink:
            down = [link for link, state in counters.nvlink.items() if not state.active]
            add("gpu_nvlink_down", len(down), links=len(counters.nvlink), down=down)
        return out


KMSG = Path("dev/kmsg")
XID_SEQ_KEY = state_key("health.gpu_xid", "kmsg")


def read_kmsg(path: Path) -> list[tuple[int, str]]:
    """(sequence, message) of each record of /dev/kmsg (or a file of such lines).

    /dev/kmsg gives one record per read() and EAGAIN at the end when opened
    non-blocking; EPIPE says records were overwritten before we read them (the
    next read goes on with the oldest kept). A regular file (tests) gives many
    lines per read. Continuation lines (" KEY=value") are not records.
    """
    records: list[tuple[int, str]] = []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise NotApplicable(f"cannot read the kernel log {path}: {exc.strerror} (root or "
                            "CAP_SYSLOG reads it)") from exc
    pending = b""
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue
                raise
            if not chunk:
                break
            pending += chunk
    finally:
        os.close(fd)
    for raw in pending.decode("utf-8", errors="replace").splitlines():
        head, sep, message = raw.partition(";")
        fields = head.split(",")
        if not sep or len(fields) < 3 or not fields[1].isdigit():
            continue
        records.append((int(fields[1]), message))
    return records


class GpuXidCheck(Check):
    name: ClassVar[str] = "health.gpu_xid"
    domain: ClassVar[str] = "health"
    description: ClassVar[str] = "GPU XIDs in the kernel log since the last health run"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("health.gpu_xid", Unit.COUNT, "failing XIDs (AzNHC's list) in the kernel"
                   " log since the last health run, per PCI bus", higher_is_better=False,
                   per_device=True),
    )
    params_model: ClassVar[ParamsModel] = HealthParams

    def run(self, ctx: CheckContext, params: Any) -> list[Measurement]:
        assert isinstance(params, HealthParams)
        records = read_kmsg(ctx.root / KMSG)
        after = params.since.get(XID_SEQ_KEY)
        last = max((seq for seq, _ in records), default=int(after or 0))
        # A sequence lower than the kept one: the node rebooted; all is new.
        if after is not None and records and last < after:
            after = None
        new = [(seq, text) for seq, text in records if after is None or seq > after]
        xids = nvml.parse_kernel_xids("\n".join(text for _, text in new))
        state = {"state": {XID_SEQ_KEY: last},
                 "since": "the previous health run" if after is not None else "boot"}
        buses = sorted({x.bus for x in xids})
        if not buses:
            return [Measurement(check=self.name, metric="health.gpu_xid", value=0,
                                unit=Unit.COUNT, device="all", tool="kmsg",
                                params={**state, "records": len(new)})]
        out = []
        for bus in buses:
            mine = [x for x in xids if x.bus == bus]
            out.append(Measurement(
                check=self.name, metric="health.gpu_xid", unit=Unit.COUNT, device=bus,
                value=sum(x.xid in nvml.FAILING_XIDS for x in mine), tool="kmsg",
                params={**state, "pci_bus_id": bus, "xids": [x.xid for x in mine],
                        "lines": [x.line for x in mine[:10]]}))
        return out
