"""Configuration drift: the nodes whose configuration facts differ from the fleet's.

Each node's newest report carries its inventory, whose configuration facts
(core/config_rules.flat_facts) are compared with the fleet's most common value
of each fact. A fleet of one model is its own reference, as for the metrics
(fleet/analysis.py): one node on another driver, one GPU on another VBIOS, a
kernel left behind after a rolling upgrade.

The same summary is the expected configuration `bench-agent baseline generate`
writes: the most common value of each fact, with the share of nodes that have it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench_agent.core.config_rules import FACTS, FactValue, flat_facts, shown
from bench_agent.core.inventory import Inventory

# Fewer nodes than this with a fact known is no fleet to speak of (as for outliers).
MIN_NODES = 3


@dataclass(frozen=True)
class FactSummary:
    fact: str
    common: FactValue
    share: float  # of the nodes that know the fact
    nodes: int
    values: tuple[tuple[str, int], ...]  # each value shown, with its count, most common first


@dataclass(frozen=True)
class Drift:
    node: str
    fact: str
    value: FactValue
    fleet: FactSummary


def node_facts_of(report: Mapping[str, Any]) -> dict[str, FactValue] | None:
    """The configuration facts of one report's inventory; None when it has none
    (a report of an agent before inventory version 2, or no readable inventory)."""
    raw = report.get("inventory")
    if not isinstance(raw, dict) or raw.get("schema_version", 0) < 2:
        return None
    try:
        inv = Inventory.from_dict(raw)
    except ValueError:
        return None
    return flat_facts(inv)


def summarize(facts_by_node: Mapping[str, Mapping[str, FactValue]]) -> list[FactSummary]:
    out = []
    for fact in FACTS:
        known = [(node, facts[fact]) for node, facts in facts_by_node.items()
                 if facts.get(fact) is not None]
        if not known:
            continue
        # Typed counting (true is not 1); ties go to the value shown first in order.
        counts = Counter((type(v).__name__, v) for _, v in known)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], shown(item[0][1])))
        (_, common), best = ranked[0]
        out.append(FactSummary(fact, common, best / len(known), len(known),
                               tuple((shown(v), n) for (_, v), n in ranked)))
    return out


def find_drift(facts_by_node: Mapping[str, Mapping[str, FactValue]]) -> list[Drift]:
    """Every (node, fact) whose value is not the fleet's most common one, for facts
    that at least MIN_NODES nodes know. A node that cannot read a fact the rest of
    the fleet reads is listed too (its value unknown)."""
    out = []
    for summary in summarize(facts_by_node):
        if summary.nodes < MIN_NODES:
            continue
        for node in sorted(facts_by_node):
            value = facts_by_node[node].get(summary.fact)
            same = value is not None and type(value) is type(summary.common) \
                and value == summary.common
            if not same:
                out.append(Drift(node, summary.fact, value, summary))
    out.sort(key=lambda d: (d.fact, d.node))
    return out


def render_drift_text(drift: list[Drift], nodes: int) -> list[str]:
    if not drift:
        return [f"configuration: no drift over {nodes} node(s)"]
    lines = [f"configuration drift ({len(drift)}): nodes whose facts differ from the fleet's "
             "most common value"]
    for d in drift:
        s = d.fleet
        lines.append(f"DRIFT {d.node}: {d.fact} = {shown(d.value)} (fleet: {shown(s.common)} "
                     f"on {round(s.share * s.nodes)} of {s.nodes} nodes)")
    return lines


def expected_configuration(facts_by_node: Mapping[str, Mapping[str, FactValue]],
                           source: str) -> list[dict[str, Any]]:
    """A profile's configuration section from a healthy fleet: the most common value
    of each fact, with the share of the nodes that have it. A value that is itself a
    mix within a node (" | ") is no configuration to expect and is left out."""
    entries = []
    for s in summarize(facts_by_node):
        if isinstance(s.common, str) and " | " in s.common:
            continue
        entries.append({"fact": s.fact, "allowed": [s.common], "severity": "fail",
                        "nodes": s.nodes, "share": round(s.share, 6),
                        "source": f"{source}: {shown(s.common)} on "
                                  f"{round(s.share * s.nodes)} of {s.nodes} nodes"})
    return entries
