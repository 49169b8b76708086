"""config.consistency: the node's configuration, uniform and as expected.

Most nodes that fail acceptance fail on configuration, not on a benchmark: one
GPU on another VBIOS, persistence mode off, the fabric manager down, a
governor left on powersave (the checks of LBNL NHC, Azure's AzNHC and imbue's
host validation). The facts are read by inventory/config_facts.py (sysfs, /proc,
NVML: no process, milliseconds) and judged by core/config_rules.py two ways:

- ``config.nonuniform``, one measurement per fact: how many GPUs of one model
  (or HCAs) differ from the most common value on this node; the note names each
  one with its PCI address and serial;
- ``config.expected_mismatch`` (``..._warn`` for the profile's warn entries),
  one per entry of the profile's ``configuration`` section: how many components
  (or the node) have a value outside the allowed set.

Facts are text and flags, so they are compared here and only the counts go to
the threshold engine, with the profile's own thresholds on them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bench_agent.checks.base import Check, CheckContext, MetricSpec
from bench_agent.core.config_rules import (
    ExpectationResult,
    FactValue,
    components,
    judge_expectations,
    node_facts,
    shown,
    uniformity,
)
from bench_agent.core.errors import NotApplicable
from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit

CHECK = "config.consistency"


def _values(pairs: tuple[tuple[str, FactValue], ...]) -> dict[str, str]:
    return {label: shown(value) for label, value in pairs}


class ConfigConsistencyCheck(Check):
    name: ClassVar[str] = CHECK
    domain: ClassVar[str] = "cpu"  # judged with the node's sizing (profile sections)
    description: ClassVar[str] = (
        "configuration: GPUs and HCAs uniform (VBIOS, firmware, modes, clocks, limits), and "
        "the profile's expected driver, kernel and tunables")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("config.nonuniform", Unit.COUNT,
                   "GPUs of one model (or HCAs) whose value of the fact (the device) differs "
                   "from the most common one on the node", higher_is_better=False,
                   per_device=True),
        MetricSpec("config.expected_mismatch", Unit.COUNT,
                   "components (or the node) whose fact is outside the allowed values of the "
                   "profile's configuration section (its fail entries)",
                   higher_is_better=False, per_device=True),
        MetricSpec("config.expected_mismatch_warn", Unit.COUNT,
                   "the same for the configuration section's warn entries",
                   higher_is_better=False, per_device=True),
    )

    def run(self, ctx: CheckContext, params: Any) -> list[Measurement]:
        from bench_agent.inventory.collect import collect_inventory

        return self.judge(collect_inventory(ctx.root), ctx)

    def judge(self, inv: Inventory, ctx: CheckContext) -> list[Measurement]:
        """The measurements of an inventory already collected (`bench-agent health`
        collects it once for its inventory check and this one)."""
        out: list[Measurement] = []
        for u in uniformity(components(inv)):
            kind = u.fact.partition(".")[0].upper()
            out.append(self._m("config.nonuniform", len(u.odd), u.fact, {
                "group": u.group, "common": shown(u.common), "components": u.total,
                "differ": _values(u.odd), **({"note": u.note(kind)} if u.odd else {})}))
        for result in judge_expectations(inv, ctx.expected_config):
            out.append(self._expected(result))
        if not out:
            facts = ", ".join(f"{k}={shown(v)}" for k, v in node_facts(inv).items()
                              if v is not None)
            raise NotApplicable("nothing to compare: fewer than two GPUs or HCAs and no "
                                "configuration section in the profile (facts read: "
                                f"{facts or 'none'})")
        return out

    def _expected(self, result: ExpectationResult) -> Measurement:
        exp = result.expectation
        metric = ("config.expected_mismatch" if exp.severity == "fail"
                  else "config.expected_mismatch_warn")
        params: dict[str, Any] = {"allowed": [shown(v) for v in exp.allowed],
                                  "checked": result.checked, "source": exp.source,
                                  "found": _values(result.offenders)}
        if result.offenders or result.checked == 0:
            params["note"] = result.note()
        # No GPU to judge a GPU fact on: that is a miss too (a profile that expects
        # persistence mode on a node where NVML shows no GPU must not pass).
        count = len(result.offenders) if result.checked else 1
        return self._m(metric, count, exp.fact, params)

    def _m(self, metric: str, value: int, device: str, params: dict[str, Any]) -> Measurement:
        return Measurement(check=self.name, metric=metric, value=value, unit=Unit.COUNT,
                           device=device, tool="sysfs+nvml", params=params)


# The checks of this module, in `bench-agent list` order (checks/__init__.py finds them).
CHECKS: tuple[type[Check], ...] = (ConfigConsistencyCheck,)
