"""deploy/kubernetes: every manifest valid against the Kubernetes OpenAPI schema
(kubernetes-validate, offline, strict: an unknown field fails), the kustomize base
rendered by the real `kubectl kustomize` and validated too, and what the objects
run parsed by our own command line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench_agent.cli.parser import build_parser
from bench_agent.config.loader import suite_names
from bench_agent.core.process import run_child
from bench_agent.sched import kube
from tests.paths import REPO

kubernetes_validate = pytest.importorskip("kubernetes_validate")

BASE = REPO / "deploy" / "kubernetes" / "base"
# Two releases the validator carries a schema for: an older one that clusters
# still run and a recent one, so a field that only one of them knows is caught.
VERSIONS = ("1.30", "1.34")


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _manifest_files() -> list[Path]:
    return sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_each_manifest_is_valid(path: Path, version: str) -> None:
    for doc in _docs(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_an_unknown_field() -> None:
    # So that the tests above can fail: a misspelt key is caught.
    doc = _docs((BASE / "daemonset-health.yaml").read_text())[0]
    doc["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError, match="'imagee' was unexpected"):
        kubernetes_validate.validate(doc, VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [p.name for p in _manifest_files()]


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (Debian: apt-get install kubernetes-client): "
                    "the kustomize base is not rendered")
    done = run_child(["kubectl", "kustomize", str(BASE)], timeout=60.0)
    assert done.returncode == 0, done.stderr
    docs = _docs(done.stdout)
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_rendered_base_is_valid(rendered: dict[str, dict[str, Any]]) -> None:
    assert sorted(rendered) == [
        "ClusterRole/bench-agent-node-health", "ClusterRoleBinding/bench-agent-node-health",
        "DaemonSet/bench-agent-health", "Job/bench-agent-acceptance", "Namespace/bench-agent",
        "ServiceAccount/bench-agent"]
    for doc in rendered.values():
        for version in VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "bench-agent"


def test_daemonset_runs_kube_health_on_gpu_nodes(rendered: dict[str, dict[str, Any]]) -> None:
    pod = rendered["DaemonSet/bench-agent-health"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/example/bench-agent-cuda:0.1.0"
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.kube_command, args.interval) == ("kube", "health", 300.0)
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    host_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert {"/sys", "/dev"} <= host_paths
    # It must keep running on a node it tainted, or the taint would never go.
    assert {"key": kube.TAINT_KEY, "operator": "Exists", "effect": kube.TAINT_EFFECT} \
        in pod["tolerations"]
    assert pod["serviceAccountName"] == "bench-agent"


def test_job_runs_a_shipped_suite_and_starts_suspended(
        rendered: dict[str, dict[str, Any]]) -> None:
    job = rendered["Job/bench-agent-acceptance"]["spec"]
    assert job["suspend"] is True
    args = build_parser().parse_args(job["template"]["spec"]["containers"][0]["args"])
    assert args.command == "run" and args.targets == ["acceptance"]
    assert "acceptance" in suite_names()


def test_rbac_allows_get_and_patch_on_nodes_only(rendered: dict[str, dict[str, Any]]) -> None:
    role = rendered["ClusterRole/bench-agent-node-health"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"],
                              "verbs": ["get", "patch"]}]
    binding = rendered["ClusterRoleBinding/bench-agent-node-health"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bench-agent",
                                    "namespace": "bench-agent"}]
