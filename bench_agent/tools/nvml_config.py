"""The GPUs' configuration through NVML: what nodes of one type must share.

Read once per inventory, through the NVML seam of tools/nvml.py (``session``,
``optional``: a call the GPU or driver cannot answer, NOT_SUPPORTED, gives None).
Every call and its unit are NVML's (NVML API reference, "Device Queries",
https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html):

- nvmlDeviceGetVbiosVersion: the VBIOS version string;
- nvmlDeviceGetPersistenceMode: NVML_FEATURE_ENABLED (1) or DISABLED (0);
- nvmlDeviceGetEccMode: (current, pending), 1 = enabled;
- nvmlDeviceGetMigMode: (current, pending), NVML_DEVICE_MIG_ENABLE = 1; a GPU
  without MIG (L40S, L4, A10, V100) answers NOT_SUPPORTED: MIG is then off;
- nvmlDeviceGetGpuFabricInfo: the GPU's fabric state (NVML_GPU_FABRIC_STATE_*:
  0 not supported, 1 not started, 2 in progress, 3 completed) and status, which the
  fabric manager sets on NVSwitch systems; CUDA cannot use a GPU whose fabric is
  not completed (NVIDIA Fabric Manager user guide). Read from the GPU, not from the
  process table, it is right inside a container too;
- nvmlDeviceGetPowerManagementLimit / ...DefaultLimit: milliwatts;
- nvmlDeviceGetApplicationsClock / nvmlDeviceGetDefaultApplicationsClock with
  NVML_CLOCK_GRAPHICS (0) and NVML_CLOCK_MEM (2): MHz.
"""

from __future__ import annotations

import ctypes
from typing import Any

from bench_agent.core.errors import ToolFailed
from bench_agent.core.inventory import GpuConfig
from bench_agent.tools import nvml

NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_MEM = 2
_ENABLED = 1
_FABRIC_STATES = {0: "not supported", 1: "not started", 2: "in progress", 3: "completed"}
_NVML_SUCCESS = 0


def _flag(value: Any) -> bool | None:
    return None if value is None else int(value) == _ENABLED


def _pair_flags(value: Any) -> tuple[bool | None, bool | None]:
    if value is None:
        return None, None
    current, pending = value
    return _flag(current), _flag(pending)


def _int(nv: Any, function: str, *args: Any) -> int | None:
    value = nvml.optional(nv, function, *args)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolFailed(nvml.TOOL, f"{function} gave {value!r:.40}, not a whole number")
    return value


def _str(nv: Any, function: str, *args: Any) -> str | None:
    value = nvml.optional(nv, function, *args)
    return None if value is None else nvml._text(value)


def fabric_state(nv: Any, handle: Any) -> str:
    """The GPU's fabric state; "not supported" where NVML or the GPU has none."""
    info_type = getattr(nv, "c_nvmlGpuFabricInfo_t", None)
    if info_type is None:
        return "not supported"
    info = info_type()
    # pynvml passes its argument through to the C function, which takes a pointer.
    if nvml.optional(nv, "nvmlDeviceGetGpuFabricInfo", handle, ctypes.byref(info)) is None:
        return "not supported"
    state = _FABRIC_STATES.get(int(info.state), f"state {int(info.state)}")
    if state == "completed" and int(info.status) != _NVML_SUCCESS:
        return f"failed (NVML status {int(info.status)})"
    return state


def gpu_config(nv: Any, handle: Any, index: int) -> GpuConfig:
    ecc, ecc_pending = _pair_flags(nvml.optional(nv, "nvmlDeviceGetEccMode", handle))
    # NOT_SUPPORTED: a GPU without MIG, whose MIG is therefore off.
    mig, mig_pending = _pair_flags(nvml.optional(nv, "nvmlDeviceGetMigMode", handle)
                                   or (0, 0))
    pci = nvml.optional(nv, "nvmlDeviceGetPciInfo", handle)
    return GpuConfig(
        index=index,
        uuid=nvml._text(nv.nvmlDeviceGetUUID(handle)),
        name=_str(nv, "nvmlDeviceGetName", handle),
        pci_bus_id=nvml._text(pci.busId) if pci is not None else None,
        serial=_str(nv, "nvmlDeviceGetSerial", handle),
        vbios_version=_str(nv, "nvmlDeviceGetVbiosVersion", handle),
        persistence_mode=_flag(nvml.optional(nv, "nvmlDeviceGetPersistenceMode", handle)),
        ecc_enabled=ecc,
        ecc_pending_enabled=ecc_pending,
        mig_enabled=mig,
        mig_pending_enabled=mig_pending,
        fabric_state=fabric_state(nv, handle),
        power_limit_mw=_int(nv, "nvmlDeviceGetPowerManagementLimit", handle),
        power_limit_default_mw=_int(nv, "nvmlDeviceGetPowerManagementDefaultLimit", handle),
        app_clock_graphics_mhz=_int(nv, "nvmlDeviceGetApplicationsClock", handle,
                                    NVML_CLOCK_GRAPHICS),
        app_clock_graphics_default_mhz=_int(nv, "nvmlDeviceGetDefaultApplicationsClock",
                                            handle, NVML_CLOCK_GRAPHICS),
        app_clock_memory_mhz=_int(nv, "nvmlDeviceGetApplicationsClock", handle,
                                  NVML_CLOCK_MEM),
        app_clock_memory_default_mhz=_int(nv, "nvmlDeviceGetDefaultApplicationsClock",
                                          handle, NVML_CLOCK_MEM),
    )


def read_gpu_configs() -> tuple[tuple[GpuConfig, ...], str | None, str | None]:
    """(every GPU's configuration, the driver version, the CUDA driver version).

    ToolMissing without pynvml, NotApplicable when NVML cannot start (no driver):
    the inventory keeps the reason; other NVML errors are ToolFailed.
    """
    with nvml.session() as nv:
        facts = nvml.system_facts(nv)
        configs = tuple(gpu_config(nv, nv.nvmlDeviceGetHandleByIndex(i), i)
                        for i in range(int(nv.nvmlDeviceGetCount())))
    return configs, facts.driver_version, facts.cuda_driver_version
