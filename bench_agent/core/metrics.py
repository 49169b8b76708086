"""The catalog of metrics: every metric name the agent can report, with its unit.

Profiles and baselines are validated against this catalog, so a threshold on an
unknown metric, or in a unit of another dimension ("10 GB/s" for an IOPS metric),
is a ConfigError when the file is loaded, not a surprise at the end of a run.
``higher_is_better`` tells fleet analysis which side of the median is the bad one.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from bench_agent.core.units import Unit


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
        # Latency percentiles are fio's completion latency (clat) of each job type;
        # "_per_device" metrics exist when several drives run at once (the plain
        # names are then their aggregate, device="aggregate").
        _m("storage.randread_4k_latency_p50", Unit.SECONDS, "storage.randread",
           "4 KiB random read completion latency, p50", False),
        _m("storage.randread_4k_latency_p99_9", Unit.SECONDS, "storage.randread",
           "4 KiB random read completion latency, p99.9", False),
        _m("storage.randwrite_4k_latency_p50", Unit.SECONDS, "storage.randwrite",
           "4 KiB random write completion latency, p50", False),
        _m("storage.randwrite_4k_latency_p99", Unit.SECONDS, "storage.randwrite",
           "4 KiB random write completion latency, p99", False),
        _m("storage.randwrite_4k_latency_p99_9", Unit.SECONDS, "storage.randwrite",
           "4 KiB random write completion latency, p99.9", False),
        _m("storage.seqread_1m_latency_p50", Unit.SECONDS, "storage.seqread",
           "1 MiB sequential read completion latency, p50", False),
        _m("storage.seqread_1m_latency_p99", Unit.SECONDS, "storage.seqread",
           "1 MiB sequential read completion latency, p99", False),
        _m("storage.seqread_1m_latency_p99_9", Unit.SECONDS, "storage.seqread",
           "1 MiB sequential read completion latency, p99.9", False),
        _m("storage.seqwrite_1m_latency_p50", Unit.SECONDS, "storage.seqwrite",
           "1 MiB sequential write completion latency, p50", False),
        _m("storage.seqwrite_1m_latency_p99", Unit.SECONDS, "storage.seqwrite",
           "1 MiB sequential write completion latency, p99", False),
        _m("storage.seqwrite_1m_latency_p99_9", Unit.SECONDS, "storage.seqwrite",
           "1 MiB sequential write completion latency, p99.9", False),
        _m("storage.randread_4k_iops_per_device", Unit.IOPS, "storage.randread",
           "4 KiB random read, one drive of several run at once"),
        _m("storage.randread_4k_latency_p99_per_device", Unit.SECONDS, "storage.randread",
           "4 KiB random read completion latency p99, one drive of several", False),
        _m("storage.randwrite_4k_iops_per_device", Unit.IOPS, "storage.randwrite",
           "4 KiB random write, one drive of several run at once"),
        _m("storage.randwrite_4k_latency_p99_per_device", Unit.SECONDS, "storage.randwrite",
           "4 KiB random write completion latency p99, one drive of several", False),
        _m("storage.seqread_1m_bandwidth_per_device", Unit.BYTES_PER_SECOND, "storage.seqread",
           "1 MiB sequential read, one drive of several run at once"),
        _m("storage.seqread_1m_latency_p99_per_device", Unit.SECONDS, "storage.seqread",
           "1 MiB sequential read completion latency p99, one drive of several", False),
        _m("storage.seqwrite_1m_bandwidth_per_device", Unit.BYTES_PER_SECOND, "storage.seqwrite",
           "1 MiB sequential write, one drive of several run at once"),
        _m("storage.seqwrite_1m_latency_p99_per_device", Unit.SECONDS, "storage.seqwrite",
           "1 MiB sequential write completion latency p99, one drive of several", False),
        # network (iperf3, sockperf/qperf, perftest); filled by the network suite
        _m("network.tcp_bandwidth", Unit.BITS_PER_SECOND, "network.tcp_bandwidth",
           "TCP bandwidth to the peer"),
        _m("network.tcp_latency", Unit.SECONDS, "network.tcp_latency",
           "TCP one-way latency (half the round trip)", False),
        _m("network.rdma_write_latency", Unit.SECONDS, "network.rdma_latency",
           "RDMA write one-way latency (ib_write_lat typical)", False),
        _m("network.rdma_write_bandwidth", Unit.BITS_PER_SECOND, "network.rdma_bandwidth",
           "RDMA write bandwidth (ib_write_bw average)"),
        # network, more: reverse direction (-R: peer to here), retransmits,
        # percentiles, UDP latency; "_round_trip" metrics are sockperf --full-rtt
        # figures. The parsers read more (iperf3 -u, qperf udp_bw, ib_read_*), but no
        # check runs those tests, so their metrics are not here: a profile cannot
        # name a metric that nothing measures (tests/test_config.py pins this).
        _m("network.tcp_bandwidth_reverse", Unit.BITS_PER_SECOND, "network.tcp_bandwidth",
           "TCP bandwidth from the peer (iperf3 -R or --bidir)"),
        _m("network.tcp_retransmits", Unit.COUNT, "network.tcp_bandwidth",
           "TCP retransmits of the sender, to the peer", False),
        _m("network.tcp_retransmits_reverse", Unit.COUNT, "network.tcp_bandwidth",
           "TCP retransmits of the sender, from the peer", False),
        _m("network.tcp_bandwidth_link_ratio", Unit.COUNT, "network.tcp_bandwidth",
           "TCP bandwidth / link speed of the interface routing to the peer"),
        _m("network.tcp_latency_p50", Unit.SECONDS, "network.tcp_latency",
           "TCP one-way latency, p50", False),
        _m("network.tcp_latency_p99", Unit.SECONDS, "network.tcp_latency",
           "TCP one-way latency, p99", False),
        _m("network.tcp_latency_p99_9", Unit.SECONDS, "network.tcp_latency",
           "TCP one-way latency, p99.9", False),
        _m("network.tcp_round_trip", Unit.SECONDS, "network.tcp_latency",
           "TCP round-trip time (sockperf --full-rtt), average", False),
        _m("network.tcp_round_trip_p50", Unit.SECONDS, "network.tcp_latency",
           "TCP round-trip time, p50", False),
        _m("network.tcp_round_trip_p99", Unit.SECONDS, "network.tcp_latency",
           "TCP round-trip time, p99", False),
        _m("network.tcp_round_trip_p99_9", Unit.SECONDS, "network.tcp_latency",
           "TCP round-trip time, p99.9", False),
        _m("network.udp_latency", Unit.SECONDS, "network.udp_latency",
           "UDP one-way latency (half the round trip), average", False),
        _m("network.udp_latency_p50", Unit.SECONDS, "network.udp_latency",
           "UDP one-way latency, p50", False),
        _m("network.udp_latency_p99", Unit.SECONDS, "network.udp_latency",
           "UDP one-way latency, p99", False),
        _m("network.udp_latency_p99_9", Unit.SECONDS, "network.udp_latency",
           "UDP one-way latency, p99.9", False),
        _m("network.udp_round_trip", Unit.SECONDS, "network.udp_latency",
           "UDP round-trip time (sockperf --full-rtt), average", False),
        _m("network.udp_round_trip_p50", Unit.SECONDS, "network.udp_latency",
           "UDP round-trip time, p50", False),
        _m("network.udp_round_trip_p99", Unit.SECONDS, "network.udp_latency",
           "UDP round-trip time, p99", False),
        _m("network.udp_round_trip_p99_9", Unit.SECONDS, "network.udp_latency",
           "UDP round-trip time, p99.9", False),
        _m("network.rdma_active_devices", Unit.COUNT, "network.rdma_latency",
           "RDMA devices with an ACTIVE port (/sys/class/infiniband)"),
        _m("network.rdma_write_latency_avg", Unit.SECONDS, "network.rdma_latency",
           "RDMA write one-way latency, average", False),
        _m("network.rdma_write_latency_p99", Unit.SECONDS, "network.rdma_latency",
           "RDMA write one-way latency, p99", False),
        _m("network.rdma_write_latency_p99_9", Unit.SECONDS, "network.rdma_latency",
           "RDMA write one-way latency, p99.9", False),
        # gpu (NVML health, torch matmul and copies; checks/gpu.py). Per-GPU values
        # carry device="gpuN"; node values are the slowest GPU (device="").
        _m("gpu.count", Unit.COUNT, "gpu.health", "GPUs NVML reports"),
        _m("gpu.health_under_load", Unit.COUNT, "gpu.health",
           "1 when the health readings were taken under a GPU load"),
        *[_m(f"gpu.{name}", Unit.COUNT, "gpu.health", text, False) for name, text in (
            ("pcie_width_below_max", "PCIe lanes missing under load (max width - current)"),
            ("pcie_gen_below_max", "PCIe generations missing under load (max gen - current)"),
            ("pcie_replays", "PCIe replay counter increase during the run"),
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
            ("throttle_thermal", "samples with a thermal slowdown clock event"),
            ("nvlink_down", "NVLink links reported inactive"),
            ("nvlink_errors", "NVLink replay/recovery/CRC counter increase during the run"),
            ("xid_events", "failing XIDs seen by the NVML event set during the run"),
            ("xid_kernel_log", "failing XIDs in the kernel log (NVRM: Xid lines)"),
        )],
        _m("gpu.ecc_mode_enabled", Unit.COUNT, "gpu.health", "1 when ECC is on"),
        _m("gpu.baseline_known", Unit.COUNT, "gpu.matmul",
           "1 when a per-model baseline matched the GPU name"),
        _m("gpu.temperature_max", Unit.CELSIUS, "gpu.health", "hottest sample", False),
        _m("gpu.power_max", Unit.WATTS, "gpu.health", "highest power sample", False),
        _m("gpu.power_limit", Unit.WATTS, "gpu.health", "enforced power limit"),
        *[_m(f"gpu.matmul_{d}{s}", Unit.FLOPS, "gpu.matmul", f"{d} matmul{t}")
          for d in ("bf16", "fp16", "tf32", "fp32", "fp8")
          for s, t in (("", ", slowest GPU"), ("_per_gpu", ", one GPU"))],
        *[_m(f"gpu.{k}{s}", Unit.BYTES_PER_SECOND, "gpu.hbm", f"{t}{u}")
          for k, t in (("hbm_copy", "device-to-device copy, read+write counted"),
                       ("h2d", "host-to-device copy, pinned"),
                       ("d2h", "device-to-host copy, pinned"))
          for s, u in (("", ", slowest GPU"), ("_per_gpu", ", one GPU"))],
        # Fractions of the per-model baseline (suites/baselines/): dimensionless,
        # in "count" until units.py has a ratio unit.
        *[_m(f"gpu.{k}_baseline_fraction", Unit.COUNT, c, f"{k} / the model's baseline")
          for k, c in (("matmul_bf16", "gpu.matmul"), ("matmul_fp16", "gpu.matmul"),
                       ("matmul_tf32", "gpu.matmul"), ("matmul_fp32", "gpu.matmul"),
                       ("matmul_fp8", "gpu.matmul"), ("hbm_copy", "gpu.hbm"))],
        # nccl: nccl-tests formulas (doc/PERFORMANCE.md); busbw/algbw at the largest size,
        # out-of-place; wrong = elements that differ from the exact result.
        *[_m(f"nccl.{c}_{k}", u, f"nccl.{c}", f"{c} {t}", h)
          for c in ("all_reduce", "all_gather", "reduce_scatter")
          for k, u, t, h in (
              ("busbw", Unit.BYTES_PER_SECOND, "bus bandwidth, largest size", True),
              ("algbw", Unit.BYTES_PER_SECOND, "algorithm bandwidth, largest size", True),
              ("avg_busbw", Unit.BYTES_PER_SECOND, "bus bandwidth, mean of all sizes", True),
              ("wrong", Unit.COUNT, "wrong elements, all sizes", False))],
        _m("nccl.all_reduce_busbw_baseline_fraction", Unit.COUNT, "nccl.all_reduce",
           "all_reduce busbw / the model's 8-GPU baseline"),
    ]
)


# Metrics the tool parsers can read but that no check emits (no suite runs
# iperf3 -u, qperf udp_bw or ib_read_*): not in METRICS, so a profile cannot name
# them; listed so that the error says why, and so the parsers' tests know them.
PARSED_ONLY: frozenset[str] = frozenset({
    "network.udp_bandwidth", "network.udp_lost_packets", "network.udp_jitter",
    "network.rdma_read_latency", "network.rdma_read_latency_avg",
    "network.rdma_read_latency_p99", "network.rdma_read_latency_p99_9",
    "network.rdma_read_bandwidth",
})


def metric_info(name: str) -> MetricInfo | None:
    return METRICS.get(name)


def close_metrics(name: str, count: int = 3) -> list[str]:
    """The known metric names nearest to a misspelt one (difflib's ratio)."""
    return difflib.get_close_matches(name, METRICS, n=count, cutoff=0.6)


def unknown_metric(name: str) -> str:
    """The message for a metric the catalog does not know, with the nearest names."""
    near = close_metrics(name)
    if name in PARSED_ONLY:
        why = (f"unknown metric {name!r}: no check measures it (its tool's parser reads it,"
               " but no suite runs that test)")
        return why + (f"; did you mean {', '.join(near)}?" if near else "")
    if near:
        return f"unknown metric {name!r}; did you mean {', '.join(near)}?"
    domain = name.split(".")[0]
    same = [m for m in METRICS if m.split(".")[0] == domain]
    if same:
        return f"unknown metric {name!r}; the {domain} metrics are {', '.join(same)}"
    domains = sorted({m.split(".")[0] for m in METRICS})
    return f"unknown metric {name!r}; metric names begin with {', '.join(domains)}"
