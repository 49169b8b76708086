"""The child process side of runner.py: run one check, print one JSON line.

Protocol (stdin -> stdout), versioned by the "protocol" key:
    request:  {"protocol": 1, "check": NAME, "params": {...}, "root": "/",
               "output_dir": "results", "timeout": 300.0, "options": {...}}
              or {"protocol": 1, "inventory": true, "root": "/"}
              or, burn-in mode, the check request with "burnin": true: the check's
              burn-in loop (Check.burnin) with its params, ``timeout`` the longest
              it may run and options["interval"] the seconds between readings
    response: one JSON line on the original stdout, the last line printed:
              {"ok": true, "measurements": [...]} | {"ok": true, "inventory": {...}}
              {"ok": true, "burnin": LOAD} (the loop returned when asked to stop)
              {"ok": false, "error": "ToolMissing", "message": "..."}
              in burn-in mode it is preceded by one line per interval:
              {"reading": {"metric": ..., "value": ..., "unit": ..., "t": UNIX TIME}}
              (value null when the loop measured NaN or an infinity)

Anything a check or a library prints goes to stderr: file descriptor 1 is pointed
at stderr while the check runs, so stray output cannot corrupt the response. In
burn-in mode SIGTERM and SIGINT ask the loop to stop (it returns, its ``finally``
blocks remove what it made); the runner's stop SIGKILLs after its grace.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import IO, Any

PROTOCOL = 1


class _StopFlag:
    """Set by SIGTERM/SIGINT: a plain store, safe in a signal handler."""

    def __init__(self) -> None:
        self.raised = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.raised = True


def _burnin(check: Any, ctx: Any, request: dict[str, Any], out: IO[str]) -> dict[str, Any]:
    from bench_agent.checks.base import BurninVariant
    from bench_agent.core.model import finite_or_none

    variant = check.burnin
    if not isinstance(variant, BurninVariant):
        return {"ok": False, "error": "BadRequest",
                "message": f"check {check.name} has no burn-in variant"}
    from pydantic import ValidationError

    try:
        params = variant.params_model.model_validate(request.get("params", {}))
    except ValidationError as exc:
        return {"ok": False, "error": "BadRequest",
                "message": f"{variant.load} params: {exc.errors()[0]['msg']} at"
                           f" {'.'.join(str(p) for p in exc.errors()[0]['loc'])}"}
    module_name, function_name = variant.loop.split(":")
    loop = getattr(importlib.import_module(module_name), function_name)
    stop = _StopFlag()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    deadline = time.monotonic() + ctx.timeout

    def stopping() -> bool:
        return stop.raised or time.monotonic() >= deadline

    def emit(value: float) -> None:
        reading = {"metric": variant.rate.name, "value": float(value),
                   "unit": variant.rate.unit.value, "t": time.time()}
        out.write(json.dumps({"reading": finite_or_none(reading)}, allow_nan=False) + "\n")
        out.flush()

    loop(ctx, params, emit, stopping)
    return {"ok": True, "burnin": variant.load}


def _execute(request: dict[str, Any], out: IO[str]) -> dict[str, Any]:
    from bench_agent.checks import get_check
    from bench_agent.checks.base import CheckContext
    from bench_agent.core.errors import BenchAgentError

    root = Path(request.get("root", "/"))
    try:
        if request.get("inventory"):
            from bench_agent.inventory.collect import collect_inventory

            return {"ok": True, "inventory": collect_inventory(root)}
        check = get_check(request["check"])
        ctx = CheckContext(
            root=root,
            output_dir=Path(request.get("output_dir", "results")),
            timeout=float(request.get("timeout", 300.0)),
            extra=dict(request.get("options") or {}),
        )
        reason = check.available(ctx)
        if reason is not None:
            return {"ok": False, "error": "NotAvailable", "message": reason}
        if request.get("burnin"):
            return _burnin(check, ctx, request, out)
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
    with os.fdopen(response_fd, "w", encoding="utf-8") as out:
        try:
            request = json.loads(sys.stdin.read())
            if request.get("protocol") != PROTOCOL:
                raise ValueError(f"worker protocol {request.get('protocol')!r} != {PROTOCOL}")
        except (ValueError, json.JSONDecodeError) as exc:
            response: dict[str, Any] = {"ok": False, "error": "BadRequest", "message": str(exc)}
        else:
            response = _execute(request, out)
        out.write(json.dumps(response) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
