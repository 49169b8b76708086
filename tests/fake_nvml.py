"""A fake pynvml module for tests, injected at the one NVML seam (tools/nvml.use_loader).

Each GPU is a FakeGpu whose fields are what NVML would answer; None means the GPU
answers NVML_ERROR_NOT_SUPPORTED. ``during_load`` lets a test change a GPU while
the health check's load runs (a link that drops lanes, a slowdown).
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        self.value = value
        super().__init__({2: "Invalid Argument", 3: "Not Supported", 9: "Driver Not Loaded",
                          10: "Timeout", 12: "NVML Shared Library Not Found"
                          }.get(value, f"error {value}"))


@dataclass(eq=False)  # two GPUs with the same readings are still two GPUs
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    memory: int = 85520809984  # 79.6 GiB, as an H100 80GB reports
    pcie_gen: int = 5
    pcie_gen_max: int = 5
    pcie_width: int = 16
    pcie_width_max: int = 16
    replays: int = 0
    reasons: int = 0
    temperature: int = 45
    power_mw: int = 350000
    limit_mw: int = 700000
    # SM clock in MHz (nvmlDeviceGetClockInfo(NVML_CLOCK_SM)); 1980 is an H100 SXM's
    # maximum boost clock (nvidia-smi -q, "Max Clocks: SM").
    sm_clock_mhz: int = 1980
    ecc: dict[tuple[int, int, int], int] = field(default_factory=dict)
    remap: tuple[int, int, int, int] | None = (0, 0, 0, 0)
    nvlink: list[int] | None = field(default_factory=lambda: [1] * 18)
    index: int = 0
    # nvmlDeviceGetViolationStatus(NVML_PERF_POLICY_THERMAL).violationTime, ns.
    thermal_violation_ns: int = 0
    # Configuration (tools/nvml_config.py). The defaults are what `nvidia-smi -q`
    # shows for an H100 80GB HBM3 on driver 535.183.01 (leptonai/gpud
    # nvidia-query/testdata/nvidia-smi-query.535.183.01.out.0.valid): VBIOS
    # 96.00.74.00.01, persistence Enabled, ECC Enabled/Enabled, 700 W current and
    # default limit, applications clocks 1980/2619 MHz, at their defaults.
    vbios: str | None = "96.00.74.00.01"
    persistence: int | None = 1
    ecc_mode: tuple[int, int] | None = (1, 1)
    mig_mode: tuple[int, int] | None = (0, 0)
    limit_default_mw: int | None = 700000
    app_clocks: tuple[int, int] | None = (1980, 2619)  # graphics, memory (MHz)
    app_clocks_default: tuple[int, int] | None = (1980, 2619)
    fabric: tuple[int, int] | None = (3, 0)  # (state, status): COMPLETED, NVML_SUCCESS
    xid_events: bool = True  # False: nvmlDeviceRegisterEvents answers NOT_SUPPORTED


class _FabricInfo(ctypes.Structure):
    # The fields of pynvml's c_nvmlGpuFabricInfo_t that are read (nvidia-ml-py
    # pynvml.py); the real one also holds clusterUuid and cliqueId.
    _fields_ = [("status", ctypes.c_int), ("state", ctypes.c_uint8)]


class FakeNvml:
    NVMLError = NVMLError
    c_nvmlGpuFabricInfo_t = _FabricInfo
    # True: a driver before the "V" calls, which answers NVML_ERROR_FUNCTION_NOT_FOUND
    # (13) for nvmlDeviceGetTemperatureV and nvmlDeviceGetCurrentClocksEventReasons
    # (nvidia-ml-py's _nvmlGetFunctionPointer raises it when libnvml lacks the symbol).
    legacy: bool = False
    # nvidia-ml-py wraps its string calls in convertStrBytes, which decodes the C
    # buffer to str (pynvml.py, 13.615.71 as installed here); releases before 11.5
    # returned the bytes. True: such an older binding.
    bytes_names: bool = False

    def __init__(self, gpus: list[FakeGpu] | None = None, init_error: int | None = None,
                 xids: list[tuple[int, int]] | None = None) -> None:
        self.gpus = gpus if gpus is not None else [FakeGpu(index=i) for i in range(8)]
        for i, gpu in enumerate(self.gpus):
            gpu.index = i
        self.init_error = init_error
        self.pending_xids = list(xids or [])  # (gpu index, xid) delivered by the event set
        self.during_load: Callable[[FakeNvml], None] | None = None
        self.calls: list[str] = []

    # -- lifecycle and system
    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if index >= len(self.gpus):
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        # The real pynvml builds a new ctypes pointer (c_nvmlDevice_t) on every
        # call, and ctypes pointers compare by identity: two handles of one GPU are
        # never equal. A new proxy per call reproduces that (nvidia-ml-py pynvml.py,
        # nvmlDeviceGetHandleByIndex: `device = c_nvmlDevice_t()` then byref).
        return _Handle(self.gpus[index])  # type: ignore[return-value]

    def nvmlDeviceGetIndex(self, h: FakeGpu) -> int:
        return h.index

    # -- identity
    def nvmlDeviceGetName(self, h: FakeGpu) -> str | bytes:
        return h.name.encode() if self.bytes_names else h.name

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return f"GPU-0000000{h.index}-1111-2222-3333-444444444444"

    def nvmlDeviceGetSerial(self, h: FakeGpu) -> str:
        return f"165432100{h.index}"

    def nvmlDeviceGetPciInfo(self, h: FakeGpu) -> Any:
        return SimpleNamespace(busId=f"00000000:{0x18 + 0x10 * h.index:02X}:00.0")

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:
        return SimpleNamespace(total=h.memory, free=h.memory, used=0)

    @staticmethod
    def _maybe(value: Any) -> Any:
        if value is None:
            raise NVMLError(3)
        return value

    # -- PCIe
    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: FakeGpu) -> int:
        return h.pcie_gen_max

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: FakeGpu) -> int:
        return h.pcie_width_max

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: FakeGpu) -> int:
        return h.pcie_gen

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: FakeGpu) -> int:
        return h.pcie_width

    def nvmlDeviceGetPcieReplayCounter(self, h: FakeGpu) -> int:
        return h.replays

    # -- ECC, remapping
    def nvmlDeviceGetEccMode(self, h: FakeGpu) -> tuple[int, int]:
        return self._maybe(h.ecc_mode)  # type: ignore[no-any-return]

    def nvmlDeviceGetTotalEccErrors(self, h: FakeGpu, error_type: int, counter: int) -> int:
        return sum(v for (e, c, _loc), v in h.ecc.items() if e == error_type and c == counter)

    def nvmlDeviceGetMemoryErrorCounter(self, h: FakeGpu, error_type: int, counter: int,
                                        location: int) -> int:
        return h.ecc.get((error_type, counter, location), 0)

    def nvmlDeviceGetRemappedRows(self, h: FakeGpu) -> tuple[int, int, int, int]:
        return self._maybe(h.remap)  # type: ignore[no-any-return]

    # -- samples
    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        if self.legacy:
            raise NVMLError(13)
        self.calls.append("clocks_event_reasons")
        return h.reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeGpu) -> int:
        self.calls.append("clocks_throttle_reasons")  # deprecated, same bits
        return h.reasons

    def nvmlDeviceGetTemperatureV(self, h: FakeGpu, sensor: int) -> int:
        if self.legacy:
            raise NVMLError(13)
        self.calls.append("temperature_v")
        return h.temperature

    def nvmlDeviceGetViolationStatus(self, h: FakeGpu, policy: int) -> Any:
        if policy != 1:  # only NVML_PERF_POLICY_THERMAL is modelled
            raise NVMLError(3)
        # nvmlViolationTime_t: referenceTime (us, CPU clock) and violationTime (ns).
        return SimpleNamespace(referenceTime=int(time.time() * 1e6),
                               violationTime=h.thermal_violation_ns)

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        self.calls.append("temperature")  # deprecated: "will be removed in CUDA 14.0"
        return h.temperature

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        return h.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        return h.limit_mw

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, clock_type: int) -> int:
        if clock_type != 1:  # only NVML_CLOCK_SM is faked
            raise NVMLError(2)
        return h.sm_clock_mhz

    # -- NVLink
    def nvmlDeviceGetNvLinkState(self, h: FakeGpu, link: int) -> int:
        if h.nvlink is None or link >= len(h.nvlink):
            raise NVMLError(3)
        return h.nvlink[link]

    def nvmlDeviceGetNvLinkErrorCounter(self, h: FakeGpu, link: int, counter: int) -> int:
        return 0

    # -- configuration (NVML "Device Queries"; NVML_CLOCK_GRAPHICS 0, NVML_CLOCK_MEM 2)
    def nvmlDeviceGetVbiosVersion(self, h: FakeGpu) -> str:
        return self._maybe(h.vbios)  # type: ignore[no-any-return]

    def nvmlDeviceGetPersistenceMode(self, h: FakeGpu) -> int:
        return self._maybe(h.persistence)  # type: ignore[no-any-return]

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> tuple[int, int]:
        return self._maybe(h.mig_mode)  # type: ignore[no-any-return]

    def nvmlDeviceGetPowerManagementLimit(self, h: FakeGpu) -> int:
        return h.limit_mw

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: FakeGpu) -> int:
        return self._maybe(h.limit_default_mw)  # type: ignore[no-any-return]

    def nvmlDeviceGetApplicationsClock(self, h: FakeGpu, clock: int) -> int:
        return self._maybe(h.app_clocks)[0 if clock == 0 else 1]  # type: ignore[no-any-return]

    def nvmlDeviceGetDefaultApplicationsClock(self, h: FakeGpu, clock: int) -> int:
        return self._maybe(h.app_clocks_default)[0 if clock == 0 else 1]  # type: ignore[no-any-return]

    def nvmlDeviceGetGpuFabricInfo(self, h: FakeGpu, info: Any) -> int:
        # The real call fills the structure its pointer names (ctypes.byref) and
        # answers NOT_SUPPORTED on a GPU without a fabric (before Hopper).
        state, status = self._maybe(h.fabric)
        info._obj.state, info._obj.status = state, status
        return 0

    # -- events
    def nvmlEventSetCreate(self) -> object:
        return object()

    def nvmlDeviceRegisterEvents(self, h: FakeGpu, types: int, event_set: object) -> None:
        # NVML_ERROR_NOT_SUPPORTED "if the platform does not support this feature or
        # some of requested event types" (NVML API reference, nvmlDeviceRegisterEvents).
        if not h.xid_events:
            raise NVMLError(3)
        self.calls.append(f"register_events:{h.index}")

    def nvmlEventSetWait_v2(self, event_set: object, timeout_ms: int) -> Any:
        if self.pending_xids:
            index, xid = self.pending_xids.pop(0)
            # The event's device is yet another new pointer, as in the real library.
            return SimpleNamespace(device=_Handle(self.gpus[index]), eventData=xid,
                                   eventType=0x8)
        time.sleep(0.01)  # a real wait blocks up to timeout_ms
        raise NVMLError(10)

    def nvmlEventSetFree(self, event_set: object) -> None:
        pass


class _Handle:
    """A device handle: a new object per call, equal only to itself (ctypes pointers
    compare by identity), reading through to its GPU."""

    __slots__ = ("_gpu",)

    def __init__(self, gpu: FakeGpu) -> None:
        self._gpu = gpu

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gpu, name)
