"""What the GPU diagnostics (memtest, sdc, power, pcie, p2p) share.

Each diagnostic is a check whose kernel runs on every GPU at once through
kernels.run_on_devices (one child per GPU), like gpu.matmul and gpu.hbm. The
runner is injected: on a node it is run_on_devices; tests pass one that calls
kernels.bench_device in this process on CPU torch (the real kernel code, with a
fake timer or a corruption hook where the hardware cannot be had here).

The names a verdict must show (serial and UUID of a GPU) come from NVML, read once
per run by index: CUDA indices match NVML's because run_on_devices orders devices
by PCI bus id (CUDA_DEVICE_ORDER=PCI_BUS_ID).

checks.py imports these modules for its CHECKS tuple, so what they take from it is
imported inside functions (a child that imports a kernel module first must not
import checks.py half-way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from bench_agent.checks.base import Check, CheckContext
from bench_agent.core.errors import CheckError, NotApplicable, ToolMissing
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit
from bench_agent.tools import nvml

# (devices "cuda:N", task, timeout in s) -> one result per device, in order.
DeviceRunner = Callable[[list[str], dict[str, Any], float], list[dict[str, Any]]]
# The GPUs a check runs on: (the index that labels it, "gpuN", and the torch device
# its child is given, "cuda:N").
GpuLister = Callable[[], list[tuple[int, str]]]


def default_runner(devices: list[str], task: dict[str, Any], timeout: float
                   ) -> list[dict[str, Any]]:
    from bench_agent.checks.gpu.kernels import run_on_devices

    return run_on_devices(devices, task, timeout)


def default_gpus() -> list[tuple[int, str]]:
    """Every GPU torch sees, labelled by its NVML index (found by UUID, so the labels
    are gpu.health's even under a CUDA_VISIBLE_DEVICES that hides some)."""
    from bench_agent.checks.gpu.checks import _gpus

    return _gpus()


def gpu_identities(indices: list[int] | None
                   ) -> tuple[dict[int, dict[str, Any]], str | None]:
    """{index: uuid, serial, name, pci_bus_id} from NVML (of every GPU NVML sees when
    ``indices`` is None), and None; or ({}, why not).

    A diagnostic still runs without NVML (torch alone measures); its findings then
    name the GPU by index only, and the note says why.
    """
    try:
        with nvml.session() as nv:
            found: dict[int, dict[str, Any]] = {}
            wanted = range(int(nv.nvmlDeviceGetCount())) if indices is None else indices
            for index in wanted:
                facts = nvml.device_facts(nv, nv.nvmlDeviceGetHandleByIndex(index), index)
                found[index] = {"uuid": facts.uuid, "serial": facts.serial,
                                "name": facts.name, "pci_bus_id": facts.pci_bus_id}
            return found, None
    except (ToolMissing, NotApplicable, CheckError) as exc:
        return {}, f"GPU identities not read: {exc}"


def gpu_label(index: int, ident: dict[str, Any]) -> str:
    """ "gpu3 (serial 1654321003, GPU-...)": what an SRE needs to pull the right board."""
    if not ident:
        return f"gpu{index}"
    return f"gpu{index} (serial {ident.get('serial') or 'unknown'}, {ident.get('uuid')})"


def raise_errors(results: list[dict[str, Any]], what: str) -> None:
    from bench_agent.checks.gpu.checks import _raise_errors

    _raise_errors(results, what)


class DiagCheck(Check):
    """A GPU diagnostic: its kernel run on every GPU at once through the runner."""

    domain: ClassVar[str] = "gpu"
    kernel: ClassVar[str]

    def __init__(self, runner: DeviceRunner | None = None, gpus: GpuLister | None = None
                 ) -> None:
        self.runner = runner or default_runner
        self.gpus = gpus or default_gpus
        self._injected = runner is not None

    def available(self, ctx: CheckContext) -> str | None:
        if self._injected:
            return None
        from bench_agent.checks.gpu.checks import torch_gpu_reason
        from bench_agent.checks.gpu.presence import skip_or_fail

        reason = torch_gpu_reason()
        return skip_or_fail(ctx.root, reason) if reason is not None else None

    def failing_on_gpus(self, ctx: CheckContext,
                        run: Callable[[], list[Measurement]]) -> list[Measurement]:
        """``run()``, where a tool or driver missing (NVML for the link state or the
        power readings) is a FAIL on a node with NVIDIA GPUs, not a SKIP; with an
        injected runner (tests) the error stands as raised."""
        try:
            return run()
        except (ToolMissing, NotApplicable) as exc:
            if not self._injected:
                from bench_agent.checks.gpu.presence import skip_or_fail

                skip_or_fail(ctx.root, str(exc))  # raises ToolFailed on a node with GPUs
            raise

    def run_kernel(self, ctx: CheckContext, task: dict[str, Any], what: str,
                   gpus: list[tuple[int, str]] | None = None
                   ) -> tuple[list[int], list[dict[str, Any]]]:
        """The kernel on the given GPUs (all by default) at once: their label indices
        and results; ToolFailed naming every GPU whose child failed."""
        gpus = self.gpus() if gpus is None else gpus
        if not gpus:
            raise NotApplicable("torch sees no CUDA GPU")
        results = self.runner([device for _, device in gpus], {"kernel": self.kernel, **task},
                              ctx.timeout * 0.9)
        raise_errors(results, what)
        return [index for index, _ in gpus], results

    def m(self, metric: str, value: float, unit: Unit = Unit.COUNT, device: str = "",
          tool: str = "torch", **params: Any) -> Measurement:
        return Measurement(check=self.name, metric=metric, value=value, unit=unit,
                           device=device, tool=tool, params=params)
