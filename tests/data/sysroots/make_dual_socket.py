"""Generate the hand-made dual-socket-nvme-ib fixture tree.

    python tests/data/sysroots/make_dual_socket.py [tests/data/sysroots/dual-socket-nvme-ib]

A dual Xeon Platinum 8480+ (Sapphire Rapids) node: 2 sockets x 32 cores x 2
threads, 1 TiB of RAM over 2 NUMA nodes, 4 x 3.84 TB NVMe, one SATA disk, a
100 GbE port, a port with its link down, and two NDR InfiniBand HCAs. The file
formats are the kernel's own (checked against a live /proc and /sys); the
values follow Intel's SPR numbering: CPUs 0-31 are socket 0's first threads,
32-63 socket 1's, 64-127 their hyper-thread siblings. tests/test_inventory.py
checks that this script still reproduces the committed tree exactly.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

SOCKETS = 2
CORES_PER_SOCKET = 32
THREADS_PER_CORE = 2
LOGICAL = SOCKETS * CORES_PER_SOCKET * THREADS_PER_CORE
MEMTOTAL_KB = 1056561152  # 1 TiB of DIMMs less firmware and kernel reservations
NODE_MEMTOTAL_KB = (528118400, 528442752)  # sums to MEMTOTAL_KB
NVME_SECTORS = 7501476528  # 3.84 TB (3840755982336 bytes) in 512-byte sectors
SATA_SECTORS = 7814037168  # 4 TB SATA disk

FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts"
    " acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art"
    " arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf"
    " tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma"
    " cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes"
    " xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb cat_l3 cat_l2 cdp_l3"
    " invpcid_single intel_ppin cdp_l2 ssbd mba ibrs ibpb stibp ibrs_enhanced tpr_shadow"
    " flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid"
    " cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb intel_pt"
    " avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc"
    " cqm_occup_llc cqm_mbm_total cqm_mbm_local split_lock_detect avx_vnni avx512_bf16"
    " wbnoinvd dtherm ida arat pln pts hfi vnmi avx512vbmi umip pku ospke waitpkg"
    " avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq"
    " la57 rdpid bus_lock_detect cldemote movdiri movdir64b enqcmd fsrm md_clear"
    " serialize tsxldtrk pconfig arch_lbr ibt amx_bf16 avx512_fp16 amx_tile amx_int8"
    " flush_l1d arch_capabilities"
)
VMX_FLAGS = (
    "vnmi preemption_timer posted_intr invvpid ept_x_only ept_ad ept_1gb flexpriority"
    " apicv tsc_offset vtpr mtf vapic ept vpid unrestricted_guest vapic_reg vid ple"
    " shadow_vmcs pml ept_mode_based_exec tsc_scaling usr_wait_pause notify_vm_exiting"
)


def topology(cpu: int) -> tuple[int, int, int]:
    """(socket, core, thread) of a logical CPU in Intel's enumeration order."""
    thread, rest = divmod(cpu, SOCKETS * CORES_PER_SOCKET)
    socket, core = divmod(rest, CORES_PER_SOCKET)
    return socket, core, thread


def cpuinfo() -> str:
    blocks = []
    for cpu in range(LOGICAL):
        socket, core, thread = topology(cpu)
        apicid = socket * 128 + core * 2 + thread
        blocks.append(
            f"processor\t: {cpu}\n"
            "vendor_id\t: GenuineIntel\n"
            "cpu family\t: 6\n"
            "model\t\t: 143\n"
            "model name\t: Intel(R) Xeon(R) Platinum 8480+\n"
            "stepping\t: 8\n"
            "microcode\t: 0x2b000461\n"
            "cpu MHz\t\t: 2000.000\n"
            "cache size\t: 107520 KB\n"
            f"physical id\t: {socket}\n"
            f"siblings\t: {CORES_PER_SOCKET * THREADS_PER_CORE}\n"
            f"core id\t\t: {core}\n"
            f"cpu cores\t: {CORES_PER_SOCKET}\n"
            f"apicid\t\t: {apicid}\n"
            f"initial apicid\t: {apicid}\n"
            "fpu\t\t: yes\n"
            "fpu_exception\t: yes\n"
            "cpuid level\t: 32\n"
            "wp\t\t: yes\n"
            f"flags\t\t: {FLAGS}\n"
            f"vmx flags\t: {VMX_FLAGS}\n"
            "bugs\t\t: spectre_v1 spectre_v2 spec_store_bypass swapgs eibrs_pbrsb\n"
            "bogomips\t: 4000.00\n"
            "clflush size\t: 64\n"
            "cache_alignment\t: 64\n"
            "address sizes\t: 46 bits physical, 57 bits virtual\n"
            "power management:\n\n"
        )
    return "".join(blocks)


def meminfo() -> str:
    # fs/proc/meminfo.c: name padded to 16 columns, value to 8, then " kB".
    rows = [
        ("MemTotal", MEMTOTAL_KB),
        ("MemFree", 1031220736),
        ("MemAvailable", 1039816704),
        ("Buffers", 412672),
        ("Cached", 9123840),
        ("SwapCached", 0),
        ("Active", 4318208),
        ("Inactive", 7012352),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Dirty", 128),
        ("Shmem", 56320),
        ("Slab", 4821504),
        ("PageTables", 61440),
        ("CommitLimit", 528280576),
        ("Committed_AS", 9437184),
        ("VmallocTotal", 13743895347199),
        ("HugePages_Total", 0),
        ("Hugepagesize", 2048),
        ("DirectMap4k", 1009664),
        ("DirectMap2M", 30359552),
        ("DirectMap1G", 1044381696),
    ]
    lines = []
    for name, value in rows:
        unit = "" if name.startswith("HugePages_") else " kB"
        lines.append(f"{name + ':':<16}{value:>8}{unit}\n")
    return "".join(lines)


