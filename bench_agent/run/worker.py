"""The child process side of runner.py: run one check, print one JSON line.

Protocol (stdin -> stdout), versioned by the "protocol" key:
    request:  {"protocol": 1, "check": NAME, "params": {...}, "root": "/",
               "output_dir": "results", "timeout": 300.0, "options": {...}}
              ("options": checks.base.RunOptions.to_dict(); an unknown one is a
              BadRequest) or {"protocol": 1, "inventory": true, "root": "/"}
    response: one JSON line on the original stdout, the last line printed:
              {"ok": true, "measurements": [...]} | {"ok": true, "inventory": {...}}
              (the inventory as core.inventory.Inventory.to_dict() writes it)
              {"ok": false, "error": "ToolMissing", "message": "..."}

Anything a check or a library prints goes to stderr: file descriptor 1 is pointed
at stderr while the check runs, so stray output cannot corrupt the response.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

PROTOCOL = 1


def _execute(request: dict[str, Any]) -> dict[str, Any]:
    from bench_agent.checks import get_check
    from bench_agent.checks.base import CheckContext, RunOptions
    from bench_agent.core.errors import BenchAgentError

    root = Path(request.get("root", "/"))
    try:
        if request.get("inventory"):
            from bench_agent.inventory.collect import collect_inventory

            return {"ok": True, "inventory": collect_inventory(root).to_dict()}
        check = get_check(request["check"])
        try:
            options = RunOptions.from_dict(request.get("options") or {})
        except ValueError as exc:
            return {"ok": False, "error": "BadRequest", "message": str(exc)}
        ctx = CheckContext(
            root=root,
            output_dir=Path(request.get("output_dir", "results")),
            timeout=float(request.get("timeout", 300.0)),
            options=options,
        )
        reason = check.available(ctx)
        if reason is not None:
            return {"ok": False, "error": "NotAvailable", "message": reason}
        params = check.params_model.model_validate(request.get("params", {}))
        measurements = check.run(ctx, params)
        return {"ok": True, "measurements": [m.to_dict() for m in measurements]}
    except BenchAgentError as exc:
        return {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # a bug or a foreign library's failure: ERROR, with its words
        last = traceback.format_exception(exc)[-3:]
        return {"ok": False, "error": "Crash", "message": "".join(last).strip()}


def main() -> int:
    # Keep the real stdout for the response; everything else goes to stderr.
    response_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        request = json.loads(sys.stdin.read())
        if request.get("protocol") != PROTOCOL:
            raise ValueError(f"worker protocol {request.get('protocol')!r} != {PROTOCOL}")
    except (ValueError, json.JSONDecodeError) as exc:
        response: dict[str, Any] = {"ok": False, "error": "BadRequest", "message": str(exc)}
    else:
        response = _execute(request)
    with os.fdopen(response_fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(response) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
