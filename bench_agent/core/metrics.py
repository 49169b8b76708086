"""The record of one metric in the catalog, and the words for a name it does not know.

The catalog itself is not written here: each check declares its metrics
(``Check.metrics``, checks/base.py ``MetricSpec``) and ``checks.metric_catalog()``
builds the catalog from those declarations, so a metric exists exactly when a
check measures it. Code in core that needs the catalog receives it as an
argument (core never imports checks).

Profiles and baselines are validated against the catalog, so a threshold on an
unknown metric, or in a unit of another dimension ("10 GB/s" for an IOPS metric),
is a ConfigError when the file is loaded, not a surprise at the end of a run.
``higher_is_better`` tells fleet analysis which side of the median is the bad one.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from bench_agent.core.units import Unit


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One catalog entry: a check's MetricSpec and the checks that declare it."""

    name: str
    unit: Unit
    meaning: str
    checks: tuple[str, ...]  # every check that declares it, in registry order
    higher_is_better: bool = True
    per_device: bool = False

    @property
    def check(self) -> str:
        """The check that measures it (the first, where two declare it)."""
        return self.checks[0]


# Metrics the tool parsers can read but that no check emits (no suite runs
# iperf3 -u, qperf udp_bw or ib_read_*): not in the catalog, so a profile cannot
# name them; listed so that the error says why, and so the parsers' tests know them.
PARSED_ONLY: frozenset[str] = frozenset({
    "network.udp_bandwidth", "network.udp_lost_packets", "network.udp_jitter",
    "network.rdma_read_latency", "network.rdma_read_latency_avg",
    "network.rdma_read_latency_p99", "network.rdma_read_latency_p99_9",
    "network.rdma_read_bandwidth",
})


def close_metrics(name: str, catalog: Mapping[str, MetricInfo], count: int = 3) -> list[str]:
    """The known metric names nearest to a misspelt one (difflib's ratio)."""
    return difflib.get_close_matches(name, list(catalog), n=count, cutoff=0.6)


def unknown_metric(name: str, catalog: Mapping[str, MetricInfo]) -> str:
    """The message for a metric the catalog does not know, with the nearest names."""
    near = close_metrics(name, catalog)
    if name in PARSED_ONLY:
        why = (f"unknown metric {name!r}: no check measures it (its tool's parser reads it,"
               " but no suite runs that test)")
        return why + (f"; did you mean {', '.join(near)}?" if near else "")
    if near:
        return f"unknown metric {name!r}; did you mean {', '.join(near)}?"
    domain = name.split(".")[0]
    same = [m for m in catalog if m.split(".")[0] == domain]
    if same:
        return f"unknown metric {name!r}; the {domain} metrics are {', '.join(same)}"
    domains = sorted({m.split(".")[0] for m in catalog})
    return f"unknown metric {name!r}; metric names begin with {', '.join(domains)}"
