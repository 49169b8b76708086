"""GPU checks: NVML health under load, matmul FLOP/s, memory bandwidth.

gpu.health reads NVML before, during and after a short load (one bf16 matmul
process per GPU, gpu_bench.py): the PCIe link is read under load because an idle
GPU drops its link to a lower generation to save power (PCIe ASPM / NVIDIA's
dynamic link speed), so an idle "Gen1" is no finding. gpu.matmul and gpu.hbm run
gpu_bench.py on every GPU at once; the node value is its slowest GPU.

Per-GPU measurements carry device="gpuN" (N = the NVML index; a child is given
its GPU by UUID, launch.child_cuda_env, and labelled by that UUID's NVML index).
Without NVML, torch or a GPU, every check SKIPs with the reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import BurninVariant, Check, CheckContext, MetricSpec
from bench_agent.checks.gpu import health_rules, spread
from bench_agent.checks.gpu.burnin import MatmulBurninParams
from bench_agent.checks.gpu.dcgm import DcgmDiagCheck, NvbandwidthCheck

# The diagnostics of issue 14, section 2 (docs/gpu-diagnostics.md): they take this
# module's helpers inside their functions only, so importing them here is no cycle.
from bench_agent.checks.gpu.memtest import MemtestCheck
from bench_agent.checks.gpu.p2p import P2pBandwidthCheck
from bench_agent.checks.gpu.pcie import PcieBandwidthCheck
from bench_agent.checks.gpu.power import PowerStressCheck
from bench_agent.checks.gpu.presence import skip_or_fail
from bench_agent.checks.gpu.sdc import SdcCheck
from bench_agent.config import baselines
from bench_agent.core.errors import NotApplicable, ToolFailed, ToolMissing
from bench_agent.core.model import Measurement
from bench_agent.core.process import run_child
from bench_agent.core.stats import summarize
from bench_agent.core.units import Unit
from bench_agent.tools import nvml

# Runs the load on the given GPU indices for some seconds (tests inject a fake).
LoadRunner = Callable[[list[int], float], dict[str, Any]]
KernelLogReader = Callable[[Path], tuple[str, str | None]]


def _dev(index: int) -> str:
    return f"gpu{index}"


def torch_gpu_reason() -> str | None:
    """None when torch sees a CUDA GPU, else why not (-> SKIP)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install 'bench-agent[gpu]')"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    return None


def default_load(indices: list[int], seconds: float) -> dict[str, Any]:
    if seconds <= 0 or not indices:
        return {"ran": False, "why": "no load asked for"}
    if (why := torch_gpu_reason()) is not None:
        return {"ran": False, "why": why}
    from bench_agent.checks.gpu.kernels import run_on_devices

    # NVML indices, named to the children by UUID: torch's "cuda:N" would count
    # only the GPUs a CUDA_VISIBLE_DEVICES of this process leaves visible.
    uuid_of = {index: uuid for uuid, index in nvml.indices_by_uuid().items()}
    missing = [i for i in indices if i not in uuid_of]
    if missing:
        return {"ran": False, "why": f"NVML gives no UUID for GPU(s) {missing}"}
    results = run_on_devices([f"cuda:{uuid_of[i]}" for i in indices],
                             {"kernel": HealthCheck.kernel, "seconds": seconds},
                             timeout=seconds + 120)
    errors = [r for r in results if "error" in r]
    return {"ran": not errors, "why": "; ".join(f"{r['device']}: {r['error']}" for r in errors)}


def read_kernel_log(root: Path) -> tuple[str, str | None]:
    """(kernel log text, None) or ("", why it cannot be read). dmesg needs root on
    kernels with dmesg_restrict=1; a sysroot's var/log/kern.log is read instead."""
    if root != Path("/"):
        path = root / "var" / "log" / "kern.log"
        return (path.read_text(errors="replace"), None) if path.is_file() else ("", "no kern.log")
    try:
        done = run_child(["dmesg"], timeout=20)
    except OSError as exc:
        return "", f"dmesg: {exc}"
    if done.timed_out:
        return "", "dmesg ran past 20 s"
    if done.returncode != 0:
        return "", f"dmesg: {done.stderr.strip()[:200]}"
    return done.stdout, None


class HealthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # 20 s of load: long enough for the link to train up and clocks to settle
    # (DCGM's short diag runs its PCIe and power tests for tens of seconds).
    load_seconds: float = Field(default=20.0, ge=0)
    sample_interval: float = Field(default=0.5, gt=0)
    kernel_log: bool = True
    # Active NVLinks each GPU must show; None: the model's baseline says
    # (nvlink_links). 0 turns the NVLink judgement off: a system whose SXM GPUs are
    # passed through to a VM without their NVLinks, a GH200 without NVL partners.
    expected_nvlinks: int | None = Field(default=None, ge=0, le=18)


class HealthCheck(Check):
    name: ClassVar[str] = "gpu.health"
    domain: ClassVar[str] = "gpu"
    description: ClassVar[str] = "NVML: count, PCIe under load, ECC, row remaps, throttling, XIDs"
    # Per-GPU readings carry device="gpuN"; the count and the load flag are the node's.
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("gpu.count", Unit.COUNT, "GPUs NVML reports"),
        *(MetricSpec(f"gpu.{name}", Unit.COUNT, text, higher_is_better=False, per_device=True)
          for name, text in (
            ("pcie_width_below_max", "PCIe lanes missing under load (max width - current)"),
            ("pcie_gen_below_max", "PCIe generations missing under load (max gen - current)"),
            ("pcie_replays", "PCIe replay counter increase during the run"))),
        MetricSpec("gpu.ecc_mode_enabled", Unit.COUNT, "1 when ECC is on", per_device=True),
        *(MetricSpec(f"gpu.{name}", Unit.COUNT, text, higher_is_better=False, per_device=True)
          for name, text in (
            ("ecc_dram_correctable", "aggregate correctable ECC errors, DRAM"),
            ("ecc_dram_uncorrectable", "aggregate uncorrectable ECC errors, DRAM"),
            ("ecc_sram_correctable", "aggregate correctable ECC errors, SRAM"),
            ("ecc_sram_uncorrectable", "aggregate uncorrectable ECC errors, SRAM"),
            ("ecc_volatile_corrected", "corrected ECC errors since the driver loaded"),
            ("ecc_volatile_uncorrected", "uncorrected ECC errors since the driver loaded"),
            ("row_remap_pending", "1 when a row remap waits for a GPU reset"),
            ("row_remap_failure", "1 when a row remap failed"),
            ("retired_pages", "retired framebuffer pages (pre-Ampere GPUs)"),
            ("retired_pages_pending", "1 when a page retirement waits for a reboot"),
            ("throttle_hw_slowdown", "samples with a hardware slowdown clock event"),
            ("throttle_thermal", "samples with a thermal slowdown clock event"))),
        MetricSpec("gpu.thermal_slowdown_share", Unit.COUNT,
                   "share of the load's time the clocks were held down by a thermal limit",
                   higher_is_better=False, per_device=True),
        MetricSpec("gpu.health_under_load", Unit.COUNT,
                   "1 when the health readings were taken under a GPU load"),
        MetricSpec("gpu.temperature_max", Unit.CELSIUS, "hottest sample",
                   higher_is_better=False, per_device=True),
        MetricSpec("gpu.power_max", Unit.WATTS, "highest power sample",
                   higher_is_better=False, per_device=True),
        MetricSpec("gpu.power_limit", Unit.WATTS, "enforced power limit", per_device=True),
        *(MetricSpec(f"gpu.{name}", Unit.COUNT, text, higher_is_better=False, per_device=True)
          for name, text in (
            ("nvlink_down", "NVLinks missing: the model's expected active links - active"),
            ("nvlink_errors", "NVLink replay/recovery/CRC counter increase during the run"),
            ("xid_events", "failing XIDs seen by the NVML event set during the run"),
            ("xid_kernel_log", "failing XIDs in the kernel log (NVRM: Xid lines)"))),
    )
    params_model: ClassVar[type[BaseModel]] = HealthParams
    # The load run on every GPU while NVML samples (default_load).
    kernel: ClassVar[str] = "bench_agent.checks.gpu.kernels:load_kernel"

    def __init__(self, load: LoadRunner = default_load,
                 kernel_log: KernelLogReader = read_kernel_log) -> None:
        self.load = load
        self.kernel_log = kernel_log

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        if not isinstance(p := params, HealthParams):
            raise TypeError(f"expected HealthParams, got {type(params).__name__}")
        try:
            return self._run(ctx, p)
        except (ToolMissing, NotApplicable) as exc:
            skip_or_fail(ctx.root, str(exc))  # raises ToolFailed on a node with GPUs
            raise

    def _run(self, ctx: CheckContext, p: HealthParams) -> list[Measurement]:
        with nvml.session() as nv:
            count = int(nv.nvmlDeviceGetCount())
            if count == 0:
                raise NotApplicable("NVML reports no GPU on this node")
            handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            system = nvml.system_facts(nv)
            facts = [nvml.device_facts(nv, h, i) for i, h in enumerate(handles)]
            before = [nvml.counters(nv, h) for h in handles]
            watcher = nvml.XidWatcher(nv, handles)
            watcher.start()
            samples: list[list[nvml.GpuSample]] = [[] for _ in handles]
            load_result: dict[str, Any] = {}
            worker = threading.Thread(
                target=lambda: load_result.update(self.load(list(range(count)), p.load_seconds)),
                daemon=True)
            load_started = time.monotonic()
            worker.start()
            # Sample while the load runs, and at least once (no load: one idle sample).
            while True:
                for i, h in enumerate(handles):
                    samples[i].append(nvml.sample(nv, h))
                if not worker.is_alive():
                    break
                time.sleep(p.sample_interval)
            worker.join()
            load_wall = time.monotonic() - load_started
            after = [nvml.counters(nv, h) for h in handles]
            limits = [nvml.power_limit_w(nv, h) for h in handles]
            xids = watcher.stop()
        log_text, log_note = self.kernel_log(ctx.root) if p.kernel_log else ("", "not read")
        kernel_xids = nvml.parse_kernel_xids(log_text)
        loaded = bool(load_result.get("ran"))
        common = {"driver_version": system.driver_version,
                  "cuda_driver_version": system.cuda_driver_version,
                  "under_load": loaded, "load_note": load_result.get("why") or None}
        per_gpu: list[Measurement] = []
        nvlink_notes: dict[str, str] = {}
        # One lookup per model, not per GPU: each reads every baseline file.
        models = {f.name: baselines.baseline_for(f.name) for f in facts}
        for i in range(count):
            per_gpu += self._per_gpu(i, facts[i], before[i], after[i], samples[i], limits[i],
                                     [x for x in xids if x.gpu == i],
                                     [x for x in kernel_xids
                                      if nvml.bus_matches(x.bus, facts[i].pci_bus_id)],
                                     loaded)
            per_gpu += health_rules.thermal_share(self.name, _dev(i), facts[i], before[i],
                                                  after[i], samples[i], load_wall, loaded)
            links, note = health_rules.nvlink_down(self.name, _dev(i), facts[i], after[i],
                                                   p.expected_nvlinks, models[facts[i].name])
            per_gpu += links
            if note:
                nvlink_notes[_dev(i)] = note
        out = [Measurement(check=self.name, metric="gpu.count", value=count, unit=Unit.COUNT,
                           tool="nvml", params={**common, "gpus": [f.to_dict() for f in facts],
                                                "xid_watch_note": watcher.note,
                                                "kernel_log_note": log_note,
                                                "nvlink_not_judged": nvlink_notes or None})]
        # Whether the readings were taken under load: PCIe generation and throttling
        # are only judged then, so a load that could not run must show (a WARN).
        out.append(Measurement(check=self.name, metric="gpu.health_under_load",
                               value=1 if loaded else 0, unit=Unit.COUNT, tool="nvml",
                               params={"load_note": load_result.get("why") or None}))
        out += per_gpu
        # Kernel XIDs of a bus NVML does not list (a GPU that fell off the bus).
        orphans = [x for x in kernel_xids
                   if not any(nvml.bus_matches(x.bus, f.pci_bus_id) for f in facts)]
        if orphans:
            out.append(self._m("gpu.xid_kernel_log",
                               sum(x.xid in nvml.FAILING_XIDS for x in orphans),
                               "unmatched", {"xids": [x.to_dict() for x in orphans[:20]]}))
        return out

    def _m(self, metric: str, value: float, device: str, params: dict[str, Any],
           unit: Unit = Unit.COUNT) -> Measurement:
        return Measurement(check=self.name, metric=metric, value=value, unit=unit,
                           device=device, tool="nvml", params=params)

    def _per_gpu(self, i: int, facts: nvml.GpuFacts, before: nvml.ErrorCounters,
                 after: nvml.ErrorCounters, samples: list[nvml.GpuSample],
                 limit: float | None, xids: list[nvml.XidEvent],
                 kernel_xids: list[nvml.KernelXid], loaded: bool) -> list[Measurement]:
        dev = _dev(i)
        ident = {"uuid": facts.uuid, "name": facts.name, "serial": facts.serial,
                 "pci_bus_id": facts.pci_bus_id}
        out: list[Measurement] = []

        def add(metric: str, value: float | None, unit: Unit = Unit.COUNT,
                **extra: Any) -> None:
            if value is not None:
                out.append(self._m(metric, value, dev, {**ident, **extra}, unit))

        widths = [s.pcie_width for s in samples if s.pcie_width is not None]
        gens = [s.pcie_gen for s in samples if s.pcie_gen is not None]
        if widths and facts.pcie_width_max:
            # The narrowest width seen: a link that drops lanes under load is the finding.
            add("gpu.pcie_width_below_max", facts.pcie_width_max - min(widths),
                width=min(widths), width_max=facts.pcie_width_max, under_load=loaded)
        if gens and facts.pcie_gen_max and loaded:
            # Only under load: idle links downtrain on purpose (module docstring).
            add("gpu.pcie_gen_below_max", facts.pcie_gen_max - max(gens),
                gen=max(gens), gen_max=facts.pcie_gen_max)
        if after.pcie_replays is not None:
            # Replays during the run: the counter's growth, when it was read before too.
            delta = (after.pcie_replays - before.pcie_replays
                     if before.pcie_replays is not None else None)
            add("gpu.pcie_replays", delta, before=before.pcie_replays, after=after.pcie_replays)
        for metric, was, now in (
                ("gpu.ecc_volatile_corrected", before.ecc_volatile_corrected,
                 after.ecc_volatile_corrected),
                ("gpu.ecc_volatile_uncorrected", before.ecc_volatile_uncorrected,
                 after.ecc_volatile_uncorrected)):
            if now is not None:
                add(metric, now, before=was, after=now)
        if facts.ecc_mode_current is not None:
            add("gpu.ecc_mode_enabled", int(facts.ecc_mode_current == 1),
                pending=facts.ecc_mode_pending)
        for metric, value in (("gpu.ecc_dram_correctable", after.ecc_dram_correctable),
                              ("gpu.ecc_dram_uncorrectable", after.ecc_dram_uncorrectable),
                              ("gpu.ecc_sram_correctable", after.ecc_sram_correctable),
                              ("gpu.ecc_sram_uncorrectable", after.ecc_sram_uncorrectable)):
            add(metric, value)
        rows = {"correctable_rows": after.row_remap_correctable,
                "uncorrectable_rows": after.row_remap_uncorrectable}
        add("gpu.row_remap_pending", after.row_remap_pending, Unit.COUNT, **rows)
        add("gpu.row_remap_failure", after.row_remap_failure, Unit.COUNT, **rows)
        add("gpu.retired_pages", after.retired_pages)
        add("gpu.retired_pages_pending", after.retired_pages_pending)
        masks = [s.clock_event_reasons for s in samples if s.clock_event_reasons is not None]
        if masks:
            seen = sorted({name for m in masks for name in nvml.reason_names(m)})
            add("gpu.throttle_hw_slowdown", sum(bool(m & nvml.HW_SLOWDOWN_MASK) for m in masks),
                samples=len(masks), reasons_seen=seen)
            add("gpu.throttle_thermal", sum(bool(m & nvml.THERMAL_MASK) for m in masks),
                samples=len(masks), reasons_seen=seen)
        temps = [s.temperature for s in samples if s.temperature is not None]
        add("gpu.temperature_max", max(temps) if temps else None, Unit.CELSIUS)
        powers = [s.power_w for s in samples if s.power_w is not None]
        add("gpu.power_max", max(powers) if powers else None, Unit.WATTS)
        add("gpu.power_limit", limit, Unit.WATTS)
        links = after.nvlink
        if links:
            # A link first seen after the load started had no errors before it.
            grown = sum(max(0, state.errors - (before.nvlink[link].errors
                                               if link in before.nvlink else 0))
                        for link, state in links.items())
            add("gpu.nvlink_errors", grown)
        add("gpu.xid_events", sum(x.xid in nvml.FAILING_XIDS for x in xids),
            xids=[x.xid for x in xids])
        add("gpu.xid_kernel_log", sum(x.xid in nvml.FAILING_XIDS for x in kernel_xids),
            lines=[x.line for x in kernel_xids[:10]])
        return out


