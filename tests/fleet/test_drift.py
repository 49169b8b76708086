"""Configuration drift over a generated fleet: one node on another driver, one GPU
on another VBIOS; the expected configuration that `baseline generate` writes."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from bench_agent.core.inventory import Inventory
from bench_agent.fleet.drift import expected_configuration, find_drift, node_facts_of
from bench_agent.inventory.collect import collect_inventory
from bench_agent.tools import nvml
from tests.cli_support import run_cli
from tests.fake_nvml import FakeNvml
from tests.fleet_factory import report
from tests.inventory.config_tree import gpu_node_tree
from tests.paths import REPO

pytest.importorskip("pandas")

NODES = 12
OTHER_DRIVER, ODD_GPU_NODE = 3, 7


def _base(tmp_path: Path) -> Inventory:
    with nvml.use_loader(lambda: FakeNvml()):
        return collect_inventory(gpu_node_tree(tmp_path / "tree"), gpu_probe=list)


def _fleet(tmp_path: Path, names: list[str] | None = None) -> Path:
    base = _base(tmp_path)
    folder = tmp_path / "fleet"
    folder.mkdir()
    for index, node in enumerate(names or [f"node-{i:02d}" for i in range(NODES)]):
        config = base.config
        if index == OTHER_DRIVER:
            config = replace(config, nvidia_driver_version="535.183.01")
        if index == ODD_GPU_NODE:
            gpus = list(config.gpus)
            gpus[2] = replace(gpus[2], vbios_version="96.00.99.00.01")
            config = replace(config, gpus=tuple(gpus))
        inventory = replace(base, config=config).to_dict()
        data = report(node, {"cpu.gemm_fp64_all_cores": 2.0e12}, index)
        folder.joinpath(f"{index}.json").write_text(json.dumps({**data, "inventory": inventory}))
    return folder


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=120, cwd=REPO)


def test_fleet_compare_names_the_drifting_nodes_and_facts(tmp_path: Path) -> None:
    result = _cli("fleet", "compare", str(_fleet(tmp_path)))
    assert result.returncode == 1, result.stderr  # drift, no outlier
    drift = [line for line in result.stdout.splitlines() if line.startswith("DRIFT")]
    assert drift == [
        "DRIFT node-07: gpu.vbios_version[NVIDIA H100 80GB HBM3] = 96.00.74.00.01 | "
        "96.00.99.00.01 (fleet: 96.00.74.00.01 on 11 of 12 nodes of its type)",
        "DRIFT node-03: node.nvidia_driver = 535.183.01 (fleet: 550.54.15 on 11 of 12 nodes "
        "of its type)",
    ]
    assert "configuration drift (2)" in result.stdout
    assert "OUTLIER" not in result.stdout


def test_csv_output_names_the_drift_that_sets_its_exit_code(tmp_path: Path) -> None:
    result = _cli("fleet", "compare", str(_fleet(tmp_path)), "--format", "csv")
    assert result.returncode == 1
    assert "DRIFT node-03: node.nvidia_driver = 535.183.01" in result.stderr
    assert "DRIFT" not in result.stdout  # the CSV keeps its metric rows


def test_a_fleet_without_drift_exits_0_and_says_so(tmp_path: Path) -> None:
    folder = _fleet(tmp_path)
    for index in (OTHER_DRIVER, ODD_GPU_NODE):
        (folder / f"{index}.json").unlink()
    result = _cli("fleet", "compare", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration: no drift over 10 node(s)" in result.stdout


def test_reports_of_agents_without_configuration_facts_are_not_drift() -> None:
    old = report("n", {}, 0)  # inventory without a schema_version: no facts
    assert node_facts_of(old) is None
    facts = {"a": {"node.kernel": "6.8"}, "b": {"node.kernel": "6.8"}}
    assert find_drift(facts) == []  # two nodes: no fleet to speak of
    facts["c"] = {"node.kernel": None}
    assert find_drift(facts) == []  # still two that know it
    facts["d"] = {"node.kernel": "6.8"}
    (only,) = find_drift(facts)  # one that cannot read what the rest reads
    assert (only.node, only.fact, only.value) == ("c", "node.kernel", None)


def test_baseline_generate_writes_the_expected_configuration(tmp_path: Path) -> None:
    out = tmp_path / "fleet-h100.yaml"
    result = _cli("baseline", "generate", str(_fleet(tmp_path)), "--out", str(out))
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(out.read_text())
    by_fact = {e["fact"]: e for e in document["configuration"]}
    driver = by_fact["node.nvidia_driver"]
    assert (driver["allowed"], driver["nodes"], driver["share"]) == (
        ["550.54.15"], 12, round(11 / 12, 6))
    assert "550.54.15 on 11 of 12 nodes" in driver["source"]
    assert by_fact["gpu.vbios_version[NVIDIA H100 80GB HBM3]"]["allowed"] == ["96.00.74.00.01"]
    assert by_fact["gpu.persistence_mode[NVIDIA H100 80GB HBM3]"]["allowed"] == [True]
    assert by_fact["hca.fw_ver[MT4129 MT_0000000838]"]["allowed"] == ["28.41.1000"]
    assert by_fact["node.numa_balancing"]["allowed"] == [1]

    from bench_agent.config.loader import load_profile

    profile = load_profile(out)
    assert {e.fact for e in profile.configuration} == set(by_fact)
    assert [t.id for t in profile.thresholds if t.metric == "config.expected_mismatch"] == [
        "configuration-fail"]


def test_the_expected_configuration_leaves_out_a_mix() -> None:
    facts = {f"n{i}": {"gpu.power_limit_w[A]": "500 | 700"} for i in range(4)}
    assert expected_configuration(facts, "src") == []
    # Nodes of two GPU models are two fleets: no expected configuration from both.
    mixed = {f"n{i}": {"gpu.model": "A" if i % 2 else "B", "node.kernel": "6.8"}
             for i in range(8)}
    assert expected_configuration(mixed, "src") == []


def test_nodes_of_another_type_are_another_fleet_not_drift() -> None:
    h100 = {f"h{i}": {"gpu.model": "H100", "gpu.vbios_version[H100]": "96.00.74.00.01",
                      "node.kernel": "6.8"} for i in range(5)}
    cpu = {f"c{i}": {"node.kernel": "6.8"} for i in range(3)}
    cpu["c2"] = {"node.kernel": "6.5"}
    (only,) = find_drift({**h100, **cpu})
    assert (only.node, only.fact, only.value) == ("c2", "node.kernel", "6.5")
    assert (only.fleet.nodes, only.fleet.common) == (3, "6.8")


@pytest.mark.parametrize("inventory", [
    {"schema_version": 3, "host": {}},  # a newer agent's, in a rolling upgrade
    {"schema_version": "2"}, {"schema_version": None}, {"schema_version": True},
    {"schema_version": 2, "cpu": "garbage"}, "not an object",
])
def test_one_odd_report_is_left_out_of_the_drift_not_a_crash(inventory: object) -> None:
    assert node_facts_of({"host": "n", "inventory": inventory}) is None


def test_html_drift_table_escapes_node_names(tmp_path: Path) -> None:
    names = [f"node-{i}" for i in range(NODES)]
    names[OTHER_DRIVER] = "<b>rack[3]/node ü</b>"
    out = tmp_path / "f.html"
    result = _cli("fleet", "compare", str(_fleet(tmp_path, names)), "--format", "html",
                  "--out", str(out))
    assert result.returncode == 1, result.stderr
    page = out.read_text()
    assert "<b>rack" not in page
    assert "<td>&lt;b&gt;rack[3]/node ü&lt;/b&gt;</td><td>node.nvidia_driver</td>" \
        "<td>535.183.01</td><td>550.54.15</td><td>11 of 12</td>" in page
