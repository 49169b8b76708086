"""The catalog of metrics: every metric name the agent can report, with its unit.

Profiles and baselines are validated against this catalog, so a threshold on an
unknown metric, or in a unit of another dimension ("10 GB/s" for an IOPS metric),
is a ConfigError when the file is loaded, not a surprise at the end of a run.
``higher_is_better`` tells fleet analysis which side of the median is the bad one.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench_agent.units import Unit


@dataclass(frozen=True, slots=True)
class MetricInfo:
    name: str
    unit: Unit
    check: str
    description: str
    higher_is_better: bool = True


def _m(
    name: str, unit: Unit, check: str, description: str, higher: bool = True
) -> tuple[str, MetricInfo]:
    return name, MetricInfo(name, unit, check, description, higher)


METRICS: dict[str, MetricInfo] = dict(
    [
        # inventory: facts of the node, checked against the guide's sizing table
        _m("inventory.logical_cpus", Unit.COUNT, "inventory", "logical CPUs (vCPUs) online"),
        _m("inventory.physical_cores", Unit.COUNT, "inventory", "physical cores, all sockets"),
        _m("inventory.memory_total", Unit.BYTES, "inventory", "RAM (MemTotal)"),
        _m("inventory.nvme_capacity", Unit.BYTES, "inventory", "sum of NVMe namespace sizes"),
        _m("inventory.nic_speed_max", Unit.BITS_PER_SECOND, "inventory", "fastest NIC link"),
        _m("inventory.gpu_count", Unit.COUNT, "inventory", "GPUs seen by NVML"),
        _m("inventory.gpu_memory_min", Unit.BYTES, "inventory", "memory of the smallest GPU"),
        # cpu and memory
        _m("cpu.gemm_fp64_all_cores", Unit.FLOPS, "cpu.gemm", "fp64 GEMM, all cores"),
        _m("cpu.gemm_fp32_all_cores", Unit.FLOPS, "cpu.gemm", "fp32 GEMM, all cores"),
        _m("cpu.gemm_fp64_one_core", Unit.FLOPS, "cpu.gemm", "fp64 GEMM, one core"),
        _m("cpu.gemm_fp32_one_core", Unit.FLOPS, "cpu.gemm", "fp32 GEMM, one core"),
        _m("memory.stream_copy", Unit.BYTES_PER_SECOND, "memory.stream", "STREAM copy"),
        _m("memory.stream_scale", Unit.BYTES_PER_SECOND, "memory.stream", "STREAM scale"),
        _m("memory.stream_add", Unit.BYTES_PER_SECOND, "memory.stream", "STREAM add"),
        _m("memory.stream_triad", Unit.BYTES_PER_SECOND, "memory.stream", "STREAM triad"),
        # storage (fio); filled by the storage suite
        _m("storage.randread_4k_iops", Unit.IOPS, "storage.randread", "4 KiB random read"),
        _m("storage.randwrite_4k_iops", Unit.IOPS, "storage.randwrite", "4 KiB random write"),
        _m("storage.randread_4k_latency_p99", Unit.SECONDS, "storage.randread",
           "4 KiB random read completion latency, p99", False),
        _m("storage.seqread_1m_bandwidth", Unit.BYTES_PER_SECOND, "storage.seqread",
           "1 MiB sequential read"),
        _m("storage.seqwrite_1m_bandwidth", Unit.BYTES_PER_SECOND, "storage.seqwrite",
           "1 MiB sequential write"),
        # network (iperf3, sockperf/qperf, perftest); filled by the network suite
        _m("network.tcp_bandwidth", Unit.BITS_PER_SECOND, "network.tcp_bandwidth",
           "TCP bandwidth to the peer"),
        _m("network.tcp_latency", Unit.SECONDS, "network.tcp_latency",
           "TCP one-way latency (half the round trip)", False),
        _m("network.rdma_write_latency", Unit.SECONDS, "network.rdma_latency",
           "RDMA write one-way latency (ib_write_lat typical)", False),
        _m("network.rdma_write_bandwidth", Unit.BITS_PER_SECOND, "network.rdma_bandwidth",
           "RDMA write bandwidth (ib_write_bw average)"),
    ]
)


def metric_info(name: str) -> MetricInfo | None:
    return METRICS.get(name)
