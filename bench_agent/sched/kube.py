"""Kubernetes: label the node by its health, taint it NoSchedule on FAIL, and
touch nothing but our own keys.

    label      bench-agent.dev/health = pass | warn | fail
    label      bench-agent.dev/fault  = <fault code>      (removed when not failed)
    annotation bench-agent.dev/report-id, bench-agent.dev/report-time
    taint      bench-agent.dev/unhealthy = <fault code> : NoSchedule  (on FAIL only)

One JSON merge patch per run (RFC 7386), sent as application/merge-patch+json:
maps merge key by key and ``null`` deletes a key, so the labels and annotations
of others are never sent and never changed. A list is replaced whole (RFC 7386
section 2), and Node ``spec.taints`` has no patch strategy of its own
(k8s.io/api core/v1 types.go NodeSpec.Taints carries no patchStrategy tag, so a
strategic merge patch replaces it whole too): to change our taint we read the
node, keep every other taint exactly as it was (key, value, effect, timeAdded),
and send the whole list with the ``resourceVersion`` we read. The API server
applies the patch only if the node is still at that version and answers 409
Conflict otherwise (Kubernetes API conventions, "Concurrency Control and
Consistency"); we then read again and retry, so a taint another controller set
meanwhile is not lost.

The kubernetes client (37) sends a PATCH as application/json-patch+json unless
told otherwise (CoreV1Api.patch_node picks the first JSON type of its list), and
a JSON patch must be a list: the content type is always given (_content_type).

The seam is the CoreV1Api object (``read_node``, ``patch_node``): the tests give
an API-server stand-in in its place (tests/sched/kube_standin.py).
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from bench_agent.core.errors import ToolFailed
from bench_agent.sched.summary import HealthSummary

PREFIX = "bench-agent.dev/"
LABEL_HEALTH = PREFIX + "health"
LABEL_FAULT = PREFIX + "fault"
ANNOTATION_REPORT_ID = PREFIX + "report-id"
ANNOTATION_REPORT_TIME = PREFIX + "report-time"
TAINT_KEY = PREFIX + "unhealthy"
TAINT_EFFECT = "NoSchedule"
MERGE_PATCH = "application/merge-patch+json"
# A write that lost the race to another writer is retried after a fresh read;
# three tries, as client-go's retry.DefaultRetry does five quick ones for the
# same conflict (k8s.io/client-go/util/retry): a busy node object settles fast.
CONFLICT_ATTEMPTS = 3
# Connect and read timeouts of each API call (urllib3's (connect, read) pair):
# a health check must not hang on an API server that does not answer.
REQUEST_TIMEOUT_S = (5.0, 15.0)

# Label values: at most 63 characters, alphanumerics, '-', '_' and '.', beginning
# and ending with an alphanumeric (Kubernetes docs, "Labels and Selectors",
# Syntax and character set). Taint values follow the same rule.
_LABEL_VALUE_MAX = 63
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    cleaned = _NOT_LABEL.sub("_", text)[:_LABEL_VALUE_MAX]
    cleaned = cleaned.strip("._-")
    return cleaned or "unknown"


class NodeApi(Protocol):
    """What we use of kubernetes.client.CoreV1Api."""

    def read_node(self, name: str, **kwargs: Any) -> Any: ...

    def patch_node(self, name: str, body: Any, **kwargs: Any) -> Any: ...


def _taint_json(taint: Any) -> dict[str, Any]:
    """A V1Taint as the API server sent it (camelCase keys, timeAdded as RFC 3339)."""
    data: dict[str, Any] = json.loads(taint.to_json())
    return data


def plan_patch(node: Any, summary: HealthSummary) -> dict[str, Any]:
    """The merge patch that brings ``node`` (a V1Node) to ``summary``'s state."""
    fault = summary.first if summary.state == "fail" else None
    code = label_value(fault.code) if fault else None
    metadata: dict[str, Any] = {
        "labels": {LABEL_HEALTH: summary.state, LABEL_FAULT: code},
        "annotations": {ANNOTATION_REPORT_ID: summary.report_id or None,
                        ANNOTATION_REPORT_TIME: summary.finished_at or None},
    }
    patch: dict[str, Any] = {"metadata": metadata}
    current = [_taint_json(t) for t in (node.spec.taints or [])] if node.spec else []
    wanted = [t for t in current if t.get("key") != TAINT_KEY]
    if code is not None:
        ours = {"effect": TAINT_EFFECT, "key": TAINT_KEY, "value": code}
        already = [t for t in current if t.get("key") == TAINT_KEY]
        if len(already) == 1 and already[0] == ours:
            wanted = current  # unchanged, in its place
        else:
            wanted.append(ours)
    if wanted != current:
        # The list is sent whole: only against the version it was read from.
        metadata["resourceVersion"] = node.metadata.resource_version
        patch["spec"] = {"taints": wanted}
    return patch


def _api_error(what: str, exc: Exception) -> ToolFailed:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    body = getattr(exc, "body", None)
    detail = f"{status} {reason}" if status else f"{type(exc).__name__}: {exc}"
    if body:
        try:
            detail += f": {json.loads(body).get('message', body)}"
        except (ValueError, AttributeError):
            detail += f": {str(body)[:300]}"
    return ToolFailed("kubernetes API", f"{what}: {detail}")


def apply(api: NodeApi, node_name: str, summary: HealthSummary) -> dict[str, Any]:
    """Read the node, patch our keys; the patch body that was accepted."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            node = api.read_node(node_name, _request_timeout=REQUEST_TIMEOUT_S)
        except Exception as exc:  # the client raises ApiException, urllib3 errors, ...
            raise _api_error(f"GET node {node_name}", exc) from exc
        body = plan_patch(node, summary)
        try:
            api.patch_node(node_name, body, _content_type=MERGE_PATCH,
                           _request_timeout=REQUEST_TIMEOUT_S)
        except Exception as exc:
            if getattr(exc, "status", None) == 409 and attempt < CONFLICT_ATTEMPTS:
                continue  # the node changed since we read it: read again
            raise _api_error(f"PATCH node {node_name}", exc) from exc
        return body
    raise AssertionError("unreachable: the last attempt returns or raises")
