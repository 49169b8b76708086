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

from bench_agent.core.config_rules import FactValue, flat_facts, known_fact, shown
from bench_agent.core.errors import BenchAgentError
from bench_agent.core.inventory import INVENTORY_SCHEMA_VERSION, Inventory

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
    (an agent before inventory version 2, or an inventory this agent cannot read:
    a newer agent's, a hostile one). One odd report never stops the fleet's."""
    raw = report.get("inventory")
    if not isinstance(raw, dict):
        return None
    version = raw.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) \
            or not 2 <= version <= INVENTORY_SCHEMA_VERSION:
        return None
    try:
        inv = Inventory.from_dict(raw)
    except (ValueError, TypeError, BenchAgentError):
        return None
    return flat_facts(inv)


def node_type(facts: Mapping[str, FactValue]) -> str:
    """What a node is compared within: its GPU model(s) (nodes of another model or
    without GPUs are another fleet, not drift)."""
    model = facts.get("gpu.model")
    return str(model) if model is not None else "no GPU"


def _by_type(facts_by_node: Mapping[str, Mapping[str, FactValue]]
             ) -> dict[str, dict[str, Mapping[str, FactValue]]]:
    out: dict[str, dict[str, Mapping[str, FactValue]]] = {}
    for node, facts in facts_by_node.items():
        out.setdefault(node_type(facts), {})[node] = facts
    return out


def summarize(facts_by_node: Mapping[str, Mapping[str, FactValue]]) -> list[FactSummary]:
    """Each fact any node knows, over the nodes given (one node type)."""
    out = []
    for fact in sorted({k for facts in facts_by_node.values() for k in facts}):
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
    """Every (node, fact) whose value is not the most common one among the nodes of
    its type, for facts that at least MIN_NODES of them know. A node that cannot
    read a fact the others read is listed too (its value unknown)."""
    out = []
    for nodes in _by_type(facts_by_node).values():
        for summary in summarize(nodes):
            if summary.nodes < MIN_NODES:
                continue
            for node in sorted(nodes):
                value = nodes[node].get(summary.fact)
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
                     f"on {round(s.share * s.nodes)} of {s.nodes} nodes of its type)")
    return lines


def expected_configuration(facts_by_node: Mapping[str, Mapping[str, FactValue]],
                           source: str) -> list[dict[str, Any]]:
    """A profile's configuration section from a healthy fleet of one node type: the
    most common value of each fact that at least MIN_NODES nodes know, with the
    share of them that has it. A value that is itself a mix within a node (" | ")
    is no configuration to expect and is left out; so is a fleet of several node
    types (the baseline would pin one type's values on the others): those facts
    are left out with the rest of their type, and the caller says so."""
    types = _by_type(facts_by_node)
    if len(types) != 1:
        return []
    entries = []
    for s in summarize(next(iter(types.values()))):
        mixed = isinstance(s.common, str) and " | " in s.common
        if s.nodes < MIN_NODES or not known_fact(s.fact) or mixed:
            continue
        entries.append({"fact": s.fact, "allowed": [s.common], "severity": "fail",
                        "nodes": s.nodes, "share": round(s.share, 6),
                        "source": f"{source}: {shown(s.common)} on "
                                  f"{round(s.share * s.nodes)} of {s.nodes} nodes"})
    return entries
