"""What the passive health checks share: their params and counters since the last run.

`bench-agent health` keeps a state file (bench_agent/health/state.py) so that
events and counters are judged since the previous health run, as NHC judges a
node's state at each run rather than since boot. The runner hands each check
the readings it recorded last time in ``since`` ("metric@device" -> number);
each measurement of a counter carries ``params["state"]``, its reading now,
which the runner writes back. Without a previous reading (the first run, or
`bench-agent run health.ib`) the counter's whole value is judged: since the
driver loaded (IB, PCIe) or since the kernel log began (XIDs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench_agent.checks.plain_params import PlainParams


# Plain, not pydantic: these checks are all `bench-agent health` runs, and its time
# budget has no room for pydantic's import (checks/plain_params.py).
@dataclass(frozen=True)
class HealthParams(PlainParams):
    """``since``: the previous run's readings, filled in by `bench-agent health`."""

    since: dict[str, float] = field(default_factory=dict)


def state_key(metric: str, device: str) -> str:
    return f"{metric}@{device}"


def growth(metric: str, device: str, now: int, since: dict[str, float]
           ) -> tuple[int, dict[str, Any]]:
    """A counter's growth since the previous reading, and the params recording it.

    A counter lower than its previous reading was reset (driver reload, reboot,
    `perfquery -R`): its whole value is new.
    """
    key = state_key(metric, device)
    before = since.get(key)
    params: dict[str, Any] = {"reading": now, "state": {key: now}}
    if before is None or now < before:
        params["since"] = "driver load" if before is None else "counter reset"
        return now, params
    params["since"] = "the previous health run"
    params["previous"] = before
    return now - int(before), params
