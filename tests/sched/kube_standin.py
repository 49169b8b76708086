"""An API-server stand-in at the one seam of bench_agent/sched/kube.py: the
CoreV1Api object (``read_node``, ``patch_node``). No cluster can run here.

What it reproduces of the real API server and client, and from where:
- A node is stored as the JSON the server holds; every read deserializes it
  anew into a real kubernetes.client V1Node (the client builds new objects from
  each response: ApiClient.deserialize), so nothing is shared with the caller.
- PATCH as application/merge-patch+json is RFC 7386: maps merge key by key,
  ``null`` deletes a key, any other value (a list included) replaces the old one.
  ``spec.taints`` is therefore replaced whole.
- application/json-patch+json needs a JSON array (RFC 6902); the server refuses
  an object with 400 BadRequest (apiserver's patch handler fails to unmarshal it
  into a list of operations). Any other content type: 415 Unsupported Media Type.
- ``metadata.resourceVersion`` in a patch is a precondition: another value than
  the stored one is 409 Conflict (Kubernetes API conventions, "Concurrency
  Control and Consistency"); every write bumps the version.
- A node that does not exist is 404 NotFound.
The calls it received are kept (``patches``) so tests assert the exact bodies.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient, V1Node
from kubernetes.client.exceptions import ApiException


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, MergePatch(Target, Patch), as its pseudocode."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _status(code: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=code, reason=reason)
    exc.body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": message, "reason": reason, "code": code})
    return exc


@dataclass
class ApiServerStandIn:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    patches: list[tuple[str, str, Any]] = field(default_factory=list)  # (node, type, body)
    # Runs once before the next patch is applied: another writer in the race.
    before_next_patch: Callable[[ApiServerStandIn], None] | None = None
    _client: ApiClient = field(default_factory=ApiClient)

    def add_node(self, name: str, labels: dict[str, str] | None = None,
                 annotations: dict[str, str] | None = None,
                 taints: list[dict[str, Any]] | None = None) -> None:
        self.nodes[name] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "resourceVersion": "1000",
                         "labels": dict(labels or {}), "annotations": dict(annotations or {})},
            "spec": {"taints": list(taints)} if taints else {},
        }

    def write(self, name: str, change: dict[str, Any]) -> None:
        """Another writer's change (merge-patched, version bumped)."""
        stored = merge_patch(self.nodes[name], change)
        version = int(stored["metadata"]["resourceVersion"]) + 1
        stored["metadata"]["resourceVersion"] = str(version)
        self.nodes[name] = stored

    def _node(self, name: str) -> V1Node:
        if name not in self.nodes:
            raise _status(404, "NotFound", f'nodes "{name}" not found')
        node: V1Node = self._client.deserialize(json.dumps(self.nodes[name]), "V1Node",
                                                "application/json")
        return node

    def read_node(self, name: str, **kwargs: Any) -> V1Node:
        return self._node(name)

    def patch_node(self, name: str, body: Any, **kwargs: Any) -> V1Node:
        # The real client's default without _content_type (CoreV1Api.patch_node, 37.x).
        content_type = kwargs.get("_content_type") or "application/json-patch+json"
        self.patches.append((name, content_type, copy.deepcopy(body)))
        self._node(name)
        body = json.loads(json.dumps(body))  # what goes over the wire, strictly JSON
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise _status(400, "BadRequest", "json: cannot unmarshal object into Go "
                              "value of type []handlers.jsonPatchOp")
            raise NotImplementedError("JSON patch operations are not reproduced here")
        if content_type not in ("application/merge-patch+json",
                                "application/strategic-merge-patch+json"):
            raise _status(415, "UnsupportedMediaType", f"the content type {content_type} "
                          "is not supported")
        if self.before_next_patch is not None:
            hook, self.before_next_patch = self.before_next_patch, None
            hook(self)
        wanted = body.get("metadata", {}).get("resourceVersion")
        stored = self.nodes[name]["metadata"]["resourceVersion"]
        if wanted is not None and wanted != stored:
            raise _status(409, "Conflict", f'Operation cannot be fulfilled on nodes "{name}": '
                          "the object has been modified; please apply your changes to the "
                          "latest version and try again")
        patch = copy.deepcopy(body)
        patch.get("metadata", {}).pop("resourceVersion", None)
        self.write(name, patch)
        return self._node(name)
