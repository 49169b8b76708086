"""The explicit list of every check the agent knows (pyperf's OPERATIONS idea).

Adding a check touches its module (with its metrics declared in it), its entry
below, its test with a captured output, and the suite YAML that runs it (and a
profile line when it is judged). Everything else that knows about metrics (the
catalog, `bench-agent list --metrics`, profile and baseline validation, fleet
analysis, the README's check table) derives from the checks' declarations.
Modules are imported when a check is looked up or the catalog is first asked
for, so `bench-agent --help` imports none of them.
"""

from __future__ import annotations

import functools
import importlib

from bench_agent.checks.base import Check
from bench_agent.core.errors import UsageError
from bench_agent.core.metrics import MetricInfo

# check name -> "module:Class". Order is the order `bench-agent list` shows.
CHECKS: dict[str, str] = {
    "inventory": "bench_agent.checks.inventory.checks:InventoryCheck",
    "cpu.gemm": "bench_agent.checks.cpu.checks:GemmCheck",
    "memory.stream": "bench_agent.checks.cpu.checks:StreamCheck",
    "gpu.health": "bench_agent.checks.gpu.checks:HealthCheck",
    "gpu.matmul": "bench_agent.checks.gpu.checks:MatmulCheck",
    "gpu.hbm": "bench_agent.checks.gpu.checks:HbmCheck",
    "nccl.all_reduce": "bench_agent.checks.nccl.checks:AllReduceCheck",
    "nccl.all_gather": "bench_agent.checks.nccl.checks:AllGatherCheck",
    "nccl.reduce_scatter": "bench_agent.checks.nccl.checks:ReduceScatterCheck",
    "storage.randread": "bench_agent.checks.storage.checks:RandReadCheck",
    "storage.randwrite": "bench_agent.checks.storage.checks:RandWriteCheck",
    "storage.seqread": "bench_agent.checks.storage.checks:SeqReadCheck",
    "storage.seqwrite": "bench_agent.checks.storage.checks:SeqWriteCheck",
    "network.tcp_bandwidth": "bench_agent.checks.network.checks:TcpBandwidthCheck",
    "network.tcp_latency": "bench_agent.checks.network.checks:TcpLatencyCheck",
    "network.udp_latency": "bench_agent.checks.network.checks:UdpLatencyCheck",
    "network.rdma_latency": "bench_agent.checks.network.checks:RdmaLatencyCheck",
    "network.rdma_bandwidth": "bench_agent.checks.network.checks:RdmaBandwidthCheck",
}


def check_class(name: str) -> type[Check]:
    try:
        target = CHECKS[name]
    except KeyError:
        known = ", ".join(CHECKS)
        raise UsageError(f"unknown check {name!r} (known checks: {known})") from None
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name)
    found: type[Check] = getattr(module, class_name)
    return found


def get_check(name: str) -> Check:
    return check_class(name)()


def check_names() -> list[str]:
    return list(CHECKS)


@functools.cache
def _catalog() -> dict[str, MetricInfo]:
    out: dict[str, MetricInfo] = {}
    for name in CHECKS:
        cls = check_class(name)
        if cls.name != name:
            raise ValueError(f"CHECKS[{name!r}] names a class whose name is {cls.name!r}")
        seen: set[str] = set()
        for spec in cls.metrics:
            if spec.name in seen:
                raise ValueError(f"check {name} declares metric {spec.name} twice")
            seen.add(spec.name)
            info = MetricInfo(spec.name, spec.unit, spec.meaning, (name,),
                              spec.higher_is_better, spec.per_device)
            known = out.get(spec.name)
            if known is None:
                out[spec.name] = info
                continue
            # Two checks may report the same metric (both RDMA checks count the
            # active devices), but it must mean the same thing in both.
            if (known.unit, known.meaning, known.higher_is_better, known.per_device) != (
                    info.unit, info.meaning, info.higher_is_better, info.per_device):
                raise ValueError(f"metric {spec.name} is declared differently by checks "
                                 f"{', '.join(known.checks)} and {name}")
            out[spec.name] = MetricInfo(spec.name, spec.unit, spec.meaning,
                                        (*known.checks, name), spec.higher_is_better,
                                        spec.per_device)
    return out


def metric_catalog() -> dict[str, MetricInfo]:
    """Every metric a check declares, by name, in registry order (imports every check
    module the first time; ValueError when two declarations of one metric differ)."""
    return dict(_catalog())
