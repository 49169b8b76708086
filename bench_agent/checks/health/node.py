"""Passive node health from /sys and /proc: IB ports, NVMe, filesystems, services,
kernel modules, clock sync. All in-process file reads (no child), after LBNL NHC's
checks of the same things (https://github.com/mej/nhc: check_hw_ib, check_fs_mount,
check_fs_free, check_ps_service) and AzNHC's IB link check
(Azure/azurehpc-health-checks customTests/azure_ib_link_flapping.nhc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench_agent.checks.base import Check, CheckContext, MetricSpec, ParamsModel
from bench_agent.checks.health.common import HealthParams, growth
from bench_agent.core.errors import NotApplicable, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.sysfs import list_dir, read_line
from bench_agent.core.units import Unit

IB_CLASS = Path("sys/class/infiniband")
NVME_CLASS = Path("sys/class/nvme")
# sysfs counters/<name> of an IB port (drivers/infiniband/core/sysfs.c), grouped
# into the metrics judged: the IBA PortCounters of physical-link trouble.
IB_COUNTERS = {"health.ib_link_downed": ("link_downed", "link_error_recovery"),
               "health.ib_symbol_errors": ("symbol_error",),
               "health.ib_rcv_errors": ("port_rcv_errors", "port_rcv_remote_physical_errors")}


def _low(name: str, meaning: str, per_device: bool = True) -> MetricSpec:
    return MetricSpec(f"health.{name}", Unit.COUNT, meaning, higher_is_better=False,
                      per_device=per_device)


class IbHealthCheck(Check):
    name: ClassVar[str] = "health.ib"
    domain: ClassVar[str] = "health"
    description: ClassVar[str] = "InfiniBand ports: state and error counters since the last run"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("health.hca_count", Unit.COUNT, "InfiniBand/RoCE devices in sysfs"),
        _low("ib_port_down", "1 when the port is not ACTIVE or its link not LinkUp"),
        _low("ib_link_downed", "link downs and error recoveries since the last health run"),
        _low("ib_symbol_errors", "symbol errors since the last health run"),
        _low("ib_rcv_errors", "receive errors since the last health run"),
    )
    params_model: ClassVar[ParamsModel] = HealthParams

    def run(self, ctx: CheckContext, params: Any) -> list[Measurement]:
        assert isinstance(params, HealthParams)
        base = ctx.root / IB_CLASS
        devices = [d for d in list_dir(base) if (base / d).is_dir()]
        out = [Measurement(check=self.name, metric="health.hca_count", value=len(devices),
                           unit=Unit.COUNT, tool="sysfs")]
        for device in devices:
            for port in (p for p in list_dir(base / device / "ports") if p.isdigit()):
                out += self._port(base / device / "ports" / port, f"{device}/{port}",
                                  params.since)
        return out

    def _port(self, port_dir: Path, label: str, since: dict[str, float]
              ) -> list[Measurement]:
        state = read_line(port_dir / "state") or "unknown"
        phys = read_line(port_dir / "phys_state") or "unknown"
        # "4: ACTIVE" and "5: LinkUp" (drivers/infiniband/core/sysfs.c state_show,
        # phys_state_show).
        down = int(not state.endswith("ACTIVE") or not phys.endswith("LinkUp"))
        out = [Measurement(check=self.name, metric="health.ib_port_down", value=down,
                           unit=Unit.COUNT, device=label, tool="sysfs",
                           params={"state": state, "phys_state": phys})]
        for metric, names in IB_COUNTERS.items():
            values = [read_line(port_dir / "counters" / n) for n in names]
            if any(v is None for v in values):
                continue  # no PMA counters on this port: nothing to judge
            if not all(v is not None and v.isdigit() for v in values):
                raise ToolFailed("sysfs", f"/{port_dir}/counters: not counters: {values}")
            grown, extra = growth(metric, label, sum(int(v or 0) for v in values), since)
            out.append(Measurement(check=self.name, metric=metric, value=grown,
                                   unit=Unit.COUNT, device=label, tool="sysfs",
                                   params={**extra, "counters": list(names)}))
        return out


class NvmeHealthCheck(Check):
    name: ClassVar[str] = "health.nvme"
    domain: ClassVar[str] = "health"
    description: ClassVar[str] = "NVMe controllers: count and state (sysfs)"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("health.nvme_count", Unit.COUNT, "NVMe controllers in sysfs"),
        _low("nvme_not_live", "1 when the controller's state is not live"),
    )
    params_model: ClassVar[ParamsModel] = HealthParams

    def run(self, ctx: CheckContext, params: Any) -> list[Measurement]:
        base = ctx.root / NVME_CLASS
        controllers = [c for c in list_dir(base) if c.startswith("nvme")]
        out = [Measurement(check=self.name, metric="health.nvme_count",
                           value=len(controllers), unit=Unit.COUNT, tool="sysfs")]
        for name in controllers:
            # "live", "resetting", "dead", ... (drivers/nvme/host/core.c
            # nvme_sysfs_show_state).
            state = read_line(base / name / "state") or "unknown"
            out.append(Measurement(
                check=self.name, metric="health.nvme_not_live", value=int(state != "live"),
                unit=Unit.COUNT, device=name, tool="sysfs",
                params={"state": state, "model": read_line(base / name / "model"),
                        "serial": read_line(base / name / "serial")}))
        return out


@dataclass(frozen=True)
class FilesystemParams(HealthParams):
    mounts: list[str] = field(default_factory=list)  # mount points that must be mounted
    free: list[str] = field(default_factory=lambda: ["/"])  # paths whose free space counts


def _mount_points(root: Path) -> set[str]:
    """The mount points of /proc/self/mounts (fstab format: octal escapes, proc(5))."""
    text = (root / "proc/self/mounts").read_text(encoding="utf-8", errors="replace")
    points = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            points.add(fields[1].encode().decode("unicode_escape"))
    return points


class FilesystemHealthCheck(Check):
    name: ClassVar[str] = "health.filesystems"
    domain: ClassVar[str] = "health"
    description: ClassVar[str] = "required mounts present, free space of chosen paths"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        _low("mount_missing", "required mount points not mounted", per_device=False),
        MetricSpec("health.fs_free_fraction", Unit.COUNT, "free fraction of the filesystem"
                   " (blocks available to users / size)", per_device=True),
    )
    params_model: ClassVar[ParamsModel] = FilesystemParams

    def run(self, ctx: CheckContext, params: Any) -> list[Measurement]:
        assert isinstance(params, FilesystemParams)
        try:
            mounted = _mount_points(ctx.root)
        except OSError as exc:
            raise ToolFailed("proc", f"cannot read /proc/self/mounts: {exc.strerror}") from exc
        missing = [m for m in params.mounts if (m.rstrip("/") or "/") not in mounted]
        out = [Measurement(check=self.name, metric="health.mount_missing", value=len(missing),
                           unit=Unit.COUNT, tool="proc",
                           params={"missing": missing, "required": params.mounts})]
        for path in params.free:
            try:
                st = os.statvfs(ctx.root / path.lstrip("/"))
            except OSError as exc:
                raise ToolFailed("statvfs", f"{path}: {exc.strerror}") from exc
            fraction = st.f_bavail / st.f_blocks if st.f_blocks else 0.0
            out.append(Measurement(
                check=self.name, metric="health.fs_free_fraction", value=fraction,
                unit=Unit.COUNT, device=path, tool="statvfs",
                params={"free_bytes": st.f_bavail * st.f_frsize,
                        "size_bytes": st.f_blocks * st.f_frsize}))
        return out


@dataclass(frozen=True)
class ServiceParams(HealthParams):
    services: list[str] = field(default_factory=list)  # process names (/proc/PID/comm)
    modules: list[str] = field(default_factory=list)  # kernel modules (/sys/module/NAME)


class ServiceHealthCheck(Check):
    name: ClassVar[str] = "health.services"
    domain: ClassVar[str] = "health"
    description: ClassVar[str] = "required daemons running and kernel modules loaded"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        _low("service_missing", "required daemons not running (by process name)",
             per_device=False),
        _low("module_missing", "required kernel modules not loaded", per_device=False),
    )
    params_model: ClassVar[ParamsModel] = ServiceParams

    def run(self, ctx: CheckContext, params: Any) -> list[Measurement]:
        assert isinstance(params, ServiceParams)
        proc = ctx.root / "proc"
        # As NHC's check_ps_service: a daemon is running when a process has its name
        # (/proc/PID/comm, the first 15 bytes of the name: proc(5)).
        running = {read_line(proc / pid / "comm") for pid in list_dir(proc) if pid.isdigit()}
        services = [s for s in params.services if s[:15] not in running]
        # A loaded module has /sys/module/<name> (built-in ones too, with parameters).
        modules = [m for m in params.modules
                   if not (ctx.root / "sys/module" / m.replace("-", "_")).is_dir()]
        return [Measurement(check=self.name, metric="health.service_missing",
                            value=len(services), unit=Unit.COUNT, tool="proc",
                            params={"missing": services, "required": params.services}),
                Measurement(check=self.name, metric="health.module_missing",
                            value=len(modules), unit=Unit.COUNT, tool="sysfs",
                            params={"missing": modules, "required": params.modules})]


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> (x86_64 and aarch64 glibc): the fields read here
    # come first; the tail is padding the kernel writes into.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("constant", ctypes.c_long),
                ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long),
                ("tick", ctypes.c_long), ("_rest", ctypes.c_int * 32)]


TIME_ERROR = 5  # adjtimex(2) return value: the clock is not synchronized
STA_UNSYNC = 0x0040


def read_clock() -> tuple[int, float, int]:
    """(adjtimex state, maximum error in seconds, status bits), read-only (modes 0)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    timex = _Timex()
    state = int(libc.adjtimex(ctypes.byref(timex)))
    if state < 0:
        raise ToolFailed("adjtimex", os.strerror(ctypes.get_errno()))
    return state, timex.maxerror / 1e6, int(timex.status)  # maxerror is in microseconds


