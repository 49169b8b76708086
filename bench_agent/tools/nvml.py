"""NVML through pynvml (the nvidia-ml-py package): which GPUs this node has.

Minimal for now: ``list_gpus`` for the inventory. pynvml is imported when a
function runs, never at import time, so `bench-agent --help` and every check
that needs no GPU work on a node without the package or the driver.

Foreign errors are translated here, at the boundary (errors.py):
    ImportError                  -> ToolMissing   (package absent: SKIP)
    NVMLError from nvmlInit      -> NotApplicable (no driver or no GPU: SKIP)
    NVMLError after a good init  -> ToolFailed    (a GPU that answers wrongly: ERROR)
"""

from __future__ import annotations

import contextlib
from typing import Any

from bench_agent.errors import NotApplicable, ToolFailed, ToolMissing

TOOL = "nvml"


def _text(value: Any) -> str:
    """NVML strings: bytes from older nvidia-ml-py releases, str from newer ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def list_gpus() -> list[dict[str, Any]]:
    """Index, name, UUID, total memory (bytes) and driver version of each GPU.

    Zero devices gives []. nvmlDeviceGetMemoryInfo().total is in bytes (NVML API
    reference, nvmlMemory_t: "Total physical device memory (in bytes)").
    """
    try:
        import pynvml
    except ImportError as exc:
        raise ToolMissing("nvidia-ml-py (pynvml)") from exc

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        # "Driver Not Loaded", "NVML Shared Library Not Found", ...: NVML's words.
        raise NotApplicable(f"NVML cannot start: {exc}") from exc
    try:
        driver_version = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus: list[dict[str, Any]] = []
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                {
                    "index": index,
                    "name": _text(pynvml.nvmlDeviceGetName(handle)),
                    "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                    "memory_total_bytes": int(memory.total),
                    "driver_version": driver_version,
                }
            )
        return gpus
    except pynvml.NVMLError as exc:
        raise ToolFailed(TOOL, str(exc)) from exc
    finally:
        # A failed shutdown must not hide the GPUs read or the error raised above.
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
