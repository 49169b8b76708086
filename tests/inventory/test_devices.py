"""inventory/devices.py: NVMe namespaces, NIC link speed and RDMA devices, each read
once, on the captured tree and on trees made here; and the callers that use them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench_agent.inventory.collect import collect_inventory
from bench_agent.inventory.devices import (
    is_nvme_namespace,
    link_speed_bps,
    nvme_devices,
    rdma_devices,
)
from tests.paths import DATA

DUAL = DATA / "sysroots" / "dual-socket-nvme-ib"


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(DUAL, root, symlinks=True)
    return root


def test_nvme_devices_of_the_captured_tree() -> None:
    assert nvme_devices(DUAL) == [f"/dev/nvme{n}n1" for n in range(4)]  # not sda, not loop0


def test_nvme_multipath_paths_are_not_namespaces(tmp_path: Path) -> None:
    """Native multipath puts hidden per-path devices (nvme0c0n1) in /sys/block beside
    the namespace (nvme0n1); smart-log and fio want the namespace, once."""
    for name in ("nvme0n1", "nvme0c0n1", "nvme0c1n1", "nvme10n2", "nvme-fabrics", "sda"):
        (tmp_path / "sys/block" / name).mkdir(parents=True)
    assert nvme_devices(tmp_path) == ["/dev/nvme0n1", "/dev/nvme10n2"]
    assert not is_nvme_namespace("nvme0c0n1")
    assert is_nvme_namespace("nvme3n1")


def test_nvme_devices_without_sys_block(tmp_path: Path) -> None:
    assert nvme_devices(tmp_path) == []


def test_the_inventory_marks_the_same_namespaces(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "sys/block/nvme0c0n1").mkdir()
    disks = collect_inventory(root, gpu_probe=list).disks
    assert sorted(f"/dev/{d.name}" for d in disks if d.nvme) == nvme_devices(root)


def test_burnin_samples_the_namespaces_under_its_root() -> None:
    """The old burn-in lister read /sys/block under root but checked /dev on this
    machine, so a captured tree gave no drive."""
    from bench_agent.burnin.health import nvme_devices_from_inventory

    assert nvme_devices_from_inventory(DUAL) == [f"/dev/nvme{n}n1" for n in range(4)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100000\n", 100_000_000_000), ("25000", 25_000_000_000), ("-1\n", None),
     ("4294967295\n", None), ("0\n", None), ("", None), ("fast\n", None)],
)
def test_link_speed(tmp_path: Path, text: str, expected: int | None) -> None:
    speed = tmp_path / "sys/class/net/eth0/speed"
    speed.parent.mkdir(parents=True)
    speed.write_text(text)
    assert link_speed_bps(tmp_path, "eth0") == expected


def test_link_speed_of_the_captured_tree_and_a_missing_nic() -> None:
    assert link_speed_bps(DUAL, "eth0") == 100_000_000_000
    assert link_speed_bps(DUAL, "eth1") is None  # -1: link down
    assert link_speed_bps(DUAL, "eth9") is None


def test_network_check_and_inventory_read_one_speed() -> None:
    from bench_agent.checks.network import checks

    inventory = collect_inventory(DUAL, gpu_probe=list)
    assert {n.name: n.speed_bits_per_second for n in inventory.nics} == {
        name: checks.link_speed_bps(DUAL, name) for name in ("eth0", "eth1")}


def test_rdma_devices(tmp_path: Path) -> None:
    from bench_agent.peer.server import rdma_devices as peer_rdma_devices

    assert rdma_devices(DUAL) == ["mlx5_0", "mlx5_1"]
    assert peer_rdma_devices(DUAL) == ["mlx5_0", "mlx5_1"]
    assert rdma_devices(tmp_path) == []
