"""topology.match and its reader on sysfs trees made from public outputs
(tests/data/sysroots/make_fabric_trees.py says which): an 8-GPU 8-HCA NDR node,
a RoCE node, and this VM's own PCI tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bench_agent.checks.base import CheckContext, NoParams, RunOptions
from bench_agent.checks.topology.checks import TopologyMatchCheck
from bench_agent.checks.topology.expected import capture, compare, parse_expected
from bench_agent.checks.topology.reader import pcie_generation, read_topology
from bench_agent.core.errors import ConfigError, NotApplicable
from bench_agent.core.model import Measurement
from tests.cli_support import run_cli
from tests.paths import DATA, REPO

NDR = DATA / "sysroots" / "h100-ndr"
ROCE = DATA / "sysroots" / "h100-roce"
VM = DATA / "sysroots" / "vm-pci"
GPUS = ["0000:53:00.0", "0000:64:00.0", "0000:75:00.0", "0000:86:00.0", "0000:97:00.0",
        "0000:a8:00.0", "0000:b9:00.0", "0000:ca:00.0"]


def bus_plus(address: str, n: int) -> str:
    return f"0000:{int(address[5:7], 16) + n:02x}:00.0"


# --- the reader ---------------------------------------------------------------------


def test_the_ndr_node_has_eight_gpus_each_beside_its_hca_and_drive() -> None:
    topology = read_topology(NDR)
    assert topology.counts() == {"gpu": 8, "hca": 8, "nic": 1, "nvme": 8}
    gpus = topology.of_kind("gpu")
    assert [g.address for g in gpus] == GPUS
    # nvidia-smi topo -m of an 8x H100: GPU0-3 on NUMA 0, GPU4-7 on NUMA 1.
    assert [g.numa_node for g in gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert {(g.max_gen, g.max_width) for g in gpus} == {(5, 16)}
    assert {(g.current_gen, g.current_width) for g in gpus} == {(1, 16)}  # idle
    for gpu in gpus:
        assert [(d.kind, d.address) for d in topology.near(gpu)] == [
            ("hca", bus_plus(gpu.address, 1)), ("nvme", bus_plus(gpu.address, 2))]
    hcas = topology.of_kind("hca")
    assert [h.name for h in hcas] == ["mlx5_0", "mlx5_1", "mlx5_4", "mlx5_5", "mlx5_6",
                                      "mlx5_7", "mlx5_8", "mlx5_9"]
    [nic] = topology.of_kind("nic")
    assert (nic.name, nic.switch, topology.near(nic)) == ("eno1", None, [])


def test_on_the_roce_node_ethernet_functions_with_an_rdma_device_are_hcas() -> None:
    topology = read_topology(ROCE)
    assert topology.counts() == {"gpu": 8, "hca": 12, "nic": 1, "nvme": 8}
    near = {g.address: [d.name for d in topology.near(g) if d.kind == "hca"]
            for g in topology.of_kind("gpu")}
    assert list(near.values()) == [["mlx5_0"], ["mlx5_3"], ["mlx5_4"], ["mlx5_5"],
                                   ["mlx5_6"], ["mlx5_9"], ["mlx5_10"], ["mlx5_11"]]
    # The 100G ports sit on root ports: near no GPU.
    assert sorted(h.name or "" for h in topology.of_kind("hca") if h.switch is None) == [
        "mlx5_1", "mlx5_2", "mlx5_7", "mlx5_8"]


def test_this_vm_has_one_virtio_nic_without_a_pcie_link_and_no_numa_node() -> None:
    topology = read_topology(VM)
    [nic] = topology.devices
    assert (nic.kind, nic.address, nic.name, nic.numa_node, nic.max_gen, nic.max_width) == (
        "nic", "0000:00:03.0", "eth0", -1, None, None)


@pytest.mark.skipif(not Path("/sys/bus/pci/devices").is_dir(), reason="no PCI bus here")
def test_the_live_tree_reads_as_its_capture() -> None:
    live = read_topology(Path("/"))
    assert {d.address for d in live.devices} <= set(os.listdir("/sys/bus/pci/devices"))
    if (Path("/sys/bus/pci/devices/0000:00:03.0/virtio0/net")).is_dir():
        assert live == read_topology(VM)  # the capture is this VM's


@pytest.mark.parametrize(("text", "generation"), [
    ("2.5 GT/s PCIe", 1), ("8.0 GT/s PCIe", 3), ("32.0 GT/s PCIe", 5), ("64.0 GT/s PCIe", 6),
    ("Unknown", None), ("12.0 GT/s PCIe", None), (None, None), ("", None)])
def test_pcie_generation_of_a_link_speed(text: str | None, generation: int | None) -> None:
    assert pcie_generation(text) == generation


def test_a_function_whose_class_is_garbage_is_not_a_component(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(NDR, root, symlinks=True)
    (root / "sys/bus/pci/devices" / GPUS[0] / "class").write_text("banana\n")
    assert read_topology(root).counts()["gpu"] == 7


# --- capture and compare ------------------------------------------------------------


def broken_copy(tmp_path: Path) -> Path:
    """The NDR node with GPU4 (0000:97:00.0) on NUMA node 0 and HCA mlx5_7 (GPU5's,
    0000:a9:00.0) gone off the bus."""
    root = tmp_path / "broken"
    shutil.copytree(NDR, root, symlinks=True)
    (root / "sys/bus/pci/devices/0000:97:00.0/numa_node").write_text("0\n")
    hca = root / "sys/bus/pci/devices/0000:a9:00.0"
    assert (hca / "infiniband/mlx5_7").is_dir()
    shutil.rmtree(hca.resolve())
    hca.unlink()
    return root


def test_a_node_matches_its_own_capture() -> None:
    document = capture(read_topology(NDR), "good-node")
    expected = parse_expected(yaml.safe_load(yaml.safe_dump(document)), "expected.yaml")
    assert compare(expected, read_topology(NDR)) == []
    assert expected.counts == {"gpu": 8, "hca": 8, "nic": 1, "nvme": 8}


def test_a_gpu_moved_to_another_numa_node_and_a_missing_hca_are_named(tmp_path: Path) -> None:
    expected = parse_expected(capture(read_topology(NDR)), "expected.yaml")
    found = [m.message for m in compare(expected, read_topology(broken_copy(tmp_path)))]
    assert found == [
        "hca count: count 7, expected 8",
        "gpu 0000:97:00.0: numa_node 0, expected 1",
        # GPU5's switch lost its HCA: only its NVMe drive is near it now.
        "gpu 0000:a8:00.0: near 0000:aa:00.0, expected 0000:a9:00.0, 0000:aa:00.0",
        "hca 0000:a9:00.0 (mlx5_7): missing (expected on this node type)",
    ]


def test_the_expected_file_is_read_strictly() -> None:
    good = capture(read_topology(NDR))
    cases = [
        ({**good, "colour": "red"}, "Extra inputs are not permitted at colour"),
        ({**good, "schema": 2}, "expected-topology schema 2 is not 1"),
        ({**good, "counts": {"gpu": 8, "tpu": 2}}, "unknown component kind(s) in counts: tpu"),
        ({**good, "devices": [*good["devices"], good["devices"][0]]},
         "device address(es) listed twice: 0000:01:00.0"),
        ({**good, "devices": [{**good["devices"][0], "address": 190.0}]},
         "Input should be a valid string at devices.0.address"),
    ]
    for data, message in cases:
        with pytest.raises(ConfigError) as exc:
            parse_expected(data, "expected.yaml")
        assert message in str(exc.value) and "expected.yaml" in str(exc.value)


# --- the check ----------------------------------------------------------------------


def run_check(root: Path, document: dict[str, object] | None) -> list[Measurement]:
    options = RunOptions(expected_topology=document, expected_topology_file="node.yaml")
    return TopologyMatchCheck().run(CheckContext(root=root, options=options), NoParams())


def test_the_check_names_each_component_that_differs(tmp_path: Path) -> None:
    got = run_check(broken_copy(tmp_path), capture(read_topology(NDR)))
    failed = {m.device: m.params["note"] for m in got
              if m.metric == "topology.component_matches" and m.value == 0}
    assert failed == {
        "hca count": "hca count: count 7, expected 8",
        "gpu 0000:97:00.0": "gpu 0000:97:00.0: numa_node 0, expected 1",
        "gpu 0000:a8:00.0": "gpu 0000:a8:00.0: near 0000:aa:00.0, expected 0000:a9:00.0, "
                            "0000:aa:00.0",
        "hca 0000:a9:00.0 (mlx5_7)": "hca 0000:a9:00.0 (mlx5_7): missing (expected on this "
                                     "node type)",
    }
    by = {m.metric: m for m in got if not m.device}
    assert by["topology.mismatches"].value == 4
    assert (by["topology.gpu_count"].value, by["topology.hca_count"].value) == (8, 7)
    matched = [m for m in got if m.metric == "topology.component_matches" and m.value == 1]
    assert len(matched) == 3 + 6 + 7 + 1 + 8  # counts, GPUs, HCAs, NIC, NVMe as expected
    gpu = next(m for m in matched if m.device == "gpu 0000:53:00.0")
    assert gpu.params["pcie_max"] == "Gen5 x16"
    assert gpu.params["pcie_current_informative"] == "Gen1 x16"


def test_without_an_expected_topology_the_check_is_not_applicable() -> None:
    with pytest.raises(NotApplicable, match="no expected topology: give `--expect FILE`"):
        run_check(NDR, None)


# --- the command line ---------------------------------------------------------------


def bench_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=120, cwd=REPO)


def test_capture_then_run_topology_on_a_broken_node_fails_naming_them(tmp_path: Path) -> None:
    expected = tmp_path / "h100.yaml"
    done = bench_agent("topology", "capture", "--sysroot", str(NDR), "--output", str(expected))
    assert (done.returncode, done.stdout, done.stderr) == (0, f"wrote {expected}\n", "")
    good = bench_agent("run", "topology", "--expect", str(expected), "--sysroot", str(NDR),
                       "--no-sign", "--output", str(tmp_path / "good"), "--json")
    assert good.returncode == 0, good.stderr
    bad = bench_agent("run", "topology", "--expect", str(expected), "--sysroot",
                      str(broken_copy(tmp_path)), "--no-sign", "--output", str(tmp_path / "bad"),
                      "--json")
    assert bad.returncode == 1, bad.stderr
    report = json.loads(bad.stdout)
    failed = sorted(v["device"] for v in report["verdicts"] if v["status"] == "FAIL")
    assert failed == ["gpu 0000:97:00.0", "gpu 0000:a8:00.0", "hca 0000:a9:00.0 (mlx5_7)",
                      "hca count"]
    [numa] = [v for v in report["verdicts"] if v["device"] == "gpu 0000:97:00.0"]
    assert numa["message"] == ("0 does not meet >= 1; gpu 0000:97:00.0: numa_node 0, "
                               "expected 1")


def test_the_profile_topology_key_stands_in_for_expect(tmp_path: Path) -> None:
    (tmp_path / "h100.yaml").write_text(bench_agent("topology", "capture", "--sysroot",
                                                    str(NDR)).stdout)
    profile = tmp_path / "h100-node.yaml"
    profile.write_text("name: h100-node\nextends: topology\ntopology: h100.yaml\n")
    done = bench_agent("run", "topology", "--profile", str(profile), "--sysroot",
                       str(broken_copy(tmp_path)), "--no-sign", "--output", str(tmp_path / "r"),
                       "--json")
    assert done.returncode == 1, done.stderr
    assert sum(v["status"] == "FAIL" for v in json.loads(done.stdout)["verdicts"]) == 4


def test_a_bad_expected_file_is_a_configuration_error_before_the_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: 1\ncounts: {gpu: 8}\ndevices: []\ncounts: {gpu: 7}\n")
    done = bench_agent("run", "topology", "--expect", str(bad), "--no-sign", "--output",
                       str(tmp_path / "r"))
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        f"bench-agent: configuration error: {bad}: duplicate key 'counts' at line 4"]
    missing = bench_agent("run", "topology", "--expect", str(tmp_path / "nope.yaml"))
    assert (missing.returncode, missing.stderr.strip()) == (
        3, f"bench-agent: --expect {tmp_path / 'nope.yaml'}: no such file")


def test_run_topology_without_an_expectation_is_an_error_saying_how(tmp_path: Path) -> None:
    done = bench_agent("run", "topology", "--sysroot", str(NDR), "--no-sign", "--output",
                       str(tmp_path), "--json")
    assert done.returncode == 2, done.stderr
    [verdict] = [v for v in json.loads(done.stdout)["verdicts"] if v["check"] == "topology.match"
                 and not v.get("metric")]
    assert "no expected topology: give `--expect FILE`" in verdict["message"]


def test_an_unquoted_address_is_refused_with_the_way_out() -> None:
    # YAML 1.1 (PyYAML) reads 0000:53:00.0 as a base-60 number; capture quotes them.
    data = yaml.safe_load("schema: 1\ncounts: {gpu: 1}\ndevices:\n"
                          "- {kind: gpu, address: 0000:53:00.0}\n")
    assert not isinstance(data["devices"][0]["address"], str)
    with pytest.raises(ConfigError) as exc:
        parse_expected(data, "node.yaml")
    assert str(exc.value).endswith(
        "Input should be a valid string at devices.0.address (quote PCI addresses: YAML "
        "reads an unquoted 0000:53:00.0 as a number)")
    captured = bench_agent("topology", "capture", "--sysroot", str(NDR)).stdout
    assert "  address: '0000:53:00.0'\n" in captured
    assert parse_expected(yaml.safe_load(captured), "captured").counts["gpu"] == 8


def test_the_expected_topology_travels_in_the_run_options() -> None:
    document = capture(read_topology(VM))
    options = RunOptions(expected_topology=document, expected_topology_file="vm.yaml")
    back = RunOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert (back.expected_topology, back.expected_topology_file) == (document, "vm.yaml")
    with pytest.raises(ValueError, match="expected_topology must be an object, got list"):
        RunOptions.from_dict({"expected_topology": []})


@pytest.mark.parametrize("profile", ["guide-minimum", "guide-recommended",
                                     "guide-high-performance", "gpu-node", "fabric-ndr400"])
def test_acceptance_runs_topology_and_its_profiles_fail_a_misplaced_component(
        profile: str) -> None:
    from bench_agent.config.loader import load_profile_named, load_suite, suite_path
    from bench_agent.core.model import Status
    from bench_agent.core.thresholds import evaluate
    from bench_agent.core.units import Unit

    assert "topology.match" in [p.check for p in load_suite(suite_path("acceptance")).checks]
    misplaced = Measurement(check="topology.match", metric="topology.component_matches",
                            value=0, unit=Unit.COUNT, device="gpu 0000:18:00.0")
    verdicts = [v for v in evaluate([misplaced], load_profile_named(profile).thresholds,
                                    {"topology.match"})
                if v.metric == "topology.component_matches"]
    assert [(v.status, v.device) for v in verdicts] == [(Status.FAIL, "gpu 0000:18:00.0")]
    # Without an expected topology the check measures nothing: SKIP, never PASS.
    unmeasured = [v for v in evaluate([], load_profile_named(profile).thresholds, set(),
                                      unmeasured={"topology.match": "no expected topology"})
                  if v.metric == "topology.component_matches"]
    assert [v.status for v in unmeasured] == [Status.SKIP]
