"""The RoCE GID index perftest uses, picked from the port's GID table, and the HCA
facts of the inventory, on the trees of tests/data/sysroots/make_fabric_trees.py
(h100-roce: GID tables as mlx5 fills them for one IPv4 address per interface;
h100-ndr: the HCAs of leptonai/gpud's /sys/class/infiniband of an H100 node)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench_agent.checks.base import CheckContext
from bench_agent.checks.network.checks import IbPortHealthCheck, IbPortParams, local_gid_index
from bench_agent.core.errors import ToolFailed
from bench_agent.core.inventory import Hca, IbPort
from bench_agent.inventory.collect import collect_inventory
from bench_agent.inventory.infiniband import GidEntry, gid_table, pick_roce_gid, roce_gid_index
from bench_agent.peer.server import _roce_gid
from tests.paths import DATA

NDR = DATA / "sysroots" / "h100-ndr"
ROCE = DATA / "sysroots" / "h100-roce"
PORT = "sys/class/infiniband/mlx5_0/ports/1"


def test_the_gid_table_of_a_roce_port_lists_its_used_entries() -> None:
    table = gid_table(ROCE / PORT)
    local = "fe80:0000:0000:0000:a288:c2ff:fee3:142a"  # from ibstat's Port GUID
    mapped = "0000:0000:0000:0000:0000:ffff:0a00:0002"
    assert table == [GidEntry(0, local, "IB/RoCE v1", "eth0"),
                     GidEntry(1, local, "RoCE v2", "eth0"),
                     GidEntry(2, mapped, "IB/RoCE v1", "eth0"),
                     GidEntry(3, mapped, "RoCE v2", "eth0")]  # 4-7: all-zero, unused
    assert [e.ipv4 for e in table] == [None, None, "10.0.0.2", "10.0.0.2"]


def test_the_pick_is_roce_v2_with_an_ipv4_address() -> None:
    picked = roce_gid_index(ROCE, "mlx5_0")
    assert picked is not None and (picked.index, picked.ipv4) == (3, "10.0.0.2")
    v1_only = [GidEntry(0, "0000:0000:0000:0000:0000:ffff:0a00:0002", "IB/RoCE v1", "eth0")]
    ipv6_v2 = [GidEntry(1, "fd00:0000:0000:0000:0000:0000:0000:0001", "RoCE v2", "eth0")]
    unreadable_type = [GidEntry(2, "0000:0000:0000:0000:0000:ffff:0a00:0002", None, None)]
    assert pick_roce_gid(v1_only + ipv6_v2 + unreadable_type) is None
    later = GidEntry(5, "0000:0000:0000:0000:0000:ffff:c0a8:0101", "RoCE v2", "eth0")
    assert pick_roce_gid([*ipv6_v2, later]) == later
    assert later.ipv4 == "192.168.1.1"


def test_an_infiniband_port_has_no_gid_to_pick() -> None:
    assert roce_gid_index(NDR, "mlx5_0") is None
    assert local_gid_index(NDR, [IbPort("mlx5_0", 1, "4: ACTIVE", link_layer="InfiniBand")]) \
        is None


def test_the_rdma_checks_use_the_picked_index_on_roce() -> None:
    port = IbPort("mlx5_3", 1, "4: ACTIVE", link_layer="Ethernet")
    assert local_gid_index(ROCE, [port]) == 3


def test_a_roce_port_without_an_ipv4_gid_is_an_error_saying_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(ROCE, root, symlinks=True)
    gids = root / PORT / "gids"
    for index in (2, 3):  # the interface lost its IPv4 address: the kernel drops them
        (gids / str(index)).write_text("0000:0000:0000:0000:0000:0000:0000:0000\n")
    with pytest.raises(ToolFailed) as exc:
        local_gid_index(root, [IbPort("mlx5_0", 1, "4: ACTIVE", link_layer="Ethernet")])
    assert str(exc.value).endswith(
        "mlx5_0 port 1 is RoCE but its GID table (/sys/class/infiniband/mlx5_0/ports/1/gids) "
        "has no RoCE v2 entry with an IPv4 address: set an IPv4 address on its interface, "
        "or give gid_index")


def test_the_peer_picks_its_own_gid_the_same_way() -> None:
    assert _roce_gid(ROCE, "mlx5_0", 1) == 3
    assert _roce_gid(NDR, "mlx5_0", 1) is None  # InfiniBand
    assert _roce_gid(ROCE, "mlx5_0", "1") is None  # a port that is not a number


# --- HCA facts ----------------------------------------------------------------------


def test_the_inventory_holds_each_hcas_firmware_and_board_id() -> None:
    inventory = collect_inventory(NDR, gpu_probe=list)
    assert inventory.hcas == tuple(Hca(name, "28.41.1000", "MT_0000000838", "MT4129") for name in
                                   ("mlx5_0", "mlx5_1", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_7",
                                    "mlx5_8", "mlx5_9"))
    roce = {h.name: h.fw_ver for h in collect_inventory(ROCE, gpu_probe=list).hcas}
    assert (roce["mlx5_0"], roce["mlx5_1"]) == ("28.39.1002", "22.39.1002")  # ibstat's


def test_an_unreadable_hca_fact_is_unknown(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(NDR, root, symlinks=True)
    (root / "sys/class/infiniband/mlx5_0/fw_ver").unlink()
    [first, *_] = collect_inventory(root, gpu_probe=list).hcas
    assert (first.name, first.fw_ver, first.board_id) == ("mlx5_0", None, "MT_0000000838")


# --- port health on the NDR node ----------------------------------------------------


def test_port_health_on_the_ndr_node_reads_the_captured_counters() -> None:
    got = {(m.device, m.metric): m.value for m in
           IbPortHealthCheck().run(CheckContext(root=NDR), IbPortParams())}
    assert {d for d, _ in got} == {f"mlx5_{n}/1" for n in (0, 1, 4, 5, 6, 7, 8, 9)}
    assert {v for (_, metric), v in got.items() if metric == "network.ib_port_rate"} == {400e9}
    # gpud's capture: mlx5_0 counted 14 port_rcv_errors and 15 buffer overruns.
    assert got[("mlx5_0/1", "network.ib_port_rcv_errors")] == 14
    assert got[("mlx5_0/1", "network.ib_excessive_buffer_overrun_errors")] == 15


def test_bench_agent_inventory_shows_the_hcas() -> None:
    from tests.cli_support import run_cli
    from tests.paths import REPO

    done = run_cli("inventory", "--sysroot", str(NDR), timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    hcas = [line for line in done.stdout.splitlines() if line.startswith("hca ")]
    assert len(hcas) == 8
    assert hcas[0] == "hca      mlx5_0: MT4129, firmware 28.41.1000, board MT_0000000838"