# --- matmul and memory bandwidth -----------------------------------------------------


def _gpus() -> list[tuple[int, str]]:
    """(label index, torch device) of every GPU torch sees. The label is the GPU's
    NVML index, found by its UUID, so gpuN names the GPU gpu.health names so even
    under a CUDA_VISIBLE_DEVICES that hides some (torch counts only those it sees);
    torch's own index where NVML cannot tell."""
    from bench_agent.checks.gpu.kernels import cuda_uuids

    by_uuid = {uuid.lower(): index for uuid, index in nvml.indices_by_uuid().items()}
    return [(by_uuid.get(uuid.lower(), i), f"cuda:{i}") for i, uuid in enumerate(cuda_uuids())]


def _gpu_name(results: list[dict[str, Any]]) -> str:
    names = {r.get("name", "") for r in results}
    return names.pop() if len(names) == 1 else " / ".join(sorted(names))


def _raise_errors(results: list[dict[str, Any]], what: str) -> None:
    errors = [f"{r['device']}: {r['error']}" for r in results if "error" in r]
    if errors:
        raise ToolFailed(what, "; ".join(errors))


def node_measurements(check: str, metric: str, unit: Unit,
                      per_gpu: dict[int, tuple[list[float], dict[str, Any]]],
                      tool_version: str) -> list[Measurement]:
    """One ``<metric>_per_gpu`` per GPU (median of its samples) and ``<metric>`` = the
    slowest GPU's median, the figure the node is judged by."""
    out: list[Measurement] = []
    for index, (samples, params) in sorted(per_gpu.items()):
        summary = summarize(samples)
        out.append(Measurement(check=check, metric=f"{metric}_per_gpu", value=summary.median,
                               unit=unit, samples=tuple(samples), unstable=summary.unstable,
                               device=_dev(index), tool="torch", tool_version=tool_version,
                               params=params, stats=summary.to_dict()))
    slowest = min(out, key=lambda m: m.value)
    out.append(Measurement(
        check=check, metric=metric, value=slowest.value, unit=unit, samples=slowest.samples,
        unstable=slowest.unstable, tool="torch", tool_version=tool_version,
        stats=slowest.stats,
        params={**slowest.params, "slowest": slowest.device,
                "per_gpu": {m.device: m.value for m in out}}))
    return out


class MatmulParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    precisions: list[Literal["bf16", "fp16", "tf32", "fp32", "fp8"]] = [
        "bf16", "fp16", "tf32", "fp32", "fp8"]
    # Square sizes swept; each is skipped when it does not fit in memory.
    sizes: list[int] = Field(default=[4096, 8192, 16384], min_length=1)
    # The size the node is judged at: 8192³, the shape of the H200 bf16 baseline's measurement.
    reference_size: int = 8192
    warmup: int = Field(default=5, ge=0)
    iterations: int = Field(default=20, ge=1)


class MatmulCheck(Check):
    name: ClassVar[str] = "gpu.matmul"
    domain: ClassVar[str] = "gpu"
    description: ClassVar[str] = "matmul TFLOP/s per precision, all GPUs at once (torch)"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        *(spec for p in ("bf16", "fp16", "tf32", "fp32", "fp8") for spec in (
            MetricSpec(f"gpu.matmul_{p}", Unit.FLOPS, f"{p} matmul, slowest GPU"),
            MetricSpec(f"gpu.matmul_{p}_per_gpu", Unit.FLOPS, f"{p} matmul, one GPU",
                       per_device=True),
            # A fraction of the per-model baseline (suites/baselines/): dimensionless,
            # in "count" until units.py has a ratio unit.
            MetricSpec(f"gpu.matmul_{p}_baseline_fraction", Unit.COUNT,
                       f"matmul_{p} / the model's baseline"))),
        MetricSpec("gpu.baseline_known", Unit.COUNT,
                   "1 when a per-model baseline matched the GPU name"),
        spread.MATMUL_OF_BEST)
    params_model: ClassVar[type[BaseModel]] = MatmulParams
    burnin: ClassVar[BurninVariant | None] = BurninVariant(
        load="gpu_matmul",
        rate=MetricSpec("burnin.gpu_matmul", Unit.FLOPS,
                        "matmul on every GPU at once, sustained (the slowest GPU)"),
        params_model=MatmulBurninParams,
        loop="bench_agent.checks.gpu.burnin:matmul_loop",
    )
    kernel: ClassVar[str] = "bench_agent.checks.gpu.kernels:matmul_kernel"

    def available(self, ctx: CheckContext) -> str | None:
        reason = torch_gpu_reason()
        return skip_or_fail(ctx.root, reason) if reason is not None else None

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        from bench_agent.checks.gpu.kernels import rates, run_on_devices

        if not isinstance(p := params, MatmulParams):
            raise TypeError(f"expected MatmulParams, got {type(params).__name__}")
        gpus = _gpus()
        indices = [index for index, _ in gpus]
        task = {"kernel": self.kernel, "precisions": p.precisions, "sizes": p.sizes,
                "warmup": p.warmup, "iterations": p.iterations}
        results = run_on_devices([device for _, device in gpus], task, ctx.timeout * 0.9)
        _raise_errors(results, "gpu matmul")
        name = _gpu_name(results)
        baseline = baselines.baseline_for(name)
        out = [baselines.baseline_known(self.name, name, baseline)]
        for precision in p.precisions:
            per_gpu: dict[int, tuple[list[float], dict[str, Any]]] = {}
            for index, result in zip(indices, results, strict=True):
                runs = result.get("matmul", {}).get(precision) or []
                if not runs:
                    continue
                by_n = {r["n"]: r for r in runs}
                chosen = by_n.get(p.reference_size) or by_n[max(by_n)]
                sweep = {str(r["n"]): max(rates(r["flop"], r["seconds"])) for r in runs}
                per_gpu[index] = (rates(chosen["flop"], chosen["seconds"]), {
                    "precision": precision, "m": chosen["n"], "n": chosen["n"],
                    "k": chosen["n"], "flop_per_product": chosen["flop"],
                    "input_sets": chosen["sets"], "iterations": p.iterations,
                    "warmup": p.warmup, "name": result.get("name"),
                    "max_flops_by_size": sweep, "skipped": result.get("skipped", {}),
                    "timer": "CUDA events"})
            if not per_gpu:
                continue  # fp8 on an A100, or no size fits: the reason is in "skipped"
            measured = node_measurements(self.name, f"gpu.matmul_{precision}", Unit.FLOPS,
                                         per_gpu, results[0].get("torch", ""))
            out += measured
            if (frac := baselines.fraction(measured[-1], baseline)) is not None:
                out.append(frac)
        out += spread.of_best(self.name, spread.MATMUL_OF_BEST.name,
                              [m for m in out if m.metric.endswith("_per_gpu")],
                              {_dev(i): r.get("name", "")
                               for i, r in zip(indices, results, strict=True)})
        return out


class HbmParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # 1 GiB: 20x an H100's 50 MiB L2 (raised to 8x L2 on larger caches, capped by memory).
    bytes: int = Field(default=1 << 30, ge=1 << 20)
    warmup: int = Field(default=3, ge=0)
    iterations: int = Field(default=20, ge=1)


class HbmCheck(Check):
    name: ClassVar[str] = "gpu.hbm"
    domain: ClassVar[str] = "gpu"
    description: ClassVar[str] = "device-to-device copy (read+write counted), pinned H2D/D2H"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        *(spec for k, text in (("hbm_copy", "device-to-device copy, read+write counted"),
                               ("h2d", "host-to-device copy, pinned"),
                               ("d2h", "device-to-host copy, pinned")) for spec in (
            MetricSpec(f"gpu.{k}", Unit.BYTES_PER_SECOND, f"{text}, slowest GPU"),
            MetricSpec(f"gpu.{k}_per_gpu", Unit.BYTES_PER_SECOND, f"{text}, one GPU",
                       per_device=True))),
        MetricSpec("gpu.hbm_copy_baseline_fraction", Unit.COUNT,
                   "hbm_copy / the model's baseline"),
        spread.HBM_OF_BEST)
    params_model: ClassVar[type[BaseModel]] = HbmParams
    kernel: ClassVar[str] = "bench_agent.checks.gpu.kernels:copy_kernel"

    def available(self, ctx: CheckContext) -> str | None:
        reason = torch_gpu_reason()
        return skip_or_fail(ctx.root, reason) if reason is not None else None

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        from bench_agent.checks.gpu.kernels import rates, run_on_devices

        if not isinstance(p := params, HbmParams):
            raise TypeError(f"expected HbmParams, got {type(params).__name__}")
        gpus = _gpus()
        indices = [index for index, _ in gpus]
        task = {"kernel": self.kernel, "bytes": p.bytes, "warmup": p.warmup,
                "iterations": p.iterations}
        results = run_on_devices([device for _, device in gpus], task, ctx.timeout * 0.9)
        _raise_errors(results, "gpu copy")
        baseline = baselines.baseline_for(_gpu_name(results))
        out: list[Measurement] = []
        for kind in ("hbm_copy", "h2d", "d2h"):
            per_gpu = {i: (rates(r["copy"][kind]["bytes_counted"], r["copy"][kind]["seconds"]),
                           {k: v for k, v in r["copy"][kind].items() if k != "seconds"})
                       for i, r in zip(indices, results, strict=True) if kind in r["copy"]}
            if per_gpu:
                measured = node_measurements(self.name, f"gpu.{kind}", Unit.BYTES_PER_SECOND,
                                             per_gpu, results[0].get("torch", ""))
                out += measured
                if (frac := baselines.fraction(measured[-1], baseline)) is not None:
                    out.append(frac)
        out += spread.of_best(self.name, spread.HBM_OF_BEST.name,
                              [m for m in out if m.metric == "gpu.hbm_copy_per_gpu"],
                              {_dev(i): r.get("name", "")
                               for i, r in zip(indices, results, strict=True)})
        return out


# The checks of this module, in `bench-agent list` order (checks/__init__.py finds them).
CHECKS: tuple[type[Check], ...] = (HealthCheck, MatmulCheck, HbmCheck,
                                   DcgmDiagCheck, NvbandwidthCheck,
                                   MemtestCheck, SdcCheck, PowerStressCheck,
                                   PcieBandwidthCheck, P2pBandwidthCheck)
