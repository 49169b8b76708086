"""The child process side of runner.py: run one check, print one JSON line.

Protocol (stdin -> stdout), versioned by the "protocol" key:
    request:  {"protocol": 2, "check": NAME, "params": {...}, "root": "/",
               "output_dir": "results", "timeout": 300.0, "options": {...}}
              ("options": checks.base.RunOptions.to_dict(); an unknown one is a
              BadRequest) or {"protocol": 2, "inventory": true, "root": "/"}
    response: one JSON line on the original stdout, the last line printed:
              {"ok": true, "measurements": [...]} | {"ok": true, "inventory": {...}}
              (the inventory as core.inventory.Inventory.to_dict() writes it)
              {"ok": false, "status": "SKIP", "error": "ToolMissing", "message": "..."}
    "status" is the verdict, SKIP or ERROR: the status the error's class declares
    (core/errors.py, verdict_status), ERROR for anything else. runner.py decides by
    it alone; "error" (the class's name) is for people reading a log. Protocol 2
    added "status"; protocol 1 sent only the name.

Anything a check or a library prints goes to stderr: file descriptor 1 is pointed
at stderr while the check runs, so stray output cannot corrupt the response.

The runner starts the worker through core/process.py, so the worker dies with
the agent (a parent-death signal) and is stopped with everything it started;
the tools a check runs go through the same seam, so they die with the worker.
SIGTERM keeps its default action here (the process ends at once, even inside a
long C call such as a GEMM); a check with something to clean up turns it into
an exception itself (checks/storage.py, signals_raise).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from bench_agent.core.status import Status

PROTOCOL = 2


def _failure(status: Status, error: str, message: str) -> dict[str, Any]:
    return {"ok": False, "status": status.value, "error": error, "message": message}


def _execute(request: dict[str, Any]) -> dict[str, Any]:
    from bench_agent.checks import get_check
    from bench_agent.checks.base import CheckContext, RunOptions
    from bench_agent.core.errors import BenchAgentError, NotApplicable, verdict_status

    root = Path(request.get("root", "/"))
    try:
        if request.get("inventory"):
            from bench_agent.inventory.collect import collect_inventory

            return {"ok": True, "inventory": collect_inventory(root).to_dict()}
        check = get_check(request["check"])
        try:
            options = RunOptions.from_dict(request.get("options") or {})
        except ValueError as exc:
            return _failure(Status.ERROR, "BadRequest", str(exc))
        ctx = CheckContext(
            root=root,
            output_dir=Path(request.get("output_dir", "results")),
            timeout=float(request.get("timeout", 300.0)),
            options=options,
        )
        reason = check.available(ctx)
        if reason is not None:
            raise NotApplicable(reason)
        params = check.params_model.model_validate(request.get("params", {}))
        measurements = check.run(ctx, params)
        return {"ok": True, "measurements": [m.to_dict() for m in measurements]}
    except BenchAgentError as exc:
        return _failure(verdict_status(exc), type(exc).__name__, str(exc))
    except Exception as exc:  # a bug or a foreign library's failure: ERROR, with its words
        last = traceback.format_exception(exc)[-3:]
        return _failure(Status.ERROR, type(exc).__name__,
                        f"check crashed: {''.join(last).strip()}")


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
        response = _failure(Status.ERROR, "BadRequest", str(exc))
    else:
        response = _execute(request)
    with os.fdopen(response_fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(response) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
