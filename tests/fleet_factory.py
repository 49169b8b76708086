"""Generated fleets for the fleet tests and benchmark: report files of many nodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# metric -> (unit, healthy median, relative spread); spreads like a real fleet of one
# model: a few percent for compute and memory, more for storage.
METRICS = {
    "cpu.gemm_fp64_all_cores": ("FLOP/s", 2.0e12, 0.02),
    "memory.stream_triad": ("bytes/s", 3.0e11, 0.03),
    "storage.randread_4k_iops": ("IOPS", 9.0e5, 0.05),
    "storage.randread_4k_latency_p99": ("s", 2.0e-4, 0.05),
}


def report(node: str, values: dict[str, float], index: int) -> dict[str, object]:
    return {
        "schema_version": 1, "report_id": f"00000000-0000-4000-8000-{index:012d}",
        "agent_version": "0.1.0", "host": node, "status": "PASS", "interrupted": False,
        "started_at": "2026-11-27T10:00:00Z", "finished_at": "2026-11-27T10:05:00Z",
        "suite": {"name": "acceptance", "sha256": "0" * 64, "path": ""},
        "profile": {"name": "guide-minimum", "sha256": "1" * 64, "path": ""},
        "inventory": {"cpu": {"logical_cpus": 128}},
        "measurements": [{"check": m.split(".")[0], "metric": m, "value": v,
                          "unit": METRICS[m][0]} for m, v in values.items()],
        "verdicts": [],
    }


def write_fleet(folder: Path, nodes: int, slow: dict[int, str] | None = None,
                seed: int = 1) -> list[str]:
    """`nodes` report files; nodes in `slow` get one metric 40 % worse.

    Healthy noise is a normal clipped at 3 sigma: a healthy fleet has no far tail
    (hardware that far off is what we look for), so a clean fleet must flag none.
    """
    rng = np.random.default_rng(seed)
    slow = slow or {}
    names = []
    for index in range(nodes):
        node = f"node-{index:05d}"
        values = {}
        for metric, (_unit, median, spread) in METRICS.items():
            noise = float(np.clip(rng.normal(0, spread), -3 * spread, 3 * spread))
            value = median * (1 + noise)
            if slow.get(index) == metric:
                value = value * (1.4 if metric.endswith("latency_p99") else 0.6)
            values[metric] = value
        folder.joinpath(f"{node}.json").write_text(json.dumps(report(node, values, index)))
        names.append(node)
    return names
