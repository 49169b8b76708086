"""The Slurm decision and scontrol's output, on outputs captured from real Slurm 22.05."""

from __future__ import annotations

import pytest

from bench_agent.core.errors import CheckTimeout, ParseError, ToolFailed
from bench_agent.sched.slurm import (
    REASON_MAX,
    Action,
    Scontrol,
    SlurmNode,
    decide,
    drain_reason,
    parse_show_node,
)
from bench_agent.sched.summary import Fault, HealthSummary
from tests.paths import DATA

SLURM = DATA / "slurm"


def _failed(*faults: Fault) -> HealthSummary:
    return HealthSummary("fail", faults, "id-1", "2026-12-01T13:00:00Z")


PASSED = HealthSummary("pass", (), "id-2", "2026-12-01T13:05:00Z")
XID = Fault("BA-GPU-XID-79", "GPU 3 GPU-8f1c serial 1652822012345 0000:1b:00.0", "fell off")


def test_parse_idle_node() -> None:
    node = parse_show_node((SLURM / "show-node-idle.txt").read_text(), "vm")
    assert node == SlurmNode("vm", frozenset({"IDLE"}), "", "")
    assert not node.drained


def test_parse_admin_drain_keeps_brackets_inside_the_reason() -> None:
    node = parse_show_node((SLURM / "show-node-admin-drain.txt").read_text(), "vm")
    assert node.states == frozenset({"IDLE", "DRAIN"})
    assert node.reason == "admin: hw ticket [x]"
    assert node.reason_user == "root"
    assert node.drained and not node.ours


@pytest.mark.parametrize("text", ["", "slurm_load_node error: Invalid node name specified\n",
                                  "NodeName=other State=IDLE\n", "NodeName=vm Arch=x86_64\n"])
def test_parse_refuses_output_without_the_node_or_its_state(text: str) -> None:
    with pytest.raises(ParseError, match="cannot read scontrol output"):
        parse_show_node(text, "vm")


def test_drain_reason_names_code_and_component() -> None:
    assert drain_reason(_failed(XID)) == (
        "bench-agent: BA-GPU-XID-79 GPU 3 GPU-8f1c serial 1652822012345 0000:1b:00.0")
    two = drain_reason(_failed(XID, Fault("BA-IB-LINK-DOWN", "mlx5_0 port 1", "")))
    assert two.endswith(" 0000:1b:00.0 (+1 more)")


def test_drain_reason_is_one_short_printable_line() -> None:
    long = Fault("BA-NVME-IOPS-LOW", "drive\nserial " + "é" * 400, "")
    reason = drain_reason(_failed(long, XID))
    assert len(reason) == REASON_MAX
    assert reason.startswith("bench-agent: BA-NVME-IOPS-LOW drive serial ??")
    assert reason.endswith("... (+1 more)")
    assert all(" " <= c <= "~" for c in reason)


IDLE = SlurmNode("vm", frozenset({"IDLE"}), "")
OURS = SlurmNode("vm", frozenset({"IDLE", "DRAIN"}), "bench-agent: BA-GPU-XID-79 GPU 3", "root")
ADMIN = SlurmNode("vm", frozenset({"IDLE", "DRAIN"}), "admin: hw ticket", "root")


@pytest.mark.parametrize(("node", "summary", "action", "why"), [
    (IDLE, _failed(XID), Action.DRAIN, "draining: bench-agent: BA-GPU-XID-79 GPU 3"),
    (OURS, _failed(XID), Action.DRAIN, "draining: bench-agent: BA-GPU-XID-79 GPU 3 GPU-8f1c"),
    (ADMIN, _failed(XID), Action.NOTHING, "already drained by root with reason 'admin: hw"),
    (OURS, PASSED, Action.RESUME, "resuming: it was drained by bench-agent"),
    (ADMIN, PASSED, Action.NOTHING, "drained by root with reason 'admin: hw ticket', not by"),
    (IDLE, PASSED, Action.NOTHING, "in service, healthy"),
    (IDLE, HealthSummary("warn", (), "", ""), Action.NOTHING, "in service"),
])
def test_decide(node: SlurmNode, summary: HealthSummary, action: Action, why: str) -> None:
    decision = decide(node, summary)
    assert decision.action is action
    assert decision.why.startswith(why)


def test_same_reason_is_not_written_again() -> None:
    reason = drain_reason(_failed(XID))
    node = SlurmNode("vm", frozenset({"DOWN", "DRAIN"}), reason, "root")
    assert decide(node, _failed(XID)).action is Action.NOTHING


def test_scontrol_errors_carry_its_words_and_a_timeout_names_slurmctld() -> None:
    def refused(command: list[str], timeout: float) -> tuple[int, str, str]:
        return 1, "", "slurm_update error: Invalid node name specified"

    with pytest.raises(ToolFailed, match=r"scontrol failed \(exit code 1\): `scontrol update "
                       r"nodename=vm state=resume`: slurm_update error: Invalid node name"):
        Scontrol(run=refused).resume("vm")

    def hangs(command: list[str], timeout: float) -> tuple[int, str, str]:
        raise CheckTimeout(f"scontrol ran past {timeout:g} s")

    with pytest.raises(CheckTimeout, match=r"slurmctld did not answer within 3\.0 s"):
        Scontrol(run=hangs).show_node("vm", timeout=3.0)


def test_scontrol_error_lines_become_one_line() -> None:
    # Captured from scontrol 22.05 with no slurm.conf and no DNS SRV record.
    said = ("scontrol: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host\n"
            "scontrol: error: fetch_config: DNS SRV lookup failed\n"
            "scontrol: fatal: Could not establish a configuration source\n")

    def unconfigured(command: list[str], timeout: float) -> tuple[int, str, str]:
        return 1, "", said

    with pytest.raises(ToolFailed) as failed:
        Scontrol(run=unconfigured).show_node("vm")
    assert "\n" not in str(failed.value)
    assert str(failed.value).endswith("DNS SRV lookup failed; scontrol: fatal: Could not "
                                      "establish a configuration source")
