"""gpu.pcie_bandwidth: host-to-device and device-to-host copies against the link's peak.

Each GPU's child binds itself to the CPUs of the GPU's NUMA node (sysfs
``/sys/bus/pci/devices/<bus>/local_cpulist``) before it allocates its pinned
buffer, so the buffer's pages are placed on that node (Linux first-touch policy)
and the copy does not cross the socket interconnect: what is measured is the
GPU's own link (nvbandwidth and NCCL bind the same way). Copies are timed with
CUDA events (kernels.CudaEventTimer), pinned, one direction at a time.

Two phases: every GPU alone, then all at once. Alone, a GPU must reach a fraction
(0.8 in gpu-node) of its link's peak: lanes x the per-lane rate of its
generation after line encoding (PCI-SIG, as tabled in
https://en.wikipedia.org/wiki/PCI_Express#Comparison_table: 2.5 and 5 GT/s with
8b/10b, 8/16/32 GT/s with 128b/130b, 64 GT/s in FLIT mode, 242 of 256 bytes).
TLP headers take the rest (a 256-byte payload carries about 24 bytes of framing),
so a healthy link reaches about 0.85 of that peak. All at once, GPUs behind one
PCIe switch share its uplink (HGX boards put two GPUs on each switch), so the
all-at-once figure is shown against the same peak but only warned about.

The link is read through NVML while the copies run: a link that trains to a lower
generation or fewer lanes under load than it can (its max) FAILs, whatever the
bandwidth (a narrower link may still pass a loose fraction).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import CheckContext, MetricSpec
from bench_agent.checks.byte_size import ByteSize
from bench_agent.checks.gpu.diag import DiagCheck, gpu_label
from bench_agent.checks.gpu.kernels import MIB, Device, gpu_kernel
from bench_agent.core.model import Measurement
from bench_agent.core.sysfs import read_line
from bench_agent.core.units import Unit
from bench_agent.tools import nvml

# Bytes per second per lane after line encoding, by PCIe generation (module docstring).
LANE_BYTES_PER_S: dict[int, float] = {
    1: 2.5e9 * 8 / 10 / 8,
    2: 5e9 * 8 / 10 / 8,
    3: 8e9 * 128 / 130 / 8,
    4: 16e9 * 128 / 130 / 8,
    5: 32e9 * 128 / 130 / 8,
    6: 64e9 * 242 / 256 / 8,
}
DIRECTIONS = ("h2d", "d2h")
PHASES = ("alone", "all")


def link_peak(generation: int | None, width: int | None) -> float | None:
    """Bytes/s of a link of ``width`` lanes at ``generation``; None when unknown."""
    if generation is None or width is None or generation not in LANE_BYTES_PER_S:
        return None
    return LANE_BYTES_PER_S[generation] * width


def parse_cpulist(text: str) -> list[int]:
    """ "0-3,8,10-11" (the kernel's cpulist format, Documentation/admin-guide/cputopology.rst)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def numa_cpus(root: Path, bus_id: str) -> tuple[int | None, list[int]]:
    """(NUMA node, its CPUs) of a PCI device, from sysfs; (None, []) when the
    kernel does not say (a single-node machine reports node -1)."""
    folder = root / "sys/bus/pci/devices" / bus_id.lower()
    node_text = read_line(folder / "numa_node")
    node = int(node_text) if node_text and node_text.lstrip("-").isdigit() else None
    cpus = parse_cpulist(read_line(folder / "local_cpulist") or "")
    return (node if node is not None and node >= 0 else None), cpus


def _bind_to_gpu_node(torch: Any, device: str, root: Path) -> dict[str, Any]:
    """Bind this process to the GPU's NUMA-local CPUs; what was done, for the report."""
    if not device.startswith("cuda"):
        return {"numa": "not bound: no GPU (CPU run)"}
    props = torch.cuda.get_device_properties(device)
    bus = (f"{getattr(props, 'pci_domain_id', 0):04x}:{props.pci_bus_id:02x}:"
           f"{props.pci_device_id:02x}.0")
    node, cpus = numa_cpus(root, bus)
    available = set(os.sched_getaffinity(0))
    usable = sorted(set(cpus) & available)
    if not usable:
        return {"numa": f"not bound: sysfs gives no usable local CPUs for {bus}",
                "bus": bus}
    os.sched_setaffinity(0, usable)
    return {"numa": "bound", "bus": bus, "numa_node": node, "cpus": len(usable)}


@gpu_kernel
def pcie_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    """Pinned host-to-device and device-to-host copies of one buffer, timed apart."""
    torch = dev.torch
    binding = _bind_to_gpu_node(torch, dev.name, Path(task.get("root", "/")))
    size = int(task.get("bytes", 256 * MIB))
    host = torch.empty(size, dtype=torch.uint8, pin_memory=dev.cuda)  # after binding
    host.fill_(0x5A)
    device = torch.empty(size, dtype=torch.uint8, device=dev.name)

    def h2d(_: int) -> None:
        device.copy_(host, non_blocking=True)

    def d2h(_: int) -> None:
        host.copy_(device, non_blocking=True)

    dev.barrier()
    out: dict[str, Any] = {"binding": binding, "bytes": size, "pinned": dev.cuda}
    for name, fn in (("h2d", h2d), ("d2h", d2h)):
        for i in range(int(task.get("warmup", 3))):
            fn(i)
        out[name] = dev.timer.measure(fn, int(task.get("iterations", 10)))
    return {"pcie": out}


class PcieParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # 256 MiB: ~10 ms on a Gen5 x16 link, far above the launch cost of one copy.
    bytes: ByteSize = Field(default=256 * MIB, ge=1 << 10)
    warmup: int = Field(default=3, ge=0)
    iterations: int = Field(default=10, ge=1)
    sample_interval: float = Field(default=0.2, gt=0)


class PcieBandwidthCheck(DiagCheck):
    name: ClassVar[str] = "gpu.pcie_bandwidth"
    description: ClassVar[str] = ("PCIe H2D/D2H per GPU (NUMA-local pinned), alone and all at "
                                  "once, against gen x width peak")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        *(MetricSpec(f"gpu.pcie_{d}_{phase}", Unit.BYTES_PER_SECOND,
                     f"{d} copy, pinned, NUMA-local, {text} (median)", per_device=True)
          for d in DIRECTIONS for phase, text in (("alone", "the GPU alone"),
                                                  ("all", "every GPU at once"))),
        MetricSpec("gpu.pcie_peak_fraction_alone", Unit.COUNT,
                   "slower direction alone / the link's gen x width peak", per_device=True),
        MetricSpec("gpu.pcie_peak_fraction_all", Unit.COUNT,
                   "slower direction with every GPU at once / the link's peak",
                   per_device=True),
        MetricSpec("gpu.pcie_link_gen_drop", Unit.COUNT,
                   "PCIe generations below the link's max under the copies",
                   higher_is_better=False, per_device=True),
        MetricSpec("gpu.pcie_link_width_drop", Unit.COUNT,
                   "PCIe lanes below the link's max under the copies",
                   higher_is_better=False, per_device=True),
    )
    params_model: ClassVar[type[BaseModel]] = PcieParams
    kernel: ClassVar[str] = "bench_agent.checks.gpu.pcie:pcie_kernel"

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        if not isinstance(p := params, PcieParams):
            raise TypeError(f"expected PcieParams, got {type(params).__name__}")
        return self.failing_on_gpus(ctx, lambda: self._run(ctx, p))

    def _run(self, ctx: CheckContext, p: PcieParams) -> list[Measurement]:
        gpus = self.gpus()
        indices = [index for index, _ in gpus]
        task = {"bytes": p.bytes, "warmup": p.warmup, "iterations": p.iterations,
                "root": str(ctx.root)}
        # Each phase's share of the deadline: n alone runs and one run of all.
        phase_ctx = CheckContext(root=ctx.root, output_dir=ctx.output_dir,
                                 timeout=ctx.timeout / (len(indices) + 1), options=ctx.options)
        with nvml.session() as nv:
            handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in indices]
            facts = [nvml.device_facts(nv, h, i) for i, h in zip(indices, handles, strict=True)]
            links: list[list[tuple[int | None, int | None]]] = [[] for _ in indices]
            results: dict[str, list[dict[str, Any]]] = {"alone": [], "all": []}
            failure: list[BaseException] = []

            def copies() -> None:
                try:
                    for gpu in gpus:
                        results["alone"] += self.run_kernel(phase_ctx, task, "gpu pcie copy",
                                                            [gpu])[1]
                    results["all"] = self.run_kernel(phase_ctx, task, "gpu pcie copy", gpus)[1]
                except BaseException as exc:  # re-raised below, in this thread
                    failure.append(exc)

            worker = threading.Thread(target=copies, daemon=True)
            worker.start()
            while True:
                for slot, handle in enumerate(handles):
                    s = nvml.sample(nv, handle)
                    links[slot].append((s.pcie_gen, s.pcie_width))
                if not worker.is_alive():
                    break
                time.sleep(p.sample_interval)
            worker.join()
        if failure:
            raise failure[0]
        out: list[Measurement] = []
        for slot, index in enumerate(indices):
            out += self._per_gpu(index, facts[slot], links[slot],
                                 {phase: results[phase][slot] for phase in PHASES})
        return out

    def _per_gpu(self, index: int, facts: nvml.GpuFacts,
                 links: list[tuple[int | None, int | None]],
                 by_phase: dict[str, dict[str, Any]]) -> list[Measurement]:
        from bench_agent.core.stats import summarize

        dev = f"gpu{index}"
        ident: dict[str, Any] = {
            "uuid": facts.uuid, "serial": facts.serial, "pci_bus_id": facts.pci_bus_id,
            "gpu": gpu_label(index, {"uuid": facts.uuid, "serial": facts.serial})}
        peak = link_peak(facts.pcie_gen_max, facts.pcie_width_max)
        link: dict[str, Any] = {"gen_max": facts.pcie_gen_max,
                                "width_max": facts.pcie_width_max, "peak_bytes_per_s": peak}
        out: list[Measurement] = []
        for phase in PHASES:
            found = by_phase[phase]["pcie"]
            rates: dict[str, float] = {}
            for direction in DIRECTIONS:
                samples = [found["bytes"] / s for s in found[direction]]
                summary = summarize(samples)
                rates[direction] = summary.median
                out.append(Measurement(
                    check=self.name, metric=f"gpu.pcie_{direction}_{phase}",
                    value=summary.median, unit=Unit.BYTES_PER_SECOND, device=dev,
                    samples=tuple(samples), unstable=summary.unstable, tool="torch",
                    stats=summary.to_dict(),
                    params={**ident, **link, "bytes": found["bytes"], "pinned": found["pinned"],
                            **found["binding"]}))
            if peak:
                slower = min(rates, key=lambda d: rates[d])
                out.append(self.m(f"gpu.pcie_peak_fraction_{phase}", rates[slower] / peak,
                                  device=dev, **ident, **link, slower_direction=slower,
                                  bytes_per_s=rates[slower]))
        gens = [g for g, _ in links if g is not None]
        widths = [w for _, w in links if w is not None]
        # The highest generation seen: links leave their idle low speed once copies
        # start, and the children spend their first seconds importing torch.
        if gens and facts.pcie_gen_max:
            out.append(self.m("gpu.pcie_link_gen_drop", facts.pcie_gen_max - max(gens),
                              device=dev, tool="nvml", **ident, gen_seen=max(gens),
                              gen_max=facts.pcie_gen_max, samples=len(gens)))
        if widths and facts.pcie_width_max:
            out.append(self.m("gpu.pcie_link_width_drop", facts.pcie_width_max - min(widths),
                              device=dev, tool="nvml", **ident, width_seen=min(widths),
                              width_max=facts.pcie_width_max, samples=len(widths)))
        return out
