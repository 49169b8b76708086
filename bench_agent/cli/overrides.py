"""`run --runtime/--size/--repetitions`: one-off changes to the selected checks'
parameters without writing a suite file.

Each value goes through the check's own params model (the same validation as a
suite file's ``params``), so a value a check refuses is refused here with that
check's words. A flag is applied to every selected check that has the
parameter; it is an error (exit 3) when a check named on the command line does
not have it, or when no selected check has it (a flag that changes nothing
must not look as if it did). The changed parameters are in the report: each
measurement carries the params it was measured with, and the suite's digest
covers the changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from pydantic import ValidationError

from bench_agent.config.plans import CheckPlan, Suite
from bench_agent.core.errors import UnitError, UsageError
from bench_agent.core.units import parse_duration

# The flag -> the parameter names it sets (the network checks call their
# measuring time ``duration``, in whole seconds).
FIELDS: dict[str, tuple[str, ...]] = {
    "runtime": ("runtime", "duration"),
    "size": ("size",),
    "repetitions": ("repetitions",),
}


def requested(runtime: str | None, size: str | None, repetitions: int | None
              ) -> dict[str, Any]:
    """The flags given, their values as the params models take them."""
    wanted: dict[str, Any] = {}
    if runtime is not None:
        try:
            wanted["runtime"] = parse_duration(runtime)
        except UnitError as exc:
            raise UsageError(f"--runtime {runtime}: {exc}") from exc
    if size is not None:
        wanted["size"] = size
    if repetitions is not None:
        wanted["repetitions"] = repetitions
    return wanted


def _field(plan: CheckPlan, flag: str) -> str | None:
    from bench_agent.checks import get_check

    fields = get_check(plan.check).params_model.model_fields
    return next((name for name in FIELDS[flag] if name in fields), None)


def apply_overrides(suite: Suite, wanted: dict[str, Any], named: set[str]) -> Suite:
    """``suite`` with ``wanted`` set in each check that takes it; ``named``: the
    checks the command line named one by one."""
    if not wanted:
        return suite
    from bench_agent.checks import get_check

    plans = list(suite.checks)
    for flag, value in wanted.items():
        takers = [i for i, plan in enumerate(plans) if _field(plan, flag) is not None]
        refusing = sorted(p.check for p in plans if p.check in named and _field(p, flag) is None)
        if refusing:
            verb = "takes" if len(refusing) == 1 else "take"
            raise UsageError(f"--{flag}: {', '.join(refusing)} {verb} no {flag} parameter"
                             + _who_takes(plans, flag))
        if not takers:
            raise UsageError(f"--{flag}: none of the selected checks "
                             f"({', '.join(p.check for p in plans)}) takes a {flag} parameter")
        for index in takers:
            plan = plans[index]
            name = _field(plan, flag)
            assert name is not None
            params = {**plan.params, name: value}
            try:
                checked = get_check(plan.check).params_model.model_validate(params)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise UsageError(f"--{flag} {value}: {plan.check} refuses it: "
                                 f"{first['msg']}") from exc
            plans[index] = dataclasses.replace(plan, params=checked.model_dump())
    changes = json.dumps(wanted, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{suite.sha256}\n{changes}".encode()).hexdigest()
    shown = ", ".join(f"--{flag} {value:g}" if isinstance(value, float) else f"--{flag} {value}"
                      for flag, value in wanted.items())
    description = f"{suite.description} (changed on the command line: {shown})".lstrip()
    return dataclasses.replace(suite, checks=plans, sha256=digest, description=description)


def _who_takes(plans: list[CheckPlan], flag: str) -> str:
    takers = [p.check for p in plans if _field(p, flag) is not None]
    return f"; selected checks that do: {', '.join(takers)}" if takers else ""
