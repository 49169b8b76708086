"""gpu.p2p_bandwidth: GPU-to-GPU copies over every pair, one way and both ways.

One child sees every GPU (``all_gpus_runner``: the kernels module's child, started
through the subprocess seam like run_on_devices' children, but without a
CUDA_VISIBLE_DEVICES of its own, so it inherits the parent's GPUs) and copies a
buffer from each GPU to each other GPU (the matrix of nvbandwidth's
device_to_device_memcpy_write_ce), then both ways at once for each pair (its
..._bidirectional_memcpy_ce). Copies go through the copy engines as
torch's cross-device copy_ issues them, with peer access where the driver grants
it (torch.cuda.can_device_access_peer; without it the copy is staged through the
host, which the report says). Each timed call runs its copies and synchronizes
both GPUs: events of one GPU cannot time work that ends on another.

The kernel names GPUs by PCI bus id (from torch's device properties), which the
check maps to NVML indices, so the matrix is right whatever order CUDA counts
the GPUs in. The node is judged by its weakest pair, named in the verdict, against
the model's figures ``gpu.p2p_oneway_min`` and ``gpu.p2p_bidir_min`` in
suites/baselines/ (H100 SXM has them, from a public p2pBandwidthLatencyTest run;
for a model without them the fractions SKIP), and every GPU by the weakest pair
it is in.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import CheckContext, MetricSpec
from bench_agent.checks.byte_size import ByteSize
from bench_agent.checks.gpu.diag import DeviceRunner, DiagCheck, GpuLister, gpu_identities
from bench_agent.checks.gpu.kernels import MIB, Device, PerfCounterTimer, gpu_kernel
from bench_agent.config import baselines
from bench_agent.core.errors import NotApplicable, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.stats import summarize
from bench_agent.core.units import Unit
from bench_agent.tools import nvml


def all_gpus_runner(devices: list[str], task: dict[str, Any], timeout: float
                    ) -> list[dict[str, Any]]:
    """One child of ``python -m bench_agent.checks.gpu.kernels`` that sees every GPU of
    this process (``devices`` is ignored but for the result's name); its result, or
    {"error": ...}. Stopped with what it started at the timeout or an interrupt."""
    import contextlib

    from bench_agent.checks.gpu.kernels import resolve_kernel
    from bench_agent.core.process import DEVNULL, TOOL_GRACE_S, spawn

    resolve_kernel(str(task.get("kernel", "")))
    with tempfile.TemporaryDirectory(prefix="bench-agent-p2p-") as tmp, \
            contextlib.ExitStack() as owned:
        out = Path(tmp) / "result.json"
        # PCI bus order, as run_on_devices' children: indices then match NVML's when
        # the parent restricts nothing (the check maps by bus id either way).
        env = {**os.environ, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        cmd = [sys.executable, "-m", "bench_agent.checks.gpu.kernels", "--task",
               json.dumps({**task, "device": "cuda:0"}), "--out", str(out)]
        child = owned.enter_context(spawn(cmd, env=env, stdout=DEVNULL, grace=TOOL_GRACE_S))
        done = child.finish(timeout=timeout)
        if done.timed_out:
            return [{"device": "all", "error": f"timed out after {timeout:g} s"}]
        if done.returncode != 0 or not out.is_file():
            return [{"device": "all",
                     "error": done.stderr.strip()[-800:] or f"exit code {done.returncode}"}]
        result: dict[str, Any] = json.loads(out.read_text())
        result["device"] = "all"
        return [result]


def _bus(torch: Any, device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    props = torch.cuda.get_device_properties(device)
    return (f"{getattr(props, 'pci_domain_id', 0):04x}:{props.pci_bus_id:02x}:"
            f"{props.pci_device_id:02x}")


@gpu_kernel
def p2p_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    """The matrix over every ordered pair (one way) and every pair (both ways)."""
    torch = dev.torch
    devices = list(task.get("devices") or [])
    if dev.cuda:
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if len(devices) < 2:
        return {"p2p": {"devices": [], "pairs": [], "note": "fewer than two GPUs"}}
    size = int(task.get("bytes", 256 * MIB))
    copies = int(task.get("copies_per_call", 4))
    src = [torch.empty(size, dtype=torch.uint8, device=d).fill_(i + 1)
           for i, d in enumerate(devices)]
    dst = [torch.empty(size, dtype=torch.uint8, device=d) for d in devices]
    streams = [torch.cuda.Stream(device=d) for d in devices] if dev.cuda else []
    # Both GPUs synchronized inside each timed call: CUDA events cannot span two GPUs.
    timer = PerfCounterTimer() if dev.cuda else dev.timer

    def copy(a: int, b: int) -> None:
        if dev.cuda:
            with torch.cuda.stream(streams[a]):
                for _ in range(copies):
                    dst[b].copy_(src[a], non_blocking=True)
        else:
            for _ in range(copies):
                dst[b].copy_(src[a])

    def sync(*ranks: int) -> None:
        if dev.cuda:
            for r in ranks:
                torch.cuda.synchronize(devices[r])

    warmup, iterations = int(task.get("warmup", 2)), int(task.get("iterations", 5))
    pairs: list[dict[str, Any]] = []
    dev.barrier()
    for a, b in itertools.permutations(range(len(devices)), 2):
        def one_way(_: int, a: int = a, b: int = b) -> None:
            copy(a, b)
            sync(a, b)

        for i in range(warmup):
            one_way(i)
        peer = bool(torch.cuda.can_device_access_peer(a, b)) if dev.cuda else None
        pairs.append({"src": a, "dst": b, "peer": peer, "kind": "oneway",
                      "bytes": size * copies, "seconds": timer.measure(one_way, iterations)})
    for a, b in itertools.combinations(range(len(devices)), 2):
        def both(_: int, a: int = a, b: int = b) -> None:
            copy(a, b)
            copy(b, a)
            sync(a, b)

        for i in range(warmup):
            both(i)
        pairs.append({"src": a, "dst": b, "kind": "bidir", "bytes": 2 * size * copies,
                      "seconds": timer.measure(both, iterations)})
    for i, tensor in enumerate(dst):  # what arrived last is the last sender's pattern
        if not bool((tensor == tensor[0]).all()):
            raise RuntimeError(f"{devices[i]}: a peer copy delivered mixed bytes")
    return {"p2p": {"devices": [{"rank": i, "bus": _bus(torch, d)}
                                for i, d in enumerate(devices)], "pairs": pairs}}


class P2pParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # 256 MiB x 4 copies: ~3 ms per call at H100 NVLink speed, far above the launch
    # and synchronize cost (tens of microseconds).
    bytes: ByteSize = Field(default=256 * MIB, ge=1 << 10)
    copies_per_call: int = Field(default=4, ge=1)
    warmup: int = Field(default=2, ge=0)
    iterations: int = Field(default=5, ge=1)
    # CPU runs only (tests): how many CPU "devices" the kernel copies between.
    cpu_devices: int = Field(default=0, ge=0)


KINDS = {"oneway": "one way", "bidir": "both ways at once"}


class P2pBandwidthCheck(DiagCheck):
    name: ClassVar[str] = "gpu.p2p_bandwidth"
    description: ClassVar[str] = ("GPU-to-GPU copy bandwidth, every pair one way and both "
                                  "ways; the weakest pair named")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        *(spec for kind, text in KINDS.items() for spec in (
            MetricSpec(f"gpu.p2p_{kind}_min", Unit.BYTES_PER_SECOND,
                       f"GPU-to-GPU copy {text}, the weakest pair of the node"),
            MetricSpec(f"gpu.p2p_{kind}_min_per_gpu", Unit.BYTES_PER_SECOND,
                       f"GPU-to-GPU copy {text}, the weakest pair this GPU is in",
                       per_device=True),
            MetricSpec(f"gpu.p2p_{kind}_min_baseline_fraction", Unit.COUNT,
                       f"p2p_{kind}_min / the model's figure"))),
        MetricSpec("gpu.p2p_pairs_without_peer_access", Unit.COUNT,
                   "ordered GPU pairs the driver grants no peer access (host-staged copies)",
                   higher_is_better=False),
    )
    params_model: ClassVar[type[BaseModel]] = P2pParams
    kernel: ClassVar[str] = "bench_agent.checks.gpu.p2p:p2p_kernel"

    def __init__(self, runner: DeviceRunner | None = None, gpus: GpuLister | None = None,
                 baselines_folder: Path | None = None) -> None:
        super().__init__(runner or all_gpus_runner, gpus)
        self._injected = runner is not None
        self.baselines_folder = baselines_folder  # None: suites/baselines/

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        if not isinstance(p := params, P2pParams):
            raise TypeError(f"expected P2pParams, got {type(params).__name__}")
        count = len(self.gpus())
        if count < 2 and not p.cpu_devices:
            raise NotApplicable(f"{count} GPU: no pair to copy between")
        task = {"kernel": self.kernel, "bytes": p.bytes, "copies_per_call": p.copies_per_call,
                "warmup": p.warmup, "iterations": p.iterations,
                "devices": ["cpu"] * p.cpu_devices}
        [result] = self.runner(["all"], task, ctx.timeout * 0.9)
        if "error" in result:
            raise ToolFailed("gpu p2p copy", str(result["error"]))
        found = result["p2p"]
        if not found["pairs"]:
            raise NotApplicable(found.get("note", "no GPU pair"))
        ranks = [d["rank"] for d in found["devices"]]
        # Every GPU NVML sees: under a CUDA_VISIBLE_DEVICES the child's GPUs are some
        # of them, found by bus id.
        idents, note = gpu_identities(None)
        index_of = _nvml_indices(found["devices"], idents)
        label = {r: f"gpu{index_of.get(r, r)}" for r in ranks}
        model = result.get("name") or next(
            (i.get("name") for i in idents.values() if i.get("name")), "")
        baseline = baselines.baseline_for(model, self.baselines_folder) if model else None
        out: list[Measurement] = []
        for kind in KINDS:
            rates: dict[tuple[int, int], float] = {}
            for pair in (q for q in found["pairs"] if q["kind"] == kind):
                rates[(pair["src"], pair["dst"])] = summarize(
                    [pair["bytes"] / s for s in pair["seconds"]]).median
            arrow = "->" if kind == "oneway" else "<->"
            matrix = {f"{label[a]}{arrow}{label[b]}": r for (a, b), r in rates.items()}
            (wa, wb), weakest = min(rates.items(), key=lambda kv: kv[1])
            node = Measurement(
                check=self.name, metric=f"gpu.p2p_{kind}_min", value=weakest,
                unit=Unit.BYTES_PER_SECOND, tool="torch",
                params={"weakest_pair": f"{label[wa]}{arrow}{label[wb]}",
                        "best": max(rates.values()), "matrix": matrix, "model": model,
                        "identity_note": note, "bytes_per_call": found["pairs"][0]["bytes"]})
            out.append(node)
            if (frac := baselines.fraction(node, baseline)) is not None:
                out.append(frac)
            for r in ranks:
                mine = {k: v for k, v in rates.items() if r in k}
                (a, b), low = min(mine.items(), key=lambda kv: kv[1])
                ident = idents.get(index_of.get(r, r), {})
                out.append(Measurement(
                    check=self.name, metric=f"gpu.p2p_{kind}_min_per_gpu", value=low,
                    unit=Unit.BYTES_PER_SECOND, device=label[r], tool="torch",
                    params={"weakest_pair": f"{label[a]}{arrow}{label[b]}",
                            "uuid": ident.get("uuid"), "serial": ident.get("serial")}))
        no_peer = [f"{label[q['src']]}->{label[q['dst']]}" for q in found["pairs"]
                   if q["kind"] == "oneway" and q.get("peer") is False]
        if any(q.get("peer") is not None for q in found["pairs"]):
            out.append(Measurement(check=self.name, metric="gpu.p2p_pairs_without_peer_access",
                                   value=len(no_peer), unit=Unit.COUNT, tool="torch",
                                   params={"pairs": no_peer[:64]}))
        return out


def _nvml_indices(devices: list[dict[str, Any]], idents: dict[int, dict[str, Any]]
                  ) -> dict[int, int]:
    """Kernel rank -> NVML index, by PCI bus id; ranks without a match keep their number."""
    found: dict[int, int] = {}
    for d in devices:
        if d.get("bus") is None:
            continue
        for index, ident in idents.items():
            if nvml.bus_matches(d["bus"], ident.get("pci_bus_id")):
                found[d["rank"]] = index
    return found
