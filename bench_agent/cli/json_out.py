"""`--json` of the commands other than `run`: one shape convention for all.

The convention (docs/cli.md, "JSON output"), the same as `run --json`:

* stdout holds exactly one JSON document (an object), indented by two spaces
  and ended by a newline; nothing else is written to stdout.
* Messages for people (progress, warnings, "upload: ..." lines) stay on stderr.
* The exit code is the one the command has without --json.
* Keys are snake_case; paths are strings as given; numbers are in the canonical
  unit named beside them (``unit``), never rounded for display.
* A usage or configuration error is still one line on stderr with its exit
  code (3, 4, 5): no JSON is printed then, so a reader can tell "no answer" from
  an answer.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench_agent.fleet.analysis import Comparison
    from bench_agent.report.upload import UploadResult


def emit(document: dict[str, Any]) -> None:
    """Write ``document`` to stdout by the convention above (NaN and infinities
    refused: RFC 8259 section 6 has no place for them)."""
    from bench_agent.core.model import dumps_finite

    sys.stdout.write(dumps_finite(document, indent=2) + "\n")


def upload_document(result: UploadResult, exit_code: int) -> dict[str, Any]:
    return {
        "exit_code": exit_code,
        "summary": result.summary(),
        "delivered": [str(p) for p in result.delivered],
        "rejected": [{"path": str(p), "reason": why} for p, why in result.rejected],
        "waiting": [str(p) for p in result.pending],
        "skipped": [{"path": str(p), "reason": why} for p, why in result.skipped],
        "stopped_because": result.stopped_because,
    }


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def fleet_document(result: Comparison) -> dict[str, Any]:
    """The comparison: each metric's spread and each node's value (None where the
    node has none), and the outliers; values in the metric's canonical unit."""
    table = result.table
    return {
        "nodes": [str(node) for node in table.index],
        "z_limit": result.z_limit,
        "metrics": [
            {"metric": s.metric, "unit": s.unit.value if s.unit else None, "n": s.n,
             "median": _number(s.median), "mad": _number(s.mad),
             "better": "higher" if s.higher_is_better else "lower",
             "values": {str(node): _number(float(v)) if v == v else None
                        for node, v in table[s.metric].items()}}
            for s in result.stats],
        "outliers": [{"node": o.node, "metric": o.metric, "value": _number(o.value),
                      "z": _number(o.z), "median": _number(o.median)}
                     for o in result.outliers],
        # Configuration drift (fleet/drift.py): facts keep their JSON types.
        "drift": [{"node": d.node, "fact": d.fact, "value": d.value,
                   "fleet_value": d.fleet.common, "fleet_share": _number(d.fleet.share),
                   "fleet_nodes": d.fleet.nodes} for d in result.drift],
    }
