"""NVML through pynvml (the nvidia-ml-py package): GPUs, their health, XID events.

pynvml is imported when a function runs, never at import time, so `bench-agent
--help` and every check that needs no GPU work on a node without the package or
the driver. The one seam is ``use_loader``: tests swap the function that returns
the pynvml module for one that returns a fake (tests/fake_nvml.py) or raises
ImportError.

Foreign errors are translated here, at the boundary (errors.py):
    ImportError                  -> ToolMissing   (package absent: SKIP)
    NVMLError from nvmlInit      -> NotApplicable (no driver or no GPU: SKIP)
    NVMLError after a good init  -> ToolFailed    (a GPU that answers wrongly: ERROR)
    NOT_SUPPORTED and friends    -> the reading is absent (None), not an error: an
                                    A100 has no retired pages, a PCIe card no NVLink.

Constants are copied from nvml.h (CUDA 12.x) rather than read from pynvml, whose
names changed across releases (ClocksThrottleReason -> ClocksEventReason).

What NVML answers comes back as frozen records (GpuFacts, ErrorCounters,
GpuSample, XidEvent, ...), each with ``to_dict()`` for the measurement params and
the burn-in series where it is written down; None is a reading NVML could not give.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_agent.core.errors import NotApplicable, ToolFailed, ToolMissing
from bench_agent.core.inventory import Gpu

TOOL = "nvml"

# nvmlReturn_t values (nvml.h) that mean "this GPU or driver cannot tell".
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_FUNCTION_NOT_FOUND = 13
_ABSENT = {NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_INVALID_ARGUMENT, NVML_ERROR_FUNCTION_NOT_FOUND}

# nvmlClocksEventReasons (nvml.h, "nvmlClocksEventReason*", formerly ThrottleReason).
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# HW slowdown is asserted with HW thermal and power-brake slowdown (nvml.h comment on
# nvmlClocksEventReasonHwSlowdown): any of the three is a hardware finding.
HW_SLOWDOWN_MASK = 0x8 | 0x40 | 0x80
THERMAL_MASK = 0x20 | 0x40

NVML_TEMPERATURE_GPU = 0
NVML_MEMORY_ERROR_CORRECTED, NVML_MEMORY_ERROR_UNCORRECTED = 0, 1
NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC = 0, 1
NVML_MEMORY_LOCATION_DRAM = 2  # == NVML_MEMORY_LOCATION_DEVICE_MEMORY
NVML_MEMORY_LOCATION_SRAM = 7  # all on-chip SRAM, Ampere and later
NVML_NVLINK_MAX_LINKS = 18  # Hopper: 18 links per GPU
# nvmlNvLinkErrorCounter_t: DL_REPLAY, DL_RECOVERY, DL_CRC_FLIT, DL_CRC_DATA.
NVLINK_ERROR_COUNTERS = (0, 1, 2, 3)
NVML_EVENT_TYPE_XID_CRITICAL_ERROR = 0x8
NVML_PAGE_RETIREMENT_CAUSES = (0, 1)  # multiple single-bit, double-bit

# XIDs that fail a node: AzNHC check_gpu_xid (customTests/azure_gpu_xid.nhc), e.g. 48 DBE ECC, 63/64
# row remapping, 79 fallen off the bus, 94/95 are contained/uncontained ECC (not in
# AzNHC's list, reported but not failed).
FAILING_XIDS: frozenset[int] = frozenset(
    {48, 56, 57, 58, 62, 63, 64, 65, 68, 69, 73, 74, 79, 80, 81, 92, 119, 120}
)


def _import_pynvml() -> Any:
    import pynvml

    return pynvml


_loader: Callable[[], Any] = _import_pynvml


@contextlib.contextmanager
def use_loader(loader: Callable[[], Any]) -> Iterator[None]:
    """The seam: NVML calls use ``loader()`` instead of importing pynvml."""
    global _loader
    previous = _loader
    _loader = loader
    try:
        yield
    finally:
        _loader = previous


def _text(value: Any) -> str:
    """NVML strings: bytes from older nvidia-ml-py releases, str from newer ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