class ClockHealthCheck(Check):
    name: ClassVar[str] = "health.clock"
    domain: ClassVar[str] = "health"
    description: ClassVar[str] = "system clock synchronized (adjtimex, as timedatectl reads it)"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        _low("clock_unsynchronized", "1 when the kernel says the clock is unsynchronized",
             per_device=False),
        MetricSpec("health.clock_max_error", Unit.SECONDS, "the kernel's maximum clock error",
                   higher_is_better=False),
    )
    params_model: ClassVar[ParamsModel] = HealthParams

    def available(self, ctx: CheckContext) -> str | None:
        if ctx.root != Path("/"):
            return "the clock is the running kernel's: not read under another root"
        return None

    def run(self, ctx: CheckContext, params: Any) -> list[Measurement]:
        if self.available(ctx):
            raise NotApplicable(str(self.available(ctx)))
        state, max_error, status = read_clock()
        unsynced = int(state == TIME_ERROR or bool(status & STA_UNSYNC))
        extra: dict[str, Any] = {"adjtimex_state": state, "status": status}
        return [Measurement(check=self.name, metric="health.clock_unsynchronized",
                            value=unsynced, unit=Unit.COUNT, tool="adjtimex", params=extra),
                Measurement(check=self.name, metric="health.clock_max_error",
                            value=max_error, unit=Unit.SECONDS, tool="adjtimex", params=extra)]
