"""Fault fields on verdicts: the code, the component in an SRE's words, the
remediation; PASS and SKIP stay uncoded; reports without the fields still read."""

from __future__ import annotations

from bench_agent.core.inventory import Disk, Gpu, Host, IbPort, Inventory
from bench_agent.core.model import Measurement, Status, Verdict
from bench_agent.core.units import Unit
from bench_agent.faults.assign import assign_faults, classify

INVENTORY = Inventory(host=Host(hostname="node-7"),
                      gpus=(Gpu(index=3, name="NVIDIA H100 80GB HBM3",
                                uuid="GPU-8f1c0000-1111-2222-3333-444444444444"),),
                      infiniband=(IbPort(device="mlx5_0", port=1, link_layer="InfiniBand"),),
                      disks=(Disk(name="nvme0n1", model="SAMSUNG MZQL23T8HCLS", nvme=True),))


def test_a_gpu_fault_names_the_gpu_by_index_uuid_serial_and_pci_address() -> None:
    m = Measurement(check="gpu.health", metric="gpu.xid_events", value=1, unit=Unit.COUNT,
                    device="gpu3", params={"uuid": "GPU-8f1c0000-1111-2222-3333-444444444444",
                                           "serial": "1652822012345",
                                           "pci_bus_id": "00000000:1B:00.0", "xids": [13, 79]})
    v = Verdict(check="gpu.health", status=Status.FAIL, metric="gpu.xid_events", value=1,
                unit=Unit.COUNT, device="gpu3", threshold="<= 0")
    [coded] = assign_faults([v], [m], INVENTORY)
    assert coded.fault_code == "BA-GPU-XID-79"
    assert coded.remediation == "reboot"
    assert coded.component == ("GPU 3 NVIDIA H100 80GB HBM3 GPU-8f1c0000-1111-2222-3333-"
                               "444444444444 serial 1652822012345 00000000:1B:00.0")


def test_ports_drives_and_check_errors_get_their_components() -> None:
    port = Verdict(check="network.ib_port_health", status=Status.FAIL,
                   metric="network.ib_port_link_up", value=0, unit=Unit.COUNT,
                   device="mlx5_0/1")
    drive = Verdict(check="storage.randread", status=Status.FAIL,
                    metric="storage.randread_4k_iops_per_device", value=10, unit=Unit.IOPS,
                    device="nvme0n1")
    timeout = Verdict(check="gpu.matmul", status=Status.ERROR, message="timed out")
    coded = assign_faults([port, drive, timeout], [], INVENTORY, {"gpu.matmul": "timeout"})
    assert [(v.fault_code, v.component, v.remediation) for v in coded] == [
        ("BA-IB-LINK-DOWN", "HCA mlx5_0 port 1 (InfiniBand)", "reseat-recable"),
        ("BA-NVME-IOPS-LOW", "drive nvme0n1 SAMSUNG MZQL23T8HCLS", "escalate"),
        ("BA-CHECK-TIMEOUT", "check gpu.matmul", "re-run"),
    ]


def test_pass_and_skip_stay_uncoded_and_a_missing_required_value_is_not_measured() -> None:
    ok = Verdict(check="inventory", status=Status.PASS, metric="inventory.gpu_count", value=8,
                 unit=Unit.COUNT)
    skip = Verdict(check="gpu.health", status=Status.SKIP, message="no NVML")
    required = Verdict(check="gpu.health", status=Status.FAIL, metric="gpu.count",
                       message="profile gpu-node requires gpu.count >= 1")
    assert classify(ok, None, INVENTORY) == ok
    assert classify(skip, None, INVENTORY) == skip
    coded = classify(required, None, INVENTORY)
    assert (coded.fault_code, coded.component) == ("BA-NOT-MEASURED", "check gpu.health")
    node = classify(Verdict(check="inventory", status=Status.FAIL, metric="inventory.memory_total",
                            value=1e9, unit=Unit.BYTES), None, INVENTORY)
    assert (node.fault_code, node.component) == ("BA-NODE-MEMORY-LOW", "node node-7")


def test_the_fields_round_trip_and_older_verdicts_read_with_defaults() -> None:
    v = Verdict(check="gpu.health", status=Status.WARN, metric="gpu.pcie_replays", value=3,
                unit=Unit.COUNT, fault_code="BA-GPU-PCIE-REPLAY", component="GPU 0",
                remediation="reseat-recable", attempts=2, flaky=True)
    data = v.to_dict()
    assert {k: data[k] for k in ("fault_code", "component", "remediation", "attempts",
                                 "flaky")} == {"fault_code": "BA-GPU-PCIE-REPLAY",
                                               "component": "GPU 0",
                                               "remediation": "reseat-recable",
                                               "attempts": 2, "flaky": True}
    assert Verdict.from_dict(data) == v
    old = {k: val for k, val in data.items()
           if k not in ("fault_code", "component", "remediation", "attempts", "flaky")}
    read = Verdict.from_dict(old)
    assert (read.fault_code, read.component, read.remediation, read.attempts, read.flaky) == (
        "", "", "", 1, False)