# What the NVIDIA kernel driver makes while it is loaded: /proc/driver/nvidia (its
# version and GPUs; the NVIDIA container toolkit shows it inside containers too)
# and the control device /dev/nvidiactl; WSL 2 passes GPUs through /dev/dxg.
# Without any of them nvmlInit can only fail (NVML_ERROR_DRIVER_NOT_LOADED or
# LIBRARY_NOT_FOUND, NVML API reference, nvmlInit_v2).
DRIVER_PATHS = (Path("/proc/driver/nvidia"), Path("/dev/nvidiactl"), Path("/dev/dxg"))


def _load() -> Any:
    if _loader is _import_pynvml and not any(p.exists() for p in DRIVER_PATHS):
        # Not even imported: pynvml's import is a tenth of `bench-agent health`'s
        # budget on a node without GPUs (issue 16), for an answer known already.
        raise NotApplicable("NVML cannot start: no NVIDIA driver is loaded (none of "
                            + ", ".join(map(str, DRIVER_PATHS)) + " exists)")
    try:
        return _loader()
    except ImportError as exc:
        raise ToolMissing("nvidia-ml-py (pynvml)") from exc


@contextlib.contextmanager
def session() -> Iterator[Any]:
    """nvmlInit .. nvmlShutdown around a block; yields the pynvml module."""
    nv = _load()
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        # "Driver Not Loaded", "NVML Shared Library Not Found", ...: NVML's words.
        raise NotApplicable(f"NVML cannot start: {exc}") from exc
    try:
        yield nv
    except nv.NVMLError as exc:
        raise ToolFailed(TOOL, str(exc)) from exc
    finally:
        # A failed shutdown must not hide the readings or the error raised above.
        with contextlib.suppress(nv.NVMLError):
            nv.nvmlShutdown()


def optional(nv: Any, function: str, *args: Any) -> Any:
    """Call nv.<function>(*args); None when the GPU, driver or package cannot tell."""
    method = getattr(nv, function, None)
    if method is None:
        return None
    try:
        return method(*args)
    except nv.NVMLError as exc:
        if getattr(exc, "value", None) in _ABSENT:
            return None
        raise


def list_gpus() -> list[Gpu]:
    """Index, name, UUID, total memory (bytes) and driver version of each GPU.

    Zero devices gives []. nvmlDeviceGetMemoryInfo().total is in bytes (NVML API
    reference, nvmlMemory_t: "Total physical device memory (in bytes)").
    """
    with session() as nv:
        driver_version = _text(nv.nvmlSystemGetDriverVersion())
        gpus: list[Gpu] = []
        for index in range(int(nv.nvmlDeviceGetCount())):
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            memory = nv.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                Gpu(
                    index=index,
                    name=_text(nv.nvmlDeviceGetName(handle)),
                    uuid=_text(nv.nvmlDeviceGetUUID(handle)),
                    memory_total_bytes=_count(memory.total, "memory total"),
                    driver_version=driver_version,
                )
            )
        return gpus


def reason_names(mask: int) -> list[str]:
    return [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]


def cuda_version_text(version: int | None) -> str | None:
    """nvmlSystemGetCudaDriverVersion's 12040 as "12.4" (major*1000 + minor*10)."""
    if version is None:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def _count(value: Any, what: str) -> int:
    """An NVML integer reading; ToolFailed for one that is not (a NaN from a broken
    binding would otherwise crash int() or slip into a record as a float)."""
    if isinstance(value, float) and not value.is_integer():  # NaN, inf, 1.5: no count
        raise ToolFailed(TOOL, f"{what} is not a whole number: {value!r:.40}")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ToolFailed(TOOL, f"{what} is not a number: {value!r:.40}") from exc


def _optional_int(nv: Any, function: str, *args: Any) -> int | None:
    value = optional(nv, function, *args)
    return None if value is None else _count(value, function)


