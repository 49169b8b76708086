"""A profile's ``configuration`` section: the values each configuration fact may have.

    configuration:
      - fact: gpu.persistence_mode
        allowed: [true]
        source: "NVIDIA driver persistence docs: ..."
      - fact: node.cpu_governor
        allowed: [performance]
        severity: warn
        source: "..."

Facts are named in core/config_rules.FACTS (`bench-agent list --facts` prints
them). ``allowed`` holds exact, typed values: YAML's true is a flag, "0" text, 0 a
number. A profile that extends another replaces the parent's entry for the same
fact. A fleet baseline (`bench-agent baseline generate`) carries the same section,
with the share of the fleet that has each value.

config.consistency judges the entries (checks/config/checks.py) and reports a
count per entry; the thresholds on those counts are added here, one per
severity, unless the profile sets its own, so a section is never left unjudged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from bench_agent.core.config_rules import FACTS, Expectation, known_fact, split_fact
from bench_agent.core.errors import ConfigError
from bench_agent.core.metrics import MetricInfo
from bench_agent.core.thresholds import Comparator, Severity, Threshold
from bench_agent.core.units import Unit

EXPECTED_METRICS = {"fail": "config.expected_mismatch", "warn": "config.expected_mismatch_warn"}


class ConfigEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fact: str
    allowed: list[StrictBool | StrictInt | StrictStr] = Field(min_length=1)
    severity: Literal["fail", "warn"] = "fail"
    source: str = Field(min_length=1)


class FleetConfigEntry(ConfigEntry):
    """An entry of a fleet baseline: also how many nodes were read and the share
    of them that has the allowed value."""

    nodes: int | None = Field(default=None, ge=1, strict=True)
    share: float | None = Field(default=None, ge=0, le=1, strict=True)


def expectations(entries: Sequence[ConfigEntry], path: Path, key: str = "configuration",
                 inherited: Sequence[Expectation] = ()) -> tuple[Expectation, ...]:
    """The section's entries over the inherited ones (the same fact: replaced)."""
    by_fact = {e.fact: e for e in inherited}
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not known_fact(entry.fact):
            from difflib import get_close_matches

            near = get_close_matches(split_fact(entry.fact)[0], FACTS, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else \
                "; `bench-agent list --facts` lists them"
            raise ConfigError(f"unknown configuration fact {entry.fact!r}{hint}",
                              file=str(path), key=f"{where}.fact")
        if entry.fact in seen:
            raise ConfigError(f"fact {entry.fact!r} listed twice", file=str(path),
                              key=f"{where}.fact")
        seen.add(entry.fact)
        by_fact[entry.fact] = Expectation(entry.fact, tuple(entry.allowed), entry.severity,
                                          entry.source)
    return tuple(by_fact.values())


UNIFORM_METRIC = "config.nonuniform"


def section_thresholds(section: Sequence[Expectation], thresholds: Sequence[Threshold],
                       catalog: Mapping[str, MetricInfo], path: Path) -> list[Threshold]:
    """The thresholds the section needs that the profile does not set itself, and
    the uniformity rule, which every profile judges unless it sets its own: one
    GPU on another VBIOS must not pass under a profile that forgot it. A profile
    loaded against a catalog without config.consistency (the health checks') gets
    neither."""
    have = {t.metric for t in thresholds}
    out = []
    uniform = catalog.get(UNIFORM_METRIC)
    if UNIFORM_METRIC not in have and uniform is not None:
        out.append(Threshold(
            id="config-uniform", metric=UNIFORM_METRIC, comparator=Comparator.LE, value=0,
            unit=Unit.COUNT, checks=uniform.checks, meaning=uniform.meaning,
            source="bench-agent: the GPUs of one model and the HCAs of one type and board "
                   "share VBIOS, firmware, modes, clocks and power limits; one that differs "
                   "is a configuration fault, named in the measurement (added to every "
                   "profile that does not judge config.nonuniform itself)"))
    for severity, metric in EXPECTED_METRICS.items():
        found = catalog.get(metric)
        if metric in have or found is None or not any(e.severity == severity for e in section):
            continue
        out.append(Threshold(
            id=f"configuration-{severity}", metric=metric, comparator=Comparator.LE,
            value=0, unit=Unit.COUNT,
            source=f"bench-agent: the configuration section of {path.name} (each entry's own "
                   "source is in its measurement): every fact within its allowed values",
            checks=found.checks, meaning=found.meaning, severity=Severity(severity)))
    return out