def node_meminfo(node: int) -> str:
    # drivers/base/node.c node_read_meminfo: "Node %d MemTotal:       %8lu kB".
    total = NODE_MEMTOTAL_KB[node]
    free = total - 12_670_208
    return (
        f"Node {node} MemTotal:       {total:8d} kB\n"
        f"Node {node} MemFree:        {free:8d} kB\n"
        f"Node {node} MemUsed:        {total - free:8d} kB\n"
        f"Node {node} HugePages_Total:     0\n"
        f"Node {node} HugePages_Free:      0\n"
    )


def node_cpulist(node: int) -> str:
    first = node * CORES_PER_SOCKET
    second = first + SOCKETS * CORES_PER_SOCKET
    return f"{first}-{first + CORES_PER_SOCKET - 1},{second}-{second + CORES_PER_SOCKET - 1}\n"


def build(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    files: dict[str, str] = {
        "proc/cpuinfo": cpuinfo(),
        "proc/meminfo": meminfo(),
        "proc/sys/kernel/hostname": "dual-socket-nvme-ib\n",
        "proc/sys/kernel/osrelease": "5.15.0-105-generic\n",
        "proc/sys/kernel/arch": "x86_64\n",
        "etc/os-release": (
            'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
            'VERSION="22.04.4 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\n'
            "ID_LIKE=debian\n"
        ),
        "sys/devices/system/cpu/online": f"0-{LOGICAL - 1}\n",
    }
    cpu = "sys/devices/system/cpu"
    for n in range(LOGICAL):
        socket, core, _ = topology(n)
        files[f"{cpu}/cpu{n}/topology/physical_package_id"] = f"{socket}\n"
        files[f"{cpu}/cpu{n}/topology/core_id"] = f"{core}\n"
    for index, (level, size, kind) in enumerate(
        [
            (1, "48K", "Data"),
            (1, "32K", "Instruction"),
            (2, "2048K", "Unified"),
            (3, "107520K", "Unified"),
        ]
    ):
        base = f"{cpu}/cpu0/cache/index{index}"
        files[f"{base}/level"] = f"{level}\n"
        files[f"{base}/size"] = f"{size}\n"
        files[f"{base}/type"] = f"{kind}\n"
    for node in range(SOCKETS):
        files[f"sys/devices/system/node/node{node}/cpulist"] = node_cpulist(node)
        files[f"sys/devices/system/node/node{node}/meminfo"] = node_meminfo(node)
    for n in range(4):
        disk = f"sys/block/nvme{n}n1"
        files[f"{disk}/size"] = f"{NVME_SECTORS}\n"
        files[f"{disk}/queue/rotational"] = "0\n"
        files[f"{disk}/removable"] = "0\n"
        # NVMe Identify Controller MN is 40 bytes, space-padded (nvme/host/core.c).
        files[f"{disk}/device/model"] = f"{'SAMSUNG MZQL23T8HCLS-00A07':<40}\n"
    files["sys/block/sda/size"] = f"{SATA_SECTORS}\n"
    files["sys/block/sda/queue/rotational"] = "1\n"
    files["sys/block/sda/removable"] = "0\n"
    files["sys/block/sda/device/model"] = "ST4000NM000A-2HZ\n"  # SCSI INQUIRY: 16 bytes
    files["sys/block/loop0/size"] = "0\n"  # skipped by the inventory
    nics = {
        "eth0": ("100000", "up", "b8:3f:d2:4a:10:20", "mlx5_core"),
        "eth1": ("-1", "down", "b8:3f:d2:4a:10:21", "mlx5_core"),
        "lo": (None, "unknown", "00:00:00:00:00:00", None),
    }
    for name, (speed, state, mac, _) in nics.items():
        if speed is not None:
            files[f"sys/class/net/{name}/speed"] = f"{speed}\n"
        files[f"sys/class/net/{name}/operstate"] = f"{state}\n"
        files[f"sys/class/net/{name}/address"] = f"{mac}\n"
    files["sys/bus/pci/drivers/mlx5_core/uevent"] = ""
    for hca in ("mlx5_0", "mlx5_1"):
        port = f"sys/class/infiniband/{hca}/ports/1"
        files[f"{port}/state"] = "4: ACTIVE\n"
        files[f"{port}/phys_state"] = "5: LinkUp\n"
        files[f"{port}/rate"] = "400 Gb/sec (4X NDR)\n"
        files[f"{port}/link_layer"] = "InfiniBand\n"

    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for name, (_, _, _, driver) in nics.items():
        if driver is not None:
            link = dest / f"sys/class/net/{name}/device/driver"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f"../../../../bus/pci/drivers/{driver}")


if __name__ == "__main__":
    default = Path(__file__).resolve().parent / "dual-socket-nvme-ib"
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