@dataclass(frozen=True, slots=True)
class GpuFacts:
    """What a GPU is: identity, memory, PCIe link maxima, ECC mode. Read once."""

    index: int
    name: str
    uuid: str
    serial: str | None
    pci_bus_id: str | None
    memory_total_bytes: int
    pcie_gen_max: int | None
    pcie_width_max: int | None
    # nvmlDeviceGetEccMode returns (current, pending); 1 is NVML_FEATURE_ENABLED.
    ecc_mode_current: int | None
    ecc_mode_pending: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_facts(nv: Any, handle: Any, index: int) -> GpuFacts:
    memory = nv.nvmlDeviceGetMemoryInfo(handle)
    pci = optional(nv, "nvmlDeviceGetPciInfo", handle)
    ecc = optional(nv, "nvmlDeviceGetEccMode", handle)
    serial = optional(nv, "nvmlDeviceGetSerial", handle)
    return GpuFacts(
        index=index,
        name=_text(nv.nvmlDeviceGetName(handle)),
        uuid=_text(nv.nvmlDeviceGetUUID(handle)),
        serial=_text(serial) if serial is not None else None,
        pci_bus_id=_text(pci.busId) if pci is not None else None,
        memory_total_bytes=_count(memory.total, "memory total"),
        pcie_gen_max=_optional_int(nv, "nvmlDeviceGetMaxPcieLinkGeneration", handle),
        pcie_width_max=_optional_int(nv, "nvmlDeviceGetMaxPcieLinkWidth", handle),
        ecc_mode_current=int(ecc[0]) if ecc is not None else None,
        ecc_mode_pending=int(ecc[1]) if ecc is not None else None,
    )


@dataclass(frozen=True, slots=True)
class NvLinkState:
    active: bool
    errors: int  # DL replay + recovery + CRC flit + CRC data (NVLINK_ERROR_COUNTERS)


@dataclass(frozen=True, slots=True)
class ErrorCounters:
    """Error counters, read before and after the load so a change shows.

    Row remapping (Ampere and later) and retired pages (older GPUs) exclude each
    other: the fields of the one a GPU does not have are None.
    """

    pcie_replays: int | None = None
    ecc_volatile_corrected: int | None = None
    ecc_volatile_uncorrected: int | None = None
    ecc_aggregate_corrected: int | None = None
    ecc_aggregate_uncorrected: int | None = None
    # Per location, as AzNHC's check_gpu_ecc judges them (DRAM vs SRAM, aggregate).
    ecc_dram_correctable: int | None = None
    ecc_dram_uncorrectable: int | None = None
    ecc_sram_correctable: int | None = None
    ecc_sram_uncorrectable: int | None = None
    row_remap_correctable: int | None = None
    row_remap_uncorrectable: int | None = None
    row_remap_pending: int | None = None
    row_remap_failure: int | None = None
    retired_pages: int | None = None
    retired_pages_pending: int | None = None
    # NVLink index -> its state; empty for a GPU without NVLink.
    nvlink: dict[int, NvLinkState] = field(default_factory=dict)
    # Nanoseconds held down by a thermal limit since the driver loaded (violation_ns).
    thermal_violation_ns: int | None = None


def counters(nv: Any, handle: Any) -> ErrorCounters:
    ecc: dict[str, int | None] = {}
    for kind, error_type in (("corrected", NVML_MEMORY_ERROR_CORRECTED),
                             ("uncorrected", NVML_MEMORY_ERROR_UNCORRECTED)):
        ecc[f"ecc_volatile_{kind}"] = _optional_int(
            nv, "nvmlDeviceGetTotalEccErrors", handle, error_type, NVML_VOLATILE_ECC)
        ecc[f"ecc_aggregate_{kind}"] = _optional_int(
            nv, "nvmlDeviceGetTotalEccErrors", handle, error_type, NVML_AGGREGATE_ECC)
    locations = (("dram", NVML_MEMORY_LOCATION_DRAM), ("sram", NVML_MEMORY_LOCATION_SRAM))
    for location, code in locations:
        for kind, error_type in (("correctable", NVML_MEMORY_ERROR_CORRECTED),
                                 ("uncorrectable", NVML_MEMORY_ERROR_UNCORRECTED)):
            ecc[f"ecc_{location}_{kind}"] = _optional_int(
                nv, "nvmlDeviceGetMemoryErrorCounter", handle, error_type, NVML_AGGREGATE_ECC,
                code)
    memory: dict[str, int | None] = {}
    # Ampere and later remap rows; older GPUs retire pages (NVML reference,
    # nvmlDeviceGetRemappedRows / nvmlDeviceGetRetiredPages).
    remap = optional(nv, "nvmlDeviceGetRemappedRows", handle)
    if remap is not None:
        corrected_rows, uncorrected_rows, pending, failure = remap
        memory.update(row_remap_correctable=int(corrected_rows),
                      row_remap_uncorrectable=int(uncorrected_rows),
                      row_remap_pending=int(bool(pending)), row_remap_failure=int(bool(failure)))
    else:
        pages = [optional(nv, "nvmlDeviceGetRetiredPages", handle, cause)
                 for cause in NVML_PAGE_RETIREMENT_CAUSES]
        if any(p is not None for p in pages):
            memory["retired_pages"] = sum(len(p) for p in pages if p is not None)
        pending_pages = optional(nv, "nvmlDeviceGetRetiredPagesPendingStatus", handle)
        if pending_pages is not None:
            memory["retired_pages_pending"] = int(bool(pending_pages))
    links: dict[int, NvLinkState] = {}
    for link in range(NVML_NVLINK_MAX_LINKS):
        state = optional(nv, "nvmlDeviceGetNvLinkState", handle, link)
        if state is None:
            continue
        errors = [_optional_int(nv, "nvmlDeviceGetNvLinkErrorCounter", handle, link, c)
                  for c in NVLINK_ERROR_COUNTERS]
        links[link] = NvLinkState(active=bool(state),
                                  errors=sum(e for e in errors if e is not None))
    return ErrorCounters(
        pcie_replays=_optional_int(nv, "nvmlDeviceGetPcieReplayCounter", handle),
        **ecc, **memory, nvlink=links,
        thermal_violation_ns=violation_ns(nv, handle, NVML_PERF_POLICY_THERMAL))


