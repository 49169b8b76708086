"""The explicit list of every check the agent knows (pyperf's OPERATIONS idea).

Adding a check touches four places: its module here, its entry below, its test
with a captured output, and the suite YAML that runs it. Modules are imported
when a check is looked up, so `bench-agent --help` imports none of them.
"""

from __future__ import annotations

import importlib

from bench_agent.checks.base import Check
from bench_agent.core.errors import UsageError

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


def get_check(name: str) -> Check:
    try:
        target = CHECKS[name]
    except KeyError:
        known = ", ".join(CHECKS)
        raise UsageError(f"unknown check {name!r} (known checks: {known})") from None
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name)
    check_class: type[Check] = getattr(module, class_name)
    return check_class()


def check_names() -> list[str]:
    return list(CHECKS)
