"""The child process side of runner.py: run one check, print one JSON line.

Protocol (stdin -> stdout), versioned by the "protocol" key:
    request:  {"protocol": 2, "check": NAME, "params": {...}, "root": "/",
               "output_dir": "results", "timeout": 300.0, "options": {...}}
              ("options": checks.base.RunOptions.to_dict(); an unknown one is a
              BadRequest) or {"protocol": 2, "inventory": true, "root": "/"}
              or, burn-in mode, the check request with "burnin": true: the check's
              burn-in loop (Check.burnin) with its params, ``timeout`` the longest
              it may run and "interval" the seconds between readings
              or, for a check that brackets the run (Check.brackets_run), the check
              request with "phase": "before": its snapshot at the start of the run;
              its later request carries that snapshot as "before" (or the reason
              there is none as "before_error")
    response: one JSON line on the original stdout, the last line printed:
              {"ok": true, "measurements": [...]} | {"ok": true, "inventory": {...}}
              (the inventory as core.inventory.Inventory.to_dict() writes it)
              {"ok": true, "burnin": LOAD} (the loop returned when asked to stop)
              {"ok": true, "snapshot": {...}} (phase "before")
              {"ok": false, "status": "SKIP", "error": "ToolMissing", "message": "..."}
              in burn-in mode it is preceded by one line per interval:
              {"reading": {"metric": ..., "value": ..., "unit": ..., "t": UNIX TIME}}
              (value null when the loop measured NaN or an infinity)
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
an exception itself (checks/storage.py, signals_raise). In burn-in mode SIGTERM
and SIGINT ask the loop to stop instead (it returns, its ``finally`` blocks
remove what it made); the runner's stop SIGKILLs after its grace.
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

from bench_agent.core.status import Status

PROTOCOL = 2


def _failure(status: Status, error: str, message: str) -> dict[str, Any]:
    return {"ok": False, "status": status.value, "error": error, "message": message}


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
        return _failure(Status.ERROR, "BadRequest", f"check {check.name} has no burn-in variant")
    from pydantic import ValidationError

    try:
        params = variant.params_model.model_validate(request.get("params", {}))
    except ValidationError as exc:
        return _failure(Status.ERROR, "BadRequest",
                        f"{variant.load} params: {exc.errors()[0]['msg']} at"
                        f" {'.'.join(str(p) for p in exc.errors()[0]['loc'])}")
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


def _expectations(raw: Any) -> tuple[Any, ...]:
    """The profile's configuration section (core/config_rules.Expectation dicts)."""
    from bench_agent.core.config_rules import Expectation

    if not isinstance(raw, list):
        raise ValueError(f"expected_config must be a list, got {type(raw).__name__}")
    if not all(isinstance(item, dict) for item in raw):
        raise ValueError("expected_config must be a list of objects")
    return tuple(Expectation.from_dict(item) for item in raw)


def _execute(request: dict[str, Any], out: IO[str]) -> dict[str, Any]:
    from bench_agent.checks import get_check
    from bench_agent.checks.base import BURNIN_INTERVAL_S, CheckContext, RunOptions
    from bench_agent.core.errors import BenchAgentError, NotApplicable, verdict_status

    root = Path(request.get("root", "/"))
    try:
        if request.get("inventory"):
            from bench_agent.inventory.collect import collect_inventory

            return {"ok": True, "inventory": collect_inventory(root).to_dict()}
        check = get_check(request["check"])
        try:
            options = RunOptions.from_dict(request.get("options") or {})
            expected = _expectations(request.get("expected_config", []))
            interval = request.get("interval", BURNIN_INTERVAL_S)
            if isinstance(interval, bool) or not isinstance(interval, int | float) \
                    or not interval > 0:
                raise ValueError(f"interval must be a number of seconds > 0, got {interval!r}")
            before, before_error = request.get("before"), request.get("before_error")
            if not isinstance(before, dict | None) or not isinstance(before_error, str | None):
                raise ValueError("before must be an object and before_error text")
        except ValueError as exc:
            return _failure(Status.ERROR, "BadRequest", str(exc))
        ctx = CheckContext(
            root=root,
            output_dir=Path(request.get("output_dir", "results")),
            timeout=float(request.get("timeout", 300.0)),
            options=options,
            interval=float(interval),
            before=before,
            before_error=before_error,
            expected_config=expected,
        )
        reason = check.available(ctx)
        if reason is not None:
            raise NotApplicable(reason)
        if request.get("burnin"):
            return _burnin(check, ctx, request, out)
        params = check.params_model.model_validate(request.get("params", {}))
        if request.get("phase") == "before":
            if not check.brackets_run:
                return _failure(Status.ERROR, "BadRequest",
                                f"check {check.name} takes no snapshot")
            return {"ok": True, "snapshot": check.snapshot(ctx, params)}
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
    with os.fdopen(response_fd, "w", encoding="utf-8") as out:
        try:
            request = json.loads(sys.stdin.read())
            if not isinstance(request, dict):
                raise ValueError(f"a request is a JSON object, not {type(request).__name__}")
            if request.get("protocol") != PROTOCOL:
                raise ValueError(f"worker protocol {request.get('protocol')!r} != {PROTOCOL}")
        except (ValueError, json.JSONDecodeError) as exc:
            response = _failure(Status.ERROR, "BadRequest", str(exc))
        else:
            response = _execute(request, out)
        out.write(json.dumps(response) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