@dataclass(frozen=True, slots=True)
class GpuSample:
    """What changes under load: link, clock event reasons, temperature, power."""

    pcie_gen: int | None
    pcie_width: int | None
    clock_event_reasons: int | None  # a mask of CLOCK_EVENT_REASONS bits
    temperature: int | None  # degrees C (temperature_c)
    power_w: float | None


def temperature_c(nv: Any, handle: Any) -> int | None:
    """The GPU's temperature: nvmlDeviceGetTemperatureV first, the deprecated
    nvmlDeviceGetTemperature when the package or driver lacks it (nvidia-ml-py 13
    marks the old call "will be removed in CUDA 14.0"; drivers before the V call
    answer FUNCTION_NOT_FOUND, which ``optional`` turns into None)."""
    value = _optional_int(nv, "nvmlDeviceGetTemperatureV", handle, NVML_TEMPERATURE_GPU)
    if value is None:
        value = _optional_int(nv, "nvmlDeviceGetTemperature", handle, NVML_TEMPERATURE_GPU)
    return value


def clock_event_reasons(nv: Any, handle: Any) -> int | None:
    """The clock event reason mask: nvmlDeviceGetCurrentClocksEventReasons, else the
    deprecated ...ClocksThrottleReasons of older packages and drivers (same bits)."""
    reasons = _optional_int(nv, "nvmlDeviceGetCurrentClocksEventReasons", handle)
    if reasons is None:
        reasons = _optional_int(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    return reasons


# nvmlPerfPolicyType_t (nvml.h): time the clocks were held down by a power or a
# thermal limit, counted by the driver without gaps between our samples.
NVML_PERF_POLICY_POWER = 0
NVML_PERF_POLICY_THERMAL = 1


def violation_ns(nv: Any, handle: Any, policy: int) -> int | None:
    """Nanoseconds the GPU has spent held down by ``policy`` since the driver loaded
    (nvmlDeviceGetViolationStatus: nvmlViolationTime_t.violationTime, "in
    nanoseconds"); None when the GPU cannot tell."""
    status = optional(nv, "nvmlDeviceGetViolationStatus", handle, policy)
    if status is None:
        return None
    return _count(getattr(status, "violationTime", None), "violation time")


def sample(nv: Any, handle: Any) -> GpuSample:
    reasons = clock_event_reasons(nv, handle)
    power_mw = optional(nv, "nvmlDeviceGetPowerUsage", handle)
    return GpuSample(
        pcie_gen=_optional_int(nv, "nvmlDeviceGetCurrPcieLinkGeneration", handle),
        pcie_width=_optional_int(nv, "nvmlDeviceGetCurrPcieLinkWidth", handle),
        clock_event_reasons=reasons,
        temperature=temperature_c(nv, handle),
        # NVML reports power in milliwatts (nvmlDeviceGetPowerUsage).
        power_w=power_mw / 1000 if power_mw is not None else None,
    )


def power_limit_w(nv: Any, handle: Any) -> float | None:
    limit = optional(nv, "nvmlDeviceGetEnforcedPowerLimit", handle)
    return limit / 1000 if limit is not None else None


@dataclass(frozen=True, slots=True)
class SystemFacts:
    driver_version: str
    cuda_driver_version: str | None  # "12.4"


def system_facts(nv: Any) -> SystemFacts:
    cuda = optional(nv, "nvmlSystemGetCudaDriverVersion")
    return SystemFacts(driver_version=_text(nv.nvmlSystemGetDriverVersion()),
                       cuda_driver_version=cuda_version_text(cuda))


@dataclass(frozen=True, slots=True)
class XidEvent:
    """An XID critical-error event from NVML's event set; ``gpu`` is the NVML index
    (None when the event names a device this watcher does not hold)."""

    xid: int
    gpu: int | None


@dataclass
class XidWatcher:
    """An NVML event set that collects XID critical-error events in a thread.

    nvmlEventSetWait_v2 blocks up to a timeout and raises NVML_ERROR_TIMEOUT when
    nothing came; the thread loops on short waits so ``stop`` returns quickly.
    ``note`` says why nothing can be watched (a GPU that refuses registration).
    """

    nv: Any
    handles: list[Any]
    wait_ms: int = 200
    events: list[XidEvent] = field(default_factory=list)
    note: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _set: Any = None

    def start(self) -> None:
        nv = self.nv
        try:
            self._set = nv.nvmlEventSetCreate()
            for handle in self.handles:
                nv.nvmlDeviceRegisterEvents(handle, NVML_EVENT_TYPE_XID_CRITICAL_ERROR,
                                            self._set)
        except (nv.NVMLError, AttributeError) as exc:
            self.note = f"XID events cannot be watched: {exc}"
            return
        self._thread = threading.Thread(target=self._loop, name="xid-watcher", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        nv = self.nv
        wait = getattr(nv, "nvmlEventSetWait_v2", None) or nv.nvmlEventSetWait
        while not self._stop.is_set():
            try:
                data = wait(self._set, self.wait_ms)
            except nv.NVMLError as exc:
                if getattr(exc, "value", None) == NVML_ERROR_TIMEOUT:
                    continue
                self.note = f"XID event wait failed: {exc}"
                return
            self.events.append(XidEvent(xid=int(data.eventData),
                                        gpu=self._index_of(getattr(data, "device", None))))

    def _index_of(self, handle: Any) -> int | None:
        """The GPU an event names. Not `handle in self.handles`: pynvml hands out a
        new ctypes pointer per call, and pointers compare by identity, so the
        event's handle never equals ours; nvmlDeviceGetIndex asks the driver."""
        if handle is None:
            return None
        try:
            return int(self.nv.nvmlDeviceGetIndex(handle))
        except (self.nv.NVMLError, AttributeError, TypeError, ValueError):
            return None

    def stop(self) -> list[XidEvent]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._set is not None:
            with contextlib.suppress(self.nv.NVMLError):
                self.nv.nvmlEventSetFree(self._set)
            self._set = None
        return list(self.events)


# "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus." (r470+);
# older drivers print "NVRM: Xid (0000:03:00): 13, ..." (NVIDIA XID errors guide).
_XID_RE = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9a-fA-F:.]+)\): (?P<xid>\d+)")


