"""config.consistency: one GPU or HCA that differs is named; the expected
configuration of a profile is judged fact by fact; nothing unread passes."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from bench_agent.checks.base import CheckContext, NoParams
from bench_agent.checks.config.checks import ConfigConsistencyCheck
from bench_agent.config.loader import (
    CheckPlan,
    Profile,
    Suite,
    load_profile,
    load_profile_named,
)
from bench_agent.core.config_rules import Expectation
from bench_agent.core.errors import ConfigError, NotApplicable
from bench_agent.core.model import Measurement, Verdict
from bench_agent.core.status import Status
from bench_agent.core.thresholds import evaluate
from bench_agent.run.runner import Runner
from bench_agent.tools import nvml
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.inventory.config_tree import CX7_FW, gpu_node_tree, write


def _run(root: Path, gpus: list[FakeGpu] | None = None,
         expected: tuple[Expectation, ...] = ()) -> list[Measurement]:
    ctx = CheckContext(root=root, expected_config=expected)
    with nvml.use_loader(lambda: FakeNvml(gpus)):
        return ConfigConsistencyCheck().run(ctx, NoParams())


def _judge(measurements: list[Measurement], profile: Profile) -> dict[str, Verdict]:
    verdicts = evaluate(measurements, profile.thresholds, ["config.consistency"])
    return {f"{v.metric}[{v.device}]": v for v in verdicts if v.check == "config.consistency"}


def test_a_healthy_hgx_node_is_uniform_and_as_expected(tmp_path: Path) -> None:
    profile = load_profile_named("gpu-node-8")
    found = _judge(_run(gpu_node_tree(tmp_path), expected=profile.configuration), profile)
    assert found and {v.status for v in found.values()} == {Status.PASS}
    assert found["config.nonuniform[gpu.vbios_version]"].value == 0
    assert found["config.nonuniform[hca.fw_ver]"].value == 0
    assert found["config.expected_mismatch[gpu.fabric_state]"].value == 0
    assert found["config.expected_mismatch_warn[node.nvidia_peermem]"].value == 0


def test_one_gpu_on_another_vbios_fails_named(tmp_path: Path) -> None:
    gpus = [FakeGpu() for _ in range(8)]
    gpus[5].vbios = "96.00.99.00.01"
    found = _judge(_run(gpu_node_tree(tmp_path), gpus), load_profile_named("guide-minimum"))
    verdict = found["config.nonuniform[gpu.vbios_version]"]
    assert (verdict.status, verdict.value) == (Status.FAIL, 1)
    assert ("GPU 5 (00000000:68:00.0 serial 1654321005) has 96.00.99.00.01; the other 7 "
            "GPU(s) of NVIDIA H100 80GB HBM3 have 96.00.74.00.01") in verdict.message
    assert found["config.nonuniform[gpu.ecc_mode]"].status is Status.PASS


def test_one_hca_on_other_firmware_fails_named(tmp_path: Path) -> None:
    root = gpu_node_tree(tmp_path)
    write(root, "sys/class/infiniband/mlx5_3/fw_ver", "28.39.2048\n")
    found = _judge(_run(root), load_profile_named("guide-minimum"))
    verdict = found["config.nonuniform[hca.fw_ver]"]
    assert verdict.status is Status.FAIL
    assert (f"HCA mlx5_3 has 28.39.2048; the other 7 HCA(s) of MT4129 MT_0000000838 have "
            f"{CX7_FW}") in verdict.message
    assert "config.nonuniform[hca.model]" not in found  # mixed HCA models are healthy


def test_the_expected_configuration_names_each_offender(tmp_path: Path) -> None:
    gpus = [FakeGpu() for _ in range(8)]
    gpus[1].mig_mode = (1, 1)
    gpus[2].persistence = 0
    gpus[6].app_clocks = (1755, 2619)
    gpus[4].fabric = (1, 0)  # NVML_GPU_FABRIC_STATE_NOT_STARTED: no fabric manager
    profile = load_profile_named("gpu-node-8")
    root = gpu_node_tree(tmp_path, fabric_manager=False, peermem=False)
    found = _judge(_run(root, gpus, profile.configuration), profile)
    mig = found["config.expected_mismatch[gpu.mig_mode]"]
    assert (mig.status, mig.value) == (Status.FAIL, 1)
    assert "gpu.mig_mode must be false: GPU 1 (00000000:28:00.0 serial 1654321001): true" \
        in mig.message
    assert found["config.expected_mismatch[gpu.app_clocks_at_default]"].status is Status.FAIL
    assert "GPU 6" in found["config.expected_mismatch[gpu.app_clocks_at_default]"].message
    persistence = found["config.expected_mismatch_warn[gpu.persistence_mode]"]
    assert (persistence.status, persistence.value) == (Status.WARN, 1)
    fabric = found["config.expected_mismatch[gpu.fabric_state]"]
    assert fabric.status is Status.FAIL
    assert ("gpu.fabric_state must be completed or not supported: GPU 4 "
            "(00000000:58:00.0 serial 1654321004): not started") in fabric.message
    # Without nvidia_peermem a node may use DMA-BUF: a WARN.
    assert found["config.expected_mismatch_warn[node.nvidia_peermem]"].status is Status.WARN
    # The uniformity rule sees the MIG and clock changes too.
    assert found["config.nonuniform[gpu.mig_mode]"].status is Status.FAIL


def test_a_fact_that_cannot_be_read_never_passes(tmp_path: Path) -> None:
    # A GPU fact expected on a node where NVML shows no GPU, and a node fact
    # whose file is missing: both count as misses, with the reason.
    expected = (Expectation("gpu.ecc_mode", (True,), source="s"),
                Expectation("node.clocksource", ("tsc",), source="s"))
    with nvml.use_loader(lambda: FakeNvml([])):
        found = {m.device: m for m in ConfigConsistencyCheck().run(
            CheckContext(root=tmp_path, expected_config=expected), NoParams())}
    assert found["gpu.ecc_mode"].value == 1
    assert found["gpu.ecc_mode"].params["note"] == "no component has gpu.ecc_mode here"
    assert found["node.clocksource"].value == 1
    assert found["node.clocksource"].params["note"] == \
        "node.clocksource must be tsc: node: unknown"


def test_healthy_mixes_of_hcas_are_not_differences(tmp_path: Path) -> None:
    # An Azure A100 VM: the Ethernet VF and the eight InfiniBand VFs are all MT4126,
    # on other boards and firmware (leptonai/gpud ibstat of an A100 VM: mlx5_0 at
    # 22.35.2302, mlx5_1..8 at 28.37.1014); a DGX's storage ConnectX-7 on its own PSID.
    root = gpu_node_tree(tmp_path, hcas=0)
    write(root, "sys/class/infiniband/mlx5_0/fw_ver", "22.35.2302\n")
    write(root, "sys/class/infiniband/mlx5_0/board_id", "MSF0010110035\n")
    write(root, "sys/class/infiniband/mlx5_0/hca_type", "MT4126\n")
    for n in range(1, 9):
        write(root, f"sys/class/infiniband/mlx5_{n}/fw_ver", "28.37.1014\n")
        write(root, f"sys/class/infiniband/mlx5_{n}/board_id", "MSF0000000000\n")
        write(root, f"sys/class/infiniband/mlx5_{n}/hca_type", "MT4126\n")
    found = _judge(_run(root), load_profile_named("guide-minimum"))
    assert {v.status for k, v in found.items() if k.startswith("config.nonuniform[hca")} \
        == {Status.PASS}
    write(root, "sys/class/infiniband/mlx5_8/fw_ver", "28.35.1012\n")
    verdict = _judge(_run(root), load_profile_named("guide-minimum"))[
        "config.nonuniform[hca.fw_ver]"]
    assert verdict.status is Status.FAIL and "HCA mlx5_8 has 28.35.1012" in verdict.message


def test_gpus_without_mig_or_fabric_meet_a_gpu_node(tmp_path: Path) -> None:
    # An L40S answers NOT_SUPPORTED for MIG and for the fabric: MIG is off, and a
    # fabric it does not have is "not supported", both allowed by gpu-node.
    gpus = [FakeGpu(name="NVIDIA L40S", mig_mode=None, fabric=None) for _ in range(4)]
    profile = load_profile_named("gpu-node")
    found = _judge(_run(gpu_node_tree(tmp_path, nvswitches=0), gpus, profile.configuration),
                   profile)
    for fact in ("gpu.mig_mode", "gpu.mig_pending", "gpu.fabric_state"):
        assert found[f"config.expected_mismatch[{fact}]"].status is Status.PASS, fact


def test_every_profile_judges_uniformity() -> None:
    from bench_agent.config.loader import profile_names

    for name in profile_names():
        rules = [t for t in load_profile_named(name).thresholds
                 if t.metric == "config.nonuniform"]
        assert len(rules) == 1 and rules[0].value == 0, name


def test_a_fact_qualified_by_its_model_pins_only_that_model(tmp_path: Path) -> None:
    root = gpu_node_tree(tmp_path)
    write(root, "sys/class/infiniband/mlx5_8/fw_ver", "32.38.3056\n")
    write(root, "sys/class/infiniband/mlx5_8/board_id", "MT_0000000884\n")
    write(root, "sys/class/infiniband/mlx5_8/hca_type", "MT41692\n")  # BlueField-3
    pinned = (Expectation("hca.fw_ver[MT4129 MT_0000000838]", ("28.41.1000",), source="s"),)
    (m,) = [m for m in _run(root, expected=pinned) if m.metric == "config.expected_mismatch"]
    assert (m.value, m.params["checked"]) == (0, 8)
    with pytest.raises(ValueError, match="unknown configuration fact"):
        Expectation("node.kernel[x]", ("6.8",))


def test_allowed_values_are_typed() -> None:
    assert Expectation("node.numa_balancing", (0,)).allows(0)
    assert not Expectation("node.numa_balancing", (0,)).allows(False)
    assert not Expectation("gpu.ecc_mode", (True,)).allows(1)
    assert not Expectation("node.kernel", ("6.8",)).allows(None)
    with pytest.raises(ValueError, match=r"^unknown configuration fact 'gpu\.vbios'$"):
        Expectation("gpu.vbios", ("x",))


def test_nothing_to_compare_is_a_skip_with_the_facts_read(tmp_path: Path) -> None:
    write(tmp_path, "sys/devices/system/clocksource/clocksource0/current_clocksource",
          "kvm-clock\n")
    with pytest.raises(NotApplicable, match=r"nothing to compare: .*node.clocksource="
                                            r"kvm-clock"):
        _run(tmp_path, gpus=[FakeGpu()])


def _profile_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(dedent(body))
    return path


def test_the_configuration_section_is_strict(tmp_path: Path) -> None:
    path = _profile_file(tmp_path, """\
        name: p
        configuration:
          - fact: gpu.vbios_versoin
            allowed: ["96.00.74.00.01"]
            source: fleet
        """)
    with pytest.raises(ConfigError, match=r"configuration\[0\]\.fact.*unknown configuration "
                                          r"fact 'gpu.vbios_versoin'; did you mean "
                                          r"gpu.vbios_version"):
        load_profile(path)
    path = _profile_file(tmp_path, """\
        name: p
        configuration:
          - {fact: node.kernel, allowed: [a], source: s}
          - {fact: node.kernel, allowed: [b], source: s}
        """)
    with pytest.raises(ConfigError, match=r"fact 'node\.kernel' listed twice"):
        load_profile(path)
    path = _profile_file(tmp_path, "name: p\nconfiguration:\n  - {fact: node.kernel, "
                                   "allowed: [], source: s}\n")
    with pytest.raises(ConfigError,
                       match=r"configuration\[0\]\.allowed: List should have at least 1"):
        load_profile(path)


def test_extends_replaces_an_entry_and_adds_its_thresholds(tmp_path: Path) -> None:
    path = _profile_file(tmp_path, """\
        name: mine
        extends: gpu-node
        configuration:
          - fact: gpu.persistence_mode
            allowed: [true]
            source: "our runbook: persistence on"
          - fact: node.kernel
            allowed: ["5.15.0-113-generic"]
            severity: warn
            source: "our image"
        """)
    profile = load_profile(path)
    by_fact = {e.fact: e for e in profile.configuration}
    assert by_fact["gpu.persistence_mode"].severity == "fail"  # was warn in gpu-node
    assert by_fact["node.kernel"].allowed == ("5.15.0-113-generic",)
    assert "gpu.mig_mode" in by_fact  # inherited
    ids = [t.id for t in profile.thresholds if t.metric.startswith("config.expected")]
    assert sorted(ids) == ["configuration-fail", "configuration-warn"]


def test_the_runner_sends_the_section_to_the_check_child(tmp_path: Path) -> None:
    """Through a real worker child: the section crosses the protocol and is judged."""
    root = gpu_node_tree(tmp_path / "root")
    write(root, "sys/class/infiniband/mlx5_7/board_id", "MT_0000000970\n")
    path = _profile_file(tmp_path, """\
        name: p
        extends: guide-minimum
        configuration:
          - {fact: node.clocksource, allowed: [hpet], source: "test"}
          - {fact: hca.fw_ver, allowed: ["28.41.1000"], source: "test"}
        """)
    suite = Suite("t", "", [CheckPlan("config.consistency", {}, 60, True)], "", "0" * 64)
    report = Runner(suite, load_profile(path), output_dir=tmp_path, host="n1",
                    root=root).run()
    found = {f"{v.metric}[{v.device}]": v for v in report.verdicts
             if v.check == "config.consistency"}
    assert found["config.expected_mismatch[node.clocksource]"].status is Status.FAIL
    assert "must be hpet: node: tsc" in found["config.expected_mismatch[node.clocksource]"].message
    assert found["config.expected_mismatch[hca.fw_ver]"].status is Status.PASS
    # Another board (PSID) is another card, not a difference: its firmware is its own.
    assert "config.nonuniform[hca.board_id]" not in found
    assert found["config.nonuniform[hca.fw_ver]"].status is Status.PASS
