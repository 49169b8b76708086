"""gpu.health's judgements that need more than one reading: the share of the load's
time a thermal limit held the clocks down, and the NVLinks missing from what the
model's healthy system shows.
"""

from __future__ import annotations

from typing import Any

from bench_agent.config import baselines
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit
from bench_agent.tools import nvml


def _m(check: str, metric: str, value: float, device: str, params: dict[str, Any]) -> Measurement:
    return Measurement(check=check, metric=metric, value=value, unit=Unit.COUNT, device=device,
                       tool="nvml", params=params)


# Samples needed to judge thermal slowdown without NVML's violation counter: 10
# samples are 5 s of load at the default 0.5 s interval, so one unlucky sample
# weighs a tenth, not all, of the verdict.
MIN_THERMAL_SAMPLES = 10


def thermal_share(check: str, device: str, facts: nvml.GpuFacts,
                  before: nvml.ErrorCounters, after: nvml.ErrorCounters,
                  samples: list[nvml.GpuSample], load_wall: float,
                  loaded: bool) -> list[Measurement]:
    """The share of the load's time a thermal limit held the clocks down.

    From NVML's violation counter when the GPU has it: the driver counts every
    nanosecond, so a 0.5 s sample that happens to land on a transient at the
    slowdown temperature is not the whole judgement. Without it, the share of
    the samples that saw a thermal clock event reason, over at least
    MIN_THERMAL_SAMPLES of them; with fewer nothing is judged (SKIP).
    """
    if not loaded or load_wall <= 0:
        return []  # an idle GPU is not held down by heat: nothing to judge
    ident = {"uuid": facts.uuid, "name": facts.name, "serial": facts.serial}
    if after.thermal_violation_ns is not None and before.thermal_violation_ns is not None:
        held = max(0, after.thermal_violation_ns - before.thermal_violation_ns) / 1e9
        return [_m(check, "gpu.thermal_slowdown_share", min(1.0, held / load_wall), device,
                        {**ident, "method": "nvmlDeviceGetViolationStatus(THERMAL)",
                         "held_s": round(held, 3), "load_s": round(load_wall, 3)})]
    masks = [s.clock_event_reasons for s in samples if s.clock_event_reasons is not None]
    if len(masks) < MIN_THERMAL_SAMPLES:
        return []
    hot = sum(bool(m & nvml.THERMAL_MASK) for m in masks)
    return [_m(check, "gpu.thermal_slowdown_share", hot / len(masks), device,
                    {**ident, "method": "clock event reason samples",
                     "samples": len(masks), "thermal_samples": hot})]

def nvlink_down(check: str, device: str, facts: nvml.GpuFacts, after: nvml.ErrorCounters,
                expected_param: int | None, baseline: baselines.Baseline | None
                ) -> tuple[list[Measurement], str | None]:
    """gpu.nvlink_down = expected active links - active links, or (no measurement,
    why not judged).

    NVLink-capable PCIe cards without a bridge (A100 PCIe, H100 PCIe, H100 NVL)
    and SXM GPUs passed through without their fabric report their links as
    inactive, not as NOT_SUPPORTED, so "any inactive link" would fail a healthy
    card: the count a healthy system shows comes from the model's baseline
    (nvlink_links) or the suite (expected_nvlinks).
    """
    links = after.nvlink
    active = sorted(link for link, state in links.items() if state.active)
    inactive = sorted(link for link, state in links.items() if not state.active)
    expected, basis = expected_param, "the suite's expected_nvlinks"
    if expected is None and baseline is not None and baseline.nvlink_links is not None:
        expected = baseline.nvlink_links
        basis = f"baseline {baseline.model}"
    if expected == 0:
        return [], f"{basis}: no NVLink expected, links not judged"
    if expected is None:
        if not active:
            # An unknown model with no active link: a card without NVLink, or
            # one without its bridge; nothing to judge against.
            return [], (f"no baseline states the NVLinks of {facts.name!r} and none is "
                        "active: not judged (set gpu.health's expected_nvlinks)")
        # An unknown model with some links up: the inactive ones are missing.
        expected, basis = len(links), "links NVML lists (unknown model, some active)"
    ident = {"uuid": facts.uuid, "name": facts.name, "serial": facts.serial,
             "pci_bus_id": facts.pci_bus_id}
    return [_m(check, "gpu.nvlink_down", max(0, expected - len(active)), device,
                    {**ident, "expected": expected, "expected_from": basis,
                     "active": len(active), "down": inactive})], None