@dataclass(frozen=True, slots=True)
class KernelXid:
    """One XID line of the kernel log: the bus it names, the XID, the line (cut)."""

    bus: str
    xid: int
    line: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_kernel_xids(text: str) -> list[KernelXid]:
    """XID lines of a kernel log: bus id, XID number and the line itself."""
    found: list[KernelXid] = []
    for line in text.splitlines():
        match = _XID_RE.search(line)
        if match:
            found.append(KernelXid(bus=match.group("bus").lower(),
                                   xid=int(match.group("xid")), line=line.strip()[:300]))
    return found


def bus_matches(kernel_bus: str, nvml_bus_id: str | None) -> bool:
    """The kernel's "0000:3b:00" against NVML's "00000000:3B:00.0" (domain widths differ)."""
    if not nvml_bus_id:
        return False
    k = kernel_bus.lower().split(":")
    n = nvml_bus_id.lower().split(".")[0].split(":")
    return len(k) >= 2 and len(n) >= 2 and k[-2:] == n[-2:] and int(k[0], 16) == int(n[0], 16)


# NVML_CLOCK_SM (nvml.h nvmlClockType_t): the streaming-multiprocessor clock.
NVML_CLOCK_SM = 1


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one burn-in sample; None is a reading NVML could not give."""

    index: int
    temp_c: float | None = None
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    throttle: tuple[str, ...] | None = None  # the active clock event reasons, by name
    ecc_corrected: float | None = None  # volatile totals
    ecc_uncorrected: float | None = None
    pcie_replays: float | None = None
    xids: tuple[int, ...] = ()  # XIDs that arrived since the previous sample

    def to_dict(self) -> dict[str, Any]:
        """The series record's form (burnin/health.py reads it back): readings NVML
        could not give are left out, lists for tuples."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


