"""Node labels, annotations and our taint, against the API-server stand-in
(tests/sched/kube_standin.py) at the one seam: the CoreV1Api object."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from bench_agent.cli.kube import cmd_kube
from bench_agent.cli.parser import build_parser
from bench_agent.core.errors import ToolFailed, UsageError
from bench_agent.core.model import Report
from bench_agent.sched import kube
from bench_agent.sched.report_source import inventory_report
from bench_agent.sched.summary import Fault, HealthSummary
from tests.sched.kube_standin import ApiServerStandIn

FOREIGN_LABELS = {"kubernetes.io/hostname": "gpu-7", "nvidia.com/gpu.present": "true"}
FOREIGN_ANNOTATIONS = {"node.alpha.kubernetes.io/ttl": "0"}
# Taints as the API server returns them: the node controller's NoExecute taint
# carries timeAdded (RFC 3339), a user's has none.
NOT_READY = {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable",
             "timeAdded": "2026-12-01T12:00:00Z"}
GPU_ONLY = {"effect": "NoSchedule", "key": "nvidia.com/gpu", "value": "present"}
XID = Fault("BA-GPU-XID-79", "GPU 3 GPU-8f1c", "GPU fell off the bus")
FAILED = HealthSummary("fail", (XID,), "r-1", "2026-12-01T13:00:00Z")
PASSED = HealthSummary("pass", (), "r-2", "2026-12-01T13:05:00Z")
OUR_TAINT = {"effect": "NoSchedule", "key": "bench-agent.dev/unhealthy",
             "value": "BA-GPU-XID-79"}


@pytest.fixture
def server() -> ApiServerStandIn:
    api = ApiServerStandIn()
    api.add_node("gpu-7", FOREIGN_LABELS, FOREIGN_ANNOTATIONS, [NOT_READY, GPU_ONLY])
    return api


def _stored(server: ApiServerStandIn) -> dict[str, object]:
    return server.nodes["gpu-7"]


def test_fail_labels_annotates_and_taints_with_exact_body(server: ApiServerStandIn) -> None:
    kube.apply(server, "gpu-7", FAILED)
    assert server.patches == [("gpu-7", "application/merge-patch+json", {
        "metadata": {
            "labels": {"bench-agent.dev/health": "fail", "bench-agent.dev/fault": "BA-GPU-XID-79"},
            "annotations": {"bench-agent.dev/report-id": "r-1",
                            "bench-agent.dev/report-time": "2026-12-01T13:00:00Z"},
            "resourceVersion": "1000",
        },
        "spec": {"taints": [NOT_READY, GPU_ONLY, OUR_TAINT]},
    })]
    node = server.nodes["gpu-7"]
    assert node["metadata"]["labels"] == {**FOREIGN_LABELS, "bench-agent.dev/health": "fail",
                                          "bench-agent.dev/fault": "BA-GPU-XID-79"}
    assert node["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] == "0"
    assert node["spec"]["taints"] == [NOT_READY, GPU_ONLY, OUR_TAINT]


def test_pass_removes_only_our_taint_and_fault_label(server: ApiServerStandIn) -> None:
    kube.apply(server, "gpu-7", FAILED)
    kube.apply(server, "gpu-7", PASSED)
    assert server.patches[-1][2] == {
        "metadata": {
            "labels": {"bench-agent.dev/health": "pass", "bench-agent.dev/fault": None},
            "annotations": {"bench-agent.dev/report-id": "r-2",
                            "bench-agent.dev/report-time": "2026-12-01T13:05:00Z"},
            "resourceVersion": "1001",
        },
        "spec": {"taints": [NOT_READY, GPU_ONLY]},
    }
    node = server.nodes["gpu-7"]
    assert node["metadata"]["labels"] == {**FOREIGN_LABELS, "bench-agent.dev/health": "pass"}
    assert node["spec"]["taints"] == [NOT_READY, GPU_ONLY]


def test_unchanged_taints_are_not_sent(server: ApiServerStandIn) -> None:
    kube.apply(server, "gpu-7", PASSED)  # no taint of ours to remove: labels only
    assert "spec" not in server.patches[-1][2]
    assert "resourceVersion" not in server.patches[-1][2]["metadata"]
    kube.apply(server, "gpu-7", FAILED)
    kube.apply(server, "gpu-7", FAILED)  # tainted already with the same code
    assert "spec" not in server.patches[-1][2]
    assert server.nodes["gpu-7"]["spec"]["taints"] == [NOT_READY, GPU_ONLY, OUR_TAINT]


def test_a_new_fault_replaces_our_taint_value(server: ApiServerStandIn) -> None:
    kube.apply(server, "gpu-7", FAILED)
    ib = HealthSummary("fail", (Fault("BA-IB-LINK-DOWN", "mlx5_0 port 1", ""),), "r-3", "t")
    kube.apply(server, "gpu-7", ib)
    assert server.nodes["gpu-7"]["spec"]["taints"] == [
        NOT_READY, GPU_ONLY, {**OUR_TAINT, "value": "BA-IB-LINK-DOWN"}]


def test_a_taint_added_meanwhile_survives_the_conflict(server: ApiServerStandIn) -> None:
    cordon = {"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable"}
    server.before_next_patch = lambda s: s.write(
        "gpu-7", {"spec": {"taints": [NOT_READY, GPU_ONLY, cordon]}})
    kube.apply(server, "gpu-7", FAILED)
    assert len(server.patches) == 2  # 409 Conflict, read again, patched
    assert server.patches[1][2]["metadata"]["resourceVersion"] == "1001"
    assert server.nodes["gpu-7"]["spec"]["taints"] == [NOT_READY, GPU_ONLY, cordon, OUR_TAINT]


def test_a_node_that_keeps_changing_is_a_clear_error(server: ApiServerStandIn) -> None:
    def race(s: ApiServerStandIn) -> None:
        s.write("gpu-7", {"metadata": {"labels": {"other": "x"}}})
        s.before_next_patch = race

    server.before_next_patch = race
    with pytest.raises(ToolFailed, match="PATCH node gpu-7: 409 Conflict: Operation cannot be "
                       "fulfilled on nodes"):
        kube.apply(server, "gpu-7", FAILED)
    assert len(server.patches) == kube.CONFLICT_ATTEMPTS


def test_missing_node_is_a_clear_error(server: ApiServerStandIn) -> None:
    with pytest.raises(ToolFailed, match='GET node gpu-9: 404 NotFound: nodes "gpu-9" not'):
        kube.apply(server, "gpu-9", PASSED)


def test_the_client_default_content_type_would_be_refused(server: ApiServerStandIn) -> None:
    # Why kube.apply names the content type: the client's default is JSON patch.
    with pytest.raises(Exception, match="cannot unmarshal object"):
        server.patch_node("gpu-7", {"metadata": {"labels": {"a": "b"}}})


@pytest.mark.parametrize(("text", "value"), [
    ("BA-GPU-XID-79", "BA-GPU-XID-79"),
    ("FAIL-inventory.logical_cpus", "FAIL-inventory.logical_cpus"),
    ("-bad code/with:stuff-", "bad_code_with_stuff"),
    ("x" * 80, "x" * 63),
    ("///", "unknown"),
])
def test_label_value(text: str, value: str) -> None:
    assert kube.label_value(text) == value


def _args(*argv: str) -> object:
    return build_parser().parse_args(["kube", "health", *argv])


def test_cli_with_real_reports(server: ApiServerStandIn, failing_profile: Path,
                               passing_profile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cmd_kube(_args("--node", "gpu-7", "--profile", str(failing_profile)), api=server,
                    source=inventory_report)
    assert code == 1
    assert server.nodes["gpu-7"]["spec"]["taints"][-1] == {
        "effect": "NoSchedule", "key": "bench-agent.dev/unhealthy",
        "value": "BA-NODE-CPU-COUNT"}
    assert ("labelled bench-agent.dev/health=fail, tainted bench-agent.dev/unhealthy="
            "BA-NODE-CPU-COUNT:NoSchedule") in capsys.readouterr().out
    assert cmd_kube(_args("--node", "gpu-7", "--profile", str(passing_profile)), api=server,
                    source=inventory_report) == 0
    assert server.nodes["gpu-7"]["spec"]["taints"] == [NOT_READY, GPU_ONLY]
    assert server.nodes["gpu-7"]["metadata"]["labels"]["bench-agent.dev/health"] == "pass"


def test_cli_needs_a_node_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    with pytest.raises(UsageError, match="no node name: give --node or set NODE_NAME"):
        cmd_kube(_args(), api=ApiServerStandIn())


def test_cli_api_error_exits_2(server: ApiServerStandIn, passing_profile: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code = cmd_kube(_args("--node", "gpu-9", "--profile", str(passing_profile)), api=server,
                    source=inventory_report)
    assert code == 2
    assert "node gpu-9: pass; not recorded on the node: kubernetes API failed: GET node " \
           "gpu-9: 404 NotFound" in capsys.readouterr().err


def test_a_health_run_past_its_budget_fails_the_node(server: ApiServerStandIn,
                                                     passing_profile: Path) -> None:
    release = threading.Event()

    def hangs(profile: str | None, budget: float) -> Report:
        release.wait(30)  # a driver call that does not return
        raise AssertionError("released")

    try:
        code = cmd_kube(_args("--node", "gpu-7", "--budget", "0.5"), api=server, source=hangs)
    finally:
        release.set()
    assert code == 2
    node = server.nodes["gpu-7"]
    assert node["metadata"]["labels"]["bench-agent.dev/fault"] == "health-timeout"
    assert node["spec"]["taints"][-1]["value"] == "health-timeout"


def test_interval_mode_runs_until_sigterm(server: ApiServerStandIn, passing_profile: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    runs: list[float] = []
    reports: list[Report] = []

    def counted(profile: str | None, budget: float) -> Report:
        runs.append(time.monotonic())
        if len(runs) == 3:  # the pod is being stopped: SIGTERM, as the kubelet sends
            os.kill(os.getpid(), signal.SIGTERM)
        # One real runner report, given again on the later rounds: what is under test
        # is the interval loop; each real run costs a second or two of child processes.
        if not reports:
            reports.append(inventory_report(profile, budget))
        return reports[0]

    before = signal.getsignal(signal.SIGTERM)
    code = cmd_kube(_args("--node", "gpu-7", "--interval", "0.2", "--profile",
                          str(passing_profile)), api=server, source=counted)
    assert code == 0
    assert len(runs) == 3 and len(server.patches) == 3
    assert runs[2] - runs[1] >= 0.2
    assert signal.getsignal(signal.SIGTERM) == before
    assert capsys.readouterr().out.count("labelled bench-agent.dev/health=pass") == 3