class BurninSampler:
    """GPU health for the burn-in supervisor: one NVML session held for the run.

    ``read()`` returns, per GPU: temperature, power, SM clock, the clock event
    reasons by name, the volatile ECC totals, the PCIe replay counter and the XIDs
    that arrived since the previous call (an XidWatcher on an NVML event set).
    Calling the sampler gives the same as the dicts the series file records.
    """

    def __init__(self) -> None:
        self._context = session()
        self.nv = self._context.__enter__()
        count = int(self.nv.nvmlDeviceGetCount())
        if count == 0:
            self.close()
            raise NotApplicable("NVML sees no GPU")
        self.handles = [self.nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self.watcher = XidWatcher(self.nv, self.handles)
        self.watcher.start()
        self._seen_xids = 0

    def __call__(self) -> list[dict[str, Any]]:
        return [reading.to_dict() for reading in self.read()]

    def read(self) -> list[GpuReading]:
        nv = self.nv
        events = list(self.watcher.events)
        new, self._seen_xids = events[self._seen_xids:], len(events)
        out = []
        for index, handle in enumerate(self.handles):
            reading = sample(nv, handle)
            clock = optional(nv, "nvmlDeviceGetClockInfo", handle, NVML_CLOCK_SM)
            ecc = [optional(nv, "nvmlDeviceGetTotalEccErrors", handle, error_type,
                            NVML_VOLATILE_ECC)
                   for error_type in (NVML_MEMORY_ERROR_CORRECTED, NVML_MEMORY_ERROR_UNCORRECTED)]
            replays = optional(nv, "nvmlDeviceGetPcieReplayCounter", handle)
            reasons = reading.clock_event_reasons
            out.append(GpuReading(
                index=index,
                temp_c=_float(reading.temperature),
                power_w=_float(reading.power_w),
                sm_clock_mhz=_float(clock),
                throttle=tuple(reason_names(reasons)) if reasons is not None else None,
                ecc_corrected=_float(ecc[0]),
                ecc_uncorrected=_float(ecc[1]),
                pcie_replays=_float(replays),
                xids=tuple(e.xid for e in new if e.gpu == index)))
        return out

    def close(self) -> None:
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.stop()
        self._context.__exit__(None, None, None)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def burnin_sampler() -> BurninSampler:
    """The burn-in's GPU sampler; raises ToolMissing / NotApplicable without GPUs."""
    return BurninSampler()


def indices_by_uuid() -> dict[str, int]:
    """GPU UUID ("GPU-...", as NVML spells it) -> NVML index; {} when NVML cannot tell.

    Labels a GPU that torch names by its own index (relative to the process's
    CUDA_VISIBLE_DEVICES) with the index gpu.health uses for the same GPU."""
    try:
        with session() as nv:
            out = {}
            for index in range(int(nv.nvmlDeviceGetCount())):
                handle = nv.nvmlDeviceGetHandleByIndex(index)
                out[_text(nv.nvmlDeviceGetUUID(handle))] = index
            return out
    except (ToolMissing, NotApplicable, ToolFailed):
        return {}
